//! `autocache`: a Redis-compatible cache.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod admin;
mod admin_plan;
mod client;
mod cmd;
mod config;
mod connection;
mod dev_cluster;
mod membership;
mod metrics;
mod output_limit;
mod pubsub;
mod replica_janitor;
mod route;
mod seeds;
mod server;
mod session;
mod slot_janitor;
mod slowlog;
mod socket;
mod stats;
mod topology;

use config::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "autocache",
    version,
    about = "A strongly consistent, Redis-compatible cache"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a server (with no flags: 127.0.0.1:6379, data in ./data).
    Server(Box<ServerArgs>),
    /// Runs a local cluster of N server processes until Ctrl-C.
    DevCluster(dev_cluster::DevClusterArgs),
    /// Shows a running cluster and moves its replicas and leaders (add or remove a node).
    Admin(admin::AdminArgs),
}

#[derive(Parser)]
struct ServerArgs {
    /// TOML config file (see deploy/autocache.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long)]
    bind: Option<std::net::IpAddr>,
    /// Port to listen on.
    #[arg(long)]
    port: Option<u16>,
    /// Data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Password clients must AUTH with.
    #[arg(long)]
    requirepass: Option<String>,
    /// Most clients connected at once.
    #[arg(long)]
    maxclients: Option<usize>,
    /// Worker threads serving clients (0: one per core minus one, at least one).
    #[arg(long)]
    threads: Option<usize>,
    /// Number of slot groups (raft groups) the 16384 slots are split into.
    #[arg(long)]
    groups: Option<usize>,
    /// Entries between two snapshots of a group (at least: a group holding over 100,000 keys
    /// also waits for half as many entries as it holds keys).
    #[arg(long, value_name = "ENTRIES")]
    snapshot_every: Option<u64>,
    /// This node's id in --members.
    #[arg(long)]
    node_id: Option<u64>,
    /// The cluster's members: ID=CLIENT_HOST:PORT/RAFT_HOST:PORT, comma-separated, the same
    /// list on every node.
    #[arg(long, value_delimiter = ',', value_name = "MEMBERS")]
    members: Option<Vec<String>>,
    /// Replicas of each slot group (at most the number of members).
    #[arg(long)]
    replicas: Option<usize>,
    /// Join a running cluster (found by --seeds, or --members) as a new node with these
    /// addresses: CLIENT_HOST:PORT/RAFT_HOST:PORT. It replicates nothing until `autocache admin
    /// add-node`.
    #[arg(long, value_name = "ADDRS")]
    join: Option<String>,
    /// Raft addresses (HOST:PORT, comma-separated) of running nodes a joining node asks for
    /// the member list, groups and replicas (recorded in the data directory at first start).
    #[arg(long, value_delimiter = ',', value_name = "SEEDS")]
    seeds: Option<Vec<String>>,
    /// Port of the Prometheus endpoint (GET /metrics); 0: none.
    #[arg(long)]
    metrics_port: Option<u16>,
    /// The cluster's name in gossip (members of another cluster are ignored).
    #[arg(long)]
    cluster_id: Option<String>,
    /// UNSAFE, for testing the correctness harness only: serve reads from any replica without
    /// confirming leadership, so reads can be stale.
    #[arg(long, hide = true)]
    unsafe_stale_reads: bool,
}

impl ServerArgs {
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(bind) = self.bind {
            config.bind = bind;
        }
        if let Some(port) = self.port {
            config.port = port;
        }
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        if let Some(pass) = self.requirepass {
            config.requirepass = pass;
        }
        if let Some(n) = self.maxclients {
            config.maxclients = n;
        }
        if let Some(n) = self.threads {
            config.threads = n;
        }
        if let Some(n) = self.groups {
            config.groups = n;
        }
        if let Some(n) = self.snapshot_every {
            config.snapshot_every = n;
        }
        if let Some(id) = self.node_id {
            config.node_id = id;
        }
        if let Some(members) = self.members {
            config.members = members;
        }
        if let Some(n) = self.replicas {
            config.replicas = n;
        }
        if let Some(join) = self.join {
            config.join = join;
        }
        if let Some(seeds) = self.seeds {
            config.seeds = seeds;
        }
        if let Some(port) = self.metrics_port {
            config.metrics_port = port;
        }
        if let Some(id) = self.cluster_id {
            config.cluster_id = id;
        }
        if self.unsafe_stale_reads {
            tracing::warn!("UNSAFE: --unsafe-stale-reads serves reads from any replica, unconfirmed: reads can be stale");
            config.unsafe_stale_reads = true;
        }
        config.validate()?;
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openraft narrates every group's start at info (with whole state dumps) and
                // warns of messages a new term made stale, which is routine.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only help a terminal; in a log file (dev-cluster) they are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written (its disk full) is lost, not reported with
        // `eprintln!`, which panics on the same full disk: that panicked whichever task logged,
        // even the one noticing that the node's storage failed.
        .log_internal_errors(false)
        .init();
    match cli.command {
        Command::Server(args) => {
            let config = args.into_config()?;
            let threads = match config.threads {
                // Leave a core to the kernel's network processing, which a cache keeps busy.
                0 => std::thread::available_parallelism()
                    .map_or(1, |n| n.get().saturating_sub(1).max(1)),
                n => n,
            };
            // One worker needs no work stealing: a current-thread runtime wakes tasks without
            // cross-thread synchronisation.
            let runtime = if threads == 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()
            }
            .context("start the async runtime")?;
            runtime.block_on(run_server(config))
        }
        Command::DevCluster(args) => dev_cluster::run(args),
        Command::Admin(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start the async runtime")?
            .block_on(admin::run(args)),
    }
}

async fn run_server(config: Config) -> anyhow::Result<()> {
    let config = seeds::resolve(config).await?;
    let bound = server::bind(config).await?;
    let server = bound.server();
    // Stops the node on a signal, or once its storage failed (see `raft::storage_watch`): its
    // groups take no more writes, its peers take them over, and a supervisor restarting it
    // finds it exited with an error.
    let stopper = tokio::spawn(async move {
        let failure = tokio::select! {
            _ = wait_for_signal() => {
                tracing::info!("signal received");
                None
            }
            error = server.groups.storage_failed() => {
                tracing::error!(%error, "storage failed, stopping the node: restart it once its disk is fixed");
                Some(error)
            }
        };
        server.shutdown();
        failure
    });
    bound.serve().await?;
    if !stopper.is_finished() {
        // Stopped otherwise (SHUTDOWN).
        stopper.abort();
        return Ok(());
    }
    match stopper.await {
        Ok(Some(error)) => anyhow::bail!("storage failed: {error}"),
        _ => Ok(()),
    }
}

pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
