//! When each group this node replicates takes a snapshot.
//!
//! A snapshot dumps the group's whole keyspace between two applies, so snapshotting every fixed
//! number of entries costs each write time in proportion to the keyspace: with 3 million keys
//! in one group, a snapshot every 10,000 writes held the node's worker ~0.7 s each time
//! (13k SET/s instead of 78k, p99 48 ms). A group snapshots once it has applied
//! `--snapshot-every` entries since its last snapshot; one holding more than `SCALE_FROM` keys
//! also waits for half as many entries as it holds keys, so a dump costs about two keys per
//! write and a restart replays a log no longer than the keyspace (Redis rewrites its AOF on a
//! like rule). Half, not all: while a group only gains keys, entries since the last snapshot
//! never catch up with its key count, but do with half of it (snapshots at each doubling).
//! openraft's own policy is off (`SnapshotPolicy::Never`); this task triggers the snapshots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;
use tiering::Db;
use tokio::sync::watch;

use crate::groups::{Rounds, Shared};
use crate::typ::Raft;

/// How often each group's progress is checked.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// Groups holding more keys than this snapshot no more often than every `keys / 2` entries;
/// dumping fewer costs a few milliseconds.
const SCALE_FROM: usize = 100_000;

/// Returns true once a group that applied `applied_since` entries since its last snapshot
/// and holds `keys` keys should snapshot.
pub(crate) fn is_due(applied_since: u64, snapshot_every: u64, keys: usize) -> bool {
    let scaled = if keys > SCALE_FROM {
        keys as u64 / 2
    } else {
        0
    };
    applied_since >= snapshot_every.max(scaled)
}

/// Triggers the snapshots of the groups in `rafts` (the last one the metadata group, over
/// `meta_db`; the others over `db`) until `stop` is set.
pub(crate) async fn run(
    rafts: Shared<Vec<Option<Raft>>>,
    db: Arc<Db>,
    meta_db: Arc<Db>,
    snapshot_every: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rounds = Rounds::every(CHECK_EVERY);
    let mut dumping: Option<BigDump> = None;
    while let Some(current) = rounds.next(&rafts, &mut stop).await {
        let meta_group = current.len().saturating_sub(1);
        for (group, raft) in current.iter().enumerate() {
            let Some(raft) = raft else { continue };
            let (applied_since, snapshot) = {
                let metrics = raft.metrics();
                let metrics = metrics.borrow_watched();
                let applied = metrics.last_applied.as_ref().map_or(0, |id| id.index + 1);
                let snapshot = metrics.snapshot.as_ref().map_or(0, |id| id.index + 1);
                (applied.saturating_sub(snapshot), snapshot)
            };
            if dumping
                .as_ref()
                .is_some_and(|dump| dump.is_over(group, snapshot))
            {
                dumping = None;
            }
            let keys = if group == meta_group {
                meta_db.group_len(0)
            } else {
                db.group_len(group)
            };
            if !is_due(applied_since, snapshot_every, keys) {
                continue;
            }
            let big = keys > SCALE_FROM;
            if big && dumping.as_ref().is_some_and(|dump| dump.group != group) {
                continue;
            }
            // A trigger while the group still builds the previous snapshot is ignored.
            match raft.trigger().snapshot().await {
                Ok(()) if big => {
                    dumping = Some(BigDump {
                        group,
                        snapshot,
                        started: Instant::now(),
                    })
                }
                Ok(()) => {}
                Err(error) => tracing::debug!(group, %error, "snapshot trigger failed"),
            }
        }
    }
}

/// The snapshot of a big group being built. Only one at a time: a dump keeps a core busy for
/// up to a second, and two at once (groups filling at the same pace come due together) left
/// the thread serving clients none on two cores, stalling every client ~90 ms.
struct BigDump {
    group: usize,
    /// The group's snapshot position when it was triggered.
    snapshot: u64,
    started: Instant,
}

impl BigDump {
    /// Whether the dump is over: `group` stored a newer snapshot, or it has run so long that
    /// it must have failed (a group stopped meanwhile).
    fn is_over(&self, group: usize, snapshot: u64) -> bool {
        (group == self.group && snapshot != self.snapshot) || self.started.elapsed() > GIVE_UP
    }
}

/// How long a big dump may hold back the others.
const GIVE_UP: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::is_due;

    #[test]
    fn a_small_group_snapshots_every_snapshot_every_entries() {
        assert!(!is_due(9_999, 10_000, 10));
        assert!(is_due(10_000, 10_000, 10));
        assert!(is_due(50, 50, 90_000), "below the scaling floor");
    }

    #[test]
    fn a_large_group_waits_for_half_as_many_entries_as_it_holds_keys() {
        assert!(!is_due(10_000, 10_000, 3_000_000));
        assert!(!is_due(1_499_999, 10_000, 3_000_000));
        assert!(is_due(1_500_000, 10_000, 3_000_000));
    }

    #[test]
    fn a_group_that_only_gains_keys_still_snapshots_at_each_doubling() {
        // Every entry a new key: at the last snapshot the group held `base` keys.
        let base = 1_000_000u64;
        let due_after = (1..=2 * base)
            .find(|&since| is_due(since, 10_000, (base + since) as usize))
            .expect("never due");
        // Once as many entries as it held then (give or take the halving's rounding).
        assert!(
            (base - 1..=base).contains(&due_after),
            "due after {due_after}"
        );
    }
}
