//! Recognized upserts: whether one may be coalesced now, handing it to
//! the coalescer, the barrier before statements that touch coalesced
//! tables, and the acknowledgements owed to the client.

use std::sync::Arc;

use wire::build;
use wire::inspect::TxStatus;
use wire::SqlState;

use super::exchange::Pending;
use super::{shutting_down, Relay};
use crate::classify::Template;
use crate::coalesce::{AckResult, Verdict};
use crate::error::ClientError;

impl Relay {
    /// What the coalescer makes of a statement (nothing without rules).
    pub(super) fn verdict(&self, sql: &[u8]) -> Verdict {
        match &self.who.coalescer {
            Some(c) => c.inspect(&self.who.database, sql),
            None => Verdict::Irrelevant,
        }
    }

    /// Whether an upsert may be coalesced now: the client speaks UTF-8, is
    /// not inside a transaction and owes the server nothing (so no statement
    /// it sent earlier can run after it).
    pub(super) fn can_intercept(&mut self) -> bool {
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

    pub(super) async fn submit(
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
    pub(super) async fn barrier(&mut self, verdict: &Verdict) -> Result<(), ClientError> {
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

    /// Whether a coalesced write's acknowledgement is owed since the last
    /// Sync (in the current implicit transaction).
    pub(super) fn ack_since_sync(&self) -> bool {
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
    pub(super) async fn settle_acks(&mut self) {
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
}
