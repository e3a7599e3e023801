//! openraft's watch channels, without the cost of waking no one.
//!
//! Each raft group's core publishes its metrics and its IO progress on watch channels at
//! every turn of its loop: up to seven sends a turn, and a write takes a group through about
//! three turns. tokio's watch channel wakes its receivers through eight `Notify`s on every
//! send, each taking a mutex, whether or not a receiver waits; almost none ever does (a few
//! tasks wait for leadership changes, tests wait for an index). Measured with `perf` on one
//! node serving durable SET from 50 clients, those sends were 16% of the worker thread's time.
//!
//! This channel counts the receivers inside [`changed`](QuietWatchReceiver) and only then
//! touches its `Notify`. Otherwise it behaves as tokio's: `send` fails with no receiver left,
//! `changed` returns at once for an unseen value and fails once every sender is gone, and
//! `borrow_and_update` marks the value seen (openraft's runtime conformance suite checks all
//! of it: see `coarse_timers`' tests).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use openraft::async_runtime::watch::{RecvError, SendError, Watch, WatchReceiver, WatchSender};
use openraft::{OptionalSend, OptionalSync};
use parking_lot::{RwLock, RwLockReadGuard};
use tokio::sync::Notify;

/// The watch channel family handed to openraft by [`crate::coarse_timers::CoarseTimers`].
pub struct QuietWatch;

struct Shared<T> {
    value: RwLock<T>,
    /// Bumped, under the value's write lock, by every send that changed the value.
    version: AtomicU64,
    /// Receivers inside `changed`, from registering for a wake-up until they leave.
    waiting: AtomicUsize,
    wake: Notify,
    senders: AtomicUsize,
    receivers: AtomicUsize,
}

impl<T> Shared<T> {
    /// Wakes the receivers waiting for a change, if there are any.
    ///
    /// The version is bumped before `waiting` is read, and a receiver counts itself in
    /// `waiting` before it reads the version (all sequentially consistent): a receiver that
    /// missed the new version was counted before this read, and its `Notified` was created
    /// before that, so `notify_waiters` reaches it.
    fn wake_waiting(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.wake.notify_waiters();
        }
    }
}

pub struct QuietWatchSender<T>(Arc<Shared<T>>);

pub struct QuietWatchReceiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver has seen.
    seen: u64,
}

impl Watch for QuietWatch {
    type Sender<T: OptionalSend + OptionalSync> = QuietWatchSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = QuietWatchReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = RwLockReadGuard<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        let shared = Arc::new(Shared {
            value: RwLock::new(init),
            version: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            wake: Notify::new(),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
        });
        let receiver = QuietWatchReceiver {
            shared: shared.clone(),
            seen: 0,
        };
        (QuietWatchSender(shared), receiver)
    }
}

impl<T> Clone for QuietWatchSender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::SeqCst);
        QuietWatchSender(self.0.clone())
    }
}

impl<T> Drop for QuietWatchSender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last sender: every waiting receiver must learn the channel closed.
            self.0.wake.notify_waiters();
        }
    }
}

impl<T> WatchSender<QuietWatch, T> for QuietWatchSender<T>
where
    T: OptionalSend + OptionalSync,
{
    fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.0.receivers.load(Ordering::SeqCst) == 0 {
            return Err(SendError(value));
        }
        self.send_if_modified(|current| {
            *current = value;
            true
        });
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        let mut value = self.0.value.write();
        if !modify(&mut value) {
            return false;
        }
        self.0.version.fetch_add(1, Ordering::SeqCst);
        drop(value);
        self.0.wake_waiting();
        true
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.0.value.read()
    }

    fn subscribe(&self) -> QuietWatchReceiver<T> {
        self.0.receivers.fetch_add(1, Ordering::SeqCst);
        // Under the read lock, the version matches the value: the new receiver has seen it.
        let value = self.0.value.read();
        let seen = self.0.version.load(Ordering::SeqCst);
        drop(value);
        QuietWatchReceiver {
            shared: self.0.clone(),
            seen,
        }
    }
}

impl<T> Clone for QuietWatchReceiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::SeqCst);
        QuietWatchReceiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for QuietWatchReceiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A receiver's place in `waiting`, given back however `changed` ends (a dropped future too).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Waiting<'a> {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<T> WatchReceiver<QuietWatch, T> for QuietWatchReceiver<T>
where
    T: OptionalSend + OptionalSync,
{
    async fn changed(&mut self) -> Result<(), RecvError> {
        let shared = &self.shared;
        loop {
            // Created before this receiver counts itself as waiting, so that any
            // `notify_waiters` after a missed version reaches it (see `wake_waiting`).
            let notified = shared.wake.notified();
            let _waiting = Waiting::enter(&shared.waiting);
            let version = shared.version.load(Ordering::SeqCst);
            if version != self.seen {
                self.seen = version;
                return Ok(());
            }
            if shared.senders.load(Ordering::SeqCst) == 0 {
                return Err(RecvError(()));
            }
            notified.await;
        }
    }

    fn borrow_watched(&self) -> RwLockReadGuard<'_, T> {
        self.shared.value.read()
    }

    fn borrow_and_update(&mut self) -> RwLockReadGuard<'_, T> {
        let value = self.shared.value.read();
        self.seen = self.shared.version.load(Ordering::SeqCst);
        value
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_send_wakes_a_receiver_already_waiting() {
        let (sender, mut receiver) = QuietWatch::channel(0u64);
        let waiter = tokio::spawn(async move {
            receiver.changed().await.expect("changed");
            *receiver.borrow_watched()
        });
        // Let the waiter count itself in before the send.
        while sender.0.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        sender.send(7).expect("send");
        let seen = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter was never woken")
            .expect("join");
        assert_eq!(seen, 7);
    }

    #[tokio::test]
    async fn an_unchanged_value_wakes_no_one_and_a_changed_one_wakes_all() {
        let (sender, receiver) = QuietWatch::channel(0u64);
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let mut receiver = receiver.clone();
            waiters.push(tokio::spawn(async move {
                receiver.changed().await.expect("changed")
            }));
        }
        while sender.0.waiting.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
        assert!(!sender.send_if_modified(|_| false));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "woken for nothing"
        );
        assert!(sender.send_if_modified(|v| {
            *v += 1;
            true
        }));
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("a waiter was never woken")
                .expect("join");
        }
        assert_eq!(sender.0.waiting.load(Ordering::SeqCst), 0);
    }

    /// Many sends racing one waiter on a multi-threaded runtime: the waiter must never sleep
    /// through the last one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_send_is_missed_by_a_racing_waiter() {
        let (sender, mut receiver) = QuietWatch::channel(0u64);
        const LAST: u64 = 20_000;
        let waiter = tokio::spawn(async move {
            while *receiver.borrow_and_update() < LAST {
                receiver.changed().await.expect("changed");
            }
        });
        for value in 1..=LAST {
            sender.send(value).expect("send");
            if value % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the waiter slept through a send")
            .expect("join");
    }

    #[tokio::test]
    async fn dropping_the_last_sender_ends_a_wait() {
        let (sender, mut receiver) = QuietWatch::channel(());
        let second = sender.clone();
        let waiter = tokio::spawn(async move { receiver.changed().await });
        while sender.0.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        drop(sender);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one sender is left");
        drop(second);
        let result = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter never learned the channel closed")
            .expect("join");
        assert!(result.is_err());
    }
}
