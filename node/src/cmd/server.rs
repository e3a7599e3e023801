//! TIME, SHUTDOWN, SLOWLOG.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use resp::Frame;

use crate::session::{Outcome, Session};

pub fn time() -> Outcome {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Frame::Array(vec![
        Frame::bulk_int(now.as_secs() as i64),
        Frame::bulk_int(now.subsec_micros() as i64),
    ])
    .into()
}

pub fn shutdown(session: &Session, args: &[Bytes]) -> Outcome {
    for arg in &args[1..] {
        let known = ["NOSAVE", "SAVE", "NOW", "FORCE", "ABORT"]
            .iter()
            .any(|o| arg.eq_ignore_ascii_case(o.as_bytes()));
        if !known {
            return Frame::error("ERR syntax error").into();
        }
        if arg.eq_ignore_ascii_case(b"ABORT") {
            return Frame::error("ERR No shutdown in progress.").into();
        }
    }
    tracing::info!(client = session.info.id, "shutdown requested by client");
    session.server.shutdown();
    // Like Redis, the connection closes without a reply.
    Outcome::Close(None)
}

pub fn slowlog(session: &Session, sub: &str, args: &[Bytes]) -> Outcome {
    let log = &session.server.slowlog;
    match sub {
        "get" => {
            let count = match args.get(2) {
                None => Some(10),
                Some(arg) => match resp::request::parse_ll(arg) {
                    Some(n) if n >= -1 => (n >= 0).then_some(n as usize),
                    Some(_) => {
                        return Frame::error("ERR count should be greater than or equal to -1")
                            .into()
                    }
                    None => {
                        return Frame::error("ERR value is not an integer or out of range").into()
                    }
                },
            };
            log.get(count).into()
        }
        "len" => Frame::Integer(log.len() as i64).into(),
        "reset" => {
            log.reset();
            Frame::ok().into()
        }
        _ => super::help(
            "SLOWLOG",
            &[
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
            ],
        ),
    }
}
