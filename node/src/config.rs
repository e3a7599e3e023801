//! The server's configuration: defaults, an optional TOML file, then command-line flags.
//! Every option is documented in `deploy/autocache.toml`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use raft::{NodeAddr, NodeId, Placement};
use serde::Deserialize;

use crate::output_limit::OutputLimits;

/// The server's settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Address to listen on for clients.
    pub bind: IpAddr,
    /// Port to listen on for clients.
    pub port: u16,
    /// Directory of the node's data.
    pub data_dir: PathBuf,
    /// Password of the `default` user; empty means no authentication.
    pub requirepass: String,
    /// Most clients connected at once.
    pub maxclients: usize,
    /// Seconds of inactivity after which a client is disconnected (0: never).
    pub timeout: u64,
    /// Largest bulk argument a client may send, in bytes.
    pub proto_max_bulk_len: usize,
    /// Most unprocessed input buffered per client, in bytes.
    pub client_query_buffer_limit: usize,
    /// `client-output-buffer-limit`, as Redis writes it (classes `normal`, `slave`/`replica`,
    /// `pubsub`, each with hard limit, soft limit and soft seconds); only `pubsub` acts.
    pub client_output_buffer_limit: String,
    /// Commands slower than this many microseconds are logged to SLOWLOG (-1: none).
    pub slowlog_log_slower_than: i64,
    /// Entries kept in SLOWLOG.
    pub slowlog_max_len: usize,
    /// Times per second the expiry cycle runs.
    pub hz: u32,
    /// Number of slot groups the keyspace is split into (each is one raft group).
    pub groups: usize,
    /// A group snapshots its data, letting it drop older log entries, every this many entries
    /// (and, holding over 100,000 keys, no sooner than it applied half as many entries).
    pub snapshot_every: u64,
    /// Worker threads serving clients (0: one per core minus one, at least one).
    pub threads: usize,
    /// This node's id in `members`.
    pub node_id: u64,
    /// The cluster's members as `ID=CLIENT_HOST:PORT/RAFT_HOST:PORT`; empty for a one-node
    /// cluster of this node alone.
    pub members: Vec<String>,
    /// Replicas of each slot group (at most the number of members).
    pub replicas: usize,
    /// For a node joining a running cluster, outside `members`: its own addresses as
    /// `CLIENT_HOST:PORT/RAFT_HOST:PORT`. It starts replicating nothing; `autocache admin
    /// add-node` moves replicas onto it. Empty: a member.
    pub join: String,
    /// For a joining node without `members`: raft addresses (`HOST:PORT`) of running nodes,
    /// which it asks for the member list, groups and replicas (see `seeds.rs`).
    pub seeds: Vec<String>,
    /// Port of the Prometheus endpoint (`GET /metrics`) on the bind address; 0: none.
    pub metrics_port: u16,
    /// The cluster's name in gossip: members of another cluster are ignored.
    pub cluster_id: String,
    /// UNSAFE, test-only: serve reads from any replica's local state, unconfirmed (stale
    /// reads). Exists so the correctness harness can prove it catches a broken server.
    #[serde(skip)]
    pub unsafe_stale_reads: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 6379,
            data_dir: PathBuf::from("./data"),
            requirepass: String::new(),
            maxclients: 10000,
            timeout: 0,
            proto_max_bulk_len: 512 * 1024 * 1024,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            client_output_buffer_limit: OutputLimits::default().render(),
            slowlog_log_slower_than: 10000,
            slowlog_max_len: 128,
            hz: 10,
            groups: 16,
            snapshot_every: 10000,
            threads: 0,
            node_id: 1,
            members: Vec::new(),
            replicas: 3,
            join: String::new(),
            seeds: Vec::new(),
            metrics_port: 0,
            cluster_id: "autocache".to_string(),
            unsafe_stale_reads: false,
        }
    }
}

