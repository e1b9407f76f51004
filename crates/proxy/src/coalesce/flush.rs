//! The flusher of one group: a thin loop around [`flush_once`], which takes
//! the oldest pending writes, writes them in one bulk statement, and settles
//! their writers. A failing batch is retried row by row so that one bad row
//! fails alone; while Postgres is away the rows go back into the map (newer
//! values keep merging) and the loop backs off.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wire::inspect::ErrorFields;

use super::group::{Batch, Entry, Rejection};
use super::values::text_array_literal;
use super::{Ack, Group, Stats};
use crate::quote;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Runs the flusher until the coalescer stops (shutdown drains the rest
/// with [`flush_once`] itself).
pub async fn run(group: Arc<Group>, stats: Arc<Stats>, mut stop: watch::Receiver<bool>) {
    let rule = group.rule.clone();
    let mut backoff = BACKOFF_MIN;
    let mut just_flushed = false;
    loop {
        if *stop.borrow() {
            return;
        }
        // Registered before looking, so a write arriving in between wakes
        // it (writers wake an idle flusher without leaving a permit behind,
        // which would cut the next interval short). Unregistered again
        // before the interval wait below: a waiter left enabled there would
        // be first in line and swallow the wake-up of a barrier or a full
        // batch, which then waited out the whole interval.
        {
            let idle = group.wake.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if group.lock().is_empty() {
                just_flushed = false;
                tokio::select! {
                    _ = idle => {}
                    _ = stop.changed() => return,
                }
            }
        }
        // Group commit: right after a flush, whatever gathered meanwhile
        // goes at once. Writers waiting for their flush (`flushed`) never
        // wait for company: an idle flusher starts at once, and writes
        // gather while it works. Acknowledged writes (`immediate`) gather
        // for the interval, unless a batch fills first (or a barrier asks).
        if !just_flushed && rule.ack == Ack::Immediate {
            let _ = tokio::time::timeout(rule.flush_interval, group.wake.notified()).await;
        }
        if flush_once(&group, &stats).await {
            backoff = BACKOFF_MIN;
            just_flushed = true;
        } else {
            just_flushed = false;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Outcome of writing some rows.
enum Written {
    Landed,
    /// The statement failed for a reason in the rows.
    Rejected(ErrorFields),
    /// Postgres could not be reached or the failure is transient.
    Unreachable(String),
}

/// Flushes one batch. Returns false when Postgres was unreachable (the
/// rows are back in the map and the caller should back off).
pub async fn flush_once(group: &Group, stats: &Stats) -> bool {
    let _one_at_a_time = group.flushing.lock().await;
    let batch = group.lock().take(group.rule.max_batch);
    if batch.is_empty() {
        group.lock().batch_done();
        return true;
    }
    let started = Instant::now();
    let rows: Vec<&Vec<Option<String>>> = batch.entries.iter().map(|e| &e.row).collect();
    let reachable = match write_rows(group, &rows).await {
        Written::Landed => {
            stats
                .flushed_rows
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for entry in batch.entries {
                settle(entry, Ok(()));
            }
            true
        }
        Written::Unreachable(why) => {
            stats.flush_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(rule = %group.rule.name, rows = batch.len(), %why, "flush failed; rows stay pending");
            group.lock().put_back(batch);
            false
        }
        Written::Rejected(fields) => {
            tracing::info!(rule = %group.rule.name, rows = batch.len(), code = %fields.code, "bulk flush failed; isolating bad rows");
            isolate(group, stats, batch).await
        }
    };
    stats.flush_batches.fetch_add(1, Ordering::Relaxed);
    stats
        .flush_micros
        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    let watermark = {
        let mut pending = group.lock();
        pending.batch_done();
        if reachable {
            pending.landed_at = Some(Instant::now());
        }
        pending.watermark()
    };
    group.progress.send_replace(watermark);
    reachable
}

/// Writes each row of a failed batch alone: good rows land, bad rows are
/// rejected to their writers. Returns false if Postgres went away midway
/// (the unwritten rest goes back into the map).
async fn isolate(group: &Group, stats: &Stats, batch: Batch) -> bool {
    let mut rest = batch.keys.into_iter().zip(batch.entries);
    while let Some((key, entry)) = rest.next() {
        match write_rows(group, &[&entry.row]).await {
            Written::Landed => {
                stats.flushed_rows.fetch_add(1, Ordering::Relaxed);
                settle(entry, Ok(()));
            }
            Written::Rejected(fields) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                reject(group, entry, fields);
            }
            Written::Unreachable(why) => {
                tracing::warn!(rule = %group.rule.name, %why, "flush failed while isolating rows; rows stay pending");
                let mut back = Batch::default();
                back.keys.push(key);
                back.entries.push(entry);
                for (k, e) in rest {
                    back.keys.push(k);
                    back.entries.push(e);
                }
                group.lock().put_back(back);
                return false;
            }
        }
    }
    true
}

fn settle(entry: Entry, result: Result<(), Rejection>) {
    for w in entry.waiters {
        let _ = w.send(result.clone());
    }
}

/// A row Postgres refused: its writers hear the error (flushed mode); in
/// immediate mode nobody is waiting, so it is logged and appended to the
/// rejects file.
fn reject(group: &Group, entry: Entry, fields: ErrorFields) {
    let rejection = Rejection {
        code: fields.code.clone(),
        message: fields.message.clone(),
        body: fields.body.clone(),
    };
    if group.rule.ack == Ack::Immediate {
        tracing::warn!(rule = %group.rule.name, code = %fields.code, message = %fields.message, "coalesced write rejected");
        if let Some(path) = &group.rule.rejects_file {
            let line = reject_line(
                &group.rule.name,
                &group.template.columns,
                &entry.row,
                &fields,
            );
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                tracing::error!(path = %path.display(), error = %e, "cannot append to the rejects file");
            }
        }
    }
    settle(entry, Err(rejection));
}

/// One JSON line describing a rejected row.
fn reject_line(
    rule: &str,
    columns: &[String],
    row: &[Option<String>],
    fields: &ErrorFields,
) -> String {
    let mut out = format!(
        "{{\"rule\":{},\"sqlstate\":{},\"message\":{},\"row\":{{",
        json_str(rule),
        json_str(&fields.code),
        json_str(&fields.message)
    );
    for (i, (c, v)) in columns.iter().zip(row).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_str(c));
        out.push(':');
        match v {
            Some(v) => out.push_str(&json_str(v)),
            None => out.push_str("null"),
        }
    }
    out.push_str("}}\n");
    out
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs the group's bulk statement over `rows` on a connection of the
/// writers' own pool, so it runs as their role.
async fn write_rows(group: &Group, rows: &[&Vec<Option<String>>]) -> Written {
    let mut lease = match group.pool.acquire().await {
        Ok(l) => l,
        Err(e) => return Written::Unreachable(e.to_string()),
    };
    let sql = match group.flush_sql.get() {
        Some(sql) => sql.clone(),
        None => match flush_statement(group, &mut lease).await {
            Ok(sql) => group.flush_sql.get_or_init(|| sql).clone(),
            Err(w) => return w,
        },
    };
    // The arrival stamps, when the rule takes them, follow the columns.
    let columns = group.template.columns.len() + usize::from(group.rule.stamped);
    let arrays: Vec<String> = (0..columns)
        .map(|i| text_array_literal(rows.iter().map(|r| r.get(i).and_then(|v| v.as_deref()))))
        .collect();
    let params: Vec<Option<&str>> = arrays.iter().map(|a| Some(a.as_str())).collect();
    match lease.execute(&sql, &params).await {
        Ok(Ok(_)) => Written::Landed,
        Ok(Err(fields)) if transient(&fields.code) => {
            Written::Unreachable(format!("{}: {}", fields.code, fields.message))
        }
        Ok(Err(fields)) => Written::Rejected(fields),
        Err(e) => {
            lease.in_flight = true; // broken mid-exchange: close it
            Written::Unreachable(e.to_string())
        }
    }
}

/// Errors that say nothing about the rows: retry the same batch later.
fn transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("57P")
        || code.starts_with("53")
        || code == "40001"
        || code == "40P01"
        || code == "25006" // read-only transaction: a primary in recovery
}

