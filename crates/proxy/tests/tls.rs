//! TLS on the client leg, with psql, pgbench and raw sockets: certificates
//! from a test CA made with rcgen, verified by libpq (`sslmode=verify-full`).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::{proxy_config, run, try_connect, Env, Setup, DB, PASSWORD, USER};
use config::{AuthMethod, ClientCertMode, Tls, TlsClientMode, User};
use proxy::Proxy;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::{build, decode_frame, Frame};

/// Upper bound for any single exchange in these tests.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A test CA and a certificate for `localhost` and 127.0.0.1 signed by it,
/// as PEM files in their own directory.
struct Certs {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    ca_der: CertificateDer<'static>,
    cert: PathBuf,
    key: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Certs {
    fn new() -> Certs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pgcoalesce test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        let write = |name: &str, pem: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        Certs {
            ca: write("ca.pem", ca.pem()),
            ca_der: ca.der().clone(),
            cert: write("server.crt", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            _dir: dir,
            issuer: ca,
        }
    }

    /// A client certificate for common name `cn` signed by this CA, as
    /// libpq's `sslcert=… sslkey=…` (the key readable by its owner only,
    /// as libpq demands).
    fn client(&self, cn: &str) -> String {
        self.client_with_serial(cn, rand_serial())
    }

    /// [`client`](Self::client) with the given serial number.
    fn client_with_serial(&self, cn: &str, serial: u64) -> String {
        use std::os::unix::fs::PermissionsExt;
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("client cert");
        let dir = self.ca.parent().expect("certs dir");
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let cert_path = dir.join(format!("client{n}.crt"));
        let key_path = dir.join(format!("client{n}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write client cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write client key");
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .expect("chmod key");
        format!(
            "sslcert={} sslkey={}",
            cert_path.display(),
            key_path.display()
        )
    }

    fn tls(&self, client_mode: TlsClientMode) -> Tls {
        Tls {
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            client_mode,
            ca_file: None,
            crl_file: None,
            client_cert: ClientCertMode::None,
        }
    }

    /// A PEM revocation list of this CA naming the serial numbers `revoked`.
    fn crl(&self, revoked: &[u64]) -> PathBuf {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|&serial| RevokedCertParams {
                    serial_number: SerialNumber::from(serial),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("CRL");
        let path = self.ca.with_file_name("revoked.crl");
        std::fs::write(&path, crl.pem().expect("CRL PEM")).expect("write CRL");
        path
    }

    /// TLS that asks clients for certificates of this CA, under `rule`.
    fn tls_with_client_certs(&self, rule: ClientCertMode) -> Tls {
        Tls {
            ca_file: Some(self.ca.clone()),
            client_cert: rule,
            ..self.tls(TlsClientMode::Allow)
        }
    }
}

/// A second proxy, with `tls`, in front of `env`'s Postgres.
async fn tls_proxy(env: &Env, setup: &Setup, tls: Tls) -> Proxy {
    let mut config = proxy_config(&env.pg, setup);
    config.tls = Some(tls);
    Proxy::start(config).await.expect("start TLS proxy")
}

/// libpq connection string through `addr` as `localhost`, plus `extra`.
fn conninfo(addr: SocketAddr, extra: &str) -> String {
    format!(
        "host=localhost port={} user={USER} password={PASSWORD} dbname={DB} {extra}",
        addr.port()
    )
}

/// psql running `\conninfo` and a query; (success, stdout, stderr).
fn psql_conninfo(conn: &str) -> (bool, String, String) {
    tokio::task::block_in_place(|| {
        run(
            "psql",
            &[
                "-X",
                "-A",
                "-t",
                conn,
                "-c",
                "\\conninfo",
                "-c",
                "SELECT 'answer ' || (40 + 2)",
            ],
            None,
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_mode_serves_verified_tls_and_plain_clients() {
    let env = Env::start(Setup::default()).await;
    let certs = Certs::new();
    let proxy = tls_proxy(&env, &Setup::default(), certs.tls(TlsClientMode::Allow)).await;
    let ca = certs.ca.display().to_string();

    let conn = conninfo(
        proxy.addr(),
        &format!("sslmode=verify-full sslrootcert={ca}"),
    );
    let (ok, out, err) = psql_conninfo(&conn);
    assert!(ok, "psql verify-full failed: {err}");
    assert!(out.contains("SSL connection"), "stdout: {out}");
    assert!(out.lines().any(|l| l == "answer 42"), "stdout: {out}");

    // libpq's default (prefer) takes TLS when offered.
    let (ok, out, err) = psql_conninfo(&conninfo(proxy.addr(), &format!("sslrootcert={ca}")));
    assert!(ok, "psql prefer failed: {err}");
    assert!(out.contains("SSL connection"), "stdout: {out}");

    let (ok, out, err) = psql_conninfo(&conninfo(proxy.addr(), "sslmode=disable"));
    assert!(ok, "psql sslmode=disable failed: {err}");
    assert!(!out.contains("SSL connection"), "stdout: {out}");
    assert!(out.lines().any(|l| l == "answer 42"), "stdout: {out}");

    // A certificate for another name fails libpq's verification.
    let other = format!(
        "host=127.0.0.2 port={} user={USER} password={PASSWORD} dbname={DB} \
         sslmode=verify-full sslrootcert={ca}",
        proxy.addr().port()
    );
    let (ok, _, _) = psql_conninfo(&other);
    assert!(!ok, "verify-full accepted a certificate for another host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_mode_refuses_plain_logins_with_28000() {
    let env = Env::start(Setup::default()).await;
    let certs = Certs::new();
    let proxy = tls_proxy(&env, &Setup::default(), certs.tls(TlsClientMode::Require)).await;
    let ca = certs.ca.display().to_string();

    let (ok, _, err) = psql_conninfo(&conninfo(proxy.addr(), "sslmode=disable"));
    assert!(!ok, "a plain-text login was accepted");
    assert!(err.contains("TLS is required"), "stderr: {err}");
    let plain = format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DB}",
        proxy.addr().port()
    );
    let Err(e) = try_connect(&plain).await else {
        panic!("a plain-text tokio-postgres login was accepted");
    };
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("28000"),
        "{e}"
    );

    let (ok, out, err) = psql_conninfo(&conninfo(
        proxy.addr(),
        &format!("sslmode=require sslrootcert={ca}"),
    ));
    assert!(ok, "psql sslmode=require failed: {err}");
    assert!(out.contains("SSL connection"), "stdout: {out}");
    assert!(out.lines().any(|l| l == "answer 42"), "stdout: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tls_section_ssl_is_declined() {
    let env = Env::start(Setup::default()).await;
    let (ok, _, err) = psql_conninfo(&conninfo(env.addr(), "sslmode=require"));
    assert!(!ok, "sslmode=require succeeded without TLS");
    assert!(err.contains("server does not support SSL"), "stderr: {err}");

    let (ok, out, err) = psql_conninfo(&conninfo(env.addr(), "sslmode=prefer"));
    assert!(ok, "psql sslmode=prefer failed: {err}");
    assert!(!out.contains("SSL connection"), "stdout: {out}");
    assert!(out.lines().any(|l| l == "answer 42"), "stdout: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_after_ssl_request_and_bad_handshakes_are_refused() {
    let env = Env::start(Setup::default()).await;
    let certs = Certs::new();
    let proxy = tls_proxy(&env, &Setup::default(), certs.tls(TlsClientMode::Allow)).await;
    let url = format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{DB}",
        proxy.addr().port()
    );
    let good = try_connect(&url).await.expect("good client");

    // SSLRequest and StartupMessage in one write: the startup was sent in
    // plain text before any handshake and must not be trusted.
    let mut bad = TcpStream::connect(proxy.addr()).await.expect("connect");
    let mut bytes = SSL_REQUEST.to_vec();
    bytes.extend_from_slice(&build::startup_message(&[("user", USER), ("database", DB)]));
    bad.write_all(&bytes).await.expect("write");
    let mut reply = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, bad.read_to_end(&mut reply))
        .await
        .expect("the proxy answers and closes")
        .expect("read");
    assert_eq!(reply.first(), Some(&b'E'), "reply: {reply:?}");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("C08P01"), "reply: {text}");
    assert!(
        text.contains("received unencrypted data after SSL request"),
        "reply: {text}"
    );

    // 'S', then something that is not a ClientHello: the connection ends.
    let mut bad = TcpStream::connect(proxy.addr()).await.expect("connect");
    bad.write_all(&SSL_REQUEST).await.expect("write");
    let mut s = [0u8; 1];
    bad.read_exact(&mut s).await.expect("read S");
    assert_eq!(&s, b"S");
    bad.write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(IO_TIMEOUT, bad.read_to_end(&mut rest))
        .await
        .expect("the proxy closes after a bad handshake");
    assert!(!rest.starts_with(b"E"), "plain text after S: {rest:?}");

    // 'S', then the client hangs up mid-handshake.
    let mut bad = TcpStream::connect(proxy.addr()).await.expect("connect");
    bad.write_all(&SSL_REQUEST).await.expect("write");
    bad.read_exact(&mut s).await.expect("read S");
    drop(bad);

    // A second SSLRequest inside TLS is a protocol violation.
    let mut tls = tls_connect(proxy.addr(), &certs).await;
    tls.write_all(&SSL_REQUEST).await.expect("write");
    tls.flush().await.expect("flush");
    let e = next_frame(&mut tls, &mut BytesMut::new())
        .await
        .expect("an error");
    assert_eq!(sqlstate(&e).as_deref(), Some("08P01"));

    // Meanwhile the established client and new ones are served.
    let row = good.query_one("SELECT 7", &[]).await.expect("good query");
    assert_eq!(row.get::<_, i32>(0), 7);
    let fresh = try_connect(&url).await.expect("new client");
    let row = fresh.query_one("SELECT 8", &[]).await.expect("new query");
    assert_eq!(row.get::<_, i32>(0), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssenc_then_ssl_request_and_cancels_plain_or_over_tls() {
    let trust = || Setup {
        client_auth: AuthMethod::Trust,
        ..Setup::default()
    };
    let env = Env::start(trust()).await;
    let certs = Certs::new();
    // Require: a plain-text cancel is still accepted (libpq before 17 never
    // encrypts one).
    let proxy = tls_proxy(&env, &trust(), certs.tls(TlsClientMode::Require)).await;

    for cancel_over_tls in [false, true] {
        // A session over TLS, reached the way libpq's gssencmode=prefer does:
        // GSSENCRequest ('N'), then SSLRequest.
        let mut session = tls_connect_after_gssenc(proxy.addr(), &certs).await;
        let mut buf = BytesMut::new();
        session
            .write_all(&build::startup_message(&[("user", USER), ("database", DB)]))
            .await
            .expect("startup");
        session.flush().await.expect("flush");
        let (pid, secret) = login(&mut session, &mut buf).await;
        session
            .write_all(build::query("SELECT pg_sleep(30)").raw())
            .await
            .expect("query");
        session.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(300)).await;

        let cancel = build::cancel_request(pid, secret);
        if cancel_over_tls {
            let mut c = tls_connect(proxy.addr(), &certs).await;
            c.write_all(&cancel).await.expect("cancel");
            c.flush().await.expect("flush");
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(IO_TIMEOUT, c.read_to_end(&mut sink)).await;
        } else {
            let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
            c.write_all(&cancel).await.expect("cancel");
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(IO_TIMEOUT, c.read_to_end(&mut sink)).await;
        }
        let code = loop {
            let f = next_frame(&mut session, &mut buf)
                .await
                .expect("a reply to the query");
            if f.tag() == b'E' {
                break sqlstate(&f);
            }
            assert_ne!(f.tag(), b'Z', "the query was not canceled");
        };
        assert_eq!(
            code.as_deref(),
            Some("57014"),
            "over TLS: {cancel_over_tls}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_over_tls_has_no_failures() {
    let env = Env::start(Setup::default()).await;
    let certs = Certs::new();
    let proxy = tls_proxy(&env, &Setup::default(), certs.tls(TlsClientMode::Require)).await;
    let script = certs.ca.with_file_name("select.sql");
    std::fs::write(&script, "SELECT 1;\n").expect("script");
    let conn = conninfo(
        proxy.addr(),
        &format!("sslmode=verify-full sslrootcert={}", certs.ca.display()),
    );
    let script = script.display().to_string();
    let (ok, out, err) = tokio::task::block_in_place(|| {
        run(
            "pgbench",
            &[
                "-n", "-c", "4", "-j", "4", "-t", "200", "-f", &script, &conn,
            ],
            None,
        )
    });
    assert!(ok, "pgbench: {err}\n{out}");
    assert!(
        out.contains("number of transactions actually processed: 800/800"),
        "{out}"
    );
    assert!(
        out.contains("number of failed transactions: 0 (0.000%)"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// Raw TLS client
// ---------------------------------------------------------------------------

type ClientTls = tokio_rustls::client::TlsStream<TcpStream>;

/// SSLRequest, 'S', and a verified handshake for `localhost`.
async fn tls_connect(addr: SocketAddr, certs: &Certs) -> ClientTls {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    handshake(tcp, certs).await
}

/// GSSENCRequest ('N' expected), then as [`tls_connect`].
async fn tls_connect_after_gssenc(addr: SocketAddr, certs: &Certs) -> ClientTls {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    // GSSENCRequest: length 8, code 80877104.
    tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])
        .await
        .expect("gssenc");
    let mut n = [0u8; 1];
    tcp.read_exact(&mut n).await.expect("read N");
    assert_eq!(&n, b"N");
    handshake(tcp, certs).await
}

async fn handshake(mut tcp: TcpStream, certs: &Certs) -> ClientTls {
    tcp.write_all(&SSL_REQUEST).await.expect("ssl request");
    let mut s = [0u8; 1];
    tcp.read_exact(&mut s).await.expect("read S");
    assert_eq!(&s, b"S");
    client_handshake(tcp, certs, &[]).await.expect("handshake")
}

/// The client side of a TLS handshake on `tcp`, trusting `certs`' CA and
/// offering the ALPN protocols `alpn`.
async fn client_handshake(
    tcp: TcpStream,
    certs: &Certs,
    alpn: &[&[u8]],
) -> std::io::Result<ClientTls> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.ca_der.clone()).expect("CA");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from("localhost").expect("name");
    tokio::time::timeout(
        IO_TIMEOUT,
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
}

/// The next backend message, or `None` at end of stream.
async fn next_frame<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut) -> Option<Frame> {
    loop {
        if let Some(f) = decode_frame(buf, 1 << 20).expect("valid frame") {
            return Some(f);
        }
        let n = tokio::time::timeout(IO_TIMEOUT, s.read_buf(buf))
            .await
            .expect("the proxy answers in time")
            .ok()?;
        if n == 0 {
            return None;
        }
    }
}

/// Reads a trust login to ReadyForQuery; the backend key.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, buf: &mut BytesMut) -> (i32, i32) {
    let mut key = None;
    loop {
        let f = next_frame(s, buf).await.expect("login reply");
        match f.tag() {
            b'K' => {
                let b = f.body();
                let word = |i: usize| i32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                key = Some((word(0), word(4)));
            }
            b'Z' => return key.expect("BackendKeyData before ReadyForQuery"),
            b'E' => panic!("login failed: {:?}", sqlstate(&f)),
            _ => {}
        }
    }
}

/// The SQLSTATE ('C' field) of an ErrorResponse.
fn sqlstate(f: &Frame) -> Option<String> {
    assert_eq!(f.tag(), b'E', "not an ErrorResponse");
    f.body()
        .split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(b"C"))
        .map(|c| String::from_utf8_lossy(c).into_owned())
}

#[test]
fn proxy_start_names_a_missing_or_bad_pem_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").expect("write");
    let certs = Certs::new();
    let cases: [(&Path, &Path, &str); 3] = [
        (&dir.path().join("missing.crt"), &certs.key, "missing.crt"),
        (&certs.cert, &garbage, "garbage.pem"),
        // A certificate where the key belongs.
        (&certs.cert, &certs.cert, "no PRIVATE KEY"),
    ];
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for (cert, key, needle) in cases {
        let mut config =
            config::Config::from_upstream_url("postgres://app@127.0.0.1:1/app").expect("config");
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.tls = Some(Tls {
            cert_file: cert.to_path_buf(),
            key_file: key.to_path_buf(),
            client_mode: TlsClientMode::Allow,
            ca_file: None,
            crl_file: None,
            client_cert: ClientCertMode::None,
        });
        let err = rt
            .block_on(Proxy::start(config))
            .err()
            .expect("start fails");
        let text = err.to_string();
        assert!(text.contains(needle), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_checked_against_the_ca_file() {
    let env = Env::start(Setup::default()).await;
    let certs = Certs::new();
    let ca = certs.ca.display().to_string();
    let verified = format!("sslmode=verify-full sslrootcert={ca}");
    let mine = certs.client(USER);
    let someone_else = certs.client("someone-else");
    let stranger = Certs::new();
    let foreign = stranger.client(USER);

    let full = tls_proxy(
        &env,
        &Setup::default(),
        certs.tls_with_client_certs(ClientCertMode::VerifyFull),
    )
    .await;
    let (ok, out, err) = psql_conninfo(&conninfo(full.addr(), &format!("{verified} {mine}")));
    assert!(ok, "the user's own certificate: {err}");
    assert!(out.lines().any(|l| l == "answer 42"), "stdout: {out}");
    let (ok, _, err) = psql_conninfo(&conninfo(
        full.addr(),
        &format!("{verified} {someone_else}"),
    ));
    assert!(!ok, "a certificate for another name was accepted");
    assert!(
        err.contains("verify-full) failed for user \"app\"") && err.contains("someone-else"),
        "stderr: {err}"
    );
    let (ok, _, err) = psql_conninfo(&conninfo(full.addr(), &verified));
    assert!(!ok, "a login without a certificate was accepted");
    assert!(
        err.contains("requires a valid client certificate"),
        "stderr: {err}"
    );
    let (ok, _, err) = psql_conninfo(&conninfo(full.addr(), "sslmode=disable"));
    assert!(!ok, "a plain-text login was accepted");
    assert!(
        err.contains("requires a valid client certificate"),
        "stderr: {err}"
    );
    // Signed by another CA: the handshake itself fails.
    let (ok, _, err) = psql_conninfo(&conninfo(full.addr(), &format!("{verified} {foreign}")));
    assert!(!ok, "a certificate of another CA was accepted");
    assert!(!err.contains("answer"), "stderr: {err}");
    // The password is still checked.
    let wrong = format!(
        "host=localhost port={} user={USER} password=wrong dbname={DB} {verified} {mine}",
        full.addr().port()
    );
    let (ok, _, err) = psql_conninfo(&wrong);
    assert!(!ok && err.contains("password"), "stderr: {err}");

    // verify-ca: any certificate of the CA will do.
    let ca_only = tls_proxy(
        &env,
        &Setup::default(),
        certs.tls_with_client_certs(ClientCertMode::VerifyCa),
    )
    .await;
    let (ok, _, err) = psql_conninfo(&conninfo(
        ca_only.addr(),
        &format!("{verified} {someone_else}"),
    ));
    assert!(ok, "verify-ca with a certificate for another name: {err}");
    let (ok, _, _) = psql_conninfo(&conninfo(ca_only.addr(), &verified));
    assert!(!ok, "verify-ca without a certificate was accepted");

    // none: a certificate is optional, but one presented is still checked.
    let optional = tls_proxy(
        &env,
        &Setup::default(),
        certs.tls_with_client_certs(ClientCertMode::None),
    )
    .await;
    let (ok, _, err) = psql_conninfo(&conninfo(optional.addr(), &verified));
    assert!(ok, "no certificate where none is required: {err}");
    let (ok, _, _) = psql_conninfo(&conninfo(optional.addr(), &format!("{verified} {foreign}")));
    assert!(!ok, "a certificate of another CA was accepted");
}

/// The user who logs in to the proxy with a client certificate (`auth:
/// cert`); its `password` is only the one the proxy uses upstream.
const CERT_USER: &str = "certapp";
const CERT_USER_UPSTREAM_PASSWORD: &str = "certapp-upstream";

/// psql running `sql` as `conn`, with no password to be had: `-w` (never
/// prompt), no `PGPASSWORD`, no password file. (success, stdout, stderr).
fn psql_without_password(conn: &str, sql: &str) -> (bool, String, String) {
    tokio::task::block_in_place(|| {
        let out = std::process::Command::new("psql")
            .args(["-X", "-A", "-t", "-w", conn, "-c", sql])
            .env_remove("PGPASSWORD")
            .env("PGPASSFILE", "/nonexistent/pgpass")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run psql");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_users_log_in_with_a_certificate_for_their_name() {
    let env = Env::start(Setup::default()).await;
    tokio::task::block_in_place(|| {
        env.pg
            .create_role(CERT_USER, Some(CERT_USER_UPSTREAM_PASSWORD), false)
    })
    .expect("create the cert user's role");
    let certs = Certs::new();
    let mut config = proxy_config(&env.pg, &Setup::default());
    config.users.push(User {
        name: CERT_USER.into(),
        auth: AuthMethod::Cert,
        password: Some(CERT_USER_UPSTREAM_PASSWORD.into()),
        scram_verifier: None,
        server_password: None,
    });
    // Certificates are asked for, required only by the cert user.
    config.tls = Some(certs.tls_with_client_certs(ClientCertMode::None));
    config.validate().expect("valid config");
    let proxy = Proxy::start(config).await.expect("start TLS proxy");
    let verified = format!("sslmode=verify-full sslrootcert={}", certs.ca.display());
    let as_cert_user = |extra: &str| {
        format!(
            "host=localhost port={} user={CERT_USER} dbname={DB} {extra}",
            proxy.addr().port()
        )
    };
    let refusal = format!("certificate authentication failed for user \"{CERT_USER}\"");
    let whoami = "SELECT 'user ' || current_user";

    let mine = certs.client(CERT_USER);
    let (ok, out, err) =
        psql_without_password(&as_cert_user(&format!("{verified} {mine}")), whoami);
    assert!(ok, "the user's own certificate: {err}");
    assert!(
        out.lines().any(|l| l == format!("user {CERT_USER}")),
        "stdout: {out}"
    );

    let someone_else = certs.client(USER);
    let cases = [
        (
            "a certificate for another name",
            format!("{verified} {someone_else}"),
        ),
        ("no certificate", verified.clone()),
        ("plain text", "sslmode=disable".to_owned()),
    ];
    for (case, extra) in cases {
        let (ok, out, err) = psql_without_password(&as_cert_user(&extra), whoami);
        assert!(!ok, "{case}: accepted ({out})");
        assert!(err.contains(&refusal), "{case}: stderr: {err}");
        assert!(
            !err.contains("password"),
            "{case}: a password was asked: {err}"
        );
    }

    // The password user on the same proxy, over TLS and in plain text.
    for extra in [verified.as_str(), "sslmode=disable"] {
        let (ok, out, err) = psql_conninfo(&conninfo(proxy.addr(), extra));
        assert!(ok, "{extra}: the password user: {err}");
        assert!(out.lines().any(|l| l == "answer 42"), "stdout: {out}");
    }
}

/// A TLS handshake at once, without SSLRequest (libpq 17's
/// `sslnegotiation=direct`), offering the ALPN protocols `alpn`.
async fn direct_connect(
    addr: SocketAddr,
    certs: &Certs,
    alpn: &[&[u8]],
) -> std::io::Result<ClientTls> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    client_handshake(tcp, certs, alpn).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_without_ssl_request_needs_the_postgresql_alpn() {
    let trust = || Setup {
        client_auth: AuthMethod::Trust,
        ..Setup::default()
    };
    let env = Env::start(trust()).await;
    let certs = Certs::new();
    // Require: a direct TLS connection counts as TLS.
    let proxy = tls_proxy(&env, &trust(), certs.tls(TlsClientMode::Require)).await;
    let startup = build::startup_message(&[("user", USER), ("database", DB)]);

    let mut direct = direct_connect(proxy.addr(), &certs, &[b"postgresql"])
        .await
        .expect("direct handshake");
    let mut buf = BytesMut::new();
    direct.write_all(&startup).await.expect("startup");
    direct.flush().await.expect("flush");
    login(&mut direct, &mut buf).await;
    direct
        .write_all(build::query("SELECT 40 + 2").raw())
        .await
        .expect("query");
    direct.flush().await.expect("flush");
    let row = loop {
        let f = next_frame(&mut direct, &mut buf).await.expect("reply");
        if f.tag() == b'D' {
            break f;
        }
        assert_ne!(f.tag(), b'E', "query failed: {:?}", sqlstate(&f));
    };
    assert!(row.body().ends_with(b"42"), "row: {:?}", row.body());

    // No ALPN: refused with 08P01 after the handshake, as Postgres 17 does.
    let mut bare = direct_connect(proxy.addr(), &certs, &[])
        .await
        .expect("handshake without ALPN");
    bare.write_all(&startup).await.expect("startup");
    bare.flush().await.expect("flush");
    let e = next_frame(&mut bare, &mut BytesMut::new())
        .await
        .expect("an error");
    assert_eq!(sqlstate(&e).as_deref(), Some("08P01"));
    assert!(String::from_utf8_lossy(e.body()).contains("ALPN"));

    // Only another protocol offered: no handshake at all.
    let other = direct_connect(proxy.addr(), &certs, &[b"http/1.1"]).await;
    assert!(other.is_err(), "a handshake without a common protocol");

    // SSLRequest clients are served as before.
    let ca = certs.ca.display().to_string();
    let (ok, out, err) = psql_conninfo(&conninfo(
        proxy.addr(),
        &format!("sslmode=verify-full sslrootcert={ca}"),
    ));
    assert!(ok, "psql over SSLRequest: {err}");
    assert!(out.lines().any(|l| l == "answer 42"), "stdout: {out}");
}

/// A serial number for a test certificate, unique enough within one test.
fn rand_serial() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_certificate_fails_the_handshake() {
    let env = Env::start(Setup::default()).await;
    let certs = Certs::new();
    let ca = certs.ca.display().to_string();
    let verified = format!("sslmode=verify-full sslrootcert={ca}");
    let good = certs.client_with_serial(USER, 7);
    let revoked = certs.client_with_serial(USER, 8);
    let tls = Tls {
        crl_file: Some(certs.crl(&[8])),
        ..certs.tls_with_client_certs(ClientCertMode::VerifyFull)
    };
    let proxy = tls_proxy(&env, &Setup::default(), tls).await;
    let (ok, out, err) = psql_conninfo(&conninfo(proxy.addr(), &format!("{verified} {good}")));
    assert!(ok, "a certificate the CRL does not list: {err}");
    assert!(out.lines().any(|l| l == "answer 42"), "stdout: {out}");
    let (ok, _, err) = psql_conninfo(&conninfo(proxy.addr(), &format!("{verified} {revoked}")));
    assert!(!ok, "a revoked certificate was accepted");
    assert!(err.contains("revoked"), "stderr: {err}");
}
