//! A client's session: its protocol version, authentication, transaction, watches and
//! subscriptions, and the routing of each request to the engine or to a server command.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use raft::{AccessError, Op, Request, Response, WatchedKey};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use resp::command_table::CommandSpec;
use resp::{CommandTable, Frame, Limits, Proto};
use tiering::blocking::Waiter;
use tiering::{slot_of, Blob, Caller, Db, ExecCtx, Watch};
use tokio::sync::mpsc;

use crate::client::ClientInfo;
use crate::cmd;
use crate::pubsub::Subscriber;
use crate::route::{self, GroupIds, Route, CROSSSLOT};
use crate::server::{unix_ms, Server};
use crate::stats::LocalStats;

/// What the connection should do after a request.
pub enum Outcome {
    /// Send this reply.
    Reply(Frame),
    /// Send these replies, one after the other (SUBSCRIBE to several channels).
    Many(Vec<Frame>),
    /// Send nothing (CLIENT REPLY OFF, SUBSCRIBE's pushes already queued).
    Silent,
    /// Send the reply, if any, then close the connection.
    Close(Option<Frame>),
    /// Wait for a key to change, then retry.
    Block(Blocked),
    /// Wait for this client's writes in flight, confirm this node may serve reads of these
    /// groups, then run the command again.
    Fence(GroupIds),
    /// Propose a write to these groups' logs; the reply comes when it applies.
    Propose(Proposal),
    /// This group has no leader this node knows of (an election or a leadership transfer is
    /// under way): wait a moment for one, then run the command again (once).
    AwaitLeader(u32),
    /// The key's slot is still arriving in its group here (a slot move is under way): wait a
    /// moment for the move to land, then run the command again (once).
    AwaitSlot { group: u32, slot: u16 },
}

/// Why a command is not served here.
enum Redirect {
    /// Reply with this error (MOVED, CROSSSLOT, CLUSTERDOWN).
    Error(String),
    /// Wait for the group to have a leader, then try again.
    AwaitLeader(u32),
}

/// A write on its way to the log, and what to make of its result.
pub struct Proposal {
    /// One group, or every group (FLUSHALL).
    pub groups: GroupIds,
    pub request: Request,
    pub then: Then,
}

/// How a proposal's result becomes a reply.
pub enum Then {
    /// The command's reply is the entry's.
    Reply {
        spec: &'static CommandSpec,
        args: Vec<Bytes>,
        /// Time the session spent on it (what commandstats and SLOWLOG report, as Redis
        /// reports execution time without the wait for the log's fsync).
        micros: u64,
    },
    /// A transaction: the entry's replies, merged with those of the server commands it queued.
    Exec(ExecPlan),
    /// A blocking command: it may have to wait.
    Blocking(Blocked),
}

/// A transaction proposed by EXEC.
pub struct ExecPlan {
    exec: &'static CommandSpec,
    queued: Vec<(&'static CommandSpec, Vec<Bytes>)>,
    /// The replies of the queued server commands (None for engine commands), in order.
    local: Vec<Option<Frame>>,
    /// Time the session spent preparing it.
    micros: u64,
}

impl From<Frame> for Outcome {
    fn from(frame: Frame) -> Outcome {
        Outcome::Reply(frame)
    }
}

/// A blocking command waiting for data.
pub struct Blocked {
    pub spec: &'static CommandSpec,
    pub args: Vec<Bytes>,
    pub group: u32,
    /// The keys it waits on (its waiter is queued on each).
    pub keys: Vec<Blob>,
    /// When it gives up, in Unix ms (None: never); set by the first attempt.
    pub deadline_ms: Option<u64>,
    /// It already waited once (a key of the wrong type then keeps it waiting, as in Redis).
    pub retrying: bool,
}

/// CLIENT REPLY's modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// Skip the reply of the next command only.
    Skip,
}

