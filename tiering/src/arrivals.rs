//! Slots arriving in a group on this node (a slot move under way), and waiting for them to
//! land.
//!
//! A command for a slot that its new group is still importing cannot run yet. Rather than
//! answer TRYAGAIN at once, which a client retries only for a moment (redis-py for about
//! 0.45 s), the node holds the command until the move lands, up to a limit: a move that
//! finishes within it is only latency to the client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::db::Db;
use crate::slot::Slot;

/// How many slots are arriving in any group here, and a signal for every change of a
/// group's slot state.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    count: AtomicUsize,
    changed: Notify,
}

impl Db {
    /// Returns true if any group here is importing a slot: a check cheap enough for every
    /// keyed command, made before finding the command's slot.
    pub fn any_arriving(&self) -> bool {
        self.arrivals.count.load(Ordering::Acquire) > 0
    }

    /// Returns true if `group` is importing `slot` here and does not own it yet.
    pub fn is_arriving(&self, group: usize, slot: Slot) -> bool {
        // No lock unless some slot is arriving at all.
        self.any_arriving()
            && self
                .keyspaces
                .get(group)
                .is_some_and(|ks| ks.lock().slot_state().arriving.contains_key(&slot))
    }

    /// Waits until `slot` is no longer arriving in `group` (adopted, or its import taken
    /// elsewhere), or for `limit`, whichever comes first.
    pub async fn wait_arrival(&self, group: usize, slot: Slot, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Registered before the check, so a change between the two is not missed.
            let changed = self.arrivals.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !self.is_arriving(group, slot) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }

    /// Counts the arriving slots again after a group's slot state changed, and wakes the
    /// commands waiting for one. Called without any keyspace locked.
    pub(crate) fn slot_state_changed(&self) {
        let count = self
            .keyspaces
            .iter()
            .map(|ks| ks.lock().slot_state().arriving.len())
            .sum();
        self.arrivals.count.store(count, Ordering::Release);
        self.arrivals.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    fn empty_page() -> Vec<u8> {
        let mut page = Vec::new();
        crate::snapshot::dump_entries(0, std::iter::empty(), &mut page);
        page
    }

    #[tokio::test]
    async fn a_waiting_command_is_released_when_its_slot_is_adopted() {
        let db = Arc::new(Db::new(2));
        let slot: Slot = 10; // group 0's
        assert!(!db.is_arriving(1, slot));
        db.import_page(1, 7, &[slot], &[slot], &empty_page())
            .unwrap();
        assert!(db.is_arriving(1, slot));
        let adopter = {
            let db = db.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                db.adopt_slots(1, &[slot], 7).unwrap();
            })
        };
        let started = Instant::now();
        db.wait_arrival(1, slot, Duration::from_secs(10)).await;
        assert!(!db.is_arriving(1, slot));
        assert!(started.elapsed() < Duration::from_secs(5));
        adopter.await.unwrap();
    }

    #[tokio::test]
    async fn a_wait_ends_at_its_limit_when_the_move_does_not_land() {
        let db = Db::new(2);
        db.import_page(1, 7, &[10], &[10], &empty_page()).unwrap();
        let started = Instant::now();
        db.wait_arrival(1, 10, Duration::from_millis(100)).await;
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(db.is_arriving(1, 10));
        // A snapshot without the import ends it too.
        db.set_slot_state(1, crate::keyspace::SlotState::default());
        assert!(!db.is_arriving(1, 10));
    }
}
