//! The Valkey builds the labs run on, and where `tests/install-valkey.sh` puts them: three
//! plaintext suites (8.0.1, 8.1.8, 9.1.2) and three TLS-capable builds (8.0.1, 8.1.1 and 9.1.2
//! built with `BUILD_TLS=yes` from Debian's source packages).

use std::{fmt, path::PathBuf};

use crate::error::{LabError, Result};

/// A Valkey build installed under `.deps/valkey/<version>/bin` of the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValkeyVersion {
    /// Debian build: TLS, `valkey-cli`, `valkey-benchmark`. Its `valkey-server` is a wrapper script
    /// that `exec`s the real binary, so the pid the lab sees is the server's.
    V8_0_1,
    /// `valkey-server` and `valkey-cli`, no TLS.
    V8_1_8,
    /// `valkey-server` only, no TLS; has `SENTINEL FAILOVER ... COORDINATED`.
    V9_1_2,
    /// `valkey-server` and `valkey-cli` with TLS, built from Debian's source package (trixie).
    V8_1_1,
    /// The same 9.1.2 release with TLS, built from Debian's source package (sid), installed
    /// beside the plaintext wheel under `9.1.2-tls`.
    V9_1_2Tls,
}

impl ValkeyVersion {
    /// The builds the plaintext suites run on, oldest first.
    pub const ALL: [ValkeyVersion; 3] = [Self::V8_0_1, Self::V8_1_8, Self::V9_1_2];

    /// The TLS-capable builds, oldest first: what the TLS-only suites run on.
    pub const TLS: [ValkeyVersion; 3] = [Self::V8_0_1, Self::V8_1_1, Self::V9_1_2Tls];

    /// The build's name, e.g. `"9.1.2"` or `"9.1.2-tls"`, which is also its directory name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V8_0_1 => "8.0.1",
            Self::V8_1_8 => "8.1.8",
            Self::V9_1_2 => "9.1.2",
            Self::V8_1_1 => "8.1.1",
            Self::V9_1_2Tls => "9.1.2-tls",
        }
    }

    /// The build named `name` ([`Self::as_str`]), e.g. from an environment variable.
    pub fn named(name: &str) -> Option<ValkeyVersion> {
        [Self::ALL.as_slice(), Self::TLS.as_slice()]
            .concat()
            .into_iter()
            .find(|v| v.as_str() == name.trim())
    }

    /// The release the server reports (`INFO server`'s `valkey_version`, a ComponentVersion's
    /// service version): [`Self::as_str`] without the build's suffix.
    pub fn release(self) -> &'static str {
        match self {
            Self::V9_1_2Tls => "9.1.2",
            other => other.as_str(),
        }
    }

    /// Whether this build was compiled with TLS.
    pub fn has_tls(self) -> bool {
        matches!(self, Self::V8_0_1 | Self::V8_1_1 | Self::V9_1_2Tls)
    }

    /// Whether this release has `SENTINEL FAILOVER ... COORDINATED` (Valkey 9).
    pub fn is_9(self) -> bool {
        matches!(self, Self::V9_1_2 | Self::V9_1_2Tls)
    }

    /// The install root: `$VALKEY_DEPS_DIR` if set (the installer honours it too), else the
    /// project's `.deps/valkey`.
    pub fn deps_dir() -> PathBuf {
        match std::env::var_os("VALKEY_DEPS_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps/valkey"),
        }
    }

    /// Path of one of this version's binaries (`valkey-server`, `valkey-cli`, ...), checked to exist.
    pub fn binary(self, name: &str) -> Result<PathBuf> {
        let path = Self::deps_dir().join(self.as_str()).join("bin").join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(LabError::NotInstalled {
                version: self,
                path,
            })
        }
    }

    /// Path of `valkey-server`, which runs both data pods and sentinels (`--sentinel`).
    pub fn server_binary(self) -> Result<PathBuf> {
        self.binary("valkey-server")
    }
}

impl std::str::FromStr for ValkeyVersion {
    type Err = String;

    /// Parses a version as [`ValkeyVersion::as_str`] writes it, so a command line can name one.
    fn from_str(raw: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .chain(Self::TLS)
            .find(|version| version.as_str() == raw)
            .ok_or_else(|| {
                format!("unknown Valkey build {raw:?} (8.0.1, 8.1.1, 8.1.8, 9.1.2 or 9.1.2-tls)")
            })
    }
}

impl fmt::Display for ValkeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
