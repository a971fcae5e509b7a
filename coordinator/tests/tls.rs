//! TLS on both sides of the coordinator, with certificates made per run by the lab's PKI: the
//! coordinator's client server behind its TLS listener, and its client layer (`conn::connect`,
//! what every sentinel link, data-pod probe and lifecycle action uses) dialling it.
//!
//! Every refusal must name the peer and the cause, and never fall back to plaintext.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sentinel_protocol::sentinel::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::sentinel::conn::{self, Access, ConnError};
use valkey_coordinator::service::registry::Registry;
use valkey_coordinator::service::server::{self, Listener, ServerConfig};
use valkey_coordinator::tls::{
    ClientAuth, ClientFiles, ClientTls, KeyPair, ServerFiles, ServerTls, TlsError,
};
use valkey_lab::tls::{CLIENT, CertFiles, LabTls, TlsFiles};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const COORDINATOR: &str = "coordinator";

/// A coordinator's client server on 127.0.0.1 behind a TLS listener, over an empty registry.
struct TlsServer {
    addr: SocketAddr,
    tls: ServerTls,
    shutdown: CancellationToken,
}

impl TlsServer {
    async fn start(pki: &LabTls, identity: &CertFiles, auth: ClientAuth) -> Self {
        let tls = ServerTls::load(ServerFiles {
            identity: pair(identity),
            ca: Some(pki.ca_cert().to_owned()),
            auth,
        })
        .expect("the server's certificate loads");
        let tcp = TcpListener::bind((LOOPBACK, 0)).await.expect("bind");
        let addr = tcp.local_addr().expect("bound");
        let registry = Arc::new(Registry::new(&["mymaster".to_owned()], 3));
        let mut config = ServerConfig::new("0".repeat(40));
        config.watch_masters = false;
        let shutdown = CancellationToken::new();
        tokio::spawn(server::run(
            vec![Listener {
                tcp,
                tls: Some(tls.clone()),
            }],
            Arc::new(config),
            registry,
            shutdown.clone(),
        ));
        Self {
            addr,
            tls,
            shutdown,
        }
    }

