//! Gossip between the members: this node's addresses and the groups it leads go out; which
//! members are alive comes in, and CLUSTER NODES and SHARDS show it. Advisory only: raft alone
//! decides who serves a key.
//!
//! A member gossips over UDP on its raft address (the raft transport is TCP on the same port
//! number), so a static member list needs no more configuration: every other member's raft
//! address is a seed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gossip::{Gossip, GossipConfig, GroupLoad, Health, LeaderHint, Member, Network, NodeInfo};
use parking_lot::RwLock;
use raft::{NodeAddr, NodeId};

use crate::config::Config;
use crate::server::Server;

/// How often this node republishes the groups it leads and reads the others' liveness.
const REFRESH: Duration = Duration::from_secs(1);

/// How long one exchange with the metadata group (fetching the slot map, reporting the
/// placement of led groups) may hold up the gossip loop.
const METADATA_WAIT: Duration = Duration::from_secs(2);

/// The members gossip says are down.
#[derive(Default)]
pub struct Liveness {
    down: RwLock<BTreeSet<NodeId>>,
}

impl Liveness {
    /// Whether gossip marks member `id` as down (never this node itself).
    pub fn is_down(&self, id: NodeId) -> bool {
        self.down.read().contains(&id)
    }

    fn update(&self, down: BTreeSet<NodeId>) {
        let mut known = self.down.write();
        if *known != down {
            tracing::info!(?down, "members down, as gossip sees them");
            *known = down;
        }
    }
}

/// Starts gossiping, for a node with other members; None for a node alone.
pub async fn start(config: &Config) -> anyhow::Result<Option<Gossip>> {
    if config.members.len() < 2 && config.join.is_empty() {
        return Ok(None);
    }
    let members = config.member_map()?;
    let me = &config.own_addr()?.context("this node has no address")?;
    let listen: SocketAddr = tokio::net::lookup_host(&me.raft)
        .await
        .with_context(|| format!("resolve this node's raft address {}", me.raft))?
        .next()
        .with_context(|| format!("{} resolves to no address", me.raft))?;
    let seeds = members
        .iter()
        .filter(|(id, _)| **id != config.node_id)
        .map(|(_, addr)| addr.raft.clone())
        .collect();
    let node = NodeInfo {
        id: config.node_id,
        // Later starts have higher generations, so a restart replaces what others knew.
        generation: crate::server::unix_ms(),
        client: me.client.clone(),
        raft: me.raft.clone(),
        // The admin API (`autocache admin`) is served on the raft port.
        admin: Some(me.raft.clone()),
        metrics: (config.metrics_port != 0)
            .then(|| SocketAddr::new(config.bind, config.metrics_port).to_string()),
    };
    let gossip = Gossip::start(
        GossipConfig::new(node, &config.cluster_id, listen, seeds),
        &Network::Udp,
    )
    .await
    .with_context(|| format!("start gossip on udp {listen}"))?;
    Ok(Some(gossip))
}

