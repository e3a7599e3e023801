//! One client connection: reads requests, runs them, writes replies and pushed messages.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use raft::{AccessError, PendingWrite, Response};
use resp::{Frame, RequestDecoder};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::pubsub::{message_size, SUBSCRIBER_BUFFER};
use crate::route::GroupIds;
use crate::server::{unix_ms, Server};
use crate::session::{Blocked, Outcome, Proposal, Session, Then};
use crate::socket::Socket;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Most writes one client keeps in flight before waiting for their replies.
const MAX_IN_FLIGHT: usize = 1024;

/// How long a command for a group without a known leader waits for one before it gets
/// CLUSTERDOWN: a leadership transfer completes well within it; an election after a crash may
/// not (the client then retries, as Redis Cluster clients do).
const LEADER_WAIT: Duration = Duration::from_millis(1500);

/// How long a command for a slot still arriving in its group here waits for the slot move to
/// land before it gets TRYAGAIN: a move's import and adoption take milliseconds to a few
/// hundred under load; the wait stays below the socket timeouts clients commonly set.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// Why a connection stops.
enum Stop {
    /// The peer closed, QUIT, kill or shutdown.
    Closed,
}

/// Serves one client until it disconnects, is killed, or the server shuts down.
pub async fn serve(server: Arc<Server>, socket: TcpStream, peer: SocketAddr) {
    let laddr = socket.local_addr().unwrap_or(server.local_addr);
    let info = server.clients.register(peer, laddr);
    let (push_tx, push_rx) = mpsc::channel(SUBSCRIBER_BUFFER);
    let mut session = Session::new(server.clone(), info.clone(), push_tx);
    let socket = match Socket::new(socket) {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(client = info.id, %error, "cannot register client socket");
            server.clients.unregister(info.id);
            return;
        }
    };
    let mut conn = Connection {
        socket,
        input: BytesMut::with_capacity(READ_CHUNK),
        output: BytesMut::with_capacity(READ_CHUNK),
        decoder: RequestDecoder::new(),
        push_rx,
        pushed_unwritten: 0,
        shutdown: server.shutdown_receiver(),
        in_flight: VecDeque::new(),
    };
    if let Err(error) = conn.run(&mut session).await {
        tracing::debug!(client = info.id, %error, "connection closed with an error");
    }
    session.close();
    server.clients.unregister(info.id);
}

struct Connection {
    socket: Socket,
    input: BytesMut,
    output: BytesMut,
    decoder: RequestDecoder,
    push_rx: mpsc::Receiver<Frame>,
    /// Bytes of pushed messages taken from `push_rx` and not yet written to the socket.
    pushed_unwritten: usize,
    shutdown: watch::Receiver<bool>,
    /// This client's proposed writes, oldest first; their replies leave in this order.
    in_flight: VecDeque<InFlight>,
}

/// A proposed write awaiting its entry's application (one per group it went to).
struct InFlight {
    /// The groups proposed to.
    groups: GroupIds,
    writes: Vec<Result<PendingWrite, AccessError>>,
    then: Then,
}

impl Connection {
    async fn run(&mut self, session: &mut Session) -> std::io::Result<()> {
        loop {
            session.begin_batch();
            let stop = self.process_input(session).await?;
            session.end_batch();
            if let Err(Stop::Closed) = stop {
                return self.flush(session).await;
            }
            self.flush(session).await?;
            // Written out: no longer held against the client's output limit.
            session
                .info
                .pending_output
                .taken(std::mem::take(&mut self.pushed_unwritten));
            let limit = session.limits().max_query_buffer;
            let buffered = self.input.len() + self.decoder.pending_bytes();
            session.info.query_buffer.store(buffered, Ordering::Relaxed);
            if buffered > limit {
                tracing::warn!(
                    client = session.info.id,
                    buffered,
                    "closing client that reached max query buffer length"
                );
                return Ok(());
            }
            // Subscribers are exempt from the idle timeout, as in Redis.
            let idle_timeout = session.idle_timeout().filter(|_| !session.info.is_pubsub());
            if self.input.capacity() - self.input.len() < READ_CHUNK / 2 {
                self.input.reserve(READ_CHUNK);
            }
            tokio::select! {
                read = self.socket.read(&mut self.input) => {
                    let n = read?;
                    if n == 0 {
                        return Ok(());
                    }
                    session.count_input(n);
                }
                Some(message) = self.push_rx.recv() => {
                    self.pushed_unwritten += message_size(&message);
                    session.encode(&message, &mut self.output);
                    while let Ok(message) = self.push_rx.try_recv() {
                        self.pushed_unwritten += message_size(&message);
                        session.encode(&message, &mut self.output);
                    }
                }
                _ = session.info.killed() => return Ok(()),
                _ = self.shutdown.changed() => return Ok(()),
                _ = sleep_or_forever(idle_timeout) => return Ok(()),
            }
        }
    }