/// A transaction being queued.
#[derive(Default)]
pub struct Multi {
    pub queued: Vec<(&'static CommandSpec, Vec<Bytes>)>,
    /// A command failed to queue: EXEC will abort.
    pub failed: bool,
    /// Bytes of the queued arguments.
    pub bytes: usize,
}

/// The state of one client connection.
pub struct Session {
    pub server: Arc<Server>,
    pub info: Arc<ClientInfo>,
    pub proto: Proto,
    pub authenticated: bool,
    pub multi: Option<Multi>,
    /// Watched keys, with where their group's log stood when each watch began.
    pub watched: Vec<Watch>,
    /// Writes this client has in flight (set by the connection before each request).
    pub writes_in_flight: usize,
    /// The current command already waited for a leader (see `Outcome::AwaitLeader`): if there
    /// is still none, it gets CLUSTERDOWN. Cleared by the connection after each command.
    pub awaited_leader: bool,
    /// The current command already waited for its slot to land (see `Outcome::AwaitSlot`):
    /// if it has not, the command gets TRYAGAIN. Cleared by the connection after each command.
    pub awaited_slot: bool,
    /// Groups confirmed readable in this batch (see `Outcome::Fence`), as flags per group and
    /// as a list to clear them.
    fenced: Vec<bool>,
    fenced_list: GroupIds,
    pub channels: HashSet<Bytes>,
    pub patterns: HashSet<Bytes>,
    pub push_tx: mpsc::Sender<Frame>,
    pub reply_mode: ReplyMode,
    pub waiter: Arc<Waiter>,
    /// Wall clock of the current batch of requests, in Unix milliseconds.
    now_ms: u64,
    /// When the previous command of this batch ended (the next one's start). A TSC clock:
    /// every command reads it.
    clock: quanta::Instant,
    /// Settings read once per batch rather than once per command.
    limits: Limits,
    slowlog_slower_than: i64,
    slowlog_max_len: usize,
    idle_timeout: Option<std::time::Duration>,
    local_stats: LocalStats,
    rng: SmallRng,
}

impl Session {
    pub fn new(
        server: Arc<Server>,
        info: Arc<ClientInfo>,
        push_tx: mpsc::Sender<Frame>,
    ) -> Session {
        let authenticated = server.config.read().requirepass.is_empty();
        let groups = server.db.groups();
        Session {
            server,
            info,
            proto: Proto::Resp2,
            authenticated,
            multi: None,
            watched: Vec::new(),
            writes_in_flight: 0,
            awaited_leader: false,
            awaited_slot: false,
            fenced: vec![false; groups],
            fenced_list: GroupIds::new(),
            channels: HashSet::new(),
            patterns: HashSet::new(),
            push_tx,
            reply_mode: ReplyMode::On,
            waiter: Waiter::new(),
            now_ms: unix_ms(),
            clock: quanta::Instant::now(),
            limits: Limits::default(),
            slowlog_slower_than: 10000,
            slowlog_max_len: 128,
            idle_timeout: None,
            local_stats: LocalStats::default(),
            rng: SmallRng::from_rng(&mut rand::rng()),
        }
    }

    /// Starts a batch of requests (one read's worth): reads the clock and the live settings
    /// once for all of them.
    pub fn begin_batch(&mut self) {
        {
            let config = self.server.config.read();
            self.limits = Limits {
                max_bulk_len: config.proto_max_bulk_len,
                max_query_buffer: config.client_query_buffer_limit,
            };
            self.slowlog_slower_than = config.slowlog_log_slower_than;
            self.slowlog_max_len = config.slowlog_max_len;
            self.idle_timeout =
                (config.timeout > 0).then(|| std::time::Duration::from_secs(config.timeout));
        }
        self.now_ms = unix_ms();
        self.clock = quanta::Instant::now();
        self.info.touch();
        // A fence covers the requests that arrived before it, so each batch fences anew.
        for group in self.fenced_list.drain(..) {
            self.fenced[group as usize] = false;
        }
    }

    /// Records that reads of `group` are linearizable for the rest of this batch.
    pub fn mark_fenced(&mut self, group: u32) {
        if !std::mem::replace(&mut self.fenced[group as usize], true) {
            self.fenced_list.push(group);
        }
    }

    /// Answers a command whose fence failed: this node cannot serve it now.
    pub fn fence_failed(&mut self, args: &[Bytes], error: &AccessError) -> Frame {
        let spec = CommandTable::get().lookup_request(args);
        let slot = spec.and_then(|spec| request_slot(spec, args));
        let frame = access_error(error, slot);
        if let Some(spec) = spec {
            self.record(spec, args, &Outcome::Reply(frame.clone()));
        }
        frame
    }

    /// Ends a batch: publishes the counters it gathered.
    pub fn end_batch(&mut self) {
        self.server.stats.flush(&mut self.local_stats);
    }

    /// The idle timeout in force for this batch.
    pub fn idle_timeout(&self) -> Option<std::time::Duration> {
        self.idle_timeout
    }

    /// Counts bytes read from the client (published with the batch's other counters).
    pub fn count_input(&mut self, bytes: usize) {
        self.local_stats.net_input += bytes as u64;
    }

