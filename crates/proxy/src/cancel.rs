//! Cancel requests. Each client gets a BackendKeyData minted by the proxy;
//! a CancelRequest carrying it is forwarded to the server connection that
//! client is using at that moment, with that server's own key.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use crate::server::{ServerAddr, Stream};

/// A server connection's cancel address and key.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    pub addr: ServerAddr,
    pub pid: i32,
    pub secret: i32,
}

struct Slot {
    secret: i32,
    target: Mutex<Option<CancelTarget>>,
}

/// All live clients' cancel keys.
#[derive(Default, Clone)]
pub struct CancelRegistry {
    slots: Arc<DashMap<i32, Arc<Slot>>>,
}

/// A client's registration; dropping it forgets the key.
pub struct CancelKey {
    pub pid: i32,
    pub secret: i32,
    slot: Arc<Slot>,
    registry: CancelRegistry,
}

impl CancelKey {
    /// Points the key at the server connection now running this client's
    /// queries (`None` when the client holds none).
    pub fn set_target(&self, target: Option<CancelTarget>) {
        *self.slot.target.lock().unwrap_or_else(|p| p.into_inner()) = target;
    }
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        self.registry.slots.remove(&self.pid);
    }
}

impl CancelRegistry {
    /// Mints a fresh, unique key for a new client.
    pub fn register(&self) -> CancelKey {
        loop {
            let pid: i32 = rand::random::<i32>() & 0x7fff_ffff;
            let secret: i32 = rand::random();
            if pid == 0 {
                continue;
            }
            let slot = Arc::new(Slot {
                secret,
                target: Mutex::new(None),
            });
            if let dashmap::Entry::Vacant(v) = self.slots.entry(pid) {
                v.insert(slot.clone());
                return CancelKey {
                    pid,
                    secret,
                    slot,
                    registry: self.clone(),
                };
            }
        }
    }

    /// Forwards a cancel for the client holding (`pid`, `secret`). Unknown
    /// keys and clients without a server are ignored, as Postgres does.
    pub async fn cancel(&self, pid: i32, secret: i32) {
        let target = {
            let Some(slot) = self.slots.get(&pid).map(|s| s.clone()) else {
                return;
            };
            if slot.secret != secret {
                return;
            }
            let t = slot
                .target
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            t
        };
        let Some(t) = target else { return };
        match Stream::connect_addr(&t.addr).await {
            Ok(mut s) => {
                let _ = s.send(&wire::build::cancel_request(t.pid, t.secret)).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not forward a cancel request"),
        }
    }
}
