//! One request in, its reply out, against the registry's current snapshots.
//!
//! Order of checks follows Valkey's `processCommand`: an unknown command or a wrong arity is
//! answered as such even before authentication; then authentication (`-NOAUTH`), then
//! permissions (`-NOPERM`), then the RESP2 subscribed context.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use sentinel_protocol::codec::RequestCodec;
use sentinel_protocol::command::{
    ClientAttr, ClientCommand, Command, CommandError, CoordinatorCommand, Hello, SentinelCommand,
};
use sentinel_protocol::reply::{Protocol, Reply};
use sentinel_protocol::sentinel::Ckquorum;

use super::Shared;
use super::auth::{AuthError, Identity};
use super::pubsub::{Kind, Subscriptions};
use super::records;
use super::status;

/// `-NOAUTH` for every command but the ones that authenticate.
const NOAUTH: &str = "NOAUTH Authentication required.";
/// Valkey's refusal of a `HELLO` that neither is authenticated nor authenticates.
const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";
/// A sentinel's answer for a name it does not monitor; also ours for a name without quorum.
const NO_SUCH_MASTER: &str = "ERR No such master with that name";

/// What one connection knows about itself.
pub struct Session {
    pub id: u64,
    pub peer: SocketAddr,
    pub protocol: Protocol,
    /// `None` until authenticated (when authentication is required).
    pub identity: Option<Identity>,
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub subscriptions: Subscriptions,
    /// Set by `QUIT`: flush the replies so far, then close.
    pub closing: bool,
}

impl Session {
    pub fn new(id: u64, peer: SocketAddr, identity: Option<Identity>) -> Self {
        Self {
            id,
            peer,
            protocol: Protocol::Resp2,
            identity,
            name: None,
            lib_name: None,
            lib_ver: None,
            subscriptions: Subscriptions::default(),
            closing: false,
        }
    }
}

/// Runs one request and appends its reply (or replies: a multi-channel `SUBSCRIBE` confirms
/// each channel) to `out`. Returns the command's name for the counters.
pub fn execute(
    args: &[Bytes],
    session: &mut Session,
    shared: &Shared,
    codec: &mut RequestCodec,
    out: &mut BytesMut,
) -> &'static str {
    if tracing::enabled!(tracing::Level::DEBUG) {
        log_command(args, session);
    }
    // A bare `PING` outside subscribed mode is the other command clients repeat (health
    // checks, pipelined keep-alives); every preset allows it, and its answer never varies.
    if args.len() == 1
        && args[0].eq_ignore_ascii_case(b"PING")
        && session.identity.is_some()
        && !session.subscriptions.is_active()
    {
        out.extend_from_slice(b"+PONG\r\n");
        return "ping";
    }
    // `COORDINATOR VERDICT <name> JSON` / `COORDINATOR STATUS JSON`: the protocol crate's
    // grammar has no JSON flag, so it is taken off here and the rest parsed as usual.
    let (args, json) = strip_json_flag(args);
    let command = match master_addr_lookup(args) {
        Some(name) => Command::Sentinel(SentinelCommand::GetMasterAddrByName(name.clone())),
        None => match Command::parse(args) {
            Ok(command) => command,
            Err(CommandError::Empty) => return "empty",
            Err(error) => {
                encode(Reply::error(error.to_string()), session.protocol, out);
                return "unknown";
            }
        },
    };
    let name = command.full_name();
    let reply = respond(command, json, session, shared, codec, out);
    for reply in reply {
        encode(reply, session.protocol, out);
    }
    name
}

/// At debug level, each command as the client sent it, except that `AUTH` and `HELLO` are
/// shown by name only: their arguments carry passwords.
fn log_command(args: &[Bytes], session: &Session) {
    let Some(first) = args.first() else {
        return;
    };
    let secret = first.eq_ignore_ascii_case(b"AUTH") || first.eq_ignore_ascii_case(b"HELLO");
    let shown: Vec<String> = if secret {
        vec![String::from_utf8_lossy(first).into_owned()]
    } else {
        args.iter()
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect()
    };
    let mut command = shown.join(" ");
    if command.len() > 512 {
        let cut = (0..=512)
            .rev()
            .find(|&i| command.is_char_boundary(i))
            .unwrap_or(0);
        command.truncate(cut);
        command.push_str("...");
    }
    tracing::debug!(client = session.id, peer = %session.peer, %command, "client command");
}

