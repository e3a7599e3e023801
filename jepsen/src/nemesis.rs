//! Faults injected into the cluster under test, each confirmed installed and later healed.

use std::fmt;
use std::str::FromStr;

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::Cluster;
use crate::net::Link;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The nodes split into two random halves that cannot reach each other.
    Partition,
    /// One node killed with SIGKILL, restarted from its disk when healed.
    Kill,
    /// One node paused with SIGSTOP, resumed with SIGCONT when healed.
    Pause,
    /// One node's wall clock skewed by up to a minute either way (libfaketime).
    Clock,
    /// Every node drops 20% of the packets other nodes send it (iptables statistic match).
    Loss,
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "partition" => Ok(FaultKind::Partition),
            "kill" => Ok(FaultKind::Kill),
            "pause" => Ok(FaultKind::Pause),
            "clock" => Ok(FaultKind::Clock),
            "loss" => Ok(FaultKind::Loss),
            other => Err(format!(
                "unknown nemesis {other:?} (partition, kill, pause, clock, loss, none)"
            )),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Partition => "partition",
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Clock => "clock",
            FaultKind::Loss => "loss",
        })
    }
}

/// A fault in force.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    /// The clock skew, in seconds.
    pub offset: i64,
    /// The nodes it affects (one side of a partition, the killed or paused node).
    pub nodes: Vec<usize>,
    links: Vec<Link>,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("n{n}")).collect();
        write!(f, "{} {}", self.kind, nodes.join(","))?;
        if self.kind == FaultKind::Clock {
            write!(f, " {:+}s", self.offset)?;
        }
        Ok(())
    }
}

/// Installs a fault of `kind` and confirms it is in force.
pub fn install(
    cluster: &mut Cluster,
    kind: FaultKind,
    rng: &mut SmallRng,
) -> Result<Fault, String> {
    let n = cluster.nodes();
    let mut nodes: Vec<usize> = (1..=n).collect();
    nodes.shuffle(rng);
    match kind {
        FaultKind::Partition => {
            // A minority side, so that a quorum survives.
            let minority = rng.random_range(1..=(n - 1) / 2);
            let (side, rest) = nodes.split_at(minority);
            let links: Vec<Link> = side
                .iter()
                .flat_map(|&a| {
                    rest.iter()
                        .flat_map(move |&b| [Link { from: a, to: b }, Link { from: b, to: a }])
                })
                .collect();
            cluster.net().cut(&links).map_err(|e| e.to_string())?;
            for link in &links {
                let rules = cluster.net().rules(link.to).map_err(|e| e.to_string())?;
                let source = cluster.net().ip(link.from).to_string();
                if !rules.iter().any(|r| r.contains(&source)) {
                    return Err(format!("the cut of {link} is not in force"));
                }
            }
            let mut side = side.to_vec();
            side.sort_unstable();
            Ok(Fault {
                kind,
                offset: 0,
                nodes: side,
                links,
            })
        }
        FaultKind::Kill | FaultKind::Pause => {
            let node = nodes[0];
            let done = if kind == FaultKind::Kill {
                cluster.kill(node) && !cluster.is_running(node)
            } else {
                cluster.pause(node)
            };
            if !done {
                return Err(format!("could not {kind} n{node}"));
            }
            Ok(Fault {
                kind,
                offset: 0,
                nodes: vec![node],
                links: Vec::new(),
            })
        }
        FaultKind::Clock => {
            let node = nodes[0];
            let magnitude = rng.random_range(1..=60);
            let offset = if rng.random_bool(0.5) {
                magnitude
            } else {
                -magnitude
            };
            cluster
                .set_clock_offset(node, offset)
                .map_err(|e| e.to_string())?;
            confirm_clock(cluster, node, offset)?;
            Ok(Fault {
                kind,
                offset,
                nodes: vec![node],
                links: Vec::new(),
            })
        }
        FaultKind::Loss => {
            cluster.net().lose(0.2).map_err(|e| e.to_string())?;
            for node in 1..=n {
                if cluster
                    .net()
                    .rules(node)
                    .map_err(|e| e.to_string())?
                    .is_empty()
                {
                    return Err(format!("packet loss is not in force on n{node}"));
                }
            }
            Ok(Fault {
                kind,
                offset: 0,
                nodes: (1..=n).collect(),
                links: Vec::new(),
            })
        }
    }
}

/// Waits until node `node`'s TIME shows `offset` (libfaketime re-reads its file every second).
fn confirm_clock(cluster: &Cluster, node: usize, offset: i64) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut seen = None;
    while started.elapsed() < std::time::Duration::from_secs(5) {
        seen = cluster.clock_offset(node);
        if seen.is_some_and(|s| (s - offset).abs() <= 1) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    Err(format!(
        "n{node}'s clock is off by {seen:?} s, not {offset} s"
    ))
}

/// Ends a fault and confirms it is gone.
pub fn heal(cluster: &mut Cluster, fault: &Fault) -> Result<(), String> {
    match fault.kind {
        FaultKind::Partition => {
            cluster.net().heal().map_err(|e| e.to_string())?;
            for link in &fault.links {
                if !cluster
                    .net()
                    .rules(link.to)
                    .map_err(|e| e.to_string())?
                    .is_empty()
                {
                    return Err(format!("the cut of {link} is still in force"));
                }
            }
        }
        FaultKind::Kill => {
            for &node in &fault.nodes {
                cluster.start_node(node).map_err(|e| e.to_string())?;
                if !cluster.is_running(node) {
                    return Err(format!("n{node} did not restart"));
                }
            }
        }
        FaultKind::Pause => {
            for &node in &fault.nodes {
                if !cluster.resume(node) {
                    return Err(format!("could not resume n{node}"));
                }
            }
        }
        FaultKind::Clock => {
            for &node in &fault.nodes {
                cluster
                    .set_clock_offset(node, 0)
                    .map_err(|e| e.to_string())?;
                confirm_clock(cluster, node, 0)?;
            }
        }
        FaultKind::Loss => {
            cluster.net().heal().map_err(|e| e.to_string())?;
            for node in 1..=cluster.nodes() {
                if !cluster
                    .net()
                    .rules(node)
                    .map_err(|e| e.to_string())?
                    .is_empty()
                {
                    return Err(format!("packet loss is still in force on n{node}"));
                }
            }
        }
    }
    Ok(())
}
