//! `pgcoalesce dev`: a throwaway primary and streaming replica with the
//! reference schema, and the proxy in front, until Ctrl-C.

use anyhow::{Context, Result};
use pgtest::{Cluster, ClusterOptions};

use crate::{build_config, init_logging, serve, Cli};

const DATABASE: &str = "pgcoalesce";

/// config/pgcoalesce.yaml, whose coalescing rules `dev` uses.
const REFERENCE_CONFIG: &str = include_str!("../../../config/pgcoalesce.yaml");

pub async fn run(cli: &Cli) -> Result<()> {
    init_logging(config::LogFormat::Text);
    eprintln!(
        "starting a throwaway primary and replica (PostgreSQL from {})",
        pgtest::bin_dir().display()
    );
    let (primary, replica) = tokio::task::spawn_blocking(|| -> Result<(Cluster, Cluster)> {
        let primary = Cluster::start(&ClusterOptions::default()).context("starting the primary")?;
        primary.create_database(DATABASE)?;
        primary
            .apply_migrations(DATABASE, &pgtest::migrations_dir())
            .context("applying migrations/")?;
        let replica = primary.start_replica().context("starting the replica")?;
        Ok((primary, replica))
    })
    .await??;
    let upstream = primary.url("postgres", None, DATABASE);
    let mut config = build_config(cli, Some(&upstream))?;
    if cli.config.is_none() {
        // The reference coalescing rules, so `dev` shows the proxy's main job.
        let reference = config::Config::from_yaml(REFERENCE_CONFIG)
            .context("parsing the built-in reference config")?;
        config.coalesce = reference.coalesce;
        config.validate()?;
    }
    if cli.listen.is_none() {
        config.listen = "127.0.0.1:6432".parse()?;
    }
    if cli.replica.is_empty() {
        config.apply_replica_urls(&[replica.url("postgres", None, DATABASE)])?;
    }
    let listen = config.listen;
    eprintln!("primary: {upstream}");
    eprintln!("replica: {}", replica.url("postgres", None, DATABASE));
    println!("DATABASE_URL=postgres://postgres@{listen}/{DATABASE}");
    println!("psql 'postgres://postgres@{listen}/{DATABASE}'");
    eprintln!("Ctrl-C stops the proxy and removes both servers.");
    let result = serve(config, None).await;
    drop(replica);
    drop(primary);
    result
}
