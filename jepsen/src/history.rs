//! A history: every operation's invocation and completion, in the order they happened, as
//! Jepsen records them.

use std::collections::HashMap;
use std::fmt;

/// Whether an event starts an operation or ends it, and how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Invoke,
    /// Completed, with the result in the value.
    Ok,
    /// Certainly had no effect.
    Fail,
    /// Unknown: it may have taken effect, at any time after its invocation, or never.
    Info,
}

impl EventType {
    pub fn keyword(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }

    pub fn from_keyword(keyword: &str) -> Option<EventType> {
        match keyword {
            "invoke" => Some(EventType::Invoke),
            "ok" => Some(EventType::Ok),
            "fail" => Some(EventType::Fail),
            "info" => Some(EventType::Info),
            _ => None,
        }
    }
}

/// An operation's argument or result, in EDN's terms.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Nil,
    Int(i64),
    Str(String),
    /// A keyword, without its colon (`:timed-out` is `Keyword("timed-out")`).
    Keyword(String),
    List(Vec<Value>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Keyword(k) => write!(f, ":{k}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub process: u64,
    pub kind: EventType,
    /// The operation's function: `read`, `write`, `cas`, `append`, ...
    pub f: String,
    /// The key, for workloads over many independent keys.
    pub key: Option<String>,
    pub value: Value,
    /// Nanoseconds since the test began, when recorded.
    pub time: Option<u64>,
    /// Why a `fail` or `info` happened, when known.
    pub error: Option<String>,
}

/// What became of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Completed with this value.
    Ok(Value),
    /// Completed without effect. A `fail` with no error is a completed operation that
    /// declined (a compare-and-set that found another value), which says something of the
    /// state; one with an error says nothing.
    Fail { error: Option<String> },
    /// Unknown: completed `info`, or never completed.
    Unknown,
}

/// An invocation paired with its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Position in the history of its invocation.
    pub invoked: usize,
    /// Position of its completion; None when its outcome is unknown (it may take effect at any
    /// later time, so it is treated as completing after everything else).
    pub completed: Option<usize>,
    pub process: u64,
    pub f: String,
    pub key: Option<String>,
    /// The invocation's value (the argument).
    pub input: Value,
    pub outcome: Outcome,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} {}", self.process, self.f)?;
        if let Some(key) = &self.key {
            write!(f, " key {key:?}")?;
        }
        write!(f, " {}", self.input)?;
        match &self.outcome {
            Outcome::Ok(value) => write!(f, " -> ok {value}")?,
            Outcome::Fail { error: None } => write!(f, " -> fail")?,
            Outcome::Fail { error: Some(e) } => write!(f, " -> fail ({e})")?,
            Outcome::Unknown => write!(f, " -> unknown")?,
        }
        write!(f, " (history events {}..", self.invoked + 1)?;
        match self.completed {
            Some(c) => write!(f, "{})", c + 1),
            None => write!(f, ")"),
        }
    }
}

/// A history that does not pair up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HistoryError {
    #[error(
        "line {line}: process {process} invoked an operation while its previous one was still open"
    )]
    Overlap { line: usize, process: u64 },
    #[error("line {line}: process {process} completed an operation it never invoked")]
    Unmatched { line: usize, process: u64 },
    #[error("line {line}: process {process} completed {completed} but had invoked {invoked}")]
    Mismatch {
        line: usize,
        process: u64,
        invoked: String,
        completed: String,
    },
}

/// Pairs every invocation with its completion. A process has at most one operation open; one
/// whose operation ended `info` may invoke again (Jepsen would give it a new process number).
pub fn operations(events: &[Event]) -> Result<Vec<Operation>, HistoryError> {
    let mut open: HashMap<u64, usize> = HashMap::new();
    let mut operations: Vec<Operation> = Vec::new();
    for (position, event) in events.iter().enumerate() {
        let line = position + 1;
        if event.kind == EventType::Invoke {
            if open.contains_key(&event.process) {
                return Err(HistoryError::Overlap {
                    line,
                    process: event.process,
                });
            }
            open.insert(event.process, operations.len());
            operations.push(Operation {
                invoked: position,
                completed: None,
                process: event.process,
                f: event.f.clone(),
                key: event.key.clone(),
                input: event.value.clone(),
                outcome: Outcome::Unknown,
            });
            continue;
        }
        let Some(index) = open.remove(&event.process) else {
            return Err(HistoryError::Unmatched {
                line,
                process: event.process,
            });
        };
        let operation = &mut operations[index];
        if operation.f != event.f {
            return Err(HistoryError::Mismatch {
                line,
                process: event.process,
                invoked: operation.f.clone(),
                completed: event.f.clone(),
            });
        }
        match event.kind {
            EventType::Ok => {
                operation.completed = Some(position);
                operation.outcome = Outcome::Ok(event.value.clone());
            }
            EventType::Fail => {
                operation.completed = Some(position);
                operation.outcome = Outcome::Fail {
                    error: event.error.clone(),
                };
            }
            // Unknown, like an operation that never completes.
            EventType::Info | EventType::Invoke => {}
        }
    }
    Ok(operations)
}

/// Operations from `(process, type, f, value)` lines, for checkers' unit tests.
#[cfg(test)]
pub(crate) fn test_history(lines: &[(u64, EventType, &str, Value)]) -> Vec<Operation> {
    let events: Vec<Event> = lines
        .iter()
        .map(|(process, kind, f, value)| Event {
            process: *process,
            kind: *kind,
            f: f.to_string(),
            key: None,
            value: value.clone(),
            time: None,
            error: None,
        })
        .collect();
    operations(&events).expect("a well-formed test history")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(process: u64, kind: EventType, f: &str, value: Value) -> Event {
        Event {
            process,
            kind,
            f: f.into(),
            key: None,
            value,
            time: None,
            error: None,
        }
    }

    #[test]
    fn invocations_pair_with_completions_per_process() {
        let events = [
            event(0, EventType::Invoke, "write", Value::Int(1)),
            event(1, EventType::Invoke, "read", Value::Nil),
            event(0, EventType::Ok, "write", Value::Int(1)),
            event(
                1,
                EventType::Info,
                "read",
                Value::Keyword("timed-out".into()),
            ),
            event(1, EventType::Invoke, "read", Value::Nil),
        ];
        let ops = operations(&events).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].completed, Some(2));
        assert_eq!(ops[0].outcome, Outcome::Ok(Value::Int(1)));
        assert_eq!(ops[1].outcome, Outcome::Unknown);
        assert_eq!(ops[1].completed, None);
        assert_eq!(ops[2].outcome, Outcome::Unknown, "never completed");
    }

    #[test]
    fn malformed_histories_are_refused() {
        let overlap = [
            event(0, EventType::Invoke, "write", Value::Int(1)),
            event(0, EventType::Invoke, "write", Value::Int(2)),
        ];
        assert!(matches!(
            operations(&overlap),
            Err(HistoryError::Overlap { line: 2, .. })
        ));
        let unmatched = [event(3, EventType::Ok, "read", Value::Nil)];
        assert!(matches!(
            operations(&unmatched),
            Err(HistoryError::Unmatched { line: 1, .. })
        ));
    }
}
