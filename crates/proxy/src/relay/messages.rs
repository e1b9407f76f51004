//! The client's extended- and simple-protocol messages, one handler each:
//! what is forwarded, rewritten onto shared statement names, answered by
//! the proxy, or handed to the coalescer.

use wire::build;
use wire::inspect::{self, Target, TxStatus};
use wire::Frame;

use super::exchange::Pending;
use super::{malformed, prepare_on, Intercepted, Relay};
use crate::coalesce::Verdict;
use crate::error::ClientError;
use crate::upsert;

impl Relay {
    pub(super) async fn on_query(&mut self, frame: Frame) -> Result<(), ClientError> {
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

    pub(super) async fn on_parse(&mut self, frame: Frame) -> Result<(), ClientError> {
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

    pub(super) async fn on_bind(&mut self, frame: Frame) -> Result<(), ClientError> {
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

    pub(super) async fn on_describe(&mut self, frame: Frame) -> Result<(), ClientError> {
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

    pub(super) async fn on_execute(&mut self, frame: Frame) -> Result<(), ClientError> {
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

    pub(super) async fn on_close(&mut self, frame: Frame) -> Result<(), ClientError> {
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

    pub(super) async fn on_sync(&mut self, frame: Frame) -> Result<(), ClientError> {
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
}
