//! TLS on the server leg: the proxy's own connections to Postgres, per
//! database `tls` mode (libpq's sslmode semantics), against real servers
//! with `ssl = on` and certificates from test CAs made with rcgen, and
//! against a fake server for the SSLRequest exchange itself.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{try_connect, PASSWORD, USER};
use config::{AuthMethod, Config, Database, PoolMode, ServerTlsMode, User};
use pgtest::{Cluster, ClusterOptions, HbaAuth};
use proxy::Proxy;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The upstream database (and role) on every test cluster.
const UPSTREAM_DB: &str = "app";
/// Does this backend use TLS, as Postgres sees it.
const SSL_IN_USE: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// A test CA writing server certificates into its own directory.
struct Ca {
    dir: tempfile::TempDir,
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pem: PathBuf,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, issuer.pem()).expect("write CA");
        Ca { dir, issuer, pem }
    }

    /// A server certificate for `names` (DNS names or IP addresses) and its
    /// key, as PEM files.
    fn server_cert(&self, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("server key");
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("server params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let tag = names.join("_").replace(['.', ':'], "-");
        let cert_path = self.dir.path().join(format!("{tag}.crt"));
        let key_path = self.dir.path().join(format!("{tag}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }

    /// A client certificate for common name `cn` and its key, as PEM files.
    fn client_cert(&self, cn: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let cert_path = self.dir.path().join(format!("client-{cn}.crt"));
        let key_path = self.dir.path().join(format!("client-{cn}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        (cert_path, key_path)
    }
}

/// Starts a cluster (SCRAM over TCP) with role and database `app`.
async fn start_pg(opts: ClusterOptions) -> Cluster {
    tokio::task::spawn_blocking(move || {
        let pg = Cluster::start(&opts).expect("start postgres");
        pg.create_role(USER, Some(PASSWORD), false)
            .expect("create role");
        pg.create_database(UPSTREAM_DB).expect("create database");
        pg.psql(
            UPSTREAM_DB,
            &format!("ALTER DATABASE {UPSTREAM_DB} OWNER TO {USER};"),
        )
        .expect("owner");
        pg
    })
    .await
    .expect("setup thread")
}

/// A cluster serving TLS with a certificate for `names` from `ca`.
async fn start_tls_pg(ca: &Ca, names: &[&str], required: bool) -> Cluster {
    let (cert, key) = ca.server_cert(names);
    let opts = ClusterOptions::with_auth(HbaAuth::ScramSha256).ssl(&cert, &key, required);
    start_pg(opts).await
}

/// Database `name` on `pg` (reached as `host`) with `tls` and `ca`.
fn database(name: &str, host: &str, port: u16, tls: ServerTlsMode, ca: Option<&Path>) -> Database {
    let mut db = Database::new(name, host, port);
    db.dbname = Some(UPSTREAM_DB.into());
    db.tls = tls;
    db.tls_ca_file = ca.map(Path::to_path_buf);
    db
}

/// A transaction-mode proxy with `pool_size` per pool over `databases`.
async fn start_proxy(databases: Vec<Database>, pool_size: usize) -> Proxy {
    start_proxy_with(databases, pool_size, vec![]).await
}

/// As [`start_proxy`], with `users` besides [`USER`].
async fn start_proxy_with(databases: Vec<Database>, pool_size: usize, users: Vec<User>) -> Proxy {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..Config::default()
    };
    config.pool.mode = PoolMode::Transaction;
    config.pool.size = pool_size;
    config.pool.connect_timeout = Duration::from_secs(5);
    config.users.push(User {
        name: USER.into(),
        auth: AuthMethod::ScramSha256,
        password: Some(PASSWORD.into()),
        scram_verifier: None,
        server_password: None,
    });
    config.users.extend(users);
    config.databases = databases;
    config.validate().expect("valid test config");
    Proxy::start(config).await.expect("start proxy")
}

fn url(proxy: &Proxy, db: &str) -> String {
    format!(
        "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}",
        proxy.addr().port()
    )
}

/// Whether the backend serving `db` through the proxy uses TLS.
async fn ssl_through(proxy: &Proxy, db: &str) -> bool {
    let client = try_connect(&url(proxy, db))
        .await
        .unwrap_or_else(|e| panic!("connect to {db}: {e}"));
    let row = client
        .query_one(SSL_IN_USE, &[])
        .await
        .unwrap_or_else(|e| panic!("query on {db}: {e}"));
    row.get(0)
}

/// The SQLSTATE and message of the error a client of `db` gets, at login
/// or at its first query (the proxy keeps its details in its log).
async fn error_through(proxy: &Proxy, db: &str) -> (String, String) {
    error_at(&url(proxy, db), db).await
}

/// As [`error_through`], for the client URL `url`.
async fn error_at(url: &str, db: &str) -> (String, String) {
    let err = match try_connect(url).await {
        Err(e) => e,
        Ok(client) => match client.simple_query("SELECT 1").await {
            Err(e) => e,
            Ok(_) => panic!("{db}: the query succeeded"),
        },
    };
    let db_err = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{db}: not a server error: {err}"));
    let text = match db_err.detail() {
        Some(detail) => format!("{} ({detail})", db_err.message()),
        None => db_err.message().to_owned(),
    };
    (db_err.code().code().to_owned(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_encrypts_by_address_and_by_name() {
    let ca = Ca::new("server-leg CA");
    let pg = start_tls_pg(&ca, &["localhost", "127.0.0.1"], false).await;
    let proxy = start_proxy(
        vec![
            database(
                "by_ip",
                "127.0.0.1",
                pg.port(),
                ServerTlsMode::VerifyFull,
                Some(&ca.pem),
            ),
            database(
                "by_name",
                "localhost",
                pg.port(),
                ServerTlsMode::VerifyFull,
                Some(&ca.pem),
            ),
            database(
                "plain",
                "127.0.0.1",
                pg.port(),
                ServerTlsMode::Disable,
                None,
            ),
            // The default, against a server offering TLS.
            database(
                "default",
                "127.0.0.1",
                pg.port(),
                ServerTlsMode::Prefer,
                None,
            ),
        ],
        2,
    )
    .await;
    assert!(ssl_through(&proxy, "by_ip").await, "verify-full by address");
    assert!(ssl_through(&proxy, "by_name").await, "verify-full by name");
    assert!(!ssl_through(&proxy, "plain").await, "disable used TLS");
    assert!(
        ssl_through(&proxy, "default").await,
        "prefer did not use TLS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_skips_verification_and_verify_modes_refuse_an_unknown_ca() {
    let server_ca = Ca::new("the server's CA");
    let other_ca = Ca::new("some other CA");
    let pg = start_tls_pg(&server_ca, &["localhost", "127.0.0.1"], false).await;
    let port = pg.port();
    let proxy = start_proxy(
        vec![
            database("req", "127.0.0.1", port, ServerTlsMode::Require, None),
            database(
                "vca",
                "127.0.0.1",
                port,
                ServerTlsMode::VerifyCa,
                Some(&other_ca.pem),
            ),
            database(
                "vfull",
                "127.0.0.1",
                port,
                ServerTlsMode::VerifyFull,
                Some(&other_ca.pem),
            ),
            // libpq: require with a root file verifies the chain.
            database(
                "req_ca",
                "127.0.0.1",
                port,
                ServerTlsMode::Require,
                Some(&other_ca.pem),
            ),
        ],
        2,
    )
    .await;
    assert!(ssl_through(&proxy, "req").await);
    for db in ["vca", "vfull", "req_ca"] {
        let (code, msg) = error_through(&proxy, db).await;
        assert_eq!(code, "08001", "{db}: {msg}");
        assert!(msg.contains("certificate was not accepted"), "{db}: {msg}");
    }
    // The failures left the proxy serving the other database.
    assert!(ssl_through(&proxy, "req").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_name_and_verify_ca_does_not() {
    let ca = Ca::new("server-leg CA");
    let pg = start_tls_pg(&ca, &["otherhost"], false).await;
    let port = pg.port();
    let proxy = start_proxy(
        vec![
            database(
                "full",
                "127.0.0.1",
                port,
                ServerTlsMode::VerifyFull,
                Some(&ca.pem),
            ),
            database(
                "full_name",
                "localhost",
                port,
                ServerTlsMode::VerifyFull,
                Some(&ca.pem),
            ),
            database(
                "chain",
                "127.0.0.1",
                port,
                ServerTlsMode::VerifyCa,
                Some(&ca.pem),
            ),
        ],
        2,
    )
    .await;
    for db in ["full", "full_name"] {
        let (code, msg) = error_through(&proxy, db).await;
        assert_eq!(code, "08001", "{db}: {msg}");
        assert!(msg.contains("certificate was not accepted"), "{db}: {msg}");
    }
    // The same certificate passes when only the chain is checked.
    assert!(ssl_through(&proxy, "chain").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_falls_back_to_plain_text_and_require_refuses() {
    let pg = start_pg(ClusterOptions::with_auth(HbaAuth::ScramSha256)).await;
    let ca = Ca::new("unused CA");
    let port = pg.port();
    let proxy = start_proxy(
        vec![
            database("pref", "127.0.0.1", port, ServerTlsMode::Prefer, None),
            database("req", "127.0.0.1", port, ServerTlsMode::Require, None),
            database(
                "full",
                "127.0.0.1",
                port,
                ServerTlsMode::VerifyFull,
                Some(&ca.pem),
            ),
        ],
        2,
    )
    .await;
    assert!(!ssl_through(&proxy, "pref").await);
    for db in ["req", "full"] {
        let (code, msg) = error_through(&proxy, db).await;
        assert_eq!(code, "08001", "{db}: {msg}");
        assert!(
            msg.contains("the database server does not support TLS"),
            "{db}: {msg}"
        );
    }
    assert!(!ssl_through(&proxy, "pref").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pooled_tls_connections_are_reused_and_dead_ones_dropped() {
    let ca = Ca::new("server-leg CA");
    // Plain TCP is refused by the server (hostnossl ... reject).
    let pg = start_tls_pg(&ca, &["localhost", "127.0.0.1"], true).await;
    let port = pg.port();
    let proxy = start_proxy(
        vec![
            database("secure", "127.0.0.1", port, ServerTlsMode::Require, None),
            database("plain", "127.0.0.1", port, ServerTlsMode::Disable, None),
        ],
        2,
    )
    .await;
    let (code, msg) = error_through(&proxy, "plain").await;
    assert_eq!(code, "28000", "{msg}");
    assert!(msg.contains("no encryption"), "{msg}");

    // 4 clients x 250 queries over a pool of 2 TLS connections.
    let mut tasks = Vec::new();
    for c in 0..4i32 {
        let url = url(&proxy, "secure");
        tasks.push(tokio::spawn(async move {
            let client = try_connect(&url).await.expect("connect");
            let stmt = client.prepare("SELECT $1::int + 1").await.expect("prepare");
            for i in 0..250i32 {
                let n = c * 1000 + i;
                let row = client.query_one(&stmt, &[&n]).await.expect("query");
                assert_eq!(row.get::<_, i32>(0), n + 1);
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    let count_backends = |pg: &Cluster| {
        pg.psql(
            "postgres",
            "SELECT count(*) FILTER (WHERE s.ssl) || '/' || count(*) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'app' AND a.backend_type = 'client backend'",
        )
        .expect("count backends")
    };
    let counts = tokio::task::block_in_place(|| count_backends(&pg));
    assert!(
        counts == "1/1" || counts == "2/2",
        "ssl/all backends: {counts}"
    );

    // Backends killed while idle in the pool: their TLS connections are
    // noticed before reuse, and clients get fresh ones.
    tokio::task::block_in_place(|| {
        pg.psql(
            "postgres",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = 'app' AND backend_type = 'client backend'",
        )
        .expect("terminate")
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = try_connect(&url(&proxy, "secure")).await.expect("connect");
    for _ in 0..4 {
        let row = client.query_one(SSL_IN_USE, &[]).await.expect("query");
        assert!(row.get::<_, bool>(0));
    }
}

/// The role that logs in to Postgres with a client certificate.
const CERT_ROLE: &str = "certrole";
/// Its password on the proxy (Postgres never asks for one).
const CERT_ROLE_PASSWORD: &str = "certrole-pw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_presents_its_client_certificate_to_postgres() {
    let server_ca = Ca::new("server-leg CA");
    let client_ca = Ca::new("client-certificate CA");
    let (cert, key) = server_ca.server_cert(&["localhost", "127.0.0.1"]);
    // certrole must log in with a certificate on TCP (`hostssl ... cert`);
    // app keeps SCRAM.
    let opts = ClusterOptions::with_auth(HbaAuth::ScramSha256)
        .ssl(&cert, &key, false)
        .ssl_client_ca(&client_ca.pem)
        .role_auth(CERT_ROLE, HbaAuth::Cert);
    let pg = start_pg(opts).await;
    tokio::task::block_in_place(|| pg.create_role(CERT_ROLE, None, false))
        .expect("create the cert role");
    let port = pg.port();
    let (client_cert, client_key) = client_ca.client_cert(CERT_ROLE);
    let mut with_cert = database(
        "with_cert",
        "127.0.0.1",
        port,
        ServerTlsMode::VerifyFull,
        Some(&server_ca.pem),
    );
    with_cert.tls_cert_file = Some(client_cert);
    with_cert.tls_key_file = Some(client_key);
    let without_cert = database(
        "without_cert",
        "127.0.0.1",
        port,
        ServerTlsMode::VerifyFull,
        Some(&server_ca.pem),
    );
    let cert_user = User {
        name: CERT_ROLE.into(),
        auth: AuthMethod::ScramSha256,
        password: Some(CERT_ROLE_PASSWORD.into()),
        scram_verifier: None,
        server_password: None,
    };
    let proxy = start_proxy_with(vec![with_cert, without_cert], 2, vec![cert_user]).await;
    let cert_url = |db: &str| {
        format!(
            "postgres://{CERT_ROLE}:{CERT_ROLE_PASSWORD}@127.0.0.1:{}/{db}",
            proxy.addr().port()
        )
    };

    let client = try_connect(&cert_url("with_cert"))
        .await
        .expect("certrole through the proxy's certificate");
    let row = client
        .query_one(
            "SELECT current_user::text, s.ssl, s.client_dn FROM pg_stat_ssl s \
             WHERE s.pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), CERT_ROLE);
    assert!(row.get::<_, bool>(1), "no TLS");
    let dn: Option<String> = row.get(2);
    assert!(
        dn.as_deref().is_some_and(|dn| dn.contains("CN=certrole")),
        "client_dn: {dn:?}"
    );

    // Without the files the proxy has no certificate to present: the
    // server's refusal reaches the client.
    let (code, msg) = error_at(&cert_url("without_cert"), "without_cert").await;
    assert_eq!(code, "28000", "{msg}");
    assert!(
        msg.contains("connection requires a valid client certificate"),
        "{msg}"
    );
    // The password role is served on both databases, with or without the
    // proxy's certificate on offer.
    assert!(ssl_through(&proxy, "without_cert").await);
    assert!(ssl_through(&proxy, "with_cert").await);
    let row = client.query_one("SELECT 1", &[]).await.expect("still up");
    assert_eq!(row.get::<_, i32>(0), 1);
}

#[test]
fn unusable_client_certificate_files_are_named() {
    let ca = Ca::new("client-certificate CA");
    let (cert, key) = ca.client_cert(CERT_ROLE);
    let garbage = ca.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").expect("write");
    let missing = ca.dir.path().join("missing.crt");
    let cases: [(&Path, &Path, &str); 3] = [
        (&missing, &key, "missing.crt"),
        (&cert, &garbage, "garbage.pem"),
        // A certificate where the key belongs.
        (&cert, &cert, "no PRIVATE KEY"),
    ];
    for (cert, key, needle) in cases {
        let mut db = database("d", "127.0.0.1", 5432, ServerTlsMode::Require, None);
        db.tls_cert_file = Some(cert.to_path_buf());
        db.tls_key_file = Some(key.to_path_buf());
        let err = proxy::tls::UpstreamTls::load(&db)
            .err()
            .unwrap_or_else(|| panic!("{needle}: the settings were built"));
        let text = err.to_string();
        assert!(text.contains(needle), "{text}");
    }
    let mut db = database("d", "127.0.0.1", 5432, ServerTlsMode::Require, None);
    db.tls_cert_file = Some(cert);
    db.tls_key_file = Some(key);
    assert!(proxy::tls::UpstreamTls::load(&db).is_ok());
}

/// A fake server: answers the first packet of one connection with
/// `answer` and returns that packet.
async fn fake_server(answer: &'static [u8]) -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut first = vec![0u8; 8];
        socket.read_exact(&mut first).await.expect("first packet");
        socket.write_all(answer).await.expect("answer");
        // Hold the socket until the proxy gives up.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest)).await;
        first
    });
    (port, task)
}

/// SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_after_the_tls_answer_is_refused() {
    // 'S', then a forged AuthenticationOk and ReadyForQuery in plain text.
    let forged: &'static [u8] = b"SR\0\0\0\x08\0\0\0\0Z\0\0\0\x05I";
    let (port, server) = fake_server(forged).await;
    let proxy = start_proxy(
        vec![database(
            "fake",
            "127.0.0.1",
            port,
            ServerTlsMode::Require,
            None,
        )],
        1,
    )
    .await;
    let (code, msg) = error_through(&proxy, "fake").await;
    assert_eq!(code, "08001", "{msg}");
    assert!(
        msg.contains("unencrypted data after accepting TLS"),
        "{msg}"
    );
    assert_eq!(server.await.expect("fake server"), SSL_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_sends_no_ssl_request() {
    let (port, server) = fake_server(b"").await;
    let proxy = start_proxy(
        vec![database(
            "fake",
            "127.0.0.1",
            port,
            ServerTlsMode::Disable,
            None,
        )],
        1,
    )
    .await;
    // The fake server never answers the StartupMessage: the client's
    // query fails once the proxy's connect timeout is over.
    let _ = error_through(&proxy, "fake").await;
    let first = server.await.expect("fake server");
    // StartupMessage: length, then protocol 3.0.
    assert_eq!(&first[4..8], &196_608i32.to_be_bytes(), "{first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_ca_file_fails_connections_not_the_proxy() {
    let pg = start_pg(ClusterOptions::with_auth(HbaAuth::ScramSha256)).await;
    let proxy = start_proxy(
        vec![
            database(
                "broken",
                "127.0.0.1",
                pg.port(),
                ServerTlsMode::VerifyFull,
                Some(Path::new("/nonexistent/ca.pem")),
            ),
            database("fine", "127.0.0.1", pg.port(), ServerTlsMode::Prefer, None),
            Database {
                tls_cert_file: Some("/nonexistent/client.crt".into()),
                tls_key_file: Some("/nonexistent/client.key".into()),
                ..database(
                    "no_cert",
                    "127.0.0.1",
                    pg.port(),
                    ServerTlsMode::Prefer,
                    None,
                )
            },
        ],
        1,
    )
    .await;
    // prefer too: the settings are unusable, not skipped.
    for db in ["broken", "no_cert"] {
        let (code, msg) = error_through(&proxy, db).await;
        assert_eq!(code, "08001", "{db}: {msg}");
        assert!(msg.contains("TLS settings"), "{db}: {msg}");
    }
    assert!(!ssl_through(&proxy, "fine").await);
}
