//! `account-provision`: one ACL user made the same on every data pod (KubeBlocks'
//! accountProvision, which passes the account's name, password and statement).
//!
//! Valkey does not replicate ACL users, so an account set on the master alone is missing on
//! the replica that a failover promotes. The action therefore visits every data pod, not only
//! the one KubeBlocks ran it on, and succeeds only when every pod took the change and, where
//! the pod keeps an ACL file, saved it (upstream's partial pushes that still exited 0 are the
//! failure this closes).
//!
//! The statement is the account's ACL rules (what follows `ACL SETUSER <name>` without a
//! password, e.g. `~* &* +@all`), or the single word `delete`. A set starts from `reset`, so
//! the user ends with exactly these rules and the given password, whatever it had before: a
//! re-run is harmless and a removed permission really goes. The password travels only inside
//! the command on the wire; no error line repeats the command.

use std::time::Duration;

use sentinel_protocol::sentinel::Value;
use tokio::task::JoinSet;

use crate::addr::Addr;
use crate::secret::Secret;
use crate::sentinel::conn::{self, Access, ConnError, Connection, text_reply};

use super::{ActionError, Budget, Target};

/// One pod's connection, change and save.
const PER_POD: Duration = Duration::from_millis(3_000);

/// What the statement asks for. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountChange {
    /// `ACL SETUSER name reset on >password <rules...>`.
    Set { rules: Vec<String> },
    /// `ACL DELUSER name`.
    Delete,
}

/// Reads a statement. Pure.
pub fn plan(statement: &str) -> Result<AccountChange, ActionError> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    match words.as_slice() {
        [] => Err(ActionError::Usage(
            "the account statement is empty (ACL rules, or `delete`)",
        )),
        [word] if word.eq_ignore_ascii_case("delete") => Ok(AccountChange::Delete),
        rules => {
            // A password rule in the statement would put a secret into the chart.
            if let Some(rule) = rules
                .iter()
                .find(|rule| rule.starts_with('>') || rule.starts_with('#'))
            {
                let kind = if rule.starts_with('>') { ">" } else { "#" };
                return Err(ActionError::refused(format!(
                    "the account statement carries a password rule ({kind}...): passwords come \
                     from KB_ACCOUNT_PASSWORD only"
                )));
            }
            Ok(AccountChange::Set {
                rules: rules.iter().map(|rule| (*rule).to_owned()).collect(),
            })
        }
    }
}

/// The account to provision.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub password: Option<Secret>,
    pub change: AccountChange,
}

/// Applies the account on every data pod at once; the line names how many pods took it.
pub async fn run(
    target: &Target,
    budget: &Budget,
    account: &Account,
) -> Result<String, ActionError> {
    if target.data_pods.is_empty() {
        return Err(ActionError::Usage("--data-pod is required"));
    }
    if account.name.is_empty() || account.name.contains(char::is_whitespace) {
        return Err(ActionError::Usage(
            "the account name is empty or has spaces",
        ));
    }
    if matches!(account.change, AccountChange::Set { .. }) && account.password.is_none() {
        return Err(ActionError::Usage(
            "the account password is missing (KB_ACCOUNT_PASSWORD)",
        ));
    }
    let mut applying = JoinSet::new();
    for pod in target.data_pods.iter().cloned() {
        let access = target.data_access.clone();
        let account = account.clone();
        let budget = *budget;
        applying.spawn(async move {
            let limit = budget.share(PER_POD);
            let outcome = tokio::time::timeout(limit, apply(&pod, &access, &account))
                .await
                .unwrap_or(Err(ConnError::Timeout(limit, "provisioning the account")));
            (pod, outcome)
        });
    }
    let mut failed = Vec::new();
    let mut done = 0;
    for (pod, outcome) in applying.join_all().await {
        match outcome {
            Ok(()) => done += 1,
            Err(error) => failed.push(format!("{pod}: {error}")),
        }
    }
    if !failed.is_empty() {
        failed.sort();
        return Err(ActionError::refused(format!(
            "account {} applied on {done} of {} data pods; failed on {}",
            account.name,
            target.data_pods.len(),
            failed.join("; ")
        )));
    }
    let verb = match account.change {
        AccountChange::Set { .. } => "set",
        AccountChange::Delete => "deleted",
    };
    Ok(format!(
        "account {} {verb} on all {done} data pods",
        account.name
    ))
}

