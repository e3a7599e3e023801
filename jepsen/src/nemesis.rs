//! Faults injected into the cluster under test, each confirmed installed and later healed.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use crate::cluster::Cluster;
use crate::net::Link;
use crate::partition;
use crate::reconfigure::{Change, ChangeKind};
use crate::strobe::Strobe;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// A random minority of the nodes cut off from the rest.
    Partition,
    /// The leader of a random slot group cut off from every other node.
    PartitionLeader,
    /// Jepsen's majorities ring: every node hears a majority, no two the same one.
    PartitionRing,
    /// Two sides that cannot reach each other and one node that reaches both.
    PartitionBridge,
    /// One node killed with SIGKILL, restarted from its disk when healed.
    Kill,
    /// A minority of the nodes killed at once.
    KillMinority,
    /// The leader of a random slot group killed.
    KillLeader,
    /// Every node killed at once: only what reached a disk survives.
    KillAll,
    /// One node paused with SIGSTOP, resumed with SIGCONT when healed.
    Pause,
    /// The leader of a random slot group paused.
    PauseLeader,
    /// One node's wall clock skewed by up to a minute either way (libfaketime).
    Clock,
    /// One node's wall clock jumping between a skew and the true time about once a second.
    ClockStrobe,
    /// Every node drops 20% of the packets other nodes send it (iptables statistic match).
    Loss,
    /// A random group's replica on a random voter moved to a node outside the group
    /// (`autocache admin move-replica`: add, promote, demote, remove), cut off when the window
    /// ends if it has not finished.
    MoveReplica,
    /// A random group's leader's replica moved away (leadership transferred first).
    MoveLeader,
    /// A random group's leadership handed to another voter.
    TransferLeader,
    /// Up to 64 slots of one group moved to another (`autocache admin move-slots`), with their
    /// keys; a move an earlier window cut off is finished first.
    MoveSlots,
    /// A node removed (`autocache admin remove-node`: its replicas, leaderships and metadata
    /// replica moved off, its id retired), then, once the window's faults are healed, its
    /// machine wiped and started again as a new node (a new id, `--join`) and added to the
    /// cluster (`admin add-node`), as an operator replaces a machine.
    ReplaceNode,
}

impl FaultKind {
    /// Every kind, as `--nemesis all` asks for.
    pub const ALL: [FaultKind; 18] = [
        FaultKind::Partition,
        FaultKind::PartitionLeader,
        FaultKind::PartitionRing,
        FaultKind::PartitionBridge,
        FaultKind::Kill,
        FaultKind::KillMinority,
        FaultKind::KillLeader,
        FaultKind::KillAll,
        FaultKind::Pause,
        FaultKind::PauseLeader,
        FaultKind::Clock,
        FaultKind::ClockStrobe,
        FaultKind::Loss,
        FaultKind::MoveReplica,
        FaultKind::MoveLeader,
        FaultKind::TransferLeader,
        FaultKind::MoveSlots,
        FaultKind::ReplaceNode,
    ];

    fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::PartitionLeader => "partition-leader",
            FaultKind::PartitionRing => "partition-ring",
            FaultKind::PartitionBridge => "partition-bridge",
            FaultKind::Kill => "kill",
            FaultKind::KillMinority => "kill-minority",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::KillAll => "kill-all",
            FaultKind::Pause => "pause",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::Clock => "clock",
            FaultKind::ClockStrobe => "clock-strobe",
            FaultKind::Loss => "loss",
            FaultKind::MoveReplica => "move-replica",
            FaultKind::MoveLeader => "move-leader",
            FaultKind::TransferLeader => "transfer-leader",
            FaultKind::MoveSlots => "move-slots",
            FaultKind::ReplaceNode => "replace-node",
        }
    }

    /// Parses a comma-separated list: kinds, `all`, or `none`.
    pub fn parse_list(list: &str) -> Result<Vec<FaultKind>, String> {
        let mut kinds = Vec::new();
        for name in list.split(',').map(str::trim) {
            match name {
                "" | "none" => {}
                "all" => kinds.extend(FaultKind::ALL),
                "membership" => kinds.extend(
                    FaultKind::ALL
                        .into_iter()
                        .filter(|kind| kind.family() == Family::Membership),
                ),
                name => kinds.push(name.parse()?),
            }
        }
        kinds.sort_unstable();
        kinds.dedup();
        Ok(kinds)
    }

    /// Whether the nodes must run under libfaketime for this fault.
    pub fn needs_faketime(self) -> bool {
        self.family() == Family::Clock
    }

    fn family(self) -> Family {
        match self {
            FaultKind::Partition
            | FaultKind::PartitionLeader
            | FaultKind::PartitionRing
            | FaultKind::PartitionBridge
            | FaultKind::Loss => Family::Network,
            FaultKind::Kill
            | FaultKind::KillMinority
            | FaultKind::KillLeader
            | FaultKind::KillAll
            | FaultKind::Pause
            | FaultKind::PauseLeader => Family::Process,
            FaultKind::Clock | FaultKind::ClockStrobe => Family::Clock,
            FaultKind::MoveReplica
            | FaultKind::MoveLeader
            | FaultKind::TransferLeader
            | FaultKind::MoveSlots
            | FaultKind::ReplaceNode => Family::Membership,
        }
    }
}

