//! `autocache admin`: the cluster's status, and changes that move replicas and leadership,
//! driven through the nodes' raft ports (the admin API, `raft::replicas::ReplicaCall`).
//!
//! Every change re-reads the cluster before each move, so a command that was interrupted (or
//! whose coordinator died) completes when it is run again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use raft::coordinator::{ChangeError, Coordinator};
use raft::placement_record::RecordedReplicas;
use raft::replica_call::CallError;
use raft::{GroupId, GroupReplicas, NodeAddr, NodeId, ReplicaError};

use crate::admin_plan::{self, GroupView, Step};

#[derive(clap::Parser)]
pub struct AdminArgs {
    /// Raft address (host:port) of any node of the cluster (dev-cluster: client port + 10000).
    #[arg(long, default_value = "127.0.0.1:17000", value_name = "ADDR")]
    node: String,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand)]
enum AdminCommand {
    /// Every group's leader, voters and learners, and each node's share.
    Status,
    /// Moves GROUP's replica on node FROM to node TO.
    MoveReplica {
        group: GroupId,
        from: NodeId,
        to: NodeId,
    },
    /// Hands GROUP's leadership to its voter TO.
    TransferLeader { group: GroupId, to: NodeId },
    /// Moves replicas onto a node started with `--join`, until replicas and leaders are even.
    AddNode {
        id: NodeId,
        /// Its client address (host:port).
        #[arg(long)]
        client: String,
        /// Its raft address (host:port).
        #[arg(long)]
        raft: String,
    },
    /// Moves every replica (and leadership) off a node, then evens out the rest.
    RemoveNode { id: NodeId },
    /// Moves slots FIRST[-LAST] to group GROUP, with their keys, from the groups that own
    /// them. Clients are redirected (MOVED), or asked to retry (TRYAGAIN) for the moment a
    /// slot is between groups.
    MoveSlots {
        /// A slot, or an inclusive range FIRST-LAST.
        #[arg(value_parser = parse_slots)]
        slots: (u16, u16),
        group: GroupId,
    },
    /// Evens out replicas, then leaders, across the nodes that replicate anything, weighted by
    /// each group's load (writes per second and memory, measured over `--sample`).
    Rebalance {
        /// How many groups may change at once.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        budget: u16,
        /// Seconds over which each group's write rate is measured.
        #[arg(long, default_value_t = 3.0)]
        sample: f64,
    },
}

/// How long `status` waits for the node registry (or the groups' slots) before showing what
/// it saw instead.
const REGISTRY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn progress(step: &str) {
    println!("{step}");
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let mut coordinator = Coordinator::new(vec![args.node.clone()], progress as fn(&str));
    let started = Instant::now();
    match args.command {
        AdminCommand::Status => {
            let groups = survey(&mut coordinator).await?;
            print_status(&groups, &mut coordinator).await;
            return Ok(());
        }
        AdminCommand::MoveReplica { group, from, to } => {
            survey(&mut coordinator).await?;
            coordinator.move_replica(group, from, to).await?;
        }
        AdminCommand::TransferLeader { group, to } => {
            survey(&mut coordinator).await?;
            coordinator.transfer_leadership(group, to).await?;
        }
        AdminCommand::AddNode { id, client, raft } => {
            for addr in [&client, &raft] {
                addr.parse::<std::net::SocketAddr>()
                    .with_context(|| format!("{addr:?} is not an ip:port"))?;
            }
            let addr = NodeAddr { client, raft };
            coordinator.register_node(id, addr.clone()).await?;
            coordinator.learn(id, addr);
            let mut nodes = replicating_nodes(&survey(&mut coordinator).await?);
            nodes.insert(id);
            even_out(&mut coordinator, &nodes).await?;
            place_metadata(&mut coordinator, &nodes, None).await?;
        }
        AdminCommand::RemoveNode { id } => {
            let groups = survey(&mut coordinator).await?;
            let mut nodes = replicating_nodes(&groups);
            nodes.remove(&id);
            if nodes.is_empty() {
                bail!("node {id} is the only node: nothing could take its replicas");
            }
            if let Some(g) = groups
                .iter()
                .find(|g| g.voters.contains(&id) && g.voters.len() > nodes.len())
            {
                bail!(
                    "node {id} cannot leave: group {} has {} replicas and only {} other nodes \
                     would hold them (add a node first)",
                    g.group,
                    g.voters.len(),
                    nodes.len()
                );
            }
            let mut guard = StepGuard::new(groups.len());
            loop {
                let groups = views(&survey(&mut coordinator).await?);
                let Some(step) = admin_plan::drain(&groups, &nodes, id) else {
                    break;
                };
                guard.check(Step::Move(step), &groups)?;
                apply(&mut coordinator, step).await?;
            }
            // A change cut off midway may have left it a learner (demoted, not dropped; or
            // added, not promoted): it leaves those groups too.
            for group in survey(&mut coordinator).await? {
                if group.learners.contains(&id) {
                    println!("drop node {id}, a learner of group {}", group.group);
                    coordinator.remove_replica(group.group, id, None).await?;
                }
            }
            even_out(&mut coordinator, &nodes).await?;
            place_metadata(&mut coordinator, &nodes, Some(id)).await?;
            // It holds nothing now: its id is retired, never to be used again.
            coordinator.retire_node(id).await?;
        }
        AdminCommand::MoveSlots {
            slots: (first, last),
            group,
        } => {
            let slots: Vec<u16> = (first..=last).collect();
            let moved = coordinator.move_slots(&slots, group).await?;
            println!(
                "{} slots ({} keys) moved to group {group}; {} were there already",
                moved.slots,
                moved.keys,
                slots.len() - moved.slots
            );
        }
        AdminCommand::Rebalance { budget, sample } => {
            if !(sample.is_finite() && (0.1..=600.0).contains(&sample)) {
                bail!("--sample must be between 0.1 and 600 seconds");
            }
            let nodes = replicating_nodes(&survey(&mut coordinator).await?);
            let weights =
                measure_weights(&mut coordinator, Duration::from_secs_f64(sample)).await?;
            rebalance(&mut coordinator, &nodes, &weights, budget.into()).await?;
        }
    }
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    let groups = survey(&mut coordinator).await?;
    print_status(&groups, &mut coordinator).await;
    Ok(())
}

