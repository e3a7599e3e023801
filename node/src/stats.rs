//! Server counters INFO reports: per-command calls and time, errors by code, traffic.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use resp::CommandTable;

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
    commands: HashMap<String, CommandStat>,
    errors: Mutex<BTreeMap<String, u64>>,
    pub total_commands: AtomicU64,
    pub total_errors: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
}

impl Default for ServerStats {
    fn default() -> Self {
        let mut commands = HashMap::new();
        for spec in CommandTable::get().iter() {
            commands.insert(spec.name.clone(), CommandStat::default());
            for sub in &spec.subcommands {
                commands.insert(sub.name.clone(), CommandStat::default());
            }
        }
        ServerStats {
            commands,
            errors: Mutex::new(BTreeMap::new()),
            total_commands: AtomicU64::new(0),
            total_errors: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
        }
    }
}

impl ServerStats {
    /// Records a command that ran, its duration, and whether it replied with an error.
    pub fn record_call(&self, name: &str, usec: u64, failed: bool) {
        self.total_commands.fetch_add(1, Ordering::Relaxed);
        if let Some(stat) = self.commands.get(name) {
            stat.calls.fetch_add(1, Ordering::Relaxed);
            stat.usec.fetch_add(usec, Ordering::Relaxed);
            if failed {
                stat.failed_calls.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records a command refused before running (arity, auth, unknown subcommand...).
    pub fn record_rejected(&self, name: &str) {
        if let Some(stat) = self.commands.get(name) {
            stat.rejected_calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records an error reply by its code (`ERR`, `WRONGTYPE`, ...).
    pub fn record_error(&self, text: &str) {
        self.total_errors.fetch_add(1, Ordering::Relaxed);
        let code = text.split(' ').next().unwrap_or("ERR").to_string();
        *self.errors.lock().entry(code).or_default() += 1;
    }

    /// Commands that ran or were rejected at least once: (name, stat).
    pub fn command_stats(&self) -> Vec<(&str, &CommandStat)> {
        let mut stats: Vec<_> = self
            .commands
            .iter()
            .filter(|(_, s)| {
                s.calls.load(Ordering::Relaxed) + s.rejected_calls.load(Ordering::Relaxed) > 0
            })
            .map(|(name, stat)| (name.as_str(), stat))
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
        for stat in self.commands.values() {
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
