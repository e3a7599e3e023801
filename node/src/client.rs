//! Connected clients as CLIENT LIST, CLIENT KILL and INFO see them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::output_limit::PendingOutput;

/// A client's id, unique for the life of the server, as CLIENT ID reports it.
pub type ClientId = u64;

/// What other connections may read or change of a client.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: ClientId,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    created: Instant,
    /// Milliseconds since `created` of the last command.
    last_active_ms: AtomicU64,
    pub name: Mutex<Option<String>>,
    pub lib_name: Mutex<String>,
    pub lib_ver: Mutex<String>,
    /// `CommandSpec::id` of the last command (`usize::MAX`: none yet).
    pub last_command: AtomicUsize,
    pub resp: AtomicU8,
    pub channels: AtomicUsize,
    pub patterns: AtomicUsize,
    /// Commands queued in MULTI, or -1 outside MULTI.
    pub multi: AtomicI64,
    pub blocked: AtomicBool,
    pub no_evict: AtomicBool,
    /// Bytes of unprocessed input.
    pub query_buffer: AtomicUsize,
    /// Published messages not yet written to the client.
    pub pending_output: PendingOutput,
    killed: AtomicBool,
    kill: Notify,
}

impl ClientInfo {
    /// Seconds since the client connected.
    pub fn age_secs(&self) -> u64 {
        self.created.elapsed().as_secs()
    }

    /// Seconds since the client's last command.
    pub fn idle_secs(&self) -> u64 {
        self.clock_ms()
            .saturating_sub(self.last_active_ms.load(Ordering::Relaxed))
            / 1000
    }

    /// Milliseconds since the client connected: the clock of its output limit.
    pub fn clock_ms(&self) -> u64 {
        self.created.elapsed().as_millis() as u64
    }

    /// Records activity now (for `idle=` and the idle timeout).
    pub fn touch(&self) {
        self.last_active_ms
            .store(self.clock_ms(), Ordering::Relaxed);
    }

    /// Asks the client's connection to close (CLIENT KILL, output limits).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    /// Returns true once the client was killed.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Resolves when the client is killed.
    pub async fn killed(&self) {
        if self.is_killed() {
            return;
        }
        self.kill.notified().await
    }

    /// Returns true if the client is subscribed to something.
    pub fn is_pubsub(&self) -> bool {
        self.channels.load(Ordering::Relaxed) + self.patterns.load(Ordering::Relaxed) > 0
    }

    /// The client's line in CLIENT LIST and CLIENT INFO, in Redis 7's format.
    pub fn describe(&self) -> String {
        let multi = self.multi.load(Ordering::Relaxed);
        let mut flags = String::new();
        if self.is_pubsub() {
            flags.push('P');
        }
        if multi >= 0 {
            flags.push('x');
        }
        if self.blocked.load(Ordering::Relaxed) {
            flags.push('b');
        }
        if self.no_evict.load(Ordering::Relaxed) {
            flags.push('e');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let qbuf = self.query_buffer.load(Ordering::Relaxed);
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db=0 sub={} psub={} ssub=0 \
             multi={} qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem={} \
             tot-mem={} events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.name.lock().as_deref().unwrap_or(""),
            self.age_secs(),
            self.idle_secs(),
            flags,
            self.channels.load(Ordering::Relaxed),
            self.patterns.load(Ordering::Relaxed),
            multi,
            qbuf,
            self.pending_output.bytes(),
            qbuf + 16384 + self.pending_output.bytes(),
            match self.last_command.load(Ordering::Relaxed) {
                usize::MAX => "NULL",
                id => resp::CommandTable::get().name_of(id),
            },
            self.resp.load(Ordering::Relaxed),
            self.lib_name.lock(),
            self.lib_ver.lock(),
        )
    }
}

/// Every connected client.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    clients: Mutex<BTreeMap<ClientId, Arc<ClientInfo>>>,
    next_id: AtomicU64,
    /// Connections accepted since start.
    pub total_connections: AtomicU64,
    /// Connections refused because of maxclients.
    pub rejected_connections: AtomicU64,
}

impl ClientRegistry {
    /// Registers a new connection and returns its shared record.
    pub fn register(&self, addr: SocketAddr, laddr: SocketAddr) -> Arc<ClientInfo> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            addr,
            laddr,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            name: Mutex::new(None),
            lib_name: Mutex::new(String::new()),
            lib_ver: Mutex::new(String::new()),
            last_command: AtomicUsize::new(usize::MAX),
            resp: AtomicU8::new(2),
            channels: AtomicUsize::new(0),
            patterns: AtomicUsize::new(0),
            multi: AtomicI64::new(-1),
            blocked: AtomicBool::new(false),
            no_evict: AtomicBool::new(false),
            query_buffer: AtomicUsize::new(0),
            pending_output: PendingOutput::default(),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        self.clients.lock().insert(id, info.clone());
        info
    }

    /// Forgets a closed connection.
    pub fn unregister(&self, id: ClientId) {
        self.clients.lock().remove(&id);
    }

    /// Number of connected clients.
    pub fn len(&self) -> usize {
        self.clients.lock().len()
    }

    /// Every connected client, by id.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.clients.lock().values().cloned().collect()
    }

    /// Kills every client (server shutdown).
    pub fn kill_all(&self) {
        for client in self.all() {
            client.kill();
        }
    }
}
