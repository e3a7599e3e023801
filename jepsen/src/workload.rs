//! What `jepsen test` clients do, per workload, and how each workload's history is checked.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;

use crate::client::{Client, Reply};
use crate::history::{Operation, Value};
use crate::model::Register;
use crate::register_workload::{self, RegisterOp};
use crate::verdict::Verdict;
use crate::{counter, linearizable, list_append, set};

/// A workload `jepsen test` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// GET / SET / compare-and-set, checked for linearizability.
    Register,
    /// SADD of unique elements and SMEMBERS: lost, unexpected, never-read elements.
    Set,
    /// INCRBY and GET: every read within its bounds.
    Counter,
    /// MULTI, RPUSH and LRANGE over a few keys sharing a hash tag, EXEC: Elle's list-append.
    ListAppend,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Workload::Register => "register",
            Workload::Set => "set",
            Workload::Counter => "counter",
            Workload::ListAppend => "list-append",
        })
    }
}

/// One micro-operation of a list-append transaction: append `v` to list `k`, or read list `k`.
#[derive(Clone, Copy, Debug)]
pub enum ListMicro {
    Append(usize, i64),
    Read(usize),
}

/// Keys of the list-append workload come in groups of this many sharing a hash tag, so that a
/// transaction over them stays in one slot (and one raft group).
const LISTS_PER_TAG: usize = 4;

/// One operation of any workload.
#[derive(Clone, Debug)]
pub enum Op {
    Register(RegisterOp),
    /// SADD of a unique element.
    AddElement(i64),
    /// SMEMBERS.
    ReadSet,
    /// INCRBY.
    Increment(i64),
    /// GET of a counter.
    ReadCounter,
    /// A list-append transaction.
    Txn(Vec<ListMicro>),
}

/// How an operation completed, as a history records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Completion {
    Ok(Value),
    /// Certainly no effect; `None` for a compare-and-set that found another value.
    Fail(Option<String>),
    Info(String),
}

impl Op {
    /// The history's `:f`.
    pub fn f(&self) -> &'static str {
        match self {
            Op::Register(op) => op.f(),
            Op::AddElement(_) | Op::Increment(_) => "add",
            Op::ReadSet | Op::ReadCounter => "read",
            Op::Txn(_) => "txn",
        }
    }

    /// The invocation's value.
    pub fn input(&self) -> Value {
        match self {
            Op::Register(op) => op.input(),
            Op::AddElement(v) | Op::Increment(v) => Value::Int(*v),
            Op::ReadSet | Op::ReadCounter => Value::Nil,
            Op::Txn(micros) => Value::List(
                micros
                    .iter()
                    .map(|m| match m {
                        ListMicro::Append(k, v) => Value::List(vec![
                            Value::Keyword("append".into()),
                            Value::Int(*k as i64),
                            Value::Int(*v),
                        ]),
                        ListMicro::Read(k) => Value::List(vec![
                            Value::Keyword("r".into()),
                            Value::Int(*k as i64),
                            Value::Nil,
                        ]),
                    })
                    .collect(),
            ),
        }
    }
}

impl Workload {
    /// Operations on a key (for list-append, on the lists of one hash tag) before it retires
    /// for a fresh one.
    pub fn ops_per_key(self) -> u64 {
        match self {
            Workload::Register | Workload::Set | Workload::Counter => 400,
            Workload::ListAppend => 200,
        }
    }

    /// How many of the run's keys retire together: the lists one transaction may span.
    pub fn keys_retiring_together(self) -> usize {
        match self {
            Workload::ListAppend => LISTS_PER_TAG,
            _ => 1,
        }
    }

