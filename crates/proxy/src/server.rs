//! One connection from the proxy to a Postgres server: connect (with TLS
//! when the target's mode asks for it), log in, read and write frames, and
//! remember what lives on it (reported parameters, prepared statements,
//! transaction status).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use config::ServerTlsMode;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use wire::build;
use wire::inspect::{self, TxStatus};
use wire::startup::SSL_REQUEST_CODE;
use wire::{decode_frame, Frame, SqlState};

use crate::error::ClientError;
use crate::fasthash::FastSet;
use crate::server_auth::{ServerAuth, ServerSecret};
use crate::tls::UpstreamTls;

/// Upper bound on one message from a server (Postgres's own limit is 1 GiB).
const MAX_SERVER_MESSAGE: usize = 1 << 30;

/// Where and as whom the proxy logs in.
#[derive(Debug, Clone)]
pub struct ServerTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    /// What the proxy answers the server's authentication with.
    pub secret: ServerSecret,
    pub connect_timeout: Duration,
    /// TLS to the server; never used for a Unix socket.
    pub tls: UpstreamTls,
}

/// Where a server listens: TCP, or a Unix socket when the configured host
/// is a directory (as in libpq: `/var/run/postgresql` + `.s.PGSQL.<port>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    Tcp(SocketAddr),
    Unix(Arc<std::path::Path>),
}

