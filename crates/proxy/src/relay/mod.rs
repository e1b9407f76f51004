//! The relay loop of a logged-in client: forwards its frames to a server
//! connection and the server's replies back, rewriting named prepared
//! statements onto the pool's shared names, answering for the ones the
//! proxy handles itself, and handing recognized upserts to the coalescer.
//!
//! What is still owed to the client is tracked as a queue of
//! [`exchange::Pending`] replies, one per message, so the proxy knows
//! exactly when an exchange is over (and the connection may go back to the
//! pool), where to insert the replies it makes up, and which to swallow.
//!
//! - this file: the relay's state and its loop;
//! - `messages`: one handler per client message;
//! - `link`: the server connection: checkout, exchange, pinning, return;
//! - `intercept`: recognized upserts, barriers and acknowledgements;
//! - `reads`: read splitting: a replica for a read, and failover;
//! - `exchange`: the replies owed to the client;
//! - `replay`: a read kept to run again when its replica fails.

mod exchange;
mod intercept;
mod link;
mod messages;
mod reads;
mod replay;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use config::PoolMode;
use futures::future::{Fuse, FutureExt};
use wire::build;
use wire::inspect::TxStatus;
use wire::{Frame, SqlState};

use crate::admin::clients::{Activity, ActivityCell};
use crate::cancel::CancelKey;
use crate::classify::Template;
use crate::coalesce::{AckResult, Coalescer, Group};
use crate::error::ClientError;
use crate::fasthash::FastMap;
use crate::params::ClientParams;
use crate::pool::{Lease, Pool};
use crate::prepared::{ClientStatements, SharedStatement};
use crate::replicas::ReplicaChoice;
use crate::router::Router;
use crate::server::{lost, ServerConn};
use crate::session::ClientIo;
use exchange::{Exchange, Pending};
use replay::{Judged, Replay};

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

/// Who the client is, for the coalescer.
pub struct Identity {
    pub database: String,
    pub user: String,
    /// Rules apply to this client's database.
    pub coalescer: Option<Arc<Coalescer>>,
    /// Longest wait for pending writes before a statement that touches them.
    pub barrier_limit: Duration,
    /// Read splitting for this client's database (transaction mode only).
    pub router: Option<Arc<Router>>,
    /// This client's pools on each replica, in the replica set's order.
    pub replica_pools: Vec<Pool>,
    /// True once the proxy shuts down: the session ends when it is idle.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// What the client is doing, for `SHOW CLIENTS`.
    pub activity: Arc<ActivityCell>,
}

/// A portal bound by an intercepted upsert: the row it writes when (and
/// only if) it is executed, and the replies its Describe and Execute get.
struct Intercepted {
    template: Arc<Template>,
    row: Vec<Option<String>>,
    result_format: i16,
}

/// A logged-in client's relay state.
pub struct Relay {
    pool: Pool,
    /// The pool's mode when the client logged in, kept for the session
    /// (a reload changes it for later logins only).
    mode: PoolMode,
    link: Link,
    statements: ClientStatements,
    cancel: CancelKey,
    who: Identity,
    portals: FastMap<Vec<u8>, Intercepted>,
    /// Coalescing groups by template address; the template is held here so
    /// its address cannot be reused while cached.
    groups: FastMap<usize, (Arc<Template>, Arc<Group>)>,
    x: Exchange,
    to_server: BytesMut,
    /// When this client's last write on the primary finished: its reads
    /// avoid replicas that have not replayed that far.
    last_write: Option<Instant>,
    /// The current exchange runs on the primary and may write.
    writing: bool,
    /// The replica the current exchange runs on, if any.
    replica: Option<ReplicaChoice>,
    /// The read on that replica, until the replica answers it.
    replay: Option<Replay>,
    /// Reads may not take a replica (while one that failed is replayed).
    primary_only: bool,
    /// Coalesced writes this exchange's statements waited for landed at
    /// this moment: a replica must have replayed past it to serve them.
    must_see: Option<Instant>,
    /// A client message that needs the primary, pipelined behind reads
    /// still running on a replica: handled once the replica has answered.
    waiting: Option<Frame>,
    /// Resolves once the proxy starts shutting down.
    stop: StopSignal,
}

/// A wait for shutdown, made once per session and polled only while the
/// session is idle (a fresh `changed()` on every turn of the loop cost 6%
/// of the relay's instructions).
type StopSignal = Fuse<Pin<Box<dyn Future<Output = ()> + Send>>>;