    /// Counts bytes written to the client.
    pub fn count_output(&mut self, bytes: usize) {
        self.local_stats.net_output += bytes as u64;
    }

    /// The input limits in force for this batch.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Encodes a frame for this client's protocol.
    pub fn encode(&self, frame: &Frame, out: &mut BytesMut) {
        resp::encode(frame, self.proto, out);
    }

    /// Encodes a command's reply, unless CLIENT REPLY suppresses it.
    pub fn reply(&mut self, frame: &Frame, out: &mut BytesMut) {
        match self.reply_mode {
            ReplyMode::On => self.encode(frame, out),
            ReplyMode::Off => {}
            ReplyMode::Skip => self.reply_mode = ReplyMode::On,
        }
    }

    /// The clock and seed a command runs with.
    pub fn exec_ctx(&mut self) -> ExecCtx {
        ExecCtx {
            now_ms: self.now_ms,
            seed: self.rng.next_u64(),
        }
    }

    /// A subscriber handle for the pub/sub registry.
    pub fn subscriber(&self) -> Subscriber {
        Subscriber {
            tx: self.push_tx.clone(),
            info: self.info.clone(),
        }
    }

    fn reject(&mut self, spec: Option<&CommandSpec>, text: String) -> Outcome {
        if let Some(spec) = spec {
            self.server.stats.record_rejected(spec.id);
        }
        if let Some(multi) = &mut self.multi {
            multi.failed = true;
        }
        self.server.stats.record_error(&text);
        Outcome::Reply(Frame::error(text))
    }

