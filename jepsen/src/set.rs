//! The set checker: `add` of unique elements (SADD) and `read` of the whole set (SMEMBERS),
//! per key.
//!
//! Linearizability makes it simple: a read that began after an add completed must contain the
//! element (else it is *lost*), and no read may contain an element nobody tried to add or whose
//! add certainly failed (*unexpected*). Elements acknowledged but seen by no later read are
//! *never read*: not an error, but a run should end with a read that covers them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use crate::history::{Operation, Outcome, Value};
use crate::verdict::Verdict;

/// What the checker found, per key.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetReport {
    /// Acknowledged (or seen) elements missing from a read that began after.
    pub lost: BTreeSet<i64>,
    /// Elements in a read that were never added, or whose add failed.
    pub unexpected: BTreeSet<i64>,
    /// Acknowledged elements no read after the acknowledgement saw.
    pub never_read: BTreeSet<i64>,
    /// Reads checked.
    pub reads: usize,
}

/// When an element could first be required in reads, and whether its add may have happened.
struct Added {
    /// Position of the earliest completion after which every read must contain it: its add's
    /// acknowledgement, or the end of the first read that saw it.
    required_after: Option<usize>,
    /// Its add did not certainly fail.
    possible: bool,
}

/// Checks a set history; every key is checked on its own.
pub fn check(operations: &[Operation]) -> Verdict {
    match reports(operations) {
        Err(e) => Verdict::Unknown(format!("cannot check: {e}")),
        Ok(reports) => {
            let mut why = String::new();
            for (key, report) in &reports {
                let name = key
                    .as_deref()
                    .map_or("the set".to_string(), |k| format!("key {k:?}"));
                if !report.lost.is_empty() {
                    let _ = write!(why, "{name} lost {:?}; ", report.lost);
                }
                if !report.unexpected.is_empty() {
                    let _ = write!(why, "{name} read unexpected {:?}; ", report.unexpected);
                }
            }
            if why.is_empty() {
                Verdict::Valid
            } else {
                Verdict::Invalid(why.trim_end_matches("; ").to_string())
            }
        }
    }
}

/// The findings for each key.
pub fn reports(operations: &[Operation]) -> Result<BTreeMap<Option<String>, SetReport>, String> {
    let mut by_key: BTreeMap<Option<String>, Vec<&Operation>> = BTreeMap::new();
    for operation in operations {
        by_key
            .entry(operation.key.clone())
            .or_default()
            .push(operation);
    }
    by_key
        .into_iter()
        .map(|(key, operations)| Ok((key, report(&operations)?)))
        .collect()
}

fn element(value: &Value) -> Result<i64, String> {
    match value {
        Value::Int(i) => Ok(*i),
        other => Err(format!("element {other} is not an integer")),
    }
}

fn report(operations: &[&Operation]) -> Result<SetReport, String> {
    let mut added: HashMap<i64, Added> = HashMap::new();
    let mut reads: Vec<(&Operation, BTreeSet<i64>)> = Vec::new();
    for operation in operations {
        match (operation.f.as_str(), &operation.outcome) {
            ("add", outcome) => {
                let entry = added.entry(element(&operation.input)?).or_insert(Added {
                    required_after: None,
                    possible: false,
                });
                match outcome {
                    Outcome::Ok(_) => {
                        entry.possible = true;
                        entry.required_after = earliest(entry.required_after, operation.completed);
                    }
                    Outcome::Unknown => entry.possible = true,
                    Outcome::Fail { .. } => {}
                }
            }
            ("read", Outcome::Ok(Value::List(items))) => {
                let set = items.iter().map(element).collect::<Result<_, _>>()?;
                reads.push((operation, set));
            }
            ("read", Outcome::Ok(other)) => return Err(format!("read returned {other}")),
            ("read", _) => {}
            (f, _) => return Err(format!("a set has no operation {f}")),
        }
    }
    let mut report = SetReport {
        reads: reads.len(),
        ..SetReport::default()
    };
    // An element seen by a read must be in every read that begins after that read ended.
    for (read, set) in &reads {
        for element in set {
            match added.get_mut(element) {
                Some(entry) if entry.possible => {
                    entry.required_after = earliest(entry.required_after, read.completed);
                }
                _ => {
                    report.unexpected.insert(*element);
                }
            }
        }
    }
    let mut read_after: BTreeSet<i64> = BTreeSet::new();
    for (read, set) in &reads {
        for (element, entry) in &added {
            let Some(required) = entry.required_after else {
                continue;
            };
            if read.invoked > required {
                read_after.insert(*element);
                if !set.contains(element) {
                    report.lost.insert(*element);
                }
            }
        }
    }
    for operation in operations {
        if let ("add", Outcome::Ok(_)) = (operation.f.as_str(), &operation.outcome) {
            let element = element(&operation.input)?;
            if !read_after.contains(&element) {
                report.never_read.insert(element);
            }
        }
    }
    Ok(report)
}

