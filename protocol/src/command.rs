//! The commands the coordinator serves, parsed from the argument vector a client sent.
//!
//! Clients tell a sentinel from anything else by its error texts as much as by its replies: Jedis
//! and Lettuce fall back from `HELLO 3` only on `ERR ... unknown command`, redis-py retries AUTH on
//! `wrong number of arguments for 'auth' command`. So every refusal here carries the exact words a
//! Valkey sentinel would use (`commandCheckExistence`, `commandCheckArity`, `helloCommand`,
//! `clientSetinfoCommand` in `src/server.c` and `src/networking.c`), including its truncation of
//! user input to 128 bytes and its replacement of CR/LF with spaces.
//!
//! Names and arguments stay as `Bytes`: a master name is whatever bytes the client sent, and a
//! lossy conversion here would make a name that cannot match look like one that might.

use bytes::Bytes;

/// A request the coordinator knows how to answer (or knows to refuse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ping(Option<Bytes>),
    Hello(Hello),
    Auth {
        username: Option<Bytes>,
        password: Bytes,
    },
    Client(ClientCommand),
    Sentinel(SentinelCommand),
    Role,
    /// Requested sections, as sent; empty means the default set.
    Info(Vec<Bytes>),
    Subscribe(Vec<Bytes>),
    PSubscribe(Vec<Bytes>),
    /// Empty means "all channels".
    Unsubscribe(Vec<Bytes>),
    PUnsubscribe(Vec<Bytes>),
    /// `COMMAND [subcommand args...]`; valkey-cli asks for docs, an empty answer is acceptable.
    Command(Vec<Bytes>),
    Quit,
    Coordinator(CoordinatorCommand),
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// 2 or 3; `None` keeps the connection's current protocol.
    pub protover: Option<u8>,
    pub auth: Option<(Bytes, Bytes)>,
    pub setname: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// Already validated: empty, or printable ASCII without spaces.
    SetName(Bytes),
    GetName,
    Id,
    SetInfo(ClientAttr, Bytes),
    Info,
    Help,
    /// `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p]... [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`:
    /// `true` for `ON`. A sentinel accepts it (rueidis sends `ON OPTIN` in its handshake and
    /// fails the connection on an error); a sentinel has no keys, so nothing is ever invalidated.
    Tracking(bool),
}

/// The attributes `CLIENT SETINFO` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAttr {
    LibName,
    LibVer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentinelCommand {
    /// Also spelled `GET-PRIMARY-ADDR-BY-NAME`.
    GetMasterAddrByName(Bytes),
    /// Also spelled `PRIMARY`.
    Master(Bytes),
    /// Also spelled `PRIMARIES`.
    Masters,
    /// `REPLICAS` and `SLAVES`: both spellings are in use by current clients and answer alike.
    Replicas(Bytes),
    Sentinels(Bytes),
    CkQuorum(Bytes),
    MyId,
    Help,
    /// A sentinel subcommand the coordinator must never honour: answering
    /// `IS-MASTER-DOWN-BY-ADDR` would make it a voter in real sentinels' elections, and the admin
    /// subcommands are the coordinator's own job upstream. Parsed (with any arguments) rather than
    /// rejected as unknown, so the reply can say why.
    Refused(RefusedSubcommand, Vec<Bytes>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedSubcommand {
    IsMasterDownByAddr,
    Monitor,
    Remove,
    Set,
    Reset,
    Failover,
    Config,
    FlushConfig,
}

impl RefusedSubcommand {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedSubcommand::IsMasterDownByAddr => "IS-MASTER-DOWN-BY-ADDR",
            RefusedSubcommand::Monitor => "MONITOR",
            RefusedSubcommand::Remove => "REMOVE",
            RefusedSubcommand::Set => "SET",
            RefusedSubcommand::Reset => "RESET",
            RefusedSubcommand::Failover => "FAILOVER",
            RefusedSubcommand::Config => "CONFIG",
            RefusedSubcommand::FlushConfig => "FLUSHCONFIG",
        }
    }

    /// The error to send, without the leading `-`. Starts with `ERR` so every client treats it as
    /// an ordinary command error, not a connection problem.
    pub fn error_text(self) -> String {
        let why = match self {
            RefusedSubcommand::IsMasterDownByAddr => "it never votes in sentinel elections",
            _ => "sentinels are administered by the coordinator itself, not through it",
        };
        format!(
            "ERR SENTINEL {} is not served by valkey-coordinator: {why}",
            self.as_str()
        )
    }
}