impl Config {
    /// Reads a TOML file; unknown keys and bad values are errors that name the key.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config file {}", path.display()))?;
        let config: Config = toml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        Ok(config)
    }

    /// The output buffer limits of every client class (see `client_output_buffer_limit`).
    pub fn output_limits(&self) -> anyhow::Result<OutputLimits> {
        let mut limits = OutputLimits::default();
        limits
            .apply(&self.client_output_buffer_limit)
            .map_err(|e| anyhow::anyhow!("client-output-buffer-limit: {e}"))?;
        Ok(limits)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.maxclients == 0 {
            bail!("maxclients must be at least 1");
        }
        if self.proto_max_bulk_len < 1024 * 1024 {
            bail!("proto-max-bulk-len must be at least 1mb (1048576)");
        }
        if self.client_query_buffer_limit < 1024 * 1024 {
            bail!("client-query-buffer-limit must be at least 1mb (1048576)");
        }
        self.output_limits()?;
        if !(1..=500).contains(&self.hz) {
            bail!("hz must be between 1 and 500");
        }
        if !(1..=16384).contains(&self.groups) {
            bail!("groups must be between 1 and 16384");
        }
        if self.snapshot_every == 0 {
            bail!("snapshot-every must be at least 1");
        }
        if self.replicas == 0 {
            bail!("replicas must be at least 1");
        }
        if !self.members.is_empty() {
            let members = self.member_map()?;
            let me = match self.joining()? {
                Some(me) => {
                    if members.contains_key(&self.node_id) {
                        bail!(
                            "node-id {} is a member: only a new id can join",
                            self.node_id
                        );
                    }
                    me
                }
                None => match members.get(&self.node_id) {
                    Some(me) => me.clone(),
                    None => bail!("node-id {} is not in members", self.node_id),
                },
            };
            let port = me.client.rsplit_once(':').map(|(_, port)| port);
            if port != Some(self.port.to_string().as_str()) {
                bail!(
                    "node {} has the client address {}, but it listens on port {}",
                    self.node_id,
                    me.client,
                    self.port
                );
            }
        } else if !self.join.is_empty() && self.seeds.is_empty() {
            bail!("join needs seeds (or members): running nodes to find the cluster by");
        }
        if !self.seeds.is_empty() && self.join.is_empty() {
            bail!("seeds are for a node that joins: give its addresses with join");
        }
        if self.cluster_id.is_empty() || self.cluster_id.len() > 64 {
            bail!("cluster-id must be 1 to 64 characters");
        }
        if self.requirepass.chars().any(|c| c.is_whitespace()) {
            bail!("requirepass must not contain whitespace");
        }
        Ok(())
    }
}

impl Config {
    /// The member list by id.
    pub fn member_map(&self) -> anyhow::Result<BTreeMap<NodeId, NodeAddr>> {
        let mut members = BTreeMap::new();
        for entry in &self.members {
            let (id, addr) = parse_member(entry).with_context(|| {
                format!("bad member {entry:?}: expected ID=CLIENT_HOST:PORT/RAFT_HOST:PORT")
            })?;
            if let Some((other, _)) = members.iter().find(|(_, known): &(&NodeId, &NodeAddr)| {
                known.raft == addr.raft || known.client == addr.client
            }) {
                bail!("members {other} and {id} share an address: every member needs its own");
            }
            if members.insert(id, addr).is_some() {
                bail!("member id {id} is listed twice");
            }
        }
        Ok(members)
    }

    /// This node's own addresses when it joins a running cluster (`join`), else None.
    pub fn joining(&self) -> anyhow::Result<Option<NodeAddr>> {
        if self.join.is_empty() {
            return Ok(None);
        }
        let (_, addr) =
            parse_member(&format!("{}={}", self.node_id, self.join)).with_context(|| {
                format!(
                    "bad join {:?}: expected CLIENT_HOST:PORT/RAFT_HOST:PORT",
                    self.join
                )
            })?;
        Ok(Some(addr))
    }

    /// This node's addresses: its member entry, or what it joins with.
    pub fn own_addr(&self) -> anyhow::Result<Option<NodeAddr>> {
        match self.joining()? {
            Some(addr) => Ok(Some(addr)),
            None => Ok(self.member_map()?.get(&self.node_id).cloned()),
        }
    }