/// Publishes leadership and reads liveness every second until shutdown, then stops gossip.
/// Also fetches a newer slot map, and reports changed memberships of led groups to the
/// placement record.
pub async fn run(server: Arc<Server>, gossip: Gossip) {
    let mut published = None;
    let mut published_epoch = None;
    let mut loads = LoadMeter::default();
    // The membership versions of led groups the placement record has from this node.
    let mut reported_placement = BTreeMap::new();
    loop {
        let leads: Vec<LeaderHint> = server
            .groups
            .led_groups()
            .into_iter()
            .map(|(group, term)| LeaderHint { group, term })
            .collect();
        for (group, load) in loads.measure(&server, &leads) {
            gossip.set_load(group, load).await;
        }
        if published.as_ref() != Some(&leads) {
            gossip.set_leads(&leads).await;
            published = Some(leads);
        }
        let members = gossip.members().await;
        let down: BTreeSet<NodeId> = members
            .iter()
            .filter(|member| member.health == Health::Down)
            .map(|member| member.info.id)
            .collect();
        server.liveness.update(down);
        hint_leaders(&server, &members);
        // Route by the newest slot map: fetch it when a member routes by a newer one (or
        // none was fetched yet), and say which one this node routes by.
        let newest = members.iter().map(|m| m.slot_map_epoch).max().unwrap_or(0);
        let mine = server.groups.slot_map_epoch();
        if mine == 0 || newest > mine {
            let fetched = tokio::time::timeout(METADATA_WAIT, server.groups.refresh_slot_map());
            if let Ok(Err(error)) = fetched.await {
                tracing::debug!(%error, "slot map not fetched");
            }
        }
        let report = server.groups.report_placement(&mut reported_placement);
        if let Ok(Err(error)) = tokio::time::timeout(METADATA_WAIT, report).await {
            tracing::debug!(%error, "placement not reported");
        }
        let mine = server.groups.slot_map_epoch();
        if published_epoch != Some(mine) {
            gossip.set_slot_map_epoch(mine).await;
            published_epoch = Some(mine);
        }
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = server.shutting_down() => break,
        }
    }
    if let Err(error) = gossip.shutdown().await {
        tracing::warn!(%error, "gossip did not stop cleanly");
    }
}

/// Entries of a group's keyspace measured for its memory per second (see
/// `tiering::byte_meter`): a million keys are measured over about four minutes.
const BYTES_BUDGET: usize = 4096;

/// Measures the load of the groups this node leads: keys, their memory, and entries applied
/// per second.
#[derive(Default)]
struct LoadMeter {
    /// Per group: the applied index and when it was read.
    last: BTreeMap<u32, (u64, std::time::Instant)>,
}

impl LoadMeter {
    /// The load of each group in `leads` since the previous call. A group led for the first
    /// time reports 0 ops/s until the next call.
    fn measure(&mut self, server: &Server, leads: &[LeaderHint]) -> Vec<(u32, GroupLoad)> {
        let now = std::time::Instant::now();
        let mut measured = Vec::new();
        let mut last = BTreeMap::new();
        for hint in leads {
            let Some(applied) = server.groups.applied_index(hint.group) else {
                continue;
            };
            let ops_per_sec = match self.last.get(&hint.group) {
                Some((before, at)) if applied >= *before => {
                    let seconds = now.duration_since(*at).as_secs_f64().max(1e-3);
                    ((applied - before) as f64 / seconds).round() as u64
                }
                _ => 0,
            };
            last.insert(hint.group, (applied, now));
            let load = GroupLoad {
                keys: server.db.group_len(hint.group as usize) as u64,
                bytes: server
                    .db
                    .measure_group_bytes(hint.group as usize, BYTES_BUDGET),
                ops_per_sec,
            };
            measured.push((hint.group, load));
        }
        self.last = last;
        measured
    }
}

/// Tells the groups which nodes gossip hears from, and which node it says leads each group
/// (the newest term wins), so this node lists every node to cluster clients and redirects them
/// well for groups it does not replicate.
fn hint_leaders(server: &Server, members: &[Member]) {
    let heard = members
        .iter()
        .filter(|member| member.health != Health::Down)
        .map(|member| {
            let addr = NodeAddr {
                client: member.info.client.clone(),
                raft: member.info.raft.clone(),
            };
            (member.info.id, addr)
        })
        .collect();
    server.groups.set_gossiped_members(heard);
    let mut newest: BTreeMap<u32, (u64, &Member)> = BTreeMap::new();
    for member in members
        .iter()
        .filter(|member| member.health == Health::Alive)
    {
        for hint in &member.leads {
            let entry = newest.entry(hint.group).or_insert((hint.term, member));
            if hint.term > entry.0 {
                *entry = (hint.term, member);
            }
        }
    }
    for (group, (_, member)) in newest {
        let addr = NodeAddr {
            client: member.info.client.clone(),
            raft: member.info.raft.clone(),
        };
        server.groups.hint_leader(group, member.info.id, addr);
    }
}