/// The coordinator's own namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorCommand {
    /// The full verdict for one master name, with each sentinel's view.
    Verdict(Bytes),
    Status,
    /// A data pod at `pod_addr` asks whether it starts as master or as whose replica.
    Startup {
        name: Bytes,
        pod_addr: Bytes,
    },
    Help,
}

/// Why a request was not parsed. `Display` is the exact wire text, without the leading `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A zero-length request. Valkey skips these silently; the server should too.
    #[error("ERR empty command")]
    Empty,
    /// `name` and `args` are already truncated and sanitised as Valkey does; `args` keeps its
    /// trailing space (`'a' 'b' `), which clients see.
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand { name: String, args: String },
    #[error("ERR unknown subcommand '{subcommand}'. Try {command} HELP.")]
    UnknownSubcommand {
        command: &'static str,
        subcommand: String,
    },
    /// Carries Valkey's full command name, e.g. `auth` or `sentinel|master`.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtocolNotInteger,
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    #[error("ERR Syntax error in HELLO option '{0}'")]
    HelloOption(String),
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    InvalidClientName,
    #[error("ERR Unrecognized option '{0}'")]
    UnrecognizedOption(String),
    /// Carries the attribute as the client spelled it.
    #[error("ERR {0} cannot contain spaces, newlines or special characters.")]
    InvalidAttrValue(String),
    /// RESP2 subscribed context; carries Valkey's full command name.
    #[error(
        "ERR Can't execute '{0}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    )]
    NotInSubscribedContext(String),
}

/// How Valkey renders user bytes inside an error: a C string (stops at NUL), at most `max` bytes.
fn c_bytes(b: &[u8], max: usize) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end.min(max)]
}

/// Valkey maps CR and LF to spaces in every error so user input cannot break the protocol.
fn wire_text(b: &[u8]) -> String {
    let cleaned: Vec<u8> = b
        .iter()
        .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c })
        .collect();
    String::from_utf8_lossy(&cleaned).into_owned()
}

fn user_text(b: &[u8]) -> String {
    wire_text(c_bytes(b, 128))
}

impl CommandError {
    /// The unknown-command error exactly as Valkey builds it: each argument quoted and followed by
    /// a space, appended while the list is shorter than 128 bytes, each clipped to what is left.
    pub fn unknown_command(args: &[Bytes]) -> Self {
        let name = args.first().map(|a| user_text(a)).unwrap_or_default();
        let mut list: Vec<u8> = Vec::new();
        for a in args.iter().skip(1) {
            if list.len() >= 128 {
                break;
            }
            let room = 128 - list.len();
            list.push(b'\'');
            list.extend_from_slice(c_bytes(a, room));
            list.extend_from_slice(b"' ");
        }
        CommandError::UnknownCommand {
            name,
            args: wire_text(&list),
        }
    }

    fn unknown_subcommand(command: &'static str, sub: &[u8]) -> Self {
        CommandError::UnknownSubcommand {
            command,
            subcommand: user_text(sub),
        }
    }
}

