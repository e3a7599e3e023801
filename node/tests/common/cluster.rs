//! A local multi-node cluster for tests, started the way a user starts one:
//! `autocache dev-cluster`. Nodes can be killed and restarted individually.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use resp::Frame;

use super::RawClient;

/// Offset from a node's client port to its raft port (as dev-cluster assigns them).
const RAFT_PORT_OFFSET: u16 = 10000;

/// A running `autocache dev-cluster`.
pub struct DevCluster {
    supervisor: Child,
    pub base_port: u16,
    pub nodes: u16,
    pub dir: PathBuf,
    /// Node pids as dev-cluster reported them, or as restarted by the test.
    pids: Vec<u32>,
    /// Nodes this test restarted itself (dev-cluster only starts them once).
    restarted: Vec<Option<Child>>,
    extra: Vec<String>,
}

/// A base port whose client and raft ports for `nodes` nodes are all free right now.
fn free_base_port(nodes: u16) -> u16 {
    // Tests run in parallel processes: random bases, 10 ports apart, rarely meet; the probe
    // below catches the rest. Every port stays below Linux's ephemeral range (32768 on), or
    // an outgoing connection (the nodes' own, between the probe and a node's start) could
    // take a port a node is about to listen on: clients from 2000, raft (+10000) from 12000,
    // metrics (+20000) from 22000, all below 32768.
    loop {
        let candidate = 2000 + rand::random_range(0..1070u16) * 10;
        let free = (0..nodes).all(|i| {
            [
                candidate + i,
                candidate + i + RAFT_PORT_OFFSET,
                candidate + i + 2 * RAFT_PORT_OFFSET,
            ]
            .iter()
            .all(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        });
        if free {
            return candidate;
        }
    }
}

/// The nodes' log filter: `default`, unless `AUTOCACHE_TEST_RUST_LOG` says otherwise (to chase
/// a flaky failure with more detail in the log tails a failed test prints).
fn node_log_filter(default: &str) -> String {
    std::env::var("AUTOCACHE_TEST_RUST_LOG").unwrap_or_else(|_| default.to_string())
}

impl DevCluster {
    /// Starts `nodes` nodes with extra dev-cluster flags and waits until every group has a
    /// leader.
    pub fn start(members: u16, extra: &[&str]) -> DevCluster {
        // Spare nodes (`--spare N`) are numbered after the members and get ports too.
        let spare: u16 = extra
            .windows(2)
            .find(|pair| pair[0] == "--spare")
            .map_or(0, |pair| pair[1].parse().expect("--spare N"));
        let nodes = members + spare;
        let base_port = free_base_port(nodes);
        let dir = std::env::temp_dir().join(format!(
            "autocache-cluster-{}-{base_port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut supervisor = Command::new(env!("CARGO_BIN_EXE_autocache"))
            .arg("dev-cluster")
            .args(["--nodes", &members.to_string()])
            .args(["--base-port", &base_port.to_string()])
            .arg("--data-dir")
            .arg(&dir)
            .args(extra)
            .env("RUST_LOG", node_log_filter("warn"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start autocache dev-cluster");
        let stdout = supervisor.stdout.take().unwrap();
        // Stops dev-cluster (and so its nodes) if the cluster never gets ready.
        struct KillOnPanic(Option<Child>);
        impl Drop for KillOnPanic {
            fn drop(&mut self) {
                if let Some(child) = &mut self.0 {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let mut guard = KillOnPanic(Some(supervisor));
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("dev-cluster: {line}");
                // Keep reading after the test stopped listening: dev-cluster must not find its
                // stdout closed.
                let _ = lines_tx.send(line);
            }
        });
        let mut pids = vec![0; nodes as usize];
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("dev-cluster did not report the cluster ready in time");
            if let Some(rest) = line.strip_prefix("node ") {
                if let (Some((id, _)), Some((_, pid))) =
                    (rest.split_once(':'), rest.rsplit_once("pid "))
                {
                    let id: usize = id.parse().unwrap();
                    pids[id - 1] = pid.trim().parse().unwrap();
                }
            }
            if line.starts_with("cluster ready") {
                break;
            }
        }
        assert!(
            pids.iter().all(|&p| p != 0),
            "dev-cluster did not report every pid"
        );
        DevCluster {
            supervisor: guard.0.take().expect("still running"),
            base_port,
            nodes,
            dir,
            pids,
            restarted: (0..nodes).map(|_| None).collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The client port of node `id` (from 1).
    pub fn port(&self, id: u16) -> u16 {
        self.base_port + id - 1
    }

    /// The metrics port of node `id` (dev-cluster puts it 20000 above the client port).
    pub fn metrics_port(&self, id: u16) -> u16 {
        self.port(id) + 2 * RAFT_PORT_OFFSET
    }

    /// Every node's client port.
    pub fn ports(&self) -> Vec<u16> {
        (1..=self.nodes).map(|id| self.port(id)).collect()
    }

    /// Kills node `id` with SIGKILL and waits until it is gone.
    pub fn kill(&mut self, id: u16) {
        self.end(id, libc::SIGKILL);
    }

    /// Stops node `id` gracefully (SIGTERM) and waits until it exited.
    pub fn stop(&mut self, id: u16) {
        self.end(id, libc::SIGTERM);
    }

    fn end(&mut self, id: u16, signal: i32) {
        let pid = self.pids[id as usize - 1];
        unsafe {
            libc::kill(pid as i32, signal);
        }
        if let Some(mut child) = self.restarted[id as usize - 1].take() {
            let _ = child.wait();
            return;
        }
        // A dev-cluster child: gone once /proc no longer lists it (dev-cluster reaps it).
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(Instant::now() < deadline, "node {id} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts node `id` again from its data directory, with the flags dev-cluster gave it.
    pub fn restart(&mut self, id: u16) {
        let members: Vec<String> = (1..=self.nodes)
            .map(|n| {
                let port = self.port(n);
                format!("{n}=127.0.0.1:{port}/127.0.0.1:{}", port + RAFT_PORT_OFFSET)
            })
            .collect();
        let mut command = Command::new(env!("CARGO_BIN_EXE_autocache"));
        command
            .arg("server")
            .args(["--bind", "127.0.0.1"])
            .args(["--port", &self.port(id).to_string()])
            .arg("--data-dir")
            .arg(self.dir.join(format!("node{id}")))
            .args(["--node-id", &id.to_string()])
            .args(["--members", &members.join(",")]);
        // dev-cluster passes its --groups, --replicas and --snapshot-every on to each node.
        command.args(&self.extra);
        let log = std::fs::File::create(self.restart_log(id)).expect("create the restart log");
        let mut child = command
            .env("RUST_LOG", node_log_filter("info,openraft=error"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("restart node");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port(id))).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("node {id} exited on restart: {status}");
            }
            assert!(Instant::now() < deadline, "node {id} did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.pids[id as usize - 1] = child.id();
        self.restarted[id as usize - 1] = Some(child);
    }

    /// The last lines each node logged, to stderr: a failed test deletes the cluster's
    /// directory, and these are what tells why it failed.
    fn print_log_tails(&self) {
        const LINES: usize = 60;
        for id in 1..=self.nodes {
            for path in [
                self.dir.join(format!("node{id}")).join("autocache.log"),
                self.restart_log(id),
            ] {
                let Ok(log) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(LINES)..];
                eprintln!("--- {} (last {} lines)", path.display(), tail.len());
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// Stops the whole cluster as a user does, with Ctrl-C (SIGINT to dev-cluster); returns
    /// how long dev-cluster took to exit. The nodes' logs stay (see [`DevCluster::log`]).
    pub fn interrupt(&mut self) -> Duration {
        let started = Instant::now();
        // SAFETY: kill(2) on a child we started and have not reaped: its pid is ours.
        unsafe {
            libc::kill(self.supervisor.id() as i32, libc::SIGINT);
        }
        let status = self.supervisor.wait().expect("dev-cluster exits");
        assert!(status.success(), "dev-cluster exited with {status}");
        started.elapsed()
    }

    /// What node `id` logged (from its first start).
    pub fn log(&self, id: u16) -> String {
        std::fs::read_to_string(self.dir.join(format!("node{id}")).join("autocache.log"))
            .expect("a node log")
    }

    /// Where the log of node `id`'s last restart goes.
    pub fn restart_log(&self, id: u16) -> PathBuf {
        self.dir.join(format!("node{id}-restart.log"))
    }

    /// Runs a command on node `id`, following MOVED redirections and retrying CLUSTERDOWN and
    /// refused connections until `timeout`; returns the final reply and how long it took.
    pub fn cmd_following(&self, id: u16, args: &[&str], timeout: Duration) -> (Frame, Duration) {
        let started = Instant::now();
        let mut port = self.port(id);
        loop {
            let reply = std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .and_then(|_| RawClient::connect(port).try_cmd(args));
            match reply {
                Some(Frame::Error(text)) if text.starts_with("MOVED ") => {
                    let addr = text.rsplit(' ').next().unwrap();
                    port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
                    continue;
                }
                Some(Frame::Error(text)) if text.starts_with("CLUSTERDOWN") => {}
                Some(reply) => return (reply, started.elapsed()),
                None => {
                    // A dead node: try the next one, which redirects if need be.
                    port = self.ports()[(port - self.base_port + 1) as usize % self.nodes as usize];
                }
            }
            assert!(
                started.elapsed() < timeout,
                "{args:?} was not served within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        for child in self.restarted.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Not once reaped (`interrupt`): its pid may be another process's by now.
        if let Ok(None) = self.supervisor.try_wait() {
            // SAFETY: kill(2) on a child we started and have not reaped: its pid is ours.
            unsafe {
                libc::kill(self.supervisor.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.supervisor.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
        if std::thread::panicking() {
            self.print_log_tails();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
