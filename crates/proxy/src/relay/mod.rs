//! The relay loop of a logged-in client: forwards its frames to a server
//! connection and the server's replies back, rewriting named prepared
//! statements onto the pool's shared names and answering for the ones the
//! proxy handles itself.
//!
//! What the server still owes is tracked as a queue of [`Pending`] replies,
//! one per forwarded message, so the proxy knows exactly when an exchange is
//! over (and the connection may go back to the pool), where to insert the
//! replies it makes up, and which replies to swallow.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use config::PoolMode;
use wire::build;
use wire::inspect::{self, Target, TxStatus};
use wire::{Frame, SqlState};

use crate::cancel::{CancelKey, CancelTarget};
use crate::error::ClientError;
use crate::params::ClientParams;
use crate::pinning;
use crate::pool::{Lease, Pool};
use crate::prepared::{ClientStatements, SharedStatement};
use crate::server::{lost, ServerConn};
use crate::session::ClientIo;

/// A reply the server (or the proxy) still owes the client, in order.
#[derive(Debug)]
enum Pending {
    /// ParseComplete. `created` names a shared statement this Parse creates
    /// on the server (forgotten again if the Parse fails); `forward` is false
    /// for a Parse the proxy injected, whose reply the client never asked for.
    Parse {
        created: Option<Arc<[u8]>>,
        forward: bool,
    },
    Bind,
    /// ParameterDescription, then RowDescription or NoData.
    DescribeStatement,
    /// RowDescription or NoData.
    DescribePortal,
    /// Rows, then CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    Close,
    Sync,
    /// A simple Query or FunctionCall: everything up to ReadyForQuery.
    UntilReady,
    /// A reply the proxy makes up, sent when it reaches the front.
    Synthetic(Frame),
}

/// The client's hold on a server connection.
enum Link {
    /// None: between transactions in transaction mode.
    Detached,
    /// For the current transaction (transaction mode) or the session.
    Attached(Lease),
    /// Session state ties the client to this connection until it leaves.
    Pinned(Lease),
}

impl Link {
    fn lease(&mut self) -> Option<&mut Lease> {
        match self {
            Link::Detached => None,
            Link::Attached(l) | Link::Pinned(l) => Some(l),
        }
    }
}

/// Replies owed and bytes on their way to the client.
struct Exchange {
    pending: VecDeque<Pending>,
    /// After an error in an extended-protocol exchange with no Sync queued,
    /// the server ignores everything up to the next Sync: so must the books.
    server_skipping: bool,
    to_client: BytesMut,
    params: ClientParams,
}

/// A logged-in client's relay state.
pub struct Relay {
    pool: Pool,
    link: Link,
    statements: ClientStatements,
    cancel: CancelKey,
    x: Exchange,
    /// The proxy failed a request without a server (no connection could be
    /// had): it drops the client's messages up to the next Sync itself.
    local_skipping: bool,
    to_server: BytesMut,
}

enum Event {
    Client(std::io::Result<bool>),
    Server(std::io::Result<()>),
}

impl Relay {
    /// Starts relaying with the connection used for login, which is kept in
    /// session mode and returned at once in transaction mode.
    pub fn new(pool: Pool, lease: Lease, params: ClientParams, cancel: CancelKey) -> Relay {
        let mut relay = Relay {
            pool,
            link: Link::Attached(lease),
            statements: ClientStatements::default(),
            cancel,
            x: Exchange {
                pending: VecDeque::new(),
                server_skipping: false,
                to_client: BytesMut::with_capacity(16 * 1024),
                params,
            },
            local_skipping: false,
            to_server: BytesMut::with_capacity(8 * 1024),
        };
        relay.set_cancel_target();
        relay.release_if_done();
        relay
    }

