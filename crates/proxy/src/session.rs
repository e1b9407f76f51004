//! One client connection from its first byte to its last: the startup
//! packet (and TLS, when the client asks and the proxy has it),
//! authentication, the login handshake, then the relay loop (or, for the
//! admin console's database, the console).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::build;
use wire::inspect::TxStatus;
use wire::startup::{decode_startup, StartupError};
use wire::{decode_frame, Frame, SqlState, StartupPacket};

use crate::auth::{AuthStep, ClientAuth};
use crate::error::ClientError;
use crate::params::ClientParams;
use crate::relay::{Identity, Relay};
use crate::server_auth::ServerSecret;
use crate::state::{Live, Shared};
use crate::tls::ClientStream;

/// How long a client may take from connecting to being authenticated.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The client's connection (plain or TLS) with its read buffer.
pub struct ClientIo {
    pub stream: ClientStream,
    pub rbuf: BytesMut,
    pub max_message: usize,
}

impl ClientIo {
    /// Reads more bytes; `Ok(false)` at end of stream. Cancel-safe.
    pub async fn fill(&mut self) -> std::io::Result<bool> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(16 * 1024);
        }
        Ok(self.stream.read_buf(&mut self.rbuf).await? > 0)
    }

    /// Reads one typed frame; a malformed or oversized one is a protocol
    /// violation.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            if let Some(f) = self.try_frame()? {
                return Ok(Some(f));
            }
            if !self.fill().await.map_err(|_| gone())? {
                return Ok(None);
            }
        }
    }

    /// Splits a complete frame off the buffer, if there is one.
    pub fn try_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        decode_frame(&mut self.rbuf, self.max_message)
            .map_err(|e| ClientError::fatal(SqlState::PROTOCOL_VIOLATION, e.to_string()))
    }

    /// Writes and flushes (for TLS, the records rustls holds go out too;
    /// a plain socket has nothing to flush).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await.map_err(|_| gone())?;
        if self.stream.is_tls() {
            self.stream.flush().await.map_err(|_| gone())?;
        }
        Ok(())
    }
}

/// The client went away; nothing to tell it.
fn gone() -> ClientError {
    ClientError::fatal(SqlState::CONNECTION_FAILURE, "client connection closed")
}

/// Serves one client until it disconnects or the proxy shuts down.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let mut io = ClientIo {
        stream: ClientStream::Plain(stream),
        rbuf: BytesMut::with_capacity(8 * 1024),
        max_message: shared.live().config.max_message_size,
    };
    let login = tokio::time::timeout(LOGIN_TIMEOUT, login(&shared, &mut io)).await;
    let login = match login {
        Ok(Ok(Some(login))) => login,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::info!(?peer, error = %e, "client login failed");
            let _ = io.send(e.to_frame().raw()).await;
            return;
        }
        Err(_) => {
            let e = ClientError::fatal(SqlState::PROTOCOL_VIOLATION, "login timed out");
            let _ = io.send(e.to_frame().raw()).await;
            return;
        }
    };
    let tls = io.stream.is_tls();
    let ended = match login {
        Login::Relay {
            relay,
            user,
            database,
        } => {
            let activity = relay.activity();
            let _listed = shared
                .client_registry
                .register(user, database, peer, tls, activity);
            relay.run(io).await
        }
        Login::Console { user } => {
            let database = crate::admin::DATABASE.to_owned();
            let activity = Arc::default();
            let _listed = shared
                .client_registry
                .register(user, database, peer, tls, activity);
            crate::admin::serve(&shared, &mut io).await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(?peer, error = %e, "client session ended");
    }
}

/// A logged-in client: relayed to its pool, or talking to the admin
/// console. `user` and `database` are kept for the client registry.
enum Login {
    Relay {
        relay: Box<Relay>,
        user: String,
        database: String,
    },
    Console {
        user: String,
    },
}

