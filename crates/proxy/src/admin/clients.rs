//! The registry of logged-in clients behind `SHOW CLIENTS` and the client
//! counts of `SHOW POOLS`. A session registers once at login and its
//! [`ClientGuard`] removes it when the session ends: one map operation at
//! each end of a connection. Per query, the relay only stores what the
//! client is doing in its [`ActivityCell`] (a relaxed atomic store).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use dashmap::DashMap;

/// What the console shows of one logged-in client.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The registry's number for this client, unique in this proxy.
    pub id: u64,
    pub user: String,
    /// The database the client asked for (the console's own name for
    /// admin sessions).
    pub database: String,
    /// The client's address, when the socket could tell.
    pub peer: Option<SocketAddr>,
    /// When the client finished logging in.
    pub connected_at: SystemTime,
    /// Whether the client's connection is encrypted.
    pub tls: bool,
    /// What the client is doing now.
    pub activity: Arc<ActivityCell>,
}

/// What a client is doing, as `SHOW CLIENTS` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Holds no server connection (between transactions in transaction
    /// mode), or an admin console session.
    Idle,
    /// Asked for a server connection and has none yet.
    Waiting,
    /// Holds a server connection.
    Active,
}

impl Activity {
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Idle => "idle",
            Activity::Waiting => "waiting",
            Activity::Active => "active",
        }
    }
}

/// A client's [`Activity`], set by its relay and read by the console.
#[derive(Debug, Default)]
pub struct ActivityCell(AtomicU8);

impl ActivityCell {
    pub fn set(&self, activity: Activity) {
        self.0.store(activity as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> Activity {
        match self.0.load(Ordering::Relaxed) {
            x if x == Activity::Waiting as u8 => Activity::Waiting,
            x if x == Activity::Active as u8 => Activity::Active,
            _ => Activity::Idle,
        }
    }
}

/// Every logged-in client of one proxy.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    next_id: AtomicU64,
    clients: DashMap<u64, ClientInfo>,
}

impl ClientRegistry {
    /// Records a client that has just logged in; it stays listed until the
    /// returned guard is dropped. `activity` is updated by its relay.
    pub fn register(
        &self,
        user: String,
        database: String,
        peer: Option<SocketAddr>,
        tls: bool,
        activity: Arc<ActivityCell>,
    ) -> ClientGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.clients.insert(
            id,
            ClientInfo {
                id,
                user,
                database,
                peer,
                connected_at: SystemTime::now(),
                tls,
                activity,
            },
        );
        ClientGuard { registry: self, id }
    }

    /// A copy of every registered client, oldest first.
    pub fn snapshot(&self) -> Vec<ClientInfo> {
        let mut all: Vec<ClientInfo> = self.clients.iter().map(|c| c.value().clone()).collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// The number of registered clients per (database, user).
    pub fn count_by_pool(&self) -> HashMap<(String, String), usize> {
        let mut counts = HashMap::new();
        for c in self.clients.iter() {
            *counts
                .entry((c.database.clone(), c.user.clone()))
                .or_insert(0) += 1;
        }
        counts
    }

    /// The number of registered clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// Keeps one client listed; dropping it (the session ending by any path)
/// removes the client.
#[derive(Debug)]
pub struct ClientGuard<'a> {
    registry: &'a ClientRegistry,
    id: u64,
}

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.registry.clients.remove(&self.id);
    }
}
