//! The server: shared state, the accept loop, background work and shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use parking_lot::{Mutex, RwLock};
use raft::{Groups, GroupsConfig, NodeId, Op, Request};
use tiering::Db;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::ClientRegistry;
use crate::cmd::cluster::NodeView;
use crate::config::Config;
use crate::connection;
use crate::metrics::ServerSeries;
use crate::pubsub::PubSub;
use crate::slowlog::SlowLog;
use crate::stats::ServerStats;

/// How long shutdown waits for connections to finish their current command.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything connections share.
pub struct Server {
    pub db: Arc<Db>,
    /// The raft groups every write goes through.
    pub groups: Groups,
    pub config: RwLock<Config>,
    /// Redis settings AutoCache accepts but does not act on (encoding thresholds and such).
    pub ignored_config: Mutex<BTreeMap<String, String>>,
    pub clients: ClientRegistry,
    pub pubsub: PubSub,
    pub stats: ServerStats,
    pub slowlog: SlowLog,
    pub started: Instant,
    pub run_id: String,
    /// The node's name for cluster clients (CLUSTER MYID): 40 hex digits, kept in the data
    /// directory so it survives restarts.
    pub node_name: String,
    pub local_addr: SocketAddr,
    /// Every Prometheus series (raft's and the server's), for `/metrics`.
    pub registry: prometheus::Registry,
    pub series: ServerSeries,
    /// Which members gossip says are down.
    pub liveness: crate::membership::Liveness,
    shutdown: watch::Sender<bool>,
}

impl AsRef<Groups> for Server {
    fn as_ref(&self) -> &Groups {
        &self.groups
    }
}

impl Server {
    /// How cluster clients see member `id`.
    pub fn node_view(&self, id: NodeId) -> NodeView {
        let groups = &self.groups;
        if id == groups.node_id() && groups.placement().members().len() == 1 {
            // A node alone advertises the address it listens on.
            let ip = self.local_addr.ip();
            let ip = if ip.is_unspecified() {
                // Bound to every interface: loopback is the address that surely reaches it.
                std::net::IpAddr::from([127, 0, 0, 1])
            } else {
                ip
            };
            return NodeView {
                name: self.node_name.clone(),
                ip: ip.to_string(),
                port: self.local_addr.port(),
                down: false,
            };
        }
        let addr = groups.member_addr(id);
        let client = addr.as_ref().map_or("", |addr| addr.client.as_str());
        let (ip, port) = client.rsplit_once(':').unwrap_or((client, "0"));
        NodeView {
            name: member_name(id),
            ip: ip.to_string(),
            port: port.parse().unwrap_or(0),
            down: self.liveness.is_down(id),
        }
    }

    /// Asks the server to stop: the accept loop ends and connections close.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// A receiver that changes when shutdown is asked for (for long-lived select loops).
    pub fn shutdown_receiver(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Resolves once shutdown was asked for.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run_id() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).expect("digit below 16"))
        .collect()
}

/// The cluster-client name of member `id` in a multi-node cluster: 40 hex digits.
pub fn member_name(id: NodeId) -> String {
    format!("{id:040x}")
}

/// The node name stored in `dir`, or a new random one, stored.
fn node_name(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("node-name");
    match std::fs::read_to_string(&path) {
        Ok(name) => {
            let name = name.trim().to_string();
            if name.len() != 40 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                anyhow::bail!("{} does not hold a 40-hex-digit node name", path.display());
            }
            Ok(name)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = run_id();
            std::fs::write(&path, format!("{name}\n"))
                .with_context(|| format!("write {}", path.display()))?;
            Ok(name)
        }
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// A bound, not yet serving, server.
pub struct Bound {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    gossip: Option<gossip::Gossip>,
    server: Arc<Server>,
}

impl Bound {
    /// The shared state (for tests and the signal handler).
    pub fn server(&self) -> Arc<Server> {
        self.server.clone()
    }
}

/// Validates the config, prepares the data directory and binds the client port.
pub async fn bind(config: Config) -> anyhow::Result<Bound> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on {addr}"))?;
    let local_addr = listener.local_addr().context("read listener address")?;
    crate::topology::check_or_record(&config.data_dir, &config)?;
    let placement = config.placement(local_addr)?;
    let node_name = if config.members.is_empty() {
        node_name(&config.data_dir)?
    } else {
        // Every node must name every other the same way: the name follows from the id.
        member_name(config.node_id)
    };
    let db = Arc::new(Db::new(config.groups));
    db.config().max_bulk_len.store(
        config.proto_max_bulk_len,
        std::sync::atomic::Ordering::Relaxed,
    );
    let groups = Groups::start(
        GroupsConfig {
            node_id: config.node_id,
            placement,
            groups: config.groups as u32,
            dir: config.data_dir.join("raft"),
            snapshot_every: config.snapshot_every,
            link_filter: None,
            joining: config.joining()?,
            unsafe_stale_reads: config.unsafe_stale_reads,
        },
        db.clone(),
    )
    .await
    .context("start the raft groups")?;
    let registry = prometheus::Registry::new();
    groups
        .metrics()
        .register(&registry)
        .context("register raft metrics")?;
    let series = ServerSeries::register(&registry).context("register server metrics")?;
    let metrics_listener = match config.metrics_port {
        0 => None,
        port => {
            let addr = SocketAddr::new(config.bind, port);
            Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listen for metrics scrapes on {addr}"))?,
            )
        }
    };
    // Gossip is advisory: a node that cannot gossip still serves, it only cannot tell which
    // members are down.
    let gossip = crate::membership::start(&config)
        .await
        .unwrap_or_else(|error| {
            tracing::warn!(error = format!("{error:#}"), "running without gossip");
            None
        });
    let (shutdown, _) = watch::channel(false);
    let pubsub = PubSub::default();
    pubsub.set_limit(config.output_limits()?.pubsub);
    let server = Arc::new(Server {
        db,
        groups,
        config: RwLock::new(config),
        ignored_config: Mutex::new(crate::cmd::config::ignored_defaults()),
        clients: ClientRegistry::default(),
        pubsub,
        stats: ServerStats::default(),
        slowlog: SlowLog::default(),
        started: Instant::now(),
        run_id: run_id(),
        node_name,
        local_addr,
        registry,
        series,
        liveness: Default::default(),
        shutdown,
    });
    // Messages published on other nodes reach this node's subscribers. Weak: the server owns
    // the groups that hold this handler.
    let weak = Arc::downgrade(&server);
    server
        .groups
        .on_relayed_publish(Arc::new(move |channel, message| {
            weak.upgrade()
                .map_or(0, |server| server.pubsub.publish(channel, message))
        }));
    // The admin API and coordinating nodes move replicas through this node's groups.
    server.groups.serve_replica_calls(Arc::downgrade(&server));
    Ok(Bound {
        listener,
        metrics_listener,
        gossip,
        server,
    })
}