    /// Runs every complete request in the input buffer.
    async fn process_input(&mut self, session: &mut Session) -> std::io::Result<Result<(), Stop>> {
        loop {
            let limits = session.limits();
            let mut args =
                match self
                    .decoder
                    .decode(&mut self.input, &limits, session.authenticated)
                {
                    Ok(Some(args)) => args,
                    // Everything read so far was run: its replies go out with this batch.
                    Ok(None) => return self.drain(session).await,
                    Err(error) => {
                        if let Err(stop) = self.drain(session).await? {
                            return Ok(Err(stop));
                        }
                        session.server.stats.record_error(&error.reply_text());
                        session.encode(&Frame::error(error.reply_text()), &mut self.output);
                        tracing::debug!(client = session.info.id, %error, "protocol error");
                        return Ok(Err(Stop::Closed));
                    }
                };
            if args.is_empty() {
                continue;
            }
            let outcome = loop {
                session.writes_in_flight = self.in_flight.len();
                match session.handle(&mut args) {
                    Outcome::Fence(groups) => {
                        if let Err(stop) = self.drain(session).await? {
                            return Ok(Err(stop));
                        }
                        match self.fence(session, &groups).await {
                            Ok(()) => continue,
                            Err(error) => {
                                break Outcome::Reply(session.fence_failed(&args, &error))
                            }
                        }
                    }
                    Outcome::AwaitLeader(group) => {
                        session.awaited_leader = true;
                        session
                            .server
                            .groups
                            .wait_for_leader(group, LEADER_WAIT)
                            .await;
                        continue;
                    }
                    Outcome::AwaitSlot { group, slot } => {
                        session.awaited_slot = true;
                        session
                            .server
                            .db
                            .wait_arrival(group as usize, slot, SLOT_WAIT)
                            .await;
                        continue;
                    }
                    outcome => break outcome,
                }
            };
            session.awaited_leader = false;
            session.awaited_slot = false;
            self.decoder.recycle(args);
            if let Outcome::Propose(proposal) = outcome {
                let blocking = matches!(proposal.then, Then::Blocking(_));
                self.submit(session, proposal).await;
                // A blocking command holds back the commands after it, as in Redis.
                if blocking || self.in_flight.len() >= MAX_IN_FLIGHT {
                    if let Err(stop) = self.drain(session).await? {
                        return Ok(Err(stop));
                    }
                }
            } else {
                if let Err(stop) = self.drain(session).await? {
                    return Ok(Err(stop));
                }
                if let Err(stop) = self.emit(session, outcome).await? {
                    return Ok(Err(stop));
                }
            }
            if self.output.len() > 64 * 1024 {
                self.flush(session).await?;
            }
        }
    }

    /// Proposes a write to its groups' logs, in this client's order.
    async fn submit(&mut self, session: &Session, proposal: Proposal) {
        let groups = &session.server.groups;
        let Proposal {
            groups: targets,
            request,
            then,
        } = proposal;
        let mut writes = Vec::with_capacity(targets.len());
        if let Some((&last, others)) = targets.split_last() {
            for &group in others {
                writes.push(groups.propose(group, request.clone()).await);
            }
            writes.push(groups.propose(last, request).await);
        }
        self.in_flight.push_back(InFlight {
            groups: targets,
            writes,
            then,
        });
    }

    /// Waits for every write in flight and writes their replies, in order.
    async fn drain(&mut self, session: &mut Session) -> std::io::Result<Result<(), Stop>> {
        while let Some(in_flight) = self.in_flight.pop_front() {
            let mut result = settle(in_flight.writes).await;
            if let (Err(AccessError::NotLeader { leader: None }), [group]) =
                (&result, &in_flight.groups[..])
            {
                // Refused by a leader stepping down (a transfer): it certainly did not apply,
                // so once a successor is known the client is redirected there, not failed.
                let groups = &session.server.groups;
                groups.wait_for_leader(*group, LEADER_WAIT).await;
                if let Some((_, leader)) = groups.leader_of(*group) {
                    result = Err(AccessError::NotLeader {
                        leader: Some(leader),
                    });
                }
            }
            let outcome = session.complete(in_flight.then, result);
            if let Err(stop) = self.emit(session, outcome).await? {
                return Ok(Err(stop));
            }
        }
        Ok(Ok(()))
    }

