//! Command parsing: every served form, Valkey's exact error words, and no panic on any input.

use bytes::Bytes;
use proptest::prelude::*;
use sentinel_protocol::command::{
    ClientAttr, ClientCommand, Command, CommandError, CoordinatorCommand, Hello, RefusedSubcommand,
    SentinelCommand,
};

fn args(a: &[&str]) -> Vec<Bytes> {
    a.iter().map(|s| Bytes::from(s.to_string())).collect()
}

fn parse(a: &[&str]) -> Result<Command, CommandError> {
    Command::parse(&args(a))
}

fn err(a: &[&str]) -> String {
    parse(a).unwrap_err().to_string()
}

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_string())
}

#[test]
fn ping_hello_auth() {
    assert_eq!(parse(&["ping"]), Ok(Command::Ping(None)));
    assert_eq!(parse(&["PiNg", "hi"]), Ok(Command::Ping(Some(b("hi")))));
    assert_eq!(
        err(&["PING", "a", "b"]),
        "ERR wrong number of arguments for 'ping' command"
    );

    assert_eq!(parse(&["HELLO"]), Ok(Command::Hello(Hello::default())));
    assert_eq!(
        parse(&["hello", "3", "auth", "u", "p", "setname", "n"]),
        Ok(Command::Hello(Hello {
            protover: Some(3),
            auth: Some((b("u"), b("p"))),
            setname: Some(b("n")),
        }))
    );
    assert_eq!(err(&["HELLO", "4"]), "NOPROTO unsupported protocol version");
    assert_eq!(err(&["HELLO", "1"]), "NOPROTO unsupported protocol version");
    for bad in ["three", "+3", "03", "3 ", "-0", "", "99999999999999999999"] {
        assert_eq!(
            err(&["HELLO", bad]),
            "ERR Protocol version is not an integer or out of range",
            "{bad:?}"
        );
    }
    assert_eq!(
        err(&["HELLO", "-3"]),
        "NOPROTO unsupported protocol version"
    );
    assert_eq!(
        err(&["HELLO", "3", "AUTH", "u"]),
        "ERR Syntax error in HELLO option 'AUTH'"
    );
    assert_eq!(
        err(&["HELLO", "3", "bogus"]),
        "ERR Syntax error in HELLO option 'bogus'"
    );
    assert_eq!(
        err(&["HELLO", "3", "SETNAME", "a b"]),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );

    assert_eq!(
        parse(&["auth", "pw"]),
        Ok(Command::Auth {
            username: None,
            password: b("pw")
        })
    );
    assert_eq!(
        parse(&["AUTH", "user", "pw"]),
        Ok(Command::Auth {
            username: Some(b("user")),
            password: b("pw")
        })
    );
    // redis-py and ioredis key their AUTH retry on this exact text.
    assert_eq!(
        err(&["AUTH"]),
        "ERR wrong number of arguments for 'auth' command"
    );
    assert_eq!(err(&["AUTH", "a", "b", "c"]), "ERR syntax error");
}