/// The name of a `SENTINEL GET-MASTER-ADDR-BY-NAME <name>` (or its `PRIMARY` spelling),
/// recognised without the general parser, which upper-cases into fresh buffers: this is the
/// command clients repeat on every reconnect, and the one the bench compares with a real
/// sentinel. It is then checked and answered like every other command.
fn master_addr_lookup(args: &[Bytes]) -> Option<&Bytes> {
    let is_lookup = args.len() == 3
        && args[0].eq_ignore_ascii_case(b"SENTINEL")
        && (args[1].eq_ignore_ascii_case(b"GET-MASTER-ADDR-BY-NAME")
            || args[1].eq_ignore_ascii_case(b"GET-PRIMARY-ADDR-BY-NAME"));
    is_lookup.then(|| &args[2])
}

fn encode(reply: Reply, protocol: Protocol, out: &mut BytesMut) {
    // Encoding into a growable buffer has no failure mode for the frames built here.
    let _ = reply.encode(protocol, out);
}

fn strip_json_flag(args: &[Bytes]) -> (&[Bytes], bool) {
    let is_coordinator = args
        .first()
        .is_some_and(|first| first.eq_ignore_ascii_case(b"COORDINATOR"));
    match args.split_last() {
        Some((last, rest))
            if is_coordinator && rest.len() >= 2 && last.eq_ignore_ascii_case(b"JSON") =>
        {
            (rest, true)
        }
        _ => (args, false),
    }
}

/// The replies to one parsed command. The hot path writes straight into `out` and returns none.
fn respond(
    command: Command,
    json: bool,
    session: &mut Session,
    shared: &Shared,
    codec: &mut RequestCodec,
    out: &mut BytesMut,
) -> Vec<Reply> {
    // Authentication first: only AUTH, HELLO and QUIT are open to an unauthenticated client.
    let Some(identity) = session.identity.as_ref() else {
        return match command {
            Command::Auth { username, password } => {
                vec![auth(username.as_deref(), &password, session, shared, codec)]
            }
            Command::Hello(hello) => hello_command(hello, session, shared, codec),
            Command::Quit => quit(session),
            _ => vec![Reply::error(NOAUTH)],
        };
    };
    if !identity.permissions.allows(&command) {
        return vec![Reply::error(format!(
            "NOPERM User {} has no permissions to run the '{}' command",
            identity.user,
            command.full_name()
        ))];
    }
    if session.protocol == Protocol::Resp2
        && session.subscriptions.is_active()
        && !command.allowed_when_subscribed()
    {
        return vec![Reply::error(command.subscribed_context_error().to_string())];
    }
    match command {
        Command::Sentinel(SentinelCommand::GetMasterAddrByName(name)) => {
            get_master_addr_by_name(&name, session.protocol, shared, out);
            Vec::new()
        }
        Command::Ping(message) => vec![ping(message, session)],
        Command::Hello(hello) => hello_command(hello, session, shared, codec),
        Command::Auth { username, password } => {
            vec![auth(username.as_deref(), &password, session, shared, codec)]
        }
        Command::Client(client) => vec![client_command(client, session)],
        Command::Sentinel(sentinel) => vec![sentinel_command(sentinel, shared)],
        Command::Role => vec![role(shared)],
        Command::Info(sections) => vec![info(&sections, shared)],
        Command::Subscribe(channels) => subscribe(Kind::Channel, &channels, session),
        Command::PSubscribe(patterns) => subscribe(Kind::Pattern, &patterns, session),
        Command::Unsubscribe(channels) => unsubscribe(Kind::Channel, &channels, session),
        Command::PUnsubscribe(patterns) => unsubscribe(Kind::Pattern, &patterns, session),
        Command::Command(args) => vec![command_command(&args)],
        Command::Quit => quit(session),
        Command::Coordinator(coordinator) => vec![coordinator_command(coordinator, json, shared)],
    }
}

/// The hot path: one lock-free registry read, the reply written straight into `out`.
fn get_master_addr_by_name(name: &[u8], protocol: Protocol, shared: &Shared, out: &mut BytesMut) {
    let answered = shared
        .registry
        .with(name, |state| match state.verdict.agreement() {
            Some(agreement) => {
                out.extend_from_slice(
                    state
                        .master_addr_reply
                        .get_or_init(|| records::master_addr_reply(&agreement.master)),
                );
                true
            }
            None => false,
        })
        .unwrap_or(false);
    if !answered {
        records::put_unknown_master_addr(out, protocol);
    }
}

