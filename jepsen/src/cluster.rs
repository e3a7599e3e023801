//! The cluster under test: real `autocache` processes, one per network namespace, with their
//! data on disk, which the harness kills, pauses and restarts.

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::net::{Net, NetError};

/// Port every node serves clients on, at its namespace's address.
pub const CLIENT_PORT: u16 = 6379;
/// Port of the raft transport.
pub const RAFT_PORT: u16 = 7379;

/// Starting or driving the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the cluster was not ready after {waited:?}: {last}")]
    NotReady { waited: Duration, last: String },
}

/// How to start the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The `autocache` binary.
    pub binary: PathBuf,
    /// Where each node keeps its data (`n<i>/`) and log (`n<i>.log`).
    pub dir: PathBuf,
    pub nodes: usize,
    pub groups: u32,
    /// More `autocache server` flags (the harness's own tests pass unsafe modes here).
    pub server_args: Vec<String>,
    /// Run every node under libfaketime, so that its wall clock can be skewed.
    pub faketime: bool,
}

/// libfaketime's thread-safe build, from Debian's `libfaketime` package.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

struct Node {
    /// The node id the process runs as: the slot's number, until the slot is replaced by a
    /// new node (ids are never reused).
    id: u64,
    /// Started with `--join` (a replacement), not as one of the static members.
    joined: bool,
    process: Option<Child>,
    paused: bool,
}

/// A running cluster; its processes are killed and its network removed on drop.
pub struct Cluster {
    config: ClusterConfig,
    nodes: Vec<Node>,
    /// The id the next replacement node gets.
    next_id: u64,
    // Dropped after the processes are killed (see Drop).
    net: Net,
}

impl Cluster {
    /// Creates the network and starts every node.
    pub fn start(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let net = Net::create(config.nodes)?;
        std::fs::create_dir_all(&config.dir).map_err(|source| ClusterError::Io {
            what: format!("create {}", config.dir.display()),
            source,
        })?;
        let mut cluster = Cluster {
            nodes: (1..=config.nodes)
                .map(|slot| Node {
                    id: slot as u64,
                    joined: false,
                    process: None,
                    paused: false,
                })
                .collect(),
            next_id: config.nodes as u64 + 1,
            config,
            net,
        };
        for node in 1..=cluster.config.nodes {
            cluster.start_node(node)?;
        }
        Ok(cluster)
    }

    /// The network, for injecting faults.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// Where node `node` (1-based) serves clients.
    pub fn client_addr(&self, node: usize) -> SocketAddrV4 {
        SocketAddrV4::new(self.net.ip(node), CLIENT_PORT)
    }

    /// Where node `node` (1-based) serves raft and the admin API.
    pub fn raft_addr(&self, node: usize) -> SocketAddrV4 {
        SocketAddrV4::new(self.net.ip(node), RAFT_PORT)
    }

    /// The `autocache` binary the nodes run.
    pub fn binary(&self) -> &Path {
        &self.config.binary
    }

    /// How many nodes the cluster has.
    pub fn nodes(&self) -> usize {
        self.config.nodes
    }

    /// The id of the node running on `node`'s machine (its namespace).
    pub fn node_id(&self, node: usize) -> u64 {
        self.nodes[node - 1].id
    }

    /// The ids of the nodes, by machine.
    pub fn node_ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Replaces the node on machine `node` by a new, empty one, as an operator replaces a
    /// machine: the process is killed, and a new id starts on the same addresses with a data
    /// directory of its own and `--join`, replicating nothing until `admin add-node`. Returns
    /// the new id.
    pub fn replace_node(&mut self, node: usize) -> Result<u64, ClusterError> {
        self.kill(node);
        let id = self.next_id;
        self.next_id += 1;
        self.nodes[node - 1].id = id;
        self.nodes[node - 1].joined = true;
        self.start_node(node)?;
        Ok(id)
    }

    /// Where the node on machine `node` keeps its data: `n<i>` for a static member, `n<i>-id<id>`
    /// for a replacement.
    fn data_dir(&self, node: usize) -> PathBuf {
        let id = self.nodes[node - 1].id;
        if id == node as u64 {
            self.config.dir.join(format!("n{node}"))
        } else {
            self.config.dir.join(format!("n{node}-id{id}"))
        }
    }

    /// Node `node`'s log file.
    pub fn log_path(&self, node: usize) -> PathBuf {
        self.config.dir.join(format!("n{node}.log"))
    }

