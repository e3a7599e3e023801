//! The Redis Cluster surface: CLUSTER KEYSLOT, COUNTKEYSINSLOT, GETKEYSINSLOT, MYID, SLOTS,
//! SHARDS, NODES, INFO, HELP, and READONLY/READWRITE/ASKING. Cluster clients (`redis-cli -c`,
//! `redis-benchmark --cluster`, redis-py's `RedisCluster`) learn the topology from these.
//!
//! Replies follow Redis 7.0.15 byte for byte. Redis Cluster's model (a master per slot range,
//! replicas per master) is drawn from the groups: a group's slot range is served by its raft
//! leader as master. As a node leads some groups and follows others, every member shows as a
//! master of the slots of the groups it leads, and followers are not listed as replicas.

use bytes::Bytes;
use raft::NodeId;
use resp::Frame;
use tiering::{slot_of, SLOT_COUNT};

use crate::session::{Outcome, Session};

/// One node as cluster clients see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The 40-hex-digit node name.
    pub name: String,
    pub ip: String,
    pub port: u16,
    /// Gossip marks it down.
    pub down: bool,
}

/// A master, the slot ranges it serves, and its replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Inclusive slot ranges, ascending.
    pub slots: Vec<(u16, u16)>,
    pub master: NodeView,
    pub replicas: Vec<NodeView>,
}

/// The slots of `group` when the slots are split into `groups` groups: the slots `s` with
/// `s * groups / SLOT_COUNT == group` (see `Db::group_of_slot`).
pub fn slot_range(groups: usize, group: usize) -> (u16, u16) {
    let first = |g: usize| (g * SLOT_COUNT).div_ceil(groups);
    (first(group) as u16, (first(group + 1) - 1) as u16)
}

/// Runs of consecutive slots with their leader: each slot's group as this node routes it (the
/// ranges of `--groups`, as changed by slot moves it knows of), that group's leader as known
/// here (the preferred leader while there is none); adjacent runs with the same leader merged.
fn group_ranges(session: &Session) -> Vec<(u16, u16, NodeId)> {
    let server = &session.server;
    let groups = &server.groups;
    let leaders: Vec<NodeId> = (0..server.db.groups() as u32)
        .map(|group| {
            groups
                .leader_of(group)
                .map_or(groups.placement().preferred_leader(group), |(id, _)| id)
        })
        .collect();
    let mut ranges: Vec<(u16, u16, NodeId)> = Vec::new();
    for slot in 0..SLOT_COUNT as u16 {
        let leader = leaders[server.db.group_of_slot(slot)];
        match ranges.last_mut() {
            Some(last) if last.2 == leader && last.1 + 1 == slot => last.1 = slot,
            _ => ranges.push((slot, slot, leader)),
        }
    }
    ranges
}

/// What this node tells cluster clients about the cluster: every member as a master of the
/// slots of the groups it leads.
fn topology(session: &Session) -> Vec<Shard> {
    let server = &session.server;
    let ranges = group_ranges(session);
    server
        .groups
        .members()
        .into_keys()
        .map(|id| Shard {
            slots: ranges
                .iter()
                .filter(|r| r.2 == id)
                .map(|r| (r.0, r.1))
                .collect(),
            master: server.node_view(id),
            replicas: Vec::new(),
        })
        .collect()
}

pub fn run(session: &mut Session, sub: &str, args: &[Bytes]) -> Outcome {
    match sub {
        "keyslot" => Frame::Integer(slot_of(&args[2]) as i64).into(),
        "countkeysinslot" => match parse_slot(&args[2]) {
            Ok(slot) => Frame::Integer(session.server.db.count_keys_in_slot(slot) as i64).into(),
            Err(frame) => frame.into(),
        },
        "getkeysinslot" => getkeysinslot(session, args),
        "myid" => Frame::Bulk(session.server.node_name.clone().into()).into(),
        "slots" => slots(session),
        "shards" => shards(session),
        "nodes" => Frame::Verbatim(nodes(session).into()).into(),
        "info" => Frame::Verbatim(info(session).into()).into(),
        "help" => crate::cmd::help("CLUSTER", HELP),
        other => Frame::error(format!(
            "ERR unknown subcommand '{other}'. Try CLUSTER HELP."
        ))
        .into(),
    }
}

fn integer(arg: &[u8]) -> Result<i64, Frame> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| Frame::error("ERR value is not an integer or out of range"))
}

fn parse_slot(arg: &[u8]) -> Result<u16, Frame> {
    let slot = integer(arg)?;
    if !(0..SLOT_COUNT as i64).contains(&slot) {
        return Err(Frame::error("ERR Invalid slot"));
    }
    Ok(slot as u16)
}

/// The slot a COUNTKEYSINSLOT or GETKEYSINSLOT reads, when its argument is one.
pub fn slot_argument(sub: &str, args: &[Bytes]) -> Option<u16> {
    match sub {
        "countkeysinslot" | "getkeysinslot" => args.get(2).and_then(|a| parse_slot(a).ok()),
        _ => None,
    }
}

