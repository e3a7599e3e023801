//! What `jepsen test` clients do, per workload, and how each workload's history is checked.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::Rng;

use crate::client::{Client, Reply};
use crate::history::{Operation, Value};
use crate::model::Register;
use crate::register_workload::{self, RegisterOp};
use crate::verdict::Verdict;
use crate::{counter, linearizable, set};

/// A workload `jepsen test` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// GET / SET / compare-and-set, checked for linearizability.
    Register,
    /// SADD of unique elements and SMEMBERS: lost, unexpected, never-read elements.
    Set,
    /// INCRBY and GET: every read within its bounds.
    Counter,
}

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
        }
    }

    /// The invocation's value.
    pub fn input(&self) -> Value {
        match self {
            Op::Register(op) => op.input(),
            Op::AddElement(v) | Op::Increment(v) => Value::Int(*v),
            Op::ReadSet | Op::ReadCounter => Value::Nil,
        }
    }
}

impl Workload {
    /// The operation kinds that must each succeed at least once in a passing run.
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Workload::Register => &["read", "write", "cas"],
            Workload::Set | Workload::Counter => &["add", "read"],
        }
    }

    /// The next operation of a client; `fresh` gives unique values.
    pub fn next_op(
        self,
        rng: &mut SmallRng,
        fresh: &mut impl FnMut() -> i64,
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
        }
    }

    /// A write and a read, which every key must serve once the faults are healed.
    pub fn final_ops(self, fresh: i64) -> [Op; 2] {
        match self {
            Workload::Register => [
                Op::Register(RegisterOp::Write(fresh)),
                Op::Register(RegisterOp::Read),
            ],
            Workload::Set => [Op::AddElement(fresh), Op::ReadSet],
            Workload::Counter => [Op::Increment(1), Op::ReadCounter],
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
        }
    }

    /// Checks a history of this workload.
    pub fn check(self, operations: &[Operation], time_limit: Duration) -> Verdict {
        match self {
            Workload::Register => linearizable::check(&Register, operations, time_limit),
            Workload::Set => set::check(operations),
            Workload::Counter => counter::check(operations),
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
