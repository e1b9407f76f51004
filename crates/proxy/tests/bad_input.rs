//! Bad input from one client gets that client its error (and usually the
//! door), while the proxy keeps serving everybody else at the same time.
//!
//! Each case talks raw bytes (or a misconfigured tokio-postgres) to the proxy
//! while a well-behaved tokio-postgres client runs `SELECT 1` through the same
//! proxy, and one more new good client must work once the bad one is handled.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Env, Setup, PASSWORD, USER};
use config::{AuthMethod, Database};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;

/// How long the proxy may take to answer and close on bad input: it must
/// never wait for the bytes a bogus length word promises.
const PROMPT: Duration = Duration::from_secs(2);
/// Upper bound for any single exchange in these tests.
const IO_TIMEOUT: Duration = Duration::from_secs(8);

/// Protocol 3.0 as sent in a StartupMessage.
const PROTOCOL_3_0: i32 = 3 << 16;

// ---------------------------------------------------------------------------
// Raw protocol client
// ---------------------------------------------------------------------------

/// A backend message: type byte and body (without the length word).
#[derive(Debug)]
struct Msg {
    tag: u8,
    body: Vec<u8>,
}

/// Fields of an ErrorResponse.
#[derive(Debug, Default)]
struct ErrorFields {
    /// 'S' (localized severity).
    severity: String,
    /// 'V' (non-localized severity).
    severity_v: String,
    /// 'C' (SQLSTATE).
    code: String,
    /// 'M' (message).
    message: String,
}

/// Decodes an ErrorResponse body: (field type, NUL-terminated value)*, 0.
fn parse_error(body: &[u8]) -> ErrorFields {
    let mut fields = ErrorFields::default();
    let mut rest = body;
    loop {
        let (&kind, after) = rest
            .split_first()
            .expect("ErrorResponse must end with a zero byte");
        if kind == 0 {
            assert!(after.is_empty(), "bytes after the ErrorResponse terminator");
            return fields;
        }
        let end = after
            .iter()
            .position(|&b| b == 0)
            .expect("ErrorResponse field values are NUL-terminated");
        let value = String::from_utf8(after[..end].to_vec()).expect("UTF-8 field value");
        match kind {
            b'S' => fields.severity = value,
            b'V' => fields.severity_v = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            _ => {}
        }
        rest = &after[end + 1..];
    }
}

/// A client speaking raw bytes to the proxy.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the proxy");
        stream.set_nodelay(true).expect("nodelay");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("send to the proxy");
    }

    /// Closes our sending half (the proxy sees end of stream).
    async fn close_write(&mut self) {
        self.stream.shutdown().await.expect("shutdown write half");
    }

    /// The next backend message, or `None` once the proxy closed the
    /// connection (end of stream or reset). Panics if nothing happens within
    /// `within`, or if the stream ends in the middle of a message.
    async fn next(&mut self, within: Duration) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                assert!(len >= 4, "backend message with length {len}");
                let total = 1 + len as usize;
                if self.buf.len() >= total {
                    let raw: Vec<u8> = self.buf.drain(..total).collect();
                    return Some(Msg {
                        tag: raw[0],
                        body: raw[5..].to_vec(),
                    });
                }
            }
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!("the proxy neither answered nor closed the connection within {within:?}")
                });
            match read {
                Ok(0) => {
                    assert!(
                        self.buf.is_empty(),
                        "connection closed in the middle of a message: {:?}",
                        self.buf
                    );
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading from the proxy: {e}"),
            }
        }
    }

    /// Reads messages until an ErrorResponse (returned with the messages
    /// before it) or until the proxy closes the connection.
    async fn until_error_or_eof(&mut self, within: Duration) -> (Vec<Msg>, Option<ErrorFields>) {
        let deadline = Instant::now() + within;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                None => return (before, None),
                Some(m) if m.tag == b'E' => return (before, Some(parse_error(&m.body))),
                Some(m) => before.push(m),
            }
        }
    }

    /// The proxy closes the connection within `within`, sending nothing more.
    async fn expect_closed(&mut self, within: Duration) {
        if let Some(m) = self.next(within).await {
            panic!(
                "expected the proxy to close the connection, got message {:?}",
                m.tag as char
            );
        }
    }

    /// Expects a FATAL ErrorResponse with `code`, then the connection closed.
    async fn expect_fatal(&mut self, code: &str) -> ErrorFields {
        let (before, err) = self.until_error_or_eof(IO_TIMEOUT).await;
        let tags: Vec<char> = before.iter().map(|m| m.tag as char).collect();
        let err = err.unwrap_or_else(|| {
            panic!("the proxy closed the connection without an ErrorResponse (after {tags:?})")
        });
        assert_eq!(err.code, code, "unexpected error: {err:?}");
        assert_eq!(err.severity, "FATAL", "{err:?}");
        assert_eq!(err.severity_v, "FATAL", "{err:?}");
        assert!(!err.message.is_empty(), "error without a message: {err:?}");
        self.expect_closed(PROMPT).await;
        err
    }

    /// No byte arrives for `quiet` (the proxy is waiting for us).
    async fn expect_silence(&mut self, quiet: Duration) {
        let mut chunk = [0u8; 64];
        if let Ok(r) = tokio::time::timeout(quiet, self.stream.read(&mut chunk)).await {
            panic!("expected the proxy to wait for more bytes, but the read returned {r:?}");
        }
    }
}