/// Valkey's `validateClientAttr`: printable ASCII, no spaces.
fn valid_attr(b: &[u8]) -> bool {
    b.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn upper(b: &[u8]) -> Vec<u8> {
    b.to_ascii_uppercase()
}

/// Checks an exact argument count (the whole vector, command name included), as Valkey's
/// positive arity does.
fn exact(args: &[Bytes], n: usize, full: &str) -> Result<(), CommandError> {
    if args.len() == n {
        Ok(())
    } else {
        Err(CommandError::WrongArity(full.to_string()))
    }
}

/// Checks a minimum argument count, as Valkey's negative arity does.
fn at_least(args: &[Bytes], n: usize, full: &str) -> Result<(), CommandError> {
    if args.len() >= n {
        Ok(())
    } else {
        Err(CommandError::WrongArity(full.to_string()))
    }
}

impl Command {
    /// Parses one request. Never panics, whatever the bytes.
    pub fn parse(args: &[Bytes]) -> Result<Command, CommandError> {
        let Some(first) = args.first() else {
            return Err(CommandError::Empty);
        };
        let rest = || args[1..].to_vec();
        match upper(first).as_slice() {
            b"PING" => {
                if args.len() > 2 {
                    return Err(CommandError::WrongArity("ping".into()));
                }
                Ok(Command::Ping(args.get(1).cloned()))
            }
            b"HELLO" => parse_hello(args).map(Command::Hello),
            b"AUTH" => {
                at_least(args, 2, "auth")?;
                match args.len() {
                    2 => Ok(Command::Auth {
                        username: None,
                        password: args[1].clone(),
                    }),
                    3 => Ok(Command::Auth {
                        username: Some(args[1].clone()),
                        password: args[2].clone(),
                    }),
                    _ => Err(CommandError::Syntax),
                }
            }
            b"CLIENT" => parse_client(args).map(Command::Client),
            b"SENTINEL" => parse_sentinel(args).map(Command::Sentinel),
            b"ROLE" => exact(args, 1, "role").map(|_| Command::Role),
            b"INFO" => Ok(Command::Info(rest())),
            b"SUBSCRIBE" => at_least(args, 2, "subscribe").map(|_| Command::Subscribe(rest())),
            b"PSUBSCRIBE" => at_least(args, 2, "psubscribe").map(|_| Command::PSubscribe(rest())),
            b"UNSUBSCRIBE" => Ok(Command::Unsubscribe(rest())),
            b"PUNSUBSCRIBE" => Ok(Command::PUnsubscribe(rest())),
            b"COMMAND" => Ok(Command::Command(rest())),
            b"QUIT" => Ok(Command::Quit),
            b"COORDINATOR" => parse_coordinator(args).map(Command::Coordinator),
            _ => Err(CommandError::unknown_command(args)),
        }
    }

    /// Valkey's full name for the command (`ping`, `sentinel|masters`), as its errors print it.
    pub fn full_name(&self) -> &'static str {
        match self {
            Command::Ping(_) => "ping",
            Command::Hello(_) => "hello",
            Command::Auth { .. } => "auth",
            Command::Client(c) => match c {
                ClientCommand::SetName(_) => "client|setname",
                ClientCommand::GetName => "client|getname",
                ClientCommand::Id => "client|id",
                ClientCommand::SetInfo(..) => "client|setinfo",
                ClientCommand::Info => "client|info",
                ClientCommand::Help => "client|help",
                ClientCommand::Tracking(_) => "client|tracking",
            },
            Command::Sentinel(s) => match s {
                SentinelCommand::GetMasterAddrByName(_) => "sentinel|get-master-addr-by-name",
                SentinelCommand::Master(_) => "sentinel|master",
                SentinelCommand::Masters => "sentinel|masters",
                SentinelCommand::Replicas(_) => "sentinel|replicas",
                SentinelCommand::Sentinels(_) => "sentinel|sentinels",
                SentinelCommand::CkQuorum(_) => "sentinel|ckquorum",
                SentinelCommand::MyId => "sentinel|myid",
                SentinelCommand::Help => "sentinel|help",
                SentinelCommand::Refused(r, _) => match r {
                    RefusedSubcommand::IsMasterDownByAddr => "sentinel|is-master-down-by-addr",
                    RefusedSubcommand::Monitor => "sentinel|monitor",
                    RefusedSubcommand::Remove => "sentinel|remove",
                    RefusedSubcommand::Set => "sentinel|set",
                    RefusedSubcommand::Reset => "sentinel|reset",
                    RefusedSubcommand::Failover => "sentinel|failover",
                    RefusedSubcommand::Config => "sentinel|config",
                    RefusedSubcommand::FlushConfig => "sentinel|flushconfig",
                },
            },
            Command::Role => "role",
            Command::Info(_) => "info",
            Command::Subscribe(_) => "subscribe",
            Command::PSubscribe(_) => "psubscribe",
            Command::Unsubscribe(_) => "unsubscribe",
            Command::PUnsubscribe(_) => "punsubscribe",
            Command::Command(_) => "command",
            Command::Quit => "quit",
            Command::Coordinator(c) => match c {
                CoordinatorCommand::Verdict(_) => "coordinator|verdict",
                CoordinatorCommand::Status => "coordinator|status",
                CoordinatorCommand::Startup { .. } => "coordinator|startup",
                CoordinatorCommand::Help => "coordinator|help",
            },
        }
    }

    /// Whether a RESP2 connection in subscribed mode may run this; the others get
    /// [`CommandError::NotInSubscribedContext`]. RESP3 connections may run anything.
    pub fn allowed_when_subscribed(&self) -> bool {
        matches!(
            self,
            Command::Ping(_)
                | Command::Subscribe(_)
                | Command::PSubscribe(_)
                | Command::Unsubscribe(_)
                | Command::PUnsubscribe(_)
                | Command::Quit
        )
    }

    /// The RESP2 subscribed-context refusal for this command.
    pub fn subscribed_context_error(&self) -> CommandError {
        CommandError::NotInSubscribedContext(self.full_name().to_string())
    }
}