fn getkeysinslot(session: &Session, args: &[Bytes]) -> Outcome {
    let (slot, count) = match (integer(&args[2]), integer(&args[3])) {
        (Ok(slot), Ok(count)) => (slot, count),
        (Err(frame), _) | (_, Err(frame)) => return frame.into(),
    };
    if !(0..SLOT_COUNT as i64).contains(&slot) || count < 0 {
        return Frame::error("ERR Invalid slot or number of keys").into();
    }
    let keys = session
        .server
        .db
        .keys_in_slot(slot as u16, count as usize)
        .into_iter()
        .map(|key| Frame::Bulk(Bytes::copy_from_slice(&key)))
        .collect();
    Frame::Array(keys).into()
}

fn node_entry(node: &NodeView) -> Frame {
    Frame::Array(vec![
        Frame::Bulk(node.ip.clone().into()),
        Frame::Integer(node.port as i64),
        Frame::Bulk(node.name.clone().into()),
        // Additional networking metadata (hostname): none.
        Frame::Map(Vec::new()),
    ])
}

fn slots(session: &Session) -> Outcome {
    let server = &session.server;
    // A group's followers are not listed as replicas: a node follows some groups and leads
    // others, and cluster clients take a node listed once as a replica for a replica
    // everywhere. Followers serve nothing anyway (reads go to the leader).
    let reply = group_ranges(session)
        .into_iter()
        .map(|(start, end, master)| {
            let range = vec![
                Frame::Integer(start as i64),
                Frame::Integer(end as i64),
                node_entry(&server.node_view(master)),
            ];
            Frame::Array(range)
        })
        .collect();
    Frame::Array(reply).into()
}

fn shard_node(node: &NodeView, role: &'static str) -> Frame {
    let field = |name: &'static str| Frame::bulk_static(name);
    Frame::Map(vec![
        (field("id"), Frame::Bulk(node.name.clone().into())),
        (field("port"), Frame::Integer(node.port as i64)),
        (field("ip"), Frame::Bulk(node.ip.clone().into())),
        (field("endpoint"), Frame::Bulk(node.ip.clone().into())),
        (field("role"), Frame::bulk_static(role)),
        (field("replication-offset"), Frame::Integer(0)),
        (
            field("health"),
            Frame::bulk_static(if node.down { "failed" } else { "online" }),
        ),
    ])
}

fn shards(session: &Session) -> Outcome {
    let reply = topology(session)
        .iter()
        .map(|shard| {
            let slots = shard
                .slots
                .iter()
                .flat_map(|&(a, b)| [Frame::Integer(a as i64), Frame::Integer(b as i64)])
                .collect();
            let mut nodes = vec![shard_node(&shard.master, "master")];
            nodes.extend(shard.replicas.iter().map(|r| shard_node(r, "replica")));
            Frame::Map(vec![
                (Frame::bulk_static("slots"), Frame::Array(slots)),
                (Frame::bulk_static("nodes"), Frame::Array(nodes)),
            ])
        })
        .collect();
    Frame::Array(reply).into()
}

fn nodes(session: &Session) -> String {
    let me = &session.server.node_name;
    let mut out = String::new();
    for shard in topology(session) {
        let myself = |node: &NodeView| if &node.name == me { "myself," } else { "" };
        let slots: String = shard
            .slots
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    format!(" {a}")
                } else {
                    format!(" {a}-{b}")
                }
            })
            .collect();
        let master = &shard.master;
        out.push_str(&format!(
            "{} {}:{}@{} {}master{} - 0 0 0 {}{}\n",
            master.name,
            master.ip,
            master.port,
            cluster_bus_port(master.port),
            myself(master),
            fail(master),
            link(master),
            slots
        ));
        for replica in &shard.replicas {
            out.push_str(&format!(
                "{} {}:{}@{} {}slave{} {} 0 0 0 {}\n",
                replica.name,
                replica.ip,
                replica.port,
                cluster_bus_port(replica.port),
                myself(replica),
                fail(replica),
                master.name,
                link(replica)
            ));
        }
    }
    out
}

/// Redis's flag for a node the cluster agrees is down (here: gossip's failure detector).
fn fail(node: &NodeView) -> &'static str {
    if node.down {
        ",fail"
    } else {
        ""
    }
}

/// The link state column: whether this node hears the other.
fn link(node: &NodeView) -> &'static str {
    if node.down {
        "disconnected"
    } else {
        "connected"
    }
}

/// Redis's default cluster bus port; AutoCache has no cluster bus, but clients parse the field.
fn cluster_bus_port(port: u16) -> u32 {
    port as u32 + 10000
}

fn info(session: &Session) -> String {
    let shards = topology(session);
    let assigned: usize = shards
        .iter()
        .flat_map(|s| &s.slots)
        .map(|&(a, b)| (b - a) as usize + 1)
        .sum();
    let known = shards.iter().map(|s| 1 + s.replicas.len()).sum::<usize>();
    let size = shards.iter().filter(|s| !s.slots.is_empty()).count();
    let groups = &session.server.groups;
    let led = (0..session.server.db.groups() as u32).all(|g| groups.leader_of(g).is_some());
    let state = if assigned == SLOT_COUNT && led {
        "ok"
    } else {
        "fail"
    };
    format!(
        "cluster_state:{state}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{assigned}\r\n\
         cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{known}\r\n\
         cluster_size:{size}\r\ncluster_current_epoch:0\r\ncluster_my_epoch:0\r\n\
         cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n\
         total_cluster_links_buffer_limit_exceeded:0\r\n"
    )
}

const HELP: &[&str] = &[
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MYID",
    "    Return the node id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
];