#[test]
fn client_subcommands() {
    assert_eq!(
        parse(&["client", "setname", "app"]),
        Ok(Command::Client(ClientCommand::SetName(b("app"))))
    );
    assert_eq!(
        parse(&["CLIENT", "SETNAME", ""]),
        Ok(Command::Client(ClientCommand::SetName(b(""))))
    );
    assert_eq!(
        err(&["CLIENT", "SETNAME", "a b"]),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    assert_eq!(
        parse(&["CLIENT", "GETNAME"]),
        Ok(Command::Client(ClientCommand::GetName))
    );
    assert_eq!(
        parse(&["client", "id"]),
        Ok(Command::Client(ClientCommand::Id))
    );
    assert_eq!(
        parse(&["client", "info"]),
        Ok(Command::Client(ClientCommand::Info))
    );
    assert_eq!(
        parse(&["CLIENT", "SETINFO", "lib-name", "redis-py"]),
        Ok(Command::Client(ClientCommand::SetInfo(
            ClientAttr::LibName,
            b("redis-py")
        )))
    );
    assert_eq!(
        parse(&["CLIENT", "SETINFO", "LIB-VER", "6.0.0"]),
        Ok(Command::Client(ClientCommand::SetInfo(
            ClientAttr::LibVer,
            b("6.0.0")
        )))
    );
    assert_eq!(
        err(&["CLIENT", "SETINFO", "lib-x", "v"]),
        "ERR Unrecognized option 'lib-x'"
    );
    assert_eq!(
        err(&["CLIENT", "SETINFO", "lib-name", "a b"]),
        "ERR lib-name cannot contain spaces, newlines or special characters."
    );
    assert_eq!(
        err(&["CLIENT", "SETINFO", "lib-name"]),
        "ERR wrong number of arguments for 'client|setinfo' command"
    );
    assert_eq!(
        err(&["CLIENT"]),
        "ERR wrong number of arguments for 'client' command"
    );
    // Clients probe optional features this way; an error, never a disconnect.
    for sub in ["MAINT_NOTIFICATIONS", "capa", "no-evict"] {
        assert_eq!(
            err(&["CLIENT", sub, "on"]),
            format!("ERR unknown subcommand '{sub}'. Try CLIENT HELP.")
        );
    }
}

/// rueidis sends `CLIENT TRACKING ON OPTIN` in its handshake and fails the connection on an
/// error; valkey-sentinel 9.1.2 answers `+OK` (probed), with Valkey's option grammar.
#[test]
fn client_tracking_is_parsed_with_valkeys_grammar() {
    let tracking = |a: &[&str]| parse(a);
    assert_eq!(
        tracking(&["CLIENT", "TRACKING", "ON", "OPTIN"]),
        Ok(Command::Client(ClientCommand::Tracking(true)))
    );
    assert_eq!(
        tracking(&["client", "tracking", "off"]),
        Ok(Command::Client(ClientCommand::Tracking(false)))
    );
    assert_eq!(
        tracking(&[
            "CLIENT", "TRACKING", "on", "REDIRECT", "7", "PREFIX", "a", "PREFIX", "b", "BCAST",
            "NOLOOP"
        ]),
        Ok(Command::Client(ClientCommand::Tracking(true)))
    );
    for bad in [
        &["CLIENT", "TRACKING", "maybe"][..],
        &["CLIENT", "TRACKING", "ON", "REDIRECT"],
        &["CLIENT", "TRACKING", "ON", "SOON"],
    ] {
        assert_eq!(err(bad), "ERR syntax error", "{bad:?}");
    }
    assert_eq!(
        err(&["CLIENT", "TRACKING"]),
        "ERR wrong number of arguments for 'client|tracking' command"
    );
    assert_eq!(
        parse(&["CLIENT", "TRACKING", "ON"]).map(|c| c.full_name()),
        Ok("client|tracking")
    );
}

#[test]
fn sentinel_subcommands_and_aliases() {
    let s = |a: &[&str]| match parse(a) {
        Ok(Command::Sentinel(c)) => c,
        other => panic!("{a:?}: {other:?}"),
    };
    let m = b("mymaster");
    for spelling in ["get-master-addr-by-name", "GET-PRIMARY-ADDR-BY-NAME"] {
        assert_eq!(
            s(&["sentinel", spelling, "mymaster"]),
            SentinelCommand::GetMasterAddrByName(m.clone())
        );
    }
    for spelling in ["master", "PRIMARY"] {
        assert_eq!(
            s(&["SENTINEL", spelling, "mymaster"]),
            SentinelCommand::Master(m.clone())
        );
    }
    for spelling in ["masters", "Primaries"] {
        assert_eq!(s(&["SENTINEL", spelling]), SentinelCommand::Masters);
    }
    for spelling in ["replicas", "SLAVES"] {
        assert_eq!(
            s(&["SENTINEL", spelling, "mymaster"]),
            SentinelCommand::Replicas(m.clone())
        );
    }
    assert_eq!(
        s(&["SENTINEL", "sentinels", "mymaster"]),
        SentinelCommand::Sentinels(m.clone())
    );
    assert_eq!(
        s(&["SENTINEL", "ckquorum", "mymaster"]),
        SentinelCommand::CkQuorum(m.clone())
    );
    assert_eq!(s(&["SENTINEL", "myid"]), SentinelCommand::MyId);
    assert_eq!(s(&["SENTINEL", "help"]), SentinelCommand::Help);

    assert_eq!(
        err(&["SENTINEL", "MASTER"]),
        "ERR wrong number of arguments for 'sentinel|master' command"
    );
    assert_eq!(
        err(&["SENTINEL", "MASTERS", "x"]),
        "ERR wrong number of arguments for 'sentinel|masters' command"
    );
    assert_eq!(
        err(&["SENTINEL", "get-master-addr-by-name"]),
        "ERR wrong number of arguments for 'sentinel|get-master-addr-by-name' command"
    );
    assert_eq!(
        err(&["SENTINEL"]),
        "ERR wrong number of arguments for 'sentinel' command"
    );
    assert_eq!(
        err(&["SENTINEL", "info-cache"]),
        "ERR unknown subcommand 'info-cache'. Try SENTINEL HELP."
    );
}

#[test]
fn refused_sentinel_subcommands_are_parsed_not_unknown() {
    let cases = [
        (
            "IS-MASTER-DOWN-BY-ADDR",
            RefusedSubcommand::IsMasterDownByAddr,
        ),
        (
            "is-primary-down-by-addr",
            RefusedSubcommand::IsMasterDownByAddr,
        ),
        ("monitor", RefusedSubcommand::Monitor),
        ("REMOVE", RefusedSubcommand::Remove),
        ("set", RefusedSubcommand::Set),
        ("reset", RefusedSubcommand::Reset),
        ("FAILOVER", RefusedSubcommand::Failover),
        ("config", RefusedSubcommand::Config),
        ("flushconfig", RefusedSubcommand::FlushConfig),
    ];
    for (word, want) in cases {
        let cmd = parse(&["sentinel", word, "mymaster", "x"]).unwrap();
        assert_eq!(
            cmd,
            Command::Sentinel(SentinelCommand::Refused(want, args(&["mymaster", "x"])))
        );
        let text = want.error_text();
        assert!(text.starts_with("ERR SENTINEL "), "{text}");
        assert!(text.contains(want.as_str()), "{text}");
        assert!(!text.contains('\n') && !text.contains('\r'));
    }
    // Bare forms too: the refusal does not depend on arity.
    assert!(matches!(
        parse(&["SENTINEL", "FLUSHCONFIG"]),
        Ok(Command::Sentinel(SentinelCommand::Refused(
            RefusedSubcommand::FlushConfig,
            _
        )))
    ));
}

#[test]
fn the_rest_of_the_served_set() {
    assert_eq!(parse(&["role"]), Ok(Command::Role));
    assert_eq!(
        err(&["ROLE", "x"]),
        "ERR wrong number of arguments for 'role' command"
    );
    assert_eq!(parse(&["INFO"]), Ok(Command::Info(vec![])));
    assert_eq!(
        parse(&["info", "sentinel", "server"]),
        Ok(Command::Info(args(&["sentinel", "server"])))
    );
    assert_eq!(
        parse(&["subscribe", "+switch-master", "+sdown"]),
        Ok(Command::Subscribe(args(&["+switch-master", "+sdown"])))
    );
    assert_eq!(
        parse(&["PSUBSCRIBE", "*"]),
        Ok(Command::PSubscribe(args(&["*"])))
    );
    assert_eq!(
        err(&["SUBSCRIBE"]),
        "ERR wrong number of arguments for 'subscribe' command"
    );
    assert_eq!(parse(&["UNSUBSCRIBE"]), Ok(Command::Unsubscribe(vec![])));
    assert_eq!(
        parse(&["punsubscribe", "*"]),
        Ok(Command::PUnsubscribe(args(&["*"])))
    );
    assert_eq!(parse(&["COMMAND"]), Ok(Command::Command(vec![])));
    assert_eq!(
        parse(&["command", "docs", "get"]),
        Ok(Command::Command(args(&["docs", "get"])))
    );
    assert_eq!(parse(&["QUIT"]), Ok(Command::Quit));
}

#[test]
fn coordinator_namespace() {
    assert_eq!(
        parse(&["coordinator", "verdict", "mymaster"]),
        Ok(Command::Coordinator(CoordinatorCommand::Verdict(b(
            "mymaster"
        ))))
    );
    assert_eq!(
        parse(&["COORDINATOR", "STATUS"]),
        Ok(Command::Coordinator(CoordinatorCommand::Status))
    );
    assert_eq!(
        parse(&["COORDINATOR", "startup", "mymaster", "10.0.0.7:6379"]),
        Ok(Command::Coordinator(CoordinatorCommand::Startup {
            name: b("mymaster"),
            pod_addr: b("10.0.0.7:6379")
        }))
    );
    assert_eq!(
        err(&["COORDINATOR", "STARTUP", "mymaster"]),
        "ERR wrong number of arguments for 'coordinator|startup' command"
    );
    assert_eq!(
        err(&["COORDINATOR", "nope"]),
        "ERR unknown subcommand 'nope'. Try COORDINATOR HELP."
    );
}

#[test]
fn unknown_command_wording_matches_valkey() {
    assert_eq!(
        err(&["SELECT", "1"]),
        "ERR unknown command 'SELECT', with args beginning with: '1' "
    );
    // No arguments: the list is empty but the trailing space after the colon stays.
    assert_eq!(
        err(&["publish"]),
        "ERR unknown command 'publish', with args beginning with: "
    );
    // Arguments are appended while the list is under 128 bytes, each clipped to what is left.
    let a100 = "a".repeat(100);
    let b100 = "b".repeat(100);
    assert_eq!(
        err(&["x", &a100, &b100, "never"]),
        format!(
            "ERR unknown command 'x', with args beginning with: '{a100}' '{}' ",
            "b".repeat(25)
        )
    );
    let a200 = "a".repeat(200);
    assert_eq!(
        err(&["x", &a200, "never"]),
        format!(
            "ERR unknown command 'x', with args beginning with: '{}' ",
            "a".repeat(128)
        )
    );
    // The command name is cut at 128 bytes.
    let long = "c".repeat(300);
    assert_eq!(
        err(&[&long]),
        format!(
            "ERR unknown command '{}', with args beginning with: ",
            "c".repeat(128)
        )
    );
    // CR/LF become spaces so user input cannot break the reply; NUL ends a C string.
    assert_eq!(
        err(&["bad\r\ncmd", "x\ny", "nul\0tail"]),
        "ERR unknown command 'bad  cmd', with args beginning with: 'x y' 'nul' "
    );
    assert_eq!(
        err(&["CLIENT", "a\r\nb"]),
        "ERR unknown subcommand 'a  b'. Try CLIENT HELP."
    );
    assert_eq!(Command::parse(&[]), Err(CommandError::Empty));
}

#[test]
fn subscribed_context() {
    for a in [
        &["PING"][..],
        &["SUBSCRIBE", "x"],
        &["PSUBSCRIBE", "*"],
        &["UNSUBSCRIBE"],
        &["PUNSUBSCRIBE"],
        &["QUIT"],
    ] {
        assert!(parse(a).unwrap().allowed_when_subscribed(), "{a:?}");
    }
    let masters = parse(&["SENTINEL", "MASTERS"]).unwrap();
    assert!(!masters.allowed_when_subscribed());
    assert_eq!(
        masters.subscribed_context_error().to_string(),
        "ERR Can't execute 'sentinel|masters': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / \
         QUIT / RESET are allowed in this context"
    );
}

fn any_arg() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        // Real words, in any case, so parsing reaches deep branches.
        prop::sample::select(vec![
            "PING",
            "hello",
            "AUTH",
            "client",
            "SETNAME",
            "setinfo",
            "LIB-NAME",
            "sentinel",
            "MASTER",
            "masters",
            "replicas",
            "get-master-addr-by-name",
            "CKQUORUM",
            "monitor",
            "ROLE",
            "info",
            "subscribe",
            "COMMAND",
            "quit",
            "coordinator",
            "VERDICT",
            "startup",
            "2",
            "3",
            "4",
            "-1",
            "SETNAME",
            "auth",
            "",
        ])
        .prop_map(|s| Bytes::from(s.to_string())),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from),
    ]
}

proptest! {
    #[test]
    fn parsing_never_panics_and_errors_stay_one_line(
        argv in prop::collection::vec(any_arg(), 0..8)
    ) {
        if let Err(e) = Command::parse(&argv) {
            let text = e.to_string();
            prop_assert!(!text.contains('\r') && !text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn unknown_command_text_is_bounded(
        argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..400).prop_map(Bytes::from), 1..20)
    ) {
        let text = CommandError::unknown_command(&argv).to_string();
        // 128 for the name, under 128 + one clipped argument and its quotes for the list; the
        // lossy UTF-8 conversion may widen invalid bytes to 3 bytes each.
        prop_assert!(text.len() <= 3 * (128 + 128 + 3) + 60, "{}", text.len());
        prop_assert!(!text.contains('\r') && !text.contains('\n'));
    }
}
