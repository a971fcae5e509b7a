//! `reconfigure`: brings this pod's running server in line with the valkey.conf KubeBlocks just
//! rendered, without a restart (KubeBlocks' reconfigure action).
//!
//! kbagent runs the action only once the updated file on the pod matches the checksum it
//! names (`KB_CONFIG_FILES_UPDATED`, `path:sha256,...`), so the file read here is the new one,
//! and "nothing differs" is a true no-op rather than a projection not yet arrived.
//!
//! Rules:
//!
//! 1. Every directive of the file is compared with the server's `CONFIG GET`, with memory units
//!    and case normalised (`64mb` is `67108864`, `YES` is `yes`); only those that differ are
//!    set, so a template default never overwrites what the system tuned at run time.
//! 2. Directives the pod's own scripts and actions own are never set from the template: the
//!    start script's ports and announce address, `startup`'s `replicaof` and
//!    `replica-priority` (a switchover's bias or an unsynced replica's 0 would otherwise be
//!    reset mid-operation), access, file locations and `include`s.
//! 3. A directive the server refuses as immutable is left for the restart KubeBlocks performs
//!    for static parameters and reported; any other refusal fails the action (exit 1) so
//!    KubeBlocks retries and the operator sees it.
//! 4. Every directive set is read back; a value that did not stick fails the action.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sentinel_protocol::sentinel::Value;

use crate::addr::Addr;
use crate::sentinel::conn::{self, Access, ConnError, Connection, text_reply};

use super::{ActionError, Budget, Target};

/// Directives rule 2 keeps out of reach of the template.
pub const RUNTIME_OWNED: &[&str] = &[
    "include",
    "port",
    "tls-port",
    "bind",
    "unixsocket",
    "replicaof",
    "slaveof",
    "replica-priority",
    "slave-priority",
    "replica-announce-ip",
    "replica-announce-port",
    "slave-announce-ip",
    "slave-announce-port",
    "requirepass",
    "masterauth",
    "masteruser",
    "user",
    "aclfile",
    "dir",
    "dbfilename",
    "appendfilename",
    "appenddirname",
    "logfile",
    "pidfile",
    "daemonize",
    "rename-command",
    "loadmodule",
];

/// One directive of a config file: its name (lowercase) and its arguments, unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub value: String,
}

/// Why a config file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("line {line}: unbalanced quotes")]
    Quotes { line: usize },
}

/// Parses valkey.conf text as the server does (`#` comments, double quotes with escapes,
/// single quotes verbatim); a directive given on several lines (`save`) becomes one, its
/// values joined by a space, as `CONFIG SET` takes it. Pure.
pub fn parse_config(text: &str) -> Result<Vec<Directive>, ConfigFileError> {
    let mut merged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let words = split_args(trimmed).ok_or(ConfigFileError::Quotes { line: index + 1 })?;
        let Some((name, args)) = words.split_first() else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        let value = args.join(" ");
        let entry = merged.entry(name.clone()).or_default();
        if name == "save" && value.is_empty() {
            // `save ""` turns snapshots off: it replaces, never joins.
            entry.clear();
        }
        entry.push(value);
    }
    Ok(merged
        .into_iter()
        .map(|(name, values)| Directive {
            value: values
                .into_iter()
                .filter(|value| !value.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
            name,
        })
        .collect())
}

/// Splits one line into arguments the way the server's config loader does.
fn split_args(line: &str) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            return Some(args);
        };
        let mut arg = String::new();
        match first {
            '"' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            'n' => arg.push('\n'),
                            't' => arg.push('\t'),
                            'r' => arg.push('\r'),
                            other => arg.push(other),
                        },
                        other => arg.push(other),
                    }
                }
            }
            '\'' => {
                chars.next();
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => arg.push(other),
                    }
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    arg.push(c);
                    chars.next();
                }
            }
        }
        args.push(arg);
    }
}

/// The files of `KB_CONFIG_FILES_UPDATED` (`path:checksum,...`; the checksum kbagent checked).
pub fn updated_files(raw: &str) -> Vec<PathBuf> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let path = item.rsplit_once(':').map_or(item, |(path, _)| path);
            PathBuf::from(path)
        })
        .collect()
}

