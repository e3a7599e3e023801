//! Finishing slot moves nobody finishes. A coordinator that dies between releasing slots and
//! their adoption by the new group leaves them unserved (TRYAGAIN) until `admin move-slots`
//! runs again. The node that leads the metadata group looks at every group's slot state every
//! [`CHECK_EVERY`] and reruns the move of slots it has seen in flight, unchanged, for
//! [`ABANDONED_AFTER`]: far longer than a live move keeps a slot in flight (pages of many
//! slots take well under a second), and racing one would be safe anyway (the rerun's import
//! session takes over; the other run's next page is refused).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::coordinator::Coordinator;
use raft::slot_mover::slots_in_flight;
use raft::GroupId;

use crate::server::Server;

/// How often the slot states are read.
const CHECK_EVERY: Duration = Duration::from_secs(10);

/// How long a slot stays in flight before its move is taken as abandoned.
const ABANDONED_AFTER: Duration = Duration::from_secs(30);

/// How long reading the slot states, or finishing a move, may take before giving up (until
/// the next check).
const STEP_WAIT: Duration = Duration::from_secs(60);

fn quiet(_: &str) {}

/// Checks for abandoned slot moves, and finishes them, until shutdown.
pub async fn run(server: Arc<Server>) {
    // Each slot in flight, with the group it goes to, and since when it was seen so.
    let mut seen: BTreeMap<(u16, GroupId), Instant> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = server.shutting_down() => break,
        }
        let groups = &server.groups;
        let Some(me) = groups.member_addr(groups.node_id()) else {
            continue;
        };
        if !groups.is_leader(groups.meta_group()) {
            seen.clear();
            continue;
        }
        let mut coordinator = Coordinator::new(vec![me.raft], quiet as fn(&str));
        let states = tokio::select! {
            states = tokio::time::timeout(STEP_WAIT, coordinator.slot_states()) => states,
            _ = server.shutting_down() => break,
        };
        let Ok(Ok(states)) = states else { continue };
        let now = Instant::now();
        seen = slots_in_flight(&states)
            .into_iter()
            .flat_map(|(first, last, _, to)| (first..=last).map(move |slot| (slot, to)))
            .map(|key| (key, seen.get(&key).copied().unwrap_or(now)))
            .collect();
        let mut abandoned: BTreeMap<GroupId, Vec<u16>> = BTreeMap::new();
        for (&(slot, to), since) in &seen {
            if now.duration_since(*since) >= ABANDONED_AFTER {
                abandoned.entry(to).or_default().push(slot);
            }
        }
        for (to, slots) in abandoned {
            tracing::warn!(slots = slots.len(), to, "finishing an abandoned slot move");
            let finished = tokio::select! {
                finished = tokio::time::timeout(STEP_WAIT, coordinator.move_slots(&slots, to)) => finished,
                _ = server.shutting_down() => break,
            };
            match finished {
                Ok(Ok(moved)) => {
                    tracing::info!(
                        slots = moved.slots,
                        keys = moved.keys,
                        to,
                        "abandoned slot move finished"
                    );
                }
                Ok(Err(error)) => tracing::warn!(%error, to, "abandoned slot move not finished"),
                Err(_) => tracing::warn!(to, "abandoned slot move not finished in time"),
            }
        }
    }
}
