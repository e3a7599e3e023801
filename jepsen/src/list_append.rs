//! An Elle-style checker for the list-append workload: transactions of `[:append k v]` and
//! `[:r k [v1 v2 ...]]` micro-operations over lists whose appended values are unique.
//!
//! Because every value is appended once, a read of a key reveals the order of every append
//! it saw: all reads of a key must be prefixes of one order (the longest read). From that
//! order come the dependencies between transactions: ww (T1 appended the element before the
//! one T2 appended), wr (T2 read up to T1's element), rw (T1 read a prefix that T2's element
//! extends), and realtime (T1 completed before T2 began). A cycle in that graph is an anomaly,
//! named as Adya and Elle name them: only ww edges G0, ww and wr G1c, exactly one rw G-single,
//! more G2 (suffixed `-realtime` when it needs a realtime edge). Also reported: aborted reads
//! (G1a: an element of a failed transaction), intermediate reads (G1b: a read that ends inside
//! another transaction's appends to the key), elements read but never appended, duplicated
//! elements, reads that are not prefixes of one order, and lost appends (an acknowledged
//! append missing from a read that began after it).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use crate::history::{Operation, Outcome, Value};
use crate::verdict::Verdict;

/// One micro-operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Micro {
    Append(i64, i64),
    /// A read and what it returned (None while unknown: invocations, unknown outcomes).
    Read(i64, Option<Vec<i64>>),
}

/// Edge kinds, as bits so that parallel edges combine.
const WW: u8 = 1;
const WR: u8 = 2;
const RW: u8 = 4;
const REALTIME: u8 = 8;

fn micros(value: &Value) -> Result<Vec<Micro>, String> {
    let Value::List(items) = value else {
        return Err(format!(
            "a transaction is a list of micro-operations, not {value}"
        ));
    };
    items
        .iter()
        .map(|item| match item {
            Value::List(parts) => match &parts[..] {
                [Value::Keyword(f), Value::Int(k), Value::Int(v)] if f == "append" => {
                    Ok(Micro::Append(*k, *v))
                }
                [Value::Keyword(f), Value::Int(k), Value::Nil] if f == "r" => {
                    Ok(Micro::Read(*k, None))
                }
                [Value::Keyword(f), Value::Int(k), Value::List(read)] if f == "r" => {
                    Ok(Micro::Read(
                        *k,
                        Some(
                            read.iter()
                                .map(|v| match v {
                                    Value::Int(v) => Ok(*v),
                                    other => Err(format!("read element {other} is not an integer")),
                                })
                                .collect::<Result<_, _>>()?,
                        ),
                    ))
                }
                _ => Err(format!("unknown micro-operation {item}")),
            },
            other => Err(format!("unknown micro-operation {other}")),
        })
        .collect()
}

struct Txn<'a> {
    operation: &'a Operation,
    /// The completed micro-operations (the invocation's, for unknown outcomes).
    micros: Vec<Micro>,
    committed: bool,
}

/// Checks a list-append history.
pub fn check(operations: &[Operation]) -> Verdict {
    match anomalies(operations) {
        Err(e) => Verdict::Unknown(format!("cannot check: {e}")),
        Ok(found) if found.is_empty() => Verdict::Valid,
        Ok(found) => {
            let mut why = String::new();
            for (name, examples) in &found {
                let _ = write!(why, "{name} ({}): {}; ", examples.len(), examples[0]);
            }
            Verdict::Invalid(why.trim_end_matches("; ").to_string())
        }
    }
}

