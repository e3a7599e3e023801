//! Moving slots from the groups that own them to another group, as a coordinator drives it:
//! release on the source, export the frozen keys page by page into the target's log, adopt
//! on the target, drop on the source. Every step is idempotent and every decision is taken on
//! the groups' leaders' state, so an interrupted move completes when run again (from anywhere);
//! while it is interrupted, the moving slots answer TRYAGAIN.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::coordinator::{ChangeError, Coordinator, Target};
use crate::replica_call::CallError;
use crate::replicas::{ReplicaCall, ReplicaError, ReplicaReply};
use crate::request::SlotOp;
use crate::slot_calls::{GroupSlots, SlotPage};
use crate::slot_map::SlotMap;
use crate::typ::GroupId;

/// How long recording a move in the slot map may take (the metadata group may be down).
const RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a slot move did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotsMoved {
    /// Slots that changed group.
    pub slots: usize,
    /// Keys copied.
    pub keys: u64,
}

impl<P: FnMut(&str)> Coordinator<P> {
    /// Every group's slot state, from its leader.
    pub async fn slot_states(&mut self) -> Result<Vec<GroupSlots>, ChangeError> {
        let mut states = Vec::new();
        for group in 0.. {
            let step = format!("read group {group}'s slots");
            match self
                .until_answered(&step, Target::Leader(group), ReplicaCall::Slots { group })
                .await
            {
                Ok(ReplicaReply::Slots(slots)) => states.push(slots),
                Ok(other) => return Err(unexpected(&step, other)),
                Err(ChangeError::Step {
                    error: CallError::Refused(ReplicaError::NoSuchGroup(_)),
                    ..
                }) => break,
                Err(error) => return Err(error),
            }
        }
        Ok(states)
    }

    /// Moves `slots` to group `to` from whichever groups own them. Slots `to` owns already
    /// are left alone (their old group's copy is dropped if a previous run stopped short).
    pub async fn move_slots(
        &mut self,
        slots: &[u16],
        to: GroupId,
    ) -> Result<SlotsMoved, ChangeError> {
        let states = self.slot_states().await?;
        let Some(target) = states.iter().find(|g| g.group == to) else {
            return Err(ChangeError::Step {
                step: format!("move slots to group {to}"),
                error: CallError::Refused(ReplicaError::NoSuchGroup(to)),
            });
        };
        let mut from: BTreeMap<GroupId, Vec<u16>> = BTreeMap::new();
        let mut leftovers: BTreeMap<GroupId, Vec<u16>> = BTreeMap::new();
        for &slot in slots {
            let handed_here = states
                .iter()
                .find(|g| g.group != to && g.handed_to(slot) == Some(to));
            if target.owns(slot) {
                if let Some(source) = handed_here {
                    leftovers.entry(source.group).or_default().push(slot);
                }
                continue;
            }
            let source = states
                .iter()
                .find(|g| g.owns(slot))
                .or(handed_here)
                .ok_or_else(|| ChangeError::Step {
                    step: format!("move slot {slot} to group {to}"),
                    error: CallError::Refused(ReplicaError::SlotRefused {
                        group: to,
                        why: moving_elsewhere(&states, slot),
                    }),
                })?;
            from.entry(source.group).or_default().push(slot);
        }
        let mut moved = SlotsMoved::default();
        for (source, slots) in from {
            let started = Instant::now();
            self.say(&format!(
                "move {} slots from group {source} to group {to}",
                slots.len()
            ));
            moved.keys += self.move_from(source, &slots, to).await?;
            moved.slots += slots.len();
            self.say(&format!(
                "  group {source}: {} slots moved in {:.2}s",
                slots.len(),
                started.elapsed().as_secs_f64()
            ));
        }
        for (source, slots) in leftovers {
            self.step(source, SlotOp::Drop { slots }).await?;
        }
        // Also what an earlier, interrupted run moved without recording it.
        self.record(slots, to).await;
        Ok(moved)
    }