    /// Relays until the client leaves; a fatal error is sent to it first.
    pub async fn run(mut self, mut io: ClientIo) -> Result<(), ClientError> {
        let result = self.relay(&mut io).await;
        if let Err(e) = &result {
            if e.is_fatal() {
                self.x.to_client.extend_from_slice(e.to_frame().raw());
            }
        }
        if !self.x.to_client.is_empty() {
            let _ = io.send(&self.x.to_client).await;
        }
        let broken = !self.x.pending.is_empty();
        let session_mode = self.pool.mode() == PoolMode::Session;
        if let Some(lease) = self.link.lease() {
            lease.in_flight |= broken || result.is_err();
            lease.dirty |= session_mode;
        }
        self.detach();
        result
    }

    async fn relay(&mut self, io: &mut ClientIo) -> Result<(), ClientError> {
        loop {
            while let Some(frame) = io.try_frame()? {
                if frame.tag() == b'X' {
                    return Ok(());
                }
                self.on_client(frame).await?;
            }
            if !self.to_server.is_empty() {
                if let Some(lease) = self.link.lease() {
                    lease.write(&self.to_server).await.map_err(lost)?;
                }
                self.to_server.clear();
            }
            self.x.drain_synthetic();
            if !self.x.to_client.is_empty() {
                io.send(&self.x.to_client).await?;
                self.x.to_client.clear();
            }
            self.release_if_done();

            let event = match self.link.lease() {
                None => Event::Client(io.fill().await),
                Some(lease) => tokio::select! {
                    r = io.fill() => Event::Client(r),
                    r = lease.fill() => Event::Server(r),
                },
            };
            match event {
                Event::Client(Ok(true)) => {}
                Event::Client(Ok(false)) | Event::Client(Err(_)) => return Ok(()),
                Event::Server(r) => {
                    r.map_err(lost)?;
                    let Some(lease) = self.link.lease() else {
                        continue;
                    };
                    while let Some(frame) = lease.try_frame().map_err(lost)? {
                        self.x.on_server(lease, frame);
                    }
                }
            }
        }
    }

