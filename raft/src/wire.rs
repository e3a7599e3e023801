//! What travels between nodes: the gRPC method paths, the group header, the snapshot stream's
//! messages, and the codec that encodes openraft's messages with postcard.
//!
//! There is no `.proto` file: both ends are this crate, and openraft's message types already
//! derive serde, so a serde codec carries them as they are. The format is not stable across
//! openraft versions; every node of a cluster runs the same build.

use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::Status;

use crate::typ::{GroupId, SnapshotMeta, Vote};

/// The gRPC paths of the raft service, one per openraft message.
pub mod path {
    pub const STREAM_APPEND: &str = "/autocache.Raft/StreamAppend";
    pub const VOTE: &str = "/autocache.Raft/Vote";
    pub const PRE_VOTE: &str = "/autocache.Raft/PreVote";
    pub const INSTALL_SNAPSHOT: &str = "/autocache.Raft/InstallSnapshot";
    pub const TRANSFER_LEADER: &str = "/autocache.Raft/TransferLeader";
    /// Not raft: a PUBLISH relayed to every node, as Redis Cluster broadcasts it.
    pub const PUBLISH: &str = "/autocache.Raft/Publish";
    /// Not raft: a membership step or question (`replicas::ReplicaCall`), the admin API.
    pub const REPLICA: &str = "/autocache.Admin/Replica";
}

/// The request header naming the group a call is for: every group of a node shares one
/// connection per peer, so each call says which group's raft receives it.
pub const GROUP_HEADER: &str = "x-autocache-group";

/// Largest log entry a group takes (see [`crate::Request::approx_bytes`]): a command with a
/// value as large as Redis's `proto-max-bulk-len` (512 MB) allows, with room for its key. An
/// entry travels to a follower in one message, so a larger one could never be replicated: it
/// would hold up every later write of its group.
pub const MAX_ENTRY: usize = 513 << 20;

/// Bytes of entries a leader sends a follower in one message: a larger batch is split, and an
/// entry larger than this goes alone (see `append_split`).
pub const BATCH_BYTES: usize = 32 << 20;

/// Largest message either end accepts: a batch of log entries (one entry of up to
/// [`MAX_ENTRY`] included), or one snapshot chunk.
pub const MAX_MESSAGE: usize = MAX_ENTRY + (1 << 20);

/// The refusal of a node that is stopping, as its senders recognise it.
pub fn stopping() -> Status {
    Status::unavailable(STOPPING)
}

/// Whether `status` is a stopping node's refusal.
pub fn is_stopping(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message() == STOPPING
}

const STOPPING: &str = "this node is stopping";

/// Puts `group` in a request's header.
pub fn set_group(metadata: &mut MetadataMap, group: GroupId) {
    metadata.insert(GROUP_HEADER, group.into());
}

/// Reads the group a request is for.
pub fn group_of(metadata: &MetadataMap) -> Result<GroupId, Status> {
    metadata
        .get(GROUP_HEADER)
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .ok_or_else(|| Status::invalid_argument(format!("missing or bad {GROUP_HEADER} header")))
}

/// One message of a snapshot upload: the header first, then the bytes in chunks.
#[derive(Debug, Serialize, Deserialize)]
pub enum SnapshotChunk {
    Head { vote: Vote, meta: SnapshotMeta },
    Data(bytes::Bytes),
}

/// A PUBLISH relayed from the node a client published on.
#[derive(Debug, Serialize, Deserialize)]
pub struct Published {
    pub channel: bytes::Bytes,
    pub message: bytes::Bytes,
}

/// A tonic codec that encodes `T` and decodes `U` with postcard.
#[derive(Debug)]
pub struct PostcardCodec<T, U>(PhantomData<fn(T) -> U>);

impl<T, U> Default for PostcardCodec<T, U> {
    fn default() -> Self {
        PostcardCodec(PhantomData)
    }
}

#[derive(Debug)]
pub struct PostcardEncoder<T>(PhantomData<fn(T)>);

#[derive(Debug)]
pub struct PostcardDecoder<U>(PhantomData<fn() -> U>);

impl<T: Serialize> Encoder for PostcardEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        postcard::to_io(&item, dst.writer())
            .map(|_| ())
            .map_err(|e| Status::internal(format!("encode raft message: {e}")))
    }
}

impl<U: DeserializeOwned> Decoder for PostcardDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // The whole frame is one message (tonic fails a frame with bytes left over), and an
        // empty frame is a message too: postcard encodes `()` as nothing.
        let bytes = src.copy_to_bytes(src.remaining());
        postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("decode raft message: {e}")))
    }
}

impl<T, U> Codec for PostcardCodec<T, U>
where
    T: Serialize + Send + 'static,
    U: DeserializeOwned + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = PostcardEncoder<T>;
    type Decoder = PostcardDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        PostcardEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        PostcardDecoder(PhantomData)
    }
}
