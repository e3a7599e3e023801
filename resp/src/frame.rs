use std::borrow::Cow;

use bytes::Bytes;

/// A reply, in RESP3's vocabulary.
///
/// RESP2 clients get the same frame down-converted by [`crate::encode`]: maps and sets become
/// flat arrays, doubles become bulk strings, booleans become integers, and both nulls become the
/// RESP2 null of their kind (`$-1` or `*-1`), exactly as Redis does.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Frame {
    /// `+OK`
    Simple(Cow<'static, str>),
    /// `-ERR ...`; the text includes the error code (`ERR`, `WRONGTYPE`, ...).
    Error(Cow<'static, str>),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(Bytes),
    /// The null bulk string: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// The null array: `*-1` in RESP2, `_` in RESP3.
    NullArray,
    /// `*N`
    Array(Vec<Frame>),
    /// `%N` in RESP3, a flat array of 2N elements in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// `~N` in RESP3, an array in RESP2.
    Set(Vec<Frame>),
    /// Pairs such as member/score: an array of 2-element arrays in RESP3, a flat array in RESP2
    /// (ZRANGE WITHSCORES, HRANDFIELD WITHVALUES).
    Pairs(Vec<(Frame, Frame)>),
    /// `,1.5` in RESP3, a bulk string formatted as `%.17g` in RESP2.
    Double(f64),
    /// `#t` in RESP3, `:1` in RESP2.
    Boolean(bool),
    /// `=N\r\ntxt:...` in RESP3, a bulk string in RESP2.
    Verbatim(Bytes),
    /// `(123` in RESP3, a bulk string in RESP2.
    BigNumber(String),
    /// `>N` in RESP3 (pub/sub messages), an array in RESP2.
    Push(Vec<Frame>),
}

impl Frame {
    /// The `+OK` reply.
    pub const fn ok() -> Frame {
        Frame::Simple(Cow::Borrowed("OK"))
    }

    /// A status reply from a static text.
    pub const fn simple(text: &'static str) -> Frame {
        Frame::Simple(Cow::Borrowed(text))
    }

    /// An error reply; `text` must start with the error code, as in `"ERR syntax error"`.
    pub fn error(text: impl Into<Cow<'static, str>>) -> Frame {
        Frame::Error(text.into())
    }

    /// A bulk string copied from a byte slice.
    pub fn bulk(bytes: &[u8]) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(bytes))
    }

    /// A bulk string from a static text.
    pub fn bulk_static(text: &'static str) -> Frame {
        Frame::Bulk(Bytes::from_static(text.as_bytes()))
    }

    /// A bulk string holding the decimal form of an integer.
    pub fn bulk_int(value: i64) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(
            itoa::Buffer::new().format(value).as_bytes(),
        ))
    }

    /// Returns true for error replies.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// Returns the error text of an error reply.
    pub fn error_text(&self) -> Option<&str> {
        match self {
            Frame::Error(text) => Some(text),
            _ => None,
        }
    }
}