/// Every anomaly found, by name, with an explanation of each instance.
pub fn anomalies(operations: &[Operation]) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut txns = Vec::new();
    for operation in operations.iter().filter(|o| o.f == "txn") {
        let (micros_value, committed) = match &operation.outcome {
            Outcome::Ok(value) => (value, true),
            Outcome::Unknown => (&operation.input, false),
            Outcome::Fail { .. } => (&operation.input, false),
        };
        txns.push(Txn {
            operation,
            micros: micros(micros_value)?,
            committed,
        });
    }
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut report =
        |name: &str, what: String| found.entry(name.to_string()).or_default().push(what);

    // Who appended each (key, value), and in which position of their own appends to the key.
    let mut writer: HashMap<(i64, i64), usize> = HashMap::new();
    for (t, txn) in txns.iter().enumerate() {
        for micro in &txn.micros {
            if let Micro::Append(k, v) = micro {
                if writer.insert((*k, *v), t).is_some() {
                    return Err(format!("{k}:{v} appended twice: values must be unique"));
                }
            }
        }
    }
    let failed = |t: usize| matches!(txns[t].operation.outcome, Outcome::Fail { .. });

    // The version order of each key: the longest read, which every other read must prefix.
    let mut order: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for txn in txns.iter().filter(|t| t.committed) {
        for micro in &txn.micros {
            let Micro::Read(k, Some(read)) = micro else {
                continue;
            };
            let seen: HashSet<i64> = read.iter().copied().collect();
            if seen.len() != read.len() {
                report(
                    "duplicate-elements",
                    format!("{} read key {k} as {read:?}", txn.operation),
                );
            }
            let longest = order.entry(*k).or_default();
            let common = longest.len().min(read.len());
            if longest[..common] != read[..common] {
                report(
                    "incompatible-order",
                    format!("key {k} read as {read:?} and as {longest:?}"),
                );
            } else if read.len() > longest.len() {
                *longest = read.clone();
            }
        }
    }

    // Reads of elements nobody appended, of failed transactions, or of a transaction's
    // intermediate state; lost appends.
    for txn in txns.iter().filter(|t| t.committed) {
        for micro in &txn.micros {
            let Micro::Read(k, Some(read)) = micro else {
                continue;
            };
            for v in read {
                match writer.get(&(*k, *v)) {
                    None => report(
                        "garbage-read",
                        format!("{} read {k}:{v}, never appended", txn.operation),
                    ),
                    Some(&w) if failed(w) => report(
                        "G1a",
                        format!(
                            "{} read {k}:{v}, appended by failed {}",
                            txn.operation, txns[w].operation
                        ),
                    ),
                    Some(_) => {}
                }
            }
            if let Some(last) = read.last() {
                if let Some(&w) = writer.get(&(*k, *last)) {
                    let own: Vec<i64> = appends_to(&txns[w].micros, *k);
                    let position = own.iter().position(|v| v == last);
                    let is_self = std::ptr::eq(txns[w].operation, txn.operation);
                    if !is_self && position.is_some_and(|p| p + 1 < own.len()) {
                        report(
                            "G1b",
                            format!(
                                "{} read key {k} ending at {last}, between the appends {own:?} of {}",
                                txn.operation, txns[w].operation
                            ),
                        );
                    }
                }
            }
        }
    }
    // Lost appends: each key's reads, once, with what they saw.
    let mut readers: HashMap<i64, Vec<KeyRead>> = HashMap::new();
    for reader in txns.iter().filter(|r| r.committed) {
        for micro in &reader.micros {
            if let Micro::Read(k, Some(read)) = micro {
                readers.entry(*k).or_default().push((
                    reader.operation.invoked,
                    reader.operation,
                    read.iter().copied().collect(),
                ));
            }
        }
    }
    for txn in &txns {
        if !matches!(txn.operation.outcome, Outcome::Ok(_)) {
            continue;
        }
        let Some(done) = txn.operation.completed else {
            continue;
        };
        for micro in &txn.micros {
            let Micro::Append(k, v) = micro else { continue };
            for (invoked, reader, seen) in readers.get(k).into_iter().flatten() {
                if *invoked > done && !seen.contains(v) {
                    report(
                        "lost-append",
                        format!("{k}:{v} of {} missing from {reader}", txn.operation),
                    );
                }
            }
        }
    }

    // The dependency graph over transactions that committed or may have.
    let nodes: Vec<usize> = (0..txns.len()).filter(|&t| !failed(t)).collect();
    let mut edges: HashMap<(usize, usize), u8> = HashMap::new();
    let mut add = |a: usize, b: usize, kind: u8| {
        if a != b {
            *edges.entry((a, b)).or_default() |= kind;
        }
    };
    for (k, versions) in &order {
        for pair in versions.windows(2) {
            if let (Some(&a), Some(&b)) = (writer.get(&(*k, pair[0])), writer.get(&(*k, pair[1]))) {
                add(a, b, WW);
            }
        }
    }
    for (t, txn) in txns.iter().enumerate().filter(|(_, t)| t.committed) {
        for micro in &txn.micros {
            let Micro::Read(k, Some(read)) = micro else {
                continue;
            };
            if let Some(&w) = read.last().and_then(|v| writer.get(&(*k, *v))) {
                add(w, t, WR);
            }
            if let Some(next) = order.get(k).and_then(|versions| versions.get(read.len())) {
                if let Some(&w) = writer.get(&(*k, *next)) {
                    add(t, w, RW);
                }
            }
        }
    }
    // Realtime: each transaction follows the completed ones no later completion follows.
    let mut frontier: BTreeSet<usize> = BTreeSet::new();
    let mut events: Vec<(usize, bool, usize)> = Vec::new();
    for &t in &nodes {
        let operation = txns[t].operation;
        events.push((operation.invoked, false, t));
        if let (Some(done), true) = (operation.completed, txns[t].committed) {
            events.push((done, true, t));
        }
    }
    events.sort_unstable();
    let mut before: HashMap<usize, Vec<usize>> = HashMap::new();
    for (_, is_completion, t) in events {
        if is_completion {
            for p in before.remove(&t).unwrap_or_default() {
                frontier.remove(&p);
            }
            frontier.insert(t);
        } else {
            for &p in &frontier {
                add(p, t, REALTIME);
            }
            before.insert(t, frontier.iter().copied().collect());
        }
    }

    for cycle in cycles(&nodes, &edges) {
        let kinds: Vec<u8> = cycle
            .windows(2)
            .map(|pair| edges[&(pair[0], pair[1])])
            .collect();
        let name = classify(&kinds);
        let path: Vec<String> = cycle
            .iter()
            .map(|&t| txns[t].operation.to_string())
            .collect();
        report(&name, format!("cycle {}", path.join(" -> ")));
    }
    Ok(found)
}

