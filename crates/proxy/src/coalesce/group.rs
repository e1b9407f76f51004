//! The pending writes of one group (database, role, statement shape): a
//! last-write-wins map in arrival order, and the watermark that barriers and
//! writers wait on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::oneshot;

/// A write's outcome as its writer sees it.
pub type AckResult = Result<(), Rejection>;

/// Why a write did not land: the server's error for its row, or the proxy's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: String,
    pub message: String,
    /// The server's whole ErrorResponse body (detail, constraint, ...),
    /// when the server produced the error.
    pub body: Vec<u8>,
}

/// A pending write's key values, shared by the map and the arrival order.
pub type Key = Arc<[Option<String>]>;

/// One key's newest value and everyone waiting for it to land.
#[derive(Debug)]
pub struct Entry {
    pub row: Vec<Option<String>>,
    pub seq: u64,
    pub waiters: Vec<oneshot::Sender<AckResult>>,
}

/// A batch taken for flushing: rows in arrival order of their newest write.
#[derive(Debug, Default)]
pub struct Batch {
    pub keys: Vec<Key>,
    pub entries: Vec<Entry>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Pending writes and the sequence numbers that order them.
#[derive(Debug, Default)]
pub struct Pending {
    by_key: HashMap<Key, Entry>,
    /// seq of each key's newest write -> key, oldest first.
    order: BTreeMap<u64, Key>,
    /// Sequence number of the last write taken in.
    last_seq: u64,
    /// Rows being flushed right now (taken, not yet landed).
    in_flight_min_seq: Option<u64>,
    /// Writes merged into an existing key (never reached Postgres alone).
    pub merged: u64,
    /// When the last flush that wrote rows committed: a replica that has
    /// replayed past it has every write of this group acknowledged so far
    /// (once nothing is pending).
    pub landed_at: Option<std::time::Instant>,
}

impl Pending {
    /// Distinct keys waiting.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Whether `key` has a pending write.
    pub fn contains(&self, key: &[Option<String>]) -> bool {
        self.by_key.contains_key(key)
    }

    /// Takes a write in; a newer value for a pending key replaces the older
    /// one, whose waiters then wait for the newer value to land.
    pub fn insert(
        &mut self,
        key: Key,
        row: Vec<Option<String>>,
        waiter: Option<oneshot::Sender<AckResult>>,
    ) -> u64 {
        self.last_seq += 1;
        let seq = self.last_seq;
        // A pending key keeps its one shared copy.
        let key = match self.by_key.get_key_value(&*key) {
            Some((existing, _)) => existing.clone(),
            None => key,
        };
        match self.by_key.get_mut(&*key) {
            Some(entry) => {
                self.order.remove(&entry.seq);
                entry.row = row;
                entry.seq = seq;
                entry.waiters.extend(waiter);
                self.merged += 1;
            }
            None => {
                self.by_key.insert(
                    key.clone(),
                    Entry {
                        row,
                        seq,
                        waiters: waiter.into_iter().collect(),
                    },
                );
            }
        }
        self.order.insert(seq, key);
        seq
    }

    /// Takes up to `max` of the oldest pending keys for a flush.
    pub fn take(&mut self, max: usize) -> Batch {
        let mut batch = Batch::default();
        while batch.len() < max {
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.by_key.remove(&key) {
                batch.keys.push(key);
                batch.entries.push(entry);
            }
        }
        self.in_flight_min_seq = batch.entries.iter().map(|e| e.seq).min();
        batch
    }

    /// Puts an unflushed batch back (the server was unreachable). A key
    /// written again meanwhile keeps its newer value and inherits the old
    /// waiters, who are satisfied when the newer value lands.
    pub fn put_back(&mut self, batch: Batch) {
        for (key, entry) in batch.keys.into_iter().zip(batch.entries) {
            match self.by_key.get_mut(&key) {
                Some(newer) => newer.waiters.extend(entry.waiters),
                None => {
                    self.order.insert(entry.seq, key.clone());
                    self.by_key.insert(key, entry);
                }
            }
        }
        self.in_flight_min_seq = None;
    }

    /// The flush of the last taken batch finished (landed or rejected).
    pub fn batch_done(&mut self) {
        self.in_flight_min_seq = None;
    }

    /// The newest sequence number handed out.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Every write with a sequence number up to this one has landed (or was
    /// rejected): nothing older is pending or in flight.
    pub fn watermark(&self) -> u64 {
        let oldest_pending = self.order.keys().next().copied();
        let oldest = match (oldest_pending, self.in_flight_min_seq) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match oldest {
            Some(seq) => seq - 1,
            None => self.last_seq,
        }
    }
}