/// Faults of one family share the means they are made with (the iptables chain, the
/// processes, the clock files), so two faults in force at once are of different families.
/// The order is the order of installing (and, reversed, of healing): a clock is skewed on a
/// running node, and a killed node is restarted before its clock is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Clock,
    Network,
    Process,
    /// Last: a change is started once the window's other faults are in force.
    Membership,
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown nemesis {s:?} ({}, membership, all, none)",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The faults of the next nemesis window, in the order to install them: one kind at random,
/// and with several families to choose from, sometimes a second of another family at once
/// (the combined schedule).
pub fn choose(kinds: &[FaultKind], rng: &mut SmallRng) -> Vec<FaultKind> {
    let Some(&first) = kinds.choose(rng) else {
        return Vec::new();
    };
    let mut chosen = vec![first];
    let others: Vec<FaultKind> = kinds
        .iter()
        .copied()
        .filter(|k| k.family() != first.family())
        .collect();
    if !others.is_empty() && rng.random_bool(0.3) {
        chosen.push(*others.choose(rng).expect("not empty"));
    }
    chosen.sort_by_key(|k| k.family());
    chosen
}

/// A fault in force.
#[derive(Debug)]
pub struct Fault {
    pub kind: FaultKind,
    /// The clock skew, in seconds.
    pub offset: i64,
    /// The nodes it affects (the minority side, the isolated or bridging node, the ring's
    /// order, the killed or paused nodes, the skewed clock's node).
    pub nodes: Vec<usize>,
    links: Vec<Link>,
    strobe: Option<Strobe>,
    /// The membership change under way, and once healed, what it did.
    change: Option<Change>,
    pub outcome: Option<String>,
}

