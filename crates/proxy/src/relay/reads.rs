//! Read splitting inside the relay: where a statement may run, taking a
//! replica for it, and running a read again elsewhere when its replica
//! fails before answering.

use config::PoolMode;
use wire::inspect;
use wire::Frame;

use super::exchange::Pending;
use super::{Link, Relay};
use crate::admin::clients::Activity;
use crate::coalesce::Verdict;
use crate::error::ClientError;
use crate::pool::Lease;
use crate::replicas::ReplicaChoice;
use crate::route::Route;
use crate::server::lost;

impl Relay {
    /// Where a statement may run for this client, all things considered:
    /// its text (a coalescable upsert it could not hand over always runs on
    /// the primary) and transaction mode (session mode always uses the
    /// primary). How far a replica must have replayed is the caller's
    /// business (`last_write`, `must_see`).
    pub(super) fn route(&self, sql: &[u8]) -> Route {
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
    pub(super) async fn replica_lease(
        &mut self,
        route: Option<Route>,
    ) -> Option<(Lease, ReplicaChoice)> {
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
    pub(super) fn must_wait_for_replica(&self, frame: &Frame) -> bool {
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

    /// The server connection failed with `e`. A read its replica had not
    /// answered yet runs again on another server (the primary, or a replica
    /// that is up when `down` says the failed one is gone); anything else
    /// ends the session with the connection's loss.
    pub(super) async fn read_elsewhere(
        &mut self,
        down: bool,
        e: std::io::Error,
    ) -> Result<(), ClientError> {
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
