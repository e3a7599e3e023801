//! Moving slots between groups, as the steps of each group's log apply them (see
//! [`SlotState`]). Every step is idempotent, and refuses what would lose data: a page of an
//! import for a slot the group already owns, or from another import session, or adopting a
//! slot whose import was taken over by another session.

use crate::db::Db;
use crate::keyspace::SlotState;
use crate::slot::Slot;
use crate::snapshot;

/// Why a slot step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotMoveError {
    #[error("slot {0} is owned here already")]
    AlreadyOwned(Slot),
    #[error("slot {0} is being imported by another session")]
    OtherSession(Slot),
    #[error("slot {0} was not handed over by this group")]
    NotHandedOver(Slot),
    #[error("bad import page: {0}")]
    BadPage(String),
}

impl Db {
    /// `group`'s slot state.
    pub fn slot_state(&self, group: usize) -> SlotState {
        self.keyspaces[group].lock().slot_state().clone()
    }

    /// Replaces `group`'s slot state (from its snapshot), and points this node's routes for
    /// its slots at it (or, for slots it handed over, at their new group).
    pub fn set_slot_state(&self, group: usize, state: SlotState) {
        self.route_slots_of(group, &state);
        *self.keyspaces[group].lock().slot_state_mut() = state;
    }

    fn route_slots_of(&self, group: usize, state: &SlotState) {
        for slot in state.owned.iter() {
            self.set_route(slot, group);
        }
        for slot in state.arriving.keys() {
            self.set_route(*slot, group);
        }
        for (slot, to) in &state.handoff {
            self.set_route(*slot, *to as usize);
        }
    }

    /// Returns true if `group` owns `slot`.
    pub fn owns(&self, group: usize, slot: Slot) -> bool {
        self.keyspaces[group].lock().owns(slot)
    }

    /// `group` hands `slots` to group `to`: it stops serving them and keeps their keys until
    /// [`Db::drop_slots`]. Returns the slots it released (those it owned).
    pub fn release_slots(&self, group: usize, slots: &[Slot], to: usize) -> Vec<Slot> {
        let mut ks = self.keyspaces[group].lock();
        let state = ks.slot_state_mut();
        let mut released = Vec::new();
        for &slot in slots {
            if state.owned.remove(slot) {
                state.handoff.insert(slot, to as u32);
                released.push(slot);
            }
        }
        drop(ks);
        for &slot in &released {
            self.set_route(slot, to);
        }
        released
    }

    /// The keys of `slot`, which `group` handed over (so they no longer change), as a dump of
    /// at most about `max_bytes`, starting after the first `skip` keys; and whether that was
    /// the last page.
    pub fn export_slot(
        &self,
        group: usize,
        slot: Slot,
        skip: usize,
        max_bytes: usize,
    ) -> Result<(Vec<u8>, usize, bool), SlotMoveError> {
        let ks = self.keyspaces[group].lock();
        if !ks.slot_state().handoff.contains_key(&slot) {
            return Err(SlotMoveError::NotHandedOver(slot));
        }
        // The slot is frozen: its table iterates in the same order on every call.
        let mut page = Vec::new();
        let mut size = 0;
        let mut entries = ks.slot_entries(slot).skip(skip);
        for entry in entries.by_ref() {
            size += entry.key.len() + entry.value.memory_usage();
            page.push(entry);
            if size >= max_bytes {
                break;
            }
        }
        let last = entries.next().is_none();
        let mut out = Vec::new();
        let count = page.len();
        snapshot::dump_entries(count, page.into_iter(), &mut out);
        Ok((out, count, last))
    }

    /// Adds one page of `slot`'s keys to `group` under import `session`; the first page of a
    /// session clears what an earlier, abandoned import left. Returns how many keys it added.
    pub fn import_slot(
        &self,
        group: usize,
        slot: Slot,
        session: u64,
        first: bool,
        page: &[u8],
    ) -> Result<usize, SlotMoveError> {
        let mut ks = self.keyspaces[group].lock();
        if ks.owns(slot) {
            return Err(SlotMoveError::AlreadyOwned(slot));
        }
        if first {
            ks.remove_slot(slot);
            let state = ks.slot_state_mut();
            state.handoff.remove(&slot);
            state.arriving.insert(slot, session);
        } else if ks.slot_state().arriving.get(&slot) != Some(&session) {
            return Err(SlotMoveError::OtherSession(slot));
        }
        let added = snapshot::insert_entries(&mut ks, page, |s| s == slot)
            .map_err(|e| SlotMoveError::BadPage(e.to_string()))?;
        drop(ks);
        self.set_route(slot, group);
        Ok(added)
    }

