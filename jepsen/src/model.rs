//! Sequential specifications for the linearizability checker: what a single register or key
//! does to each operation, one at a time.

use std::fmt::Debug;
use std::hash::Hash;

use crate::history::{Operation, Outcome, Value};

/// A sequential object the checker searches for a legal order of operations on.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    /// An operation, prepared once for the search.
    type Step: Debug;

    fn init(&self) -> Self::State;

    /// The step an operation takes, or None when it constrains nothing (a read whose result is
    /// unknown, a write that certainly did not happen).
    fn prepare(&self, operation: &Operation) -> Result<Option<Self::Step>, String>;

    /// The state after `step`, or None when `step` cannot happen in `state`.
    fn apply(&self, state: &Self::State, step: &Self::Step) -> Option<Self::State>;

    /// Every state the object may be in once some of `operations` took effect (a superset
    /// will do), for checking part of a history on its own; None when they cannot be listed.
    fn states_after(&self, operations: &[&Operation]) -> Option<Vec<Self::State>> {
        let _ = operations;
        None
    }
}

/// A register with read, write and compare-and-set (`:cas [expected new]`), initially nil.
#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

#[derive(Debug)]
pub enum RegisterStep {
    Read(Value),
    Write(Value),
    /// A compare-and-set that swapped.
    Swapped {
        from: Value,
        to: Value,
    },
    /// One that completed and found another value, so it changed nothing.
    Declined {
        expected: Value,
    },
    /// One whose outcome is unknown: it swaps if it finds `from`, else changes nothing.
    MaybeSwapped {
        from: Value,
        to: Value,
    },
}

impl Model for Register {
    type State = Value;
    type Step = RegisterStep;

    fn init(&self) -> Value {
        Value::Nil
    }

    fn prepare(&self, operation: &Operation) -> Result<Option<RegisterStep>, String> {
        let outcome = &operation.outcome;
        Ok(match (operation.f.as_str(), outcome) {
            ("read", Outcome::Ok(value)) => Some(RegisterStep::Read(value.clone())),
            ("read", _) => None,
            ("write", Outcome::Ok(_) | Outcome::Unknown) => {
                Some(RegisterStep::Write(operation.input.clone()))
            }
            ("write", Outcome::Fail { .. }) => None,
            ("cas", outcome) => {
                let Value::List(pair) = &operation.input else {
                    return Err(format!("cas of {}, not [expected new]", operation.input));
                };
                let [from, to] = &pair[..] else {
                    return Err(format!("cas of {}, not [expected new]", operation.input));
                };
                let (from, to) = (from.clone(), to.clone());
                match outcome {
                    Outcome::Ok(_) => Some(RegisterStep::Swapped { from, to }),
                    Outcome::Fail { error: None } => {
                        Some(RegisterStep::Declined { expected: from })
                    }
                    Outcome::Fail { error: Some(_) } => None,
                    Outcome::Unknown => Some(RegisterStep::MaybeSwapped { from, to }),
                }
            }
            (f, _) => return Err(format!("a register has no operation {f}")),
        })
    }

    /// The initial nil and every value written or swapped in.
    fn states_after(&self, operations: &[&Operation]) -> Option<Vec<Value>> {
        let mut states = vec![Value::Nil];
        for operation in operations {
            match self.prepare(operation).ok()? {
                Some(RegisterStep::Write(value)) => states.push(value),
                Some(RegisterStep::Swapped { to, .. } | RegisterStep::MaybeSwapped { to, .. }) => {
                    states.push(to)
                }
                _ => {}
            }
        }
        let mut seen = std::collections::HashSet::new();
        states.retain(|state| seen.insert(state.clone()));
        Some(states)
    }

    fn apply(&self, state: &Value, step: &RegisterStep) -> Option<Value> {
        match step {
            RegisterStep::Read(value) => (value == state).then(|| state.clone()),
            RegisterStep::Write(value) => Some(value.clone()),
            RegisterStep::Swapped { from, to } => (from == state).then(|| to.clone()),
            RegisterStep::Declined { expected } => (expected != state).then(|| state.clone()),
            RegisterStep::MaybeSwapped { from, to } => Some(if from == state {
                to.clone()
            } else {
                state.clone()
            }),
        }
    }
}

/// One key of a string store with get, put and append, initially the empty string.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppendString;

#[derive(Debug)]
pub enum AppendStringStep {
    Get(String),
    Put(String),
    Append(String),
}

fn text(value: &Value) -> Result<String, String> {
    match value {
        Value::Nil => Ok(String::new()),
        Value::Str(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(format!("{other} is not a string")),
    }
}

impl Model for AppendString {
    type State = String;
    type Step = AppendStringStep;

    fn init(&self) -> String {
        String::new()
    }

    fn prepare(&self, operation: &Operation) -> Result<Option<AppendStringStep>, String> {
        let outcome = &operation.outcome;
        Ok(match (operation.f.as_str(), outcome) {
            ("get", Outcome::Ok(value)) => Some(AppendStringStep::Get(text(value)?)),
            ("get", _) => None,
            (_, Outcome::Fail { .. }) => None,
            ("put", _) => Some(AppendStringStep::Put(text(&operation.input)?)),
            ("append", _) => Some(AppendStringStep::Append(text(&operation.input)?)),
            (f, _) => return Err(format!("a string key has no operation {f}")),
        })
    }

    fn apply(&self, state: &String, step: &AppendStringStep) -> Option<String> {
        match step {
            AppendStringStep::Get(value) => (value == state).then(|| state.clone()),
            AppendStringStep::Put(value) => Some(value.clone()),
            AppendStringStep::Append(suffix) => Some(format!("{state}{suffix}")),
        }
    }
}