/// The bulk statement: the rule's configured one (function rules), or an
/// INSERT ... SELECT FROM unnest(...) ON CONFLICT built from the client's
/// statement, with each column cast to its type (table rules).
async fn flush_statement(group: &Group, lease: &mut crate::pool::Lease) -> Result<String, Written> {
    if let Some(sql) = &group.rule.flush_sql {
        return Ok(sql.clone());
    }
    let table = group.rule.shape.table.clone().unwrap_or_default();
    let types = match lease
        .execute(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute \
             WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped",
            &[Some(&quote::name(&table))],
        )
        .await
    {
        Ok(Ok(done)) => done.rows,
        Ok(Err(fields)) if transient(&fields.code) => {
            return Err(Written::Unreachable(fields.message))
        }
        Ok(Err(fields)) => return Err(Written::Rejected(fields)),
        Err(e) => {
            lease.in_flight = true;
            return Err(Written::Unreachable(e.to_string()));
        }
    };
    let type_of = |col: &str| {
        types
            .iter()
            .find(|r| r.first().and_then(|c| c.as_deref()) == Some(col))
            .and_then(|r| r.get(1).cloned().flatten())
    };
    let t = &group.template;
    let version = group.rule.version_column.as_deref();
    let all: Vec<&str> = t
        .columns
        .iter()
        .map(String::as_str)
        .chain(version)
        .collect();
    let cols: Vec<String> = all.iter().map(|c| quote::ident(c)).collect();
    let mut casts = Vec::new();
    for c in &all {
        let Some(ty) = type_of(c) else {
            return Err(Written::Rejected(ErrorFields {
                severity: "ERROR".into(),
                code: "42703".into(),
                message: format!("column \"{c}\" of relation \"{table}\" does not exist"),
                body: Vec::new(),
            }));
        };
        casts.push(format!("u.{}::{}", quote::ident(c), ty));
    }
    let arrays: Vec<String> = (1..=cols.len()).map(|i| format!("${i}::text[]")).collect();
    let key: Vec<String> = t.key.iter().map(|&i| cols[i].clone()).collect();
    let alias = t
        .table_alias
        .as_ref()
        .map(|a| format!(" AS {a}"))
        .unwrap_or_default();
    let action = match (&t.update, version) {
        (None, _) => "NOTHING".to_owned(),
        (Some(u), None) => format!("UPDATE {u}"),
        (Some(u), Some(v)) => {
            // Only a write stamped no earlier than the stored row's replaces
            // it, and the row keeps the newest stamp.
            let target = t.table_alias.clone().unwrap_or_else(|| quote::name(&table));
            let v = quote::ident(v);
            let guard = format!("({target}.{v} IS NULL OR {target}.{v} <= EXCLUDED.{v})");
            let set = &u.assignments;
            match &u.condition {
                Some(w) => format!("UPDATE SET {set}, {v} = EXCLUDED.{v} WHERE ({w}) AND {guard}"),
                None => format!("UPDATE SET {set}, {v} = EXCLUDED.{v} WHERE {guard}"),
            }
        }
    };
    Ok(format!(
        "INSERT INTO {}{} ({}) SELECT {} FROM unnest({}) AS u({}) ON CONFLICT ({}) DO {}",
        quote::name(&table),
        alias,
        cols.join(", "),
        casts.join(", "),
        arrays.join(", "),
        cols.join(", "),
        key.join(", "),
        action,
    ))
}
