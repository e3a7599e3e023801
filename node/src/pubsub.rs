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

/// Messages buffered per subscriber before it counts as too slow and is disconnected, as
/// Redis's `client-output-buffer-limit pubsub` does.
pub const SUBSCRIBER_BUFFER: usize = 65536;

/// Where messages for one client go.
#[derive(Clone, Debug)]
pub struct Subscriber {
    pub tx: mpsc::Sender<Frame>,
    pub info: Arc<ClientInfo>,
}

impl Subscriber {
    fn deliver(&self, message: Frame) -> bool {
        match self.tx.try_send(message) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(client = self.info.id, "subscriber too slow, disconnecting");
                self.info.kill();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    channels: HashMap<Bytes, HashMap<ClientId, Subscriber>>,
    patterns: HashMap<Bytes, HashMap<ClientId, Subscriber>>,
}

/// The subscriptions of every client.
#[derive(Debug, Default)]
pub struct PubSub {
    inner: Mutex<Inner>,
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

impl PubSub {
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
        let inner = self.inner.lock();
        let mut receivers = 0;
        if let Some(subs) = inner.channels.get(channel) {
            for sub in subs.values() {
                let frame = Frame::Push(vec![
                    Frame::bulk_static("message"),
                    Frame::Bulk(channel.clone()),
                    Frame::Bulk(message.clone()),
                ]);
                receivers += sub.deliver(frame) as usize;
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
                receivers += sub.deliver(frame) as usize;
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