fn ping(message: Option<Bytes>, session: &Session) -> Reply {
    // RESP2 subscribed mode answers PING as a pub/sub frame, so a client reading only pushes
    // still sees it.
    if session.protocol == Protocol::Resp2 && session.subscriptions.is_active() {
        return Reply::Array(vec![
            Reply::bulk_static("pong"),
            Reply::Bulk(message.unwrap_or_default()),
        ]);
    }
    match message {
        Some(message) => Reply::Bulk(message),
        None => Reply::simple("PONG"),
    }
}

fn auth(
    username: Option<&[u8]>,
    password: &[u8],
    session: &mut Session,
    shared: &Shared,
    codec: &mut RequestCodec,
) -> Reply {
    match shared.config.users.authenticate(username, password) {
        Ok(identity) => {
            session.identity = Some(identity);
            codec.set_authenticated(true);
            Reply::ok()
        }
        Err(error) => {
            if error == AuthError::WrongPass {
                tracing::info!(client = session.id, peer = %session.peer, "authentication failed");
            }
            Reply::error(error.to_string())
        }
    }
}

fn hello_command(
    hello: Hello,
    session: &mut Session,
    shared: &Shared,
    codec: &mut RequestCodec,
) -> Vec<Reply> {
    if let Some((username, password)) = &hello.auth {
        let login = auth(Some(username), password, session, shared, codec);
        if matches!(login, Reply::Error(_)) {
            return vec![login];
        }
    }
    if session.identity.is_none() {
        return vec![Reply::error(NOAUTH_HELLO)];
    }
    if let Some(name) = hello.setname {
        session.name = (!name.is_empty()).then(|| owned(&name));
    }
    if let Some(version) = hello.protover {
        session.protocol = if version == 3 {
            Protocol::Resp3
        } else {
            Protocol::Resp2
        };
        codec.set_protocol(session.protocol);
    }
    vec![Reply::Map(vec![
        (Reply::bulk_static("server"), Reply::bulk_static("valkey")),
        (
            Reply::bulk_static("version"),
            Reply::bulk(shared.config.version.clone()),
        ),
        (
            Reply::bulk_static("proto"),
            Reply::Integer(session.protocol.version()),
        ),
        (
            Reply::bulk_static("id"),
            Reply::Integer(i64::try_from(session.id).unwrap_or(i64::MAX)),
        ),
        (Reply::bulk_static("mode"), Reply::bulk_static("sentinel")),
        (Reply::bulk_static("modules"), Reply::Array(Vec::new())),
    ])]
}

/// A copy of an argument that the session keeps. Arguments are slices of the read buffer
/// they arrived in; one kept as is would pin that whole buffer for the connection's life.
fn owned(arg: &Bytes) -> Bytes {
    Bytes::copy_from_slice(arg)
}

fn client_command(client: ClientCommand, session: &mut Session) -> Reply {
    match client {
        ClientCommand::SetName(name) => {
            session.name = (!name.is_empty()).then(|| owned(&name));
            Reply::ok()
        }
        ClientCommand::GetName => match &session.name {
            Some(name) => Reply::Bulk(name.clone()),
            None => Reply::Null,
        },
        ClientCommand::Id => Reply::Integer(i64::try_from(session.id).unwrap_or(i64::MAX)),
        ClientCommand::SetInfo(attr, value) => {
            match attr {
                ClientAttr::LibName => session.lib_name = Some(owned(&value)),
                ClientAttr::LibVer => session.lib_ver = Some(owned(&value)),
            }
            Reply::ok()
        }
        // Accepted as a sentinel accepts it; with no keys there is nothing to invalidate.
        ClientCommand::Tracking(_) => Reply::ok(),
        ClientCommand::Info => {
            let text = |value: &Option<Bytes>| {
                value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            let subscriptions = &session.subscriptions;
            Reply::bulk(format!(
                "id={} addr={} name={} db=0 sub={} psub={} resp={} lib-name={} lib-ver={}\n",
                session.id,
                session.peer,
                text(&session.name),
                subscriptions.channel_count(),
                subscriptions.pattern_count(),
                session.protocol.version(),
                text(&session.lib_name),
                text(&session.lib_ver),
            ))
        }
        ClientCommand::Help => help(&[
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GETNAME",
            "    Return the name of the current connection.",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "SETINFO <option> <value>",
            "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
            "         [OPTIN] [OPTOUT] [NOLOOP]",
            "    Control server assisted client side caching.",
            "HELP",
            "    Print this help.",
        ]),
    }
}

fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|line| Reply::simple(line)).collect())
}

