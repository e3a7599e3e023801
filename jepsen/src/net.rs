//! A private network for a cluster under test: one network namespace per node, each with its
//! own address on a bridge in the host's namespace, so that faults can be injected between
//! any two nodes with iptables inside their namespaces.
//!
//! Everything is named after the harness's process id (`aj<pid>`), so concurrent runs do not
//! collide, and removed on drop; `sweep_stale` removes what runs that died left behind.

use std::fmt;
use std::net::Ipv4Addr;
use std::process::Command;

/// Setting up or changing the network failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("the harness needs root to create network namespaces and iptables rules; run it as root (e.g. sudo)")]
    NotRoot,
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("`{command}` could not start: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
}

/// A link between two nodes, as a direction: packets from `from` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Link {
    pub from: usize,
    pub to: usize,
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}->n{}", self.from, self.to)
    }
}

/// Namespaces `aj<id>n1..=nN` on bridge `aj<id>b`, nodes at 10.a.b.11.., the host at 10.a.b.1.
pub struct Net {
    prefix: String,
    subnet: [u8; 3],
    nodes: usize,
    removed: bool,
}

/// Runs a command, failing with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, NetError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(NetError::Command {
            command,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl Net {
    /// Creates the network for `nodes` nodes (1-based), owned by this process.
    pub fn create(nodes: usize) -> Result<Net, NetError> {
        if !is_root() {
            return Err(NetError::NotRoot);
        }
        // Runs killed before they could clean up leave namespaces and bridges behind.
        if let Err(error) = sweep_stale() {
            eprintln!("jepsen: could not sweep stale namespaces: {error}");
        }
        let id = std::process::id();
        let mut net = Net {
            prefix: format!("aj{id}"),
            subnet: [10, 200 + ((id >> 8) % 50) as u8, (id & 0xff) as u8],
            nodes,
            removed: false,
        };
        // A previous process with the same id may have died without cleaning up.
        net.remove();
        net.removed = false;
        net.build()?;
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{}b", self.prefix)
    }

    fn veth(&self, node: usize) -> String {
        format!("{}v{node}", self.prefix)
    }

    /// The namespace of node `node` (1-based).
    pub fn namespace(&self, node: usize) -> String {
        format!("{}n{node}", self.prefix)
    }

    /// The address of node `node`.
    pub fn ip(&self, node: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 10 + node as u8)
    }

    /// The host's address on the bridge (where the harness's clients come from).
    pub fn host_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// How many nodes the network has.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    fn build(&self) -> Result<(), NetError> {
        let bridge = self.bridge();
        let host = format!("{}/24", self.host_ip());
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        run("ip", &["addr", "add", &host, "dev", &bridge])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        // Bridged packets pass the host's FORWARD chain, whose policy may be DROP (Docker).
        run(
            "iptables",
            &[
                "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
            ],
        )?;
        let gateway = self.host_ip().to_string();
        for node in 1..=self.nodes {
            let ns = self.namespace(node);
            let veth = self.veth(node);
            let addr = format!("{}/24", self.ip(node));
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            run("ip", &["link", "set", &veth, "master", &bridge, "up"])?;
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &["-n", &ns, "route", "add", "default", "via", &gateway],
            )?;
        }
        Ok(())
    }

    /// A command that runs `program` inside node `node`'s namespace.
    pub fn command(&self, node: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace(node), program]);
        command
    }

    fn iptables(&self, node: usize, args: &[&str]) -> Result<(), NetError> {
        let ns = self.namespace(node);
        let mut all = vec!["netns", "exec", &ns, "iptables"];
        all.extend_from_slice(args);
        run("ip", &all).map(|_| ())
    }

    /// Drops every packet on these links (at the receiving node).
    pub fn cut(&self, links: &[Link]) -> Result<(), NetError> {
        for link in links {
            let source = self.ip(link.from).to_string();
            self.iptables(link.to, &["-A", "INPUT", "-s", &source, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Drops this fraction of the packets each node receives from other nodes.
    pub fn lose(&self, probability: f64) -> Result<(), NetError> {
        let probability = format!("{probability:.3}");
        let subnet = format!("{}/24", self.host_ip());
        for node in 1..=self.nodes {
            self.iptables(
                node,
                &[
                    "-A",
                    "INPUT",
                    "-s",
                    &subnet,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// The rules in force in node `node`'s INPUT chain, as iptables lists them.
    pub fn rules(&self, node: usize) -> Result<Vec<String>, NetError> {
        let ns = self.namespace(node);
        let listing = run("ip", &["netns", "exec", &ns, "iptables", "-S", "INPUT"])?;
        Ok(listing
            .lines()
            .filter(|l| l.starts_with("-A"))
            .map(str::to_string)
            .collect())
    }

    /// Removes every fault: all nodes' INPUT rules.
    pub fn heal(&self) -> Result<(), NetError> {
        for node in 1..=self.nodes {
            self.iptables(node, &["-F", "INPUT"])?;
        }
        Ok(())
    }

    /// Removes the namespaces, the bridge and the FORWARD rule; safe to call twice.
    pub fn remove(&mut self) {
        if self.removed {
            return;
        }
        self.removed = true;
        for node in 1..=self.nodes.max(16) {
            // Deleting a namespace deletes its end of the veth pair, and so the pair.
            let _ = run("ip", &["netns", "del", &self.namespace(node)]);
        }
        let bridge = self.bridge();
        let _ = run("ip", &["link", "del", &bridge]);
        while run(
            "iptables",
            &[
                "-D", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
            ],
        )
        .is_ok()
        {}
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Removes the namespaces and bridges of harness runs whose process is gone.
pub fn sweep_stale() -> Result<usize, NetError> {
    let mut swept = 0;
    let listing = run("ip", &["-o", "link", "show", "type", "bridge"])?;
    for line in listing.lines() {
        // "12: aj1234b: <...>"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let Some(id) = name
            .strip_prefix("aj")
            .and_then(|rest| rest.strip_suffix('b'))
            .and_then(|id| id.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{id}")).exists() {
            continue;
        }
        let mut net = Net {
            prefix: format!("aj{id}"),
            subnet: [0; 3],
            nodes: 0,
            removed: false,
        };
        net.remove();
        swept += 1;
    }
    Ok(swept)
}
