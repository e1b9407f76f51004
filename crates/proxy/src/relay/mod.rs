//! The relay loop of a logged-in client: forwards its frames to a server
//! connection and the server's replies back, rewriting named prepared
//! statements onto the pool's shared names, answering for the ones the
//! proxy handles itself, and handing recognized upserts to the coalescer.
//!
//! What is still owed to the client is tracked as a queue of
//! [`exchange::Pending`] replies, one per message, so the proxy knows
//! exactly when an exchange is over (and the connection may go back to the
//! pool), where to insert the replies it makes up, and which to swallow.

mod exchange;
mod replay;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use config::PoolMode;
use futures::future::{Fuse, FutureExt};
use wire::build;
use wire::inspect::{self, Target, TxStatus};
use wire::{Frame, SqlState};

use crate::admin::clients::{Activity, ActivityCell};
use crate::cancel::{CancelKey, CancelTarget};
use crate::classify::Template;
use crate::coalesce::{AckResult, Coalescer, Group, Verdict};
use crate::error::ClientError;
use crate::fasthash::FastMap;
use crate::params::ClientParams;
use crate::pinning;
use crate::pool::{Lease, Pool};
use crate::prepared::{ClientStatements, SharedStatement};
use crate::replicas::ReplicaChoice;
use crate::route::Route;
use crate::router::Router;
use crate::server::{lost, ServerConn};
use crate::session::ClientIo;
use crate::upsert;
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

    async fn on_query(&mut self, frame: Frame) -> Result<(), ClientError> {
        let sql = inspect::password(frame.body()).ok_or_else(|| malformed("Query"))?;
        let (verdict, row) = match &self.who.coalescer {
            Some(c) => c.inspect_query(&self.who.database, sql),
            None => (Verdict::Irrelevant, None),
        };
        if let (Verdict::Upsert(t), Some(row)) = (&verdict, row) {
            if self.can_intercept() {
                let mut ok = upsert::simple_replies(t);
                ok.push(build::ready_for_query(TxStatus::Idle));
                match self.submit(t, row).await {
                    Ok(Some(rx)) => self.x.pending.push_back(Pending::Ack {
                        rx,
                        ok,
                        simple: true,
                    }),
                    Ok(None) => ok.into_iter().for_each(|f| self.x.push_local(f)),
                    Err(e) => {
                        self.x.push_local(e.to_frame());
                        self.x.push_local(build::ready_for_query(TxStatus::Idle));
                    }
                }
                return Ok(());
            }
        }
        self.barrier(&verdict).await?;
        if !self.server(b'Q', Some(sql)).await? {
            return Ok(());
        }
        let pin = self.note_effects(sql);
        self.forward(frame, Some(Pending::UntilReady));
        if pin {
            self.pin();
        }
        Ok(())
    }

    async fn on_parse(&mut self, frame: Frame) -> Result<(), ClientError> {
        let p = inspect::parse(frame.body()).ok_or_else(|| malformed("Parse"))?;
        let verdict = self.verdict(p.query);
        if let Verdict::Upsert(_) = verdict {
            // Kept by the proxy; prepared on a server only if ever needed
            // there (Describe, or a Bind that cannot be coalesced).
            let shared = self.pool.statements().intern(p.query, p.param_types);
            self.statements.insert(p.statement, shared, verdict);
            self.x.push_local(build::parse_complete());
            return Ok(());
        }
        self.barrier(&verdict).await?;
        if !self.server(b'P', Some(p.query)).await? {
            return Ok(());
        }
        let pin = self.note_effects(p.query);
        if p.statement.is_empty() {
            self.statements.remove(b"");
            self.to_server.extend_from_slice(frame.raw());
            self.x.pending.push_back(Pending::Parse {
                created: None,
                forward: true,
            });
        } else {
            let shared = self.pool.statements().intern(p.query, p.param_types);
            self.statements.insert(p.statement, shared.clone(), verdict);
            let Some(lease) = self.link.lease() else {
                return Ok(());
            };
            if lease.prepared.contains(&shared.name) {
                self.x.push_local(build::parse_complete());
            } else {
                prepare_on(lease, &shared, true, &mut self.to_server, &mut self.x);
            }
        }
        if pin {
            self.pin();
        }
        Ok(())
    }

    async fn on_bind(&mut self, frame: Frame) -> Result<(), ClientError> {
        let b = inspect::bind(frame.body()).ok_or_else(|| malformed("Bind"))?;
        let stmt = self.statements.get(b.statement).cloned();
        if let Some(cs) = &stmt {
            if let Verdict::Upsert(t) = &cs.verdict {
                if self.can_intercept() {
                    let taken = upsert::row_from_bind(
                        t,
                        b.rest,
                        cs.shared.param_oids.get(),
                        &cs.shared.param_types,
                    );
                    if let Some((row, result_format)) = taken {
                        self.portals.insert(
                            b.portal.to_vec(),
                            Intercepted {
                                template: t.clone(),
                                row,
                                result_format,
                            },
                        );
                        self.x.push_local(build::bind_complete());
                        return Ok(());
                    }
                }
            }
            self.barrier(&cs.verdict).await?;
        }
        let query = stmt.as_ref().map(|cs| &cs.shared.query[..]);
        if !self.server(b'B', query).await? {
            return Ok(());
        }
        let Some(lease) = self.link.lease() else {
            return Ok(());
        };
        match &stmt {
            Some(cs) => {
                prepare_on(lease, &cs.shared, false, &mut self.to_server, &mut self.x);
                build::put_bind(&mut self.to_server, b.portal, &cs.shared.name, b.rest);
            }
            None => self.to_server.extend_from_slice(frame.raw()),
        }
        self.x.pending.push_back(Pending::Bind);
        Ok(())
    }

    async fn on_describe(&mut self, frame: Frame) -> Result<(), ClientError> {
        match inspect::target(frame.body()).ok_or_else(|| malformed("Describe"))? {
            Target::Portal(name) => {
                if let Some(i) = self.portals.get(name) {
                    let reply = upsert::describe_portal(&i.template, i.result_format);
                    self.x.push_local(reply);
                } else if self.server(b'D', None).await? {
                    self.forward(frame, Some(Pending::DescribePortal));
                }
            }
            Target::Statement(name) => {
                let stmt = self.statements.get(name).cloned();
                if !self.server(b'D', None).await? {
                    return Ok(());
                }
                let Some(lease) = self.link.lease() else {
                    return Ok(());
                };
                match stmt {
                    Some(cs) => {
                        prepare_on(lease, &cs.shared, false, &mut self.to_server, &mut self.x);
                        let d = build::describe_statement(&cs.shared.name);
                        self.to_server.extend_from_slice(d.raw());
                        self.x
                            .pending
                            .push_back(Pending::DescribeStatement(Some(cs.shared)));
                    }
                    None => self.forward(frame, Some(Pending::DescribeStatement(None))),
                }
            }
        }
        Ok(())
    }

    async fn on_execute(&mut self, frame: Frame) -> Result<(), ClientError> {
        let portal = inspect::password(frame.body()).ok_or_else(|| malformed("Execute"))?;
        if let Some(i) = self.portals.remove(portal) {
            // Writes sharing one Sync run in one implicit transaction: an
            // earlier one's failure must keep this one from being written.
            if self.ack_since_sync() {
                self.settle_acks().await;
                if self.x.local_skipping {
                    return Ok(());
                }
            }
            let ok = upsert::execute_replies(&i.template);
            match self.submit(&i.template, i.row).await {
                Ok(Some(rx)) => self.x.pending.push_back(Pending::Ack {
                    rx,
                    ok,
                    simple: false,
                }),
                Ok(None) => ok.into_iter().for_each(|f| self.x.push_local(f)),
                Err(e) => {
                    self.x.push_local(e.to_frame());
                    self.x.local_skipping = true;
                }
            }
            return Ok(());
        }
        if self.server(b'E', None).await? {
            self.forward(frame, Some(Pending::Execute));
        }
        Ok(())
    }

    async fn on_close(&mut self, frame: Frame) -> Result<(), ClientError> {
        match inspect::target(frame.body()).ok_or_else(|| malformed("Close"))? {
            Target::Statement(name) if self.statements.get(name).is_some() || !name.is_empty() => {
                // Shared statements stay on the server for other clients;
                // closing a name that does not exist is no error either.
                self.statements.remove(name);
                self.x.push_local(build::close_complete());
            }
            Target::Portal(name) if self.portals.remove(name).is_some() => {
                self.x.push_local(build::close_complete());
            }
            _ => {
                if self.server(b'C', None).await? {
                    self.forward(frame, Some(Pending::Close));
                }
            }
        }
        Ok(())
    }

    async fn on_sync(&mut self, frame: Frame) -> Result<(), ClientError> {
        self.portals.clear();
        // When this exchange asked the server for nothing (only coalesced
        // writes and made-up replies), the proxy answers its Sync itself, in
        // order behind them; the server, idle, has nothing to say.
        let all_local = self.x.pending.iter().all(Pending::is_local);
        let server_idle = match self.link.lease() {
            None => true,
            Some(l) => l.status == TxStatus::Idle && all_local && !self.x.server_skipping,
        };
        if server_idle && self.to_server.is_empty() {
            self.x.push_local(build::ready_for_query(TxStatus::Idle));
        } else {
            self.forward(frame, Some(Pending::Sync));
        }
        Ok(())
    }

    fn forward(&mut self, frame: Frame, reply: Option<Pending>) {
        self.to_server.extend_from_slice(frame.raw());
        if let Some(r) = reply {
            self.x.pending.push_back(r);
        }
    }

    /// What the coalescer makes of a statement (nothing without rules).
    fn verdict(&self, sql: &[u8]) -> Verdict {
        match &self.who.coalescer {
            Some(c) => c.inspect(&self.who.database, sql),
            None => Verdict::Irrelevant,
        }
    }

    /// Whether an upsert may be coalesced now: the client speaks UTF-8, is
    /// not inside a transaction and owes the server nothing (so no statement
    /// it sent earlier can run after it).
    fn can_intercept(&mut self) -> bool {
        // Values are decoded as UTF-8: other client encodings pass through.
        let utf8 =
            self.x.params.get("client_encoding").is_none_or(|e| {
                e.eq_ignore_ascii_case("utf8") || e.eq_ignore_ascii_case("unicode")
            });
        if !utf8 {
            return false;
        }
        let pending_local = self.x.pending.iter().all(Pending::is_local);
        match self.link.lease() {
            None => true,
            Some(l) => l.status == TxStatus::Idle && pending_local && !self.x.server_skipping,
        }
    }

    async fn submit(
        &mut self,
        t: &Arc<Template>,
        row: Vec<Option<String>>,
    ) -> Result<Option<tokio::sync::oneshot::Receiver<AckResult>>, ClientError> {
        let Some(c) = &self.who.coalescer else {
            return Err(ClientError::error(SqlState::INTERNAL_ERROR, "no coalescer"));
        };
        let id = Arc::as_ptr(t) as usize;
        let group = match self.groups.get(&id) {
            Some((_, g)) => g.clone(),
            None => {
                let g = c.group(&self.who.database, &self.who.user, &self.pool, t)?;
                // Simple-protocol writes make a template per text: keep the
                // cache small so it never holds more than a few of them.
                if self.groups.len() >= 64 {
                    self.groups.clear();
                }
                self.groups.insert(id, (t.clone(), g.clone()));
                g
            }
        };
        c.submit(&group, row).await
    }

    /// Before a statement that touches coalesced tables or functions goes to
    /// the server, the writes pending for them land.
    async fn barrier(&mut self, verdict: &Verdict) -> Result<(), ClientError> {
        let (Some(c), Verdict::Touches(rules)) = (&self.who.coalescer, verdict) else {
            return Ok(());
        };
        let landed = c
            .barrier(&self.who.database, rules.as_deref(), self.who.barrier_limit)
            .await
            .map_err(|mut e| {
                // The exchange cannot be resumed half-way: end the session.
                e.severity = build::Severity::Fatal;
                e
            })?;
        // A replica serving this statement must have those writes too.
        self.must_see = self.must_see.max(landed);
        Ok(())
    }

    /// Makes sure a server connection is attached, after every coalesced
    /// write before it was acknowledged (so replies keep their order).
    /// `sql` is the statement that needs it, which decides between the
    /// primary and a replica. `Ok(false)`: none could be had; the client got
    /// an error instead.
    async fn server(&mut self, tag: u8, sql: Option<&[u8]>) -> Result<bool, ClientError> {
        self.settle_acks().await;
        // What may write: a statement that must run on the primary, a
        // function call, COPY data. Describe, Execute and the like belong
        // to a statement already judged when it was parsed or bound.
        let route = sql.map(|q| self.route(q));
        let may_write = match route {
            Some(r) => r == Route::Primary,
            None => matches!(tag, b'F' | b'd' | b'c'),
        };
        if self.link.lease().is_some() {
            if self.replica.is_none() && may_write {
                self.writing = true;
            }
            return Ok(true);
        }
        match self.attach(route, may_write).await {
            Ok(()) => Ok(true),
            Err(e) if e.is_fatal() => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "no server connection for a client request");
                self.x.push_local(e.to_frame());
                match tag {
                    b'Q' | b'F' | b'S' => self.x.push_local(build::ready_for_query(TxStatus::Idle)),
                    _ => self.x.local_skipping = true,
                }
                Ok(false)
            }
        }
    }

    /// Whether a coalesced write's acknowledgement is owed since the last
    /// Sync (in the current implicit transaction).
    fn ack_since_sync(&self) -> bool {
        for p in self.x.pending.iter().rev() {
            match p {
                Pending::Ack { .. } => return true,
                Pending::Sync => return false,
                Pending::Synthetic(f) if f.tag() == b'Z' => return false,
                _ => {}
            }
        }
        false
    }

    /// Waits for the acknowledgements still owed, in order.
    async fn settle_acks(&mut self) {
        while self
            .x
            .pending
            .iter()
            .any(|p| matches!(p, Pending::Ack { .. }))
        {
            self.x.drain_local();
            if let Some(Pending::Ack { rx, .. }) = self.x.pending.front_mut() {
                let result = rx.await.unwrap_or_else(|_| Err(shutting_down()));
                self.x.settle_ack(result);
            } else if !self.x.pending.front().is_some_and(Pending::is_local) {
                return; // server replies come first: the loop handles them
            }
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
        self.link = match std::mem::replace(&mut self.link, Link::Detached) {
            Link::Attached(mut lease) | Link::Pinned(mut lease) => {
                lease.dirty = true;
                Link::Pinned(lease)
            }
            Link::Detached => Link::Detached,
        };
    }

    /// Where a statement may run for this client, all things considered:
    /// its text (a coalescable upsert it could not hand over always runs on
    /// the primary) and transaction mode (session mode always uses the
    /// primary). How far a replica must have replayed is the caller's
    /// business (`last_write`, `must_see`).
    fn route(&self, sql: &[u8]) -> Route {
        let Some(router) = &self.who.router else {
            return Route::Primary;
        };
        if self.mode != PoolMode::Transaction || matches!(self.verdict(sql), Verdict::Upsert(_)) {
            return Route::Primary;
        }
        // Reads of coalesced tables may go to a replica too: the barrier
        // before them tells how far it must have replayed.
        router.route(sql)
    }

    /// A replica connection for a read, if a replica is up and has replayed
    /// this client's last write; a replica that cannot be reached is marked
    /// down and the read goes to the primary instead.
    async fn replica_lease(&mut self, route: Option<Route>) -> Option<(Lease, ReplicaChoice)> {
        if self.primary_only || route != Some(Route::ReplicaOk) {
            return None;
        }
        let router = self.who.router.clone()?;
        let choice = router.replicas.choose(self.last_write.max(self.must_see))?;
        let pool = self.who.replica_pools.get(choice.index)?.clone();
        match pool.acquire().await {
            Ok(lease) => Some((lease, choice)),
            Err(e) => {
                tracing::warn!(replica = %choice.host, error = %e, "replica unreachable; reading from the primary");
                router.replicas.mark_down(choice.index);
                None
            }
        }
    }

    /// Whether `frame` starts a statement that must run on the primary
    /// while the replica attached for earlier reads still owes replies: it
    /// waits for them, then takes the primary. (Inside a transaction on the
    /// replica, which only `BEGIN READ ONLY` opens, statements stay there
    /// and a write fails as Postgres fails it in a read-only transaction.)
    fn must_wait_for_replica(&self, frame: &Frame) -> bool {
        if self.replica.is_none() || self.x.pending.iter().all(Pending::is_local) {
            return false;
        }
        let route = match frame.tag() {
            b'Q' => inspect::password(frame.body()).map(|q| self.route(q)),
            b'P' => inspect::parse(frame.body()).map(|p| self.route(p.query)),
            b'B' => inspect::bind(frame.body())
                .and_then(|b| self.statements.get(b.statement))
                .and_then(|cs| inspect::parse(cs.shared.parse.body()).map(|p| self.route(p.query))),
            b'F' => return true,
            _ => None,
        };
        route.is_some_and(|r| r != Route::ReplicaOk)
    }

    /// Checks out a server (a replica when `route`, that of the statement
    /// needing it, allows one; else the primary) and brings its parameters
    /// in line with the client's.
    async fn attach(&mut self, route: Option<Route>, may_write: bool) -> Result<(), ClientError> {
        self.who.activity.set(Activity::Waiting);
        let attached = self.attach_server(route, may_write).await;
        let now = if attached.is_ok() {
            Activity::Active
        } else {
            Activity::Idle
        };
        self.who.activity.set(now);
        attached
    }

    async fn attach_server(
        &mut self,
        route: Option<Route>,
        may_write: bool,
    ) -> Result<(), ClientError> {
        let mut lease = match self.replica_lease(route).await {
            Some((lease, choice)) => {
                self.replica = Some(choice);
                self.replay = Some(Replay::new(self.x.pending.len(), self.x.delivered));
                self.writing = false;
                lease
            }
            None => {
                self.replica = None;
                self.writing = may_write;
                self.pool.acquire().await.map_err(|mut e| {
                    // The client may retry; only this request fails.
                    e.severity = build::Severity::Error;
                    e
                })?
            }
        };
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
        if self.mode != PoolMode::Transaction
            || self.x.server_skipping
            || self.x.pending.iter().any(|p| !p.is_local())
        {
            return;
        }
        if let Link::Attached(lease) = &self.link {
            if lease.status == TxStatus::Idle && self.to_server.is_empty() {
                self.detach();
            }
        }
    }

    fn detach(&mut self) {
        self.who.activity.set(Activity::Idle);
        self.cancel.set_target(None);
        if std::mem::take(&mut self.writing) {
            self.last_write = Some(Instant::now());
        }
        self.replica = None;
        self.replay = None;
        self.must_see = None;
        self.link = Link::Detached;
    }

    /// The server connection failed with `e`. A read its replica had not
    /// answered yet runs again on another server (the primary, or a replica
    /// that is up when `down` says the failed one is gone); anything else
    /// ends the session with the connection's loss.
    async fn read_elsewhere(&mut self, down: bool, e: std::io::Error) -> Result<(), ClientError> {
        let Some(r) = self.replay.take() else {
            return Err(lost(e));
        };
        let Some(unsent) = r.unsent_before(self.x.delivered) else {
            return Err(lost(e));
        };
        if self
            .x
            .pending
            .iter()
            .skip(unsent)
            .any(|p| matches!(p, Pending::Ack { .. }))
        {
            return Err(lost(e));
        }
        if let (Some(choice), Some(router)) = (&self.replica, &self.who.router) {
            tracing::warn!(replica = %choice.host, port = choice.port, error = %e,
                "replica failed before answering a read; running it elsewhere");
            if down {
                router.replicas.mark_down(choice.index);
            }
        }
        self.x.pending.truncate(unsent);
        self.x.server_skipping = false;
        self.to_server.clear();
        if let Link::Attached(lease) | Link::Pinned(lease) =
            std::mem::replace(&mut self.link, Link::Detached)
        {
            lease.discard();
        }
        self.cancel.set_target(None);
        self.who.activity.set(Activity::Idle);
        self.replica = None;
        // A recovery conflict says nothing about the replica's health, but
        // the read should not meet it again: this once, the primary.
        self.primary_only = !down;
        let mut result = Ok(());
        for frame in r.frames {
            result = self.on_client(frame.clone()).await;
            if result.is_err() {
                break;
            }
            // Taken by another replica: kept again for it.
            if let Some(again) = &mut self.replay {
                again.frames.push(frame);
            }
        }
        self.primary_only = false;
        result
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