    /// The slot map the metadata group keeps.
    pub async fn slot_map(&mut self) -> Result<SlotMap, ChangeError> {
        let step = "read the slot map";
        match self.send_to_meta_leader(step, ReplicaCall::SlotMap).await? {
            ReplicaReply::SlotMap(map) => Ok(map),
            other => Err(unexpected(step, other)),
        }
    }

    /// Records in the metadata group's slot map that `to` owns `slots`, so every node routes
    /// them there. Best effort: the groups' own state already decides who serves them, and a
    /// node that routes by an older map is redirected once more.
    async fn record(&mut self, slots: &[u16], to: GroupId) {
        let step = format!("record {} slots of group {to} in the slot map", slots.len());
        let call = ReplicaCall::RecordSlots {
            slots: slots.to_vec(),
            group: to,
        };
        let recorded = tokio::time::timeout(RECORD_WAIT, self.send_to_meta_leader(&step, call));
        match recorded.await {
            Ok(Ok(ReplicaReply::Count(epoch))) => self.say(&format!("  slot map epoch {epoch}")),
            Ok(Ok(other)) => self.say(&format!("  {step}: unexpected answer {other:?}")),
            Ok(Err(error)) => self.say(&format!("  slot map not updated: {error}")),
            Err(_) => self.say("  slot map not updated: the metadata group did not answer"),
        }
    }

    /// Moves `slots`, which group `source` owns or handed to `to`, to `to`; returns the keys
    /// copied.
    async fn move_from(
        &mut self,
        source: GroupId,
        slots: &[u16],
        to: GroupId,
    ) -> Result<u64, ChangeError> {
        // A fresh session: pages of an earlier, abandoned run are refused from here on.
        let session = rand::random::<u64>();
        // The import is announced (an empty page starting every slot) before the source lets
        // go: from then on the target holds commands for these slots until it adopts them
        // (`tiering::Db::wait_arrival`). Otherwise a client the source redirects to the
        // target, which does not know of the move yet, would be sent back to the source, and
        // back again, until the client gives up.
        let mut empty = Vec::new();
        tiering::snapshot::dump_entries(0, std::iter::empty(), &mut empty);
        self.step(
            to,
            SlotOp::ImportPage {
                session,
                slots: slots.to_vec(),
                starts: slots.to_vec(),
                page: empty,
            },
        )
        .await?;
        self.step(
            source,
            SlotOp::Release {
                slots: slots.to_vec(),
                to,
            },
        )
        .await?;
        // Pages of up to 256 KiB, each spanning as many slots as fit.
        let mut keys = 0;
        let mut from = Some((0, 0));
        while let Some(at) = from {
            let page = self.export(source, slots, at).await?;
            keys += page.keys;
            from = page.next;
            self.step(
                to,
                SlotOp::ImportPage {
                    session,
                    slots: page.slots,
                    starts: page.starts,
                    page: page.page,
                },
            )
            .await?;
        }
        self.step(
            to,
            SlotOp::Adopt {
                slots: slots.to_vec(),
                session,
            },
        )
        .await?;
        self.record(slots, to).await;
        self.step(
            source,
            SlotOp::Drop {
                slots: slots.to_vec(),
            },
        )
        .await?;
        Ok(keys)
    }

    async fn export(
        &mut self,
        group: GroupId,
        slots: &[u16],
        from: (u32, u64),
    ) -> Result<SlotPage, ChangeError> {
        let step = format!("export slots from group {group}");
        let call = ReplicaCall::ExportSlots {
            group,
            slots: slots.to_vec(),
            from,
        };
        match self
            .until_answered(&step, Target::Leader(group), call)
            .await?
        {
            ReplicaReply::Page(page) => Ok(page),
            other => Err(unexpected(&step, other)),
        }
    }