    fn members(&self) -> String {
        (1..=self.config.nodes)
            .map(|n| {
                let ip = self.net.ip(n);
                format!("{n}={ip}:{CLIENT_PORT}/{ip}:{RAFT_PORT}")
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts node `node` (again, after a kill) from its data directory.
    pub fn start_node(&mut self, node: usize) -> Result<(), ClusterError> {
        let log = open_log(&self.log_path(node))?;
        let err = log.try_clone().map_err(|source| ClusterError::Io {
            what: "clone the log file".into(),
            source,
        })?;
        let data = self.data_dir(node);
        let binary = self.config.binary.to_string_lossy().into_owned();
        let mut command = self.net.command(node, &binary);
        command
            .arg("server")
            .args(["--bind", &self.net.ip(node).to_string()])
            .args(["--port", &CLIENT_PORT.to_string()])
            .args(["--data-dir", &data.to_string_lossy()])
            .args(["--node-id", &self.nodes[node - 1].id.to_string()])
            .args(["--groups", &self.config.groups.to_string()])
            .args(["--replicas", &self.config.nodes.min(3).to_string()])
            .args(&self.config.server_args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        if self.nodes[node - 1].joined {
            // A replacement finds the cluster through the other machines, as a new node
            // would (a restart reads what it learned from its data directory).
            let ip = self.net.ip(node);
            let seeds: Vec<String> = (1..=self.config.nodes)
                .filter(|&other| other != node)
                .map(|other| self.raft_addr(other).to_string())
                .collect();
            command
                .args(["--join", &format!("{ip}:{CLIENT_PORT}/{ip}:{RAFT_PORT}")])
                .args(["--seeds", &seeds.join(",")]);
        } else {
            command.args(["--members", &self.members()]);
        }
        if self.config.faketime {
            let offset_file = self.clock_file(node);
            if !offset_file.exists() {
                self.set_clock_offset(node, 0)?;
            }
            // Only the wall clock is skewed, as on a real machine: the monotonic clock that
            // timers and leases use is left alone.
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", &offset_file)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        let child = command.spawn().map_err(|source| ClusterError::Io {
            what: format!("start node {node} ({binary})"),
            source,
        })?;
        self.nodes[node - 1].process = Some(child);
        self.nodes[node - 1].paused = false;
        Ok(())
    }

    /// The file node `node`'s libfaketime reads its clock offset from.
    pub fn clock_file(&self, node: usize) -> PathBuf {
        self.config.dir.join(format!("n{node}.faketime"))
    }

    /// Sets how far node `node`'s wall clock is from the host's (libfaketime reads the file
    /// at most a second later).
    pub fn set_clock_offset(&self, node: usize, seconds: i64) -> Result<(), ClusterError> {
        write_clock_offset(&self.clock_file(node), seconds)
    }

    /// The node that leads the slot group of `slot`, as the first running node that answers
    /// CLUSTER SLOTS says.
    pub fn leader_of_slot(&mut self, slot: u16) -> Option<usize> {
        let answering: Vec<usize> = (1..=self.config.nodes)
            .filter(|&node| self.is_running(node) && !self.nodes[node - 1].paused)
            .collect();
        answering.into_iter().find_map(|node| {
            let leader = slot_leader(self.client_addr(node), slot).ok()??;
            (1..=self.config.nodes).find(|&n| self.net.ip(n) == leader)
        })
    }

    /// How far node `node`'s clock is from the host's, as its TIME command shows, in seconds.
    pub fn clock_offset(&self, node: usize) -> Option<i64> {
        let client = redis::Client::open(format!("redis://{}/", self.client_addr(node))).ok()?;
        let mut connection = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        connection
            .set_read_timeout(Some(Duration::from_secs(1)))
            .ok()?;
        let (seconds, _micros): (i64, i64) = redis::cmd("TIME").query(&mut connection).ok()?;
        let host = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs() as i64;
        Some(seconds - host)
    }

    /// The process id of node `node`, when it runs.
    pub fn pid(&self, node: usize) -> Option<u32> {
        self.nodes[node - 1].process.as_ref().map(Child::id)
    }

    fn signal(&self, node: usize, signal: i32) -> bool {
        match self.pid(node) {
            Some(pid) => {
                // SAFETY: kill has no memory-safety preconditions; the pid is our own child,
                // not yet waited for, so it cannot have been reused.
                unsafe { libc::kill(pid as i32, signal) == 0 }
            }
            None => false,
        }
    }

    /// Kills node `node` with SIGKILL and reaps it. Returns false if it was not running.
    pub fn kill(&mut self, node: usize) -> bool {
        if self.nodes[node - 1].paused {
            self.signal(node, libc::SIGCONT);
        }
        let killed = self.signal(node, libc::SIGKILL);
        if let Some(mut child) = self.nodes[node - 1].process.take() {
            let _ = child.wait();
        }
        self.nodes[node - 1].paused = false;
        killed
    }

    /// Pauses node `node` with SIGSTOP.
    pub fn pause(&mut self, node: usize) -> bool {
        let paused = self.signal(node, libc::SIGSTOP);
        self.nodes[node - 1].paused |= paused;
        paused
    }

    /// Resumes a paused node with SIGCONT.
    pub fn resume(&mut self, node: usize) -> bool {
        let resumed = self.signal(node, libc::SIGCONT);
        self.nodes[node - 1].paused = false;
        resumed
    }

    /// Whether node `node`'s process is alive (it may be paused).
    pub fn is_running(&mut self, node: usize) -> bool {
        match self.nodes[node - 1].process.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether node `node` answers `cluster_state:ok`: it sees a leader for every group.
    pub fn is_ready(&self, node: usize) -> bool {
        cluster_state(self.client_addr(node)).is_ok_and(|info| info.contains("cluster_state:ok"))
    }

    /// Waits until every running node answers `cluster_state:ok` (every group has a leader).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), ClusterError> {
        let started = Instant::now();
        let mut last = String::from("no node checked yet");
        while started.elapsed() < timeout {
            let mut ready = true;
            for node in 1..=self.config.nodes {
                if !self.is_running(node) {
                    continue;
                }
                match cluster_state(self.client_addr(node)) {
                    Ok(info) if info.contains("cluster_state:ok") => {}
                    Ok(info) => {
                        ready = false;
                        last = format!("node {node}: {}", info.lines().next().unwrap_or(""));
                    }
                    Err(e) => {
                        ready = false;
                        last = format!("node {node}: {e}");
                    }
                }
            }
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(ClusterError::NotReady {
            waited: timeout,
            last,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in 1..=self.config.nodes {
            self.kill(node);
        }
    }
}

fn open_log(path: &Path) -> Result<File, ClusterError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| ClusterError::Io {
            what: format!("open {}", path.display()),
            source,
        })
}

/// Writes the clock offset libfaketime reads from `path`.
pub fn write_clock_offset(path: &Path, seconds: i64) -> Result<(), ClusterError> {
    std::fs::write(path, format!("{seconds:+}\n")).map_err(|source| ClusterError::Io {
        what: format!("write {}", path.display()),
        source,
    })
}

/// The address of the node `addr`'s CLUSTER SLOTS names as serving `slot`.
fn slot_leader(addr: SocketAddrV4, slot: u16) -> redis::RedisResult<Option<Ipv4Addr>> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let mut connection = client.get_connection_with_timeout(Duration::from_secs(1))?;
    connection.set_read_timeout(Some(Duration::from_secs(1)))?;
    // [[start, end, [ip, port, id], replicas...], ...]
    let ranges: Vec<Vec<redis::Value>> =
        redis::cmd("CLUSTER").arg("SLOTS").query(&mut connection)?;
    for range in ranges {
        let [start, end, master, ..] = range.as_slice() else {
            continue;
        };
        let (redis::Value::Int(start), redis::Value::Int(end)) = (start, end) else {
            continue;
        };
        if !(*start..=*end).contains(&i64::from(slot)) {
            continue;
        }
        let redis::Value::Array(master) = master else {
            return Ok(None);
        };
        let ip = match master.first() {
            Some(redis::Value::BulkString(ip)) => std::str::from_utf8(ip).ok(),
            _ => None,
        };
        return Ok(ip.and_then(|ip| ip.parse().ok()));
    }
    Ok(None)
}

/// A node's CLUSTER INFO.
fn cluster_state(addr: SocketAddrV4) -> redis::RedisResult<String> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let mut connection = client.get_connection_with_timeout(Duration::from_secs(1))?;
    connection.set_read_timeout(Some(Duration::from_secs(1)))?;
    redis::cmd("CLUSTER").arg("INFO").query(&mut connection)
}

/// The `autocache` binary built beside this program (the same cargo target directory), or
/// `AUTOCACHE_BIN`.
pub fn default_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AUTOCACHE_BIN") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/jepsen, or target/<profile>/deps/<test> for tests.
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("autocache"))
        .find(|candidate| candidate.is_file())
}
