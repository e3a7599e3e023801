//! The slot → group map, kept by the metadata group with an epoch that every recorded slot
//! move raises. Nodes learn of a newer epoch by gossip and fetch the map; they use it to route
//! (and redirect) commands for slots of groups they do not replicate. It never decides who
//! serves a slot: the groups' own state does (see `tiering::SlotState`).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use resp::Frame;
use serde::{Deserialize, Serialize};
use tiering::{SlotSet, SLOT_COUNT};

use crate::groups::Groups;
use crate::log_store::{decode, encode};
use crate::replicas::{ReplicaCall, ReplicaError, ReplicaReply};
use crate::typ::GroupId;

/// The metadata key holding the map.
const SLOT_MAP: &[u8] = b"slotmap";

/// Which group owns each slot, as recorded; `epoch` 1 is the ranges of `--groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotMap {
    pub epoch: u64,
    /// Inclusive runs of slots and their group, in slot order, covering every slot.
    pub runs: Vec<(u16, u16, GroupId)>,
}

impl SlotMap {
    /// The map of a new cluster: `groups` contiguous ranges, epoch 1.
    pub fn initial(groups: usize) -> SlotMap {
        let owners: Vec<GroupId> = (0..SLOT_COUNT)
            .map(|slot| (slot * groups / SLOT_COUNT) as GroupId)
            .collect();
        SlotMap::from_owners(1, &owners)
    }

    fn from_owners(epoch: u64, owners: &[GroupId]) -> SlotMap {
        let mut runs: Vec<(u16, u16, GroupId)> = Vec::new();
        for (slot, &group) in owners.iter().enumerate() {
            let slot = slot as u16;
            match runs.last_mut() {
                Some(run) if run.2 == group && run.1 + 1 == slot => run.1 = slot,
                _ => runs.push((slot, slot, group)),
            }
        }
        SlotMap { epoch, runs }
    }

    /// Every slot's group, indexed by slot.
    pub fn owners(&self) -> Vec<GroupId> {
        let mut owners = vec![0; SLOT_COUNT];
        for &(first, last, group) in &self.runs {
            for slot in first..=last {
                if let Some(owner) = owners.get_mut(slot as usize) {
                    *owner = group;
                }
            }
        }
        owners
    }

    /// The map with `slots` owned by `group`, one epoch on; None if it says so already.
    pub fn assign(&self, slots: &[u16], group: GroupId) -> Option<SlotMap> {
        let mut owners = self.owners();
        let mut changed = false;
        for &slot in slots {
            if let Some(owner) = owners.get_mut(slot as usize) {
                changed |= *owner != group;
                *owner = group;
            }
        }
        changed.then(|| SlotMap::from_owners(self.epoch + 1, &owners))
    }
}

impl Groups {
    /// The map as this node's metadata replica holds it (the initial one if none was
    /// recorded).
    fn slot_map_now(&self) -> Result<SlotMap, ReplicaError> {
        let reply = self.meta_read(&[Bytes::from_static(b"GET"), Bytes::from_static(SLOT_MAP)]);
        match reply {
            Frame::Bulk(bytes) => decode(&bytes).map_err(|e| ReplicaError::Raft {
                group: self.meta_group(),
                message: format!("unreadable slot map: {e}"),
            }),
            _ => Ok(SlotMap::initial(self.len())),
        }
    }

    /// The slot map, read on the metadata group's leader (linearizable).
    pub async fn slot_map(&self) -> Result<SlotMap, ReplicaError> {
        let group = self.meta_group();
        self.read_fence(group)
            .await
            .map_err(|e| crate::node_registry::access_error(group, e))?;
        self.slot_map_now()
    }

    /// Records in the slot map that `group` owns `slots` (done if it says so already), and
    /// routes by the new map here. Returns the map's epoch.
    pub async fn record_slots(&self, slots: &[u16], group: GroupId) -> Result<u64, ReplicaError> {
        let meta = self.meta_group();
        if group as usize >= self.len() {
            return Err(ReplicaError::NoSuchGroup(group));
        }
        self.change_meta(SLOT_MAP, || {
            let Some(map) = self.slot_map_now()?.assign(slots, group) else {
                return Ok(None);
            };
            let value = encode(&map).map_err(|e| ReplicaError::Raft {
                group: meta,
                message: e.to_string(),
            })?;
            tracing::info!(
                epoch = map.epoch,
                slots = slots.len(),
                group,
                "slot map change"
            );
            Ok(Some(vec![b"SET".to_vec(), SLOT_MAP.to_vec(), value]))
        })
        .await?;
        let map = self.slot_map_now()?;
        self.apply_slot_map(&map);
        Ok(map.epoch)
    }

    /// The epoch of the slot map this node routes by (0: none fetched yet).
    pub fn slot_map_epoch(&self) -> u64 {
        self.slot_epoch.load(Ordering::Relaxed)
    }

    /// Routes by `map` if it is newer than the one applied: every slot to its group, except
    /// slots a group of this node owns or is importing, and slots a group of this node
    /// released after the map was made (its own state is newer than any map).
    pub fn apply_slot_map(&self, map: &SlotMap) {
        if map.epoch <= self.slot_map_epoch() {
            return;
        }
        let mut held = SlotSet::default();
        for group in 0..self.len() as GroupId {
            if self.raft(group).is_none() {
                continue;
            }
            let state = self.db().slot_state(group as usize);
            for slot in state.owned.iter().chain(state.arriving.keys().copied()) {
                held.insert(slot);
            }
        }
        for (slot, group) in map.owners().into_iter().enumerate() {
            let slot = slot as u16;
            if !held.contains(slot) {
                let group = self.db().follow_handoffs(slot, group as usize);
                self.db().set_route(slot, group);
            }
        }
        self.slot_epoch.store(map.epoch, Ordering::Relaxed);
        tracing::info!(epoch = map.epoch, "routing by a new slot map");
    }

    /// Fetches the slot map from the metadata group's leader and routes by it if it is newer.
    /// Returns the epoch now in use.
    pub async fn refresh_slot_map(&self) -> Result<u64, ReplicaError> {
        if let ReplicaReply::SlotMap(map) = self.ask_meta_leader(ReplicaCall::SlotMap).await? {
            self.apply_slot_map(&map);
        }
        Ok(self.slot_map_epoch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigning_slots_raises_the_epoch_once() {
        let map = SlotMap::initial(4);
        assert_eq!(
            map.runs,
            vec![
                (0, 4095, 0),
                (4096, 8191, 1),
                (8192, 12287, 2),
                (12288, 16383, 3)
            ]
        );
        let moved = map.assign(&[5, 6, 7], 2).unwrap();
        assert_eq!(moved.epoch, 2);
        assert_eq!(moved.runs[..3], [(0, 4, 0), (5, 7, 2), (8, 4095, 0)]);
        assert_eq!(moved.assign(&[5, 6], 2), None, "says so already");
        assert_eq!(moved.owners()[6], 2);
        assert_eq!(moved.owners()[8], 0);
    }
}
