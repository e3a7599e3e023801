//! `autocache dev-cluster`: a local cluster of N server processes on one machine, the way a
//! newcomer tries a cluster and the way tests start one.
//!
//! Node i (from 1) serves clients on `base-port + i - 1`, raft on that port + 10000 (where
//! Redis Cluster puts its bus) and metrics on that port + 20000, keeps its data in `DIR/node<i>` and its log in
//! `DIR/node<i>/autocache.log`. Ctrl-C (or SIGTERM) stops them all.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Prints a line of the cluster's progress. Whoever reads it may have gone away (a closed
/// pipe): the cluster keeps running and stopping regardless.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, $($arg)*);
        let _ = out.flush();
    }};
}

/// Offset from a node's client port to its raft port.
const RAFT_PORT_OFFSET: u16 = 10000;

/// Offset from a node's client port to its metrics port.
const METRICS_PORT_OFFSET: u16 = 20000;

/// How long the cluster may take to elect a leader for every group.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Parser)]
pub struct DevClusterArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Client port of node 1; node i listens on base-port + i - 1.
    #[arg(long, default_value_t = 7000)]
    base_port: u16,
    /// Directory holding each node's data directory.
    #[arg(long, value_name = "DIR", default_value = "./dev-cluster")]
    data_dir: PathBuf,
    /// Number of slot groups.
    #[arg(long)]
    groups: Option<usize>,
    /// Replicas of each group (default 3, at most the number of nodes).
    #[arg(long)]
    replicas: Option<usize>,
    /// Entries between two snapshots of a group.
    #[arg(long, value_name = "ENTRIES")]
    snapshot_every: Option<u64>,
    /// Extra nodes started with `--join`, replicating nothing until `autocache admin add-node`
    /// moves replicas onto them (numbered after the members).
    #[arg(long, default_value_t = 0)]
    spare: u16,
}

/// One node of the cluster: how to start it and where it listens.
struct Node {
    id: u16,
    /// Started with `--join`: not a member, replicates nothing yet.
    spare: bool,
    client: SocketAddr,
    raft: SocketAddr,
    dir: PathBuf,
}

struct Running {
    node: Node,
    child: Option<Child>,
}