    /// The operation kinds that must each succeed at least once in a passing run.
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Workload::Register => &["read", "write", "cas"],
            Workload::Set | Workload::Counter => &["add", "read"],
            Workload::ListAppend => &["txn"],
        }
    }

    /// The next operation of a client; `fresh` gives unique values.
    pub fn next_op(
        self,
        rng: &mut SmallRng,
        fresh: &mut impl FnMut() -> i64,
        key: usize,
        last_seen: Option<i64>,
    ) -> Op {
        match self {
            Workload::Register => Op::Register(register_workload::next_op(rng, fresh, last_seen)),
            Workload::Set => match rng.random_range(0..10) {
                0..7 => Op::AddElement(fresh()),
                _ => Op::ReadSet,
            },
            Workload::Counter => match rng.random_range(0..10) {
                0..6 => Op::Increment(rng.random_range(1..=5)),
                _ => Op::ReadCounter,
            },
            Workload::ListAppend => {
                let first = key / LISTS_PER_TAG * LISTS_PER_TAG;
                let tagged = first..first + LISTS_PER_TAG;
                let micros = (0..rng.random_range(1..=4))
                    .map(|_| {
                        let k = rng.random_range(tagged.clone());
                        if rng.random_bool(0.5) {
                            ListMicro::Append(k, fresh())
                        } else {
                            ListMicro::Read(k)
                        }
                    })
                    .collect();
                Op::Txn(micros)
            }
        }
    }

    /// A write and a read, which every key must serve once the faults are healed.
    pub fn final_ops(self, key: usize, fresh: i64) -> [Op; 2] {
        match self {
            Workload::Register => [
                Op::Register(RegisterOp::Write(fresh)),
                Op::Register(RegisterOp::Read),
            ],
            Workload::Set => [Op::AddElement(fresh), Op::ReadSet],
            Workload::Counter => [Op::Increment(1), Op::ReadCounter],
            Workload::ListAppend => [
                Op::Txn(vec![ListMicro::Append(key, fresh)]),
                Op::Txn(vec![ListMicro::Read(key)]),
            ],
        }
    }

    /// Performs `op` on key number `key`.
    pub fn perform(self, client: &mut Client, key: usize, op: &Op) -> Completion {
        let mut at = client.home();
        let simple = |reply: Reply, ok: &dyn Fn(redis::Value) -> Result<Value, String>| match reply
        {
            Reply::Ok(value) => match ok(value) {
                Ok(value) => Completion::Ok(value),
                Err(e) => Completion::Info(e),
            },
            Reply::Fail(e) => Completion::Fail(Some(e)),
            Reply::Unknown(e) => Completion::Info(e),
        };
        match op {
            Op::Register(op) => register_workload::perform(client, key, op),
            Op::AddElement(v) => {
                let reply =
                    client.send(&mut at, true, redis::cmd("SADD").arg(set_key(key)).arg(*v));
                simple(reply, &|_| Ok(Value::Int(*v)))
            }
            Op::ReadSet => {
                let reply = client.send(&mut at, true, redis::cmd("SMEMBERS").arg(set_key(key)));
                simple(reply, &members)
            }
            Op::Increment(delta) => {
                let reply = client.send(
                    &mut at,
                    true,
                    redis::cmd("INCRBY").arg(counter_key(key)).arg(*delta),
                );
                simple(reply, &|_| Ok(Value::Int(*delta)))
            }
            Op::ReadCounter => {
                let reply = client.send(&mut at, true, redis::cmd("GET").arg(counter_key(key)));
                simple(reply, &|value| crate::client::register_value(&value))
            }
            Op::Txn(micros) => transaction(client, at, micros),
        }
    }

    /// Checks a history of this workload.
    pub fn check(self, operations: &[Operation], time_limit: Duration) -> Verdict {
        match self {
            Workload::Register => linearizable::check(&Register, operations, time_limit),
            Workload::Set => set::check(operations),
            Workload::Counter => counter::check(operations),
            Workload::ListAppend => list_append::check(operations),
        }
    }
}

fn set_key(key: usize) -> String {
    format!("jepsen-s{key}")
}

fn counter_key(key: usize) -> String {
    format!("jepsen-c{key}")
}

/// SMEMBERS's reply as a list of integers.
fn members(value: redis::Value) -> Result<Value, String> {
    let items = match value {
        redis::Value::Array(items) | redis::Value::Set(items) => items,
        other => return Err(format!("SMEMBERS answered {other:?}")),
    };
    let mut elements: Vec<Value> = items
        .iter()
        .map(crate::client::register_value)
        .collect::<Result<_, _>>()?;
    elements.sort();
    Ok(Value::List(elements))
}

fn list_key(key: usize) -> String {
    format!("jepsen-l{{{}}}{key}", key / LISTS_PER_TAG)
}

/// MULTI, RPUSH / LRANGE for each micro-operation, EXEC, on the node that answers the first
/// key (redirected there by a MOVED to MULTI's first command, which applied nothing).
fn transaction(
    client: &mut Client,
    mut at: std::net::SocketAddrV4,
    micros: &[ListMicro],
) -> Completion {
    let Some(first) = micros.first() else {
        return Completion::Ok(Value::List(Vec::new()));
    };
    let first_key = match first {
        ListMicro::Append(k, _) | ListMicro::Read(k) => *k,
    };
    // Find the key's leader with a read that has no effect.
    if let Reply::Fail(e) =
        client.send(&mut at, true, redis::cmd("EXISTS").arg(list_key(first_key)))
    {
        return Completion::Fail(Some(e));
    }
    let mut pipeline = redis::pipe();
    pipeline.cmd("MULTI");
    for micro in micros {
        match micro {
            ListMicro::Append(k, v) => pipeline.cmd("RPUSH").arg(list_key(*k)).arg(*v),
            ListMicro::Read(k) => pipeline.cmd("LRANGE").arg(list_key(*k)).arg(0).arg(-1),
        };
    }
    pipeline.cmd("EXEC");
    let replies = match client.send_pipeline(at, &pipeline) {
        Reply::Ok(redis::Value::Array(replies)) => replies,
        Reply::Ok(other) => return Completion::Info(format!("the transaction answered {other:?}")),
        Reply::Fail(e) => return Completion::Fail(Some(e)),
        Reply::Unknown(e) => return Completion::Info(e),
    };
    let results = match replies.last() {
        Some(redis::Value::Array(results)) if results.len() == micros.len() => results,
        other => return Completion::Info(format!("EXEC answered {other:?}")),
    };
    let mut completed = Vec::with_capacity(micros.len());
    for (micro, result) in micros.iter().zip(results) {
        completed.push(match micro {
            ListMicro::Append(k, v) => Value::List(vec![
                Value::Keyword("append".into()),
                Value::Int(*k as i64),
                Value::Int(*v),
            ]),
            ListMicro::Read(k) => {
                let list = match members_in_order(result) {
                    Ok(list) => list,
                    Err(e) => return Completion::Info(e),
                };
                Value::List(vec![
                    Value::Keyword("r".into()),
                    Value::Int(*k as i64),
                    list,
                ])
            }
        });
    }
    Completion::Ok(Value::List(completed))
}

/// LRANGE's reply as a list of integers, in order.
fn members_in_order(value: &redis::Value) -> Result<Value, String> {
    match value {
        redis::Value::Array(items) => Ok(Value::List(
            items
                .iter()
                .map(crate::client::register_value)
                .collect::<Result<_, _>>()?,
        )),
        other => Err(format!("LRANGE answered {other:?}")),
    }
}
