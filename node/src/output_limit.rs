//! Redis's `client-output-buffer-limit` for subscribers: the bytes published to a client that it
//! has not read yet are bounded, so a subscriber that stops reading cannot make the server hold
//! every message sent to it.
//!
//! As in Redis, a client is disconnected when its pending output reaches the hard limit, or
//! stays over the soft limit for the soft period (judged each time output is added).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// One class of client's limits, as in `client-output-buffer-limit <class> <hard> <soft> <secs>`.
#[derive(Clone, Copy, Debug)]
pub struct OutputLimit {
    pub hard: usize,
    pub soft: usize,
    pub soft_for: Duration,
}

/// Redis's default for pub/sub clients: `pubsub 32mb 8mb 60`.
pub const PUBSUB: OutputLimit = OutputLimit {
    hard: 32 << 20,
    soft: 8 << 20,
    soft_for: Duration::from_secs(60),
};

/// The output a client has not taken yet, and since when it has been over the soft limit.
#[derive(Debug, Default)]
pub struct PendingOutput {
    bytes: AtomicUsize,
    /// Milliseconds (on the caller's clock) plus one when the pending output went over the soft
    /// limit; 0 while it is not.
    over_soft_since: AtomicU64,
}

impl PendingOutput {
    /// Adds `bytes` at `now_ms`. Returns false, and takes them back, if the client's output
    /// crossed `limit`: the client must then be disconnected.
    pub fn add(&self, bytes: usize, limit: &OutputLimit, now_ms: u64) -> bool {
        let pending = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let within = if pending >= limit.hard {
            false
        } else if pending >= limit.soft {
            let since = match self.over_soft_since.load(Ordering::Relaxed) {
                0 => {
                    self.over_soft_since.store(now_ms + 1, Ordering::Relaxed);
                    now_ms
                }
                marked => marked - 1,
            };
            now_ms.saturating_sub(since) < limit.soft_for.as_millis() as u64
        } else {
            self.over_soft_since.store(0, Ordering::Relaxed);
            true
        };
        if !within {
            self.taken(bytes);
        }
        within
    }

    /// Records that the client took (its connection wrote out) `bytes` of its output.
    pub fn taken(&self, bytes: usize) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The bytes pending now (`omem` in CLIENT LIST).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: OutputLimit = OutputLimit {
        hard: 100,
        soft: 50,
        soft_for: Duration::from_secs(60),
    };

    #[test]
    fn output_reaching_the_hard_limit_is_refused_at_once() {
        let pending = PendingOutput::default();
        assert!(pending.add(40, &LIMIT, 0));
        assert!(pending.add(40, &LIMIT, 1));
        assert!(
            !pending.add(20, &LIMIT, 2),
            "100 bytes pending reach the hard limit"
        );
        assert_eq!(pending.bytes(), 80, "the refused output is not counted");
        pending.taken(80);
        assert!(pending.add(99, &LIMIT, 3));
    }

    #[test]
    fn output_over_the_soft_limit_is_refused_once_it_stayed_there_the_whole_period() {
        let pending = PendingOutput::default();
        assert!(pending.add(60, &LIMIT, 1_000));
        assert!(
            pending.add(1, &LIMIT, 60_999),
            "over the soft limit for 59.999 s"
        );
        assert!(
            !pending.add(1, &LIMIT, 61_000),
            "over the soft limit for 60 s"
        );
        // Back under the soft limit, the period starts again the next time it goes over.
        pending.taken(61);
        assert!(pending.add(10, &LIMIT, 70_000));
        assert!(pending.add(50, &LIMIT, 80_000));
        assert!(pending.add(1, &LIMIT, 139_999));
        assert!(!pending.add(1, &LIMIT, 140_000));
    }
}