/// Carries out one planned replica move, saying what it does.
async fn apply(
    coordinator: &mut Coordinator<fn(&str)>,
    step: admin_plan::ReplicaMove,
) -> anyhow::Result<()> {
    println!(
        "move group {}'s replica from node {} to node {}",
        step.group, step.from, step.to
    );
    Ok(coordinator
        .move_replica(step.group, step.from, step.to)
        .await?)
}

/// Moves replicas, then leaderships, until each of `nodes` holds an even share.
async fn even_out(
    coordinator: &mut Coordinator<fn(&str)>,
    nodes: &BTreeSet<NodeId>,
) -> anyhow::Result<()> {
    let mut guard = None;
    loop {
        let groups = views(&survey(coordinator).await?);
        let guard = guard.get_or_insert_with(|| StepGuard::new(groups.len()));
        if let Some(step) = admin_plan::spread(&groups, nodes) {
            guard.check(Step::Move(step), &groups)?;
            apply(coordinator, step).await?;
        } else if let Some((group, to)) = admin_plan::lead(&groups, nodes) {
            guard.check(Step::Lead { group, to }, &groups)?;
            coordinator.transfer_leadership(group, to).await?;
        } else {
            return Ok(());
        }
    }
}

/// Keeps a planning loop from going round forever. Every step the planner picks should
/// change what the next survey shows, and a plan needs at most a few steps per group; a step
/// picked again right after it was done, [`StepGuard::REPEATS`] times, or more steps than
/// the groups could need, means the changes report done what the cluster does not show (or
/// something else keeps undoing them), and the command stops to say so.
struct StepGuard {
    last: Option<Step>,
    repeats: usize,
    steps: usize,
    limit: usize,
}

impl StepGuard {
    const REPEATS: usize = 3;

    fn new(groups: usize) -> StepGuard {
        StepGuard {
            last: None,
            repeats: 0,
            steps: 0,
            // A replica move per replica and a transfer per group, four times over.
            limit: 4 * (groups + 1) * 6,
        }
    }

    fn check(&mut self, step: Step, groups: &[GroupView]) -> anyhow::Result<()> {
        self.steps += 1;
        if self.last == Some(step) {
            self.repeats += 1;
        } else {
            (self.last, self.repeats) = (Some(step), 1);
        }
        if self.repeats >= Self::REPEATS || self.steps > self.limit {
            let layout: Vec<String> = groups
                .iter()
                .map(|g| {
                    let leader = g.leader.map_or("-".into(), |l| l.to_string());
                    format!(
                        "  group {}: leader {leader}, voters {}",
                        g.group,
                        ids(&g.voters)
                    )
                })
                .collect();
            bail!(
                "the plan does not converge: {step:?} is step {} (picked {} times in a row); \
                 the groups as surveyed:\n{}",
                self.steps,
                self.repeats,
                layout.join("\n")
            );
        }
        Ok(())
    }
}

