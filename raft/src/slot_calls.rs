//! The steps of moving slots between groups, as a group's leader carries them out for a
//! coordinator: read a group's slot state, export a page of a handed-over slot's keys, and
//! propose a step (release, import, adopt, drop) to the group's log.

use serde::{Deserialize, Serialize};
use tiering::{SlotSet, SlotState};

use crate::groups::Groups;
use crate::node_registry::{access_error, now_ms};
use crate::replicas::ReplicaError;
use crate::request::{Request, Response, SlotOp};
use crate::typ::GroupId;

/// How many bytes of keys one exported page carries (one log entry of the importing group).
pub const PAGE_BYTES: usize = 256 * 1024;

/// A group's slot state as its leader answers it, and as its snapshots store it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSlots {
    pub group: GroupId,
    /// Owned slots, as inclusive runs.
    pub owned: Vec<(u16, u16)>,
    /// Slots released to another group: (slot, that group).
    pub handoff: Vec<(u16, GroupId)>,
    /// Slots being imported: (slot, import session).
    pub arriving: Vec<(u16, u64)>,
}

impl GroupSlots {
    pub(crate) fn of(group: GroupId, state: &SlotState) -> GroupSlots {
        GroupSlots {
            group,
            owned: state
                .owned
                .ranges()
                .into_iter()
                .map(|range| (*range.start(), *range.end()))
                .collect(),
            handoff: state.handoff.iter().map(|(s, g)| (*s, *g)).collect(),
            arriving: state.arriving.iter().map(|(s, id)| (*s, *id)).collect(),
        }
    }

    /// The slot state these runs describe (how a snapshot restores it).
    pub(crate) fn into_state(self) -> SlotState {
        let mut owned = SlotSet::default();
        for (first, last) in self.owned {
            for slot in first..=last {
                owned.insert(slot);
            }
        }
        SlotState {
            owned,
            handoff: self.handoff.into_iter().collect(),
            arriving: self.arriving.into_iter().collect(),
        }
    }

    pub fn owns(&self, slot: u16) -> bool {
        self.owned
            .iter()
            .any(|&(first, last)| (first..=last).contains(&slot))
    }

    /// The group `slot` was handed to, if this group released it.
    pub fn handed_to(&self, slot: u16) -> Option<GroupId> {
        self.handoff
            .iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, g)| *g)
    }
}

/// One page of handed-over slots' keys (see `tiering::Db::export_slots`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotPage {
    /// A `tiering::snapshot` dump of the page's keys.
    pub page: Vec<u8>,
    /// How many keys it holds.
    pub keys: u64,
    /// The slots it covers, and those among them whose first keys it holds.
    pub slots: Vec<u16>,
    pub starts: Vec<u16>,
    /// Where the next page starts, if any is left.
    pub next: Option<(u32, u64)>,
}

impl Groups {
    fn check_slot_group(&self, group: GroupId) -> Result<(), ReplicaError> {
        if group as usize >= self.len() {
            return Err(ReplicaError::NoSuchGroup(group));
        }
        Ok(())
    }

    /// `group`'s slot state, read on its leader after a read fence (linearizable).
    pub async fn group_slots(&self, group: GroupId) -> Result<GroupSlots, ReplicaError> {
        self.check_slot_group(group)?;
        self.read_fence(group)
            .await
            .map_err(|e| access_error(group, e))?;
        Ok(GroupSlots::of(group, &self.db().slot_state(group as usize)))
    }

    /// A page of the keys of `slots`, which `group` handed over, from `from`.
    pub async fn export_slots(
        &self,
        group: GroupId,
        slots: &[u16],
        from: (u32, u64),
    ) -> Result<SlotPage, ReplicaError> {
        self.check_slot_group(group)?;
        self.read_fence(group)
            .await
            .map_err(|e| access_error(group, e))?;
        let exported = self
            .db()
            .export_slots(
                group as usize,
                slots,
                (from.0 as usize, from.1 as usize),
                PAGE_BYTES,
            )
            .map_err(|e| ReplicaError::SlotRefused {
                group,
                why: e.to_string(),
            })?;
        Ok(SlotPage {
            page: exported.page,
            keys: exported.keys as u64,
            slots: exported.slots,
            starts: exported.starts,
            next: exported
                .next
                .map(|(index, skip)| (index as u32, skip as u64)),
        })
    }

    /// Proposes a slot step to `group`'s log; returns what it counted (slots or keys).
    pub async fn slot_step(&self, group: GroupId, op: SlotOp) -> Result<u64, ReplicaError> {
        self.check_slot_group(group)?;
        let request = Request {
            now_ms: now_ms(),
            seed: 0,
            op: crate::request::Op::Slots(op).into(),
        };
        let pending = self
            .propose(group, request)
            .await
            .map_err(|e| access_error(group, e))?;
        match pending
            .outcome()
            .await
            .map_err(|e| access_error(group, e))?
        {
            Response::Reply(resp::Frame::Integer(count)) => Ok(count.max(0) as u64),
            Response::Reply(resp::Frame::Error(why)) => Err(ReplicaError::SlotRefused {
                group,
                why: why.to_string(),
            }),
            other => Err(ReplicaError::Raft {
                group,
                message: format!("unexpected reply {other:?}"),
            }),
        }
    }
}
