//! Server counters INFO reports: per-command calls and time, errors by code, traffic.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use resp::CommandTable;
use smallvec::SmallVec;

/// Calls, time and failures of one command (INFO commandstats).
#[derive(Debug, Default)]
pub struct CommandStat {
    pub calls: AtomicU64,
    pub usec: AtomicU64,
    pub rejected_calls: AtomicU64,
    pub failed_calls: AtomicU64,
}

/// The server's counters.
#[derive(Debug)]
pub struct ServerStats {
    /// Indexed by `CommandSpec::id`.
    commands: Vec<CommandStat>,
    errors: Mutex<BTreeMap<String, u64>>,
    pub total_commands: AtomicU64,
    pub total_errors: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
}

/// Counters a session gathers between flushes (once per batch of requests), so busy
/// connections do not contend on shared atomics for every command.
#[derive(Debug, Default)]
pub struct LocalStats {
    /// (command id, calls, usec, failed calls)
    entries: SmallVec<[(usize, u64, u64, u64); 4]>,
    pub net_input: u64,
    pub net_output: u64,
}

impl LocalStats {
    /// Records a command that ran.
    pub fn add(&mut self, id: usize, usec: u64, failed: bool) {
        match self.entries.iter_mut().find(|e| e.0 == id) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += usec;
                entry.3 += failed as u64;
            }
            None => self.entries.push((id, 1, usec, failed as u64)),
        }
    }
}

impl Default for ServerStats {
    fn default() -> Self {
        let count = CommandTable::get().spec_count();
        ServerStats {
            commands: (0..count).map(|_| CommandStat::default()).collect(),
            errors: Mutex::new(BTreeMap::new()),
            total_commands: AtomicU64::new(0),
            total_errors: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
        }
    }
}

impl ServerStats {
    /// Adds a session's gathered counters and clears them.
    pub fn flush(&self, local: &mut LocalStats) {
        let mut total = 0;
        for (id, calls, usec, failed) in local.entries.drain(..) {
            let stat = &self.commands[id];
            stat.calls.fetch_add(calls, Ordering::Relaxed);
            stat.usec.fetch_add(usec, Ordering::Relaxed);
            if failed > 0 {
                stat.failed_calls.fetch_add(failed, Ordering::Relaxed);
            }
            total += calls;
        }
        if total > 0 {
            self.total_commands.fetch_add(total, Ordering::Relaxed);
        }
        if local.net_input > 0 {
            self.net_input_bytes
                .fetch_add(std::mem::take(&mut local.net_input), Ordering::Relaxed);
        }
        if local.net_output > 0 {
            self.net_output_bytes
                .fetch_add(std::mem::take(&mut local.net_output), Ordering::Relaxed);
        }
    }

    /// Records a command refused before running (arity, auth, context...).
    pub fn record_rejected(&self, id: usize) {
        self.commands[id]
            .rejected_calls
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Records an error reply by its code (`ERR`, `WRONGTYPE`, ...).
    pub fn record_error(&self, text: &str) {
        self.total_errors.fetch_add(1, Ordering::Relaxed);
        let code = text.split(' ').next().unwrap_or("ERR").to_string();
        *self.errors.lock().entry(code).or_default() += 1;
    }

    /// Commands that ran or were rejected at least once: (name, stat), by name.
    pub fn command_stats(&self) -> Vec<(&str, &CommandStat)> {
        let table = CommandTable::get();
        let mut stats: Vec<_> = self
            .commands
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.calls.load(Ordering::Relaxed) + s.rejected_calls.load(Ordering::Relaxed) > 0
            })
            .map(|(id, stat)| (table.name_of(id), stat))
            .collect();
        stats.sort_by_key(|(name, _)| *name);
        stats
    }

    /// Error counts by code.
    pub fn error_stats(&self) -> Vec<(String, u64)> {
        self.errors
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Resets the counters CONFIG RESETSTAT resets.
    pub fn reset(&self) {
        for stat in &self.commands {
            stat.calls.store(0, Ordering::Relaxed);
            stat.usec.store(0, Ordering::Relaxed);
            stat.rejected_calls.store(0, Ordering::Relaxed);
            stat.failed_calls.store(0, Ordering::Relaxed);
        }
        self.errors.lock().clear();
        self.total_commands.store(0, Ordering::Relaxed);
        self.total_errors.store(0, Ordering::Relaxed);
        self.net_input_bytes.store(0, Ordering::Relaxed);
        self.net_output_bytes.store(0, Ordering::Relaxed);
    }
}