    /// Where this node's groups live: the member list, or this node alone (clients reach it at
    /// `client_addr`) when there is none.
    pub fn placement(&self, client_addr: SocketAddr) -> anyhow::Result<Placement> {
        if self.members.is_empty() {
            let addr = NodeAddr {
                client: client_addr.to_string(),
                raft: String::new(),
            };
            return Ok(Placement::single(self.node_id, addr));
        }
        let members = self.member_map()?;
        let replicas = self.replicas.min(members.len());
        Ok(Placement::new(members, replicas)?)
    }
}

/// Parses `ID=CLIENT_HOST:PORT/RAFT_HOST:PORT`.
fn parse_member(entry: &str) -> anyhow::Result<(NodeId, NodeAddr)> {
    let (id, addrs) = entry.split_once('=').context("no '='")?;
    let id: NodeId = id.trim().parse().context("the id is not a number")?;
    let (client, raft) = addrs.split_once('/').context("no '/'")?;
    for addr in [client, raft] {
        addr.parse::<SocketAddr>()
            .with_context(|| format!("{addr:?} is not an ip:port"))?;
    }
    Ok((
        id,
        NodeAddr {
            client: client.to_string(),
            raft: raft.to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = toml::from_str::<Config>("prot = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(toml::from_str::<Config>("port = 70000").is_err());
        let config: Config = toml::from_str("hz = 0").unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn members_parse_and_must_include_this_node() {
        let mut config = Config {
            port: 7001,
            node_id: 2,
            members: vec![
                "1=127.0.0.1:7000/127.0.0.1:17000".into(),
                "2=127.0.0.1:7001/127.0.0.1:17001".into(),
            ],
            ..Config::default()
        };
        config.validate().unwrap();
        let placement = config.placement("127.0.0.1:7001".parse().unwrap()).unwrap();
        assert_eq!(
            placement.replicas(),
            2,
            "replicas are capped at the member count"
        );
        assert_eq!(placement.member(1).unwrap().raft, "127.0.0.1:17000");
        config.node_id = 3;
        assert!(config.validate().is_err());
        config.node_id = 2;
        config
            .members
            .push("3=localhost:7002/127.0.0.1:17002".into());
        let err = config.validate().unwrap_err();
        assert!(format!("{err:#}").contains("localhost:7002"), "{err:#}");
        config.members[2] = "3=127.0.0.1:7002/127.0.0.1:17001".into();
        let err = config.validate().unwrap_err();
        assert!(format!("{err:#}").contains("share an address"), "{err:#}");
    }

    #[test]
    fn a_joining_node_brings_a_new_id_and_its_own_addresses() {
        let mut config = Config {
            port: 7003,
            node_id: 4,
            members: vec!["1=127.0.0.1:7000/127.0.0.1:17000".into()],
            join: "127.0.0.1:7003/127.0.0.1:17003".into(),
            ..Config::default()
        };
        config.validate().unwrap();
        assert_eq!(config.own_addr().unwrap().unwrap().raft, "127.0.0.1:17003");
        config.node_id = 1;
        let err = config.validate().unwrap_err();
        assert!(
            format!("{err:#}").contains("only a new id can join"),
            "{err:#}"
        );
        config.node_id = 4;
        config.port = 7004;
        assert!(
            config.validate().is_err(),
            "the join address names another port"
        );
        config.port = 7003;
        config.members.clear();
        assert!(config.validate().is_err(), "join without members or seeds");
        config.seeds = vec!["127.0.0.1:17000".into()];
        config.validate().unwrap();
        config.join.clear();
        let err = config.validate().unwrap_err();
        assert!(
            format!("{err:#}").contains("seeds are for a node that joins"),
            "{err:#}"
        );
    }

    #[test]
    fn documented_config_file_parses_to_the_defaults() {
        // Read at run time: a test binary reused from another checkout of the same sources
        // would otherwise look in that checkout.
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        let path = Path::new(&dir).join("../deploy/autocache.toml");
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config, Config::default());
    }
}