    /// `group` owns `slots`, whose keys session `session` imported. Slots it owns already
    /// are left as they are.
    pub fn adopt_slots(
        &self,
        group: usize,
        slots: &[Slot],
        session: u64,
    ) -> Result<(), SlotMoveError> {
        let mut ks = self.keyspaces[group].lock();
        for &slot in slots {
            if !ks.owns(slot) && ks.slot_state().arriving.get(&slot) != Some(&session) {
                return Err(SlotMoveError::OtherSession(slot));
            }
        }
        let state = ks.slot_state_mut();
        for &slot in slots {
            state.arriving.remove(&slot);
            state.owned.insert(slot);
        }
        drop(ks);
        for &slot in slots {
            self.set_route(slot, group);
        }
        Ok(())
    }

    /// `group` forgets the keys of `slots` it handed over (it keeps the record of where each
    /// went, so its replicas redirect there). Returns how many keys it removed.
    pub fn drop_slots(&self, group: usize, slots: &[Slot]) -> usize {
        let mut ks = self.keyspaces[group].lock();
        let mut removed = 0;
        for &slot in slots {
            if ks.slot_state().handoff.contains_key(&slot) {
                removed += ks.remove_slot(slot);
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use resp::{CommandTable, Frame};

    use super::*;
    use crate::db::Caller;
    use crate::exec::ExecCtx;
    use crate::slot::slot_of;

    fn run(db: &Db, group: usize, args: &[&str]) -> crate::db::Executed {
        let args: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let spec = CommandTable::get().lookup_request(&args).unwrap();
        let ctx = ExecCtx {
            now_ms: 1000,
            seed: 0,
        };
        if group == usize::MAX {
            db.execute(spec, &args, ctx, &Caller::default())
        } else {
            db.execute_in_group(group, spec, &args, ctx)
        }
    }

    #[test]
    fn a_slot_moves_page_by_page_and_is_refused_where_it_is_not_owned() {
        let db = Db::new(2);
        let slot = slot_of(b"{a}");
        let source = db.group_of_slot(slot);
        let target = 1 - source;
        for i in 0..20 {
            run(
                &db,
                source,
                &["SET", &format!("{{a}}{i}"), &"x".repeat(100)],
            );
        }
        // Already expired at the move: it moves too, and expires once owned again.
        run(&db, source, &["SET", "{a}old", "v", "PXAT", "1500"]);
        assert_eq!(db.release_slots(source, &[slot], target), vec![slot]);
        assert_eq!(
            db.release_slots(source, &[slot], target),
            vec![],
            "idempotent"
        );
        assert_eq!(db.group_of_slot(slot), target);
        // Frozen: writes, reads and expiry leave it alone.
        assert_eq!(run(&db, source, &["SET", "{a}0", "y"]).moved, Some(slot));
        assert_eq!(run(&db, usize::MAX, &["GET", "{a}0"]).moved, Some(slot));
        assert!(db.expired_keys(source, 2000, 10).is_empty());
        assert_eq!(db.remove_expired(source, &[b"{a}old".to_vec()], 2000), 0);

        let session = 42;
        let (mut skip, mut pages) = (0, 0);
        loop {
            let (page, keys, last) = db.export_slot(source, slot, skip, 500).unwrap();
            db.import_slot(target, slot, session, skip == 0, &page)
                .unwrap();
            assert_eq!(
                run(&db, target, &["GET", "{a}0"]).moved,
                Some(slot),
                "not adopted yet"
            );
            skip += keys;
            pages += 1;
            if last {
                break;
            }
        }
        assert_eq!(skip, 21);
        assert!(pages > 3, "{pages} pages");
        assert_eq!(
            db.adopt_slots(target, &[slot], session + 1),
            Err(SlotMoveError::OtherSession(slot))
        );
        db.adopt_slots(target, &[slot], session).unwrap();
        assert_eq!(
            db.import_slot(target, slot, session, true, &[]),
            Err(SlotMoveError::AlreadyOwned(slot))
        );
        assert_eq!(
            run(&db, usize::MAX, &["GET", "{a}0"]).reply,
            Frame::Bulk("x".repeat(100).into())
        );
        assert_eq!(db.expired_keys(target, 2000, 10).len(), 1);
        assert_eq!(db.drop_slots(source, &[slot]), 21);
        assert_eq!(db.group_len(source), 0);
        assert_eq!(
            db.slot_state(source).handoff.get(&slot),
            Some(&(target as u32))
        );
        assert!(
            db.export_slot(source, slot, 0, 500).unwrap().2,
            "nothing left"
        );
    }
}
