//! Linearizability checking: the Wing–Gong search with Lowe's memoisation, per key.
//!
//! The search walks the history's invocations and completions in order, keeping a set of
//! operations it has linearized. At an invocation it tries to linearize that operation now
//! (its step must be legal in the current state); at a completion it has reached an operation
//! that must have taken effect already, so it backtracks to try another order. A
//! (linearized set, state) pair already explored is never explored again, which is what makes
//! real histories tractable. Operations whose outcome is unknown complete after everything
//! else: they may take effect at any point after their invocation, including "after the end",
//! which nobody observes and so stands for "never". Keys are independent (linearizability is
//! compositional), so each key's operations are searched on their own.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hashbrown::HashSet;

mod window;

use crate::history::Operation;
use crate::model::Model;
use crate::verdict::Verdict;

/// Checks that `operations` are linearizable under `model`, within `time_limit`.
///
/// Keys are searched in turns of `SLICE` steps each, so that one key whose history is
/// refuted quickly decides the verdict even while another's search would take hours.
pub fn check<M: Model>(model: &M, operations: &[Operation], time_limit: Duration) -> Verdict {
    const SLICE: u64 = 20_000;
    let deadline = Instant::now() + time_limit;
    let mut by_key: BTreeMap<Option<&str>, Vec<&Operation>> = BTreeMap::new();
    for operation in operations {
        by_key
            .entry(operation.key.as_deref())
            .or_default()
            .push(operation);
    }
    let mut searches = Vec::new();
    for (key, operations) in by_key {
        let name = match key {
            Some(key) => format!("key {key:?}"),
            None => "the register".to_string(),
        };
        match Search::new(model, operations) {
            Ok(search) => searches.push((name, search)),
            Err(e) => return Verdict::Unknown(format!("cannot check {name}: {e}")),
        }
    }
    while !searches.is_empty() {
        if Instant::now() >= deadline {
            let names: Vec<&str> = searches.iter().map(|(name, _)| name.as_str()).collect();
            return Verdict::Unknown(format!(
                "the search ran out of its {time_limit:?} on {}",
                names.join(", ")
            ));
        }
        let mut refuted = None;
        searches.retain_mut(|(name, search)| match search.advance(SLICE) {
            Progress::Searching => true,
            Progress::Linearizable => false,
            Progress::NotLinearizable => {
                if refuted.is_none() {
                    refuted = Some(format!("{name} is not linearizable: {}", search.explain()));
                }
                false
            }
        });
        if let Some(why) = refuted {
            return Verdict::Invalid(why);
        }
    }
    Verdict::Valid
}

enum Progress {
    Searching,
    Linearizable,
    NotLinearizable,
}

const NONE: usize = usize::MAX;

/// The invocations and completions of one key's operations as a doubly linked list, from
/// which linearized operations are lifted out and put back when the search backtracks.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The index of the operation a node belongs to (NONE for the head).
    operation: Vec<usize>,
    /// Whether a node is an invocation (else a completion, or the head).
    is_invocation: Vec<bool>,
    /// For an invocation node, its completion node.
    completion: Vec<usize>,
}

impl Events {
    const HEAD: usize = 0;

    /// Builds the list from each operation's (invoked, completed) positions.
    fn new(spans: &[(usize, usize)]) -> Events {
        // (position, operation, is completion); completions at the same (unknown, infinite)
        // position keep their operations' order.
        let mut order: Vec<(usize, usize, bool)> = Vec::with_capacity(spans.len() * 2);
        for (index, &(invoked, completed)) in spans.iter().enumerate() {
            order.push((invoked, index, false));
            order.push((completed, index, true));
        }
        order.sort_unstable();
        let nodes = order.len() + 1;
        let mut events = Events {
            next: vec![NONE; nodes],
            prev: vec![NONE; nodes],
            operation: vec![NONE; nodes],
            is_invocation: vec![false; nodes],
            completion: vec![NONE; nodes],
        };
        let mut invocation_node = vec![NONE; spans.len()];
        for (i, &(_, index, is_completion)) in order.iter().enumerate() {
            let node = i + 1;
            events.prev[node] = node - 1;
            events.next[node - 1] = node;
            events.operation[node] = index;
            if is_completion {
                events.completion[invocation_node[index]] = node;
            } else {
                events.is_invocation[node] = true;
                invocation_node[index] = node;
            }
        }
        events
    }

    fn first(&self) -> usize {
        self.next[Self::HEAD]
    }

    /// Takes an invocation and its completion out of the list.
    fn lift(&mut self, invocation: usize) {
        for node in [invocation, self.completion[invocation]] {
            let (prev, next) = (self.prev[node], self.next[node]);
            self.next[prev] = next;
            if next != NONE {
                self.prev[next] = prev;
            }
        }
    }

    /// Puts back the last invocation lifted, and its completion.
    fn unlift(&mut self, invocation: usize) {
        for node in [self.completion[invocation], invocation] {
            let (prev, next) = (self.prev[node], self.next[node]);
            self.next[prev] = node;
            if next != NONE {
                self.prev[next] = node;
            }
        }
    }
}

