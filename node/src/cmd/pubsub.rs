//! SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE, PUBLISH, PUBSUB.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use resp::Frame;

use crate::session::{Outcome, Session};

fn confirmation(kind: &'static str, name: Option<Bytes>, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::bulk_static(kind),
        name.map_or(Frame::Null, Frame::Bulk),
        Frame::Integer(count as i64),
    ])
}

fn count(session: &Session) -> usize {
    session.channels.len() + session.patterns.len()
}

fn sync_counts(session: &Session) {
    session
        .info
        .channels
        .store(session.channels.len(), Ordering::Relaxed);
    session
        .info
        .patterns
        .store(session.patterns.len(), Ordering::Relaxed);
}

pub fn subscribe(session: &mut Session, args: &[Bytes], pattern: bool) -> Outcome {
    let mut replies = Vec::new();
    let subscriber = session.subscriber();
    for name in &args[1..] {
        if pattern {
            if session.patterns.insert(name.clone()) {
                session.server.pubsub.psubscribe(name, &subscriber);
            }
        } else if session.channels.insert(name.clone()) {
            session.server.pubsub.subscribe(name, &subscriber);
        }
        let kind = if pattern { "psubscribe" } else { "subscribe" };
        replies.push(confirmation(kind, Some(name.clone()), count(session)));
    }
    sync_counts(session);
    multiple(replies)
}

/// Several confirmations become consecutive replies, as Redis sends one push per channel.
fn multiple(mut replies: Vec<Frame>) -> Outcome {
    if replies.len() == 1 {
        return Outcome::Reply(replies.pop().expect("one reply"));
    }
    Outcome::Many(replies)
}

pub fn unsubscribe(session: &mut Session, args: &[Bytes], pattern: bool) -> Outcome {
    let kind = if pattern {
        "punsubscribe"
    } else {
        "unsubscribe"
    };
    let names: Vec<Bytes> = if args.len() > 1 {
        args[1..].to_vec()
    } else if pattern {
        session.patterns.iter().cloned().collect()
    } else {
        session.channels.iter().cloned().collect()
    };
    if names.is_empty() {
        return confirmation(kind, None, count(session)).into();
    }
    let mut replies = Vec::new();
    for name in names {
        if pattern {
            if session.patterns.remove(&name) {
                session.server.pubsub.punsubscribe(&name, session.info.id);
            }
        } else if session.channels.remove(&name) {
            session.server.pubsub.unsubscribe(&name, session.info.id);
        }
        replies.push(confirmation(kind, Some(name), count(session)));
    }
    sync_counts(session);
    multiple(replies)
}

/// Drops every subscription without replying (RESET).
pub fn unsubscribe_all(session: &mut Session) {
    for channel in std::mem::take(&mut session.channels) {
        session.server.pubsub.unsubscribe(&channel, session.info.id);
    }
    for pattern in std::mem::take(&mut session.patterns) {
        session
            .server
            .pubsub
            .punsubscribe(&pattern, session.info.id);
    }
    sync_counts(session);
}

pub fn publish(session: &Session, args: &[Bytes]) -> Outcome {
    // Like Redis Cluster: delivered on every node, counted on this one.
    session.server.groups.relay_publish(&args[1], &args[2]);
    Frame::Integer(session.server.pubsub.publish(&args[1], &args[2]) as i64).into()
}

pub fn introspect(session: &Session, sub: &str, args: &[Bytes]) -> Outcome {
    let pubsub = &session.server.pubsub;
    match sub {
        "channels" => {
            let channels = pubsub.channels(args.get(2).map(|p| p.as_ref()));
            Frame::Array(channels.into_iter().map(Frame::Bulk).collect()).into()
        }
        "numsub" => {
            let mut out = Vec::new();
            for channel in &args[2..] {
                out.push(Frame::Bulk(channel.clone()));
                out.push(Frame::Integer(pubsub.numsub(channel) as i64));
            }
            Frame::Array(out).into()
        }
        "numpat" => Frame::Integer(pubsub.numpat() as i64).into(),
        _ => super::help(
            "PUBSUB",
            &[
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
            ],
        ),
    }
}