/// Startup packet, authentication and the login handshake. `Ok(None)` means
/// the connection was a cancel request or closed early.
async fn login(shared: &Arc<Shared>, io: &mut ClientIo) -> Result<Option<Login>, ClientError> {
    // One config snapshot for the whole login, even across a reload.
    let live = shared.live();
    if let Some(tls) = &live.tls {
        let direct = io
            .stream
            .opens_with_tls_handshake()
            .await
            .map_err(|_| gone())?;
        if direct && !direct_tls(tls, io).await? {
            return Ok(None);
        }
    }
    let (major_minor, params) = loop {
        let packet = match decode_startup(&mut io.rbuf) {
            Ok(Some(p)) => p,
            Ok(None) => {
                if !io.fill().await.map_err(|_| gone())? {
                    return Ok(None);
                }
                continue;
            }
            Err(e) => return Err(startup_error(e)),
        };
        match packet {
            StartupPacket::SslRequest => {
                if !negotiate_tls(&live, io).await? {
                    return Ok(None);
                }
            }
            StartupPacket::GssEncRequest if io.stream.is_tls() => return Err(late_request()),
            // No GSSAPI encryption: answer 'N', the client goes on in plain
            // text (or asks for TLS next, or gives up if it requires
            // encryption).
            StartupPacket::GssEncRequest => io.send(b"N").await?,
            StartupPacket::Cancel { pid, secret } => {
                shared.cancels.cancel(pid, secret).await;
                return Ok(None);
            }
            StartupPacket::Startup { .. }
                if !io.stream.is_tls() && live.tls.as_ref().is_some_and(|t| t.required) =>
            {
                return Err(ClientError::fatal(
                    SqlState::INVALID_AUTHORIZATION,
                    "TLS is required: connect with sslmode=require or stronger",
                ));
            }
            StartupPacket::Startup {
                major,
                minor,
                params,
            } => break ((major, minor), params),
        }
    };
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let user = get("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ClientError::fatal(
                SqlState::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?
        .to_owned();
    let database = get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();
    if get("replication").is_some_and(|r| r != "false" && r != "0" && r != "off") {
        return Err(ClientError::fatal(
            SqlState::FEATURE_NOT_SUPPORTED,
            "replication connections are not supported by pgcoalesce",
        ));
    }
    if let Some(tls) = &live.tls {
        tls.admit(&io.stream, &user)
            .map_err(|m| ClientError::fatal(SqlState::INVALID_AUTHORIZATION, m))?;
    }
    // The console's name, unless a configured database has it.
    let console = database == crate::admin::DATABASE && live.config.database(&database).is_none();
    if !console && live.config.database(&database).is_none() {
        return Err(ClientError::fatal(
            SqlState::INVALID_CATALOG_NAME,
            format!("database \"{database}\" does not exist"),
        ));
    }
    // Configured users first; Postgres may know the others (auth_query).
    let looked_up;
    let cred = match live.credentials.get(&user) {
        Some(cred) => cred,
        None => {
            looked_up = crate::auth_query::lookup(shared, &live, &database, &user).await?;
            &looked_up
        }
    };
    if major_minor.1 > 0 {
        let unknown: Vec<&str> = params
            .iter()
            .filter(|(k, _)| k.starts_with("_pq_."))
            .map(|(k, _)| k.as_str())
            .collect();
        io.send(build::negotiate_protocol_version(0, &unknown).raw())
            .await?;
    }

    let (mut exchange, first) = ClientAuth::start(&user, cred, io.stream.client_certificate())?;
    let mut proved = None;
    if let Some(first) = first {
        io.send(first.raw()).await?;
        loop {
            let Some(frame) = io.read_frame().await? else {
                return Ok(None);
            };
            if frame.tag() != b'p' {
                return Err(ClientError::fatal(
                    SqlState::PROTOCOL_VIOLATION,
                    format!("expected a password message, got {:?}", frame.tag() as char),
                ));
            }
            match exchange.step(frame.body())? {
                AuthStep::Continue(reply) => io.send(reply.raw()).await?,
                AuthStep::Done { finals, secret } => {
                    proved = secret;
                    let mut out = BytesMut::new();
                    for f in finals {
                        out.extend_from_slice(f.raw());
                    }
                    io.send(&out).await?;
                    break;
                }
            }
        }
    }

    if console {
        return console_login(&live, io, user).await;
    }

    let pool = match pass_through(&live, &user, proved) {
        Some(secret) => shared.pool_with_secret(&live, &database, &user, secret),
        None => shared.pool_in(&live, &database, &user),
    };
    let pool = pool.ok_or_else(|| {
        ClientError::fatal(SqlState::INVALID_CATALOG_NAME, "database is not configured")
    })?;
    // Check out a server now: it proves the upstream accepts this login and
    // tells the client the server's parameters, as Postgres would.
    let mut lease = pool.acquire().await.map_err(|mut e| {
        e.severity = build::Severity::Fatal;
        e
    })?;
    let mut client_params = ClientParams::from_startup(&params);
    if let Some(sql) = client_params.sync_sql(&mut lease) {
        let err = lease
            .run_internal(&sql)
            .await
            .map_err(crate::server::lost)?;
        if let Some(msg) = err {
            return Err(ClientError::fatal(SqlState::INVALID_AUTHORIZATION, msg));
        }
        client_params.after_sync(&mut lease);
    }
    client_params.adopt_reported(&lease);
    let cancel = shared.cancels.register();
    let mut out = BytesMut::new();
    out.extend_from_slice(build::auth_ok().raw());
    let mut reported: Vec<(&String, &String)> = lease.params.iter().collect();
    reported.sort();
    for (k, v) in reported {
        if lease.proxy_set.contains(k) {
            continue;
        }
        let name = canonical_name(k);
        out.extend_from_slice(build::parameter_status(name, v).raw());
    }
    out.extend_from_slice(build::backend_key_data(cancel.pid, cancel.secret).raw());
    out.extend_from_slice(build::ready_for_query(TxStatus::Idle).raw());
    io.send(&out).await?;
    let who = Identity {
        coalescer: shared.coalescer.clone().filter(|c| c.active_for(&database)),
        router: live.routers.get(&database).cloned(),
        replica_pools: shared.replica_pools(&live, &database, &user, &pool),
        database: database.clone(),
        user: user.clone(),
        barrier_limit: live.config.pool.query_wait_timeout,
        stopping: shared.stopping.subscribe(),
        activity: Arc::default(),
    };
    Ok(Some(Login::Relay {
        relay: Box::new(Relay::new(pool, lease, client_params, cancel, who)),
        user,
        database,
    }))
}

/// What the proxy logs in to Postgres with for `user`, when it is what the
/// client's login `proved` (an md5 hash, SCRAM keys) rather than a
/// configured password: for users found by `auth_query`, and for
/// configured users with no password for upstream (only a
/// `scram_verifier`). `None`: the configured login.
fn pass_through(live: &Live, user: &str, proved: Option<ServerSecret>) -> Option<ServerSecret> {
    match live.config.user(user) {
        Some(u) if u.upstream_password().is_some() => None,
        _ => proved,
    }
}

/// Ends the login of an authenticated user who asked for the admin
/// console: admins get the console's greeting; anyone else is refused
/// with 42501, after authentication so that the refusal tells nothing to
/// someone without the password.
async fn console_login(
    live: &Live,
    io: &mut ClientIo,
    user: String,
) -> Result<Option<Login>, ClientError> {
    if !live.config.admin_users.contains(&user) {
        // 42501 insufficient_privilege, as Postgres answers a login without
        // the CONNECT privilege.
        return Err(ClientError::fatal(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("user \"{user}\" is not an admin user"),
        ));
    }
    io.send(&crate::admin::greeting()).await?;
    Ok(Some(Login::Console { user }))
}

/// Answers an SSLRequest: `N` when the proxy has no TLS, else `S` and the
/// server side of the handshake; the startup packet then comes over TLS.
/// `Ok(false)`: the handshake failed and the connection is over.
async fn negotiate_tls(live: &Live, io: &mut ClientIo) -> Result<bool, ClientError> {
    if io.stream.is_tls() {
        return Err(late_request());
    }
    let Some(tls) = &live.tls else {
        io.send(b"N").await?;
        return Ok(true);
    };
    // Bytes already here were sent in plain text before the handshake and
    // may have been injected by a man in the middle (CVE-2021-23214): never
    // treat them as part of the encrypted session. Postgres refuses them
    // with the same message; refusing before `S` keeps the client from
    // waiting on a handshake that cannot work.
    if !io.rbuf.is_empty() {
        return Err(ClientError::fatal(
            SqlState::PROTOCOL_VIOLATION,
            "received unencrypted data after SSL request",
        ));
    }
    io.send(b"S").await?;
    match io.stream.start_tls(&tls.acceptor).await {
        Ok(()) => Ok(true),
        Err(e) => {
            tracing::debug!(error = %e, "client TLS handshake failed");
            Ok(false)
        }
    }
}

/// A client that starts the TLS handshake at once, without SSLRequest
/// (libpq 17's `sslnegotiation=direct`). As Postgres 17 does, the client
/// must have negotiated the `postgresql` ALPN protocol: without it, a
/// client of another protocol could be talking to the proxy. `Ok(false)`:
/// the handshake failed and the connection is over.
async fn direct_tls(tls: &crate::tls::ClientTls, io: &mut ClientIo) -> Result<bool, ClientError> {
    if let Err(e) = io.stream.start_tls(&tls.acceptor).await {
        tracing::debug!(error = %e, "direct TLS handshake failed");
        return Ok(false);
    }
    if !io.stream.negotiated_postgresql_alpn() {
        return Err(ClientError::fatal(
            SqlState::PROTOCOL_VIOLATION,
            "received direct SSL connection request without ALPN protocol negotiation extension",
        ));
    }
    Ok(true)
}

/// An encryption request on a connection that is already encrypted.
fn late_request() -> ClientError {
    ClientError::fatal(
        SqlState::PROTOCOL_VIOLATION,
        "encryption requested again on an encrypted connection",
    )
}

/// Postgres's spelling of the reported parameters whose names have capitals.
fn canonical_name(lower: &str) -> &str {
    match lower {
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        "timezone" => "TimeZone",
        other => other,
    }
}

fn startup_error(e: StartupError) -> ClientError {
    let code = match e {
        StartupError::UnsupportedProtocol(_) => SqlState::FEATURE_NOT_SUPPORTED,
        _ => SqlState::PROTOCOL_VIOLATION,
    };
    ClientError::fatal(code, e.to_string())
}
