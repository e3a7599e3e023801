//! The register workload: GET, SET and compare-and-set (WATCH, GET, MULTI/SET/EXEC) on a few
//! keys spread over slot groups, with unique values.

use std::net::SocketAddrV4;

use rand::rngs::SmallRng;
use rand::Rng;

use crate::client::{register_value, Client, Reply};
use crate::history::Value;
use crate::workload::Completion;

/// One operation to perform.
#[derive(Clone, Debug)]
pub enum RegisterOp {
    Read,
    Write(i64),
    Cas(i64, i64),
}

impl RegisterOp {
    pub fn f(&self) -> &'static str {
        match self {
            RegisterOp::Read => "read",
            RegisterOp::Write(_) => "write",
            RegisterOp::Cas(..) => "cas",
        }
    }

    /// The invocation's value.
    pub fn input(&self) -> Value {
        match self {
            RegisterOp::Read => Value::Nil,
            RegisterOp::Write(v) => Value::Int(*v),
            RegisterOp::Cas(from, to) => Value::List(vec![Value::Int(*from), Value::Int(*to)]),
        }
    }
}

/// The Redis key of register `key`.
pub fn redis_key(key: usize) -> String {
    format!("jepsen-r{key}")
}

/// Picks the next operation: reads half the time, writes of fresh values, and
/// compare-and-sets from a recently seen (or a small) value.
pub fn next_op(
    rng: &mut SmallRng,
    fresh: &mut impl FnMut() -> i64,
    last_seen: Option<i64>,
) -> RegisterOp {
    match rng.random_range(0..10) {
        0..5 => RegisterOp::Read,
        5..8 => RegisterOp::Write(fresh()),
        _ => RegisterOp::Cas(last_seen.unwrap_or(0), fresh()),
    }
}

/// Performs `op` on register `key`.
pub fn perform(client: &mut Client, key: usize, op: &RegisterOp) -> Completion {
    let key = redis_key(key);
    let mut at = client.home();
    match op {
        RegisterOp::Read => match client.send(&mut at, true, redis::cmd("GET").arg(&key)) {
            Reply::Ok(value) => match register_value(&value) {
                Ok(value) => Completion::Ok(value),
                Err(e) => Completion::Info(e),
            },
            Reply::Fail(e) => Completion::Fail(Some(e)),
            Reply::Unknown(e) => Completion::Info(e),
        },
        RegisterOp::Write(v) => {
            match client.send(&mut at, true, redis::cmd("SET").arg(&key).arg(*v)) {
                Reply::Ok(_) => Completion::Ok(Value::Int(*v)),
                Reply::Fail(e) => Completion::Fail(Some(e)),
                Reply::Unknown(e) => Completion::Info(e),
            }
        }
        RegisterOp::Cas(from, to) => cas(client, at, &key, *from, *to),
    }
}

fn cas(client: &mut Client, mut at: SocketAddrV4, key: &str, from: i64, to: i64) -> Completion {
    // Until EXEC is sent nothing can be written: any failure before it is a certain one.
    match client.send(&mut at, true, redis::cmd("WATCH").arg(key)) {
        Reply::Ok(_) => {}
        Reply::Fail(e) | Reply::Unknown(e) => return Completion::Fail(Some(e)),
    }
    // The rest on the node that took the WATCH: no following. A watch left behind by a
    // failed compare would join the next transaction's (on another key: CROSSSLOT).
    let unwatch = |client: &mut Client, mut at| {
        let _ = client.send(&mut at, false, &redis::cmd("UNWATCH"));
    };
    let current = match client.send(&mut at, false, redis::cmd("GET").arg(key)) {
        Reply::Ok(value) => register_value(&value),
        Reply::Fail(e) | Reply::Unknown(e) => {
            unwatch(client, at);
            return Completion::Fail(Some(e));
        }
    };
    match current {
        Ok(Value::Int(v)) if v == from => {}
        // The linearizable GET saw another value: the compare failed, nothing changed.
        Ok(_) => {
            unwatch(client, at);
            return Completion::Fail(None);
        }
        Err(e) => {
            unwatch(client, at);
            return Completion::Fail(Some(e));
        }
    }
    // MULTI, SET, EXEC as plain commands, so that an error reply to EXEC (MOVED, EXECABORT:
    // certainly not applied) reaches the classification instead of a parse error.
    let mut transaction = redis::pipe();
    transaction
        .cmd("MULTI")
        .cmd("SET")
        .arg(key)
        .arg(to)
        .cmd("EXEC");
    match client.send_pipeline(at, &transaction) {
        Reply::Ok(redis::Value::Array(replies)) => match replies.last() {
            // EXEC answered nil: the key changed after WATCH, and the transaction did nothing.
            Some(redis::Value::Nil) => Completion::Fail(Some("watched key changed".into())),
            Some(redis::Value::Array(_)) => {
                Completion::Ok(Value::List(vec![Value::Int(from), Value::Int(to)]))
            }
            other => Completion::Info(format!("EXEC answered {other:?}")),
        },
        Reply::Ok(other) => Completion::Info(format!("the transaction answered {other:?}")),
        Reply::Fail(e) => Completion::Fail(Some(e)),
        Reply::Unknown(e) => Completion::Info(e),
    }
}