/// Keeps the metadata group on 3 of `nodes` (5 from five nodes on; all of them when fewer):
/// moves its replica off `leaving` to a node that has none (or drops it when every other node
/// has one), and adds replicas while it has fewer than that. A cluster that loses the
/// metadata group's quorum can no longer register, retire or move slots, so it must not
/// shrink with the nodes that happened to be its first replicas.
async fn place_metadata(
    coordinator: &mut Coordinator<fn(&str)>,
    nodes: &BTreeSet<NodeId>,
    leaving: Option<NodeId>,
) -> anyhow::Result<()> {
    let meta = survey(coordinator).await?.len() as GroupId;
    let replicas = match coordinator.replicas(meta).await {
        Ok(replicas) if replicas.metadata => replicas,
        // A node alone: no metadata group.
        Ok(_)
        | Err(ChangeError::Step {
            error: CallError::Refused(ReplicaError::NoSuchGroup(_)),
            ..
        }) => return Ok(()),
        Err(error) => return Err(error).context("read the metadata group's replicas"),
    };
    let spare = |voters: &BTreeSet<NodeId>| nodes.iter().copied().find(|n| !voters.contains(n));
    let mut voters = replicas.voters.clone();
    if let Some(leaving) = leaving.filter(|node| replicas.learners.contains(node)) {
        println!("drop node {leaving}, a learner of the metadata group");
        coordinator.remove_replica(meta, leaving, None).await?;
    }
    if let Some(leaving) = leaving.filter(|node| voters.contains(node)) {
        match spare(&voters) {
            Some(to) => {
                println!("move the metadata group's replica from node {leaving} to node {to}");
                coordinator.move_replica(meta, leaving, to).await?;
                voters.insert(to);
            }
            None => {
                println!("drop the metadata group's replica on node {leaving}");
                coordinator.remove_replica(meta, leaving, None).await?;
            }
        }
        voters.remove(&leaving);
    }
    let wanted = if nodes.len() >= 5 {
        5
    } else {
        3.min(nodes.len())
    };
    while voters.len() < wanted {
        let Some(to) = spare(&voters) else { break };
        let addr = coordinator
            .known()
            .get(&to)
            .cloned()
            .with_context(|| format!("node {to}'s address is not known"))?;
        println!("add a replica of the metadata group on node {to}");
        coordinator.add_replica(meta, to, addr).await?;
        voters.insert(to);
    }
    Ok(())
}

/// A slot or an inclusive slot range, as `move-slots` takes it.
fn parse_slots(text: &str) -> Result<(u16, u16), String> {
    let slot = |s: &str| -> Result<u16, String> {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|&slot| (slot as usize) < tiering::SLOT_COUNT)
            .ok_or_else(|| format!("{s:?} is not a slot (0-16383)"))
    };
    let (first, last) = match text.split_once('-') {
        Some((first, last)) => (slot(first)?, slot(last)?),
        None => (slot(text)?, slot(text)?),
    };
    if first > last {
        return Err(format!("{text}: the range is empty"));
    }
    Ok((first, last))
}

/// Each group's weight from its load (see [`admin_plan::weigh`]): its write rate (entries its
/// log applied per second over `sample`) and the memory its keys use, each against the average
/// group.
async fn measure_weights(
    coordinator: &mut Coordinator<fn(&str)>,
    sample: Duration,
) -> anyhow::Result<BTreeMap<GroupId, f64>> {
    let before = survey(coordinator).await?;
    let started = Instant::now();
    tokio::time::sleep(sample).await;
    let after = survey(coordinator).await?;
    let seconds = started.elapsed().as_secs_f64();
    let loads: Vec<(GroupId, f64, u64)> = after
        .iter()
        .map(|g| {
            let was = before
                .iter()
                .find(|b| b.group == g.group)
                .map_or(g.last_applied, |b| b.last_applied);
            let writes = g.last_applied.saturating_sub(was) as f64 / seconds;
            (g.group, writes, g.bytes)
        })
        .collect();
    let count = loads.len().max(1) as f64;
    let mean_writes = loads.iter().map(|l| l.1).sum::<f64>() / count;
    let mean_bytes = loads.iter().map(|l| l.2 as f64).sum::<f64>() / count;
    println!(
        "{:>5}  {:>9}  {:>11}  {:>6}",
        "GROUP", "WRITES/S", "BYTES", "WEIGHT"
    );
    let mut weights = BTreeMap::new();
    for (group, writes, bytes) in loads {
        let weight = admin_plan::weigh(writes, bytes as f64, mean_writes, mean_bytes);
        println!("{group:>5}  {writes:>9.0}  {bytes:>11}  {weight:>6.2}");
        weights.insert(group, weight);
    }
    Ok(weights)
}

