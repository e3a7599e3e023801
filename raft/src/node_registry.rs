//! The cluster's node registry, kept in the metadata group: a raft group of its own (id: the
//! number of slot groups), replicated on the first three members (five in a cluster of five or
//! more), whose state machine is a keyspace apart from the data (so no client sees it).
//!
//! The static members are registered implicitly; a node that joins is registered by
//! `autocache admin add-node` before any replica moves onto it, and retired by `remove-node`
//! once it holds none. Node ids are never reused: a retired id, or an id registered with other
//! addresses, is refused. Changes are transactions that WATCH the registry, so two admins
//! registering at once cannot both take one id.

use std::collections::BTreeMap;

use bytes::Bytes;
use resp::{CommandTable, Frame};
use serde::{Deserialize, Serialize};
use tiering::{Caller, ExecCtx};

use crate::client::AccessError;
use crate::groups::Groups;
use crate::log_store::{decode, encode};
use crate::placement::Placement;
use crate::replica_call::{send, CallError};
use crate::replicas::{ReplicaCall, ReplicaError, ReplicaReply};
use crate::request::{Op, Request, Response, WatchedKey};
use crate::typ::{GroupId, NodeAddr, NodeId};

/// The hash holding the registry: node id → encoded [`RegisteredNode`].
const NODES: &[u8] = b"nodes";

/// How many times a registration is retried when another one changed the registry meanwhile.
const ATTEMPTS: usize = 5;

/// A node the registry knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredNode {
    pub id: NodeId,
    pub addr: NodeAddr,
    /// Retired: it left the cluster, and its id is never used again.
    pub retired: bool,
}

/// The replicas of the metadata group in a cluster with these static members: the first three
/// by id (five from five members on). None for a node alone.
pub fn meta_members(placement: &Placement) -> BTreeMap<NodeId, NodeAddr> {
    let members = placement.members();
    if members.len() < 2 {
        return BTreeMap::new();
    }
    let count = if members.len() >= 5 { 5 } else { 3 };
    members
        .iter()
        .take(count)
        .map(|(id, addr)| (*id, addr.clone()))
        .collect()
}