    /// Runs one request. `args` is taken only when the session must keep it (a queued or
    /// blocked command), so the caller can reuse the vector otherwise.
    pub fn handle(&mut self, args: &mut Vec<Bytes>) -> Outcome {
        let table = CommandTable::get();
        let Some(container) = table.lookup(&args[0]) else {
            return self.reject(None, unknown_command(args));
        };
        let spec: &'static CommandSpec = if container.subcommands.is_empty() || args.len() < 2 {
            container
        } else {
            match container.subcommand(&args[1]) {
                Some(sub) => sub,
                None => {
                    let text = format!(
                        "ERR unknown subcommand '{}'. Try {} HELP.",
                        sanitize(&truncate(&args[1], 128)),
                        container.name.to_ascii_uppercase()
                    );
                    return self.reject(None, text);
                }
            }
        };
        if !spec.arity_ok(args.len()) {
            let text = format!("ERR wrong number of arguments for '{}' command", spec.name);
            return self.reject(Some(spec), text);
        }
        if self.multi.is_some() && spec.has_flag("no_multi") {
            return self.reject(
                Some(spec),
                "ERR Command not allowed inside a transaction".into(),
            );
        }
        if !self.authenticated && !spec.has_flag("no_auth") {
            return self.reject(Some(spec), "NOAUTH Authentication required.".into());
        }
        let subscribed = !self.channels.is_empty() || !self.patterns.is_empty();
        if self.proto == Proto::Resp2 && subscribed && !allowed_in_pubsub(&spec.name) {
            let text = format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                spec.name
            );
            return self.reject(Some(spec), text);
        }
        self.info.last_command.store(spec.id, Ordering::Relaxed);
        if let Some(multi) = &mut self.multi {
            if !matches!(
                spec.name.as_str(),
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            ) {
                multi.bytes += args.iter().map(|a| a.len() + 16).sum::<usize>();
                if multi.bytes > self.limits.max_query_buffer {
                    // Queued commands count against the query buffer limit, so MULTI cannot
                    // grow a client's memory without bound.
                    tracing::warn!(
                        client = self.info.id,
                        bytes = multi.bytes,
                        "closing client whose transaction exceeded the query buffer limit"
                    );
                    return Outcome::Close(None);
                }
                multi.queued.push((spec, std::mem::take(args)));
                self.info
                    .multi
                    .store(multi.queued.len() as i64, Ordering::Relaxed);
                return Outcome::Reply(Frame::simple("QUEUED"));
            }
        }
        self.call(spec, args)
    }

    /// Runs a command that passed every check, recording its statistics.
    fn call(&mut self, spec: &'static CommandSpec, args: &mut Vec<Bytes>) -> Outcome {
        let mut only_groups: Option<Vec<usize>> = None;
        match route::route(&self.server.db, spec, args) {
            // Replies leave in request order, and a read must see this client's writes.
            Route::Local | Route::Read(_) if self.writes_in_flight > 0 => {
                return Outcome::Fence(GroupIds::new())
            }
            Route::Read(mut groups) => {
                let raft = &self.server.groups;
                if groups.len() > 1 && !has_keys(spec, args) {
                    // KEYS, SCAN, DBSIZE and the like read the groups this node leads, as a
                    // Redis Cluster node answers for its own slots.
                    let all = groups.len();
                    groups.retain(|g| raft.reads_are_local(*g) || raft.is_leader(*g));
                    if groups.len() < all {
                        only_groups = Some(groups.iter().map(|&g| g as usize).collect());
                    }
                }
                match self.redirect(spec, args, &groups) {
                    Some(Redirect::Error(text)) => return self.reject(Some(spec), text),
                    Some(Redirect::AwaitLeader(group)) => return Outcome::AwaitLeader(group),
                    None => {}
                }
                if let Some(wait) = self.slot_arriving(spec, args, &groups) {
                    return wait;
                }
                let raft = &self.server.groups;
                let unfenced: GroupIds = groups
                    .into_iter()
                    .filter(|&g| !self.fenced[g as usize] && !raft.reads_are_local(g))
                    .collect();
                if !unfenced.is_empty() {
                    return Outcome::Fence(unfenced);
                }
            }
            Route::Local => {}
            Route::Write(group) => {
                match self.redirect(spec, args, &[group]) {
                    Some(Redirect::Error(text)) => return self.reject(Some(spec), text),
                    Some(Redirect::AwaitLeader(group)) => return Outcome::AwaitLeader(group),
                    None => {}
                }
                if let Some(wait) = self.slot_arriving(spec, args, &[group]) {
                    return wait;
                }
                return self.propose(spec, args, smallvec::smallvec![group]);
            }
            Route::WriteAll => {
                // FLUSHALL and FLUSHDB empty the groups this node leads, as a Redis Cluster
                // master flushes its own slots.
                let raft = &self.server.groups;
                let led: GroupIds = (0..self.server.db.groups() as u32)
                    .filter(|&g| raft.reads_are_local(g) || raft.is_leader(g))
                    .collect();
                if led.is_empty() {
                    let outcome = Outcome::Reply(Frame::ok());
                    self.record(spec, args, &outcome);
                    return outcome;
                }
                return self.propose(spec, args, led);
            }
            Route::CrossSlot => return self.reject(Some(spec), CROSSSLOT.into()),
            Route::Refused(text) => return self.reject(Some(spec), text.into()),
        }
        let outcome = if Db::handles(spec) {
            let ctx = self.exec_ctx();
            let executed = self.server.db.execute(
                spec,
                args,
                ctx,
                &Caller {
                    only_groups: only_groups.as_deref(),
                    ..Caller::default()
                },
            );
            match executed.moved {
                Some(slot) => Outcome::Reply(self.slot_moved(slot)),
                None => Outcome::Reply(executed.reply),
            }
        } else {
            cmd::run(self, spec, args)
        };
        if !matches!(
            outcome,
            Outcome::Propose(_)
                | Outcome::Fence(_)
                | Outcome::AwaitLeader(_)
                | Outcome::AwaitSlot { .. }
        ) {
            self.record(spec, args, &outcome);
        }
        outcome
    }

    /// The redirection for a command whose `groups` include one this node does not lead:
    /// MOVED to its leader, CLUSTERDOWN while it has none, or CROSSSLOT (as Redis Cluster
    /// answers any multi-slot command) when different nodes lead its groups. The command was
    /// not applied.
    fn redirect(&self, spec: &CommandSpec, args: &[Bytes], groups: &[u32]) -> Option<Redirect> {
        let raft = &self.server.groups;
        let group = groups
            .iter()
            .copied()
            .find(|&g| !raft.reads_are_local(g) && !raft.is_leader(g))?;
        let leader = |g: u32| raft.leader_of(g).map(|(id, _)| id);
        if groups.iter().any(|&g| leader(g) != leader(group)) {
            // No single node can serve it: redirecting would send the client back and forth.
            return Some(Redirect::Error(CROSSSLOT.to_string()));
        }
        let slot = slot_in_group(&self.server.db, spec, args, group);
        Some(match raft.leader_of(group) {
            Some((id, addr)) if id != raft.node_id() => {
                Redirect::Error(format!("MOVED {slot} {}", addr.client))
            }
            _ if !self.awaited_leader => Redirect::AwaitLeader(group),
            _ => Redirect::Error(NO_LEADER.to_string()),
        })
    }

    /// The wait for a command whose key's slot its group here is still importing: the move
    /// of that slot has released it from its old group, so this group is the one to serve it
    /// once the import lands. Waiting for that (a moment, see `SLOT_WAIT` in `connection`)
    /// spares clients a TRYAGAIN, which some retry only briefly. Checked once per command.
    fn slot_arriving(&self, spec: &CommandSpec, args: &[Bytes], groups: &[u32]) -> Option<Outcome> {
        let &[group] = groups else { return None };
        // On every keyed command: the slot is found only while some slot is arriving.
        if self.awaited_slot || !self.server.db.any_arriving() {
            return None;
        }
        let slot = request_slot(spec, args)?;
        self.server
            .db
            .is_arriving(group as usize, slot)
            .then_some(Outcome::AwaitSlot { group, slot })
    }

    /// The wait for EXEC of a transaction whose first key's slot is still arriving in its
    /// group here, as for a single command (see [`Session::slot_arriving`]); the transaction
    /// stays queued meanwhile.
    fn exec_slot_arriving(&self) -> Option<Outcome> {
        if !self.server.db.any_arriving() {
            return None;
        }
        let multi = self.multi.as_ref().filter(|multi| !multi.failed)?;
        let (spec, args) = multi.queued.iter().find(|(spec, _)| Db::handles(spec))?;
        let slot = request_slot(spec, args)?;
        let group = self.server.db.group_of_slot(slot) as u32;
        self.slot_arriving(spec, args, &[group])
    }

    /// Turns a write command into a proposal to `groups`.
    fn propose(
        &mut self,
        spec: &'static CommandSpec,
        args: &mut Vec<Bytes>,
        groups: GroupIds,
    ) -> Outcome {
        let request = self.request(Op::Command(owned_args(args)));
        let then = if spec.has_flag("blocking") {
            let keys: Vec<Blob> = spec
                .key_positions(args)
                .unwrap_or_default()
                .iter()
                .map(|k| Blob::new(&args[k.index]))
                .collect();
            // Queued before the first attempt: a push that lands after it wakes this client.
            self.server.db.blocking().register(&self.waiter, &keys);
            Then::Blocking(Blocked {
                spec,
                args: std::mem::take(args),
                group: groups[0],
                keys,
                deadline_ms: None,
                retrying: false,
            })
        } else {
            Then::Reply {
                spec,
                args: std::mem::take(args),
                micros: self.lap(),
            }
        };
        Outcome::Propose(Proposal {
            groups,
            request,
            then,
        })
    }

    /// A log entry of `op`, with this batch's clock and a fresh seed.
    fn request(&mut self, op: Op) -> Request {
        Request {
            now_ms: self.now_ms,
            seed: self.rng.next_u64(),
            op: op.into(),
        }
    }

    /// The entry a blocked command proposes again after a wake-up.
    pub fn blocked_request(&mut self, blocked: &Blocked) -> Request {
        self.now_ms = unix_ms();
        self.request(Op::Command(owned_args(&blocked.args)))
    }

    /// Turns the result of a proposal into what the connection does next.
    pub fn complete(&mut self, then: Then, result: Result<Response, AccessError>) -> Outcome {
        match then {
            Then::Reply { spec, args, micros } => {
                let slot = request_slot(spec, &args);
                let outcome = Outcome::Reply(self.reply_for(result, slot));
                self.record_micros(spec, &args, &outcome, micros);
                outcome
            }
            Then::Exec(plan) => self.complete_exec(plan, result),
            Then::Blocking(mut blocked) => match self.complete_blocked(&mut blocked, result) {
                Some(frame) => Outcome::Reply(frame),
                None => Outcome::Block(blocked),
            },
        }
    }

    /// The reply of a blocking command's attempt, or None if it must wait.
    pub fn complete_blocked(
        &mut self,
        blocked: &mut Blocked,
        result: Result<Response, AccessError>,
    ) -> Option<Frame> {
        if let Ok(Response::WouldBlock { deadline_ms }) = &result {
            if !blocked.retrying {
                blocked.deadline_ms = *deadline_ms;
            }
            blocked.retrying = true;
            return None;
        }
        let frame = self.reply_for(result, request_slot(blocked.spec, &blocked.args));
        // Like Redis 7.0, a blocked client whose key changed type keeps waiting.
        if blocked.retrying && matches!(&frame, Frame::Error(text) if text.starts_with("WRONGTYPE"))
        {
            return None;
        }
        self.unblock(blocked);
        let outcome = Outcome::Reply(frame);
        self.record_micros(blocked.spec, &blocked.args, &outcome, 0);
        match outcome {
            Outcome::Reply(frame) => Some(frame),
            _ => unreachable!("constructed as a reply"),
        }
    }

    /// Records a command that ran: its time since the previous command ended (or the batch
    /// began), commandstats, errorstats, and the slow log.
    fn record(&mut self, spec: &CommandSpec, args: &[Bytes], outcome: &Outcome) {
        let micros = self.lap();
        self.record_micros(spec, args, outcome, micros);
    }

    /// Microseconds since the previous command ended (or the batch began); starts the next.
    fn lap(&mut self) -> u64 {
        let now = quanta::Instant::now();
        let micros = now.duration_since(self.clock).as_micros() as u64;
        self.clock = now;
        micros
    }

    /// Records a command that took `micros`.
    fn record_micros(
        &mut self,
        spec: &CommandSpec,
        args: &[Bytes],
        outcome: &Outcome,
        micros: u64,
    ) {
        let error = match outcome {
            Outcome::Reply(Frame::Error(text)) | Outcome::Close(Some(Frame::Error(text))) => {
                Some(text)
            }
            _ => None,
        };
        if let Some(text) = error {
            self.server.stats.record_error(text);
        }
        self.local_stats.add(spec.id, micros, error.is_some());
        let threshold = self.slowlog_slower_than;
        if threshold >= 0 && micros >= threshold as u64 {
            let name = self.info.name.lock().clone().unwrap_or_default();
            let addr = self.info.addr.to_string();
            self.server
                .slowlog
                .record(args, micros, addr, name, self.slowlog_max_len);
        }
    }

    /// Leaves the queues of a blocking command (served, timed out or disconnected).
    pub fn unblock(&mut self, blocked: &Blocked) {
        self.server
            .db
            .blocking()
            .unregister(&self.waiter, &blocked.keys);
    }

    /// Drops every WATCH.
    pub fn unwatch_all(&mut self) {
        self.watched.clear();
    }

    /// Runs the queued transaction: one log entry of its group, holding its engine commands
    /// and its watches.
    pub fn exec(&mut self) -> Outcome {
        if let Some(wait) = self.exec_slot_arriving() {
            return wait;
        }
        let Some(multi) = self.multi.take() else {
            return Frame::error("ERR EXEC without MULTI").into();
        };
        self.info.multi.store(-1, Ordering::Relaxed);
        if multi.failed {
            self.unwatch_all();
            return Frame::error("EXECABORT Transaction discarded because of previous errors.")
                .into();
        }
        let db = &self.server.db;
        let mut groups: GroupIds = multi
            .queued
            .iter()
            .filter(|(spec, _)| Db::handles(spec))
            .flat_map(|(spec, args)| db.groups_of(spec, args))
            .map(|g| g as u32)
            .chain(
                self.watched
                    .iter()
                    .map(|w| db.group_of_slot(tiering::slot_of(&w.key)) as u32),
            )
            .collect();
        groups.sort_unstable();
        groups.dedup();
        if groups.len() > 1 {
            self.unwatch_all();
            return Frame::error(CROSSSLOT).into();
        }
        let exec = CommandTable::get()
            .lookup(b"exec")
            .expect("EXEC is in the command table");
        let local: Vec<Option<Frame>> = multi
            .queued
            .iter()
            .map(|(spec, args)| (!Db::handles(spec)).then(|| self.run_queued(spec, args)))
            .collect();
        let watches = std::mem::take(&mut self.watched)
            .into_iter()
            .map(|w| WatchedKey {
                key: w.key.to_vec(),
                expired: w.expired,
                applied: w.applied,
            })
            .collect();
        let plan = ExecPlan {
            exec,
            local,
            queued: multi.queued,
            micros: self.lap(),
        };
        let Some(&group) = groups.first() else {
            // Nothing to apply: only server commands, no watches.
            return self.complete_exec(plan, Ok(Response::Reply(Frame::Array(Vec::new()))));
        };
        let raft = &self.server.groups;
        if !raft.reads_are_local(group) && !raft.is_leader(group) {
            // Redirected before anything applied; the client retries the whole transaction.
            let error = AccessError::NotLeader {
                leader: raft
                    .leader_of(group)
                    .filter(|(id, _)| *id != raft.node_id())
                    .map(|(_, addr)| addr),
            };
            return self.complete_exec(plan, Err(error));
        }
        let commands = plan
            .queued
            .iter()
            .filter(|(spec, _)| Db::handles(spec))
            .map(|(_, args)| owned_args(args))
            .collect();
        let request = self.request(Op::Transaction { commands, watches });
        Outcome::Propose(Proposal {
            groups: smallvec::smallvec![group],
            request,
            then: Then::Exec(plan),
        })
    }

    /// Runs a server command queued in a transaction.
    fn run_queued(&mut self, spec: &'static CommandSpec, args: &[Bytes]) -> Frame {
        let outcome = cmd::run(self, spec, args);
        self.record(spec, args, &outcome);
        match outcome {
            Outcome::Reply(frame) | Outcome::Close(Some(frame)) => frame,
            Outcome::Many(frames) => Frame::Array(frames),
            Outcome::Silent | Outcome::Close(None) => Frame::ok(),
            Outcome::Block(_)
            | Outcome::Fence(_)
            | Outcome::Propose(_)
            | Outcome::AwaitLeader(_)
            | Outcome::AwaitSlot { .. } => Frame::NullArray,
        }
    }

    /// Merges a transaction's applied replies with those of its server commands.
    fn complete_exec(&mut self, plan: ExecPlan, result: Result<Response, AccessError>) -> Outcome {
        let slot = plan
            .queued
            .iter()
            .find_map(|(spec, args)| request_slot(spec, args));
        let frame = match self.reply_for(result, slot) {
            Frame::Array(engine_replies) => {
                let mut engine_replies = engine_replies.into_iter();
                let mut replies = Vec::with_capacity(plan.queued.len());
                for ((spec, args), local) in plan.queued.iter().zip(plan.local) {
                    let reply = match local {
                        Some(frame) => frame,
                        None => {
                            let outcome =
                                Outcome::Reply(engine_replies.next().unwrap_or(Frame::NullArray));
                            self.record_micros(spec, args, &outcome, 0);
                            match outcome {
                                Outcome::Reply(frame) => frame,
                                _ => unreachable!("constructed as a reply"),
                            }
                        }
                    };
                    replies.push(reply);
                }
                Frame::Array(replies)
            }
            // Aborted by a watch, or failed as a whole.
            other => other,
        };
        let outcome = Outcome::Reply(frame);
        self.record_micros(plan.exec, &[], &outcome, plan.micros);
        outcome
    }

    /// The reply for the result of a write: as [`reply_of`], but a command refused because
    /// its slot left the group is redirected to where it went.
    fn reply_for(&self, result: Result<Response, AccessError>, slot: Option<u16>) -> Frame {
        match result {
            Ok(Response::NotOwned { slot }) => self.slot_moved(slot),
            other => reply_of(other, slot),
        }
    }

    /// The reply to a command whose slot the group it went to does not own: MOVED to the
    /// leader of the group this node now routes the slot to (following the handoffs its
    /// replicas know of: `tiering::Db::resolve_route`), or TRYAGAIN while the slot is between
    /// groups (or its new group has no leader). Nothing was applied.
    pub fn slot_moved(&self, slot: u16) -> Frame {
        let group = self.server.db.resolve_route(slot) as u32;
        let raft = &self.server.groups;
        match raft.leader_of(group) {
            Some((id, addr)) if id != raft.node_id() => {
                Frame::error(format!("MOVED {slot} {}", addr.client))
            }
            _ => slot_moving(slot),
        }
    }

    /// Releases everything the session holds: subscriptions, watches, its client record.
    pub fn close(&mut self) {
        self.unwatch_all();
        for channel in self.channels.drain() {
            self.server.pubsub.unsubscribe(&channel, self.info.id);
        }
        for pattern in self.patterns.drain() {
            self.server.pubsub.punsubscribe(&pattern, self.info.id);
        }
    }
}