/// Valkey's `string2ll`: stricter than Rust's `parse` (no `+`, no leading zeros, no `-0`), so
/// `HELLO +3` or `HELLO 03` is refused as a real server refuses it.
fn valkey_int(b: &[u8]) -> Option<i64> {
    if b == b"0" {
        return Some(0);
    }
    let digits = b.strip_prefix(b"-").unwrap_or(b);
    match digits.first() {
        Some(b'1'..=b'9') if digits.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(b).ok()?.parse().ok()
        }
        _ => None,
    }
}

fn parse_hello(args: &[Bytes]) -> Result<Hello, CommandError> {
    let mut hello = Hello::default();
    let Some(ver) = args.get(1) else {
        return Ok(hello);
    };
    let ver = valkey_int(ver).ok_or(CommandError::ProtocolNotInteger)?;
    hello.protover = match ver {
        2 => Some(2),
        3 => Some(3),
        _ => return Err(CommandError::NoProto),
    };
    let mut j = 2;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = upper(&args[j]);
        if opt == b"AUTH" && more >= 2 {
            hello.auth = Some((args[j + 1].clone(), args[j + 2].clone()));
            j += 3;
        } else if opt == b"SETNAME" && more >= 1 {
            let name = &args[j + 1];
            if !valid_attr(name) {
                return Err(CommandError::InvalidClientName);
            }
            hello.setname = Some(name.clone());
            j += 2;
        } else {
            return Err(CommandError::HelloOption(user_text(&args[j])));
        }
    }
    Ok(hello)
}

