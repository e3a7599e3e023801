//! Redis's `client-output-buffer-limit` for subscribers: the bytes published to a client that it
//! has not read yet are bounded, so a subscriber that stops reading cannot make the server hold
//! every message sent to it.
//!
//! As in Redis, a client is disconnected when its pending output reaches the hard limit, or
//! stays over the soft limit for the soft period (judged each time output is added).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::cmd::config::parse_memory;

/// One class of client's limits, as in `client-output-buffer-limit <class> <hard> <soft> <secs>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// The limits of every client class, as `client-output-buffer-limit` sets and shows them. Only
/// the pub/sub class acts: a normal client's replies are bounded by its connection's flushes,
/// and there are no replicas in Redis's sense.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputLimits {
    pub normal: OutputLimit,
    pub replica: OutputLimit,
    pub pubsub: OutputLimit,
}

impl Default for OutputLimits {
    /// Redis's defaults: `normal 0 0 0 slave 256mb 64mb 60 pubsub 32mb 8mb 60`.
    fn default() -> OutputLimits {
        OutputLimits {
            normal: OutputLimit {
                hard: 0,
                soft: 0,
                soft_for: Duration::ZERO,
            },
            replica: OutputLimit {
                hard: 256 << 20,
                soft: 64 << 20,
                soft_for: Duration::from_secs(60),
            },
            pubsub: PUBSUB,
        }
    }
}

impl OutputLimits {
    /// Applies `class hard soft seconds` groups over these limits, as Redis's CONFIG SET does
    /// (sizes as Redis's memory options take them); on an error nothing changes, and the
    /// message is Redis's.
    pub fn apply(&mut self, value: &str) -> Result<(), String> {
        let words: Vec<&str> = value.split_ascii_whitespace().collect();
        if !words.len().is_multiple_of(4) {
            return Err("Wrong number of arguments in buffer limit configuration.".into());
        }
        let mut next = *self;
        for group in words.chunks(4) {
            let class = match group[0].to_ascii_lowercase().as_str() {
                "normal" => &mut next.normal,
                "slave" | "replica" => &mut next.replica,
                "pubsub" => &mut next.pubsub,
                _ => {
                    return Err(
                        "Invalid client class specified in buffer limit configuration.".into(),
                    )
                }
            };
            let invalid =
                || "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
            let hard = parse_memory(group[1]).map_err(|_| invalid())?;
            let soft = parse_memory(group[2]).map_err(|_| invalid())?;
            let seconds: u64 = group[3].parse().map_err(|_| invalid())?;
            *class = OutputLimit {
                hard,
                soft,
                soft_for: Duration::from_secs(seconds),
            };
        }
        *self = next;
        Ok(())
    }

    /// The limits as CONFIG GET shows them, sizes in bytes.
    pub fn render(&self) -> String {
        let class = |name: &str, limit: &OutputLimit| {
            format!(
                "{name} {} {} {}",
                limit.hard,
                limit.soft,
                limit.soft_for.as_secs()
            )
        };
        format!(
            "{} {} {}",
            class("normal", &self.normal),
            class("slave", &self.replica),
            class("pubsub", &self.pubsub)
        )
    }
}

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
        // A limit of 0 is no limit, as in Redis.
        let within = if limit.hard > 0 && pending >= limit.hard {
            false
        } else if limit.soft > 0 && pending >= limit.soft {
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
    fn limits_are_set_and_shown_as_redis_does() {
        let mut limits = OutputLimits::default();
        assert_eq!(
            limits.render(),
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        );
        limits.apply("pubsub 64mb 16mb 30 replica 1gb 0 0").unwrap();
        assert_eq!(
            limits.render(),
            "normal 0 0 0 slave 1073741824 0 0 pubsub 67108864 16777216 30"
        );
        for (value, error) in [
            ("pubsub 1mb 1mb", "Wrong number"),
            ("master 1 1 1", "Invalid client class"),
            ("pubsub 1xb 1 1", "Error in hard, soft or soft_seconds"),
            (
                "normal 0 0 0 pubsub 1 1 -1",
                "Error in hard, soft or soft_seconds",
            ),
        ] {
            let before = limits;
            let got = limits.apply(value).unwrap_err();
            assert!(got.starts_with(error), "{value}: {got}");
            assert_eq!(limits, before, "{value} changed the limits");
        }
        // No limit at all.
        let pending = PendingOutput::default();
        assert!(pending.add(1 << 40, &limits.normal, 0));
    }

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