/// A byte stream to a server over either transport, or TLS over TCP.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Connects to `host` (a name, an address, or a socket directory) and `port`.
    pub async fn connect(host: &str, port: u16) -> std::io::Result<(Stream, ServerAddr)> {
        if host.starts_with('/') {
            let path: Arc<std::path::Path> = std::path::Path::new(host)
                .join(format!(".s.PGSQL.{port}"))
                .into();
            let s = UnixStream::connect(&*path).await?;
            Ok((Stream::Unix(s), ServerAddr::Unix(path)))
        } else {
            let s = TcpStream::connect((host, port)).await?;
            s.set_nodelay(true)?;
            let addr = s.peer_addr()?;
            Ok((Stream::Tcp(s), ServerAddr::Tcp(addr)))
        }
    }

    /// Connects to a known address (cancel requests).
    pub async fn connect_addr(addr: &ServerAddr) -> std::io::Result<Stream> {
        Ok(match addr {
            ServerAddr::Tcp(a) => Stream::Tcp(TcpStream::connect(a).await?),
            ServerAddr::Unix(p) => Stream::Unix(UnixStream::connect(&**p).await?),
        })
    }

    /// Writes all of `bytes` and pushes them out.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        AsyncWriteExt::write_all(self, bytes).await?;
        // rustls may still hold records the socket did not take.
        if let Stream::Tls(_) = self {
            self.flush().await?;
        }
        Ok(())
    }

    /// Whether nothing is waiting to be read: the socket has neither bytes
    /// nor end of stream. One non-blocking read; a byte it takes is lost,
    /// which only matters on a connection about to be dropped.
    ///
    /// With TLS, rustls must also hold no decrypted bytes and no
    /// close_notify (`wants_read`), and the TCP socket underneath must be
    /// quiet: any record there (a FATAL, an alert, close_notify) or its end
    /// means the server spoke on an idle connection. This needs no `&mut`
    /// and no decryption; polling the TLS stream with a no-op waker would
    /// also decrypt, but needs `&mut self`. A harmless record arriving
    /// unasked (a late session ticket or key update; Postgres sends none on
    /// an idle connection) would only cost a reconnect.
    fn is_quiet(&self) -> bool {
        let mut probe = [0u8; 1];
        let read = match self {
            Stream::Tcp(s) => s.try_read(&mut probe),
            Stream::Unix(s) => s.try_read(&mut probe),
            Stream::Tls(s) => {
                let (tcp, session) = s.get_ref();
                if !session.wants_read() {
                    return false;
                }
                tcp.try_read(&mut probe)
            }
        };
        matches!(read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Negotiates TLS on a fresh TCP connection as `tls.mode` says (see
    /// [`UpstreamTls`]): SSLRequest, one byte of answer, then the
    /// handshake. Unix sockets and `disable` are returned as they are.
    /// `host` is the configured host, the name the certificate is checked
    /// against.
    async fn negotiate_tls(
        self,
        host: &str,
        port: u16,
        tls: &UpstreamTls,
    ) -> Result<Stream, ClientError> {
        let Stream::Tcp(mut tcp) = self else {
            return Ok(self);
        };
        let connector = match tls.connector() {
            None => return Ok(Stream::Tcp(tcp)),
            Some(Ok(connector)) => connector,
            Some(Err(e)) => {
                return Err(tls_failed(
                    "the proxy's TLS settings for the database server are unusable",
                    host,
                    port,
                    e,
                ));
            }
        };
        let io = |e: std::io::Error| {
            tls_failed("could not connect to the database server", host, port, e)
        };
        let mut request = [0u8; 8];
        request[..4].copy_from_slice(&8i32.to_be_bytes());
        request[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        tcp.write_all(&request).await.map_err(io)?;
        // Exactly one byte: what follows must come through TLS.
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await.map_err(io)?;
        match answer[0] {
            b'S' => {}
            b'N' if matches!(tls.mode, ServerTlsMode::Prefer) => return Ok(Stream::Tcp(tcp)),
            b'N' => {
                return Err(tls_failed(
                    "the database server does not support TLS",
                    host,
                    port,
                    format!("tls: {} needs it", tls.mode),
                ))
            }
            other => {
                return Err(tls_failed(
                    "the database server refused the TLS request",
                    host,
                    port,
                    format!("answered {:?}", other as char),
                ))
            }
        }
        // Bytes sent before the handshake would be unauthenticated plain
        // text read as if it were encrypted (CVE-2021-23222 on clients).
        let mut probe = [0u8; 1];
        match tcp.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(io(e)),
            Ok(0) => return Err(io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => {
                return Err(tls_failed(
                    "the database server sent unencrypted data after accepting TLS",
                    host,
                    port,
                    "possible man-in-the-middle attack",
                ))
            }
        }
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            tls_failed(
                "the database server's host is not a valid TLS server name",
                host,
                port,
                e,
            )
        })?;
        let stream = connector.connect(name, tcp).await.map_err(|e| {
            let rustls_error = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
            let msg = match rustls_error {
                Some(rustls::Error::InvalidCertificate(_)) => {
                    "the database server's TLS certificate was not accepted"
                }
                _ => "TLS handshake with the database server failed",
            };
            tls_failed(msg, host, port, format_args!("tls: {}: {e}", tls.mode))
        })?;
        Ok(Stream::Tls(Box::new(stream)))
    }
}

// Reads and writes go straight to the stream underneath (one match per
// call, no future of their own: this is the per-message path). Reads are
// cancel-safe: rustls keeps decrypted bytes it has not handed out.
impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A logged-in server connection.
pub struct ServerConn {
    stream: Stream,
    rbuf: BytesMut,
    /// The server's address, for cancel requests.
    pub addr: ServerAddr,
    /// The server's BackendKeyData.
    pub backend_key: (i32, i32),
    /// Current values of parameters on this connection: those the server
    /// reports (ParameterStatus) and those the proxy set itself.
    pub params: HashMap<String, String>,
    /// Names of the shared prepared statements that exist on this connection.
    pub prepared: FastSet<Arc<[u8]>>,
    /// The client parameters this connection was last brought in line with.
    pub params_stamp: Option<crate::params::ParamsStamp>,
    /// Parameters the proxy set itself that the server does not report.
    pub proxy_set: HashSet<String>,
    /// Status from the last ReadyForQuery.
    pub status: TxStatus,
    /// Holds session state a client left behind (LISTEN, temp tables, ...)
    /// and must be reset before another client may use it.
    pub dirty: bool,
    /// Replies still owed (a broken exchange makes the connection unusable).
    pub in_flight: bool,
    pub created: Instant,
    pub last_used: Instant,
}

impl ServerConn {
    /// Connects and logs in, returning once the server sent ReadyForQuery.
    pub async fn connect(target: &ServerTarget) -> Result<ServerConn, ClientError> {
        let fut = Self::connect_inner(target);
        match tokio::time::timeout(target.connect_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::fatal(
                SqlState::CONNECTION_UNABLE,
                "could not connect to the database server: timed out",
            )
            .with_detail(format!("{}:{}", target.host, target.port))),
        }
    }

    async fn connect_inner(target: &ServerTarget) -> Result<ServerConn, ClientError> {
        let unreachable = |e: std::io::Error| {
            ClientError::fatal(
                SqlState::CONNECTION_UNABLE,
                "could not connect to the database server",
            )
            .with_detail(format!("{}:{}: {e}", target.host, target.port))
        };
        let (stream, addr) = Stream::connect(&target.host, target.port)
            .await
            .map_err(unreachable)?;
        let stream = stream
            .negotiate_tls(&target.host, target.port, &target.tls)
            .await?;
        let mut conn = ServerConn {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            addr,
            backend_key: (0, 0),
            params: HashMap::new(),
            prepared: FastSet::default(),
            proxy_set: HashSet::new(),
            params_stamp: None,
            status: TxStatus::Idle,
            dirty: false,
            in_flight: false,
            created: Instant::now(),
            last_used: Instant::now(),
        };
        let startup =
            build::startup_message(&[("user", &target.user), ("database", &target.dbname)]);
        conn.stream.send(&startup).await.map_err(unreachable)?;
        conn.login(target).await?;
        Ok(conn)
    }

    async fn login(&mut self, target: &ServerTarget) -> Result<(), ClientError> {
        let mut auth = ServerAuth::default();
        loop {
            let frame = self.read_frame().await.map_err(lost)?;
            match frame.tag() {
                b'R' => {
                    let req = inspect::auth_request(frame.body())
                        .ok_or_else(|| malformed("authentication request"))?;
                    if let Some(reply) = auth.answer(&target.user, &target.secret, req)? {
                        self.write(reply.raw()).await.map_err(lost)?;
                    }
                }
                b'S' => self.note_parameter(&frame),
                b'K' => {
                    self.backend_key = inspect::backend_key_data(frame.body())
                        .ok_or_else(|| malformed("BackendKeyData"))?;
                }
                b'Z' => {
                    self.status = inspect::ready_for_query(frame.body())
                        .ok_or_else(|| malformed("ReadyForQuery"))?;
                    return Ok(());
                }
                b'E' => return Err(upstream_error(&frame, true)),
                b'N' | b'v' => {}
                other => {
                    return Err(
                        malformed("login").with_detail(format!("unexpected {:?}", other as char))
                    )
                }
            }
        }
    }

    /// Whether the connection still looks usable: nothing unread and no end
    /// of stream or stray message (a FATAL from a restarting server) waiting
    /// on the socket. One non-blocking read; used before reuse.
    pub fn looks_alive(&self) -> bool {
        self.rbuf.is_empty() && self.stream.is_quiet()
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Records a ParameterStatus the server sent.
    pub fn note_parameter(&mut self, frame: &Frame) {
        if let Some((k, v)) = inspect::parameter_status(frame.body()) {
            self.params_stamp = None;
            self.params.insert(k.to_ascii_lowercase(), v.to_owned());
        }
    }

    /// Reads one frame, waiting for it.
    pub async fn read_frame(&mut self) -> std::io::Result<Frame> {
        loop {
            if let Some(f) = self.try_frame()? {
                return Ok(f);
            }
            self.fill().await?;
        }
    }

    /// Splits a complete frame off the read buffer, if there is one.
    pub fn try_frame(&mut self) -> std::io::Result<Option<Frame>> {
        decode_frame(&mut self.rbuf, MAX_SERVER_MESSAGE)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Moves the complete frames at the front of the read buffer whose tag
    /// `plain` accepts to `out` as they are, without making a frame of each
    /// (rows of a large result). Stops at the first other, incomplete or
    /// malformed one, which is left for [`try_frame`](Self::try_frame).
    pub fn copy_plain(&mut self, out: &mut BytesMut, plain: impl Fn(u8) -> bool) {
        while let Ok(Some((tag, total))) = wire::complete_frame(&self.rbuf, MAX_SERVER_MESSAGE) {
            if !plain(tag) {
                return;
            }
            out.extend_from_slice(&self.rbuf[..total]);
            self.rbuf.advance(total);
        }
    }

    /// Reads more bytes from the socket; cancel-safe, so it may sit in a
    /// `select!`. End of stream is an error.
    pub async fn fill(&mut self) -> std::io::Result<()> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(16 * 1024);
        }
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        Ok(())
    }

    /// Writes bytes and flushes them.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.send(bytes).await
    }

    /// Runs one simple query whose replies the proxy consumes itself, and
    /// returns the first error the server reported, if any.
    pub async fn run_internal(&mut self, sql: &str) -> std::io::Result<Option<String>> {
        self.write(build::query(sql).raw()).await?;
        let mut error = None;
        loop {
            let frame = self.read_frame().await?;
            match frame.tag() {
                b'S' => self.note_parameter(&frame),
                b'E' if error.is_none() => {
                    error = inspect::error_fields(frame.body()).map(|f| f.message);
                }
                b'Z' => {
                    self.status =
                        inspect::ready_for_query(frame.body()).unwrap_or(TxStatus::Failed);
                    return Ok(error);
                }
                _ => {}
            }
        }
    }

    /// Runs one statement with text parameters in its own implicit
    /// transaction (unnamed statement and portal), for the proxy's own
    /// writes. `Ok(Err(fields))` is an error the server reported for the
    /// statement; `Err` means the connection broke.
    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[Option<&str>],
    ) -> std::io::Result<Result<Executed, inspect::ErrorFields>> {
        let mut out = BytesMut::new();
        out.extend_from_slice(build::parse(b"", sql.as_bytes(), &0i16.to_be_bytes()).raw());
        out.extend_from_slice(build::bind_text(b"", b"", params).raw());
        out.extend_from_slice(build::execute(b"", 0).raw());
        out.extend_from_slice(build::sync().raw());
        self.write(&out).await?;
        let mut result = Ok(Executed::default());
        loop {
            let frame = self.read_frame().await?;
            match frame.tag() {
                b'S' => self.note_parameter(&frame),
                b'D' => {
                    if let Ok(done) = &mut result {
                        done.rows.push(text_row(frame.body()));
                    }
                }
                b'C' => {
                    if let Ok(done) = &mut result {
                        done.tag = command_tag(frame.body());
                    }
                }
                b'E' if result.is_ok() => {
                    result = Err(inspect::error_fields(frame.body()).unwrap_or_default());
                }
                b'Z' => {
                    self.status =
                        inspect::ready_for_query(frame.body()).unwrap_or(TxStatus::Failed);
                    return Ok(result);
                }
                _ => {}
            }
        }
    }

    /// Says goodbye; errors are irrelevant on a connection being discarded.
    pub async fn terminate(mut self) {
        let _ = self.write(build::terminate().raw()).await;
    }
}

