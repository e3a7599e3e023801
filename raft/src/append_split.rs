//! Splitting the batches openraft replicates into messages of bounded size, and merging the
//! follower's answers back into one per batch.
//!
//! openraft bounds a batch by its number of entries only, and a message larger than the
//! transport's limit can never be sent: its group would retry it forever and take no other
//! write. So each batch is cut into parts of at most [`BATCH_BYTES`] of entries (an entry
//! larger than that goes alone), each a valid append of its own: it follows the part before
//! it, and carries the batch's commit index, which a follower applies only as far as the
//! entries it holds from this leader. The follower answers every part; openraft, which sent
//! one batch, gets one answer: the last part's, or the first failure.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use openraft::entry::RaftEntry;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use parking_lot::Mutex;

use crate::request::entry_bytes;
use crate::typ::TypeConfig as C;
use crate::wire::BATCH_BYTES;

/// How many parts each batch sent so far was split into, oldest first: shared by the sending
/// and the answering side of one stream.
#[derive(Clone, Default)]
pub(crate) struct Parts(Arc<Mutex<VecDeque<usize>>>);

/// Cuts `batch` into appends of at most `max_bytes` of entries each (one entry, however large,
/// per part at least). A batch without entries (a heartbeat) stays whole.
pub(crate) fn split(
    batch: AppendEntriesRequest<C>,
    max_bytes: usize,
) -> Vec<AppendEntriesRequest<C>> {
    let total: usize = batch.entries.iter().map(entry_bytes).sum();
    if total <= max_bytes {
        return vec![batch];
    }
    let AppendEntriesRequest {
        vote,
        mut prev_log_id,
        entries,
        leader_commit,
    } = batch;
    let mut parts = Vec::new();
    let mut part = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let size = entry_bytes(&entry);
        if !part.is_empty() && bytes + size > max_bytes {
            let last = part.last().map(RaftEntry::log_id);
            parts.push(AppendEntriesRequest {
                vote,
                prev_log_id: std::mem::replace(&mut prev_log_id, last),
                entries: std::mem::take(&mut part),
                leader_commit,
            });
            bytes = 0;
        }
        bytes += size;
        part.push(entry);
    }
    parts.push(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries: part,
        leader_commit,
    });
    parts
}

/// The batches of `input`, split into parts (see [`split`]), recording how many parts each
/// became in `parts`.
pub(crate) fn split_stream<S>(
    input: S,
    parts: Parts,
) -> impl Stream<Item = AppendEntriesRequest<C>> + Send + 'static
where
    S: Stream<Item = AppendEntriesRequest<C>> + Send + 'static,
{
    input.flat_map(move |batch| {
        let split = split(batch, BATCH_BYTES);
        parts.0.lock().push_back(split.len());
        futures::stream::iter(split)
    })
}

/// One answer per batch from `answers`, one per part: the last part's, or the first failure
/// (after which the follower ends the stream). A stream that ends within a batch ends here.
pub(crate) fn merge_answers<S, E>(
    answers: S,
    parts: Parts,
) -> impl Stream<Item = Result<StreamAppendResult<C>, E>>
where
    S: Stream<Item = Result<StreamAppendResult<C>, E>> + Unpin,
{
    futures::stream::unfold((answers, parts), |(mut answers, parts)| async move {
        let mut answer = answers.next().await?;
        // A part's answer can only arrive once the part was sent, after its count was recorded.
        let count = parts.0.lock().pop_front().unwrap_or(1);
        for _ in 1..count {
            if !matches!(answer, Ok(Ok(_))) {
                break;
            }
            answer = answers.next().await?;
        }
        Some((answer, (answers, parts)))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc as StdArc;

    use bytes::Bytes;
    use openraft::raft::StreamAppendError;

    use super::*;
    use crate::request::{Op, Request};
    use crate::typ::{Entry, LogId, Vote};

    fn log_id(index: u64) -> LogId {
        openraft::testing::log_id::<C>(1, 1, index)
    }

    fn entry(index: u64, value_bytes: usize) -> Entry {
        let request = Request {
            now_ms: 0,
            seed: 0,
            op: StdArc::new(Op::Command(vec![
                Bytes::from_static(b"SET"),
                Bytes::from_static(b"k"),
                Bytes::from(vec![b'v'; value_bytes]),
            ])),
        };
        Entry::new_normal(log_id(index), request)
    }

    fn batch(prev: u64, sizes: &[usize]) -> AppendEntriesRequest<C> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(log_id(prev)),
            entries: (0..)
                .zip(sizes)
                .map(|(i, &size)| entry(prev + 1 + i, size))
                .collect(),
            leader_commit: Some(log_id(prev + sizes.len() as u64)),
        }
    }

    /// (prev_log_id index, entry indexes) of each part.
    fn shape(parts: &[AppendEntriesRequest<C>]) -> Vec<(u64, Vec<u64>)> {
        parts
            .iter()
            .map(|part| {
                let prev = part.prev_log_id.as_ref().unwrap().index;
                let indexes = part.entries.iter().map(|e| e.log_id.index).collect();
                (prev, indexes)
            })
            .collect()
    }

    #[test]
    fn a_batch_is_cut_into_consecutive_parts_of_bounded_bytes() {
        // Entries of about 400 and 1000 bytes under a 1000-byte bound.
        let parts = split(batch(10, &[300, 300, 900, 100, 100, 2000]), 1000);
        assert_eq!(
            shape(&parts),
            vec![
                (10, vec![11, 12]),
                (12, vec![13]),
                (13, vec![14, 15]),
                (15, vec![16]),
            ]
        );
        for part in &parts {
            assert_eq!(part.leader_commit, Some(log_id(16)));
            assert_eq!(part.vote, Vote::new_committed(1, 1));
        }
        // Small enough, or a heartbeat: one message as it was.
        assert_eq!(
            shape(&split(batch(3, &[10, 10]), 1000)),
            vec![(3, vec![4, 5])]
        );
        assert_eq!(shape(&split(batch(3, &[]), 1000)), vec![(3, vec![])]);
    }

    fn ok(index: u64) -> Result<StreamAppendResult<C>, ()> {
        Ok(Ok(Some(log_id(index))))
    }

    #[tokio::test]
    async fn each_batch_gets_its_last_parts_answer_or_its_first_failure() {
        let parts = Parts::default();
        parts.0.lock().extend([2, 1, 3]);
        let conflict: Result<StreamAppendResult<C>, ()> =
            Ok(Err(StreamAppendError::Conflict(log_id(7))));
        // Batch 1: parts ending at 2 and 4; batch 2: one part; batch 3: a conflict in its
        // second part, after which the follower ends the stream.
        let answers = futures::stream::iter([ok(2), ok(4), ok(5), ok(6), conflict.clone()]);
        let merged: Vec<_> = merge_answers(answers, parts.clone()).collect().await;
        assert_eq!(merged, vec![ok(4), ok(5), conflict]);
        // A stream that ends within a batch yields nothing for it.
        parts.0.lock().clear();
        parts.0.lock().extend([2]);
        let merged: Vec<_> = merge_answers(futures::stream::iter([ok(2)]), parts)
            .collect()
            .await;
        assert!(merged.is_empty(), "{merged:?}");
    }
}