/// A read of one key: when its transaction began, the transaction, and what it saw.
type KeyRead<'a> = (usize, &'a Operation, HashSet<i64>);

fn appends_to(micros: &[Micro], key: i64) -> Vec<i64> {
    micros
        .iter()
        .filter_map(|m| match m {
            Micro::Append(k, v) if *k == key => Some(*v),
            _ => None,
        })
        .collect()
}

/// Names a cycle by its edges, choosing for each edge the weakest kind it has.
fn classify(kinds: &[u8]) -> String {
    let data = |k: u8| k & (WW | WR | RW) != 0;
    let realtime = kinds.iter().any(|&k| !data(k));
    let rw = kinds
        .iter()
        .filter(|&&k| data(k) && k & (WW | WR) == 0)
        .count();
    let wr = kinds.iter().any(|&k| k & WW == 0 && k & WR != 0);
    let name = match (rw, wr) {
        (0, false) => "G0",
        (0, true) => "G1c",
        (1, _) => "G-single",
        _ => "G2",
    };
    if realtime {
        format!("{name}-realtime")
    } else {
        name.to_string()
    }
}

/// One cycle per strongly connected component with more than one transaction, found by
/// breadth-first search (so short), preferring edges of data dependencies. Each cycle is
/// returned closed: first transaction repeated at the end.
fn cycles(nodes: &[usize], edges: &HashMap<(usize, usize), u8>) -> Vec<Vec<usize>> {
    let mut out: HashMap<usize, Vec<usize>> = HashMap::new();
    for &(a, b) in edges.keys() {
        out.entry(a).or_default().push(b);
    }
    for targets in out.values_mut() {
        targets.sort_unstable();
    }
    let components = strongly_connected(nodes, &out);
    let mut found = Vec::new();
    for component in components.into_iter().filter(|c| c.len() > 1) {
        let members: HashSet<usize> = component.iter().copied().collect();
        let start = component[0];
        // Shortest path from a successor of start back to start, within the component.
        let mut previous: HashMap<usize, usize> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        let mut closed = None;
        while let Some(node) = queue.pop_front() {
            for &next in out.get(&node).into_iter().flatten() {
                if !members.contains(&next) {
                    continue;
                }
                if next == start {
                    closed = Some(node);
                    break;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = previous.entry(next) {
                    e.insert(node);
                    queue.push_back(next);
                }
            }
            if closed.is_some() {
                break;
            }
        }
        let Some(mut node) = closed else { continue };
        let mut path = vec![start];
        while node != start {
            path.push(node);
            node = previous[&node];
        }
        path.push(start);
        path.reverse();
        found.push(path);
    }
    found
}

/// Tarjan's strongly connected components, iteratively.
fn strongly_connected(nodes: &[usize], out: &HashMap<usize, Vec<usize>>) -> Vec<Vec<usize>> {
    let mut index: HashMap<usize, usize> = HashMap::new();
    let mut low: HashMap<usize, usize> = HashMap::new();
    let mut on_stack: HashSet<usize> = HashSet::new();
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut next_index = 0;
    let empty = Vec::new();
    for &root in nodes {
        if index.contains_key(&root) {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index.insert(root, next_index);
        low.insert(root, next_index);
        next_index += 1;
        stack.push(root);
        on_stack.insert(root);
        while let Some(&mut (node, ref mut child)) = work.last_mut() {
            let targets = out.get(&node).unwrap_or(&empty);
            if *child < targets.len() {
                let next = targets[*child];
                *child += 1;
                match index.entry(next) {
                    std::collections::hash_map::Entry::Vacant(vacant) => {
                        vacant.insert(next_index);
                        low.insert(next, next_index);
                        next_index += 1;
                        stack.push(next);
                        on_stack.insert(next);
                        work.push((next, 0));
                    }
                    std::collections::hash_map::Entry::Occupied(seen) => {
                        if on_stack.contains(&next) {
                            let l = low[&node].min(*seen.get());
                            low.insert(node, l);
                        }
                    }
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                let l = low[&parent].min(low[&node]);
                low.insert(parent, l);
            }
            if low[&node] == index[&node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack.remove(&member);
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                component.sort_unstable();
                components.push(component);
            }
        }
    }
    components
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edn::parse_history;
    use crate::history::operations;

    fn found(history: &str) -> BTreeMap<String, Vec<String>> {
        let events = parse_history(history).unwrap();
        anomalies(&operations(&events).unwrap()).unwrap()
    }

    /// G1c: T1 reads T2's append to key 2; T2 reads T1's append to key 1.
    const G1C: &str = r#"
{:process 0, :type :invoke, :f :txn, :value [[:append 1 1] [:r 2 nil]]}
{:process 1, :type :invoke, :f :txn, :value [[:append 2 1] [:r 1 nil]]}
{:process 0, :type :ok, :f :txn, :value [[:append 1 1] [:r 2 [1]]]}
{:process 1, :type :ok, :f :txn, :value [[:append 2 1] [:r 1 [1]]]}
"#;

    fn names(history: &str) -> Vec<String> {
        found(history).into_keys().collect()
    }

    #[test]
    fn a_serial_history_is_valid() {
        let history = r#"
{:process 0, :type :invoke, :f :txn, :value [[:append 1 1] [:r 1 nil]]}
{:process 0, :type :ok, :f :txn, :value [[:append 1 1] [:r 1 [1]]]}
{:process 1, :type :invoke, :f :txn, :value [[:append 1 2] [:append 2 1]]}
{:process 1, :type :ok, :f :txn, :value [[:append 1 2] [:append 2 1]]}
{:process 0, :type :invoke, :f :txn, :value [[:r 1 nil] [:r 2 nil]]}
{:process 0, :type :ok, :f :txn, :value [[:r 1 [1 2]] [:r 2 [1]]]}
"#;
        assert_eq!(names(history), Vec::<String>::new());
    }

    #[test]
    fn g0_write_cycle() {
        // T1 appends x1 then y1... order says y: T2 before T1, x: T1 before T2.
        let history = r#"
{:process 0, :type :invoke, :f :txn, :value [[:append 1 1] [:append 2 1]]}
{:process 1, :type :invoke, :f :txn, :value [[:append 1 2] [:append 2 2]]}
{:process 0, :type :ok, :f :txn, :value [[:append 1 1] [:append 2 1]]}
{:process 1, :type :ok, :f :txn, :value [[:append 1 2] [:append 2 2]]}
{:process 2, :type :invoke, :f :txn, :value [[:r 1 nil] [:r 2 nil]]}
{:process 2, :type :ok, :f :txn, :value [[:r 1 [1 2]] [:r 2 [2 1]]]}
"#;
        assert_eq!(names(history), ["G0"]);
    }

    #[test]
    fn g1c_circular_information_flow() {
        assert_eq!(names(G1C), ["G1c"]);
    }

    #[test]
    fn g_single_read_skew() {
        // T1 sees T2's append to key 1 but not its append to key 2.
        let history = r#"
{:process 0, :type :invoke, :f :txn, :value [[:r 1 nil] [:r 2 nil]]}
{:process 1, :type :invoke, :f :txn, :value [[:append 1 1] [:append 2 1]]}
{:process 1, :type :ok, :f :txn, :value [[:append 1 1] [:append 2 1]]}
{:process 0, :type :ok, :f :txn, :value [[:r 1 [1]] [:r 2 []]]}
{:process 2, :type :invoke, :f :txn, :value [[:r 2 nil]]}
{:process 2, :type :ok, :f :txn, :value [[:r 2 [1]]]}
"#;
        let found = names(history);
        assert!(
            found.contains(&"G-single".to_string())
                || found.contains(&"G-single-realtime".to_string()),
            "{found:?}"
        );
    }

    #[test]
    fn g2_write_skew() {
        // Each reads the other's key empty, then appends to its own.
        let history = r#"
{:process 0, :type :invoke, :f :txn, :value [[:r 1 nil] [:append 2 1]]}
{:process 1, :type :invoke, :f :txn, :value [[:r 2 nil] [:append 1 1]]}
{:process 0, :type :ok, :f :txn, :value [[:r 1 []] [:append 2 1]]}
{:process 1, :type :ok, :f :txn, :value [[:r 2 []] [:append 1 1]]}
{:process 2, :type :invoke, :f :txn, :value [[:r 1 nil] [:r 2 nil]]}
{:process 2, :type :ok, :f :txn, :value [[:r 1 [1]] [:r 2 [1]]]}
"#;
        assert_eq!(names(history), ["G2"]);
    }

    #[test]
    fn aborted_intermediate_garbage_duplicate_and_lost() {
        let history = r#"
{:process 0, :type :invoke, :f :txn, :value [[:append 1 1]]}
{:process 0, :type :fail, :f :txn, :value [[:append 1 1]], :error "MOVED"}
{:process 1, :type :invoke, :f :txn, :value [[:append 2 1] [:append 2 2]]}
{:process 1, :type :ok, :f :txn, :value [[:append 2 1] [:append 2 2]]}
{:process 3, :type :invoke, :f :txn, :value [[:append 3 1]]}
{:process 3, :type :ok, :f :txn, :value [[:append 3 1]]}
{:process 2, :type :invoke, :f :txn, :value [[:r 1 nil] [:r 2 nil] [:r 4 nil] [:r 3 nil]]}
{:process 2, :type :ok, :f :txn, :value [[:r 1 [1]] [:r 2 [1]] [:r 4 [9 9]] [:r 3 []]]}
"#;
        let found = names(history);
        for anomaly in [
            "G1a",
            "G1b",
            "garbage-read",
            "duplicate-elements",
            "lost-append",
        ] {
            assert!(
                found.contains(&anomaly.to_string()),
                "{anomaly} not in {found:?}"
            );
        }
    }

    #[test]
    fn reads_that_disagree_on_order_are_incompatible() {
        let history = r#"
{:process 0, :type :invoke, :f :txn, :value [[:append 1 1]]}
{:process 1, :type :invoke, :f :txn, :value [[:append 1 2]]}
{:process 0, :type :ok, :f :txn, :value [[:append 1 1]]}
{:process 1, :type :ok, :f :txn, :value [[:append 1 2]]}
{:process 2, :type :invoke, :f :txn, :value [[:r 1 nil]]}
{:process 2, :type :ok, :f :txn, :value [[:r 1 [1 2]]]}
{:process 2, :type :invoke, :f :txn, :value [[:r 1 nil]]}
{:process 2, :type :ok, :f :txn, :value [[:r 1 [2 1]]]}
"#;
        assert!(names(history).contains(&"incompatible-order".to_string()));
    }

    #[test]
    fn a_verdict_names_the_anomaly() {
        let events = parse_history(G1C).unwrap();
        let verdict = check(&operations(&events).unwrap());
        assert!(
            matches!(&verdict, Verdict::Invalid(why) if why.starts_with("G1c (1): cycle")),
            "{verdict}"
        );
    }
}
