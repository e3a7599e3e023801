use bytes::{BufMut, BytesMut};

use crate::double::format_double;
use crate::frame::Frame;

/// The protocol version a connection speaks, chosen with `HELLO`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Proto {
    /// RESP2, the default for a new connection.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

impl Proto {
    /// The number `HELLO` reports for this version.
    pub fn version(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// Appends the encoding of `frame` for `proto` to `out`.
pub fn encode(frame: &Frame, proto: Proto, out: &mut BytesMut) {
    match frame {
        Frame::Simple(text) => line(out, b'+', text.as_bytes()),
        Frame::Error(text) => line(out, b'-', text.as_bytes()),
        Frame::Integer(value) => integer(out, b':', *value),
        Frame::Bulk(bytes) => bulk(out, bytes),
        Frame::Null => match proto {
            Proto::Resp2 => out.put_slice(b"$-1\r\n"),
            Proto::Resp3 => out.put_slice(b"_\r\n"),
        },
        Frame::NullArray => match proto {
            Proto::Resp2 => out.put_slice(b"*-1\r\n"),
            Proto::Resp3 => out.put_slice(b"_\r\n"),
        },
        Frame::Array(items) => {
            integer(out, b'*', items.len() as i64);
            for item in items {
                encode(item, proto, out);
            }
        }
        Frame::Map(pairs) => {
            match proto {
                Proto::Resp2 => integer(out, b'*', 2 * pairs.len() as i64),
                Proto::Resp3 => integer(out, b'%', pairs.len() as i64),
            }
            for (key, value) in pairs {
                encode(key, proto, out);
                encode(value, proto, out);
            }
        }
        Frame::Pairs(pairs) => {
            match proto {
                Proto::Resp2 => integer(out, b'*', 2 * pairs.len() as i64),
                Proto::Resp3 => integer(out, b'*', pairs.len() as i64),
            }
            for (first, second) in pairs {
                if proto == Proto::Resp3 {
                    out.put_slice(b"*2\r\n");
                }
                encode(first, proto, out);
                encode(second, proto, out);
            }
        }
        Frame::Set(items) | Frame::Push(items) => {
            let marker = match (frame, proto) {
                (_, Proto::Resp2) => b'*',
                (Frame::Set(_), Proto::Resp3) => b'~',
                _ => b'>',
            };
            integer(out, marker, items.len() as i64);
            for item in items {
                encode(item, proto, out);
            }
        }
        Frame::Double(value) => {
            let text = format_double(*value);
            match proto {
                Proto::Resp2 => bulk(out, text.as_bytes()),
                Proto::Resp3 => line(out, b',', text.as_bytes()),
            }
        }
        Frame::Boolean(value) => match proto {
            Proto::Resp2 => integer(out, b':', *value as i64),
            Proto::Resp3 => out.put_slice(if *value { b"#t\r\n" } else { b"#f\r\n" }),
        },
        Frame::Verbatim(bytes) => match proto {
            Proto::Resp2 => bulk(out, bytes),
            Proto::Resp3 => {
                integer(out, b'=', bytes.len() as i64 + 4);
                out.put_slice(b"txt:");
                out.put_slice(bytes);
                out.put_slice(b"\r\n");
            }
        },
        Frame::BigNumber(digits) => match proto {
            Proto::Resp2 => bulk(out, digits.as_bytes()),
            Proto::Resp3 => line(out, b'(', digits.as_bytes()),
        },
    }
}

fn line(out: &mut BytesMut, marker: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(marker);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

fn integer(out: &mut BytesMut, marker: u8, value: i64) {
    line(out, marker, itoa::Buffer::new().format(value).as_bytes());
}

fn bulk(out: &mut BytesMut, bytes: &[u8]) {
    integer(out, b'$', bytes.len() as i64);
    out.reserve(bytes.len() + 2);
    out.put_slice(bytes);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(frame: &Frame, proto: Proto) -> String {
        let mut out = BytesMut::new();
        encode(frame, proto, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn maps_flatten_in_resp2() {
        let map = Frame::Map(vec![(Frame::bulk(b"a"), Frame::Integer(1))]);
        assert_eq!(bytes_of(&map, Proto::Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(bytes_of(&map, Proto::Resp3), "%1\r\n$1\r\na\r\n:1\r\n");
    }

    #[test]
    fn nulls_keep_their_kind_in_resp2() {
        assert_eq!(bytes_of(&Frame::Null, Proto::Resp2), "$-1\r\n");
        assert_eq!(bytes_of(&Frame::NullArray, Proto::Resp2), "*-1\r\n");
        assert_eq!(bytes_of(&Frame::NullArray, Proto::Resp3), "_\r\n");
    }

    #[test]
    fn doubles_and_booleans() {
        assert_eq!(bytes_of(&Frame::Double(1.5), Proto::Resp2), "$3\r\n1.5\r\n");
        assert_eq!(bytes_of(&Frame::Double(1.5), Proto::Resp3), ",1.5\r\n");
        assert_eq!(bytes_of(&Frame::Boolean(true), Proto::Resp2), ":1\r\n");
        assert_eq!(bytes_of(&Frame::Boolean(false), Proto::Resp3), "#f\r\n");
    }

    #[test]
    fn verbatim_carries_its_format() {
        let frame = Frame::Verbatim(bytes::Bytes::from_static(b"hi"));
        assert_eq!(bytes_of(&frame, Proto::Resp3), "=6\r\ntxt:hi\r\n");
        assert_eq!(bytes_of(&frame, Proto::Resp2), "$2\r\nhi\r\n");
    }
}
