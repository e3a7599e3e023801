//! One client connection: reads requests, runs them, writes replies and pushed messages.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use resp::{Frame, RequestDecoder};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::pubsub::SUBSCRIBER_BUFFER;
use crate::server::{unix_ms, Server};
use crate::session::{Blocked, Outcome, Session};
use crate::socket::Socket;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

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
        shutdown: server.shutdown_receiver(),
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
    shutdown: watch::Receiver<bool>,
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
                    session.encode(&message, &mut self.output);
                    while let Ok(message) = self.push_rx.try_recv() {
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
                    Ok(None) => return Ok(Ok(())),
                    Err(error) => {
                        session.server.stats.record_error(&error.reply_text());
                        session.encode(&Frame::error(error.reply_text()), &mut self.output);
                        tracing::debug!(client = session.info.id, %error, "protocol error");
                        return Ok(Err(Stop::Closed));
                    }
                };
            if args.is_empty() {
                continue;
            }
            let outcome = session.handle(&mut args);
            self.decoder.recycle(args);
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
            }
            if self.output.len() > 64 * 1024 {
                self.flush(session).await?;
            }
        }
    }

    /// Waits until a blocked command can run, times out, or the client goes away (None).
    async fn wait_blocked(
        &mut self,
        session: &mut Session,
        blocked: Blocked,
    ) -> std::io::Result<Option<Frame>> {
        let waiter = session.waiter.clone();
        let deadline = blocked.on.deadline_ms.map(|at| {
            tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(unix_ms()))
        });
        session.info.blocked.store(true, Ordering::Relaxed);
        let result = loop {
            tokio::select! {
                _ = waiter.notified() => {
                    if let Some(frame) = session.retry_blocked(&blocked) {
                        break Some(frame);
                    }
                }
                _ = sleep_until_or_forever(deadline) => {
                    break Some(Frame::NullArray);
                }
                read = self.socket.read(&mut self.input) => {
                    // Redis keeps reading (and buffering) while a client is blocked.
                    if read? == 0 {
                        break None;
                    }
                }
                _ = session.info.killed() => break None,
                _ = session.server.shutting_down() => break None,
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
        self.socket.write_all(&self.output).await?;
        session.count_output(self.output.len());
        self.output.clear();
        Ok(())
    }
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
