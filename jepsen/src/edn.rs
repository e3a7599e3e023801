//! Histories in Jepsen's `history.edn` form: one operation map per line,
//! `{:process 0, :type :invoke, :f :write, :value 3}`, so Knossos or Elle can re-check them.

use std::fmt::Write as _;

use clojure_reader::edn::{self, Edn};

use crate::history::{Event, EventType, Value};

/// A line that is not an operation map.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("history line {line}: {reason}")]
pub struct EdnError {
    pub line: usize,
    pub reason: String,
}

/// Reads a history, one EDN map per non-blank line.
pub fn parse_history(text: &str) -> Result<Vec<Event>, EdnError> {
    let mut events = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line_number = number + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fail = |reason: String| EdnError {
            line: line_number,
            reason,
        };
        let form = edn::read_string(line).map_err(|e| fail(format!("not EDN: {e:?}")))?;
        if is_nemesis(&form) {
            continue;
        }
        events.push(event(&form).map_err(fail)?);
    }
    Ok(events)
}

/// Jepsen records its nemesis's actions in the history as process `:nemesis`.
fn is_nemesis(form: &Edn<'_>) -> bool {
    matches!(form, Edn::Map(map) if map.get(&Edn::Key("process")) == Some(&Edn::Key("nemesis")))
}

fn event(form: &Edn<'_>) -> Result<Event, String> {
    let Edn::Map(map) = form else {
        return Err("not a map".into());
    };
    let field = |name: &'static str| map.get(&Edn::Key(name));
    let keyword = |name: &'static str| match field(name) {
        Some(Edn::Key(k)) => Ok(k.to_string()),
        Some(other) => Err(format!(":{name} is {other}, not a keyword")),
        None => Err(format!("no :{name}")),
    };
    let process = match field("process") {
        Some(Edn::Int(p)) if *p >= 0 => *p as u64,
        Some(other) => return Err(format!(":process is {other}, not a process number")),
        None => return Err("no :process".into()),
    };
    let kind = keyword("type")?;
    let kind = EventType::from_keyword(&kind).ok_or_else(|| format!("unknown :type :{kind}"))?;
    let f = keyword("f")?;
    let key = match field("key") {
        None | Some(Edn::Nil) => None,
        Some(Edn::Str(s)) => Some(unescape(s)),
        Some(Edn::Int(i)) => Some(i.to_string()),
        Some(Edn::Key(k)) => Some(k.to_string()),
        Some(other) => return Err(format!(":key is {other}, not a string, number or keyword")),
    };
    let value = match field("value") {
        None => Value::Nil,
        Some(v) => value(v)?,
    };
    let time = match field("time") {
        Some(Edn::Int(t)) if *t >= 0 => Some(*t as u64),
        _ => None,
    };
    let error = field("error").map(|e| match e {
        Edn::Key(k) => k.to_string(),
        Edn::Str(s) => unescape(s),
        other => other.to_string(),
    });
    Ok(Event {
        process,
        kind,
        f,
        key,
        value,
        time,
        error,
    })
}

/// Converts an EDN value to a history value.
pub fn value(form: &Edn<'_>) -> Result<Value, String> {
    Ok(match form {
        Edn::Nil => Value::Nil,
        Edn::Int(i) => Value::Int(*i),
        Edn::Str(s) => Value::Str(unescape(s)),
        Edn::Key(k) => Value::Keyword(k.to_string()),
        Edn::Vector(items) | Edn::List(items) => {
            Value::List(items.iter().map(value).collect::<Result<_, _>>()?)
        }
        other => return Err(format!("unsupported value {other}")),
    })
}

/// One event as a line of `history.edn`.
pub fn event_line(event: &Event, index: usize) -> String {
    let mut line = format!(
        "{{:index {index}, :process {}, :type :{}, :f :{}",
        event.process,
        event.kind.keyword(),
        event.f
    );
    if let Some(key) = &event.key {
        let _ = write!(line, ", :key {}", quote(key));
    }
    let _ = write!(line, ", :value {}", edn_value(&event.value));
    if let Some(time) = event.time {
        let _ = write!(line, ", :time {time}");
    }
    if let Some(error) = &event.error {
        let _ = write!(line, ", :error {}", quote(error));
    }
    line.push('}');
    line
}

fn edn_value(value: &Value) -> String {
    match value {
        Value::Str(s) => quote(s),
        Value::List(items) => format!(
            "[{}]",
            items.iter().map(edn_value).collect::<Vec<_>>().join(" ")
        ),
        other => other.to_string(),
    }
}

/// A string's text: the reader hands strings over as written, escapes included.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// An EDN string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jepsen_operation_maps() {
        let text = r#"{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}
{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}

{:process 1, :type :info, :f :cas, :value [1 2], :error :timed-out, :time 17}"#;
        let events = parse_history(text).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].kind, EventType::Invoke);
        assert_eq!(events[0].f, "append");
        assert_eq!(events[0].key.as_deref(), Some("0"));
        assert_eq!(events[0].value, Value::Str("x 0 0 y".into()));
        assert_eq!(
            events[2].value,
            Value::List(vec![Value::Int(1), Value::Int(2)])
        );
        assert_eq!(events[2].error.as_deref(), Some("timed-out"));
        assert_eq!(events[2].time, Some(17));
    }

    #[test]
    fn written_lines_read_back_the_same() {
        let event = Event {
            process: 4,
            kind: EventType::Fail,
            f: "cas".into(),
            key: Some("k \"1\"".into()),
            value: Value::List(vec![Value::Int(1), Value::Str("two\n".into()), Value::Nil]),
            time: Some(99),
            error: Some("MOVED 12 127.0.0.1:7001".into()),
        };
        let line = event_line(&event, 7);
        assert_eq!(parse_history(&line).unwrap(), vec![event], "{line}");
    }

    #[test]
    fn bad_lines_name_their_line_number() {
        let error = parse_history("{:process 0, :type :invoke, :f :read}\n[1 2]").unwrap_err();
        assert_eq!(error.line, 2);
        let error = parse_history("{:process 0, :type :begin, :f :read}").unwrap_err();
        assert!(error.reason.contains("begin"), "{error}");
    }
}
