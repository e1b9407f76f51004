//! The `pgcoalesce` binary: command line, logging, signals, and `dev` mode.

mod dev;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use config::{Config, LogFormat, PoolMode};

/// A PostgreSQL wire-protocol proxy: pooling, read splitting and upsert coalescing.
#[derive(Parser, Debug, Clone)]
#[command(name = "pgcoalesce", version)]
struct Cli {
    /// YAML config file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Upstream primary, postgres://user[:password]@host[:port]/db. Clients
    /// log in as its user and database. Overrides the file's database of
    /// that name when both are given.
    #[arg(long, global = true)]
    upstream: Option<String>,
    /// Streaming replica of the upstream (repeatable): reads that may run
    /// there are split to it, lag-aware, with read-your-writes.
    #[arg(long, global = true)]
    replica: Vec<String>,
    /// Listen address (overrides the file).
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Pool mode (overrides the file).
    #[arg(long, global = true, value_enum)]
    pool_mode: Option<Mode>,
    /// Log format (overrides the file).
    #[arg(long, global = true, value_enum)]
    log_format: Option<Format>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// Start a throwaway primary and replica with the reference schema and
    /// run the proxy in front of them; Ctrl-C stops and removes everything.
    Dev,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Session,
    Transaction,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let config = match cli.command {
        Some(Command::Dev) => None,
        None => Some(build_config(&cli, None)?),
    };
    let workers = config.as_ref().map_or_else(
        || Config::default().worker_threads(),
        |c| c.worker_threads(),
    );
    // One worker: a current-thread runtime (no work stealing, cheaper
    // parking); more: a multi-thread one.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match config {
            None => dev::run(&cli).await,
            Some(config) => {
                init_logging(config.log_format);
                // SIGHUP and the console's RELOAD read the file and the
                // command line again, as at start.
                let cli = cli.clone();
                let source: proxy::state::ConfigSource = std::sync::Arc::new(move || {
                    build_config(&cli, None).map_err(|e| format!("{e:#}"))
                });
                serve(config, Some(source)).await
            }
        }
    })
}

/// The config from the file (if any), with the command line applied on top.
/// `upstream` stands in for `--upstream` (dev mode supplies its own).
fn build_config(cli: &Cli, upstream: Option<&str>) -> Result<Config> {
    let upstream = upstream.or(cli.upstream.as_deref());
    let mut config = match (&cli.config, upstream) {
        (Some(path), Some(url)) => {
            let mut c = config::load(path).map_err(|e| anyhow::anyhow!("{e:#}"))?;
            c.apply_upstream_url(url)?;
            c
        }
        (Some(path), None) => config::load(path).map_err(|e| anyhow::anyhow!("{e:#}"))?,
        (None, Some(url)) => Config::from_upstream_url(url)?,
        (None, None) => {
            anyhow::bail!("give --config FILE or --upstream URL (or run `pgcoalesce dev`)")
        }
    };
    if !cli.replica.is_empty() {
        config.apply_replica_urls(&cli.replica)?;
    }
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    if let Some(mode) = cli.pool_mode {
        config.pool.mode = match mode {
            Mode::Session => PoolMode::Session,
            Mode::Transaction => PoolMode::Transaction,
        };
        for db in &mut config.databases {
            db.pool_mode = None;
        }
    }
    if let Some(f) = cli.log_format {
        config.log_format = match f {
            Format::Text => LogFormat::Text,
            Format::Json => LogFormat::Json,
        };
    }
    config.validate()?;
    Ok(config)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Runs the proxy until SIGINT or SIGTERM (or the console's SHUTDOWN);
/// SIGHUP reloads the config from `source`.
async fn serve(config: Config, source: Option<proxy::state::ConfigSource>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let proxy = proxy::Proxy::start_with_source(config, source).await?;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                r.context("waiting for Ctrl-C")?;
                break;
            }
            _ = term.recv() => break,
            // The admin console's SHUTDOWN: its drain is already under way.
            _ = proxy.shutdown_requested() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                if let Err(e) = proxy.reload().await {
                    tracing::error!("config not reloaded: {e}");
                }
            }
        }
    }
    tracing::info!("shutting down: flushing pending coalesced writes");
    let left = proxy.shutdown(std::time::Duration::from_secs(60)).await;
    if left > 0 {
        anyhow::bail!("{left} coalesced writes could not be flushed before exit");
    }
    Ok(())
}