impl Fault {
    fn on(kind: FaultKind, nodes: Vec<usize>) -> Fault {
        Fault {
            kind,
            offset: 0,
            nodes,
            links: Vec::new(),
            strobe: None,
            change: None,
            outcome: None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self.nodes.iter().map(|n| format!("n{n}")).collect();
        write!(f, "{}", self.kind)?;
        if !nodes.is_empty() {
            write!(f, " {}", nodes.join(","))?;
        }
        if self.offset != 0 {
            write!(f, " {:+}s", self.offset)?;
        }
        if let Some(outcome) = &self.outcome {
            write!(f, ": {outcome}")?;
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
            let (side, links) = partition::random_halves(n, rng);
            cut(cluster, kind, side, links)
        }
        FaultKind::PartitionLeader => {
            let leader = find_leader(cluster, rng)?;
            cut(cluster, kind, vec![leader], partition::isolate(n, leader))
        }
        FaultKind::PartitionRing => {
            let (ring, links) = partition::majorities_ring(n, rng);
            cut(cluster, kind, ring, links)
        }
        FaultKind::PartitionBridge => {
            let (bridge, links) = partition::bridge(n, rng);
            cut(cluster, kind, vec![bridge], links)
        }
        FaultKind::Kill | FaultKind::KillMinority | FaultKind::KillLeader | FaultKind::KillAll => {
            let mut targets = match kind {
                FaultKind::Kill => nodes[..1].to_vec(),
                FaultKind::KillMinority => nodes[..(n - 1) / 2].to_vec(),
                FaultKind::KillLeader => vec![find_leader(cluster, rng)?],
                _ => nodes,
            };
            targets.sort_unstable();
            for &node in &targets {
                if !cluster.kill(node) || cluster.is_running(node) {
                    return Err(format!("could not kill n{node}"));
                }
            }
            Ok(Fault::on(kind, targets))
        }
        FaultKind::Pause | FaultKind::PauseLeader => {
            let node = match kind {
                FaultKind::Pause => nodes[0],
                _ => find_leader(cluster, rng)?,
            };
            if !cluster.pause(node) {
                return Err(format!("could not pause n{node}"));
            }
            Ok(Fault::on(kind, vec![node]))
        }
        FaultKind::Clock | FaultKind::ClockStrobe => {
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
            let mut fault = Fault::on(kind, vec![node]);
            fault.offset = offset;
            if kind == FaultKind::ClockStrobe {
                fault.strobe = Some(Strobe::start(cluster.clock_file(node), offset));
            }
            Ok(fault)
        }
        FaultKind::MoveReplica
        | FaultKind::MoveLeader
        | FaultKind::TransferLeader
        | FaultKind::MoveSlots => {
            let change = match kind {
                FaultKind::MoveReplica => ChangeKind::MoveReplica,
                FaultKind::MoveLeader => ChangeKind::MoveLeader,
                FaultKind::MoveSlots => ChangeKind::MoveSlots,
                _ => ChangeKind::TransferLeader,
            };
            let mut admin: Vec<_> = (1..=n).map(|node| cluster.raft_addr(node)).collect();
            admin.shuffle(rng);
            let ids = cluster
                .node_ids()
                .into_iter()
                .map(|id| id as usize)
                .collect();
            let mut fault = Fault::on(kind, Vec::new());
            fault.change = Some(Change::start(
                cluster.binary().to_path_buf(),
                admin,
                ids,
                change,
                rng.random(),
            ));
            Ok(fault)
        }
        FaultKind::ReplaceNode => {
            // Removed through another node: the leaving one may be asked to stop serving.
            let (leaving, through) = (nodes[0], nodes[1 % n]);
            let args = vec![
                "remove-node".to_string(),
                cluster.node_id(leaving).to_string(),
            ];
            let mut fault = Fault::on(kind, vec![leaving]);
            fault.change = Some(Change::run(
                cluster.binary().to_path_buf(),
                cluster.raft_addr(through),
                args,
            ));
            Ok(fault)
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
            Ok(Fault::on(kind, (1..=n).collect()))
        }
    }
}

/// Cuts `links` and confirms every cut is in force.
fn cut(
    cluster: &Cluster,
    kind: FaultKind,
    nodes: Vec<usize>,
    links: Vec<Link>,
) -> Result<Fault, String> {
    cluster.net().cut(&links).map_err(|e| e.to_string())?;
    for link in &links {
        let rules = cluster.net().rules(link.to).map_err(|e| e.to_string())?;
        let source = cluster.net().ip(link.from).to_string();
        if !rules.iter().any(|r| r.contains(&source)) {
            return Err(format!("the cut of {link} is not in force"));
        }
    }
    let mut fault = Fault::on(kind, nodes);
    fault.links = links;
    Ok(fault)
}

/// The leader of a random slot group, as the cluster reports it (within 10 s: the previous
/// fault may have left a group electing).
fn find_leader(cluster: &mut Cluster, rng: &mut SmallRng) -> Result<usize, String> {
    let slot = rng.random_range(0..16384u16);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Some(leader) = cluster.leader_of_slot(slot) {
            return Ok(leader);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!("no node named a leader for slot {slot}"))
}

/// Waits until node `node`'s TIME shows `offset` (libfaketime re-reads its file every second).
fn confirm_clock(cluster: &Cluster, node: usize, offset: i64) -> Result<(), String> {
    let started = Instant::now();
    let mut seen = None;
    while started.elapsed() < Duration::from_secs(5) {
        seen = cluster.clock_offset(node);
        if seen.is_some_and(|s| (s - offset).abs() <= 1) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(format!(
        "n{node}'s clock is off by {seen:?} s, not {offset} s"
    ))
}

/// Finishes the slot moves windows cut off (run once the window's other faults are healed, so
/// every group can elect a leader and take the move's steps).
pub fn finish_slot_moves(cluster: &Cluster) -> String {
    let admin: Vec<_> = (1..=cluster.nodes())
        .map(|node| cluster.raft_addr(node))
        .collect();
    crate::reconfigure::resume_slot_moves(&cluster.binary().to_path_buf(), &admin)
}

/// Finishes replacing the node on machine `node` once the window's faults are healed: the
/// `remove-node` the window may have cut off is run again (it does what is left, and retires
/// the id), then the machine is wiped and started as a new node, which `add-node` fills.
pub fn finish_replacement(cluster: &mut Cluster, node: usize) -> String {
    let binary = cluster.binary().to_path_buf();
    let never = std::sync::atomic::AtomicBool::new(false);
    let through = cluster.raft_addr(node % cluster.nodes() + 1);
    let old = cluster.node_id(node);
    let admin = |args: Vec<String>| {
        let started = Instant::now();
        crate::reconfigure::admin_command(&binary, through, &args, &never)
            .map(|_| {
                format!(
                    "{} in {:.1}s",
                    args.join(" "),
                    started.elapsed().as_secs_f64()
                )
            })
            .map_err(|error| format!("{}: {error}", args.join(" ")))
    };
    let removed = match admin(vec!["remove-node".into(), old.to_string()]) {
        Ok(done) => done,
        Err(error) => return format!("n{node} not replaced: {error}"),
    };
    let new = match cluster.replace_node(node) {
        Ok(id) => id,
        Err(error) => return format!("{removed}; n{node} not restarted: {error}"),
    };
    let ip = cluster.client_addr(node).ip().to_string();
    let added = admin(vec![
        "add-node".into(),
        new.to_string(),
        "--client".into(),
        cluster.client_addr(node).to_string(),
        "--raft".into(),
        format!("{ip}:{}", crate::cluster::RAFT_PORT),
    ]);
    match added {
        Ok(done) => format!("{removed}; n{node} now node {new}: {done}"),
        Err(error) => format!("{removed}; n{node} now node {new}, not added: {error}"),
    }
}

/// Ends a fault and confirms it is gone.
pub fn heal(cluster: &mut Cluster, fault: &mut Fault) -> Result<(), String> {
    match fault.kind.family() {
        Family::Network => {
            cluster.net().heal().map_err(|e| e.to_string())?;
            for node in 1..=cluster.nodes() {
                if !cluster
                    .net()
                    .rules(node)
                    .map_err(|e| e.to_string())?
                    .is_empty()
                {
                    return Err(format!("{} is still in force on n{node}", fault.kind));
                }
            }
        }
        Family::Process => {
            for &node in &fault.nodes {
                let healed = if cluster.is_running(node) {
                    cluster.resume(node)
                } else {
                    cluster.start_node(node).map_err(|e| e.to_string())?;
                    cluster.is_running(node)
                };
                if !healed {
                    return Err(format!("n{node} did not come back after {}", fault.kind));
                }
            }
        }
        Family::Membership => {
            if let Some(mut change) = fault.change.take() {
                fault.outcome = Some(change.finish());
            }
        }
        Family::Clock => {
            if let Some(mut strobe) = fault.strobe.take() {
                strobe.stop();
            }
            for &node in &fault.nodes {
                cluster
                    .set_clock_offset(node, 0)
                    .map_err(|e| e.to_string())?;
                confirm_clock(cluster, node, 0)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn all_names_every_kind_and_each_name_parses_back() {
        assert_eq!(
            FaultKind::parse_list("all").unwrap(),
            FaultKind::ALL.to_vec()
        );
        for kind in FaultKind::ALL {
            assert_eq!(kind.to_string().parse::<FaultKind>(), Ok(kind));
        }
        assert_eq!(
            FaultKind::parse_list("kill, partition,none,kill").unwrap(),
            vec![FaultKind::Partition, FaultKind::Kill]
        );
        assert!(FaultKind::parse_list("partition,flood")
            .unwrap_err()
            .contains("unknown nemesis \"flood\""));
    }

    #[test]
    fn a_window_never_combines_two_faults_of_one_family() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut combined = 0;
        for _ in 0..500 {
            let window = choose(&FaultKind::ALL, &mut rng);
            assert!(!window.is_empty() && window.len() <= 2);
            if let [a, b] = window[..] {
                combined += 1;
                assert!(a.family() < b.family(), "{window:?}");
            }
        }
        assert!(combined > 50, "the combined schedule never combines");
        assert_eq!(
            choose(&[FaultKind::Kill], &mut rng),
            vec![FaultKind::Kill],
            "one kind alone is never combined"
        );
    }
}