/// Whether a file value and a live value say the same (rule 1). Pure.
pub fn same_value(file: &str, live: &str) -> bool {
    let normalise = |text: &str| -> Vec<String> {
        text.split_whitespace()
            .map(|word| {
                let lower = word.to_ascii_lowercase();
                memory_bytes(&lower).map_or(lower, |bytes| bytes.to_string())
            })
            .collect()
    };
    normalise(file) == normalise(live)
}

/// `64mb`, `1gb`, `512k`, `100`: the bytes the server means; `None` for anything else.
fn memory_bytes(word: &str) -> Option<u64> {
    let digits = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    if digits == 0 {
        return None;
    }
    let number: u64 = word[..digits].parse().ok()?;
    let factor = match &word[digits..] {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1_024,
        "m" => 1_000_000,
        "mb" => 1_024 * 1_024,
        "g" => 1_000_000_000,
        "gb" => 1_024 * 1_024 * 1_024,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// What to do with one directive. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The server has it already.
    Same,
    /// Rule 2.
    RuntimeOwned,
    /// `CONFIG SET name value`.
    Set,
}

/// Plans one directive against the live value (`None`: `CONFIG GET` knows no such name). Pure.
pub fn plan(directive: &Directive, live: Option<&str>) -> Step {
    if RUNTIME_OWNED.contains(&directive.name.as_str()) {
        return Step::RuntimeOwned;
    }
    match live {
        Some(live) if same_value(&directive.value, live) => Step::Same,
        _ => Step::Set,
    }
}

/// Applies the updated files to `target.pod()`.
pub async fn run(
    target: &Target,
    budget: &Budget,
    files: &[PathBuf],
) -> Result<String, ActionError> {
    let pod = target.pod()?.clone();
    if files.is_empty() {
        return Err(ActionError::Usage(
            "no updated config file named (KB_CONFIG_FILES_UPDATED or --config-file)",
        ));
    }
    let mut directives = Vec::new();
    for path in files {
        directives.extend(read_config(path)?);
    }
    budget
        .run(
            "reconfiguring the pod",
            apply(&pod, &target.data_access, &directives),
        )
        .await?
}

fn read_config(path: &Path) -> Result<Vec<Directive>, ActionError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ActionError::refused(format!("cannot read {}: {error}", path.display()))
    })?;
    parse_config(&text)
        .map_err(|error| ActionError::refused(format!("cannot parse {}: {error}", path.display())))
}

async fn apply(
    pod: &Addr,
    access: &Access,
    directives: &[Directive],
) -> Result<String, ActionError> {
    let what = || format!("reconfiguring {pod}");
    let mut connection = conn::connect_within(pod, access, Duration::from_secs(2))
        .await
        .map_err(|error| ActionError::conn(what(), error))?;
    let mut set = Vec::new();
    let mut for_restart = Vec::new();
    for directive in directives {
        let live = config_get(&mut connection, &directive.name)
            .await
            .map_err(|error| ActionError::conn(what(), error))?;
        if plan(directive, live.as_deref()) != Step::Set {
            continue;
        }
        let reply = connection
            .call(&[
                "CONFIG",
                "SET",
                directive.name.as_str(),
                directive.value.as_str(),
            ])
            .await
            .map_err(|error| ActionError::conn(what(), error))?;
        match reply {
            Value::Error(error) if is_immutable(&error) => {
                for_restart.push(directive.name.clone());
                continue;
            }
            Value::Error(error) => {
                return Err(ActionError::refused(format!(
                    "{pod} refused CONFIG SET {}: {error}",
                    directive.name
                )));
            }
            _ => {}
        }
        let after = config_get(&mut connection, &directive.name)
            .await
            .map_err(|error| ActionError::conn(what(), error))?;
        // Rule 4. A name CONFIG GET cannot read back was still taken by CONFIG SET.
        if let Some(after) = after.as_deref()
            && !same_value(&directive.value, after)
        {
            return Err(ActionError::refused(format!(
                "{pod} took CONFIG SET {} {:?} but reports {after:?}",
                directive.name, directive.value
            )));
        }
        set.push(directive.name.clone());
    }
    let mut line = if set.is_empty() {
        format!("{pod}: nothing to change")
    } else {
        format!("{pod}: set {}", set.join(", "))
    };
    if !for_restart.is_empty() {
        line.push_str(&format!("; left for a restart: {}", for_restart.join(", ")));
    }
    Ok(line)
}

/// Rule 3: the server's words for a directive it takes only at start.
fn is_immutable(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    error.contains("immutable") || error.contains("can't set") || error.contains("protected")
}

