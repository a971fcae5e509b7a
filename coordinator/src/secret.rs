//! Secrets read from the environment or a file, which no log line, panic message or `--help`
//! output can reveal.
//!
//! Passwords are better not given on the command line at all (every local user can read
//! `/proc/<pid>/cmdline`), so each secret flag has a `-file` twin; the file form is what a
//! Kubernetes secret mount gives. The value is kept as bytes: Valkey passwords are binary-safe.

use std::fmt;
use std::path::{Path, PathBuf};

/// A secret value. `Debug` and `Display` print `<redacted>`; only [`Secret::expose`] gives the
/// bytes, so every place that uses the value is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self(value.into())
    }

    /// Reads a secret from a file, dropping one trailing newline (what `echo` and most editors
    /// add; a password that really ends in a newline cannot be written this way).
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let mut bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.to_owned(),
            source,
        })?;
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(SecretError::Empty {
                path: path.to_owned(),
            });
        }
        Ok(Self(bytes))
    }

    /// The value, for the one place that must send or compare it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, for APIs that take a `String` (sentinel `AUTH`); `None` when the
    /// secret is not UTF-8.
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a secret could not be loaded. Names the file, never the content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file {path} is empty")]
    Empty { path: PathBuf },
    #[error("{0} is given both inline and as a file; give one")]
    Ambiguous(&'static str),
}

/// The secret given inline (flag or environment) or in a file, but not both.
pub fn inline_or_file(
    what: &'static str,
    inline: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Secret>, SecretError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(SecretError::Ambiguous(what)),
        (Some(value), None) => Ok(Some(Secret::new(value))),
        (None, Some(path)) => Secret::from_file(path).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(<redacted>)");
        assert_eq!(secret.expose(), b"hunter2");
    }

    #[test]
    fn a_file_secret_loses_one_trailing_newline_only() {
        let dir = std::env::temp_dir().join(format!("secret-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("password");
        std::fs::write(&path, "s3cret \n").expect("write");
        assert_eq!(Secret::from_file(&path).expect("read").expose(), b"s3cret ");
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(
            Secret::from_file(&path),
            Err(SecretError::Empty { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn inline_and_file_together_is_refused() {
        let error = inline_or_file("--requirepass", Some("a"), Some(Path::new("/nonexistent")))
            .expect_err("ambiguous");
        assert!(error.to_string().contains("--requirepass"));
    }
}