fn earliest(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::test_history as history;
    use crate::history::EventType;

    fn set(items: &[i64]) -> Value {
        Value::List(items.iter().map(|&i| Value::Int(i)).collect())
    }

    use EventType::{Fail, Info, Invoke, Ok as Done};
    use Value::{Int, Nil};

    #[test]
    fn reads_that_see_every_completed_add_are_valid() {
        let ops = history(&[
            (0, Invoke, "add", Int(1)),
            (0, Done, "add", Int(1)),
            (1, Invoke, "add", Int(2)),
            (2, Invoke, "read", Nil),
            (2, Done, "read", set(&[1])),
            (1, Info, "add", Int(2)),
            (2, Invoke, "read", Nil),
            (2, Done, "read", set(&[1, 2])),
        ]);
        assert_eq!(check(&ops), Verdict::Valid);
        let report = &reports(&ops).unwrap()[&None];
        assert!(report.never_read.is_empty(), "{report:?}");
        assert_eq!(report.reads, 2);
    }

    #[test]
    fn an_acknowledged_element_missing_from_a_later_read_is_lost() {
        let ops = history(&[
            (0, Invoke, "add", Int(1)),
            (0, Done, "add", Int(1)),
            (1, Invoke, "read", Nil),
            (1, Done, "read", set(&[])),
        ]);
        let report = &reports(&ops).unwrap()[&None];
        assert_eq!(report.lost, BTreeSet::from([1]));
        assert!(matches!(check(&ops), Verdict::Invalid(why) if why.contains("lost {1}")));
    }

    #[test]
    fn an_element_seen_then_gone_is_lost_even_if_its_add_was_unknown() {
        let ops = history(&[
            (0, Invoke, "add", Int(7)),
            (0, Info, "add", Nil),
            (1, Invoke, "read", Nil),
            (1, Done, "read", set(&[7])),
            (1, Invoke, "read", Nil),
            (1, Done, "read", set(&[])),
        ]);
        assert_eq!(reports(&ops).unwrap()[&None].lost, BTreeSet::from([7]));
    }

    #[test]
    fn failed_or_unknown_elements_are_unexpected_or_allowed() {
        let ops = history(&[
            (0, Invoke, "add", Int(1)),
            (0, Fail, "add", Int(1)),
            (1, Invoke, "read", Nil),
            (1, Done, "read", set(&[1, 9])),
        ]);
        assert_eq!(
            reports(&ops).unwrap()[&None].unexpected,
            BTreeSet::from([1, 9])
        );
    }

    #[test]
    fn acknowledged_elements_without_a_later_read_are_never_read() {
        let ops = history(&[
            (1, Invoke, "read", Nil),
            (0, Invoke, "add", Int(3)),
            (0, Done, "add", Int(3)),
            (1, Done, "read", set(&[])),
        ]);
        assert_eq!(check(&ops), Verdict::Valid, "the read began before the ack");
        assert_eq!(
            reports(&ops).unwrap()[&None].never_read,
            BTreeSet::from([3])
        );
    }
}
