//! Read routing of one database: its replica set, the function volatility
//! the read classification needs (loaded from `pg_proc` on the primary and
//! refreshed), and a cache of routes by statement text (by shape, for
//! texts with literals).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;

use crate::pool::Pool;
use crate::replicas::ReplicaSet;
use crate::route::{self, Route, TxControl};

/// Routes cached per statement text, at most this many.
const ROUTE_CACHE: usize = 10_000;
/// How often function volatility is reloaded.
const VOLATILITY_REFRESH: Duration = Duration::from_secs(60);

/// Read routing state of one database.
pub struct Router {
    pub replicas: Arc<ReplicaSet>,
    volatility: RwLock<Arc<HashMap<String, char>>>,
    loaded: AtomicBool,
    cache: DashMap<Bytes, Route>,
}

impl Router {
    /// Starts routing for a database; volatility is loaded through
    /// `primary` (until it is, every statement goes to the primary).
    pub fn start(replicas: Arc<ReplicaSet>, primary: Pool) -> Arc<Router> {
        let router = Arc::new(Router {
            replicas,
            volatility: RwLock::new(Arc::new(HashMap::new())),
            loaded: AtomicBool::new(false),
            cache: DashMap::new(),
        });
        tokio::spawn(refresh_volatility(Arc::downgrade(&router), primary));
        router
    }

    /// Where a query string may run. Before volatility is known: primary.
    pub fn route(&self, sql: &[u8]) -> Route {
        if !self.loaded.load(Ordering::Acquire) {
            return Route::Primary;
        }
        if let Some(r) = self.cache.get(sql) {
            return *r;
        }
        let Ok(text) = std::str::from_utf8(sql) else {
            return Route::Primary;
        };
        // Literals never decide where a statement may run: statements that
        // differ only in them share one entry, under their shape (a
        // Parse's text with the same `$n` would route alike anyway).
        let shaped = crate::classify::literals::parameterize(text)
            .filter(|(_, values)| !values.is_empty())
            .map(|(shape, _)| shape);
        let (key, text) = match &shaped {
            Some(shape) => match self.cache.get(shape.as_bytes()) {
                Some(r) => return *r,
                None => (shape.as_bytes(), shape.as_str()),
            },
            None => (sql, text),
        };
        let vol = self
            .volatility
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let r = match route::tx_control(text) {
            TxControl::Begin { read_only: true } => Route::ReplicaOk,
            _ => route::route(text, &*vol),
        };
        if self.cache.len() >= ROUTE_CACHE {
            self.cache.clear();
        }
        self.cache.insert(Bytes::copy_from_slice(key), r);
        r
    }

    fn store(&self, map: HashMap<String, char>) {
        *self.volatility.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
        self.cache.clear();
        self.loaded.store(true, Ordering::Release);
    }
}

/// Loads `pg_proc` volatility now and every [`VOLATILITY_REFRESH`].
async fn refresh_volatility(router: std::sync::Weak<Router>, primary: Pool) {
    let mut wait = Duration::from_millis(0);
    loop {
        tokio::time::sleep(wait).await;
        let Some(r) = router.upgrade() else { return };
        match load_volatility(&primary).await {
            Ok(map) => {
                r.store(map);
                wait = VOLATILITY_REFRESH;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not load function volatility; reads stay on the primary");
                wait = Duration::from_secs(2);
            }
        }
    }
}

/// Function volatility by "schema.name" and by "name" (the most volatile of
/// all functions of that name, since search_path decides which one runs).
async fn load_volatility(primary: &Pool) -> Result<HashMap<String, char>, String> {
    let mut lease = primary.acquire().await.map_err(|e| e.to_string())?;
    let rows = match lease
        .execute(
            "SELECT n.nspname::text, p.proname::text, p.provolatile::text \
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace",
            &[],
        )
        .await
    {
        Ok(Ok(done)) => done.rows,
        Ok(Err(fields)) => return Err(fields.message),
        Err(e) => {
            lease.in_flight = true;
            return Err(e.to_string());
        }
    };
    let rank = |c: char| match c {
        'i' => 0,
        's' => 1,
        _ => 2,
    };
    let mut map: HashMap<String, char> = HashMap::new();
    for row in rows {
        let (Some(Some(schema)), Some(Some(name)), Some(Some(vol))) =
            (row.first(), row.get(1), row.get(2))
        else {
            continue;
        };
        let v = vol.chars().next().unwrap_or('v');
        let qualified = format!("{schema}.{name}");
        let q = map.entry(qualified).or_insert(v);
        if rank(v) > rank(*q) {
            *q = v;
        }
        let u = map.entry(name.clone()).or_insert(v);
        if rank(v) > rank(*u) {
            *u = v;
        }
    }
    Ok(map)
}
