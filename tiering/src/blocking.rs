//! Clients blocked on keys (BLPOP, BZPOPMIN, ...), woken first-come first-served.
//!
//! A blocked client registers a [`Waiter`] on its keys while the command still holds the
//! keyspace locks, so a push can never slip between "the list is empty" and "I am waiting". A
//! write to a key with waiters wakes the first of them; it retries its command and, if that
//! succeeds, leaves the queue and wakes the next one in line, as Redis serves blocked clients in
//! the order they blocked.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::blob::Blob;

/// One blocked client.
#[derive(Debug, Default)]
pub struct Waiter {
    notify: Notify,
}

impl Waiter {
    /// Creates a waiter.
    pub fn new() -> Arc<Waiter> {
        Arc::new(Waiter::default())
    }

    /// Waits until a key this waiter is registered on changes (or a wake-up came earlier).
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

/// The queues of blocked clients, per key.
#[derive(Debug, Default)]
pub struct Blocking {
    queues: Mutex<HashMap<Blob, VecDeque<Arc<Waiter>>>>,
    /// Number of registrations, so that writes skip the registry when nobody is blocked.
    registered: AtomicUsize,
}

impl Blocking {
    /// Returns true if some client is blocked on some key.
    pub fn any(&self) -> bool {
        self.registered.load(Ordering::Acquire) > 0
    }

    /// Queues `waiter` on each of `keys`, unless it is queued there already.
    pub fn register(&self, waiter: &Arc<Waiter>, keys: &[Blob]) {
        let mut queues = self.queues.lock();
        for key in keys {
            let queue = queues.entry(key.clone()).or_default();
            if !queue.iter().any(|w| Arc::ptr_eq(w, waiter)) {
                queue.push_back(waiter.clone());
                self.registered.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Removes `waiter` from every queue on `keys` and wakes whoever is now first, so a wake-up
    /// meant for the leaving client is not lost.
    pub fn unregister(&self, waiter: &Arc<Waiter>, keys: &[Blob]) {
        let mut queues = self.queues.lock();
        for key in keys {
            if let Some(queue) = queues.get_mut(key) {
                let before = queue.len();
                queue.retain(|w| !Arc::ptr_eq(w, waiter));
                self.registered
                    .fetch_sub(before - queue.len(), Ordering::AcqRel);
                match queue.front() {
                    Some(first) => first.notify.notify_one(),
                    None => {
                        queues.remove(key);
                    }
                }
            }
        }
    }

    /// Wakes the first client blocked on `key`.
    pub fn signal(&self, key: &[u8]) {
        if let Some(first) = self.queues.lock().get(key).and_then(|q| q.front()) {
            first.notify.notify_one();
        }
    }

    /// Number of distinct keys clients are blocked on.
    pub fn blocked_keys(&self) -> usize {
        self.queues.lock().len()
    }
}
