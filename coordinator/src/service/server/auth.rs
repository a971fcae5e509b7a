//! Who may talk to the server: a `requirepass` for the default user and ACL-style named users,
//! each with a preset permission set rather than a full ACL language, because the command set is
//! small and fixed: either everything a sentinel client sends, or that plus the coordinator's own
//! commands.
//!
//! Passwords are compared in constant time (a byte-by-byte early exit would tell an attacker how
//! long the matching prefix is) and never appear in `Debug` output, logs or replies.

use std::fmt;

use sentinel_protocol::command::Command;

/// A password. `Debug` never shows it, and there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<Vec<u8>>) -> Self {
        Self(password.into())
    }

    /// Whether `candidate` is this password, in time that depends only on the lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let lengths_differ = self.0.len() != candidate.len();
        // Walk the stored password whatever the candidate's length, so timing does not reveal
        // where the first difference is.
        let mut difference = 0u8;
        for (i, stored) in self.0.iter().enumerate() {
            let offered = candidate.get(i).copied().unwrap_or(!*stored);
            difference |= stored ^ offered;
        }
        !lengths_differ & (difference == 0)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// What an authenticated connection may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permissions {
    /// Everything a sentinel-aware client sends (sentinel-clients.md A.6): the connection,
    /// discovery, `INFO`/`ROLE`/`COMMAND` and pub/sub commands. Not the coordinator's own.
    SentinelClient,
    /// Everything, including `COORDINATOR ...`.
    Admin,
}

impl Permissions {
    /// Whether this preset allows `command`.
    pub fn allows(self, command: &Command) -> bool {
        match self {
            Permissions::Admin => true,
            Permissions::SentinelClient => !matches!(command, Command::Coordinator(_)),
        }
    }
}

impl Permissions {
    /// The preset's name as configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Permissions::SentinelClient => "sentinel-client",
            Permissions::Admin => "admin",
        }
    }
}

/// A permission preset name that is neither `sentinel-client` nor `admin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission preset {0:?}: expected sentinel-client or admin")]
pub struct UnknownPermissions(pub String);

impl std::str::FromStr for Permissions {
    type Err = UnknownPermissions;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "sentinel-client" => Ok(Permissions::SentinelClient),
            "admin" => Ok(Permissions::Admin),
            _ => Err(UnknownPermissions(name.to_owned())),
        }
    }
}

/// One named user.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: Password,
    pub permissions: Permissions,
}

/// The credentials the server accepts. With none configured every connection is the default
/// user with [`Permissions::Admin`], as a Valkey server without `requirepass` is.
#[derive(Debug, Clone, Default)]
pub struct Users {
    /// The default user's password (`requirepass`); the default user has [`Permissions::Admin`].
    pub requirepass: Option<Password>,
    /// Named users.
    pub users: Vec<User>,
}

/// The user name Valkey gives the password-only `AUTH` form.
pub const DEFAULT_USER: &str = "default";

/// Why a login was refused. `Display` is the wire text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    /// `AUTH <password>` against a server without a password: Valkey's wording, which ioredis
    /// and others pattern-match to downgrade the failure to a warning.
    #[error(
        "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
    )]
    NoPasswordConfigured,
}

/// Who a connection is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub permissions: Permissions,
}

impl Users {
    /// Users with only a `requirepass`.
    pub fn with_requirepass(password: impl Into<Vec<u8>>) -> Self {
        Self {
            requirepass: Some(Password::new(password)),
            users: Vec::new(),
        }
    }

    /// Adds a named user.
    pub fn with_user(
        mut self,
        name: impl Into<String>,
        password: impl Into<Vec<u8>>,
        permissions: Permissions,
    ) -> Self {
        self.users.push(User {
            name: name.into(),
            password: Password::new(password),
            permissions,
        });
        self
    }

