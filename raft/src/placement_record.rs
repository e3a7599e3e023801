//! The placement record: which nodes replicate each group, kept by the metadata group.
//!
//! A group's own raft membership decides who votes in it; the record mirrors those
//! memberships in one place the whole cluster can read (`admin status`, an operator) and
//! against which a node's retirement is checked. Each group's leader reports its membership
//! once the membership entry is applied (so committed: a later leader can only hold it or a
//! newer one), versioned by that entry's log id; the record keeps the newest version per
//! group, so a late, repeated or concurrent report changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use openraft::async_runtime::watch::WatchReceiver;
use serde::{Deserialize, Serialize};

use crate::groups::Groups;
use crate::log_store::encode;
use crate::replicas::{ReplicaCall, ReplicaError};
use crate::typ::{GroupId, NodeId};

/// The metadata hash holding the record: group id → encoded [`RecordedReplicas`].
const PLACEMENT: &[u8] = b"placement";

/// One group's replicas as its leader committed them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedReplicas {
    pub group: GroupId,
    /// The log id of the membership entry, as (term, index): a newer membership is greater.
    pub version: (u64, u64),
    /// Voters of every configuration in force (two while a change is joint).
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl Groups {
    /// The membership of every group this node leads (the metadata group too) whose
    /// membership entry it has applied.
    pub fn committed_memberships(&self) -> Vec<RecordedReplicas> {
        (0..=self.len() as GroupId)
            .filter_map(|group| {
                let raft = self.raft(group)?;
                let metrics = raft.metrics();
                let metrics = metrics.borrow_watched();
                if metrics.current_leader != Some(self.node_id()) {
                    return None;
                }
                let stored = &metrics.membership_config;
                let log_id = stored.log_id().as_ref();
                let applied = metrics.last_applied.as_ref().map_or(0, |id| id.index);
                let version = log_id.map_or((0, 0), |id| (id.leader_id.term, id.index));
                if version.1 > applied {
                    return None;
                }
                let membership = stored.membership();
                Some(RecordedReplicas {
                    group,
                    version,
                    voters: membership.voter_ids().collect(),
                    learners: membership.learner_ids().collect(),
                })
            })
            .collect()
    }

    /// Records `reports` where they are newer than what the record holds (metadata leader).
    /// Returns how many changed the record.
    pub async fn record_placement(
        &self,
        reports: &[RecordedReplicas],
    ) -> Result<u64, ReplicaError> {
        let meta = self.meta_group();
        if let Some(report) = reports.iter().find(|r| r.group > meta) {
            return Err(ReplicaError::NoSuchGroup(report.group));
        }
        // The closure runs again when another change came first: it says how many it wrote.
        let changed = AtomicU64::new(0);
        self.change_meta(PLACEMENT, || {
            let recorded = self.placement_now();
            let mut command = vec![b"HSET".to_vec(), PLACEMENT.to_vec()];
            let mut newer = 0;
            for report in reports {
                if recorded
                    .get(&report.group)
                    .is_some_and(|known| known.version >= report.version)
                {
                    continue;
                }
                let value = encode(report).map_err(|e| ReplicaError::Raft {
                    group: meta,
                    message: e.to_string(),
                })?;
                command.push(report.group.to_string().into_bytes());
                command.push(value);
                newer += 1;
            }
            changed.store(newer, Ordering::Relaxed);
            Ok((newer > 0).then_some(command))
        })
        .await?;
        Ok(changed.into_inner())
    }

    /// The placement record, read on the metadata group's leader (linearizable).
    pub async fn recorded_placement(&self) -> Result<Vec<RecordedReplicas>, ReplicaError> {
        let group = self.meta_group();
        self.read_fence(group)
            .await
            .map_err(|e| crate::node_registry::access_error(group, e))?;
        Ok(self.placement_now().into_values().collect())
    }

    /// The slot groups the record places on `node` (as voter or learner).
    pub(crate) fn groups_placed_on(&self, node: NodeId) -> Vec<GroupId> {
        self.placement_now()
            .into_values()
            .filter(|r| r.group < self.meta_group())
            .filter(|r| r.voters.contains(&node) || r.learners.contains(&node))
            .map(|r| r.group)
            .collect()
    }

    /// The record as this node's metadata replica holds it.
    fn placement_now(&self) -> BTreeMap<GroupId, RecordedReplicas> {
        self.meta_hash_entries::<RecordedReplicas>(PLACEMENT)
            .into_iter()
            .map(|replicas| (replicas.group, replicas))
            .collect()
    }

    /// Reports to the metadata group the memberships of the groups this node leads that
    /// changed since `reported` (the versions reported before, updated on success).
    pub async fn report_placement(
        &self,
        reported: &mut BTreeMap<GroupId, (u64, u64)>,
    ) -> Result<(), ReplicaError> {
        let reports: Vec<RecordedReplicas> = self
            .committed_memberships()
            .into_iter()
            .filter(|r| reported.get(&r.group) != Some(&r.version))
            .collect();
        if reports.is_empty() {
            return Ok(());
        }
        self.ask_meta_leader(ReplicaCall::RecordPlacement(reports.clone()))
            .await?;
        for report in reports {
            tracing::debug!(group = report.group, version = ?report.version, "placement reported");
            reported.insert(report.group, report.version);
        }
        Ok(())
    }
}
