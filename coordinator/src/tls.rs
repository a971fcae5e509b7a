//! TLS from PEM files, for both directions, reloaded when the files change.
//!
//! One crypto provider for the whole binary: ring, chosen explicitly for every config built here,
//! so nothing depends on a process-wide default (rust-stack.md 2.2).
//!
//! - [`ClientTls`]: towards sentinels, data pods and other coordinators. The peer's chain is
//!   verified against the CA bundle and its name against the address dialled (an IP is checked
//!   against IP SANs only), or against `--tls-server-name` for certificates that do not carry pod
//!   IPs. A client certificate is presented when given. Verification cannot be switched off.
//! - [`ServerTls`]: the coordinator's own listener: its certificate, and client certificates
//!   verified as Valkey's `tls-auth-clients yes|optional|no` does.
//!
//! Reload: Kubernetes updates a Secret volume by swapping a `..data` symlink, which file watches
//! miss, so [`ClientTls::reload`] and [`ServerTls::reload`] compare the files' bytes with what
//! was loaded last and rebuild the whole rustls config when they differ; the service calls them
//! every few seconds. A new config is only published once it loaded completely (the key matches
//! the certificate, the CA parses), so a half-written rotation keeps the old one. Each new
//! connection takes the config current at its start; established connections keep theirs.
//!
//! Ownership: each `ClientTls`/`ServerTls` owns its `ArcSwap`; `reload` is the only writer, every
//! handshake a lock-free reader.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;

/// The one crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// Why TLS material could not be loaded. Names the file and the cause; never holds key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} is not PEM: {source}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what} {path} holds no certificate")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("the CA bundle {path}: {source}")]
    Ca {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the certificate {cert} and the key {key} do not make a usable pair: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("client-certificate verification from {path}: {source}")]
    Verifier {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("{0}")]
    Config(#[from] rustls::Error),
    #[error("--tls-server-name {0:?} is neither a DNS name nor an IP address")]
    ServerName(String),
    #[error("verifying client certificates needs --tls-ca-cert-file (or --tls-auth-clients no)")]
    NoClientCa,
}

/// A certificate chain and its private key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The files of the client side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    /// The CA bundle the peers' certificates must chain to.
    pub ca: PathBuf,
    /// The certificate presented to servers that ask for one (`tls-auth-clients`).
    pub identity: Option<KeyPair>,
    /// The name every peer's certificate is checked against instead of the address dialled.
    pub server_name: Option<String>,
}

/// Whether the coordinator's clients must present a certificate (Valkey's `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// A certificate chaining to the CA is required.
    #[default]
    Required,
    /// A certificate is verified when presented.
    Optional,
    /// No certificate is asked for.
    Off,
}

/// The files of the server side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    /// The coordinator's own certificate and key.
    pub identity: KeyPair,
    /// The CA bundle client certificates must chain to (needed unless `auth` is off).
    pub ca: Option<PathBuf>,
    pub auth: ClientAuth,
}

/// The bytes of every file a config was built from, to tell when a reload has work to do.
#[derive(Debug, Default, PartialEq, Eq)]
struct Snapshot(Vec<Vec<u8>>);

impl Snapshot {
    fn of(paths: &[&Path]) -> Result<Self, TlsError> {
        paths
            .iter()
            .map(|path| read(path, "file"))
            .collect::<Result<_, _>>()
            .map(Snapshot)
    }
}

/// TLS towards servers: a shared, reloadable client config.
#[derive(Clone)]
pub struct ClientTls {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    files: ClientFiles,
    server_name: Option<ServerName<'static>>,
    config: ArcSwap<rustls::ClientConfig>,
    loaded: Mutex<Snapshot>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

/// Why a TLS link to a peer failed: the handshake or a TLS alert on an established link.
#[derive(Debug, thiserror::Error)]
#[error("TLS with {peer} (certificate checked for {name}): {cause}")]
pub struct HandshakeError {
    pub peer: String,
    pub name: String,
    pub cause: String,
}

impl ClientTls {
    /// Loads the files; fails when any is missing, unreadable or not a usable certificate.
    pub fn load(files: ClientFiles) -> Result<Self, TlsError> {
        let server_name = match &files.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| TlsError::ServerName(name.clone()))?,
            ),
            None => None,
        };
        let (config, snapshot) = build_client(&files)?;
        Ok(Self {
            inner: Arc::new(ClientInner {
                files,
                server_name,
                config: ArcSwap::from_pointee(config),
                loaded: Mutex::new(snapshot),
            }),
        })
    }

    /// Rebuilds the config when a file changed. `Ok(true)`: a new config is in use for new
    /// connections; an error keeps the old one.
    pub fn reload(&self) -> Result<bool, TlsError> {
        reload_with(&self.inner.loaded, client_paths(&self.inner.files), || {
            let (config, snapshot) = build_client(&self.inner.files)?;
            self.inner.config.store(Arc::new(config));
            Ok(snapshot)
        })
    }

    /// The name `host`'s certificate is checked against.
    fn name_for(&self, host: &str) -> Result<ServerName<'static>, HandshakeError> {
        match &self.inner.server_name {
            Some(name) => Ok(name.clone()),
            None => ServerName::try_from(host.to_owned()).map_err(|_| HandshakeError {
                peer: host.to_owned(),
                name: host.to_owned(),
                cause: "the host is neither a DNS name nor an IP address".to_owned(),
            }),
        }
    }

    /// The name a peer at `host` is checked for, as error messages show it.
    pub fn checked_name(&self, host: &str) -> String {
        self.name_for(host)
            .map_or_else(|_| host.to_owned(), |name| name.to_str().into_owned())
    }

    /// Runs the handshake over an established TCP stream to `host:port`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
        port: u16,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, HandshakeError> {
        let name = self.name_for(host)?;
        let connector = tokio_rustls::TlsConnector::from(self.inner.config.load_full());
        let shown = name.to_str().into_owned();
        connector
            .connect(name, tcp)
            .await
            .map_err(|error| HandshakeError {
                peer: format!("{host}:{port}"),
                name: shown,
                cause: cause_of(&error),
            })
    }
}