/// One pod: the change, then `ACL SAVE` when the pod keeps an ACL file.
async fn apply(pod: &Addr, access: &Access, account: &Account) -> Result<(), ConnError> {
    let mut connection = conn::connect(pod, access).await?;
    match &account.change {
        AccountChange::Set { rules } => {
            let password = account
                .password
                .as_ref()
                .map(Secret::expose)
                .unwrap_or_default();
            let mut with_password = Vec::with_capacity(password.len() + 1);
            with_password.push(b'>');
            with_password.extend_from_slice(password);
            let mut args: Vec<&[u8]> = vec![
                b"ACL",
                b"SETUSER",
                account.name.as_bytes(),
                b"reset",
                b"on",
                &with_password,
            ];
            args.extend(rules.iter().map(|rule| rule.as_bytes()));
            let reply = connection.call(&args).await?;
            expect_ok(redacted(reply, password), "ACL SETUSER")?;
        }
        AccountChange::Delete => {
            // `ACL DELUSER` answers how many users it removed: 0 is fine for a re-run.
            if let Value::Error(error) = connection
                .call(&[b"ACL".as_slice(), b"DELUSER", account.name.as_bytes()])
                .await?
            {
                return Err(ConnError::Server {
                    command: "ACL DELUSER",
                    error,
                });
            }
        }
    }
    if keeps_acl_file(&mut connection).await? {
        expect_ok(connection.call(&["ACL", "SAVE"]).await?, "ACL SAVE")?;
    }
    Ok(())
}

/// Whether the pod was started with an `aclfile` (`ACL SAVE` errors without one).
async fn keeps_acl_file(connection: &mut Connection) -> Result<bool, ConnError> {
    match connection.call(&["CONFIG", "GET", "aclfile"]).await? {
        Value::Array(items) => Ok(items
            .get(1)
            .is_some_and(|value| matches!(value, Value::Str(path) if !path.is_empty()))),
        Value::Error(error) => Err(ConnError::Server {
            command: "CONFIG GET aclfile",
            error,
        }),
        other => Err(ConnError::Server {
            command: "CONFIG GET aclfile",
            error: format!("unexpected reply {other:?}"),
        }),
    }
}

/// The reply with the password cut out of an error: Valkey quotes the modifier it could not
/// parse, and a malformed password modifier would otherwise reach the log.
fn redacted(reply: Value, password: &[u8]) -> Value {
    match reply {
        Value::Error(error) if !password.is_empty() => {
            let password = String::from_utf8_lossy(password);
            Value::Error(error.replace(password.as_ref(), "<redacted>"))
        }
        other => other,
    }
}

/// `+OK`, or the server's error (which never repeats the arguments, so never the password).
fn expect_ok(value: Value, command: &'static str) -> Result<(), ConnError> {
    match text_reply(value, command)?.as_str() {
        "OK" => Ok(()),
        other => Err(ConnError::Server {
            command,
            error: format!("unexpected reply {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_of_rules_sets_exactly_those_rules() {
        assert_eq!(
            plan("  ~* &*  +@all -flushall ").unwrap(),
            AccountChange::Set {
                rules: vec!["~*".into(), "&*".into(), "+@all".into(), "-flushall".into()]
            }
        );
    }

    #[test]
    fn the_word_delete_deletes() {
        assert_eq!(plan("DELETE").unwrap(), AccountChange::Delete);
        assert_eq!(plan("delete").unwrap(), AccountChange::Delete);
    }

    #[test]
    fn a_password_in_the_statement_is_refused_without_repeating_it() {
        for statement in ["~* >hunter2 +@all", "#5e884898da2804 +@all"] {
            let error = plan(statement).unwrap_err().to_string();
            assert!(error.contains("password rule"), "{error}");
            assert!(
                !error.contains("hunter2") && !error.contains("5e8848"),
                "{error}"
            );
        }
    }

    #[test]
    fn an_empty_statement_is_a_usage_error() {
        assert!(matches!(plan("   "), Err(ActionError::Usage(_))));
    }
}
