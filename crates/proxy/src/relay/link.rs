//! The relay's server connection: checking one out (and bringing its
//! parameters in line), the exchange with it, pinning, and returning it
//! to the pool when the client is done.

use std::time::Instant;

use config::PoolMode;
use wire::build;
use wire::inspect::TxStatus;
use wire::SqlState;

use super::replay::Replay;
use super::{Link, Relay};
use crate::admin::clients::Activity;
use crate::cancel::CancelTarget;
use crate::error::ClientError;
use crate::pinning;
use crate::route::Route;

impl Relay {
    /// Makes sure a server connection is attached, after every coalesced
    /// write before it was acknowledged (so replies keep their order).
    /// `sql` is the statement that needs it, which decides between the
    /// primary and a replica. `Ok(false)`: none could be had; the client got
    /// an error instead.
    pub(super) async fn server(
        &mut self,
        tag: u8,
        sql: Option<&[u8]>,
    ) -> Result<bool, ClientError> {
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

    /// Looks at a statement for session state; returns whether it pins.
    pub(super) fn note_effects(&mut self, sql: &[u8]) -> bool {
        let effects = pinning::effects(sql);
        if effects.drops_prepared {
            self.statements.clear();
            if let Some(lease) = self.link.lease() {
                lease.prepared.clear();
            }
        }
        effects.pins
    }

    pub(super) fn pin(&mut self) {
        self.link = match std::mem::replace(&mut self.link, Link::Detached) {
            Link::Attached(mut lease) | Link::Pinned(mut lease) => {
                lease.dirty = true;
                Link::Pinned(lease)
            }
            Link::Detached => Link::Detached,
        };
    }

    /// Checks out a server (a replica when `route`, that of the statement
    /// needing it, allows one; else the primary) and brings its parameters
    /// in line with the client's.
    pub(super) async fn attach(
        &mut self,
        route: Option<Route>,
        may_write: bool,
    ) -> Result<(), ClientError> {
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

    pub(super) async fn attach_server(
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

    pub(super) fn set_cancel_target(&mut self) {
        let target = self.link.lease().map(|l| CancelTarget {
            addr: l.addr.clone(),
            pid: l.backend_key.0,
            secret: l.backend_key.1,
        });
        self.cancel.set_target(target);
    }

    /// In transaction mode, returns the connection once the server is idle
    /// and owes nothing.
    pub(super) fn release_if_done(&mut self) {
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

    pub(super) fn detach(&mut self) {
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
}