fn sentinel_command(command: SentinelCommand, shared: &Shared) -> Reply {
    let registry = &shared.registry;
    // Every per-name subcommand treats "no agreed master" exactly as "no such name".
    let agreed = |name: &Bytes| {
        let state = registry.get(std::str::from_utf8(name).ok()?)?;
        state.verdict.agreement().is_some().then_some(state)
    };
    match command {
        // Normally answered on the hot path; kept here so this function is total.
        SentinelCommand::GetMasterAddrByName(name) => match agreed(&name) {
            Some(state) => match state.verdict.agreement() {
                Some(agreement) => {
                    Reply::addr(agreement.master.host().to_string(), agreement.master.port())
                }
                None => Reply::NullArray,
            },
            None => Reply::NullArray,
        },
        SentinelCommand::Master(name) => match agreed(&name) {
            Some(state) => match state.verdict.agreement() {
                Some(agreement) => records::master_record(
                    &state,
                    agreement,
                    registry.configured_sentinels(),
                    shared.master_links.is_down(&state.name, &agreement.master),
                ),
                None => Reply::error(NO_SUCH_MASTER),
            },
            None => Reply::error(NO_SUCH_MASTER),
        },
        SentinelCommand::Masters => Reply::Array(
            registry
                .names()
                .iter()
                .filter_map(|name| registry.get(name))
                .filter_map(|state| {
                    let agreement = state.verdict.agreement()?;
                    Some(records::master_record(
                        &state,
                        agreement,
                        registry.configured_sentinels(),
                        shared.master_links.is_down(&state.name, &agreement.master),
                    ))
                })
                .collect(),
        ),
        SentinelCommand::Replicas(name) => match agreed(&name) {
            Some(state) => records::replica_records(&state),
            None => Reply::error(NO_SUCH_MASTER),
        },
        SentinelCommand::Sentinels(name) => match agreed(&name) {
            Some(_) => records::peer_records(&shared.config.peers),
            None => Reply::error(NO_SUCH_MASTER),
        },
        SentinelCommand::CkQuorum(name) => match agreed(&name) {
            Some(state) => ckquorum(&state, registry.configured_sentinels()),
            None => Reply::error(NO_SUCH_MASTER),
        },
        SentinelCommand::MyId => Reply::bulk(shared.config.my_id.clone()),
        SentinelCommand::Help => help(&[
            "SENTINEL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CKQUORUM <primary-name>",
            "    Check if the current Sentinel configuration is able to reach the quorum",
            "    needed to failover a primary and the majority needed to authorize the",
            "    failover.",
            "GET-PRIMARY-ADDR-BY-NAME <primary-name>",
            "    Return the ip and port number of the primary agreed by a majority of sentinels.",
            "PRIMARY <primary-name>",
            "    Show the state and info of the specified primary.",
            "PRIMARIES",
            "    Show a list of primaries monitored and their state.",
            "MYID",
            "    Return the ID of this coordinator.",
            "REPLICAS <primary-name>",
            "    Show a list of replicas for this primary and their state.",
            "SENTINELS <primary-name>",
            "    Show a list of the other coordinator instances.",
            "HELP",
            "    Print this help.",
        ]),
        SentinelCommand::Refused(refused, _) => Reply::error(refused.error_text()),
    }
}

/// `CKQUORUM` as a sentinel words it, with the voters of the agreement as the usable sentinels.
fn ckquorum(state: &crate::service::registry::NameState, configured: usize) -> Reply {
    let Some(agreement) = state.verdict.agreement() else {
        return Reply::error(NO_SUCH_MASTER);
    };
    let usable = u32::try_from(agreement.votes).unwrap_or(u32::MAX);
    let quorum = state
        .master_record
        .as_ref()
        .map_or(crate::verdict::majority_of(configured) as u64, |r| r.quorum);
    let mut answer = Ckquorum::reachable(usable);
    if u64::from(usable) < quorum {
        answer.ok = false;
        answer.detail =
            "Not enough available Sentinels to reach the specified quorum for this master"
                .to_owned();
    } else if (usable as usize) < crate::verdict::majority_of(configured) {
        answer.ok = false;
        answer.detail =
            "Not enough available Sentinels to reach the majority and authorize a failover"
                .to_owned();
    }
    if answer.ok {
        Reply::Simple(Bytes::from(answer.wire_text()))
    } else {
        Reply::error(answer.wire_text())
    }
}

fn role(shared: &Shared) -> Reply {
    let registry = &shared.registry;
    let names = registry
        .names()
        .iter()
        .filter(|name| {
            registry
                .get(name)
                .is_some_and(|state| state.verdict.agreement().is_some())
        })
        .map(|name| Reply::bulk(name.clone()))
        .collect();
    Reply::Array(vec![Reply::bulk_static("sentinel"), Reply::Array(names)])
}

