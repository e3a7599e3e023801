//! The Redis protocol, without I/O.
//!
//! `resp` turns client bytes into requests (multibulk or inline, with Redis's limits and error
//! texts), turns replies into RESP2 or RESP3 bytes, and holds the command table that COMMAND,
//! arity checks and cluster routing read. It never panics on client bytes and never allocates more
//! than the bytes a client actually sent (plus the configured limits).
//!
//! It knows nothing about keys, values or connections: those live in `tiering` and `node`.

/// The command table: arity, flags and key specifications of every supported command.
pub mod command_table;
/// Redis's `%.17g` formatting of doubles, shared by replies and values.
pub mod double;
/// Encoding of replies for a protocol version.
pub mod encode;
/// Protocol errors with Redis's texts.
pub mod error;
/// The reply value: every RESP3 type, encodable as RESP2 too.
pub mod frame;
/// Splitting of inline commands, quotes and escapes as `sdssplitargs` does.
pub mod inline;
/// The incremental request decoder (multibulk and inline).
pub mod request;
/// A parser for whole RESP values, for clients, tests and the embedded command table.
pub mod value;

pub use command_table::{CommandSpec, CommandTable, KeySpec};
pub use encode::{encode, Proto};
pub use error::ProtocolError;
pub use frame::Frame;
pub use request::{Limits, RequestDecoder};
