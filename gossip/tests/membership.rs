//! Nodes gossiping over the in-memory network: joining through a seed, hints spreading,
//! failure detection, restarts with a newer generation, and a node cut off and healed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gossip::{
    Gossip, GossipConfig, GroupLoad, Health, InMemoryNetwork, LeaderHint, Member, Network, NodeInfo,
};

fn gossip_addr(id: u64) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8], 7946))
}

fn info(id: u64, generation: u64) -> NodeInfo {
    NodeInfo {
        id,
        generation,
        client: format!("10.0.0.{id}:{}", 6379 + generation),
        raft: format!("10.0.0.{id}:7379"),
        admin: None,
        metrics: None,
    }
}

async fn start(network: &Network, id: u64, generation: u64) -> Gossip {
    let seeds = if id == 1 {
        Vec::new()
    } else {
        vec![gossip_addr(1).to_string()]
    };
    let mut config =
        GossipConfig::new(info(id, generation), "test-cluster", gossip_addr(id), seeds);
    config.interval = Duration::from_millis(50);
    Gossip::start(config, network).await.unwrap()
}

/// Waits until `node`'s view satisfies `done`.
async fn until(node: &Gossip, what: &str, done: impl Fn(&[Member]) -> bool) -> Vec<Member> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let members = node.members().await;
        if done(&members) {
            return members;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened; members: {members:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn health(members: &[Member], id: u64) -> Option<Health> {
    members.iter().find(|m| m.info.id == id).map(|m| m.health)
}

fn alive(members: &[Member], id: u64) -> bool {
    health(members, id) == Some(Health::Alive)
}

fn down(members: &[Member], id: u64) -> bool {
    health(members, id) == Some(Health::Down)
}

#[tokio::test]
async fn nodes_join_through_a_seed_and_share_their_facts() {
    let memory = InMemoryNetwork::default();
    let network = Network::InMemory(memory.clone());
    let nodes = [
        start(&network, 1, 1).await,
        start(&network, 2, 1).await,
        start(&network, 3, 1).await,
    ];
    for node in &nodes {
        let members = until(node, "every node alive", |m| {
            m.len() == 3 && (1..=3).all(|id| alive(m, id))
        })
        .await;
        for (member, id) in members.iter().zip(1..) {
            assert_eq!(member.info, info(id, 1));
        }
    }

    // Leader hints and loads spread.
    let hints = [
        LeaderHint { group: 4, term: 2 },
        LeaderHint { group: 9, term: 5 },
    ];
    nodes[1].set_leads(&hints).await;
    let load = GroupLoad {
        keys: 12,
        bytes: 3400,
        ops_per_sec: 7,
    };
    nodes[1].set_load(4, load).await;
    let members = until(&nodes[2], "node 2's hints reach node 3", |m| {
        m.iter()
            .any(|m| m.info.id == 2 && m.leads == hints && m.loads.get(&4) == Some(&load))
    })
    .await;
    assert!(members[0].leads.is_empty());

    // A stopped node is marked down; started again (a newer generation, a new client port),
    // it replaces what was known of it.
    let [one, two, three] = nodes;
    three.shutdown().await.unwrap();
    until(&one, "node 3 marked down", |m| down(m, 3)).await;
    let three = start(&network, 3, 2).await;
    let members = until(&one, "node 3 back", |m| {
        m.iter()
            .any(|m| m.info.id == 3 && m.health == Health::Alive && m.info.generation == 2)
    })
    .await;
    assert_eq!(members.len(), 3, "one entry per node id: {members:#?}");
    assert_eq!(members[2].info, info(3, 2));

    // Cut off from everyone, node 3 is down to the others; healed, alive again.
    for other in [1, 2] {
        memory.cut(gossip_addr(3), gossip_addr(other)).await;
    }
    until(&two, "cut-off node 3 marked down", |m| down(m, 3)).await;
    until(&three, "node 3 sees the others down", |m| {
        down(m, 1) && down(m, 2)
    })
    .await;
    for other in [1, 2] {
        memory.heal(gossip_addr(3), gossip_addr(other)).await;
    }
    until(&one, "healed node 3 alive", |m| alive(m, 3)).await;
    for node in [one, two, three] {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn nodes_of_another_cluster_are_not_members() {
    let network = Network::InMemory(InMemoryNetwork::default());
    let first = start(&network, 1, 1).await;
    let mut config = GossipConfig::new(
        info(2, 1),
        "another-cluster",
        gossip_addr(2),
        vec![gossip_addr(1).to_string()],
    );
    config.interval = Duration::from_millis(50);
    let stranger = Gossip::start(config, &network).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let members = first.members().await;
    assert_eq!(members.len(), 1, "{members:#?}");
    assert_eq!(stranger.members().await.len(), 1);
}

#[tokio::test]
async fn a_node_just_heard_of_is_joining_not_down() {
    let network = Network::InMemory(InMemoryNetwork::default());
    let first = start(&network, 1, 1).await;
    let second = start(&network, 2, 1).await;
    // Whatever the failure detector thinks before it has two heartbeats, node 2 is never
    // reported down on its way in.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let members = first.members().await;
        assert!(
            !down(&members, 2),
            "a joining node reported down: {members:#?}"
        );
        if alive(&members, 2) {
            break;
        }
        assert!(Instant::now() < deadline, "node 2 never became alive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
}
