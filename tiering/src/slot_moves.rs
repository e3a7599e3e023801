//! Moving slots between groups, as the steps of each group's log apply them (see
//! [`SlotState`]). Every step is idempotent, and refuses what would lose data: a page of an
//! import for a slot the group already owns, or from another import session, or adopting a
//! slot whose import was taken over by another session.

use crate::db::Db;
use crate::keyspace::SlotState;
use crate::slot::Slot;
use crate::slot_set::SlotSet;
use crate::snapshot;

/// One page of an export (see [`Db::export_slots`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExportedPage {
    /// A `snapshot` dump of the page's keys.
    pub page: Vec<u8>,
    /// How many keys it holds.
    pub keys: usize,
    /// The slots it covers, in order (the first and last possibly in part).
    pub slots: Vec<Slot>,
    /// The slots among them whose first keys it holds (an empty slot too).
    pub starts: Vec<Slot>,
    /// Where the next page starts, if any is left.
    pub next: Option<(usize, usize)>,
}

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
        self.slot_state_changed();
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

    /// Where `slot` went from `group`, as this node's replicas know it: `group`, or, if it
    /// released the slot, the group it handed it to, and so on while each of those released
    /// it too. Routes are set by whichever group's log applies a step last (and by the slot
    /// map, which lags), so a route can name a group the slot has left since; its record of
    /// the handoff says where to look instead.
    pub fn follow_handoffs(&self, slot: Slot, group: usize) -> usize {
        let mut at = group;
        // A chain longer than the groups is a loop of stale records (a replica that has not
        // applied a slot's return yet): stop anywhere on it.
        for _ in 0..self.groups() {
            let Some(ks) = self.keyspaces.get(at) else {
                break;
            };
            let next = {
                let ks = ks.lock();
                let state = ks.slot_state();
                if ks.owns(slot) || state.arriving.contains_key(&slot) {
                    break;
                }
                state.handoff.get(&slot).copied()
            };
            match next {
                Some(to) => at = to as usize,
                None => break,
            }
        }
        at
    }

    /// The group this node routes `slot` to, corrected by [`Db::follow_handoffs`] (and the
    /// route updated) if that group released it.
    pub fn resolve_route(&self, slot: Slot) -> usize {
        let routed = self.group_of_slot(slot);
        let group = self.follow_handoffs(slot, routed);
        if group != routed {
            self.set_route(slot, group);
        }
        group
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
        self.slot_state_changed();
        released
    }

    /// A page of the keys of `slots`, which `group` handed over (so they no longer change),
    /// starting at `from` (an index into `slots` and the keys of that slot to skip): a dump of
    /// at most about `max_bytes` (one key more if a key alone is larger), spanning as many
    /// slots as fit, so that many small slots move in one page.
    pub fn export_slots(
        &self,
        group: usize,
        slots: &[Slot],
        from: (usize, usize),
        max_bytes: usize,
    ) -> Result<ExportedPage, SlotMoveError> {
        let ks = self.keyspaces[group].lock();
        let (mut index, mut skip) = from;
        let mut exported = ExportedPage::default();
        let mut entries = Vec::new();
        let mut size = 0;
        while let Some(&slot) = slots.get(index) {
            if !ks.slot_state().handoff.contains_key(&slot) {
                return Err(SlotMoveError::NotHandedOver(slot));
            }
            if skip == 0 {
                exported.starts.push(slot);
            }
            exported.slots.push(slot);
            // The slot is frozen: its table iterates in the same order on every call.
            let mut keys = ks.slot_entries(slot).skip(skip).peekable();
            while size < max_bytes {
                let Some(entry) = keys.next() else { break };
                size += entry.key.len() + entry.value.memory_usage();
                entries.push(entry);
                skip += 1;
            }
            if keys.peek().is_some() {
                exported.next = Some((index, skip));
                break;
            }
            index += 1;
            skip = 0;
            if size >= max_bytes {
                exported.next = (index < slots.len()).then_some((index, 0));
                break;
            }
        }
        exported.keys = entries.len();
        snapshot::dump_entries(entries.len(), entries.into_iter(), &mut exported.page);
        Ok(exported)
    }

    /// Adds a page of keys of `slots` to `group` under import `session`. `starts` are the
    /// slots whose first keys it holds: what an earlier, abandoned import left of them is
    /// cleared, and they are now arriving under `session`; the others must be already.
    /// Returns how many keys it added.
    pub fn import_page(
        &self,
        group: usize,
        session: u64,
        slots: &[Slot],
        starts: &[Slot],
        page: &[u8],
    ) -> Result<usize, SlotMoveError> {
        let mut ks = self.keyspaces[group].lock();
        let mut accepted = SlotSet::default();
        for &slot in slots {
            if ks.owns(slot) {
                return Err(SlotMoveError::AlreadyOwned(slot));
            }
            if !starts.contains(&slot) && ks.slot_state().arriving.get(&slot) != Some(&session) {
                return Err(SlotMoveError::OtherSession(slot));
            }
            accepted.insert(slot);
        }
        for &slot in starts.iter().filter(|slot| accepted.contains(**slot)) {
            ks.remove_slot(slot);
            let state = ks.slot_state_mut();
            state.handoff.remove(&slot);
            state.arriving.insert(slot, session);
        }
        let added = snapshot::insert_entries(&mut ks, page, |slot| accepted.contains(slot))
            .map_err(|e| SlotMoveError::BadPage(e.to_string()));
        drop(ks);
        // A bad page still marked its `starts` arriving.
        self.slot_state_changed();
        let added = added?;
        for &slot in slots {
            self.set_route(slot, group);
        }
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
        self.slot_state_changed();
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
        let (mut from, mut pages, mut keys) = (Some((0, 0)), 0, 0);
        while let Some(at) = from {
            let page = db.export_slots(source, &[slot], at, 500).unwrap();
            assert_eq!(page.starts.is_empty(), at.1 > 0, "{at:?}");
            db.import_page(target, session, &page.slots, &page.starts, &page.page)
                .unwrap();
            assert_eq!(
                run(&db, target, &["GET", "{a}0"]).moved,
                Some(slot),
                "not adopted yet"
            );
            keys += page.keys;
            pages += 1;
            from = page.next;
        }
        let skip = keys;
        assert_eq!(skip, 21);
        assert!(pages > 3, "{pages} pages");
        assert_eq!(
            db.adopt_slots(target, &[slot], session + 1),
            Err(SlotMoveError::OtherSession(slot))
        );
        db.adopt_slots(target, &[slot], session).unwrap();
        assert_eq!(
            db.import_page(target, session, &[slot], &[slot], &[]),
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
        let left = db.export_slots(source, &[slot], (0, 0), 500).unwrap();
        assert_eq!((left.keys, left.next), (0, None), "nothing left");
    }

    #[test]
    fn small_slots_share_a_page_and_a_large_one_spans_pages() {
        let db = Db::new(2);
        // Ten slots of group 0 with one small key each, an empty one, then one with 30 keys.
        let mut slots: Vec<Slot> = (0..100u32)
            .map(|i| format!("k{i}"))
            .filter(|key| db.group_of_slot(slot_of(key.as_bytes())) == 0)
            .take(10)
            .map(|key| {
                run(&db, 0, &["SET", &key, "v"]);
                slot_of(key.as_bytes())
            })
            .collect();
        let empty = (0..8192u16)
            .find(|s| db.count_keys_in_slot(*s) == 0)
            .unwrap();
        slots.push(empty);
        let big = slot_of(b"{big}");
        assert_eq!(db.group_of_slot(big), 0);
        for i in 0..30 {
            run(&db, 0, &["SET", &format!("{{big}}{i}"), &"x".repeat(100)]);
        }
        slots.push(big);
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(db.release_slots(0, &slots, 1).len(), slots.len());

        let (mut from, mut pages, mut keys) = (Some((0, 0)), Vec::new(), 0);
        while let Some(at) = from {
            let page = db.export_slots(0, &slots, at, 1000).unwrap();
            db.import_page(1, 7, &page.slots, &page.starts, &page.page)
                .unwrap();
            keys += page.keys;
            from = page.next;
            pages.push(page);
        }
        assert_eq!(keys, 40);
        // The big slot takes several pages; the small ones share pages.
        assert!(
            pages.len() >= 4 && pages.len() < slots.len(),
            "{} pages",
            pages.len()
        );
        let starts: Vec<Slot> = pages.iter().flat_map(|p| p.starts.clone()).collect();
        assert_eq!(starts, slots, "every slot started once, in order");
        // A page of another session for a slot under way is refused.
        let last = pages.last().unwrap();
        assert!(matches!(
            db.import_page(1, 8, &last.slots, &[], &last.page),
            Err(SlotMoveError::OtherSession(slot)) if last.slots.contains(&slot)
        ));
        // Neither group counts the keys in flight.
        assert_eq!(run(&db, usize::MAX, &["DBSIZE"]).reply, Frame::Integer(0));
        db.adopt_slots(1, &slots, 7).unwrap();
        assert_eq!(run(&db, usize::MAX, &["DBSIZE"]).reply, Frame::Integer(40));
        assert_eq!(
            run(&db, 1, &["GET", "{big}29"]).reply,
            Frame::Bulk("x".repeat(100).into())
        );
        assert_eq!(db.group_len(1), 40);
    }

    #[test]
    fn a_stale_route_is_corrected_along_the_handoffs_this_node_knows() {
        let db = Db::new(3);
        let slot: Slot = 5; // group 0's
        let empty = {
            let mut page = Vec::new();
            snapshot::dump_entries(0, std::iter::empty(), &mut page);
            page
        };
        // 0 -> 1, then 1 -> 2 (still arriving there).
        db.import_page(1, 1, &[slot], &[slot], &empty).unwrap();
        db.release_slots(0, &[slot], 1);
        db.adopt_slots(1, &[slot], 1).unwrap();
        db.import_page(2, 2, &[slot], &[slot], &empty).unwrap();
        db.release_slots(1, &[slot], 2);
        assert_eq!(db.follow_handoffs(slot, 0), 2);
        assert_eq!(db.follow_handoffs(slot, 2), 2);
        // A late step of the first move (or an old slot map) routes the slot back to 0.
        db.set_route(slot, 0);
        assert_eq!(db.resolve_route(slot), 2);
        assert_eq!(db.group_of_slot(slot), 2);
        // Stale records that point at each other end the walk all the same.
        let mut looped = db.slot_state(2);
        looped.arriving.clear();
        looped.handoff.insert(slot, 0);
        db.set_slot_state(2, looped);
        assert!(db.follow_handoffs(slot, 0) < 3);
    }
}
