//! Session parameters a client expects (its startup parameters and what the
//! server reported to it), and replaying them onto whichever server
//! connection it is given.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use crate::pinning::TRACKED_PARAMETERS;
use crate::quote;
use crate::server::ServerConn;

/// Startup parameters that are not GUCs (or that the proxy owns).
const NOT_SETTABLE: &[&str] = &["user", "database", "replication", "options"];

/// A fingerprint of a set of parameter values. A server connection records
/// the fingerprint it was last brought in line with, so a client wanting the
/// same values (commonly every client of one application) skips the
/// comparison on checkout. Keyed per process, so no client can forge a
/// collision.
pub type ParamsStamp = u64;

fn fingerprint_hasher() -> &'static RandomState {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    KEYS.get_or_init(RandomState::new)
}

/// One client's parameters, keyed by lower-cased name.
#[derive(Debug, Clone, Default)]
pub struct ClientParams {
    wanted: HashMap<String, (String, String)>,
    /// Fingerprint of `wanted`, kept current by every change.
    stamp: ParamsStamp,
}

impl ClientParams {
    /// The parameters a client asked for in its StartupMessage, including
    /// `-c name=value` / `--name=value` switches inside `options`.
    pub fn from_startup(params: &[(String, String)]) -> ClientParams {
        let mut out = ClientParams::default();
        for (k, v) in params {
            if k == "options" {
                for (name, value) in parse_options(v) {
                    out.set(&name, &value);
                }
            } else if !NOT_SETTABLE.contains(&k.as_str()) && !k.starts_with("_pq_.") {
                out.set(k, v);
            }
        }
        out
    }

    fn set(&mut self, name: &str, value: &str) {
        let key = name.to_ascii_lowercase();
        if self.wanted.get(&key).is_some_and(|(_, v)| v == value) {
            return;
        }
        self.wanted.insert(key, (name.to_owned(), value.to_owned()));
        self.restamp();
    }

    fn restamp(&mut self) {
        let mut entries: Vec<(&String, &String)> =
            self.wanted.iter().map(|(k, (_, v))| (k, v)).collect();
        entries.sort_unstable();
        self.stamp = fingerprint_hasher().hash_one(entries);
    }

    /// The value the client has for a parameter (lower-cased name).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.wanted.get(key).map(|(_, v)| v.as_str())
    }

    /// Records a ParameterStatus the client saw.
    pub fn observe(&mut self, name: &str, value: &str) {
        self.set(name, value);
    }

    /// The statements that make `server` match this client, or `None` when it
    /// already does: SET for every differing value, RESET for untracked
    /// parameters another client set there.
    pub fn sync_sql(&self, server: &mut ServerConn) -> Option<String> {
        if server.params_stamp == Some(self.stamp) {
            return None;
        }
        let mut sql = String::new();
        for (key, (name, value)) in &self.wanted {
            if server.params.get(key) != Some(value) {
                sql.push_str(&format!(
                    "SET {} = {};",
                    quote::ident(name),
                    quote::literal(value)
                ));
            }
        }
        for key in server.params.keys() {
            let tracked = TRACKED_PARAMETERS.contains(&key.as_str());
            if !tracked && !self.wanted.contains_key(key) && server.proxy_set.contains(key) {
                sql.push_str(&format!("RESET {};", quote::ident(key)));
            }
        }
        if sql.is_empty() {
            server.params_stamp = Some(self.stamp);
            return None;
        }
        Some(sql)
    }

    /// After a sync: adopt the server's spelling of reported values (so the
    /// next comparison matches) and record untracked values the server does
    /// not report.
    pub fn after_sync(&mut self, server: &mut ServerConn) {
        let mut changed = false;
        for (key, (_, value)) in self.wanted.iter_mut() {
            if TRACKED_PARAMETERS.contains(&key.as_str()) {
                if let Some(v) = server.params.get(key) {
                    if value != v {
                        *value = v.clone();
                        changed = true;
                    }
                }
            } else {
                server.params.insert(key.clone(), value.clone());
                server.proxy_set.insert(key.clone());
            }
        }
        let stale: Vec<String> = server
            .proxy_set
            .iter()
            .filter(|k| !self.wanted.contains_key(*k))
            .cloned()
            .collect();
        for k in stale {
            server.proxy_set.remove(&k);
            server.params.remove(&k);
        }
        if changed {
            self.restamp();
        }
        server.params_stamp = Some(self.stamp);
    }

    /// Takes every reported parameter of `server` the client did not set
    /// itself, so that later servers are compared against all of them.
    pub fn adopt_reported(&mut self, server: &ServerConn) {
        for key in TRACKED_PARAMETERS {
            if let Some(v) = server.params.get(*key) {
                if !self.wanted.contains_key(*key) {
                    self.set(key, v);
                }
            }
        }
    }
}

/// Splits libpq's `options` string into (name, value) pairs.
fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(w) = words.next() {
        let setting = if w == "-c" {
            words.next()
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest)
        } else {
            w.strip_prefix("--")
        };
        if let Some((k, v)) = setting.and_then(|s| s.split_once('=')) {
            out.push((k.replace('-', "_"), v.to_owned()));
        }
    }
    out
}
