//! PING, HELLO, AUTH, SELECT, RESET.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use resp::{Frame, Proto};

use super::REDIS_VERSION;
use crate::session::{Outcome, ReplyMode, Session};

pub fn ping(session: &Session, args: &[Bytes]) -> Outcome {
    if args.len() > 2 {
        return Frame::error("ERR wrong number of arguments for 'ping' command").into();
    }
    if session.proto == Proto::Resp2 && session.info.is_pubsub() {
        let payload = args.get(1).cloned().unwrap_or_default();
        return Frame::Array(vec![Frame::bulk_static("pong"), Frame::Bulk(payload)]).into();
    }
    match args.get(1) {
        Some(payload) => Frame::Bulk(payload.clone()).into(),
        None => Frame::simple("PONG").into(),
    }
}

/// Checks a client name as Redis does: printable ASCII, no spaces.
pub fn validate_name(name: &[u8]) -> Result<(), Frame> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(Frame::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

fn check_password(session: &mut Session, user: &[u8], password: &[u8]) -> Result<(), Frame> {
    let required = session.server.config.read().requirepass.clone();
    let ok = user == b"default" && (required.is_empty() || required.as_bytes() == password);
    if ok {
        session.authenticated = true;
        Ok(())
    } else {
        Err(Frame::error(
            "WRONGPASS invalid username-password pair or user is disabled.",
        ))
    }
}

pub fn auth(session: &mut Session, args: &[Bytes]) -> Outcome {
    if args.len() > 3 {
        return Frame::error("ERR syntax error").into();
    }
    if args.len() == 2 && session.server.config.read().requirepass.is_empty() {
        return Frame::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        )
        .into();
    }
    let (user, password) = match args.len() {
        2 => (&b"default"[..], &args[1]),
        _ => (&args[1][..], &args[2]),
    };
    match check_password(session, user, password) {
        Ok(()) => Frame::ok().into(),
        Err(frame) => frame.into(),
    }
}

pub fn hello(session: &mut Session, args: &[Bytes]) -> Outcome {
    let mut next = 1;
    let mut version = None;
    if args.len() >= 2 {
        next = 2;
        match resp::request::parse_ll(&args[1]) {
            Some(v @ 2..=3) => version = Some(v),
            Some(_) => return Frame::error("NOPROTO unsupported protocol version").into(),
            None => {
                return Frame::error("ERR Protocol version is not an integer or out of range")
                    .into()
            }
        }
    }
    let mut credentials = None;
    let mut name = None;
    let mut j = next;
    while j < args.len() {
        let more = args.len() - 1 - j;
        let opt = &args[j];
        if opt.eq_ignore_ascii_case(b"AUTH") && more >= 2 {
            credentials = Some((args[j + 1].clone(), args[j + 2].clone()));
            j += 2;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
            if let Err(frame) = validate_name(&args[j + 1]) {
                return frame.into();
            }
            name = Some(args[j + 1].clone());
            j += 1;
        } else {
            return Frame::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(opt)
            ))
            .into();
        }
        j += 1;
    }
    if let Some((user, password)) = credentials {
        if let Err(frame) = check_password(session, &user, &password) {
            return frame.into();
        }
    }
    if !session.authenticated {
        return Frame::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time",
        )
        .into();
    }
    if let Some(name) = name {
        *session.info.name.lock() =
            (!name.is_empty()).then(|| String::from_utf8_lossy(&name).into_owned());
    }
    if let Some(version) = version {
        session.proto = if version == 3 {
            Proto::Resp3
        } else {
            Proto::Resp2
        };
        session.info.resp.store(version as u8, Ordering::Relaxed);
    }
    Frame::Map(vec![
        (Frame::bulk_static("server"), Frame::bulk_static("redis")),
        (
            Frame::bulk_static("version"),
            Frame::bulk_static(REDIS_VERSION),
        ),
        (
            Frame::bulk_static("proto"),
            Frame::Integer(session.proto.version()),
        ),
        (
            Frame::bulk_static("id"),
            Frame::Integer(session.info.id as i64),
        ),
        (Frame::bulk_static("mode"), Frame::bulk_static("cluster")),
        (Frame::bulk_static("role"), Frame::bulk_static("master")),
        (Frame::bulk_static("modules"), Frame::Array(Vec::new())),
    ])
    .into()
}

pub fn select(args: &[Bytes]) -> Outcome {
    match resp::request::parse_ll(&args[1]) {
        None => Frame::error("ERR value is not an integer or out of range").into(),
        Some(0) => Frame::ok().into(),
        Some(_) => Frame::error("ERR SELECT is not allowed in cluster mode").into(),
    }
}

pub fn reset(session: &mut Session) -> Outcome {
    session.multi = None;
    session.info.multi.store(-1, Ordering::Relaxed);
    session.unwatch_all();
    super::pubsub::unsubscribe_all(session);
    session.proto = Proto::Resp2;
    session.info.resp.store(2, Ordering::Relaxed);
    *session.info.name.lock() = None;
    session.reply_mode = ReplyMode::On;
    session.info.no_evict.store(false, Ordering::Relaxed);
    session.authenticated = session.server.config.read().requirepass.is_empty();
    Frame::simple("RESET").into()
}
