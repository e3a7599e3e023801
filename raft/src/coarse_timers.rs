//! openraft's async runtime: tokio, with its timers rounded onto a shared grid, and watch
//! channels that wake no one when no one waits ([`crate::quiet_watch`]).
//!
//! Every raft group runs a tick task that wakes about five times per heartbeat interval, each
//! group at its own random phase: 17 groups on a node woke its threads ~105 times a second
//! when idle, and the wake-ups, not the work done in them, were most of an idle cluster's CPU.
//! Rounding each timer's deadline up to the next line of one process-wide grid makes the ticks
//! of all groups (and the heartbeats they send) fire together: one wake-up per grid line.
//!
//! The grid must not be shared between nodes. Elections start on ticks: two followers whose
//! ticks fall on the same instants campaign at the same instant whenever their random election
//! timeouts end between the same two ticks (about one round in four here), split the vote, and
//! do it again. A grid laid on the wall clock did exactly that: after a node was killed, a group
//! went 6.6 s without a leader. So each process lays its grid at a random phase, and draws a new
//! phase every [`ERA`]: two nodes whose phases happen to be close do not stay unlucky.
//!
//! Raft's safety does not depend on timers firing early, and a wait made up to [`GRAIN`]
//! longer only delays a heartbeat or an election check by that much, against an 800 ms
//! heartbeat and 1.0-1.6 s election timeouts. Waits shorter than [`EXACT_BELOW`] (openraft's
//! 1 µs IO batching on the write path) and `timeout`s (which bound waits that normally end
//! early) are left exact.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::time::Duration;

use openraft::{AsyncRuntime, Instant as _, OptionalSend};
use openraft_rt_tokio::{TokioInstant, TokioRuntime};

/// The spacing of the grid that timers are rounded up to.
pub const GRAIN: Duration = Duration::from_millis(50);

/// How long the grid keeps one phase: a deadline is rounded onto the grid of the era it falls
/// in.
pub const ERA: Duration = Duration::from_secs(10);

/// Waits shorter than this are not rounded.
pub const EXACT_BELOW: Duration = Duration::from_millis(2);

/// Tokio, with [`GRAIN`]-aligned sleeps.
#[derive(Debug)]
pub struct CoarseTimers(TokioRuntime);

type Tokio = TokioRuntime;

/// Where this process's grid starts, and the random source of its phases.
fn grid() -> &'static (tokio::time::Instant, RandomState) {
    static GRID: OnceLock<(tokio::time::Instant, RandomState)> = OnceLock::new();
    // `RandomState` is seeded randomly per process: its hashes are this process's own dice.
    GRID.get_or_init(|| (tokio::time::Instant::now(), RandomState::new()))
}

/// The phase of the grid in `era`: how far past each multiple of GRAIN its lines fall.
fn phase_nanos(era: u128) -> u128 {
    grid().1.hash_one(era) as u128 % GRAIN.as_nanos()
}

/// The instant a sleep of `wait` from now should end: now + `wait`, rounded up to the grid.
fn aligned_deadline(wait: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    if wait < EXACT_BELOW {
        return now + wait;
    }
    let origin = grid().0;
    let target = (now + wait).duration_since(origin).as_nanos();
    origin + Duration::from_nanos(line_at_or_after(target) as u64)
}

/// The first grid line at or after `target` (both in nanoseconds since the grid's origin), on
/// the grid of the era `target` falls in: phase + k * GRAIN, k >= 0.
fn line_at_or_after(target: u128) -> u128 {
    let grain = GRAIN.as_nanos();
    let phase = phase_nanos(target / ERA.as_nanos());
    phase + target.saturating_sub(phase).div_ceil(grain) * grain
}

impl AsyncRuntime for CoarseTimers {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = <Tokio as AsyncRuntime>::ThreadLocalRng;
    type Mpsc = <Tokio as AsyncRuntime>::Mpsc;
    type Watch = crate::quiet_watch::QuietWatch;
    type Oneshot = <Tokio as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep_until(aligned_deadline(duration))
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        let now = TokioInstant::now();
        let wait = if deadline > now {
            deadline - now
        } else {
            Duration::ZERO
        };
        tokio::time::sleep_until(aligned_deadline(wait))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        Tokio::thread_rng()
    }

    fn new(threads: usize) -> Self {
        CoarseTimers(Tokio::new(threads))
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.0.block_on(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_end_never_early_and_at_most_a_grain_late() {
        for millis in [3, 49, 50, 51, 162, 800, 2400] {
            let wait = Duration::from_millis(millis);
            let now = tokio::time::Instant::now();
            let deadline = aligned_deadline(wait);
            assert!(deadline >= now + wait, "{millis} ms ended early");
            assert!(deadline < now + wait + GRAIN, "{millis} ms rounded too far");
        }
    }

    #[test]
    fn targets_round_up_onto_their_eras_grid() {
        let (grain, era) = (GRAIN.as_nanos(), ERA.as_nanos());
        // Around the start, inside an era, and just before and after era boundaries.
        let targets = [0, 1, grain - 1, grain, 7 * grain + 3, era / 2]
            .into_iter()
            .chain((1..4).flat_map(|k| [k * era - 1, k * era, k * era + grain + 1]));
        for target in targets {
            let line = line_at_or_after(target);
            let phase = phase_nanos(target / era);
            assert!(line >= target, "{target}: rounded down to {line}");
            assert!(
                line < target + grain,
                "{target}: rounded up too far, to {line}"
            );
            assert_eq!(
                (line - phase) % grain,
                0,
                "{target}: {line} is off its era's grid"
            );
        }
    }

    #[test]
    fn the_grid_changes_phase_from_era_to_era() {
        let phases: std::collections::BTreeSet<u128> = (0..64).map(phase_nanos).collect();
        assert!(phases.iter().all(|&phase| phase < GRAIN.as_nanos()));
        // 64 draws over 50 million nanoseconds: a repeat would mean the phase is not drawn.
        assert!(phases.len() > 60, "only {} distinct phases", phases.len());
    }

    /// openraft's conformance checks of a runtime, including the watch channel's semantics.
    #[test]
    fn conforms_to_openraft_runtime_suite() {
        openraft::rt::testing::Suite::<CoarseTimers>::test_all();
    }

    #[tokio::test]
    async fn short_waits_stay_exact() {
        let now = tokio::time::Instant::now();
        let deadline = aligned_deadline(Duration::from_micros(1));
        assert!(deadline.duration_since(now) < EXACT_BELOW);
    }
}