    /// Whether clients must authenticate. Named users without a `requirepass` disable the
    /// passwordless default user: configuring users and leaving an open door would be a trap.
    pub fn auth_required(&self) -> bool {
        self.requirepass.is_some() || !self.users.is_empty()
    }

    /// The identity of a connection that has not authenticated: the default user when no
    /// credentials are configured, nobody otherwise.
    pub fn initial_identity(&self) -> Option<Identity> {
        (!self.auth_required()).then(|| Identity {
            user: DEFAULT_USER.to_owned(),
            permissions: Permissions::Admin,
        })
    }

    /// Checks `AUTH [username] password` (and `HELLO ... AUTH`).
    pub fn authenticate(
        &self,
        username: Option<&[u8]>,
        password: &[u8],
    ) -> Result<Identity, AuthError> {
        let default_user = || Identity {
            user: DEFAULT_USER.to_owned(),
            permissions: Permissions::Admin,
        };
        match username {
            None | Some(b"default") => match &self.requirepass {
                Some(secret) if secret.matches(password) => Ok(default_user()),
                Some(_) => Err(AuthError::WrongPass),
                // A passwordless default user accepts any password when named explicitly, as
                // Valkey's `nopass` does; the bare form is an error there.
                None if self.users.is_empty() => match username {
                    None => Err(AuthError::NoPasswordConfigured),
                    Some(_) => Ok(default_user()),
                },
                None => Err(AuthError::WrongPass),
            },
            Some(name) => {
                // Check every user's password so the time taken does not tell which names exist.
                let mut found = None;
                for user in &self.users {
                    let password_ok = user.password.matches(password);
                    if user.name.as_bytes() == name && password_ok {
                        found = Some(Identity {
                            user: user.name.clone(),
                            permissions: user.permissions,
                        });
                    }
                }
                found.ok_or(AuthError::WrongPass)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_from_their_configuration_names() {
        for preset in [Permissions::SentinelClient, Permissions::Admin] {
            assert_eq!(preset.as_str().parse(), Ok(preset));
        }
        assert!("root".parse::<Permissions>().is_err());
    }

    #[test]
    fn passwords_match_only_exactly() {
        let secret = Password::new("hunter2");
        assert!(secret.matches(b"hunter2"));
        assert!(!secret.matches(b"hunter"));
        assert!(!secret.matches(b"hunter22"));
        assert!(!secret.matches(b"Hunter2"));
        assert!(!secret.matches(b""));
        assert!(Password::new("").matches(b""));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let users = Users::with_requirepass("hunter2").with_user(
            "app",
            "s3cret",
            Permissions::SentinelClient,
        );
        let shown = format!("{users:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn logins_follow_valkey_rules() {
        let open = Users::default();
        assert!(!open.auth_required());
        assert_eq!(
            open.authenticate(None, b"x"),
            Err(AuthError::NoPasswordConfigured)
        );
        assert!(open.authenticate(Some(b"default"), b"x").is_ok());
        assert_eq!(
            open.authenticate(Some(b"app"), b"x"),
            Err(AuthError::WrongPass)
        );

        let users =
            Users::with_requirepass("pw").with_user("app", "apppw", Permissions::SentinelClient);
        assert_eq!(
            users.authenticate(None, b"pw").map(|id| id.permissions),
            Ok(Permissions::Admin)
        );
        assert_eq!(users.authenticate(None, b"nope"), Err(AuthError::WrongPass));
        assert_eq!(
            users
                .authenticate(Some(b"app"), b"apppw")
                .map(|id| id.permissions),
            Ok(Permissions::SentinelClient)
        );
        assert_eq!(
            users.authenticate(Some(b"app"), b"pw"),
            Err(AuthError::WrongPass)
        );

        let only_named = Users::default().with_user("app", "apppw", Permissions::SentinelClient);
        assert!(only_named.auth_required());
        assert_eq!(
            only_named.authenticate(None, b""),
            Err(AuthError::WrongPass)
        );
    }
}