/// `CLIENT TRACKING`, with the option grammar of Valkey's `clientTrackingCommand`: `ON` or
/// `OFF`, then options that take a value (`REDIRECT`, `PREFIX`) or not; anything else, or a
/// missing value, is a syntax error.
fn parse_tracking(args: &[Bytes]) -> Result<ClientCommand, CommandError> {
    at_least(args, 3, "client|tracking")?;
    let on = match upper(&args[2]).as_slice() {
        b"ON" => true,
        b"OFF" => false,
        _ => return Err(CommandError::Syntax),
    };
    let mut j = 3;
    while j < args.len() {
        match upper(&args[j]).as_slice() {
            b"REDIRECT" | b"PREFIX" if j + 1 < args.len() => j += 2,
            b"BCAST" | b"OPTIN" | b"OPTOUT" | b"NOLOOP" => j += 1,
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(ClientCommand::Tracking(on))
}

fn parse_client(args: &[Bytes]) -> Result<ClientCommand, CommandError> {
    at_least(args, 2, "client")?;
    let sub = &args[1];
    match upper(sub).as_slice() {
        b"SETNAME" => {
            exact(args, 3, "client|setname")?;
            if !valid_attr(&args[2]) {
                return Err(CommandError::InvalidClientName);
            }
            Ok(ClientCommand::SetName(args[2].clone()))
        }
        b"GETNAME" => exact(args, 2, "client|getname").map(|_| ClientCommand::GetName),
        b"ID" => exact(args, 2, "client|id").map(|_| ClientCommand::Id),
        b"INFO" => exact(args, 2, "client|info").map(|_| ClientCommand::Info),
        b"HELP" => exact(args, 2, "client|help").map(|_| ClientCommand::Help),
        b"SETINFO" => {
            exact(args, 4, "client|setinfo")?;
            let attr = match upper(&args[2]).as_slice() {
                b"LIB-NAME" => ClientAttr::LibName,
                b"LIB-VER" => ClientAttr::LibVer,
                _ => return Err(CommandError::UnrecognizedOption(user_text(&args[2]))),
            };
            if !valid_attr(&args[3]) {
                return Err(CommandError::InvalidAttrValue(user_text(&args[2])));
            }
            Ok(ClientCommand::SetInfo(attr, args[3].clone()))
        }
        b"TRACKING" => parse_tracking(args),
        _ => Err(CommandError::unknown_subcommand("CLIENT", sub)),
    }
}

fn parse_sentinel(args: &[Bytes]) -> Result<SentinelCommand, CommandError> {
    at_least(args, 2, "sentinel")?;
    let sub = upper(&args[1]);
    let name = |full: &str| exact(args, 3, full).map(|_| args[2].clone());
    let refused = |r| Ok(SentinelCommand::Refused(r, args[2..].to_vec()));
    match sub.as_slice() {
        b"GET-MASTER-ADDR-BY-NAME" => {
            name("sentinel|get-master-addr-by-name").map(SentinelCommand::GetMasterAddrByName)
        }
        b"GET-PRIMARY-ADDR-BY-NAME" => {
            name("sentinel|get-primary-addr-by-name").map(SentinelCommand::GetMasterAddrByName)
        }
        b"MASTER" => name("sentinel|master").map(SentinelCommand::Master),
        b"PRIMARY" => name("sentinel|primary").map(SentinelCommand::Master),
        b"MASTERS" => exact(args, 2, "sentinel|masters").map(|_| SentinelCommand::Masters),
        b"PRIMARIES" => exact(args, 2, "sentinel|primaries").map(|_| SentinelCommand::Masters),
        b"REPLICAS" => name("sentinel|replicas").map(SentinelCommand::Replicas),
        b"SLAVES" => name("sentinel|slaves").map(SentinelCommand::Replicas),
        b"SENTINELS" => name("sentinel|sentinels").map(SentinelCommand::Sentinels),
        b"CKQUORUM" => name("sentinel|ckquorum").map(SentinelCommand::CkQuorum),
        b"MYID" => exact(args, 2, "sentinel|myid").map(|_| SentinelCommand::MyId),
        b"HELP" => exact(args, 2, "sentinel|help").map(|_| SentinelCommand::Help),
        b"IS-MASTER-DOWN-BY-ADDR" | b"IS-PRIMARY-DOWN-BY-ADDR" => {
            refused(RefusedSubcommand::IsMasterDownByAddr)
        }
        b"MONITOR" => refused(RefusedSubcommand::Monitor),
        b"REMOVE" => refused(RefusedSubcommand::Remove),
        b"SET" => refused(RefusedSubcommand::Set),
        b"RESET" => refused(RefusedSubcommand::Reset),
        b"FAILOVER" => refused(RefusedSubcommand::Failover),
        b"CONFIG" => refused(RefusedSubcommand::Config),
        b"FLUSHCONFIG" => refused(RefusedSubcommand::FlushConfig),
        _ => Err(CommandError::unknown_subcommand("SENTINEL", &args[1])),
    }
}

fn parse_coordinator(args: &[Bytes]) -> Result<CoordinatorCommand, CommandError> {
    at_least(args, 2, "coordinator")?;
    match upper(&args[1]).as_slice() {
        b"VERDICT" => {
            exact(args, 3, "coordinator|verdict")?;
            Ok(CoordinatorCommand::Verdict(args[2].clone()))
        }
        b"STATUS" => exact(args, 2, "coordinator|status").map(|_| CoordinatorCommand::Status),
        b"STARTUP" => {
            exact(args, 4, "coordinator|startup")?;
            Ok(CoordinatorCommand::Startup {
                name: args[2].clone(),
                pod_addr: args[3].clone(),
            })
        }
        b"HELP" => exact(args, 2, "coordinator|help").map(|_| CoordinatorCommand::Help),
        _ => Err(CommandError::unknown_subcommand("COORDINATOR", &args[1])),
    }
}
