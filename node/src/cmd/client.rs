//! CLIENT subcommands.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use resp::Frame;

use super::connection::validate_name;
use crate::session::{Outcome, ReplyMode, Session};

pub fn run(session: &mut Session, sub: &str, args: &[Bytes]) -> Outcome {
    match sub {
        "id" => Frame::Integer(session.info.id as i64).into(),
        "setname" => {
            if let Err(frame) = validate_name(&args[2]) {
                return frame.into();
            }
            *session.info.name.lock() =
                (!args[2].is_empty()).then(|| String::from_utf8_lossy(&args[2]).into_owned());
            Frame::ok().into()
        }
        "getname" => match session.info.name.lock().as_deref() {
            Some(name) => Frame::bulk(name.as_bytes()).into(),
            None => Frame::Null.into(),
        },
        "info" => Frame::Verbatim(Bytes::from(format!("{}\n", session.info.describe()))).into(),
        "list" => list(session, args),
        "kill" => kill(session, args),
        "setinfo" => setinfo(session, args),
        "no-evict" => {
            let on = if args[2].eq_ignore_ascii_case(b"on") {
                true
            } else if args[2].eq_ignore_ascii_case(b"off") {
                false
            } else {
                return Frame::error("ERR syntax error").into();
            };
            session.info.no_evict.store(on, Ordering::Relaxed);
            Frame::ok().into()
        }
        "reply" => {
            if args[2].eq_ignore_ascii_case(b"on") {
                session.reply_mode = ReplyMode::On;
                Frame::ok().into()
            } else if args[2].eq_ignore_ascii_case(b"off") {
                session.reply_mode = ReplyMode::Off;
                Outcome::Silent
            } else if args[2].eq_ignore_ascii_case(b"skip") {
                if session.reply_mode == ReplyMode::On {
                    session.reply_mode = ReplyMode::Skip;
                }
                Outcome::Silent
            } else {
                Frame::error("ERR syntax error").into()
            }
        }
        "help" => super::help(
            "CLIENT",
            &[
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "KILL <ip:port>",
                "    Kill connection made from <ip:port>.",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Kill connections. Options are: ID, TYPE, USER, ADDR, LADDR, SKIPME.",
                "LIST [options ...]",
                "    Return information about client connections. Options: TYPE, ID.",
                "NO-EVICT (ON|OFF)",
                "    Protect current client connection from eviction.",
                "REPLY (ON|OFF|SKIP)",
                "    Control the replies sent to the current connection.",
                "SETINFO <option> <value>",
                "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
            ],
        ),
        other => Frame::error(format!(
            "ERR unknown subcommand '{other}'. Try CLIENT HELP."
        ))
        .into(),
    }
}

fn client_type(info: &crate::client::ClientInfo) -> &'static str {
    if info.is_pubsub() {
        "pubsub"
    } else {
        "normal"
    }
}

fn parse_type(arg: &[u8]) -> Result<&'static str, Frame> {
    let lower = String::from_utf8_lossy(arg).to_ascii_lowercase();
    match lower.as_str() {
        "normal" => Ok("normal"),
        "pubsub" => Ok("pubsub"),
        "master" => Ok("master"),
        "replica" | "slave" => Ok("replica"),
        _ => Err(Frame::error(format!(
            "ERR Unknown client type '{}'",
            String::from_utf8_lossy(arg)
        ))),
    }
}

fn list(session: &Session, args: &[Bytes]) -> Outcome {
    let mut kind = None;
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 2;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"TYPE") && i + 1 < args.len() {
            match parse_type(&args[i + 1]) {
                Ok(k) => kind = Some(k),
                Err(frame) => return frame.into(),
            }
            i += 2;
        } else if args[i].eq_ignore_ascii_case(b"ID") && i + 1 < args.len() {
            let mut list = Vec::new();
            i += 1;
            while i < args.len() {
                match resp::request::parse_ll(&args[i]) {
                    Some(id) if id > 0 => list.push(id as u64),
                    _ => return Frame::error("ERR Invalid client ID").into(),
                }
                i += 1;
            }
            ids = Some(list);
        } else {
            return Frame::error("ERR syntax error").into();
        }
    }
    let mut text = String::new();
    for client in session.server.clients.all() {
        if kind.is_some_and(|k| k != client_type(&client)) {
            continue;
        }
        if ids.as_ref().is_some_and(|ids| !ids.contains(&client.id)) {
            continue;
        }
        text.push_str(&client.describe());
        text.push('\n');
    }
    Frame::Verbatim(Bytes::from(text)).into()
}