    fn addr(&self) -> Addr {
        Addr::from(self.addr)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn pair(files: &CertFiles) -> KeyPair {
    KeyPair {
        cert: files.cert.clone(),
        key: files.key.clone(),
    }
}

fn pki(dir: &Path) -> LabTls {
    let mut pki = LabTls::generate(dir, &[LOOPBACK]).expect("a CA");
    pki.issue(COORDINATOR, &[LOOPBACK])
        .expect("the server's pair");
    pki.issue(CLIENT, &[]).expect("the client's pair");
    pki
}

fn client(ca: &Path, identity: Option<&TlsFiles>, server_name: Option<&str>) -> ClientTls {
    ClientTls::load(ClientFiles {
        ca: ca.to_owned(),
        identity: identity.map(|files| pair(&files.identity())),
        server_name: server_name.map(str::to_owned),
    })
    .expect("the client's files load")
}

fn access(tls: ClientTls) -> Access {
    Access {
        credentials: None,
        tls: Some(tls),
    }
}

/// Connects and sends `PING`: `Ok` only for a `PONG` over a verified TLS link.
async fn ping(server: &Addr, access: &Access) -> Result<(), ConnError> {
    let mut connection =
        tokio::time::timeout(Duration::from_secs(5), conn::connect(server, access))
            .await
            .expect("the handshake ends within 5 s")?;
    let reply = tokio::time::timeout(Duration::from_secs(5), connection.call(&["PING"]))
        .await
        .expect("a reply within 5 s")?;
    assert!(is_pong(&reply), "PING answers PONG, got {reply:?}");
    Ok(())
}

fn is_pong(reply: &Value) -> bool {
    matches!(reply, Value::Str(text) if text.as_ref() == b"PONG")
}

/// The refusal a TLS failure must be: `ConnError::Tls`, naming the peer and saying `cause`.
fn assert_refused(outcome: Result<(), ConnError>, peer: &Addr, cause: &str) {
    let error = outcome.expect_err("the link must be refused");
    let text = error.to_string();
    assert!(
        matches!(error, ConnError::Tls(_)),
        "a TLS error, got {text}"
    );
    assert!(text.contains(&peer.to_string()), "names the peer: {text}");
    assert!(text.contains(cause), "says {cause:?}: {text}");
    eprintln!("refused as expected: {text}");
}

/// A directory removed when the test ends.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "coordinator-tls-{name}-{}",
            valkey_coordinator::addr::RunId::random().as_str()
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A PKI made in a fresh directory and a server with its coordinator certificate that requires
/// a client certificate: the setup of the tests that only need a TLS server that works.
async fn served_with_lab_certificates(name: &str) -> (Scratch, LabTls, TlsServer) {
    let dir = Scratch::new(name);
    let pki = pki(&dir.0);
    let server = TlsServer::start(
        &pki,
        &pki.volume(COORDINATOR).expect("issued").identity(),
        ClientAuth::Required,
    )
    .await;
    (dir, pki, server)
}

#[tokio::test]
async fn a_client_with_the_lab_ca_and_its_certificate_is_served_and_plaintext_gets_nothing() {
    let (_dir, pki, server) = served_with_lab_certificates("served").await;
    let tls = client(pki.ca_cert(), pki.volume(CLIENT), None);
    ping(&server.addr(), &access(tls))
        .await
        .expect("served over TLS");

    // The same port spoken to in plaintext: the bytes are not a ClientHello, the handshake
    // fails and the connection closes without a RESP answer.
    let mut raw = TcpStream::connect(server.addr).await.expect("TCP connects");
    raw.write_all(b"PING\r\n").await.expect("written");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("PONG"),
        "a plaintext PING must not be answered: {answer:?} ({read:?})"
    );
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_when_one_is_required_and_served_when_optional() {
    let dir = Scratch::new("client-cert");
    let pki = pki(&dir.0);
    let identity = pki.volume(COORDINATOR).expect("issued").identity();
    let anonymous = access(client(pki.ca_cert(), None, None));

    let required = TlsServer::start(&pki, &identity, ClientAuth::Required).await;
    // Under TLS 1.3 the server's verdict on the client arrives after the client's handshake,
    // with the first reply: the error still names the peer and the alert.
    assert_refused(
        ping(&required.addr(), &anonymous).await,
        &required.addr(),
        "CertificateRequired",
    );

    let optional = TlsServer::start(&pki, &identity, ClientAuth::Optional).await;
    ping(&optional.addr(), &anonymous)
        .await
        .expect("optional client authentication serves a client without a certificate");

    // A client certificate from another CA is refused even where certificates are optional.
    let foreign = pki.negative().foreign.clone();
    let stranger = access(
        ClientTls::load(ClientFiles {
            ca: pki.ca_cert().to_owned(),
            identity: Some(pair(&foreign)),
            server_name: None,
        })
        .expect("loads"),
    );
    assert_refused(
        ping(&optional.addr(), &stranger).await,
        &optional.addr(),
        "alert",
    );
}

#[tokio::test]
async fn a_server_certificate_of_another_ca_expired_or_for_another_name_is_refused_by_cause() {
    let dir = Scratch::new("server-cert");
    let pki = pki(&dir.0);
    let negative = pki.negative().clone();
    let tls = client(pki.ca_cert(), pki.volume(CLIENT), None);

    let foreign = TlsServer::start(&pki, &negative.foreign, ClientAuth::Required).await;
    assert_refused(
        ping(&foreign.addr(), &access(tls.clone())).await,
        &foreign.addr(),
        "UnknownIssuer",
    );

    let expired = TlsServer::start(&pki, &negative.expired, ClientAuth::Required).await;
    assert_refused(
        ping(&expired.addr(), &access(tls.clone())).await,
        &expired.addr(),
        "expired",
    );

    let wrong = TlsServer::start(&pki, &negative.wrong_name, ClientAuth::Required).await;
    assert_refused(
        ping(&wrong.addr(), &access(tls.clone())).await,
        &wrong.addr(),
        "not valid for name",
    );
    // The certificate carries a service name but not the address dialled: --tls-server-name
    // checks that name instead, and the chain is still verified.
    let by_name = client(
        pki.ca_cert(),
        pki.volume(CLIENT),
        Some("wrong-name.invalid"),
    );
    ping(&wrong.addr(), &access(by_name))
        .await
        .expect("the name override verifies the certificate's own name");

    // A client trusting only another CA refuses the lab's good certificate too.
    let good = TlsServer::start(
        &pki,
        &pki.volume(COORDINATOR).expect("issued").identity(),
        ClientAuth::Required,
    )
    .await;
    let distrusting = client(&negative.other_ca, pki.volume(CLIENT), None);
    assert_refused(
        ping(&good.addr(), &access(distrusting)).await,
        &good.addr(),
        "UnknownIssuer",
    );
}

/// The leaf certificate a new handshake with `server` is shown.
async fn leaf_of(server: &TlsServer, tls: &ClientTls) -> Vec<u8> {
    let tcp = TcpStream::connect(server.addr).await.expect("TCP connects");
    let stream = tls
        .connect(tcp, &server.addr.ip().to_string(), server.addr.port())
        .await
        .expect("handshake");
    let (_, session) = stream.get_ref();
    session.peer_certificates().expect("a chain")[0].to_vec()
}

#[tokio::test]
async fn a_certificate_rotated_by_symlink_swap_serves_new_connections_and_old_ones_keep_working() {
    let dir = Scratch::new("rotation");
    let mut pki = pki(&dir.0);
    let server = TlsServer::start(
        &pki,
        &pki.volume(COORDINATOR).expect("issued").identity(),
        ClientAuth::Required,
    )
    .await;
    let tls = client(pki.ca_cert(), pki.volume(CLIENT), None);
    let before = leaf_of(&server, &tls).await;
    let mut established = conn::connect(&server.addr(), &access(tls.clone()))
        .await
        .expect("connects");

    pki.rotate(COORDINATOR)
        .expect("rotated as the kubelet does");
    assert!(
        server.tls.reload().expect("the new pair loads"),
        "the swap is seen"
    );
    assert!(
        !server.tls.reload().expect("still loads"),
        "unchanged files are not reloaded again"
    );
    let after = leaf_of(&server, &tls).await;
    assert_ne!(
        before, after,
        "a new handshake is shown the new certificate"
    );
    let reply = established
        .call(&["PING"])
        .await
        .expect("the old link still works");
    assert!(is_pong(&reply), "{reply:?}");

    // A rotation that lands a key that is not the certificate's: the reload fails, says which
    // files, and the loaded pair stays in use.
    let negative = pki.negative().clone();
    let mismatched = CertFiles {
        cert: negative.wrong_name.cert.clone(),
        key: negative.expired.key.clone(),
    };
    pki.install(COORDINATOR, &mismatched).expect("swapped in");
    let error = server
        .tls
        .reload()
        .expect_err("a mismatched pair must not load");
    assert!(matches!(error, TlsError::Pair { .. }), "{error}");
    assert_eq!(
        leaf_of(&server, &tls).await,
        after,
        "the last good pair is kept"
    );
}

#[tokio::test]
async fn unusable_files_are_refused_at_load_naming_the_file() {
    let dir = Scratch::new("load");
    let pki = pki(&dir.0);
    let missing = dir.0.join("absent.crt");
    let error = ClientTls::load(ClientFiles {
        ca: missing.clone(),
        identity: None,
        server_name: None,
    })
    .expect_err("a missing CA");
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );

    let key_as_ca = pki.volume(CLIENT).expect("issued").key.clone();
    let error = ClientTls::load(ClientFiles {
        ca: key_as_ca.clone(),
        identity: None,
        server_name: None,
    })
    .expect_err("a key is no CA");
    assert!(
        error.to_string().contains("holds no certificate"),
        "{error}"
    );

    let error = ServerTls::load(ServerFiles {
        identity: pair(&pki.volume(COORDINATOR).expect("issued").identity()),
        ca: None,
        auth: ClientAuth::Required,
    })
    .expect_err("verifying clients needs a CA");
    assert!(error.to_string().contains("--tls-ca-cert-file"), "{error}");
}

#[tokio::test]
async fn a_rotated_client_certificate_is_presented_on_new_links_and_old_links_keep_working() {
    let dir = Scratch::new("client-rotation");
    let mut pki = pki(&dir.0);
    let server = TlsServer::start(
        &pki,
        &pki.volume(COORDINATOR).expect("issued").identity(),
        ClientAuth::Required,
    )
    .await;
    let tls = client(pki.ca_cert(), pki.volume(CLIENT), None);
    let mut established = conn::connect(&server.addr(), &access(tls.clone()))
        .await
        .expect("connects");
    ping(&server.addr(), &access(tls.clone()))
        .await
        .expect("served");

    // The kubelet swaps an expired certificate into the client's volume: the next link presents
    // it (and is refused for it), which shows the reload reached new connections.
    let expired = pki.negative().expired.clone();
    pki.install(CLIENT, &expired).expect("swapped in");
    assert!(
        tls.reload().expect("an expired pair still loads"),
        "the swap is seen"
    );
    assert_refused(
        ping(&server.addr(), &access(tls.clone())).await,
        &server.addr(),
        "alert",
    );
    let reply = established
        .call(&["PING"])
        .await
        .expect("the old link still works");
    assert!(is_pong(&reply), "{reply:?}");

    pki.rotate(CLIENT).expect("a fresh certificate");
    assert!(tls.reload().expect("loads"), "the second swap is seen");
    ping(&server.addr(), &access(tls))
        .await
        .expect("the fresh certificate is accepted on a new link");
}

/// A pipelined batch larger than one TLS record: its requests arrive in several records, one of
/// them cut between two, and the replies come back whole and in order. Each `CLIENT GETNAME`
/// answers the name set just before it, so a lost, repeated or reordered request shows.
#[tokio::test]
async fn a_pipelined_batch_spanning_several_tls_records_is_answered_in_order() {
    let (_dir, pki, server) = served_with_lab_certificates("pipelined").await;
    let tls = client(pki.ca_cert(), pki.volume(CLIENT), None);
    let mut connection = conn::connect(&server.addr(), &access(tls))
        .await
        .expect("served over TLS");
    // 77 bytes per pair of requests: 2,000 pairs are 154 KB, ten records of at most 16 KiB.
    let names: Vec<String> = (0..2_000).map(|i| format!("client-{i:05}")).collect();
    for name in &names {
        connection.queue(&["CLIENT", "SETNAME", name.as_str()]);
        connection.queue(&["CLIENT", "GETNAME"]);
    }
    connection.flush().await.expect("written");
    for name in &names {
        let set = tokio::time::timeout(Duration::from_secs(5), connection.next_frame())
            .await
            .expect("a reply within 5 s")
            .expect("a reply");
        assert!(
            matches!(Value::from(&set), Value::Str(ref ok) if ok.as_ref() == b"OK"),
            "SETNAME {name} answers OK, got {set:?}"
        );
        let got = connection.next_frame().await.expect("a reply");
        assert!(
            matches!(Value::from(&got), Value::Str(ref text) if text.as_ref() == name.as_bytes()),
            "GETNAME after SETNAME {name} answers it, got {got:?}"
        );
    }
    ping(
        &server.addr(),
        &access(client(pki.ca_cert(), pki.volume(CLIENT), None)),
    )
    .await
    .expect("still served");
}