/// A set of operation indexes, as bits.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Linearized(Vec<u64>);

impl Linearized {
    fn new(len: usize) -> Linearized {
        Linearized(vec![0; len.div_ceil(64)])
    }
    fn with(&self, index: usize) -> Linearized {
        let mut set = self.clone();
        set.0[index / 64] |= 1 << (index % 64);
        set
    }
    fn set(&mut self, index: usize, on: bool) {
        if on {
            self.0[index / 64] |= 1 << (index % 64);
        } else {
            self.0[index / 64] &= !(1 << (index % 64));
        }
    }
}

/// The search over one key's operations, resumable.
struct Search<'a, M: Model> {
    model: &'a M,
    operations: Vec<&'a Operation>,
    steps: Vec<M::Step>,
    events: Events,
    explored: HashSet<(Linearized, M::State), foldhash::fast::FixedState>,
    linearized: Linearized,
    state: M::State,
    /// The invocations linearized so far, with the state before each.
    stack: Vec<(usize, M::State)>,
    /// Where the search got furthest: how many operations it had linearized when an
    /// operation's completion came with no way to place it, that operation, and the state.
    furthest: Option<(usize, usize, M::State)>,
    node: usize,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, all: Vec<&'a Operation>) -> Result<Self, String> {
        let mut steps = Vec::new();
        let mut operations = Vec::new();
        for operation in all {
            if let Some(step) = model
                .prepare(operation)
                .map_err(|e| format!("{operation}: {e}"))?
            {
                steps.push(step);
                operations.push(operation);
            }
        }
        let spans: Vec<(usize, usize)> = operations
            .iter()
            .map(|o| (o.invoked, o.completed.unwrap_or(NONE)))
            .collect();
        let events = Events::new(&spans);
        let node = events.first();
        Ok(Search {
            model,
            linearized: Linearized::new(steps.len()),
            operations,
            steps,
            events,
            explored: HashSet::with_hasher(foldhash::fast::FixedState::default()),
            state: model.init(),
            stack: Vec::new(),
            furthest: None,
            node,
        })
    }

    /// Runs at most `budget` steps of the search.
    fn advance(&mut self, budget: u64) -> Progress {
        let events = &mut self.events;
        for _ in 0..budget {
            if events.first() == NONE {
                return Progress::Linearizable;
            }
            let node = self.node;
            let index = events.operation[node];
            if events.is_invocation[node] {
                // An invocation: try to linearize its operation here.
                if let Some(after) = self.model.apply(&self.state, &self.steps[index]) {
                    if self
                        .explored
                        .insert((self.linearized.with(index), after.clone()))
                    {
                        self.stack
                            .push((node, std::mem::replace(&mut self.state, after)));
                        self.linearized.set(index, true);
                        events.lift(node);
                        self.node = events.first();
                        continue;
                    }
                }
                self.node = events.next[node];
                continue;
            }
            // A completion: its operation had to be linearized by now, and was not.
            let depth = self.stack.len();
            if self.furthest.as_ref().is_none_or(|(d, ..)| depth > *d) {
                self.furthest = Some((depth, index, self.state.clone()));
            }
            let Some((invocation, before)) = self.stack.pop() else {
                return Progress::NotLinearizable;
            };
            self.state = before;
            self.linearized.set(events.operation[invocation], false);
            events.unlift(invocation);
            self.node = events.next[invocation];
        }
        if events.first() == NONE {
            Progress::Linearizable
        } else {
            Progress::Searching
        }
    }
}

impl<M: Model> Search<'_, M> {
    /// Why a refuted history is not linearizable: where the search got furthest, and the
    /// smallest window around that point that no order explains.
    fn explain(&self) -> String {
        let Some((depth, blocked, state)) = &self.furthest else {
            return format!(
                "no order of its {} operations is legal",
                self.operations.len()
            );
        };
        let mut why = explain(&self.operations, *depth, *blocked, state);
        if let Some(stuck) = self.operations.get(*blocked) {
            match window::smallest(self.model, &self.operations, stuck) {
                Some(window) => {
                    let _ = write!(why, "\n{window}");
                }
                None => why.push_str("\nNo smaller window was found that no order explains."),
            }
        }
        why
    }
}

