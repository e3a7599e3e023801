//! Jepsen's text logs of a single register, as older Jepsen tests printed them:
//!
//! ```text
//! INFO  jepsen.util - 3  :invoke  :read  nil
//! INFO  jepsen.util - 0  :fail  :cas  [4 1]
//! INFO  jepsen.util - 4  :info  :write  :timed-out
//! ```
//!
//! Fields are separated by tabs (or aligned with spaces); lines of any other shape are noise. The value is EDN: `nil`, a number, `[a b]`, a keyword.

use clojure_reader::edn;

use crate::edn::{value, EdnError};
use crate::history::{Event, EventType, Value};

const MARKER: &str = "jepsen.util - ";

/// Whether `text` looks like a Jepsen text log rather than EDN maps.
pub fn is_jepsen_log(text: &str) -> bool {
    text.lines().any(|line| line.contains(MARKER))
}

/// Reads the operations of a Jepsen text log.
pub fn parse_log(text: &str) -> Result<Vec<Event>, EdnError> {
    let mut events = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let Some((_, rest)) = line.split_once(MARKER) else {
            continue;
        };
        let fail = |reason: String| EdnError {
            line: number + 1,
            reason,
        };
        // Fields are tab-separated, or space-aligned in some logs; the value (last) may hold
        // spaces itself (`[1 2]`).
        let rest = rest.trim();
        let mut fields = rest.split_whitespace();
        let (Some(process), Some(kind), Some(f)) = (fields.next(), fields.next(), fields.next())
        else {
            // Not an operation line.
            continue;
        };
        let value_start = f.as_ptr() as usize - rest.as_ptr() as usize + f.len();
        let raw_value = rest[value_start..].trim();
        let Ok(process) = process.parse::<u64>() else {
            // The nemesis logs here too, as `:nemesis`.
            continue;
        };
        let kind = kind
            .strip_prefix(':')
            .and_then(EventType::from_keyword)
            .ok_or_else(|| fail(format!("unknown type {kind}")))?;
        let f = f
            .strip_prefix(':')
            .ok_or_else(|| fail(format!("function {f} is not a keyword")))?;
        let form =
            edn::read_string(raw_value).map_err(|e| fail(format!("value {raw_value}: {e:?}")))?;
        let value = value(&form).map_err(fail)?;
        // An `info` completion's value is its reason (`:timed-out`), not a result.
        let (value, error) = match (kind, value) {
            (EventType::Info | EventType::Fail, Value::Keyword(reason)) => {
                (Value::Nil, Some(reason))
            }
            (_, value) => (value, None),
        };
        events.push(Event {
            process,
            kind,
            f: f.to_string(),
            key: None,
            value,
            time: None,
            error,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_operations_and_skips_noise() {
        let text = "INFO  jepsen.core - Running test\n\
                    INFO  jepsen.util - 3\t:invoke\t:cas\t[4 1]\n\
                    INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n\
                    INFO  jepsen.util - 3   :fail  :cas    [4 1]\n\
                    INFO  jepsen.util - 2\t:info\t:write\t:timed-out\n";
        assert!(is_jepsen_log(text));
        let events = parse_log(text).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(
            events[0].value,
            Value::List(vec![Value::Int(4), Value::Int(1)])
        );
        assert_eq!(events[1].kind, EventType::Fail);
        assert_eq!(events[2].error.as_deref(), Some("timed-out"));
        assert_eq!(events[2].value, Value::Nil);
    }
}
