//! Commands the server runs itself (the engine runs the data commands): connection state,
//! clients, server introspection, configuration, transactions and pub/sub.

use bytes::Bytes;
use resp::command_table::CommandSpec;
use resp::Frame;

use crate::session::{Outcome, Session};

pub mod client;
pub mod cluster;
pub mod command;
pub mod config;
pub mod connection;
pub mod info;
pub mod multi;
pub mod pubsub;
pub mod server;

/// The version AutoCache reports to clients: the Redis release whose behaviour it matches.
pub const REDIS_VERSION: &str = "7.0.15";

/// Runs a server command that passed the arity and permission checks.
pub fn run(session: &mut Session, spec: &CommandSpec, args: &[Bytes]) -> Outcome {
    match spec.name.as_str() {
        "ping" => connection::ping(session, args),
        "echo" => Frame::Bulk(args[1].clone()).into(),
        "hello" => connection::hello(session, args),
        "auth" => connection::auth(session, args),
        "select" => connection::select(args),
        "quit" => Outcome::Close(Some(Frame::ok())),
        "reset" => connection::reset(session),
        name if name.starts_with("client|") => client::run(session, &name[7..], args),
        name if name.starts_with("cluster|") => cluster::run(session, &name[8..], args),
        // Accepted for cluster clients: reads are served by a group's leader only, so there is
        // no replica read mode to switch, and no slot migration to ask about.
        "readonly" | "readwrite" | "asking" => Frame::ok().into(),
        name if name.starts_with("command|") => command::run(&name[8..], args),
        name if name.starts_with("config|") => config::run(session, &name[7..], args),
        name if name.starts_with("slowlog|") => server::slowlog(session, &name[8..], args),
        name if name.starts_with("pubsub|") => pubsub::introspect(session, &name[7..], args),
        "command" => command::all(),
        "info" => info::info(session, args),
        "time" => server::time(),
        "shutdown" => server::shutdown(session, args),
        "multi" => multi::multi(session),
        "exec" => session.exec(),
        "discard" => multi::discard(session),
        "watch" => multi::watch(session, args),
        "unwatch" => {
            session.unwatch_all();
            Frame::ok().into()
        }
        "subscribe" => pubsub::subscribe(session, args, false),
        "psubscribe" => pubsub::subscribe(session, args, true),
        "unsubscribe" => pubsub::unsubscribe(session, args, false),
        "punsubscribe" => pubsub::unsubscribe(session, args, true),
        "publish" => pubsub::publish(session, args),
        other => Frame::error(format!("ERR unknown command '{other}'")).into(),
    }
}

/// The reply of a `HELP` subcommand: a title line and the lines of help, as simple strings.
pub fn help(container: &str, lines: &[&str]) -> Outcome {
    let mut out = vec![Frame::Simple(
        format!("{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:").into(),
    )];
    out.extend(lines.iter().map(|l| Frame::Simple(l.to_string().into())));
    out.push(Frame::simple("HELP"));
    out.push(Frame::simple("    Prints this help."));
    Frame::Array(out).into()
}