/// A raw client logged in through trust client auth: StartupMessage, then
/// AuthenticationOk, parameters, BackendKeyData and ReadyForQuery.
async fn login_trust(addr: SocketAddr) -> Raw {
    let mut raw = Raw::connect(addr).await;
    raw.send(&wire::build::startup_message(&[
        ("user", USER),
        ("database", common::DB),
    ]))
    .await;
    let first = raw
        .next(IO_TIMEOUT)
        .await
        .expect("an answer to the startup packet");
    assert_eq!(first.tag, b'R', "expected an Authentication message");
    assert_eq!(
        first.body,
        0i32.to_be_bytes(),
        "expected AuthenticationOk (trust)"
    );
    loop {
        let m = raw.next(IO_TIMEOUT).await.expect("login to finish");
        match m.tag {
            b'Z' => {
                assert_eq!(m.body, b"I", "idle after login");
                return raw;
            }
            b'E' => panic!("login failed: {:?}", parse_error(&m.body)),
            b'S' | b'K' | b'N' => {}
            other => panic!("unexpected message {:?} during login", other as char),
        }
    }
}

/// A startup packet: length word, then `code`, then `body` as given.
fn startup_packet(code: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&((8 + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A typed message with a correct length word.
fn typed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((4 + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

// ---------------------------------------------------------------------------
// Good clients alongside
// ---------------------------------------------------------------------------

/// A new tokio-postgres client through the proxy runs `SELECT 1`.
async fn good_select_one(url: &str) {
    let work = async {
        let client = common::try_connect(url)
            .await
            .expect("a good client must still log in through the proxy");
        let one: i32 = client
            .query_one("SELECT 1", &[])
            .await
            .expect("a good client's SELECT 1")
            .get(0);
        assert_eq!(one, 1);
    };
    tokio::time::timeout(IO_TIMEOUT, work)
        .await
        .expect("a good client's SELECT 1 timed out");
}

/// Runs `bad` while a good client runs `SELECT 1` through the same proxy,
/// then checks that one more new good client works.
async fn alongside<T>(good_url: &str, bad: impl Future<Output = T>) -> T {
    let (out, ()) = tokio::join!(bad, good_select_one(good_url));
    good_select_one(good_url).await;
    out
}

fn trust() -> Setup {
    Setup {
        client_auth: AuthMethod::Trust,
        ..Setup::default()
    }
}

fn url(addr: SocketAddr, user: &str, password: &str, db: &str) -> String {
    format!(
        "postgres://{user}:{password}@127.0.0.1:{}/{db}",
        addr.port()
    )
}

/// The server error behind a failed tokio-postgres connect.
fn db_error(err: &tokio_postgres::Error) -> &tokio_postgres::error::DbError {
    err.as_db_error()
        .unwrap_or_else(|| panic!("expected an ErrorResponse from the proxy, got: {err}"))
}

// ---------------------------------------------------------------------------
// Startup packet
// ---------------------------------------------------------------------------

/// "GET " read as a length word is 1 195 725 856: far over the 10 000-byte
/// startup limit, so the decoder reports a bad length (08P01), not an unknown
/// protocol version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_as_startup_packet_gets_protocol_violation() {
    let env = Env::start(Setup::default()).await;
    let mut bad = Raw::connect(env.addr()).await;
    alongside(&env.url(), async {
        bad.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        bad.expect_fatal("08P01").await;
    })
    .await;
}

/// A well-formed startup packet with protocol version 2.0 is refused like
/// Postgres does: 0A000 feature_not_supported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_protocol_version_gets_feature_not_supported() {
    let env = Env::start(Setup::default()).await;
    let mut bad = Raw::connect(env.addr()).await;
    alongside(&env.url(), async {
        bad.send(&startup_packet(2 << 16, b"user\0app\0\0")).await;
        let err = bad.expect_fatal("0A000").await;
        assert!(err.message.contains("protocol"), "{err:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_length_of_2_gib_is_refused_at_once() {
    let env = Env::start(Setup::default()).await;
    let mut bad = Raw::connect(env.addr()).await;
    alongside(&env.url(), async {
        let mut packet = 0x7fff_ffffi32.to_be_bytes().to_vec();
        packet.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
        packet.extend_from_slice(b"user\0app\0");
        let started = Instant::now();
        bad.send(&packet).await;
        bad.expect_fatal("08P01").await;
        assert!(
            started.elapsed() < PROMPT,
            "refusing a 2 GiB startup length took {:?}",
            started.elapsed()
        );
    })
    .await;
}

/// A startup packet cut short: the proxy waits for the rest (and keeps
/// serving others meanwhile); when the client gives up, the proxy closes the
/// connection without crashing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_startup_packet_does_not_disturb_others() {
    let env = Env::start(Setup::default()).await;
    let mut bad = Raw::connect(env.addr()).await;
    let mut partial = 40i32.to_be_bytes().to_vec();
    partial.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    partial.extend_from_slice(b"us");
    assert_eq!(partial.len(), 10);
    bad.send(&partial).await;

    // The half packet is pending on the proxy while another client works.
    good_select_one(&env.url()).await;
    bad.expect_silence(Duration::from_millis(300)).await;

    // The client gives up: the proxy closes its side too. If it says
    // anything first, it can only be a protocol violation.
    bad.close_write().await;
    let (before, err) = bad.until_error_or_eof(PROMPT).await;
    assert!(before.is_empty(), "unexpected messages: {before:?}");
    if let Some(err) = err {
        assert_eq!(err.code, "08P01", "{err:?}");
        bad.expect_closed(PROMPT).await;
    }

    good_select_one(&env.url()).await;
}

/// Parameter lists without their terminating NUL(s) are protocol violations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_parameters_get_protocol_violation() {
    let env = Env::start(Setup::default()).await;
    let bodies: [&[u8]; 3] = [
        // Every pair complete, but no final terminator.
        b"user\0app\0database\0app\0",
        // The last value is not terminated.
        b"user\0app\0database\0app",
        // A name with no value at all.
        b"user",
    ];
    for body in bodies {
        let mut bad = Raw::connect(env.addr()).await;
        alongside(&env.url(), async {
            bad.send(&startup_packet(PROTOCOL_3_0, body)).await;
            bad.expect_fatal("08P01").await;
        })
        .await;
    }
}

// ---------------------------------------------------------------------------
// Typed messages after login
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_message_of_2_gib_after_login_is_refused_at_once() {
    let env = Env::start(trust()).await;
    let mut bad = login_trust(env.addr()).await;
    alongside(&env.url(), async {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
        msg.extend_from_slice(b"SELECT 1");
        let started = Instant::now();
        bad.send(&msg).await;
        bad.expect_fatal("08P01").await;
        assert!(
            started.elapsed() < PROMPT,
            "refusing a 2 GiB message took {:?}",
            started.elapsed()
        );
    })
    .await;
}

/// Bind whose body has no NUL at all: neither the portal nor the statement
/// name can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bind_after_login_gets_protocol_violation() {
    let env = Env::start(trust()).await;
    let mut bad = login_trust(env.addr()).await;
    alongside(&env.url(), async {
        let msg = typed(b'B', b"abc");
        assert_eq!(msg, [b'B', 0, 0, 0, 7, b'a', b'b', b'c']);
        bad.send(&msg).await;
        bad.expect_fatal("08P01").await;
    })
    .await;
}

/// A length word that does not even cover itself (3, 0, -1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_length_below_four_gets_protocol_violation() {
    let env = Env::start(trust()).await;
    for length in [3i32, 0, -1] {
        let mut bad = login_trust(env.addr()).await;
        alongside(&env.url(), async {
            let mut msg = vec![b'Q'];
            msg.extend_from_slice(&length.to_be_bytes());
            msg.extend_from_slice(b"SELECT 1\0");
            bad.send(&msg).await;
            bad.expect_fatal("08P01").await;
        })
        .await;
    }
}

/// FunctionCall is not the proxy's business: it is forwarded and the server's
/// FunctionCallResponse and ReadyForQuery come back; the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_is_forwarded() {
    let env = Env::start(trust()).await;
    let fn_oid: u32 = env
        .client()
        .await
        .query_one("SELECT 'pg_backend_pid'::regproc::oid", &[])
        .await
        .expect("look up pg_backend_pid")
        .get(0);
    let mut raw = login_trust(env.addr()).await;
    alongside(&env.url(), async {
        let mut body = fn_oid.to_be_bytes().to_vec();
        body.extend_from_slice(&0i16.to_be_bytes()); // argument format codes
        body.extend_from_slice(&0i16.to_be_bytes()); // arguments
        body.extend_from_slice(&0i16.to_be_bytes()); // result format: text
        raw.send(&typed(b'F', &body)).await;

        let v = raw.next(IO_TIMEOUT).await.expect("FunctionCallResponse");
        assert_eq!(
            v.tag, b'V',
            "expected FunctionCallResponse, got {:?}",
            v.tag as char
        );
        let len = i32::from_be_bytes(v.body[..4].try_into().unwrap());
        assert_eq!(len as usize, v.body.len() - 4, "result length");
        let pid: i32 = std::str::from_utf8(&v.body[4..])
            .expect("text result")
            .parse()
            .expect("pg_backend_pid() is a number");
        assert!(pid > 0, "pid {pid}");
        let z = raw.next(IO_TIMEOUT).await.expect("ReadyForQuery");
        assert_eq!((z.tag, z.body.as_slice()), (b'Z', &b"I"[..]));

        // The session is still usable.
        raw.send(&typed(b'Q', b"SELECT 41 + 1\0")).await;
        let mut tags = Vec::new();
        let mut value = None;
        loop {
            let m = raw.next(IO_TIMEOUT).await.expect("query reply");
            tags.push(m.tag);
            if m.tag == b'D' {
                // One column: i16 count, i32 length, text.
                value = Some(String::from_utf8(m.body[6..].to_vec()).unwrap());
            }
            if m.tag == b'Z' {
                break;
            }
        }
        assert_eq!(tags, b"TDCZ", "{:?}", String::from_utf8_lossy(&tags));
        assert_eq!(value.as_deref(), Some("42"));
    })
    .await;
}

// ---------------------------------------------------------------------------
// Login refusals
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_scram_password_gets_invalid_password() {
    let env = Env::start(Setup::default()).await;
    let bad_url = url(env.addr(), USER, "not-the-password", common::DB);
    let err = alongside(&env.url(), common::try_connect(&bad_url))
        .await
        .expect_err("a wrong password must not log in");
    let db = db_error(&err);
    assert_eq!(db.code(), &SqlState::INVALID_PASSWORD, "{db:?}");
    assert_eq!(db.severity(), "FATAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_md5_password_gets_invalid_password() {
    let env = Env::start(Setup {
        client_auth: AuthMethod::Md5,
        ..Setup::default()
    })
    .await;
    let bad_url = url(env.addr(), USER, "not-the-password", common::DB);
    let err = alongside(&env.url(), common::try_connect(&bad_url))
        .await
        .expect_err("a wrong password must not log in");
    let db = db_error(&err);
    assert_eq!(db.code(), &SqlState::INVALID_PASSWORD, "{db:?}");
    assert_eq!(db.severity(), "FATAL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_and_unknown_user_are_refused() {
    let env = Env::start(Setup::default()).await;

    let bad_url = url(env.addr(), USER, PASSWORD, "no_such_db");
    let err = alongside(&env.url(), common::try_connect(&bad_url))
        .await
        .expect_err("an unknown database must not log in");
    let db = db_error(&err);
    assert_eq!(db.code(), &SqlState::INVALID_CATALOG_NAME, "{db:?}");
    assert!(db.message().contains("no_such_db"), "{db:?}");

    let bad_url = url(env.addr(), "no_such_user", PASSWORD, common::DB);
    let err = alongside(&env.url(), common::try_connect(&bad_url))
        .await
        .expect_err("an unknown user must not log in");
    let db = db_error(&err);
    assert_eq!(
        db.code(),
        &SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        "{db:?}"
    );
    assert_eq!(db.severity(), "FATAL");
}

/// One configured database points at a closed port: its clients get a
/// connection error (quickly, every time: no pool slot is leaked), while a
/// second database of the same proxy, on the real cluster, keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_fails_its_clients_only() {
    let env = Env::start(Setup::default()).await;
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cfg = common::proxy_config(&env.pg, &Setup::default());
    cfg.pool.size = 2;
    cfg.pool.query_wait_timeout = Duration::from_secs(3);
    cfg.databases[0].port = closed_port;
    let mut app2 = Database::new("app2", env.pg.host(), env.pg.port());
    app2.dbname = Some(common::DB.into());
    cfg.databases.push(app2);
    cfg.validate().expect("valid config");
    let proxy = proxy::Proxy::start(cfg).await.expect("start proxy");

    let good_url = url(proxy.addr(), USER, PASSWORD, "app2");
    let bad_url = url(proxy.addr(), USER, PASSWORD, common::DB);
    // More attempts than the pool has slots: a failed connect must give its
    // slot back, or the later attempts would wait and time out instead.
    for attempt in 0..4 {
        let started = Instant::now();
        let err = alongside(&good_url, common::try_connect(&bad_url))
            .await
            .expect_err("a database on a closed port must not log in");
        let db = db_error(&err);
        assert!(
            db.code() == &SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
                || db.code() == &SqlState::CONNECTION_FAILURE,
            "attempt {attempt}: {db:?}"
        );
        assert_eq!(db.severity(), "FATAL");
        assert!(
            !db.message().contains(&closed_port.to_string()),
            "the upstream address must stay in the log: {db:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "attempt {attempt} took {:?}",
            started.elapsed()
        );
    }
    let client = common::connect(&good_url).await;
    let db: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .expect("query on app2")
        .get(0);
    assert_eq!(db, common::DB, "app2 maps onto the real database");
}