/// `CONFIG GET name`'s value, `None` when the server has no such parameter.
async fn config_get(connection: &mut Connection, name: &str) -> Result<Option<String>, ConnError> {
    match connection.call(&["CONFIG", "GET", name]).await? {
        Value::Array(items) => match items.get(1) {
            Some(value) => Ok(Some(text_reply(value.clone(), "CONFIG GET")?)),
            None => Ok(None),
        },
        Value::Map(pairs) => match pairs.first() {
            Some((_, value)) => Ok(Some(text_reply(value.clone(), "CONFIG GET")?)),
            None => Ok(None),
        },
        Value::Error(error) => Err(ConnError::Server {
            command: "CONFIG GET",
            error,
        }),
        other => Err(ConnError::Server {
            command: "CONFIG GET",
            error: format!("unexpected reply {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn directive(name: &str, value: &str) -> Directive {
        Directive {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_config_file_reads_as_the_server_reads_it() {
        let text = "# comment\n\nmaxmemory-policy noeviction\nsave 3600 1\nsave 300 100\n\
                    notify-keyspace-events \"Ex\"\nlogfile ''\nMaxClients 100\n";
        assert_eq!(
            parse_config(text).unwrap(),
            vec![
                directive("logfile", ""),
                directive("maxclients", "100"),
                directive("maxmemory-policy", "noeviction"),
                directive("notify-keyspace-events", "Ex"),
                directive("save", "3600 1 300 100"),
            ]
        );
    }

    #[test]
    fn an_empty_save_turns_snapshots_off() {
        let parsed = parse_config("save 3600 1\nsave \"\"\n").unwrap();
        assert_eq!(parsed, vec![directive("save", "")]);
    }

    #[test]
    fn unbalanced_quotes_name_the_line() {
        let error = parse_config("port 6379\nnotify-keyspace-events \"Ex\n").unwrap_err();
        assert_eq!(error.to_string(), "line 2: unbalanced quotes");
    }

    #[test]
    fn memory_units_and_case_compare_as_the_server_means_them() {
        assert!(same_value("64mb", "67108864"));
        assert!(same_value("1gb", "1073741824"));
        assert!(same_value("YES", "yes"));
        assert!(same_value("3600 1 300 100", "3600 1 300 100"));
        assert!(!same_value("allkeys-lru", "noeviction"));
        assert!(!same_value("64mb", "64000000"));
    }

    #[test]
    fn what_startup_and_switchover_own_is_never_set_from_the_template() {
        for name in [
            "replica-priority",
            "replicaof",
            "port",
            "dir",
            "masterauth",
            "include",
        ] {
            assert_eq!(plan(&directive(name, "x"), Some("y")), Step::RuntimeOwned);
        }
        assert_eq!(
            plan(
                &directive("maxmemory-policy", "allkeys-lru"),
                Some("noeviction")
            ),
            Step::Set
        );
        assert_eq!(
            plan(&directive("maxmemory", "1gb"), Some("1073741824")),
            Step::Same
        );
        assert_eq!(plan(&directive("new-in-10", "1"), None), Step::Set);
    }

    #[test]
    fn kubeblocks_names_updated_files_with_their_checksums() {
        assert_eq!(
            updated_files("/etc/conf/valkey.conf:ab12, /etc/conf/extra.conf:cd34"),
            vec![
                PathBuf::from("/etc/conf/valkey.conf"),
                PathBuf::from("/etc/conf/extra.conf")
            ]
        );
        assert!(updated_files("").is_empty());
    }

    proptest! {
        /// A value written in any unit reads back equal to its byte count.
        #[test]
        fn any_memory_amount_equals_its_bytes(n in 0u64..1_000_000) {
            let kilobytes = format!("{n}kb");
            let megabytes = format!("{n}MB");
            prop_assert!(same_value(&kilobytes, &(n * 1024).to_string()));
            prop_assert!(same_value(&megabytes, &(n * 1024 * 1024).to_string()));
        }

        /// Quoting a plain word never changes what it means.
        #[test]
        fn quoting_is_transparent(word in "[a-z0-9-]{1,12}") {
            let plain = parse_config(&format!("x {word}\n")).unwrap();
            let quoted = parse_config(&format!("x \"{word}\"\n")).unwrap();
            prop_assert_eq!(plain, quoted);
        }
    }
}