    async fn step(&mut self, group: GroupId, op: SlotOp) -> Result<u64, ChangeError> {
        let step = format!("group {group}: {op}");
        let call = ReplicaCall::SlotStep { group, op };
        match self
            .until_answered(&step, Target::Leader(group), call)
            .await?
        {
            ReplicaReply::Count(count) => Ok(count),
            other => Err(unexpected(&step, other)),
        }
    }
}

/// The slots of unfinished moves, from every group's slot state: runs of (first, last, from,
/// to). A slot is in flight when one group released it and the group it was handed to has not
/// adopted it (nobody serves it), or when a group announced its import and its owner has not
/// released it yet (the importing group's replicas hold its commands a moment, then answer
/// TRYAGAIN).
pub fn slots_in_flight(states: &[GroupSlots]) -> Vec<(u16, u16, GroupId, GroupId)> {
    let mut moves: Vec<(u16, GroupId, GroupId)> = Vec::new();
    for state in states {
        for &(slot, to) in &state.handoff {
            let adopted = states.iter().any(|s| s.group == to && s.owns(slot));
            if !adopted {
                moves.push((slot, state.group, to));
            }
        }
        for &(slot, _) in &state.arriving {
            let released = states
                .iter()
                .any(|s| s.handed_to(slot) == Some(state.group));
            if let (false, Some(owner)) = (released, states.iter().find(|s| s.owns(slot))) {
                moves.push((slot, owner.group, state.group));
            }
        }
    }
    moves.sort_by_key(|&(slot, from, to)| (from, to, slot));
    let mut runs: Vec<(u16, u16, GroupId, GroupId)> = Vec::new();
    for (slot, from, to) in moves {
        match runs.last_mut() {
            Some(run) if run.2 == from && run.3 == to && run.1 + 1 == slot => run.1 = slot,
            _ => runs.push((slot, slot, from, to)),
        }
    }
    runs
}

/// Why no group can give `slot` away: another move holds it.
fn moving_elsewhere(states: &[GroupSlots], slot: u16) -> String {
    match states
        .iter()
        .find_map(|g| Some((g.group, g.handed_to(slot)?)))
    {
        Some((from, other)) => {
            format!("slot {slot} is moving from group {from} to group {other}: move it there first")
        }
        None => format!("no group owns slot {slot}"),
    }
}

fn unexpected(step: &str, reply: ReplicaReply) -> ChangeError {
    ChangeError::Step {
        step: step.to_string(),
        error: CallError::Refused(ReplicaError::Raft {
            group: 0,
            message: format!("unexpected answer {reply:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(group: GroupId, owned: &[(u16, u16)]) -> GroupSlots {
        GroupSlots {
            group,
            owned: owned.to_vec(),
            ..GroupSlots::default()
        }
    }

    #[test]
    fn released_slots_are_in_flight_until_adopted() {
        let mut source = group(0, &[(0, 9)]);
        source.handoff = vec![(10, 1), (11, 1), (12, 1)];
        let mut target = group(1, &[(12, 12), (20, 29)]);
        target.arriving = vec![(10, 7), (11, 7)];
        assert_eq!(slots_in_flight(&[source, target]), vec![(10, 11, 0, 1)]);
    }

    #[test]
    fn announced_imports_are_in_flight_until_released() {
        let source = group(0, &[(0, 9)]);
        let mut target = group(1, &[(20, 29)]);
        target.arriving = vec![(3, 7), (4, 7), (9, 7)];
        assert_eq!(
            slots_in_flight(&[source.clone(), target.clone()]),
            vec![(3, 4, 0, 1), (9, 9, 0, 1)]
        );
        // Released: in flight as a release, once.
        let mut released = group(0, &[(0, 2), (5, 8)]);
        released.handoff = vec![(3, 1), (4, 1), (9, 1)];
        assert_eq!(
            slots_in_flight(&[released, target]),
            vec![(3, 4, 0, 1), (9, 9, 0, 1)]
        );
    }
}