pub(crate) fn access_error(group: GroupId, error: AccessError) -> ReplicaError {
    match error {
        AccessError::NotLeader { .. } => ReplicaError::NotLeader {
            group,
            leader: None,
        },
        AccessError::Uncertain(message) => ReplicaError::Raft { group, message },
        error @ AccessError::TooLarge { .. } => ReplicaError::Raft {
            group,
            message: error.to_string(),
        },
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Groups {
    /// The metadata group's id: the one after the slot groups.
    pub fn meta_group(&self) -> GroupId {
        self.len() as GroupId
    }

    /// Every node of the registry, the static members first (as linearizable reads on the
    /// metadata group's leader).
    pub async fn registered_nodes(&self) -> Result<Vec<RegisteredNode>, ReplicaError> {
        let group = self.meta_group();
        self.read_fence(group)
            .await
            .map_err(|e| access_error(group, e))?;
        Ok(self.registry_now().into_values().collect())
    }

    /// Registers node `id` at `addr`: a new id, or the same node again (done). Refused for an
    /// id that is retired or registered with other addresses.
    pub async fn register_node(&self, id: NodeId, addr: NodeAddr) -> Result<(), ReplicaError> {
        self.change_registry(id, |known| match known {
            Some(node) if node.retired => Err(ReplicaError::NodeIdUsed {
                node: id,
                why: "it was retired: node ids are never reused".into(),
            }),
            Some(node) if node.addr != addr => Err(ReplicaError::NodeIdUsed {
                node: id,
                why: format!(
                    "it is registered at {}/{}",
                    node.addr.client, node.addr.raft
                ),
            }),
            Some(_) => Ok(None),
            None => Ok(Some(RegisteredNode {
                id,
                addr: addr.clone(),
                retired: false,
            })),
        })
        .await
    }

    /// Retires node `id`: it left, and its id is never used again. Done if retired already;
    /// refused while the placement record still places it in a slot group.
    pub async fn retire_node(&self, id: NodeId) -> Result<(), ReplicaError> {
        self.change_registry(id, |known| match known {
            Some(node) if !node.retired && !self.groups_placed_on(id).is_empty() => {
                Err(ReplicaError::StillPlaced {
                    node: id,
                    groups: self.groups_placed_on(id),
                })
            }
            None => Err(ReplicaError::NodeIdUsed {
                node: id,
                why: "no such node is registered".into(),
            }),
            Some(node) if node.retired => Ok(None),
            Some(node) => Ok(Some(RegisteredNode {
                retired: true,
                ..node.clone()
            })),
        })
        .await
    }

    /// Reads node `id`'s entry, asks `change` what to write (None: nothing, the change is
    /// done), and writes it in a transaction that applies only if the registry did not change
    /// since the read (else reads again).
    async fn change_registry<F>(&self, id: NodeId, change: F) -> Result<(), ReplicaError>
    where
        F: Fn(Option<&RegisteredNode>) -> Result<Option<RegisteredNode>, ReplicaError>,
    {
        let group = self.meta_group();
        let raft_error = |message: String| ReplicaError::Raft { group, message };
        self.change_meta(NODES, || {
            let registry = self.registry_now();
            let Some(entry) = change(registry.get(&id))? else {
                return Ok(None);
            };
            let value = encode(&entry).map_err(|e| raft_error(e.to_string()))?;
            tracing::info!(node = id, retired = entry.retired, "node registry change");
            Ok(Some(vec![
                b"HSET".to_vec(),
                NODES.to_vec(),
                id.to_string().into_bytes(),
                value,
            ]))
        })
        .await
    }

    /// A read-modify-write of the metadata group's key `key`: after a read fence, `write`
    /// reads the state and returns the command to run (None: nothing to do), which applies in
    /// a transaction only if `key` did not change since (else all over again).
    pub(crate) async fn change_meta<F>(&self, key: &[u8], write: F) -> Result<(), ReplicaError>
    where
        F: Fn() -> Result<Option<Vec<Vec<u8>>>, ReplicaError>,
    {
        let group = self.meta_group();
        let raft_error = |message: String| ReplicaError::Raft { group, message };
        for _ in 0..ATTEMPTS {
            self.read_fence(group)
                .await
                .map_err(|e| access_error(group, e))?;
            let now = now_ms();
            let watch = self.meta_db().watch(key, now);
            let Some(command) = write()? else {
                return Ok(());
            };
            let request = Request {
                now_ms: now,
                seed: 0,
                op: Op::Transaction {
                    commands: vec![command.into_iter().map(Bytes::from).collect()],
                    watches: vec![WatchedKey {
                        key: key.to_vec(),
                        expired: watch.expired,
                        applied: watch.applied,
                    }],
                }
                .into(),
            };
            let pending = self
                .propose(group, request)
                .await
                .map_err(|e| access_error(group, e))?;
            match pending.outcome().await {
                Ok(Response::Reply(Frame::Array(_))) => return Ok(()),
                // Another change came first: read again.
                Ok(Response::Reply(Frame::NullArray)) => continue,
                Ok(other) => return Err(raft_error(format!("unexpected reply {other:?}"))),
                Err(error) => return Err(access_error(group, error)),
            }
        }
        Err(raft_error(
            "the metadata kept changing; try again".to_string(),
        ))
    }

    /// Sends `call` to the metadata group's leader: this node if it leads it, else every
    /// node it knows in turn until one takes it. The last refusal when none does.
    pub(crate) async fn ask_meta_leader(
        &self,
        call: ReplicaCall,
    ) -> Result<ReplicaReply, ReplicaError> {
        let mut last = ReplicaError::NotLeader {
            group: self.meta_group(),
            leader: None,
        };
        if self.is_leader(self.meta_group()) {
            match Box::pin(self.answer(call.clone())).await {
                Ok(reply) => return Ok(reply),
                Err(error) => last = error,
            }
        }
        for (id, addr) in self.members() {
            if id == self.node_id() {
                continue;
            }
            match send(&addr.raft, call.clone()).await {
                Ok(reply) => return Ok(reply),
                // A node that does not lead (or replicate) the metadata group refuses.
                Err(CallError::Refused(error)) => last = error,
                Err(CallError::Unreachable { .. }) => {}
            }
        }
        Err(last)
    }

    /// Runs a read-only command on this node's metadata replica.
    pub(crate) fn meta_read(&self, args: &[Bytes]) -> Frame {
        let spec = CommandTable::get()
            .lookup_request(args)
            .expect("a command of the command table");
        let ctx = ExecCtx {
            now_ms: now_ms(),
            seed: 0,
        };
        self.meta_db()
            .execute(spec, args, ctx, &Caller::default())
            .reply
    }

    /// The registry as this node's metadata replica holds it now: the static members, then
    /// what was registered (which may retire a static member).
    fn registry_now(&self) -> BTreeMap<NodeId, RegisteredNode> {
        let mut registry: BTreeMap<NodeId, RegisteredNode> = self
            .placement()
            .members()
            .iter()
            .map(|(id, addr)| {
                let node = RegisteredNode {
                    id: *id,
                    addr: addr.clone(),
                    retired: false,
                };
                (*id, node)
            })
            .collect();
        for node in self.meta_hash_entries::<RegisteredNode>(NODES) {
            registry.insert(node.id, node);
        }
        registry
    }

    /// Every readable entry of the metadata hash `key` (postcard values), as this node's
    /// metadata replica holds it; an unreadable one is logged and skipped.
    pub(crate) fn meta_hash_entries<T: serde::de::DeserializeOwned>(
        &self,
        key: &'static [u8],
    ) -> Vec<T> {
        let reply = self.meta_read(&[Bytes::from_static(b"HGETALL"), Bytes::from_static(key)]);
        let Frame::Map(pairs) = reply else {
            return Vec::new();
        };
        pairs
            .into_iter()
            .filter_map(|(_, value)| match value {
                Frame::Bulk(bytes) => decode::<T>(&bytes)
                    .map_err(|error| {
                        let hash = String::from_utf8_lossy(key);
                        tracing::warn!(%error, %hash, "unreadable metadata entry");
                    })
                    .ok(),
                _ => None,
            })
            .collect()
    }
}