/// The reply a client gets for the result of its write; `slot` is the slot of its first key.
fn reply_of(result: Result<Response, AccessError>, slot: Option<u16>) -> Frame {
    match result {
        Ok(Response::Reply(frame)) => frame,
        Ok(Response::WouldBlock { .. }) | Ok(Response::Nothing) => Frame::NullArray,
        Ok(Response::NotOwned { slot }) => slot_moving(slot),
        Err(error) => access_error(&error, slot),
    }
}

/// The reply to a command whose slot is between two groups: it certainly did not apply, and
/// Redis Cluster clients retry TRYAGAIN.
fn slot_moving(slot: u16) -> Frame {
    Frame::error(format!(
        "TRYAGAIN Slot {slot} is moving between slot groups; the command was not applied"
    ))
}

/// The reply to a command whose slot group has no leader this node knows of.
const NO_LEADER: &str =
    "CLUSTERDOWN The slot group has no leader right now; the command was not applied";

/// The error reply for a write or read this node could not serve. The prefix tells the
/// client whether the command certainly did not apply (MOVED to the group's leader, or
/// CLUSTERDOWN) or may have (UNCERTAIN).
pub fn access_error(error: &AccessError, slot: Option<u16>) -> Frame {
    match (error, slot) {
        (
            AccessError::NotLeader {
                leader: Some(leader),
            },
            Some(slot),
        ) => Frame::error(format!("MOVED {slot} {}", leader.client)),
        (AccessError::NotLeader { .. }, _) => Frame::error(NO_LEADER),
        (AccessError::Uncertain(reason), _) => Frame::error(format!(
            "UNCERTAIN The write may or may not have been applied: {}",
            sanitize(reason)
        )),
        (AccessError::TooLarge { bytes, max }, _) => Frame::error(format!(
            "ERR The write takes {bytes} bytes, more than one log entry may hold ({max}); \
             the command was not applied"
        )),
    }
}

