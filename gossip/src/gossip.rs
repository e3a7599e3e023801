use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};

use crate::error::GossipError;
use crate::member::{Health, Member};
use crate::network::Network;
use crate::node_info::{self, GroupLoad, LeaderHint, NodeInfo};

/// How one node joins the gossip.
#[derive(Clone, Debug)]
pub struct GossipConfig {
    pub node: NodeInfo,
    /// Nodes of another cluster id ignore this one.
    pub cluster_id: String,
    /// Where gossip listens, and where the others reach it.
    pub listen: SocketAddr,
    /// Gossip addresses (`host:port`) of nodes to join through; empty for the first node.
    pub seeds: Vec<String>,
    /// Between two gossip rounds (1 s by default: an idle cluster's gossip then costs less
    /// than the noise of measuring it). The failure detector marks a silent node dead after a
    /// few intervals (about 5 s at 1 s on loopback).
    pub interval: Duration,
    /// How long a dead node stays listed before it is forgotten.
    pub dead_node_grace: Duration,
}

impl GossipConfig {
    /// A configuration with the default timings.
    pub fn new(node: NodeInfo, cluster_id: &str, listen: SocketAddr, seeds: Vec<String>) -> Self {
        GossipConfig {
            node,
            cluster_id: cluster_id.to_string(),
            listen,
            seeds,
            interval: Duration::from_secs(1),
            dead_node_grace: Duration::from_secs(3600),
        }
    }
}

/// One node's gossip: what it publishes and what it hears. Stopped by [`Gossip::shutdown`]
/// (or when dropped).
pub struct Gossip {
    handle: ChitchatHandle,
    /// When each node generation was first heard of, and whether it was ever alive: the
    /// failure detector calls a node dead until it has two heartbeats, which is not the same
    /// as a node that died.
    heard: Mutex<HashMap<ChitchatId, Heard>>,
    /// How long a node heard of may take to become alive before it counts as down.
    joining_grace: Duration,
}

struct Heard {
    since: Instant,
    was_alive: bool,
}

impl Gossip {
    /// Starts gossiping `config.node`'s facts and contacting the seeds.
    pub async fn start(config: GossipConfig, network: &Network) -> Result<Gossip, GossipError> {
        let initial = config.node.key_values();
        let failure_detector_config = FailureDetectorConfig {
            // Until a node's heartbeat intervals are sampled, assume they are the configured
            // ones, so that a node that dies early is still noticed in a few seconds.
            initial_interval: config.interval,
            max_interval: config.interval * 40,
            dead_node_grace_period: config.dead_node_grace,
            ..FailureDetectorConfig::default()
        };
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(
                config.node.id.to_string(),
                config.node.generation,
                config.listen,
            ),
            cluster_id: config.cluster_id,
            gossip_interval: config.interval,
            listen_addr: config.listen,
            seed_nodes: config.seeds,
            failure_detector_config,
            marked_for_deletion_grace_period: config.dead_node_grace,
            catchup_callback: None,
            extra_liveness_predicate: None,
            // Every node of a cluster runs a version that reads it.
            protocol_version: ProtocolVersion::V1,
        };
        let handle = spawn_chitchat(chitchat_config, initial, network.transport())
            .await
            .map_err(|error| GossipError::Start {
                addr: config.listen,
                reason: error.to_string(),
            })?;
        tracing::info!(node = config.node.id, generation = config.node.generation, listen = %config.listen, "gossip started");
        Ok(Gossip {
            handle,
            heard: Mutex::new(HashMap::new()),
            joining_grace: config.interval * 10,
        })
    }

    /// Where this node gossips.
    pub fn addr(&self) -> SocketAddr {
        self.handle.chitchat_id().gossip_advertise_addr
    }

    /// Publishes the groups this node leads (replacing what it published before).
    pub async fn set_leads(&self, leads: &[LeaderHint]) {
        let (key, value) = node_info::leads_pair(leads);
        self.handle
            .with_chitchat(|chitchat| chitchat.self_node_state().set(&key, &value))
            .await;
    }

    /// Publishes the load of this node's replica of `group`.
    pub async fn set_load(&self, group: u32, load: GroupLoad) {
        let (key, value) = node_info::load_pair(group, load);
        self.handle
            .with_chitchat(|chitchat| chitchat.self_node_state().set(&key, &value))
            .await;
    }

    /// Publishes the epoch of the slot map this node routes by: a node that sees a newer one
    /// fetches it.
    pub async fn set_slot_map_epoch(&self, epoch: u64) {
        let value = epoch.to_string();
        self.handle
            .with_chitchat(|chitchat| {
                chitchat
                    .self_node_state()
                    .set(node_info::SLOT_MAP_EPOCH, &value)
            })
            .await;
    }

    /// Every node heard of (this one included), by id: the newest generation of each, and its
    /// health.
    pub async fn members(&self) -> Vec<Member> {
        let chitchat = self.handle.chitchat();
        let chitchat = chitchat.lock().await;
        let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        let mut heard = self.heard.lock().expect("heard lock");
        let mut newest: BTreeMap<u64, Member> = BTreeMap::new();
        for (id, state) in chitchat.node_states() {
            let Ok(node_id) = id.node_id.parse::<u64>() else {
                continue;
            };
            let Some(info) = NodeInfo::from_pairs(node_id, id.generation_id, |k| state.get(k))
            else {
                continue;
            };
            if newest
                .get(&node_id)
                .is_some_and(|known| known.info.generation >= id.generation_id)
            {
                continue;
            }
            let alive = live.contains(id);
            let seen = heard.entry(id.clone()).or_insert_with(|| Heard {
                since: Instant::now(),
                was_alive: false,
            });
            seen.was_alive |= alive;
            let health = if alive {
                Health::Alive
            } else if seen.was_alive || seen.since.elapsed() > self.joining_grace {
                Health::Down
            } else {
                Health::Joining
            };
            let member = Member {
                info,
                health,
                leads: node_info::parse_leads(state.get(node_info::LEADS)),
                loads: node_info::parse_loads(state.key_values()),
                slot_map_epoch: node_info::parse_epoch(state.get(node_info::SLOT_MAP_EPOCH)),
            };
            newest.insert(node_id, member);
        }
        // Forget what chitchat forgot (older generations, nodes past their grace).
        heard.retain(|id, _| chitchat.node_states().contains_key(id));
        newest.into_values().collect()
    }

    /// Stops gossiping and waits for the service to end.
    pub async fn shutdown(self) -> Result<(), GossipError> {
        self.handle
            .shutdown()
            .await
            .map_err(|error| GossipError::Shutdown(error.to_string()))
    }
}
