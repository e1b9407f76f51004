//! Choosing TCP ports for new clusters.
//!
//! Owns the process-wide set of ports already handed out, so that clusters
//! started concurrently from many threads of one test binary never pick the
//! same port. Collisions with *other* processes are handled by the caller,
//! which retries startup on a fresh port when the server cannot bind.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};

/// Ports handed out by this process and not yet released.
fn reserved() -> &'static Mutex<HashSet<u16>> {
    static RESERVED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    RESERVED.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Asks the kernel for a currently free port on 127.0.0.1 that this process
/// has not handed out yet, and reserves it until [`release`] is called.
pub(crate) fn pick_free_port() -> Result<u16> {
    for _ in 0..64 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| Error::io("binding a probe socket on", "127.0.0.1:0", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("reading the address of", "127.0.0.1:0", e))?
            .port();
        drop(listener);
        let mut set = reserved().lock().unwrap_or_else(|p| p.into_inner());
        if set.insert(port) {
            return Ok(port);
        }
    }
    Err(Error::Environment(
        "could not find a free TCP port on 127.0.0.1".into(),
    ))
}

/// Returns `port` to the pool (after its cluster is gone or failed to bind).
pub(crate) fn release(port: u16) {
    let mut set = reserved().lock().unwrap_or_else(|p| p.into_inner());
    set.remove(&port);
}
