//! The counter checker: `add` of a delta (INCRBY) and `read` (GET), per key, initially 0.
//!
//! A read must fall within bounds: at least what every add acknowledged before the read
//! began must have done, at most what every add invoked before the read ended might have
//! done. Adds whose outcome is unknown may count or not; failed ones never count.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::history::{Operation, Outcome, Value};
use crate::verdict::Verdict;

/// A read outside its bounds.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRead {
    pub key: Option<String>,
    pub read: String,
    pub value: i64,
    pub lower: i64,
    pub upper: i64,
}

/// Checks a counter history.
pub fn check(operations: &[Operation]) -> Verdict {
    match bad_reads(operations) {
        Err(e) => Verdict::Unknown(format!("cannot check: {e}")),
        Ok(bad) if bad.is_empty() => Verdict::Valid,
        Ok(bad) => {
            let mut why = format!("{} reads out of bounds:", bad.len());
            for read in bad.iter().take(10) {
                let _ = write!(
                    why,
                    "\n  {} read {}, not within [{}, {}]",
                    read.read, read.value, read.lower, read.upper
                );
            }
            Verdict::Invalid(why)
        }
    }
}

/// Every read outside its bounds.
pub fn bad_reads(operations: &[Operation]) -> Result<Vec<BadRead>, String> {
    let mut by_key: BTreeMap<Option<&str>, Vec<&Operation>> = BTreeMap::new();
    for operation in operations {
        by_key
            .entry(operation.key.as_deref())
            .or_default()
            .push(operation);
    }
    let mut bad = Vec::new();
    for (key, operations) in by_key {
        // (position the add counts from for the lower bound, for the upper bound, delta)
        let mut adds: Vec<(Option<usize>, usize, i64)> = Vec::new();
        for operation in &operations {
            if operation.f != "add" {
                continue;
            }
            let Value::Int(delta) = operation.input else {
                return Err(format!("{operation}: the delta is not an integer"));
            };
            match operation.outcome {
                Outcome::Ok(_) => adds.push((operation.completed, operation.invoked, delta)),
                Outcome::Unknown => adds.push((None, operation.invoked, delta)),
                Outcome::Fail { .. } => {}
            }
        }
        for read in &operations {
            match (read.f.as_str(), &read.outcome) {
                ("read", Outcome::Ok(value)) => {
                    let value = match value {
                        Value::Int(v) => *v,
                        Value::Nil => 0,
                        other => return Err(format!("{read}: read {other}, not an integer")),
                    };
                    let end = read.completed.unwrap_or(usize::MAX);
                    let (mut lower, mut upper) = (0i64, 0i64);
                    for &(acknowledged, invoked, delta) in &adds {
                        let certain = acknowledged.is_some_and(|c| c < read.invoked);
                        let possible = invoked < end;
                        // A certain add counts in both bounds; a possible one only widens them.
                        if certain {
                            lower += delta;
                            upper += delta;
                        } else if possible {
                            if delta > 0 {
                                upper += delta;
                            } else {
                                lower += delta;
                            }
                        }
                    }
                    if value < lower || value > upper {
                        bad.push(BadRead {
                            key: key.map(str::to_string),
                            read: read.to_string(),
                            value,
                            lower,
                            upper,
                        });
                    }
                }
                ("read", _) | ("add", _) => {}
                (f, _) => return Err(format!("a counter has no operation {f}")),
            }
        }
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::test_history as history;
    use crate::history::EventType;

    use EventType::{Fail, Info, Invoke, Ok as Done};
    use Value::{Int, Nil};

    #[test]
    fn reads_within_bounds_are_valid() {
        let ops = history(&[
            (0, Invoke, "add", Int(5)),
            (0, Done, "add", Int(5)),
            (1, Invoke, "add", Int(3)),
            (2, Invoke, "read", Nil),
            (2, Done, "read", Int(8)),
            (1, Info, "add", Nil),
            (0, Invoke, "add", Int(100)),
            (0, Fail, "add", Nil),
            (2, Invoke, "read", Nil),
            (2, Done, "read", Int(5)),
        ]);
        assert_eq!(check(&ops), Verdict::Valid);
    }

    #[test]
    fn a_read_missing_an_acknowledged_add_or_counting_a_failed_one_is_caught() {
        let ops = history(&[
            (0, Invoke, "add", Int(5)),
            (0, Done, "add", Int(5)),
            (0, Invoke, "add", Int(100)),
            (0, Fail, "add", Nil),
            (2, Invoke, "read", Nil),
            (2, Done, "read", Int(0)),
            (2, Invoke, "read", Nil),
            (2, Done, "read", Int(105)),
        ]);
        let bad = bad_reads(&ops).unwrap();
        assert_eq!(
            bad.iter()
                .map(|b| (b.value, b.lower, b.upper))
                .collect::<Vec<_>>(),
            [(0, 5, 5), (105, 5, 5)]
        );
        assert!(matches!(check(&ops), Verdict::Invalid(_)));
    }
}