    /// Confirms that this node may serve linearizable reads of `groups` in this batch.
    async fn fence(&mut self, session: &mut Session, groups: &[u32]) -> Result<(), AccessError> {
        for &group in groups {
            session.server.groups.read_fence(group).await?;
            session.mark_fenced(group);
        }
        Ok(())
    }

    /// Writes what a request produced (waiting first, for a blocked command).
    async fn emit(
        &mut self,
        session: &mut Session,
        outcome: Outcome,
    ) -> std::io::Result<Result<(), Stop>> {
        match outcome {
            Outcome::Reply(frame) => session.reply(&frame, &mut self.output),
            Outcome::Many(frames) => {
                for frame in &frames {
                    session.encode(frame, &mut self.output);
                }
            }
            Outcome::Silent => {}
            Outcome::Close(frame) => {
                if let Some(frame) = frame {
                    session.reply(&frame, &mut self.output);
                }
                return Ok(Err(Stop::Closed));
            }
            Outcome::Block(blocked) => {
                self.flush(session).await?;
                match self.wait_blocked(session, blocked).await? {
                    Some(frame) => session.reply(&frame, &mut self.output),
                    None => return Ok(Err(Stop::Closed)),
                }
            }
            Outcome::Fence(_)
            | Outcome::Propose(_)
            | Outcome::AwaitLeader(_)
            | Outcome::AwaitSlot { .. } => {
                unreachable!("fences, proposals and waits are handled before emitting")
            }
        }
        Ok(Ok(()))
    }

    /// Waits until a blocked command can run, times out, or the client goes away (None).
    async fn wait_blocked(
        &mut self,
        session: &mut Session,
        mut blocked: Blocked,
    ) -> std::io::Result<Option<Frame>> {
        let waiter = session.waiter.clone();
        let deadline = blocked.deadline_ms.map(|at| {
            tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(unix_ms()))
        });
        session.info.blocked.store(true, Ordering::Relaxed);
        let result = loop {
            // Biased: a client that went away (its EOF already readable) must not take a
            // wake-up and pop data it can never receive; the wake-up's permit stays stored,
            // and leaving passes it to the next waiter.
            tokio::select! {
                biased;
                _ = session.info.killed() => break None,
                _ = session.server.shutting_down() => break None,
                read = self.socket.read(&mut self.input) => {
                    // Redis keeps reading (and buffering) while a client is blocked.
                    if read? == 0 {
                        break None;
                    }
                }
                _ = waiter.notified() => {
                    let request = session.blocked_request(&blocked);
                    let write = session.server.groups.propose(blocked.group, request).await;
                    let result = settle(vec![write]).await;
                    if let Some(frame) = session.complete_blocked(&mut blocked, result) {
                        break Some(frame);
                    }
                }
                _ = sleep_until_or_forever(deadline) => {
                    break Some(Frame::NullArray);
                }
            }
        };
        session.info.blocked.store(false, Ordering::Relaxed);
        session.unblock(&blocked);
        Ok(result)
    }

    async fn flush(&mut self, session: &mut Session) -> std::io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        // A client that stopped reading blocks the write: a kill (CLIENT KILL, an output
        // limit) must still end it, dropping what it did not take, as Redis does.
        tokio::select! {
            biased;
            written = self.socket.write_all(&self.output) => written?,
            _ = session.info.killed() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "client killed while output was pending",
                ))
            }
        }
        session.count_output(self.output.len());
        self.output.clear();
        Ok(())
    }
}

/// The result of a write proposed to one or more groups: the first failure, else the first
/// group's reply (every group answers alike: FLUSHALL is the only write sent to several).
async fn settle(writes: Vec<Result<PendingWrite, AccessError>>) -> Result<Response, AccessError> {
    let mut result = None;
    for write in writes {
        let outcome = match write {
            Ok(pending) => pending.outcome().await,
            Err(error) => Err(error),
        };
        match (&result, outcome) {
            (None, outcome) | (Some(Ok(_)), outcome @ Err(_)) => result = Some(outcome),
            _ => {}
        }
    }
    result.unwrap_or(Ok(Response::Nothing))
}

async fn sleep_or_forever(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