fn kill(session: &Session, args: &[Bytes]) -> Outcome {
    if args.len() == 3 {
        let addr = String::from_utf8_lossy(&args[2]);
        let target = session
            .server
            .clients
            .all()
            .into_iter()
            .find(|c| c.addr.to_string() == addr);
        return match target {
            Some(client) => {
                client.kill();
                Frame::ok().into()
            }
            None => Frame::error("ERR No such client").into(),
        };
    }
    let (mut id, mut kind, mut addr, mut laddr, mut skipme, mut user) =
        (None, None, None, None, true, None);
    let mut i = 2;
    while i < args.len() {
        if i + 1 >= args.len() {
            return Frame::error("ERR syntax error").into();
        }
        let (opt, value) = (&args[i], &args[i + 1]);
        if opt.eq_ignore_ascii_case(b"ID") {
            match resp::request::parse_ll(value) {
                Some(v) if v > 0 => id = Some(v as u64),
                _ => return Frame::error("ERR client-id should be greater than 0").into(),
            }
        } else if opt.eq_ignore_ascii_case(b"TYPE") {
            match parse_type(value) {
                Ok(k) => kind = Some(k),
                Err(frame) => return frame.into(),
            }
        } else if opt.eq_ignore_ascii_case(b"ADDR") {
            addr = Some(String::from_utf8_lossy(value).into_owned());
        } else if opt.eq_ignore_ascii_case(b"LADDR") {
            laddr = Some(String::from_utf8_lossy(value).into_owned());
        } else if opt.eq_ignore_ascii_case(b"USER") {
            user = Some(value.clone());
        } else if opt.eq_ignore_ascii_case(b"SKIPME") {
            if value.eq_ignore_ascii_case(b"yes") {
                skipme = true;
            } else if value.eq_ignore_ascii_case(b"no") {
                skipme = false;
            } else {
                return Frame::error("ERR syntax error").into();
            }
        } else {
            return Frame::error("ERR syntax error").into();
        }
        i += 2;
    }
    if let Some(user) = &user {
        if user.as_ref() != b"default" {
            return Frame::error(format!(
                "ERR No such user '{}'",
                String::from_utf8_lossy(user)
            ))
            .into();
        }
    }
    let mut killed = 0;
    for client in session.server.clients.all() {
        let matches = id.is_none_or(|id| client.id == id)
            && kind.is_none_or(|k| k == client_type(&client))
            && addr.as_ref().is_none_or(|a| *a == client.addr.to_string())
            && laddr
                .as_ref()
                .is_none_or(|a| *a == client.laddr.to_string())
            && !(skipme && client.id == session.info.id);
        if matches {
            client.kill();
            killed += 1;
        }
    }
    Frame::Integer(killed).into()
}

fn setinfo(session: &Session, args: &[Bytes]) -> Outcome {
    let attr = String::from_utf8_lossy(&args[2]).to_ascii_lowercase();
    let value = &args[3];
    let target = match attr.as_str() {
        "lib-name" => &session.info.lib_name,
        "lib-ver" => &session.info.lib_ver,
        _ => {
            return Frame::error(format!(
                "ERR Unrecognized option '{}'",
                String::from_utf8_lossy(&args[2])
            ))
            .into()
        }
    };
    if value.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Frame::error(format!(
            "ERR {attr} cannot contain spaces, newlines or special characters."
        ))
        .into();
    }
    *target.lock() = String::from_utf8_lossy(value).into_owned();
    Frame::ok().into()
}