    /// Forwards one client message, checking out a server first if needed.
    async fn on_client(&mut self, frame: Frame) -> Result<(), ClientError> {
        if self.local_skipping {
            if frame.tag() == b'S' {
                self.local_skipping = false;
                self.x
                    .to_client
                    .extend_from_slice(build::ready_for_query(TxStatus::Idle).raw());
            }
            return Ok(());
        }
        if self.link.lease().is_none() {
            if let Err(e) = self.attach().await {
                if e.is_fatal() {
                    return Err(e);
                }
                tracing::warn!(error = %e, "no server connection for a client request");
                self.x.to_client.extend_from_slice(e.to_frame().raw());
                match frame.tag() {
                    b'Q' | b'F' | b'S' => self
                        .x
                        .to_client
                        .extend_from_slice(build::ready_for_query(TxStatus::Idle).raw()),
                    _ => self.local_skipping = true,
                }
                return Ok(());
            }
        }
        let Some(lease) = self.link.lease() else {
            return Ok(());
        };
        let tag = frame.tag();
        if self.x.server_skipping && tag != b'S' {
            // The server discards this unseen; no books to keep.
            self.to_server.extend_from_slice(frame.raw());
            return Ok(());
        }
        let mut pin = false;
        match tag {
            b'Q' => {
                let sql = inspect::password(frame.body()).ok_or_else(|| malformed("Query"))?;
                pin = self.note_effects(sql);
                self.forward(frame, Some(Pending::UntilReady));
            }
            b'P' => {
                let p = inspect::parse(frame.body()).ok_or_else(|| malformed("Parse"))?;
                pin = self.note_effects(p.query);
                let Some(lease) = self.link.lease() else {
                    return Ok(());
                };
                if p.statement.is_empty() {
                    self.to_server.extend_from_slice(frame.raw());
                    self.x.pending.push_back(Pending::Parse {
                        created: None,
                        forward: true,
                    });
                } else {
                    let shared = self.pool.statements().intern(p.query, p.param_types);
                    self.statements.insert(p.statement, shared.clone());
                    if lease.prepared.contains(&shared.name) {
                        self.x
                            .pending
                            .push_back(Pending::Synthetic(build::parse_complete()));
                    } else {
                        prepare_on(lease, &shared, true, &mut self.to_server, &mut self.x);
                    }
                }
            }
            b'B' => {
                let b = inspect::bind(frame.body()).ok_or_else(|| malformed("Bind"))?;
                match self.statements.get(b.statement) {
                    Some(shared) if !b.statement.is_empty() => {
                        prepare_on(lease, shared, false, &mut self.to_server, &mut self.x);
                        let bind = build::bind(b.portal, &shared.name, b.rest);
                        self.to_server.extend_from_slice(bind.raw());
                    }
                    _ => self.to_server.extend_from_slice(frame.raw()),
                }
                self.x.pending.push_back(Pending::Bind);
            }
            b'D' => match inspect::target(frame.body()).ok_or_else(|| malformed("Describe"))? {
                Target::Statement(name) => {
                    match self.statements.get(name) {
                        Some(shared) if !name.is_empty() => {
                            prepare_on(lease, shared, false, &mut self.to_server, &mut self.x);
                            let d = build::describe_statement(&shared.name);
                            self.to_server.extend_from_slice(d.raw());
                        }
                        _ => self.to_server.extend_from_slice(frame.raw()),
                    }
                    self.x.pending.push_back(Pending::DescribeStatement);
                }
                Target::Portal(_) => self.forward(frame, Some(Pending::DescribePortal)),
            },
            b'C' => match inspect::target(frame.body()).ok_or_else(|| malformed("Close"))? {
                Target::Statement(name) if !name.is_empty() => {
                    // Shared statements stay on the server for other clients;
                    // closing a name that does not exist is no error either.
                    self.statements.remove(name);
                    self.x
                        .pending
                        .push_back(Pending::Synthetic(build::close_complete()));
                }
                _ => self.forward(frame, Some(Pending::Close)),
            },
            b'E' => self.forward(frame, Some(Pending::Execute)),
            b'S' => self.forward(frame, Some(Pending::Sync)),
            b'F' => self.forward(frame, Some(Pending::UntilReady)),
            b'p' => {
                return Err(ClientError::fatal(
                    SqlState::PROTOCOL_VIOLATION,
                    "unexpected password message",
                ))
            }
            // Flush, CopyData/CopyDone/CopyFail and anything newer: the
            // server decides; none has a reply of its own.
            _ => self.forward(frame, None),
        }
        if pin {
            self.pin();
        }
        Ok(())
    }

    fn forward(&mut self, frame: Frame, reply: Option<Pending>) {
        self.to_server.extend_from_slice(frame.raw());
        if let Some(r) = reply {
            self.x.pending.push_back(r);
        }
    }

    /// Looks at a statement for session state; returns whether it pins.
    fn note_effects(&mut self, sql: &[u8]) -> bool {
        let effects = pinning::effects(sql);
        if effects.drops_prepared {
            self.statements.clear();
            if let Some(lease) = self.link.lease() {
                lease.prepared.clear();
            }
        }
        effects.pins
    }

    fn pin(&mut self) {
        if let Link::Attached(mut lease) = std::mem::replace(&mut self.link, Link::Detached) {
            lease.dirty = true;
            self.link = Link::Pinned(lease);
        } else if let Link::Pinned(l) = std::mem::replace(&mut self.link, Link::Detached) {
            self.link = Link::Pinned(l);
        }
    }

    /// Checks out a server and brings its parameters in line with the client's.
    async fn attach(&mut self) -> Result<(), ClientError> {
        let mut lease = self.pool.acquire().await.map_err(|mut e| {
            // The client may retry; only this request fails.
            e.severity = build::Severity::Error;
            e
        })?;
        if let Some(sql) = self.x.params.sync_sql(&mut lease) {
            match lease.run_internal(&sql).await {
                Ok(None) => self.x.params.after_sync(&mut lease),
                Ok(Some(err)) => tracing::warn!(%err, "could not replay client parameters"),
                Err(e) => {
                    lease.discard();
                    return Err(ClientError::error(
                        SqlState::CONNECTION_FAILURE,
                        "lost connection to the database server",
                    )
                    .with_detail(e));
                }
            }
        }
        self.link = Link::Attached(lease);
        self.set_cancel_target();
        Ok(())
    }