pub fn run(args: DevClusterArgs) -> anyhow::Result<()> {
    if !(1..=100).contains(&args.nodes) || args.spare > 100 {
        bail!("--nodes must be between 1 and 100, --spare at most 100");
    }
    let total = args.nodes + args.spare;
    let last_port = args.base_port as u32 + total as u32 - 1 + METRICS_PORT_OFFSET as u32;
    if last_port > u16::MAX as u32 {
        bail!("--base-port too high: metrics ports are client ports + {METRICS_PORT_OFFSET}");
    }
    let nodes: Vec<Node> = (1..=total)
        .map(|id| {
            let port = args.base_port + id - 1;
            Node {
                id,
                spare: id > args.nodes,
                client: SocketAddr::from(([127, 0, 0, 1], port)),
                raft: SocketAddr::from(([127, 0, 0, 1], port + RAFT_PORT_OFFSET)),
                dir: args.data_dir.join(format!("node{id}")),
            }
        })
        .collect();
    let members: Vec<String> = nodes
        .iter()
        .filter(|n| !n.spare)
        .map(|n| format!("{}={}/{}", n.id, n.client, n.raft))
        .collect();
    let seeds: Vec<String> = nodes
        .iter()
        .filter(|n| !n.spare)
        .map(|n| n.raft.to_string())
        .collect();
    let exe = std::env::current_exe().context("find the autocache executable")?;
    let mut running = Vec::new();
    for node in nodes {
        std::fs::create_dir_all(&node.dir)
            .with_context(|| format!("create {}", node.dir.display()))?;
        let log_path = node.dir.join("autocache.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let mut command = Command::new(&exe);
        command
            .arg("server")
            .args(["--bind", "127.0.0.1"])
            .args(["--port", &node.client.port().to_string()])
            .args([
                "--metrics-port",
                &(node.client.port() + METRICS_PORT_OFFSET).to_string(),
            ])
            .arg("--data-dir")
            .arg(&node.dir)
            .args(["--node-id", &node.id.to_string()]);
        if node.spare {
            // A spare finds the cluster as an operator's new node would: through seeds.
            command
                .args(["--join", &format!("{}/{}", node.client, node.raft)])
                .args(["--seeds", &seeds.join(",")]);
        } else {
            command.args(["--members", &members.join(",")]);
        }
        if let Some(groups) = args.groups {
            command.args(["--groups", &groups.to_string()]);
        }
        if let Some(replicas) = args.replicas {
            command.args(["--replicas", &replicas.to_string()]);
        }
        if let Some(every) = args.snapshot_every {
            command.args(["--snapshot-every", &every.to_string()]);
        }
        // SAFETY: prctl is async-signal-safe; between fork and exec it only sets how the
        // child learns of its parent's death.
        unsafe {
            command.pre_exec(|| {
                // A node dies with its dev-cluster, however that ends (even by SIGKILL), so no
                // orphaned node keeps a port or a data directory.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("start node {}", node.id))?;
        say!(
            "node {}: clients {}  raft {}  metrics http://127.0.0.1:{}/metrics  data {}  log {}  pid {}",
            node.id,
            node.client,
            node.raft,
            node.client.port() + METRICS_PORT_OFFSET,
            node.dir.display(),
            log_path.display(),
            child.id()
        );
        running.push(Running {
            node,
            child: Some(child),
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let groups = args
        .groups
        .unwrap_or(crate::config::Config::default().groups);
    let result = runtime.block_on(supervise(&mut running, groups));
    stop_all(&mut running);
    result
}

/// Waits for the cluster to be ready, then until a signal arrives, reporting nodes that exit.
async fn supervise(running: &mut [Running], groups: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut ready = false;
    let signal = crate::wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => {
                say!("stopping the cluster");
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        for entry in running.iter_mut() {
            if let Some(child) = &mut entry.child {
                if let Ok(Some(status)) = child.try_wait() {
                    say!("node {} exited: {status}", entry.node.id);
                    entry.child = None;
                    if !ready {
                        // A node that cannot start (a port in use, a bad data directory)
                        // says why in its log; waiting for the rest would only delay that.
                        let log = entry.node.dir.join("autocache.log");
                        bail!(
                            "node {} exited before the cluster was ready; see {}",
                            entry.node.id,
                            log.display()
                        );
                    }
                }
            }
        }
        if running.iter().all(|r| r.child.is_none()) {
            bail!("every node exited");
        }
        if !ready {
            let clients: Vec<SocketAddr> = running
                .iter()
                .filter(|r| !r.node.spare)
                .map(|r| r.node.client)
                .collect();
            if clients
                .iter()
                .all(|&addr| cluster_ok(addr, &clients, groups))
            {
                ready = true;
                say!(
                    "cluster ready after {:.1}s: try redis-cli -c -p {}",
                    started.elapsed().as_secs_f64(),
                    clients[0].port()
                );
                for spare in running.iter().filter(|r| r.node.spare) {
                    let node = &spare.node;
                    say!(
                        "node {} is spare: grow the cluster onto it with autocache admin --node {} add-node {} --client {} --raft {}",
                        node.id,
                        running[0].node.raft,
                        node.id,
                        node.client,
                        node.raft
                    );
                }
            } else if started.elapsed() > READY_TIMEOUT {
                bail!("the groups were not led by their preferred leaders after {READY_TIMEOUT:?}");
            }
        }
    }
}

/// Sends one inline command and reads its bulk-string reply.
fn query(addr: SocketAddr, command: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(format!("{command}\r\n").as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header)?;
    let len: usize = header
        .trim_start_matches('$')
        .trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("not a bulk reply: {header}")))?;
    let mut body = vec![0; len];
    std::io::Read::read_exact(&mut reader, &mut body)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Returns true if the node at `addr` knows a leader for every group, and each group is led
/// by its preferred leader: group g by node `g mod N` + 1, the placement every node computes.
fn cluster_ok(addr: SocketAddr, clients: &[SocketAddr], groups: usize) -> bool {
    let Ok(info) = query(addr, "CLUSTER INFO") else {
        return false;
    };
    if !info.contains("cluster_state:ok\r\n") {
        return false;
    }
    let Ok(nodes) = query(addr, "CLUSTER NODES") else {
        return false;
    };
    // (first slot, last slot, client address) of every range a node serves.
    let mut ranges = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(node) = fields.get(1).and_then(|a| a.split('@').next()) else {
            continue;
        };
        for range in fields.iter().skip(8) {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                ranges.push((a, b, node.to_string()));
            }
        }
    }
    (0..groups).all(|group| {
        let (first, _) = crate::cmd::cluster::slot_range(groups, group);
        let preferred = clients[group % clients.len()].to_string();
        ranges
            .iter()
            .any(|(a, b, node)| (*a..=*b).contains(&(first as usize)) && *node == preferred)
    })
}

/// Asks every node to stop, and kills those that do not in time.
fn stop_all(running: &mut [Running]) {
    for entry in running.iter() {
        if let Some(child) = &entry.child {
            // SAFETY: kill(2) on a child we started and have not reaped: its pid is ours.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    for entry in running.iter_mut() {
        let Some(child) = &mut entry.child else {
            continue;
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => {
                    say!("node {} did not stop in time; killing it", entry.node.id);
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        say!("node {} stopped", entry.node.id);
    }
}
