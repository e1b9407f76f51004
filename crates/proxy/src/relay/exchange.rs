//! The books of one client's exchange: every reply still owed, in order —
//! by the server, by the proxy itself, or by the coalescer — and what each
//! server message does to them.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::sync::oneshot;
use wire::build::{self, Severity};
use wire::inspect::{self, TxStatus};
use wire::Frame;

use crate::coalesce::AckResult;
use crate::params::ClientParams;
use crate::prepared::SharedStatement;
use crate::server::ServerConn;

/// A reply the server (or the proxy) still owes the client, in order.
#[derive(Debug)]
pub enum Pending {
    /// ParseComplete. `created` names a shared statement this Parse creates
    /// on the server (forgotten again if the Parse fails); `forward` is false
    /// for a Parse the proxy injected, whose reply the client never asked for.
    Parse {
        created: Option<Arc<[u8]>>,
        forward: bool,
    },
    Bind,
    /// ParameterDescription, then RowDescription or NoData; the parameter
    /// types are remembered on the shared statement.
    DescribeStatement(Option<Arc<SharedStatement>>),
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
    /// A coalesced write's acknowledgement: `ok` is sent once it landed, an
    /// error otherwise. `simple` says it answers a simple Query (whose
    /// ReadyForQuery is part of `ok`).
    Ack {
        rx: oneshot::Receiver<AckResult>,
        ok: Vec<Frame>,
        simple: bool,
    },
}

impl Pending {
    /// Whether the proxy, not the server, owes this reply.
    pub fn is_local(&self) -> bool {
        matches!(self, Pending::Synthetic(_) | Pending::Ack { .. })
    }
}

/// Replies owed and bytes on their way to the client.
pub struct Exchange {
    pub pending: VecDeque<Pending>,
    /// After an error in an extended-protocol exchange with no Sync queued,
    /// the server ignores everything up to the next Sync: so must the books.
    pub server_skipping: bool,
    /// The proxy failed an extended-protocol request itself: it drops the
    /// client's messages up to the next Sync and answers that Sync.
    pub local_skipping: bool,
    pub to_client: BytesMut,
    pub params: ClientParams,
    /// How many replies the proxy made up and sent so far (see
    /// [`Exchange::drain_local`]); tells a retried read which of the
    /// replies owed are still unsent.
    pub delivered: u64,
}

impl Exchange {
    pub fn new(params: ClientParams) -> Exchange {
        Exchange {
            pending: VecDeque::new(),
            server_skipping: false,
            local_skipping: false,
            to_client: BytesMut::with_capacity(16 * 1024),
            params,
            delivered: 0,
        }
    }

    /// Queues a reply the proxy makes up.
    pub fn push_local(&mut self, frame: Frame) {
        self.pending.push_back(Pending::Synthetic(frame));
    }

    /// Sends the made-up replies and settled acknowledgements that have
    /// reached the front of the queue.
    pub fn drain_local(&mut self) {
        loop {
            match self.pending.front_mut() {
                Some(Pending::Synthetic(_)) => {
                    if let Some(Pending::Synthetic(f)) = self.pending.pop_front() {
                        self.delivered += 1;
                        self.to_client.extend_from_slice(f.raw());
                    }
                }
                Some(Pending::Ack { rx, .. }) => match rx.try_recv() {
                    Ok(result) => self.settle_ack(result),
                    Err(oneshot::error::TryRecvError::Empty) => return,
                    Err(oneshot::error::TryRecvError::Closed) => {
                        // The coalescer went away (shutdown) without word.
                        self.settle_ack(Err(super::shutting_down()))
                    }
                },
                _ => return,
            }
        }
    }

    /// The acknowledgement at the front arrived: send its replies, or its
    /// error and, in the extended protocol, skip to the next Sync.
    pub fn settle_ack(&mut self, result: AckResult) {
        let Some(Pending::Ack { ok, simple, .. }) = self.pending.pop_front() else {
            return;
        };
        self.delivered += 1;
        match result {
            Ok(()) => {
                for f in ok {
                    self.to_client.extend_from_slice(f.raw());
                }
            }
            Err(rejection) => {
                // The server's own error for the row, every field intact.
                let e = if rejection.body.is_empty() {
                    build::error_response_code(Severity::Error, &rejection.code, &rejection.message)
                } else {
                    build::raw_message(b'E', &rejection.body)
                };
                self.to_client.extend_from_slice(e.raw());
                if simple {
                    let rfq = build::ready_for_query(TxStatus::Idle);
                    self.to_client.extend_from_slice(rfq.raw());
                } else {
                    self.skip_to_sync(None);
                }
            }
        }
    }

    /// After an extended-protocol error: drop what was owed up to the next
    /// Sync (the server, or the proxy, skips those messages).
    fn skip_to_sync(&mut self, mut lease: Option<&mut ServerConn>) {
        while let Some(p) = self.pending.front() {
            let is_sync =
                matches!(p, Pending::Sync) || matches!(p, Pending::Synthetic(f) if f.tag() == b'Z');
            if is_sync {
                return;
            }
            if let Some(Pending::Parse {
                created: Some(name),
                ..
            }) = self.pending.pop_front()
            {
                if let Some(l) = lease.as_deref_mut() {
                    l.prepared.remove(&name);
                }
            }
        }
        if lease.is_some() {
            self.server_skipping = true;
        } else {
            self.local_skipping = true;
        }
    }

    /// Handles one server message: books, then forward (or swallow).
    /// Whether [`on_server`](Self::on_server) only forwards frames with this
    /// tag (rows, notices, COPY data...): they change no books and make no
    /// made-up reply due, so they may be copied to the client as they are.
    pub fn passes_through(tag: u8) -> bool {
        !matches!(
            tag,
            b'S' | b'Z' | b'E' | b'1' | b'2' | b'3' | b't' | b'T' | b'n' | b'C' | b'I' | b's'
        )
    }

    pub fn on_server(&mut self, lease: &mut ServerConn, frame: Frame) {
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
            b'E' if !matches!(self.pending.front(), Some(Pending::UntilReady) | None) => {
                self.skip_to_sync(Some(lease));
                // A queued Sync ends the skipping when its reply comes.
                self.server_skipping = self.pending.is_empty();
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
            b't' => {
                if let Some(Pending::DescribeStatement(Some(stmt))) = self.pending.front() {
                    let _ = stmt.param_oids.set(inspect::oid_list(frame.body()));
                }
            }
            b'T' | b'n' => {
                if matches!(
                    self.pending.front(),
                    Some(Pending::DescribeStatement(_) | Pending::DescribePortal)
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
        self.drain_local();
    }
}