fn info(sections: &[Bytes], shared: &Shared) -> Reply {
    let wants = |section: &str| {
        sections.is_empty()
            || sections.iter().any(|asked| {
                asked.eq_ignore_ascii_case(section.as_bytes())
                    || asked.eq_ignore_ascii_case(b"all")
                    || asked.eq_ignore_ascii_case(b"default")
                    || asked.eq_ignore_ascii_case(b"everything")
            })
    };
    let mut parts = Vec::new();
    if wants("server") {
        let port = shared
            .config
            .announce
            .as_ref()
            .map(|addr| addr.port())
            .or(shared.local_addr.map(|addr| addr.port()))
            .unwrap_or(0);
        parts.push(format!(
            "# Server\r\nvalkey_version:{}\r\nserver_mode:sentinel\r\nredis_mode:sentinel\r\n\
             run_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nexecutable:valkey-coordinator\r\n",
            shared.config.version,
            shared.config.my_id,
            port,
            shared.started.elapsed().as_secs(),
        ));
    }
    if wants("clients") {
        let stats = shared.registry.stats();
        parts.push(format!(
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n",
            stats
                .clients_connected
                .load(std::sync::atomic::Ordering::Relaxed),
            shared.config.max_clients,
        ));
    }
    if wants("sentinel") {
        parts.push(records::info_sentinel(&shared.registry));
    }
    Reply::bulk(parts.join("\r\n"))
}

fn subscribe(kind: Kind, names: &[Bytes], session: &mut Session) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(names.len());
    session.subscriptions.subscribe(kind, names, &mut replies);
    replies
}

fn unsubscribe(kind: Kind, names: &[Bytes], session: &mut Session) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(names.len().max(1));
    session.subscriptions.unsubscribe(kind, names, &mut replies);
    replies
}

/// `COMMAND`: enough for valkey-cli and client libraries that ask, without pretending to list
/// a full command table.
fn command_command(args: &[Bytes]) -> Reply {
    const NAMES: [&str; 14] = [
        "ping",
        "hello",
        "auth",
        "client",
        "sentinel",
        "role",
        "info",
        "subscribe",
        "psubscribe",
        "unsubscribe",
        "punsubscribe",
        "command",
        "quit",
        "coordinator",
    ];
    let Some(sub) = args.first() else {
        return Reply::Array(Vec::new());
    };
    if sub.eq_ignore_ascii_case(b"COUNT") {
        Reply::Integer(NAMES.len() as i64)
    } else if sub.eq_ignore_ascii_case(b"DOCS") {
        Reply::Map(Vec::new())
    } else if sub.eq_ignore_ascii_case(b"LIST") {
        Reply::Array(NAMES.iter().map(|name| Reply::bulk_static(name)).collect())
    } else if sub.eq_ignore_ascii_case(b"INFO") {
        Reply::Array(args[1..].iter().map(|_| Reply::Null).collect())
    } else {
        Reply::Array(Vec::new())
    }
}

fn quit(session: &mut Session) -> Vec<Reply> {
    session.closing = true;
    vec![Reply::ok()]
}

fn coordinator_command(command: CoordinatorCommand, json: bool, shared: &Shared) -> Reply {
    let registry = &shared.registry;
    match command {
        CoordinatorCommand::Verdict(name) => {
            let Some(state) = std::str::from_utf8(&name)
                .ok()
                .and_then(|name| registry.get(name))
            else {
                return Reply::error(NO_SUCH_MASTER);
            };
            Reply::bulk(if json {
                status::verdict_json(&state, registry)
            } else {
                status::verdict_text(&state, registry)
            })
        }
        CoordinatorCommand::Status => Reply::bulk(if json {
            status::status_json(registry)
        } else {
            status::status_text(registry)
        }),
        CoordinatorCommand::Startup { .. } => Reply::error(
            "ERR COORDINATOR STARTUP is not served on the client port: run `valkey-coordinator startup`",
        ),
        CoordinatorCommand::Help => help(&[
            "COORDINATOR <subcommand> [<arg> ...]. Subcommands are:",
            "VERDICT <name> [JSON]",
            "    The verdict for <name> with every sentinel's view, votes, epochs and ages.",
            "STATUS [JSON]",
            "    Every name's verdict and every sentinel link's health.",
            "HELP",
            "    Print this help.",
        ]),
    }
}
