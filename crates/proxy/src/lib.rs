//! pgcoalesce's runtime: accepts clients, authenticates them, and relays
//! their traffic over pooled server connections.
//!
//! - [`listener`]: the accept loop, `max_client_conn`, graceful shutdown;
//!   [`Proxy`] is the handle the binary and the tests start.
//! - [`session`]: one client from its startup packet to login.
//! - [`relay`]: a logged-in client's frames to and from its server
//!   connection, and the books of what the server (or the proxy) still owes.
//! - [`classify`]: what a statement is to the coalescer (sqlparser).
//! - [`coalesce`]: the last-write-wins map and the bulk flusher.
//! - [`upsert`]: rows and byte-identical replies of coalesced upserts.
//! - [`auth`]: client authentication (trust, md5, SCRAM-SHA-256, cert).
//! - [`auth_query`]: looking up users who are not in the config in Postgres
//!   itself (`auth_user`, `auth_query`).
//! - [`scram`]: SCRAM-SHA-256 exchanges, the server side for clients and
//!   the client side to Postgres (from a password or recovered keys).
//! - [`server`]: one logged-in connection to Postgres.
//! - [`server_auth`]: the proxy's answers to a server's authentication
//!   requests, from a password or from what a client's login proved.
//! - [`pool`]: per (database, user) pools and the RAII [`pool::Lease`].
//! - [`prepared`]: named prepared statements shared across connections.
//! - [`params`]: a client's session parameters, replayed on checkout.
//! - [`pinning`]: which statements tie a client to its connection.
//! - [`cancel`]: the proxy's own cancel keys and their forwarding.
//! - [`replicas`]: replica health and lag, and the choice of a replica.
//! - [`route`]: whether a statement may run on a replica (sqlparser).
//! - `sql_facts`: the one walk over a parsed statement: the relations and
//!   functions it names, whether it writes or locks (for classify and route).
//! - [`router`]: read routing of one database: replicas, volatility, cache.
//! - [`state`]: what all sessions share, and the live config snapshot.
//! - [`reload`]: applying a new config to a running proxy.
//! - [`tls`]: TLS on the client leg (the acceptor and the client's stream)
//!   and the settings for the server leg (roots, client certificate).
//! - [`quote`]: quoting in SQL the proxy writes itself.
//! - [`error`]: errors with a SQLSTATE a client may see.
//! - [`admin`]: the admin console (`SHOW …`, `PAUSE`, `RELOAD`, `SHUTDOWN`) and the registry
//!   of logged-in clients it lists.

pub mod admin;
pub mod auth;
pub mod auth_query;
pub mod cancel;
pub mod classify;
pub mod coalesce;
pub mod error;
pub mod fasthash;
pub mod listener;
pub mod metrics;
pub mod params;
pub mod pinning;
pub mod pool;
pub mod prepared;
pub mod quote;
pub mod relay;
pub mod reload;
pub mod replicas;
pub mod route;
pub mod router;
pub mod scram;
pub mod server;
pub mod server_auth;
pub mod session;
mod sql_facts;
pub mod state;
pub mod tls;
pub mod upsert;

pub use listener::Proxy;