/// Moves replicas, then leaderships, by batches of up to `budget` concurrent changes, until
/// the nodes' loads (by `weights`) are even.
async fn rebalance(
    coordinator: &mut Coordinator<fn(&str)>,
    nodes: &BTreeSet<NodeId>,
    weights: &BTreeMap<GroupId, f64>,
    budget: usize,
) -> anyhow::Result<()> {
    let mut guard = None;
    loop {
        let mut groups = views(&survey(coordinator).await?);
        for group in &mut groups {
            group.weight = weights.get(&group.group).copied().unwrap_or(1.0);
        }
        let steps = admin_plan::batch(&groups, nodes, budget);
        if steps.is_empty() {
            return Ok(());
        }
        let guard = guard.get_or_insert_with(|| StepGuard::new(groups.len()));
        for &step in &steps {
            guard.check(step, &groups)?;
        }
        let mut running = tokio::task::JoinSet::new();
        for step in steps {
            let mut coordinator = coordinator.clone();
            running.spawn(async move {
                match step {
                    Step::Move(step) => apply(&mut coordinator, step).await,
                    Step::Lead { group, to } => {
                        println!("transfer group {group}'s leadership to node {to}");
                        Ok(coordinator.transfer_leadership(group, to).await?)
                    }
                }
            });
        }
        while let Some(done) = running.join_next().await {
            done.context("a change's task failed")??;
        }
    }
}

/// Every slot group's replicas, from its leader when it answers.
async fn survey(coordinator: &mut Coordinator<fn(&str)>) -> anyhow::Result<Vec<GroupReplicas>> {
    let mut groups = Vec::new();
    for group in 0.. {
        match coordinator.replicas(group).await {
            Ok(replicas) if replicas.metadata => break,
            Ok(replicas) => groups.push(replicas),
            Err(ChangeError::Step {
                error: CallError::Refused(ReplicaError::NoSuchGroup(_)),
                ..
            }) => break,
            Err(error) => return Err(error).context("read the cluster's groups"),
        }
    }
    Ok(groups)
}

fn views(groups: &[GroupReplicas]) -> Vec<GroupView> {
    groups
        .iter()
        .map(|g| GroupView {
            group: g.group,
            leader: g.leader,
            voters: g.voters.clone(),
            weight: 1.0,
        })
        .collect()
}

fn replicating_nodes(groups: &[GroupReplicas]) -> BTreeSet<NodeId> {
    groups
        .iter()
        .flat_map(|g| g.voters.iter().copied())
        .collect()
}