fn stop_signal(mut stopping: tokio::sync::watch::Receiver<bool>) -> StopSignal {
    let wait: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
        // Also resolves if nobody can say so any more (the proxy is gone).
        let _ = stopping.wait_for(|stopping| *stopping).await;
    });
    wait.fuse()
}

enum Event {
    Client(std::io::Result<bool>),
    /// The proxy is shutting down.
    Stop,
    Server(std::io::Result<()>),
    Ack(AckResult),
}

impl Relay {
    /// What the client is doing, for the client registry.
    pub fn activity(&self) -> Arc<ActivityCell> {
        self.who.activity.clone()
    }

    /// Starts relaying with the connection used for login, which is kept in
    /// session mode and returned at once in transaction mode.
    pub fn new(
        pool: Pool,
        lease: Lease,
        params: ClientParams,
        cancel: CancelKey,
        who: Identity,
    ) -> Relay {
        let stop = stop_signal(who.stopping.clone());
        who.activity.set(Activity::Active);
        let mut relay = Relay {
            mode: pool.mode(),
            pool,
            link: Link::Attached(lease),
            statements: ClientStatements::default(),
            cancel,
            who,
            portals: FastMap::default(),
            groups: FastMap::default(),
            x: Exchange::new(params),
            to_server: BytesMut::with_capacity(8 * 1024),
            last_write: None,
            writing: false,
            replica: None,
            replay: None,
            primary_only: false,
            must_see: None,
            waiting: None,
            stop,
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
        let broken = self.x.pending.iter().any(|p| !p.is_local());
        let session_mode = self.mode == PoolMode::Session;
        if let Some(lease) = self.link.lease() {
            lease.in_flight |= broken || result.is_err();
            lease.dirty |= session_mode;
        }
        self.detach();
        result
    }

    async fn relay(&mut self, io: &mut ClientIo) -> Result<(), ClientError> {
        loop {
            // A replica that answered everything goes back before a waiting
            // message is handled.
            self.release_if_done();
            loop {
                let frame = match self.waiting.take() {
                    Some(f) => f,
                    None => match io.try_frame()? {
                        Some(f) => f,
                        None => break,
                    },
                };
                if frame.tag() == b'X' {
                    return Ok(());
                }
                if self.must_wait_for_replica(&frame) {
                    self.waiting = Some(frame);
                    break;
                }
                // A message that may take a replica is kept until the
                // replica answers (cheap: frames share their bytes).
                let kept =
                    (self.replay.is_some() || self.link.lease().is_none()).then(|| frame.clone());
                self.on_client(frame).await?;
                if let (Some(r), Some(f)) = (&mut self.replay, kept) {
                    r.frames.push(f);
                }
            }
            if !self.to_server.is_empty() {
                if let Some(lease) = self.link.lease() {
                    if let Err(e) = lease.write(&self.to_server).await {
                        self.to_server.clear();
                        self.read_elsewhere(true, e).await?;
                        continue;
                    }
                }
                self.to_server.clear();
            }
            self.x.drain_local();
            if !self.x.to_client.is_empty() {
                io.send(&self.x.to_client).await?;
                self.x.to_client.clear();
            }
            self.release_if_done();

            // Shutting down: a session that owes nothing and is in no
            // transaction ends here; others finish what they began first
            // (so only an idle session needs to hear of it).
            let idle = self.is_idle();
            if idle && *self.who.stopping.borrow() {
                return Err(shutdown_notice());
            }
            let ack = match self.x.pending.front_mut() {
                Some(Pending::Ack { rx, .. }) => Some(rx),
                _ => None,
            };
            // A message waiting for the replica to finish is not followed
            // by more of the client's until it has been handled.
            let listen = self.waiting.is_none();
            // In order: the server's replies are read before more of the
            // client's messages (and no random draw is needed to choose).
            let event = match (self.link.lease(), ack) {
                (None, None) => tokio::select! {
                    biased;
                    r = io.fill() => Event::Client(r),
                    _ = &mut self.stop, if idle => Event::Stop,
                },
                (None, Some(rx)) => tokio::select! {
                    biased;
                    a = rx => Event::Ack(a.unwrap_or_else(|_| Err(shutting_down()))),
                    r = io.fill() => Event::Client(r),
                },
                (Some(lease), None) => tokio::select! {
                    biased;
                    r = lease.fill() => Event::Server(r),
                    r = io.fill(), if listen => Event::Client(r),
                    _ = &mut self.stop, if idle => Event::Stop,
                },
                (Some(lease), Some(rx)) => tokio::select! {
                    biased;
                    r = lease.fill() => Event::Server(r),
                    a = rx => Event::Ack(a.unwrap_or_else(|_| Err(shutting_down()))),
                    r = io.fill(), if listen => Event::Client(r),
                },
            };
            match event {
                Event::Client(Ok(true)) => {}
                Event::Client(Ok(false)) | Event::Client(Err(_)) => return Ok(()),
                Event::Ack(result) => self.x.settle_ack(result),
                Event::Stop => {}
                Event::Server(Err(e)) => self.read_elsewhere(true, e).await?,
                Event::Server(Ok(())) => {
                    let Some(lease) = self.link.lease() else {
                        continue;
                    };
                    let mut failed = None;
                    loop {
                        // A read being replayed judges every frame.
                        if self.replay.is_none() {
                            lease.copy_plain(&mut self.x.to_client, Exchange::passes_through);
                        }
                        let Some(frame) = lease.try_frame().map_err(lost)? else {
                            break;
                        };
                        if let Some(r) = &mut self.replay {
                            let terminal = self
                                .x
                                .pending
                                .iter()
                                .any(|p| matches!(p, Pending::Sync | Pending::UntilReady));
                            match replay::judge(&frame, terminal) {
                                Judged::Hold => {
                                    r.held.push(frame);
                                    continue;
                                }
                                Judged::Retry { down } => {
                                    failed = Some(down);
                                    break;
                                }
                                Judged::Answer => {
                                    for held in std::mem::take(&mut r.held) {
                                        self.x.on_server(lease, held);
                                    }
                                    self.replay = None;
                                }
                            }
                        }
                        self.x.on_server(lease, frame);
                    }
                    if let Some(down) = failed {
                        let e = std::io::Error::other("the replica failed the read");
                        self.read_elsewhere(down, e).await?;
                    }
                }
            }
        }
    }

    /// Nothing owed either way and no transaction open: the session may end
    /// without the client losing anything.
    fn is_idle(&mut self) -> bool {
        self.x.pending.is_empty()
            && self.to_server.is_empty()
            && self.waiting.is_none()
            && self.link.lease().is_none_or(|l| l.status == TxStatus::Idle)
    }

    /// Handles one client message.
    async fn on_client(&mut self, frame: Frame) -> Result<(), ClientError> {
        let tag = frame.tag();
        if self.x.local_skipping {
            if tag == b'S' {
                self.x.local_skipping = false;
                self.portals.clear();
                self.x.push_local(build::ready_for_query(TxStatus::Idle));
            }
            return Ok(());
        }
        if self.x.server_skipping && tag != b'S' {
            // The server discards this unseen; no books to keep.
            self.to_server.extend_from_slice(frame.raw());
            return Ok(());
        }
        match tag {
            b'Q' => self.on_query(frame).await,
            b'P' => self.on_parse(frame).await,
            b'B' => self.on_bind(frame).await,
            b'D' => self.on_describe(frame).await,
            b'E' => self.on_execute(frame).await,
            b'C' => self.on_close(frame).await,
            b'S' => self.on_sync(frame).await,
            b'H' => {
                if self.link.lease().is_some() {
                    self.to_server.extend_from_slice(frame.raw());
                }
                Ok(())
            }
            b'p' => Err(ClientError::fatal(
                SqlState::PROTOCOL_VIOLATION,
                "unexpected password message",
            )),
            b'F' => {
                if self.server(tag, None).await? {
                    self.forward(frame, Some(Pending::UntilReady));
                }
                Ok(())
            }
            // CopyData/CopyDone/CopyFail and anything newer: the server
            // decides; none has a reply of its own.
            _ => {
                if self.server(tag, None).await? {
                    self.forward(frame, None);
                }
                Ok(())
            }
        }
    }

    fn forward(&mut self, frame: Frame, reply: Option<Pending>) {
        self.to_server.extend_from_slice(frame.raw());
        if let Some(r) = reply {
            self.x.pending.push_back(r);
        }
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

/// What a client hears when the proxy shuts down under it.
const SHUTTING_DOWN: &str = "the proxy is shutting down";

/// What a client that is idle at shutdown is told before it is closed.
fn shutdown_notice() -> ClientError {
    ClientError::fatal(SqlState::ADMIN_SHUTDOWN, SHUTTING_DOWN)
}

/// A coalesced write's outcome when the coalescer went away at shutdown.
fn shutting_down() -> crate::coalesce::Rejection {
    crate::coalesce::Rejection {
        code: SqlState::ADMIN_SHUTDOWN.code().into(),
        message: SHUTTING_DOWN.into(),
        body: Vec::new(),
    }
}
