//! SLOWLOG: the slowest recent commands.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use resp::Frame;

/// Arguments kept per entry, and bytes per argument, as Redis truncates them.
const MAX_ARGS: usize = 32;
const MAX_ARG_LEN: usize = 128;

#[derive(Debug)]
struct Entry {
    id: u64,
    unix_secs: i64,
    micros: u64,
    args: Vec<Bytes>,
    client_addr: String,
    client_name: String,
}

/// The slow log.
#[derive(Debug, Default)]
pub struct SlowLog {
    inner: Mutex<(u64, VecDeque<Entry>)>,
}

impl SlowLog {
    /// Records a command that took `micros`, keeping at most `max_len` entries.
    pub fn record(
        &self,
        args: &[Bytes],
        micros: u64,
        client_addr: String,
        client_name: String,
        max_len: usize,
    ) {
        let mut kept: Vec<Bytes> = Vec::with_capacity(args.len().min(MAX_ARGS));
        for (i, arg) in args.iter().enumerate() {
            if i == MAX_ARGS - 1 && args.len() > MAX_ARGS {
                kept.push(Bytes::from(format!(
                    "... ({} more arguments)",
                    args.len() - MAX_ARGS + 1
                )));
                break;
            }
            if arg.len() > MAX_ARG_LEN {
                let mut text = arg[..MAX_ARG_LEN].to_vec();
                text.extend_from_slice(
                    format!("... ({} more bytes)", arg.len() - MAX_ARG_LEN).as_bytes(),
                );
                kept.push(Bytes::from(text));
            } else {
                kept.push(arg.clone());
            }
        }
        let unix_secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut inner = self.inner.lock();
        let id = inner.0;
        inner.0 += 1;
        inner.1.push_front(Entry {
            id,
            unix_secs,
            micros,
            args: kept,
            client_addr,
            client_name,
        });
        inner.1.truncate(max_len);
    }

    /// The newest `count` entries (all with a negative count), as SLOWLOG GET replies.
    pub fn get(&self, count: Option<usize>) -> Frame {
        let inner = self.inner.lock();
        let entries = inner
            .1
            .iter()
            .take(count.unwrap_or(usize::MAX))
            .map(|e| {
                Frame::Array(vec![
                    Frame::Integer(e.id as i64),
                    Frame::Integer(e.unix_secs),
                    Frame::Integer(e.micros as i64),
                    Frame::Array(e.args.iter().cloned().map(Frame::Bulk).collect()),
                    Frame::bulk(e.client_addr.as_bytes()),
                    Frame::bulk(e.client_name.as_bytes()),
                ])
            })
            .collect();
        Frame::Array(entries)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.lock().1.len()
    }

    /// Forgets every entry.
    pub fn reset(&self) {
        self.inner.lock().1.clear();
    }

    /// Drops entries beyond `max_len`.
    pub fn trim(&self, max_len: usize) {
        self.inner.lock().1.truncate(max_len);
    }
}