fn client_paths(files: &ClientFiles) -> Vec<&Path> {
    let mut paths = vec![files.ca.as_path()];
    if let Some(identity) = &files.identity {
        paths.push(&identity.cert);
        paths.push(&identity.key);
    }
    paths
}

fn build_client(files: &ClientFiles) -> Result<(rustls::ClientConfig, Snapshot), TlsError> {
    let snapshot = Snapshot::of(&client_paths(files))?;
    let roots = roots(&files.ca)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match &files.identity {
        Some(identity) => {
            let (chain, key) = key_pair(identity)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::Pair {
                    cert: identity.cert.clone(),
                    key: identity.key.clone(),
                    source,
                })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok((config, snapshot))
}

/// TLS for the coordinator's clients: a reloadable server config.
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<ServerInner>,
}

struct ServerInner {
    files: ServerFiles,
    config: ArcSwap<rustls::ServerConfig>,
    loaded: Mutex<Snapshot>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.inner.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files; fails when any is missing or unusable, or when client certificates are
    /// to be verified without a CA.
    pub fn load(files: ServerFiles) -> Result<Self, TlsError> {
        let (config, snapshot) = build_server(&files)?;
        Ok(Self {
            inner: Arc::new(ServerInner {
                files,
                config: ArcSwap::from_pointee(config),
                loaded: Mutex::new(snapshot),
            }),
        })
    }

    /// Rebuilds the config when a file changed (see [`ClientTls::reload`]).
    pub fn reload(&self) -> Result<bool, TlsError> {
        reload_with(&self.inner.loaded, server_paths(&self.inner.files), || {
            let (config, snapshot) = build_server(&self.inner.files)?;
            self.inner.config.store(Arc::new(config));
            Ok(snapshot)
        })
    }

    /// Runs the server side of the handshake with the config current now.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
        tokio_rustls::TlsAcceptor::from(self.inner.config.load_full())
            .accept(tcp)
            .await
    }
}

fn server_paths(files: &ServerFiles) -> Vec<&Path> {
    let mut paths = vec![files.identity.cert.as_path(), &files.identity.key];
    if let Some(ca) = &files.ca {
        paths.push(ca);
    }
    paths
}

fn build_server(files: &ServerFiles) -> Result<(rustls::ServerConfig, Snapshot), TlsError> {
    let snapshot = Snapshot::of(&server_paths(files))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match (files.auth, &files.ca) {
        (ClientAuth::Off, _) => builder.with_no_client_auth(),
        (auth, Some(ca)) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots(ca)?.into(), provider());
            let verifier = match auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|source| TlsError::Verifier {
                path: ca.clone(),
                source,
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        (_, None) => return Err(TlsError::NoClientCa),
    };
    let (chain, key) = key_pair(&files.identity)?;
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Pair {
            cert: files.identity.cert.clone(),
            key: files.identity.key.clone(),
            source,
        })?;
    Ok((config, snapshot))
}

/// The shared reload step: nothing to do when every file still holds what was loaded; else
/// `rebuild` (which publishes) and remember what it loaded.
fn reload_with(
    loaded: &Mutex<Snapshot>,
    paths: Vec<&Path>,
    rebuild: impl FnOnce() -> Result<Snapshot, TlsError>,
) -> Result<bool, TlsError> {
    let current = Snapshot::of(&paths)?;
    let mut loaded = loaded
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if *loaded == current {
        return Ok(false);
    }
    *loaded = rebuild()?;
    Ok(true)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path, what)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what,
            path: path.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca, "the CA bundle")? {
        roots.add(cert).map_err(|source| TlsError::Ca {
            path: ca.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// The chain and key of `pair`, checked to belong together.
fn key_pair(
    pair: &KeyPair,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = certificates(&pair.cert, "the certificate")?;
    let bytes = read(&pair.key, "the key")?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|source| TlsError::Pem {
        what: "the key",
        path: pair.key.clone(),
        source,
    })?;
    // `from_der` checks that the key belongs to the leaf certificate: a rotation caught between
    // writing the certificate and the key fails here, and the old pair stays in use.
    rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider()).map_err(
        |source| TlsError::Pair {
            cert: pair.cert.clone(),
            key: pair.key.clone(),
            source,
        },
    )?;
    Ok((chain, key))
}

/// The TLS cause inside an I/O error (`invalid peer certificate: UnknownIssuer`, `received
/// fatal alert: CertificateRequired`), or the I/O error itself.
/// A hint for the three refusals an operator meets most, naming the flag that fixes each.
pub fn cause_of(error: &std::io::Error) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return error.to_string();
    };
    let hint = match tls {
        rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
            " (the peer requires a client certificate: --tls-cert-file and --tls-key-file)"
        }
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            " (not signed by a CA in --tls-ca-cert-file)"
        }
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        ) => " (dial a name the certificate carries, or check another with --tls-server-name)",
        _ => "",
    };
    format!("{tls}{hint}")
}

/// Whether an I/O error is a TLS failure (an alert, a bad certificate) rather than a plain
/// disconnect.
pub fn is_tls_error(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>())
}
