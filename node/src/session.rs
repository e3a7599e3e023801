//! A client's session: its protocol version, authentication, transaction, watches and
//! subscriptions, and the routing of each request to the engine or to a server command.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use resp::command_table::CommandSpec;
use resp::{CommandTable, Frame, Limits, Proto};
use tiering::blocking::Waiter;
use tiering::{Blob, BlockOn, Caller, Db, ExecCtx, WatchFlag};
use tokio::sync::mpsc;

use crate::client::ClientInfo;
use crate::cmd;
use crate::pubsub::Subscriber;
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
    pub on: BlockOn,
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
    pub watch_flag: WatchFlag,
    /// Watched keys and whether each was already expired when watched.
    pub watched: Vec<(Blob, bool)>,
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
        Session {
            server,
            info,
            proto: Proto::Resp2,
            authenticated,
            multi: None,
            watch_flag: WatchFlag::default(),
            watched: Vec::new(),
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
        let outcome = if Db::handles(spec) {
            let ctx = self.exec_ctx();
            let caller = Caller {
                in_multi: false,
                waiter: Some(&self.waiter),
            };
            let executed = self.server.db.execute(spec, args, ctx, &caller);
            match executed.block {
                // Recorded when it finally runs.
                Some(on) => {
                    return Outcome::Block(Blocked {
                        spec,
                        args: std::mem::take(args),
                        on,
                    })
                }
                None => Outcome::Reply(executed.reply),
            }
        } else {
            cmd::run(self, spec, args)
        };
        self.record(spec, args, &outcome);
        outcome
    }

    /// Records a command that ran: its time since the previous command ended (or the batch
    /// began), commandstats, errorstats, and the slow log.
    fn record(&mut self, spec: &CommandSpec, args: &[Bytes], outcome: &Outcome) {
        let now = quanta::Instant::now();
        let micros = now.duration_since(self.clock).as_micros() as u64;
        self.clock = now;
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

    /// Retries a blocked command after a wake-up; None if it must keep waiting.
    pub fn retry_blocked(&mut self, blocked: &Blocked) -> Option<Frame> {
        self.begin_batch();
        let ctx = self.exec_ctx();
        let caller = Caller {
            in_multi: false,
            waiter: Some(&self.waiter),
        };
        let executed = self
            .server
            .db
            .execute(blocked.spec, &blocked.args, ctx, &caller);
        if executed.block.is_some() {
            return None;
        }
        // Like Redis 7.0, a blocked client whose key changed type keeps waiting.
        if matches!(&executed.reply, Frame::Error(text) if text.starts_with("WRONGTYPE")) {
            return None;
        }
        let outcome = Outcome::Reply(executed.reply);
        self.record(blocked.spec, &blocked.args, &outcome);
        self.end_batch();
        match outcome {
            Outcome::Reply(frame) => Some(frame),
            _ => None,
        }
    }

    /// Leaves the queues of a blocking command (served, timed out or disconnected).
    pub fn unblock(&mut self, blocked: &Blocked) {
        self.server
            .db
            .blocking()
            .unregister(&self.waiter, &blocked.on.keys);
    }

    /// Drops every WATCH.
    pub fn unwatch_all(&mut self) {
        for (key, _) in self.watched.drain(..) {
            self.server.db.unwatch(&key, &self.watch_flag);
        }
        self.watch_flag = WatchFlag::default();
    }

    /// Runs the queued transaction.
    pub fn exec(&mut self) -> Outcome {
        let Some(multi) = self.multi.take() else {
            return Frame::error("ERR EXEC without MULTI").into();
        };
        self.info.multi.store(-1, Ordering::Relaxed);
        if multi.failed {
            self.unwatch_all();
            return Frame::error("EXECABORT Transaction discarded because of previous errors.")
                .into();
        }
        let engine: Vec<(&CommandSpec, &[Bytes])> = multi
            .queued
            .iter()
            .filter(|(spec, _)| Db::handles(spec))
            .map(|(spec, args)| (*spec, args.as_slice()))
            .collect();
        let watches: Vec<(Blob, WatchFlag, bool)> = self
            .watched
            .iter()
            .map(|(key, expired)| (key.clone(), self.watch_flag.clone(), *expired))
            .collect();
        let ctx = self.exec_ctx();
        let engine_replies = self.server.db.execute_multi(&engine, &watches, ctx);
        self.unwatch_all();
        let Some(engine_replies) = engine_replies else {
            return Frame::NullArray.into();
        };
        let mut engine_replies = engine_replies.into_iter();
        let mut replies = Vec::with_capacity(multi.queued.len());
        for (spec, args) in &multi.queued {
            let reply = if Db::handles(spec) {
                let reply = engine_replies.next().expect("one reply per engine command");
                let outcome = Outcome::Reply(reply);
                self.record(spec, args, &outcome);
                match outcome {
                    Outcome::Reply(frame) => frame,
                    _ => unreachable!("constructed as a reply"),
                }
            } else {
                match self.call(spec, &mut args.clone()) {
                    Outcome::Reply(frame) | Outcome::Close(Some(frame)) => frame,
                    Outcome::Many(frames) => Frame::Array(frames),
                    Outcome::Silent | Outcome::Close(None) => Frame::ok(),
                    Outcome::Block(_) => Frame::NullArray,
                }
            };
            replies.push(reply);
        }
        Frame::Array(replies).into()
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