/// What a statement the proxy ran itself returned.
#[derive(Debug, Default, Clone)]
pub struct Executed {
    pub tag: String,
    pub rows: Vec<Vec<Option<String>>>,
}

/// The columns of a DataRow in text format.
fn text_row(body: &[u8]) -> Vec<Option<String>> {
    let mut r = wire::reader::Reader::new(body);
    let n = r.i16().unwrap_or(0).max(0);
    (0..n)
        .map(|_| match r.i32() {
            Some(len) if len >= 0 => r
                .take(len as usize)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .collect()
}

/// The text of a CommandComplete body.
pub fn command_tag(body: &[u8]) -> String {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).into_owned()
}

/// A failed connection attempt while securing it: 08001, as when the
/// server is unreachable. `detail` is logged, not sent.
fn tls_failed(msg: &str, host: &str, port: u16, detail: impl std::fmt::Display) -> ClientError {
    ClientError::fatal(SqlState::CONNECTION_UNABLE, msg.to_owned())
        .with_detail(format!("{host}:{port}: {detail}"))
}

fn malformed(what: &str) -> ClientError {
    ClientError::fatal(
        SqlState::PROTOCOL_VIOLATION,
        format!("malformed {what} from the database server"),
    )
}

/// The connection to the server broke.
pub fn lost(e: std::io::Error) -> ClientError {
    ClientError::fatal(
        SqlState::CONNECTION_FAILURE,
        "lost connection to the database server",
    )
    .with_detail(e)
}

/// Converts a server's ErrorResponse into an error for the client, keeping
/// the server's SQLSTATE and message (they concern this client's login).
pub fn upstream_error(frame: &Frame, fatal: bool) -> ClientError {
    let fields = inspect::error_fields(frame.body()).unwrap_or_default();
    let code = sqlstate_from(&fields.code);
    let msg = if fields.message.is_empty() {
        "the database server refused the connection".to_owned()
    } else {
        fields.message
    };
    if fatal {
        ClientError::fatal(code, msg)
    } else {
        ClientError::error(code, msg)
    }
}

/// Maps a server's code string onto the codes the proxy knows; others become
/// 08006 (the client sees the server's message either way).
pub(crate) fn sqlstate_from(code: &str) -> SqlState {
    match code {
        "28P01" => SqlState::INVALID_PASSWORD,
        "28000" => SqlState::INVALID_AUTHORIZATION,
        "3D000" => SqlState::INVALID_CATALOG_NAME,
        "53300" => SqlState::TOO_MANY_CONNECTIONS,
        "57P01" => SqlState::ADMIN_SHUTDOWN,
        "08001" => SqlState::CONNECTION_UNABLE,
        _ => SqlState::CONNECTION_FAILURE,
    }
}
