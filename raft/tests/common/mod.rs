//! A cluster of raft nodes in one process, talking gRPC over loopback through a link filter,
//! and helpers to write and read one group through them.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::link_filter::LinkFilter;
use raft::{AccessError, Groups, GroupsConfig, NodeAddr, NodeId, Op, Placement, Request, Response};
use resp::{CommandTable, Frame};
use tiering::{Caller, Db, ExecCtx};

pub struct Node {
    pub id: NodeId,
    pub db: Arc<Db>,
    /// In an Arc so the node can answer replica calls (see `Groups::serve_replica_calls`).
    pub groups: Arc<Groups>,
}

pub struct Cluster {
    /// None while stopped.
    pub nodes: Vec<Option<Node>>,
    pub filter: LinkFilter,
    pub placement: Placement,
    pub snapshot_every: u64,
    pub dir: tempfile::TempDir,
    /// Addresses of nodes started outside the member list, by id.
    pub joiners: std::collections::BTreeMap<NodeId, NodeAddr>,
    /// Slot groups, each replicated on all three nodes.
    pub groups: u32,
}

/// `n` distinct loopback addresses free right now. Their listeners are held until all are
/// chosen: a released port is often the next one handed out, and two nodes given one address
/// would send each other's messages to themselves.
pub fn free_addrs(n: usize) -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().to_string())
        .collect()
}

impl Cluster {
    /// Starts three nodes replicating one group (preferred leader: node 1).
    pub async fn start(snapshot_every: u64) -> Cluster {
        Cluster::start_groups(1, snapshot_every).await
    }