impl Bound {
    /// Serves clients until shutdown is asked for, then drains connections and stops the
    /// background tasks it started.
    pub async fn serve(self) -> anyhow::Result<()> {
        let Bound {
            listener,
            metrics_listener,
            gossip,
            server,
        } = self;
        tracing::info!(addr = %server.local_addr, "serving clients");
        let expiry = tokio::spawn(expiry_cycle(server.clone()));
        let metrics = metrics_listener.map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving metrics at /metrics");
            }
            tokio::spawn(crate::metrics::serve(server.clone(), listener))
        });
        // These only where there are other members (gossip runs).
        let janitor = gossip
            .is_some()
            .then(|| tokio::spawn(crate::slot_janitor::run(server.clone())));
        let replica_janitor = gossip
            .is_some()
            .then(|| tokio::spawn(crate::replica_janitor::run(server.clone())));
        let membership =
            gossip.map(|gossip| tokio::spawn(crate::membership::run(server.clone(), gossip)));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (mut socket, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            tracing::warn!(%error, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let maxclients = server.config.read().maxclients;
                    if server.clients.len() >= maxclients {
                        server.clients.rejected_connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        connections.spawn(async move {
                            let _ = socket.write_all(b"-ERR max number of clients reached\r\n").await;
                        });
                        continue;
                    }
                    let _ = socket.set_nodelay(true);
                    let server = server.clone();
                    connections.spawn(async move {
                        connection::serve(server, socket, peer).await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = server.shutting_down() => break,
            }
        }
        drop(listener);
        tracing::info!(clients = server.clients.len(), "shutting down");
        server.clients.kill_all();
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("connections did not close in time, aborting them");
            connections.abort_all();
        }
        expiry.abort();
        let _ = expiry.await;
        if let Some(metrics) = metrics {
            metrics.abort();
            let _ = metrics.await;
        }
        if let Some(membership) = membership {
            // It stops gossip itself once shutdown was asked for.
            let _ = membership.await;
        }
        if let Some(janitor) = janitor {
            // It stops once shutdown was asked for, between two steps of a move.
            let _ = janitor.await;
        }
        if let Some(janitor) = replica_janitor {
            // It stops once shutdown was asked for, between two checks.
            let _ = janitor.await;
        }
        server.groups.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The active expiry cycle: `hz` times a second, proposes the deletion of keys whose deadline
/// passed, in each group this node leads (followers delete only what their leader proposes).
async fn expiry_cycle(server: Arc<Server>) {
    const BATCH: usize = 200;
    loop {
        let hz = server.config.read().hz.max(1);
        tokio::time::sleep(Duration::from_millis(1000 / hz as u64)).await;
        for group in 0..server.db.groups() {
            if !server.groups.is_leader(group as u32) {
                continue;
            }
            let now_ms = unix_ms();
            let keys = server.db.expired_keys(group, now_ms, BATCH);
            if keys.is_empty() {
                continue;
            }
            let request = Request {
                now_ms,
                seed: 0,
                op: Op::Expire(keys.iter().map(|k| k.to_vec()).collect()).into(),
            };
            // Waited for, so the next round does not propose the same keys again.
            if let Ok(pending) = server.groups.propose(group as u32, request).await {
                if let Err(error) = pending.outcome().await {
                    tracing::debug!(group, %error, "expiry proposal failed");
                }
            }
        }
    }
}
