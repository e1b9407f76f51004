//! Named prepared statements across pooled connections.
//!
//! A client's statement name means nothing on the next server connection it
//! gets. So each distinct (query, parameter types) gets one shared name in
//! its pool (`pgc_<n>`); client names map onto shared names, and a statement
//! is prepared on whichever server connection needs it, once per connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use wire::build;
use wire::Frame;

use crate::coalesce::Verdict;
use crate::fasthash::FastMap;

/// One shared statement: its server-side name and the Parse that creates it.
#[derive(Debug)]
pub struct SharedStatement {
    pub name: Arc<[u8]>,
    pub parse: Frame,
    /// The statement text and its parameter-type section (count and OIDs,
    /// as sent), so a Bind need not decode the Parse again.
    pub query: Bytes,
    pub param_types: Bytes,
    /// Parameter type OIDs, from the server's first ParameterDescription.
    pub param_oids: OnceLock<Vec<u32>>,
}

/// The shared statements of one pool, keyed by (query, parameter types).
#[derive(Default)]
pub struct StatementRegistry {
    by_text: Mutex<HashMap<(Bytes, Bytes), Arc<SharedStatement>>>,
    next: AtomicU64,
}

impl StatementRegistry {
    /// The shared statement for this query and parameter types, created on
    /// first use.
    pub fn intern(&self, query: &[u8], param_types: &[u8]) -> Arc<SharedStatement> {
        let key = (
            Bytes::copy_from_slice(query),
            Bytes::copy_from_slice(param_types),
        );
        let mut map = self.by_text.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(&key) {
            return s.clone();
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let name: Arc<[u8]> = format!("pgc_{id}").into_bytes().into();
        let stmt = Arc::new(SharedStatement {
            parse: build::parse(&name, query, param_types),
            name,
            query: key.0.clone(),
            param_types: key.1.clone(),
            param_oids: OnceLock::new(),
        });
        map.insert(key, stmt.clone());
        stmt
    }

    /// Number of distinct statements.
    pub fn len(&self) -> usize {
        self.by_text.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no statement was prepared yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A client's statement: the shared one behind it, and what it means for
/// coalescing.
#[derive(Debug, Clone)]
pub struct ClientStatement {
    pub shared: Arc<SharedStatement>,
    pub verdict: Verdict,
}

/// One client's named statements (and its unnamed one when the proxy
/// handles it itself: a recognized upsert).
#[derive(Default)]
pub struct ClientStatements {
    by_name: FastMap<Vec<u8>, ClientStatement>,
}

impl ClientStatements {
    /// Records (or replaces) a client's statement.
    pub fn insert(&mut self, name: &[u8], shared: Arc<SharedStatement>, verdict: Verdict) {
        self.by_name
            .insert(name.to_vec(), ClientStatement { shared, verdict });
    }

    /// The statement behind a client's name.
    pub fn get(&self, name: &[u8]) -> Option<&ClientStatement> {
        self.by_name.get(name)
    }

    /// Forgets a client's name (Close of a statement).
    pub fn remove(&mut self, name: &[u8]) {
        self.by_name.remove(name);
    }

    /// Forgets all (DEALLOCATE ALL, DISCARD ALL).
    pub fn clear(&mut self) {
        self.by_name.clear();
    }
}