    /// Starts three nodes replicating `groups` groups (group g's preferred leader: node
    /// g mod 3 + 1).
    pub async fn start_groups(groups: u32, snapshot_every: u64) -> Cluster {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let filter = LinkFilter::default();
        let members = free_addrs(3)
            .into_iter()
            .zip(1..=3)
            .map(|(raft, id)| {
                let addr = NodeAddr {
                    client: format!("127.0.0.1:{}", 6000 + id),
                    raft,
                };
                (id, addr)
            })
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            filter,
            placement: Placement::new(members, 3).unwrap(),
            snapshot_every,
            dir,
            joiners: Default::default(),
            groups,
        };
        for id in 1..=3 {
            let node = cluster.start_node(id).await;
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    /// Starts node `id` from its data directory (empty the first time).
    pub async fn start_node(&self, id: NodeId) -> Node {
        let db = Arc::new(Db::new(self.groups as usize));
        let config = GroupsConfig {
            node_id: id,
            placement: self.placement.clone(),
            groups: self.groups,
            dir: self.dir.path().join(format!("node{id}")),
            snapshot_every: self.snapshot_every,
            link_filter: Some(self.filter.clone()),
            joining: self.joiners.get(&id).cloned(),
            unsafe_stale_reads: false,
        };
        let groups = Arc::new(Groups::start(config, db.clone()).await.unwrap());
        groups.serve_replica_calls(Arc::downgrade(&groups));
        Node { id, db, groups }
    }

    /// Starts node `id` outside the member list: it replicates nothing until replicas are
    /// moved onto it.
    pub async fn join(&mut self, id: NodeId) {
        let addr = NodeAddr {
            client: format!("127.0.0.1:{}", 6000 + id),
            // The running nodes hold their ports, so a fresh one differs from theirs.
            raft: free_addrs(1).remove(0),
        };
        self.joiners.insert(id, addr);
        let node = self.start_node(id).await;
        let index = id as usize - 1;
        if self.nodes.len() <= index {
            self.nodes.resize_with(index + 1, || None);
        }
        self.nodes[index] = Some(node);
    }

    /// The raft address of node `id`.
    pub fn raft_addr(&self, id: NodeId) -> String {
        self.placement
            .member(id)
            .or_else(|| self.joiners.get(&id))
            .map(|addr| addr.raft.clone())
            .expect("a known node")
    }

    /// Stops node `id`; its memory is gone, its disk kept.
    pub async fn stop(&mut self, id: NodeId) {
        let node = self.nodes[id as usize - 1].take().expect("running");
        node.groups.shutdown().await;
    }

    /// Starts a stopped node `id` again, from its disk alone.
    pub async fn restart(&mut self, id: NodeId) {
        let node = self.start_node(id).await;
        self.nodes[id as usize - 1] = Some(node);
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes[id as usize - 1].as_ref().expect("node stopped")
    }

    /// Waits until one of `candidates` leads `group` as it sees it.
    pub async fn wait_leader_of(&self, group: u32, candidates: &[NodeId]) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(&id) = candidates
                .iter()
                .find(|&&id| self.node(id).groups.is_leader(group))
            {
                return id;
            }
            assert!(Instant::now() < deadline, "no leader of group {group}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until one of `candidates` leads the group, as every candidate sees it.
    pub async fn wait_leader(&self, candidates: &[NodeId], timeout: Duration) -> NodeId {
        let deadline = Instant::now() + timeout;
        loop {
            let leaders: Vec<NodeId> = candidates
                .iter()
                .filter(|&&id| self.node(id).groups.is_leader(0))
                .copied()
                .collect();
            let agreed = leaders.len() == 1
                && candidates.iter().all(|&id| {
                    self.node(id).groups.leader_of(0).map(|(l, _)| l) == Some(leaders[0])
                });
            if agreed {
                return leaders[0];
            }
            assert!(
                Instant::now() < deadline,
                "no single leader among {candidates:?} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Cluster {
    /// Waits until node 1, the group's preferred leader, leads it: before that, the leader
    /// balancer may move leadership in the middle of a test.
    pub async fn wait_settled(&self) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = self.wait_leader(&[1, 2, 3], Duration::from_secs(20)).await;
            if leader == 1 {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "node 1 did not become the leader"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Proposes SET `key` `value` through node `node`.
pub async fn set(node: &Node, key: &str, value: &str) -> Result<Response, AccessError> {
    let request = Request {
        now_ms: 1,
        seed: 0,
        op: Op::Command(
            [b"SET".as_slice(), key.as_bytes(), value.as_bytes()]
                .map(bytes::Bytes::copy_from_slice)
                .to_vec(),
        )
        .into(),
    };
    node.groups.propose(0, request).await?.outcome().await
}

/// GET `key` from node `node`'s local keyspace (what its state machine applied).
pub fn local_get(node: &Node, key: &str) -> Frame {
    let args = vec![
        Bytes::from_static(b"GET"),
        Bytes::copy_from_slice(key.as_bytes()),
    ];
    let spec = CommandTable::get().lookup_request(&args).unwrap();
    let ctx = ExecCtx { now_ms: 1, seed: 0 };
    node.db.execute(spec, &args, ctx, &Caller::default()).reply
}

/// Waits until node `node` has applied `key` = `value`.
pub async fn wait_applied(node: &Node, key: &str, value: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let want = Frame::Bulk(Bytes::copy_from_slice(value.as_bytes()));
    while local_get(node, key) != want {
        assert!(
            Instant::now() < deadline,
            "node {} did not apply {key}={value}: {:?}",
            node.id,
            local_get(node, key)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SETs `key` to `value` through node `node`, as a client would: a refusal that certainly did
/// not apply (a leader whose lease lapsed under load, or one stepping down) is retried for a few
/// seconds; anything else must be a committed OK.
pub async fn commit(node: &Node, key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match set(node, key, value).await {
            Err(AccessError::NotLeader { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => return committed(result),
        }
    }
}

/// SETs `key` to `value` through whichever of `candidates` leads group 0, following the
/// leadership if it moves before the write is taken (a refusal that certainly did not apply).
pub async fn commit_to_leader(cluster: &Cluster, candidates: &[NodeId], key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = cluster
            .wait_leader(candidates, Duration::from_secs(20))
            .await;
        match set(cluster.node(leader), key, value).await {
            Err(AccessError::NotLeader { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            result => return committed(result),
        }
    }
}

pub fn committed(result: Result<Response, AccessError>) {
    match result {
        Ok(Response::Reply(Frame::Simple(ok))) if &ok[..] == "OK" => {}
        other => panic!("write not committed: {other:?}"),
    }
}
