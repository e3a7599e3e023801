//! INFO, in Redis's section and field format.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use resp::Frame;

use super::REDIS_VERSION;
use crate::server::{unix_ms, Server};
use crate::session::{Outcome, Session};

/// Every section, in the order INFO prints them; the last ones only on request (or `all`).
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
    "commandstats",
];
/// How many of `SECTIONS` INFO prints by default.
const DEFAULT_COUNT: usize = 11;

pub fn info(session: &Session, args: &[Bytes]) -> Outcome {
    let mut wanted: Vec<String> = Vec::new();
    for arg in &args[1..] {
        let name = String::from_utf8_lossy(arg).to_ascii_lowercase();
        match name.as_str() {
            "default" => wanted.extend(SECTIONS[..DEFAULT_COUNT].iter().map(|s| s.to_string())),
            "all" | "everything" => wanted.extend(SECTIONS.iter().map(|s| s.to_string())),
            _ => wanted.push(name),
        }
    }
    if wanted.is_empty() {
        wanted.extend(SECTIONS[..DEFAULT_COUNT].iter().map(|s| s.to_string()));
    }
    let server = &session.server;
    let mut out = String::new();
    for &section in SECTIONS {
        if !wanted.iter().any(|w| w == section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        write_section(server, section, &mut out);
    }
    Frame::Verbatim(Bytes::from(out)).into()
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 {
        format!("{bytes}B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}M", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0))
    }
}

/// Resident memory of the process, from /proc (0 where unavailable).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0;
    if !ok {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_stime), secs(usage.ru_utime))
}

fn write_section(server: &Server, section: &str, out: &mut String) {
    let config = server.config.read().clone();
    let uptime = server.started.elapsed().as_secs();
    match section {
        "server" => {
            let _ = write!(
                out,
                "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\n\
                 redis_build_id:0\r\nredis_mode:cluster\r\nos:{} {}\r\narch_bits:64\r\n\
                 monotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\natomicvar_api:c11-builtin\r\n\
                 gcc_version:0.0.0\r\nprocess_id:{}\r\nprocess_supervised:no\r\nrun_id:{}\r\ntcp_port:{}\r\n\
                 server_time_usec:{}\r\nuptime_in_seconds:{}\r\nuptime_in_days:{}\r\nhz:{}\r\nconfigured_hz:{}\r\n\
                 lru_clock:{}\r\nexecutable:{}\r\nconfig_file:\r\nio_threads_active:0\r\n\
                 autocache_version:{}\r\n",
                std::env::consts::OS,
                std::env::consts::ARCH,
                std::process::id(),
                server.run_id,
                server.local_addr.port(),
                unix_ms() * 1000,
                uptime,
                uptime / 86400,
                config.hz,
                config.hz,
                (unix_ms() / 1000) & ((1 << 24) - 1),
                std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default(),
                env!("CARGO_PKG_VERSION"),
            );
        }
        "clients" => {
            let clients = server.clients.all();
            let blocked = clients
                .iter()
                .filter(|c| c.blocked.load(Ordering::Relaxed))
                .count();
            let pubsub = clients.iter().filter(|c| c.is_pubsub()).count();
            let _ = write!(
                out,
                "# Clients\r\nconnected_clients:{}\r\ncluster_connections:0\r\nmaxclients:{}\r\n\
                 client_recent_max_input_buffer:0\r\nclient_recent_max_output_buffer:0\r\n\
                 blocked_clients:{}\r\ntracking_clients:0\r\nclients_in_timeout_table:{}\r\n\
                 pubsub_clients:{}\r\n",
                clients.len(),
                config.maxclients,
                blocked,
                blocked,
                pubsub,
            );
        }
        "memory" => {
            let rss = rss_bytes();
            let _ = write!(
                out,
                "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\n\
                 used_memory_rss_human:{}\r\nused_memory_peak:{rss}\r\nused_memory_peak_human:{}\r\n\
                 maxmemory:0\r\nmaxmemory_human:0B\r\nmaxmemory_policy:noeviction\r\n\
                 mem_fragmentation_ratio:1.00\r\nmem_allocator:mimalloc\r\nlazyfree_pending_objects:0\r\n",
                human(rss),
                human(rss),
                human(rss),
            );
        }
        "persistence" => {
            let _ = write!(
                out,
                "# Persistence\r\nloading:0\r\nasync_loading:0\r\ncurrent_cow_peak:0\r\n\
                 rdb_changes_since_last_save:{}\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:{}\r\n\
                 rdb_last_bgsave_status:ok\r\naof_enabled:0\r\naof_rewrite_in_progress:0\r\n\
                 aof_last_write_status:ok\r\n",
                server.db.stats().dirty,
                unix_ms() / 1000 - uptime,
            );
        }
        "stats" => {
            let stats = &server.stats;
            let db = server.db.stats();
            let _ = write!(
                out,
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
                 instantaneous_ops_per_sec:0\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\n\
                 rejected_connections:{}\r\nexpired_keys:{}\r\nevicted_keys:0\r\nkeyspace_hits:{}\r\n\
                 keyspace_misses:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\n\
                 total_error_replies:{}\r\ntotal_blocking_keys:{}\r\n",
                server.clients.total_connections.load(Ordering::Relaxed),
                stats.total_commands.load(Ordering::Relaxed),
                stats.net_input_bytes.load(Ordering::Relaxed),
                stats.net_output_bytes.load(Ordering::Relaxed),
                server.clients.rejected_connections.load(Ordering::Relaxed),
                db.expired,
                db.hits,
                db.misses,
                server.pubsub.channels(None).len(),
                server.pubsub.numpat(),
                stats.total_errors.load(Ordering::Relaxed),
                server.db.blocking().blocked_keys(),
            );
        }
        "replication" => {
            let _ = write!(
                out,
                "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\n\
                 master_replid:{}\r\nmaster_replid2:0000000000000000000000000000000000000000\r\n\
                 master_repl_offset:0\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:0\r\n\
                 repl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:0\r\nrepl_backlog_histlen:0\r\n",
                server.run_id,
            );
        }
        "cpu" => {
            let (sys, user) = cpu_times();
            let _ = write!(
                out,
                "# CPU\r\nused_cpu_sys:{sys:.6}\r\nused_cpu_user:{user:.6}\r\nused_cpu_sys_children:0.000000\r\n\
                 used_cpu_user_children:0.000000\r\n",
            );
        }
        "modules" => out.push_str("# Modules\r\n"),
        "errorstats" => {
            out.push_str("# Errorstats\r\n");
            for (code, count) in server.stats.error_stats() {
                let _ = write!(out, "errorstat_{code}:count={count}\r\n");
            }
        }
        "cluster" => out.push_str("# Cluster\r\ncluster_enabled:1\r\n"),
        "keyspace" => {
            out.push_str("# Keyspace\r\n");
            let (keys, expires) = server.db.key_counts();
            if keys > 0 {
                let _ = write!(out, "db0:keys={keys},expires={expires},avg_ttl=0\r\n");
            }
        }
        "commandstats" => {
            out.push_str("# Commandstats\r\n");
            for (name, stat) in server.stats.command_stats() {
                let calls = stat.calls.load(Ordering::Relaxed);
                let usec = stat.usec.load(Ordering::Relaxed);
                let per_call = if calls > 0 {
                    usec as f64 / calls as f64
                } else {
                    0.0
                };
                let _ = write!(
                    out,
                    "cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
                    stat.rejected_calls.load(Ordering::Relaxed),
                    stat.failed_calls.load(Ordering::Relaxed),
                );
            }
        }
        _ => {}
    }
}