/// Slot runs as `first-last,first-last` (a single slot as itself), `-` for none.
fn slot_runs(runs: &[(u16, u16)]) -> String {
    if runs.is_empty() {
        return "-".into();
    }
    runs.iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether the placement record matches the groups' memberships as surveyed: one line, then
/// a line per group it differs for (the record follows a change within about a second).
fn placement_summary(groups: &[GroupReplicas], record: &[RecordedReplicas]) -> String {
    let mut lines = Vec::new();
    for g in groups {
        match record.iter().find(|r| r.group == g.group) {
            Some(r) if r.voters == g.voters && r.learners == g.learners => {}
            Some(r) => lines.push(format!(
                "  group {}: recorded voters {} learners {} (membership {}-{}), the group has {} and {}",
                g.group,
                ids(&r.voters),
                ids(&r.learners),
                r.version.0,
                r.version.1,
                ids(&g.voters),
                ids(&g.learners)
            )),
            None => lines.push(format!("  group {}: not recorded yet", g.group)),
        }
    }
    let head = if lines.is_empty() {
        format!(
            "placement record: {} groups, every group's membership as recorded",
            record.len()
        )
    } else {
        format!(
            "placement record: {} groups, {} differ from their membership",
            record.len(),
            lines.len()
        )
    };
    std::iter::once(head)
        .chain(lines)
        .collect::<Vec<_>>()
        .join("\n")
}

fn ids(nodes: &BTreeSet<NodeId>) -> String {
    let ids: Vec<String> = nodes.iter().map(|id| id.to_string()).collect();
    if ids.is_empty() {
        "-".into()
    } else {
        ids.join(",")
    }
}

async fn print_status(groups: &[GroupReplicas], coordinator: &mut Coordinator<fn(&str)>) {
    println!(
        "{:>5}  {:>11}  {:>6}  {:>5}  {:<12}  {:<9}  {:<9}  {:>8}  {:>9}  {:>11}",
        "GROUP",
        "SLOTS",
        "LEADER",
        "TERM",
        "VOTERS",
        "LEARNERS",
        "STATE",
        "APPLIED",
        "KEYS",
        "BYTES"
    );
    // Who owns which slots, as the replicas that answered (leaders when they could) applied.
    let owned: Vec<raft::slot_calls::GroupSlots> = groups.iter().map(|g| g.slots.clone()).collect();
    for g in groups {
        let slots = slot_runs(&g.slots.owned);
        let state = match (g.leader, g.joint) {
            (None, _) => "electing",
            (Some(_), true) => "joint",
            (Some(_), false) => "ok",
        };
        println!(
            "{:>5}  {:>11}  {:>6}  {:>5}  {:<12}  {:<9}  {:<9}  {:>8}  {:>9}  {:>11}",
            g.group,
            slots,
            g.leader.map_or("-".into(), |l| l.to_string()),
            g.term,
            ids(&g.voters),
            ids(&g.learners),
            state,
            g.last_applied,
            g.keys,
            g.bytes
        );
    }
    println!();
    let map = tokio::time::timeout(REGISTRY_WAIT, coordinator.slot_map()).await;
    match map {
        Ok(Ok(map)) => println!("slot map epoch {}", map.epoch),
        _ => println!("slot map: the metadata group did not answer"),
    }
    let meta = groups.len() as GroupId;
    if let Ok(Ok(replicas)) = tokio::time::timeout(REGISTRY_WAIT, coordinator.replicas(meta)).await
    {
        if replicas.metadata {
            println!(
                "metadata group {meta}: leader {}, voters {}, learners {}",
                replicas.leader.map_or("-".into(), |l| l.to_string()),
                ids(&replicas.voters),
                ids(&replicas.learners)
            );
        }
    }
    let record = tokio::time::timeout(REGISTRY_WAIT, coordinator.placement()).await;
    match record {
        Ok(Ok(record)) => println!("{}", placement_summary(groups, &record)),
        _ => println!("placement record: the metadata group did not answer"),
    }
    println!();
    // The registry says which nodes belong to the cluster; without an answer from the
    // metadata group (a node alone has none), the nodes seen in the groups are shown.
    let registry = tokio::time::timeout(REGISTRY_WAIT, coordinator.registry()).await;
    let nodes: Vec<(NodeId, NodeAddr, &str)> = match registry {
        Ok(Ok(nodes)) => nodes
            .into_iter()
            .map(|n| (n.id, n.addr, if n.retired { "retired" } else { "active" }))
            .collect(),
        _ => coordinator
            .known()
            .iter()
            .map(|(id, addr)| (*id, addr.clone(), "?"))
            .collect(),
    };
    println!(
        "{:>4}  {:<21}  {:<21}  {:>8}  {:>7}  {:<7}",
        "NODE", "CLIENT", "RAFT", "REPLICAS", "LEADS", "STATE"
    );
    for (id, addr, state) in nodes {
        let replicas = groups.iter().filter(|g| g.voters.contains(&id)).count();
        let leads = groups.iter().filter(|g| g.leader == Some(id)).count();
        println!(
            "{:>4}  {:<21}  {:<21}  {:>8}  {:>7}  {:<7}",
            id, addr.client, addr.raft, replicas, leads, state
        );
    }
    let in_flight = raft::slot_mover::slots_in_flight(&owned);
    if !in_flight.is_empty() {
        println!();
        for (first, last, from, to) in in_flight {
            // `move-slots FIRST-LAST TO` finishes it.
            println!("MOVING  {first}-{last}  from {from} to {to}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Vec<GroupView> {
        vec![GroupView {
            group: 0,
            leader: Some(1),
            voters: BTreeSet::from([1, 2, 3]),
            weight: 1.0,
        }]
    }

    #[test]
    fn a_step_picked_three_times_running_stops_the_plan() {
        let mut guard = StepGuard::new(1);
        let step = Step::Lead { group: 0, to: 2 };
        guard.check(step, &layout()).unwrap();
        guard.check(step, &layout()).unwrap();
        let error = guard.check(step, &layout()).unwrap_err().to_string();
        assert!(error.contains("picked 3 times in a row"), "{error}");
        assert!(error.contains("group 0: leader 1, voters 1,2,3"), "{error}");
    }

    #[test]
    fn alternating_steps_stop_at_the_limit() {
        let mut guard = StepGuard::new(1);
        let steps = [
            Step::Lead { group: 0, to: 2 },
            Step::Lead { group: 0, to: 3 },
        ];
        let allowed = (0..1000)
            .take_while(|i| guard.check(steps[i % 2], &layout()).is_ok())
            .count();
        assert_eq!(allowed, guard.limit);
    }
}
