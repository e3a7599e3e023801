//! Publish/subscribe on this node: channels and patterns to subscribed connections (messages
//! published on other nodes arrive through the raft crate's publish relay).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use resp::Frame;
use tiering::glob::glob_match;
use tokio::sync::mpsc;

use crate::client::{ClientId, ClientInfo};
use crate::output_limit;

/// Messages buffered per subscriber before it counts as too slow and is disconnected; its
/// bytes are bounded too (`client-output-buffer-limit pubsub`, see `output_limit`).
pub const SUBSCRIBER_BUFFER: usize = 65536;

/// Where messages for one client go.
#[derive(Clone, Debug)]
pub struct Subscriber {
    pub tx: mpsc::Sender<Frame>,
    pub info: Arc<ClientInfo>,
}

/// What a pushed message counts against its client's output limit: its bulk strings, plus
/// their RESP headers (about 16 bytes each).
pub fn message_size(message: &Frame) -> usize {
    match message {
        Frame::Push(items) | Frame::Array(items) => items.iter().map(message_size).sum(),
        Frame::Bulk(bytes) => bytes.len() + 16,
        _ => 16,
    }
}

impl Subscriber {
    fn deliver(&self, message: Frame, limit: &output_limit::OutputLimit) -> bool {
        let info = &self.info;
        if info.is_killed() {
            // Cut off already; its connection is closing.
            return false;
        }
        let size = message_size(&message);
        if !info.pending_output.add(size, limit, info.clock_ms()) {
            tracing::warn!(
                client = info.id,
                pending = info.pending_output.bytes(),
                "subscriber over its output buffer limit, disconnecting"
            );
            info.kill();
            return false;
        }
        match self.tx.try_send(message) {
            Ok(()) => true,
            Err(error) => {
                info.pending_output.taken(size);
                if let mpsc::error::TrySendError::Full(_) = error {
                    tracing::warn!(client = info.id, "subscriber too slow, disconnecting");
                    info.kill();
                }
                false
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    channels: HashMap<Bytes, HashMap<ClientId, Subscriber>>,
    patterns: HashMap<Bytes, HashMap<ClientId, Subscriber>>,
}

/// The subscriptions of every client.
#[derive(Debug)]
pub struct PubSub {
    inner: Mutex<Inner>,
    /// What a subscriber may leave unread (`client-output-buffer-limit pubsub`).
    limit: Mutex<output_limit::OutputLimit>,
}

fn add(map: &mut HashMap<Bytes, HashMap<ClientId, Subscriber>>, name: &Bytes, sub: &Subscriber) {
    map.entry(name.clone())
        .or_default()
        .insert(sub.info.id, sub.clone());
}

fn remove(map: &mut HashMap<Bytes, HashMap<ClientId, Subscriber>>, name: &[u8], id: ClientId) {
    if let Some(subs) = map.get_mut(name) {
        subs.remove(&id);
        if subs.is_empty() {
            map.remove(name);
        }
    }
}

impl Default for PubSub {
    fn default() -> PubSub {
        PubSub {
            inner: Mutex::default(),
            limit: Mutex::new(output_limit::PUBSUB),
        }
    }
}

impl PubSub {
    /// Sets what a subscriber may leave unread before it is disconnected.
    pub fn set_limit(&self, limit: output_limit::OutputLimit) {
        *self.limit.lock() = limit;
    }

    pub fn subscribe(&self, channel: &Bytes, sub: &Subscriber) {
        add(&mut self.inner.lock().channels, channel, sub);
    }

    pub fn unsubscribe(&self, channel: &[u8], id: ClientId) {
        remove(&mut self.inner.lock().channels, channel, id);
    }

    pub fn psubscribe(&self, pattern: &Bytes, sub: &Subscriber) {
        add(&mut self.inner.lock().patterns, pattern, sub);
    }

    pub fn punsubscribe(&self, pattern: &[u8], id: ClientId) {
        remove(&mut self.inner.lock().patterns, pattern, id);
    }

    /// Sends `message` to the subscribers of `channel` and of matching patterns; returns how
    /// many received it.
    pub fn publish(&self, channel: &Bytes, message: &Bytes) -> usize {
        let limit = *self.limit.lock();
        let inner = self.inner.lock();
        let mut receivers = 0;
        if let Some(subs) = inner.channels.get(channel) {
            for sub in subs.values() {
                let frame = Frame::Push(vec![
                    Frame::bulk_static("message"),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ]);
                receivers += sub.deliver(frame, &limit) as usize;
            }
        }
        for (pattern, subs) in &inner.patterns {
            if !glob_match(pattern, channel, false) {
                continue;
            }
            for sub in subs.values() {
                let frame = Frame::Push(vec![
                    Frame::bulk_static("pmessage"),
                    Frame::Bulk(pattern.clone()),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ]);
                receivers += sub.deliver(frame, &limit) as usize;
            }
        }
        receivers
    }

    /// Active channels (with at least one subscriber) matching an optional pattern.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.inner
            .lock()
            .channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    /// Number of subscribers of `channel`.
    pub fn numsub(&self, channel: &[u8]) -> usize {
        self.inner
            .lock()
            .channels
            .get(channel)
            .map_or(0, |s| s.len())
    }

    /// Number of distinct patterns subscribed to.
    pub fn numpat(&self) -> usize {
        self.inner.lock().patterns.len()
    }
}
