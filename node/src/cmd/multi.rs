//! MULTI, DISCARD, WATCH (EXEC lives in the session, which owns the queue).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use resp::Frame;

use crate::server::unix_ms;
use crate::session::{Multi, Outcome, Session};

pub fn multi(session: &mut Session) -> Outcome {
    if session.multi.is_some() {
        return Frame::error("ERR MULTI calls can not be nested").into();
    }
    session.multi = Some(Multi::default());
    session.info.multi.store(0, Ordering::Relaxed);
    Frame::ok().into()
}

pub fn discard(session: &mut Session) -> Outcome {
    if session.multi.take().is_none() {
        return Frame::error("ERR DISCARD without MULTI").into();
    }
    session.info.multi.store(-1, Ordering::Relaxed);
    session.unwatch_all();
    Frame::ok().into()
}

pub fn watch(session: &mut Session, args: &[Bytes]) -> Outcome {
    if session.multi.is_some() {
        return Frame::error("ERR WATCH inside MULTI is not allowed").into();
    }
    // The session fenced the keys' groups first, so each watch starts from a linearizable
    // point of its group's log.
    for key in &args[1..] {
        if session.watched.iter().any(|w| w.key[..] == key[..]) {
            continue;
        }
        let watch = session.server.db.watch(key, unix_ms());
        session.watched.push(watch);
    }
    Frame::ok().into()
}
