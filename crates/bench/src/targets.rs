//! Where a benchmark run's clients connect: the targets, their names in
//! the JSON, tables and charts, and the sets of targets scenarios run.

use serde::Serialize;

/// Where a run's clients connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Target {
    /// Postgres itself, no proxy.
    #[serde(rename = "direct")]
    Direct,
    /// PgBouncer in transaction mode.
    #[serde(rename = "pgbouncer")]
    Pgbouncer,
    /// pgcoalesce in transaction mode, database [`DB`](crate::stack::DB)
    /// (upserts of the benchmark function coalesced with `ack: flushed`).
    #[serde(rename = "pgcoalesce")]
    Pgcoalesce,
    /// pgcoalesce, database [`DB_IMMEDIATE`](crate::stack::DB_IMMEDIATE)
    /// (the same upstream database, upserts coalesced with `ack: immediate`).
    #[serde(rename = "pgcoalesce_immediate")]
    PgcoalesceImmediate,
    /// A second pgcoalesce, database [`DB`](crate::stack::DB), with one
    /// streaming replica of the benchmark cluster to split reads to,
    /// read-your-writes on (the default); started by the readmix scenario
    /// only, see [`Stack::read_split`](crate::stack::Stack::read_split).
    #[serde(rename = "pgcoalesce_replica")]
    PgcoalesceReplica,
    /// Like [`Target::PgcoalesceReplica`] with read-your-writes off
    /// (`read_your_writes_window: 0`).
    #[serde(rename = "pgcoalesce_replica_ryw_off")]
    PgcoalesceReplicaRywOff,
}

impl Target {
    /// The pooling targets, in the order runs are interleaved and shown.
    pub const POOLING: [Target; 3] = [Target::Direct, Target::Pgbouncer, Target::Pgcoalesce];
    /// Every target, for the coalescing scenarios.
    pub const ALL: [Target; 4] = [
        Target::Direct,
        Target::Pgbouncer,
        Target::Pgcoalesce,
        Target::PgcoalesceImmediate,
    ];
    /// The read-splitting scenario's targets: pgcoalesce with the primary
    /// only next to pgcoalesce with a replica.
    pub const READ_SPLIT: [Target; 4] = [
        Target::Direct,
        Target::Pgcoalesce,
        Target::PgcoalesceReplica,
        Target::PgcoalesceReplicaRywOff,
    ];
    /// Every target there is, in display (legend) order.
    pub const EVERY: [Target; 6] = [
        Target::Direct,
        Target::Pgbouncer,
        Target::Pgcoalesce,
        Target::PgcoalesceImmediate,
        Target::PgcoalesceReplica,
        Target::PgcoalesceReplicaRywOff,
    ];

    /// Name as in the JSON.
    pub fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Pgbouncer => "pgbouncer",
            Target::Pgcoalesce => "pgcoalesce",
            Target::PgcoalesceImmediate => "pgcoalesce_immediate",
            Target::PgcoalesceReplica => "pgcoalesce_replica",
            Target::PgcoalesceReplicaRywOff => "pgcoalesce_replica_ryw_off",
        }
    }

    /// Name in tables and charts; in coalescing scenarios pgcoalesce's ack
    /// mode is spelled out.
    pub fn title(self, coalescing: bool) -> &'static str {
        match self {
            Target::Pgcoalesce if coalescing => "pgcoalesce (flushed)",
            Target::PgcoalesceImmediate => "pgcoalesce (immediate)",
            Target::PgcoalesceReplica => "pgcoalesce + replica",
            Target::PgcoalesceReplicaRywOff => "pgcoalesce + replica, RYW off",
            t => t.label(),
        }
    }

    /// Whether the target splits reads to a replica.
    pub fn has_replica(self) -> bool {
        matches!(
            self,
            Target::PgcoalesceReplica | Target::PgcoalesceReplicaRywOff
        )
    }

    /// Whether the target is a proxy process (whose CPU and memory are sampled).
    pub fn is_proxy(self) -> bool {
        self != Target::Direct
    }
}
