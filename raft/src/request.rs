use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use resp::Frame;
use serde::{Deserialize, Serialize};

use openraft::EntryPayload;

use crate::typ::{Entry, GroupId};

/// What one log entry asks a group's state machine to do, with the clock and seed every
/// replica applies it with (so all of them compute the same deadlines and random choices).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The leader's clock when it proposed the entry, in Unix milliseconds.
    pub now_ms: u64,
    /// Seed of the entry's random choices.
    pub seed: u64,
    /// Shared, not owned: openraft clones each entry for the log tail, for every follower it
    /// replicates to and for the state machine, and the arguments of a command are several
    /// allocations each time. Serialized as the `Op` itself.
    pub op: Arc<Op>,
}

/// The operation of a log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// One write command, as its arguments (command name first). `Bytes`, so that applying it
    /// hands the arguments to the keyspace without copying them (they encode as byte vectors).
    Command(Vec<Bytes>),
    /// A MULTI/EXEC transaction: its commands apply as one step, unless a watched key changed.
    Transaction {
        commands: Vec<Vec<Bytes>>,
        watches: Vec<WatchedKey>,
    },
    /// Keys the leader found expired: each is deleted if it is still expired at `now_ms`.
    Expire(Vec<Vec<u8>>),
    /// A step of moving slots between groups (see `tiering::SlotState`).
    Slots(SlotOp),
}

/// A step of moving slots from one group to another, as an entry of one group's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotOp {
    /// Stop serving `slots` (keeping their keys) and hand them to group `to`.
    Release { slots: Vec<u16>, to: GroupId },
    /// One page of `slot`'s keys (a `tiering::snapshot` dump) of import `session`; the first
    /// page clears what an abandoned import left. Written by earlier versions, which moved a
    /// slot per page; still applied (as an `ImportPage` of one slot).
    Import {
        slot: u16,
        session: u64,
        first: bool,
        page: Vec<u8>,
    },
    /// Own and serve `slots`, which import `session` brought in.
    Adopt { slots: Vec<u16>, session: u64 },
    /// Forget the keys of `slots`, handed over and adopted by their new group.
    Drop { slots: Vec<u16> },
    /// One page of keys of `slots` (a `tiering::snapshot` dump) of import `session`; for
    /// `starts`, the slots whose first keys it holds, it clears what an abandoned import left
    /// (see `tiering::Db::import_page`).
    ImportPage {
        session: u64,
        slots: Vec<u16>,
        starts: Vec<u16>,
        page: Vec<u8>,
    },
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |args: &[Bytes]| {
            args.first()
                .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
                .unwrap_or_default()
        };
        match &*self.op {
            Op::Command(args) => write!(f, "command {} at {}", name(args), self.now_ms),
            Op::Transaction { commands, .. } => {
                write!(f, "transaction of {} at {}", commands.len(), self.now_ms)
            }
            Op::Expire(keys) => write!(f, "expire {} keys at {}", keys.len(), self.now_ms),
            Op::Slots(op) => write!(f, "{op}"),
        }
    }
}

impl Request {
    /// Roughly the bytes this request takes, in memory or encoded (a little more than either):
    /// for bounding the log tail, the size of an entry and the batches sent to followers.
    pub fn approx_bytes(&self) -> usize {
        let args = |args: &[Bytes]| args.iter().map(|a| a.len() + 32).sum::<usize>();
        64 + match &*self.op {
            Op::Command(command) => args(command),
            Op::Transaction { commands, watches } => {
                commands.iter().map(|c| args(c)).sum::<usize>()
                    + watches.iter().map(|w| w.key.len() + 32).sum::<usize>()
            }
            Op::Expire(keys) => keys.iter().map(|k| k.len() + 24).sum(),
            Op::Slots(SlotOp::Import { page, .. }) => page.len(),
            Op::Slots(SlotOp::ImportPage {
                page,
                slots,
                starts,
                ..
            }) => page.len() + 4 * (slots.len() + starts.len()),
            Op::Slots(
                SlotOp::Release { slots, .. }
                | SlotOp::Adopt { slots, .. }
                | SlotOp::Drop { slots },
            ) => 4 * slots.len(),
        }
    }
}

/// Roughly the bytes a log entry takes (see [`Request::approx_bytes`]).
pub(crate) fn entry_bytes(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(request) => request.approx_bytes(),
        // A membership lists a few nodes: far below the slack of every bound this serves.
        EntryPayload::Blank | EntryPayload::Membership(_) => 64,
    }
}

impl fmt::Display for SlotOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotOp::Release { slots, to } => {
                write!(f, "release {} slots to group {to}", slots.len())
            }
            SlotOp::Import { slot, page, .. } => {
                write!(f, "import {} bytes of slot {slot}", page.len())
            }
            SlotOp::ImportPage { slots, page, .. } => {
                write!(f, "import {} bytes of {} slots", page.len(), slots.len())
            }
            SlotOp::Adopt { slots, .. } => write!(f, "adopt {} slots", slots.len()),
            SlotOp::Drop { slots } => write!(f, "drop {} slots", slots.len()),
        }
    }
}

/// A WATCH a transaction depends on (see `tiering::Watch`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchedKey {
    pub key: Vec<u8>,
    /// The key was already logically expired when watched.
    pub expired: bool,
    /// The last log index the group had applied when the watch began.
    pub applied: u64,
}

/// What applying an entry answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// The reply of the command or transaction.
    Reply(Frame),
    /// A blocking command found nothing to pop and changed nothing: its client waits for the
    /// key to change and proposes it again, until `deadline_ms` (Unix ms; None: forever).
    WouldBlock { deadline_ms: Option<u64> },
    /// Entries without a client (blank, membership).
    #[default]
    Nothing,
    /// The command's slot is not this group's (it moved, or is moving, to another group):
    /// nothing was applied.
    NotOwned { slot: u16 },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The log on disk holds requests encoded before `op` was shared and before arguments were
    /// `Bytes`: the encoding must not have changed.
    #[test]
    fn requests_encode_as_they_did_with_owned_ops_and_byte_vectors() {
        #[derive(Serialize)]
        struct OldRequest {
            now_ms: u64,
            seed: u64,
            op: OldOp,
        }
        #[derive(Serialize)]
        enum OldOp {
            Command(Vec<Vec<u8>>),
            Transaction {
                commands: Vec<Vec<Vec<u8>>>,
                watches: Vec<WatchedKey>,
            },
        }
        let args = [b"SET".to_vec(), b"key".to_vec(), vec![0, 255, 7]];
        let watches = vec![WatchedKey {
            key: b"key".to_vec(),
            expired: false,
            applied: 3,
        }];
        let bytes = || {
            args.iter()
                .map(|a| Bytes::copy_from_slice(a))
                .collect::<Vec<_>>()
        };
        let cases = [
            (Op::Command(bytes()), OldOp::Command(args.to_vec())),
            (
                Op::Transaction {
                    commands: vec![bytes(), bytes()],
                    watches: watches.clone(),
                },
                OldOp::Transaction {
                    commands: vec![args.to_vec(), args.to_vec()],
                    watches,
                },
            ),
        ];
        for (op, old) in cases {
            let request = Request {
                now_ms: 7,
                seed: 9,
                op: Arc::new(op),
            };
            let old = OldRequest {
                now_ms: 7,
                seed: 9,
                op: old,
            };
            let encoded = postcard::to_allocvec(&request).expect("encode");
            assert_eq!(encoded, postcard::to_allocvec(&old).expect("encode"));
            let decoded: Request = postcard::from_bytes(&encoded).expect("decode");
            assert_eq!(decoded, request);
        }
    }
}