/// Returns true if the command names keys.
fn has_keys(spec: &CommandSpec, args: &[Bytes]) -> bool {
    spec.key_positions(args).is_ok_and(|keys| !keys.is_empty())
}

/// The slot a request addresses: its first key's, or the slot argument of CLUSTER
/// COUNTKEYSINSLOT and GETKEYSINSLOT.
fn request_slot(spec: &CommandSpec, args: &[Bytes]) -> Option<u16> {
    if let Some(sub) = spec.name.strip_prefix("cluster|") {
        return crate::cmd::cluster::slot_argument(sub, args);
    }
    let keys = spec.key_positions(args).ok()?;
    keys.first().map(|key| slot_of(&args[key.index]))
}

/// A command's arguments as a log entry keeps them: each copied into its own allocation, since
/// the decoder's `Bytes` share the connection's read buffer, which an entry kept in the log's
/// tail (and a value kept in the keyspace) would otherwise pin whole.
fn owned_args(args: &[Bytes]) -> Vec<Bytes> {
    args.iter().map(|a| Bytes::copy_from_slice(a)).collect()
}

/// The slot a MOVED for `group` names: that of the request's first key in the group (the
/// slot whose owner the client will update), else the group's first slot.
fn slot_in_group(db: &Db, spec: &CommandSpec, args: &[Bytes], group: u32) -> u16 {
    if let Some(sub) = spec.name.strip_prefix("cluster|") {
        if let Some(slot) = crate::cmd::cluster::slot_argument(sub, args) {
            return slot;
        }
    }
    let in_group = spec.key_positions(args).ok().and_then(|keys| {
        keys.iter()
            .map(|key| slot_of(&args[key.index]))
            .find(|&slot| db.group_of_slot(slot) == group as usize)
    });
    in_group.unwrap_or_else(|| {
        (0..tiering::SLOT_COUNT as u16)
            .find(|&slot| db.group_of_slot(slot) == group as usize)
            .unwrap_or(0)
    })
}

fn allowed_in_pubsub(name: &str) -> bool {
    matches!(
        name,
        "subscribe"
            | "unsubscribe"
            | "psubscribe"
            | "punsubscribe"
            | "ssubscribe"
            | "sunsubscribe"
            | "ping"
            | "quit"
            | "reset"
    )
}

/// Cuts an argument to `max` bytes, as Redis's `%.128s`.
fn truncate(arg: &[u8], max: usize) -> String {
    let end = arg
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(arg.len())
        .min(max);
    String::from_utf8_lossy(&arg[..end]).into_owned()
}

/// Replaces line breaks, which would break the error line, with spaces (as Redis does).
fn sanitize(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// Redis's unknown-command error, quoting the first arguments.
fn unknown_command(args: &[Bytes]) -> String {
    let mut quoted = String::new();
    for arg in &args[1..] {
        if quoted.len() >= 128 {
            break;
        }
        let room = 128 - quoted.len();
        quoted.push_str(&format!("'{}' ", truncate(arg, room)));
    }
    sanitize(&format!(
        "ERR unknown command '{}', with args beginning with: {}",
        truncate(&args[0], 128),
        quoted
    ))
}