/// Says where the search got stuck: the operation that could not take effect, the state the
/// furthest order left it with, and the operations concurrent with it.
fn explain<S: std::fmt::Debug>(
    operations: &[&Operation],
    depth: usize,
    blocked: usize,
    state: &S,
) -> String {
    let Some(stuck) = operations.get(blocked) else {
        return format!("no order of its {} operations is legal", operations.len());
    };
    let mut why = format!(
        "no order of its {} operations is legal. The furthest order linearized {depth} \
         of them, leaving the state {state:?}, and then could not place {stuck}.",
        operations.len()
    );
    let end = stuck.completed.unwrap_or(usize::MAX);
    let concurrent: Vec<&&Operation> = operations
        .iter()
        .filter(|o| {
            o.invoked != stuck.invoked
                && o.invoked < end
                && o.completed.unwrap_or(usize::MAX) > stuck.invoked
        })
        .collect();
    if !concurrent.is_empty() {
        let _ = write!(why, " Concurrent with it:");
        for operation in concurrent.iter().take(12) {
            let _ = write!(why, "\n  {operation}");
        }
        if concurrent.len() > 12 {
            let _ = write!(why, "\n  ... and {} more", concurrent.len() - 12);
        }
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::test_history as history;
    use crate::history::{EventType, Value};
    use crate::model::Register;

    use EventType::{Info, Invoke, Ok as Done};
    use Value::{Int, Nil};

    fn verdict(lines: &[(u64, EventType, &str, Value)]) -> Verdict {
        check(&Register, &history(lines), Duration::from_secs(5))
    }

    #[test]
    fn a_read_may_see_a_concurrent_write_or_not() {
        for seen in [Nil, Int(1)] {
            let lines = [
                (0, Invoke, "write", Int(1)),
                (1, Invoke, "read", Nil),
                (1, Done, "read", seen.clone()),
                (0, Done, "write", Int(1)),
            ];
            assert_eq!(verdict(&lines), Verdict::Valid, "read {seen}");
        }
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let lines = [
            (0, Invoke, "write", Int(1)),
            (0, Done, "write", Int(1)),
            (1, Invoke, "read", Nil),
            (1, Done, "read", Nil),
        ];
        let Verdict::Invalid(why) = verdict(&lines) else {
            panic!("a stale read passed");
        };
        assert!(why.contains("process 1 read"), "{why}");
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let late = [
            (0, Invoke, "write", Int(1)),
            (0, Info, "write", Nil),
            (1, Invoke, "read", Nil),
            (1, Done, "read", Nil),
            (1, Invoke, "read", Nil),
            (1, Done, "read", Int(1)),
        ];
        assert_eq!(verdict(&late), Verdict::Valid);
        let never = [(0, Invoke, "write", Int(1)), (0, Info, "write", Nil)];
        assert_eq!(verdict(&never), Verdict::Valid);
        // But it cannot take effect, be overwritten, and then take effect again.
        let twice = [
            (0, Invoke, "write", Int(1)),
            (0, Info, "write", Nil),
            (1, Invoke, "read", Nil),
            (1, Done, "read", Int(1)),
            (1, Invoke, "write", Int(2)),
            (1, Done, "write", Int(2)),
            (1, Invoke, "read", Nil),
            (1, Done, "read", Int(1)),
        ];
        assert!(matches!(verdict(&twice), Verdict::Invalid(_)));
    }

    #[test]
    fn a_stale_read_late_in_a_long_history_is_shown_in_a_small_window() {
        let mut lines = Vec::new();
        for v in 1..=50 {
            lines.push((0, Invoke, "write", Int(v)));
            lines.push((0, Done, "write", Int(v)));
        }
        lines.push((1, Invoke, "read", Nil));
        lines.push((1, Done, "read", Int(3)));
        let Verdict::Invalid(why) = verdict(&lines) else {
            panic!("a stale read passed");
        };
        assert!(
            why.contains(
                "The smallest window no order explains, from any state before it \
                 (history events 99..102, 2 operations;"
            ),
            "{why}"
        );
        assert!(
            why.contains("write 50 -> ok 50") && why.contains("read nil -> ok 3"),
            "{why}"
        );
        assert!(!why.contains("write 49 "), "{why}");
    }

    #[test]
    fn a_search_out_of_time_is_unknown() {
        // Many concurrent writes and a read nobody could have seen: every order is tried.
        let mut lines = Vec::new();
        for p in 0..60 {
            lines.push((p, Invoke, "write", Int(p as i64)));
        }
        lines.push((99, Invoke, "read", Nil));
        lines.push((99, Done, "read", Int(1000)));
        for p in 0..60 {
            lines.push((p, Done, "write", Int(p as i64)));
        }
        let verdict = check(&Register, &history(&lines), Duration::from_millis(1));
        assert!(matches!(verdict, Verdict::Unknown(_)), "{verdict:?}");
    }

    #[test]
    fn a_read_of_a_value_never_written_is_caught_among_concurrent_writes() {
        let mut lines = Vec::new();
        for p in 0..8 {
            lines.push((p, Invoke, "write", Int(p as i64)));
        }
        lines.push((99, Invoke, "read", Nil));
        lines.push((99, Done, "read", Int(1000)));
        for p in 0..8 {
            lines.push((p, Done, "write", Int(p as i64)));
        }
        let Verdict::Invalid(why) = verdict(&lines) else {
            panic!("read of 1000 passed");
        };
        assert!(why.contains("read nil -> ok 1000"), "{why}");
    }
}