    fn set_cancel_target(&mut self) {
        let target = self.link.lease().map(|l| CancelTarget {
            addr: l.addr.clone(),
            pid: l.backend_key.0,
            secret: l.backend_key.1,
        });
        self.cancel.set_target(target);
    }

    /// In transaction mode, returns the connection once the server is idle
    /// and owes nothing.
    fn release_if_done(&mut self) {
        if self.pool.mode() != PoolMode::Transaction || !self.x.pending.is_empty() {
            return;
        }
        if let Link::Attached(lease) = &self.link {
            if lease.status == TxStatus::Idle && self.to_server.is_empty() {
                self.detach();
            }
        }
    }

    fn detach(&mut self) {
        self.cancel.set_target(None);
        self.link = Link::Detached;
    }
}

/// Makes sure `shared` exists on the server, queueing its Parse if not.
fn prepare_on(
    lease: &mut ServerConn,
    shared: &SharedStatement,
    client_asked: bool,
    to_server: &mut BytesMut,
    x: &mut Exchange,
) {
    if lease.prepared.contains(&shared.name) {
        return;
    }
    lease.prepared.insert(shared.name.clone());
    to_server.extend_from_slice(shared.parse.raw());
    x.pending.push_back(Pending::Parse {
        created: Some(shared.name.clone()),
        forward: client_asked,
    });
}

fn malformed(what: &str) -> ClientError {
    ClientError::fatal(
        SqlState::PROTOCOL_VIOLATION,
        format!("invalid {what} message"),
    )
}

impl Exchange {
    /// Sends the made-up replies that have reached the front of the queue.
    fn drain_synthetic(&mut self) {
        while let Some(Pending::Synthetic(_)) = self.pending.front() {
            if let Some(Pending::Synthetic(f)) = self.pending.pop_front() {
                self.to_client.extend_from_slice(f.raw());
            }
        }
    }

    /// Handles one server message: books, then forward (or swallow).
    fn on_server(&mut self, lease: &mut ServerConn, frame: Frame) {
        let mut forward = true;
        match frame.tag() {
            b'S' => {
                lease.note_parameter(&frame);
                if let Some((k, v)) = inspect::parameter_status(frame.body()) {
                    self.params.observe(k, v);
                }
            }
            b'Z' => {
                lease.status = inspect::ready_for_query(frame.body()).unwrap_or(TxStatus::Failed);
                self.server_skipping = false;
                if matches!(
                    self.pending.front(),
                    Some(Pending::Sync | Pending::UntilReady)
                ) {
                    self.pending.pop_front();
                }
            }
            b'E' => {
                if !matches!(self.pending.front(), Some(Pending::UntilReady) | None) {
                    // Extended protocol: the server skips to the next Sync.
                    while let Some(p) = self.pending.front() {
                        if matches!(p, Pending::Sync) {
                            break;
                        }
                        if let Some(Pending::Parse {
                            created: Some(name),
                            ..
                        }) = self.pending.pop_front()
                        {
                            lease.prepared.remove(&name);
                        }
                    }
                    self.server_skipping = self.pending.is_empty();
                }
            }
            b'1' => {
                if let Some(Pending::Parse { forward: f, .. }) = self.pending.front() {
                    forward = *f;
                    self.pending.pop_front();
                }
            }
            b'2' | b'3' => {
                self.pending.pop_front();
            }
            b'T' | b'n' => {
                if matches!(
                    self.pending.front(),
                    Some(Pending::DescribeStatement | Pending::DescribePortal)
                ) {
                    self.pending.pop_front();
                }
            }
            b'C' | b'I' | b's' => {
                if matches!(self.pending.front(), Some(Pending::Execute)) {
                    self.pending.pop_front();
                }
            }
            _ => {}
        }
        if forward {
            self.to_client.extend_from_slice(frame.raw());
        }
        self.drain_synthetic();
    }
}
