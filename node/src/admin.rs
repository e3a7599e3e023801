//! `autocache admin`: the cluster's status, and changes that move replicas and leadership,
//! driven through the nodes' raft ports (the admin API, `raft::replicas::ReplicaCall`).
//!
//! Every change re-reads the cluster before each move, so a command that was interrupted (or
//! whose coordinator died) completes when it is run again.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{bail, Context};
use raft::coordinator::{ChangeError, Coordinator};
use raft::replica_call::CallError;
use raft::{GroupId, GroupReplicas, NodeAddr, NodeId, ReplicaError};

use crate::admin_plan::{self, GroupView};

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
    /// Evens out replicas, then leaders, across the nodes that replicate anything.
    Rebalance,
}

/// How long `status` waits for the node registry before showing the nodes it saw instead.
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
        }
        AdminCommand::RemoveNode { id } => {
            let mut nodes = replicating_nodes(&survey(&mut coordinator).await?);
            nodes.remove(&id);
            if nodes.is_empty() {
                bail!("node {id} is the only node: nothing could take its replicas");
            }
            loop {
                let groups = views(&survey(&mut coordinator).await?);
                let Some(step) = admin_plan::drain(&groups, &nodes, id) else {
                    break;
                };
                apply(&mut coordinator, step).await?;
            }
            even_out(&mut coordinator, &nodes).await?;
            // It holds nothing now: its id is retired, never to be used again.
            coordinator.retire_node(id).await?;
        }
        AdminCommand::Rebalance => {
            let nodes = replicating_nodes(&survey(&mut coordinator).await?);
            even_out(&mut coordinator, &nodes).await?;
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
    loop {
        let groups = views(&survey(coordinator).await?);
        if let Some(step) = admin_plan::spread(&groups, nodes) {
            apply(coordinator, step).await?;
        } else if let Some((group, to)) = admin_plan::lead(&groups, nodes) {
            coordinator.transfer_leadership(group, to).await?;
        } else {
            return Ok(());
        }
    }
}

/// Every group's replicas, from its leader when it answers.
async fn survey(coordinator: &mut Coordinator<fn(&str)>) -> anyhow::Result<Vec<GroupReplicas>> {
    let mut groups = Vec::new();
    for group in 0.. {
        match coordinator.replicas(group).await {
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
        })
        .collect()
}

fn replicating_nodes(groups: &[GroupReplicas]) -> BTreeSet<NodeId> {
    groups
        .iter()
        .flat_map(|g| g.voters.iter().copied())
        .collect()
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
        "{:>5}  {:>11}  {:>6}  {:>5}  {:<12}  {:<9}  {:<9}  {:>8}",
        "GROUP", "SLOTS", "LEADER", "TERM", "VOTERS", "LEARNERS", "STATE", "APPLIED"
    );
    for g in groups {
        let (first, last) = crate::cmd::cluster::slot_range(groups.len(), g.group as usize);
        let state = match (g.leader, g.joint) {
            (None, _) => "electing",
            (Some(_), true) => "joint",
            (Some(_), false) => "ok",
        };
        println!(
            "{:>5}  {:>11}  {:>6}  {:>5}  {:<12}  {:<9}  {:<9}  {:>8}",
            g.group,
            format!("{first}-{last}"),
            g.leader.map_or("-".into(), |l| l.to_string()),
            g.term,
            ids(&g.voters),
            ids(&g.learners),
            state,
            g.last_applied
        );
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
}
