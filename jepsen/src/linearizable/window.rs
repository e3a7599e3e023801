//! The smallest window of a refuted history that no order explains, whatever state the object
//! was in when the window began: the part of a long history a reader needs to see the bug.
//!
//! A window ends where the search got stuck (the completion of the operation no order could
//! place) and starts at some invocation; it holds every operation that was in flight during
//! it. Operations still running at its end count as unknown (a read then constrains nothing, a
//! write may or may not take effect), and it starts from every state the object could have
//! been in, so a window refuted from all of them shows a violation on its own. Windows are
//! tried from the latest start backwards; the first refuted one is the smallest.

use std::fmt::Write as _;

use super::{Progress, Search};
use crate::history::{Operation, Outcome};
use crate::model::Model;

/// Search steps allowed for one window from one starting state.
const BUDGET: u64 = 200_000;
/// Starts tried before giving up.
const MAX_STARTS: usize = 200;
/// Operations shown.
const SHOWN: usize = 16;

/// Describes the smallest refuted window ending at `stuck`'s completion, if one is found.
pub(super) fn smallest<M: Model>(
    model: &M,
    operations: &[&Operation],
    stuck: &Operation,
) -> Option<String> {
    let end = stuck.completed?;
    let mut starts: Vec<usize> = operations
        .iter()
        .map(|o| o.invoked)
        .filter(|&invoked| invoked <= stuck.invoked)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    for &start in starts.iter().rev().take(MAX_STARTS) {
        let before: Vec<&Operation> = operations
            .iter()
            .copied()
            .filter(|o| o.completed.is_some_and(|c| c < start))
            .collect();
        let states = model.states_after(&before)?;
        let window: Vec<Operation> = operations
            .iter()
            .filter(|o| o.invoked <= end && o.completed.is_none_or(|c| c >= start))
            .map(|o| unknown_after(o, end))
            .collect();
        if states
            .into_iter()
            .all(|state| refuted_from(model, &window, state))
        {
            return Some(describe(&window, start, end));
        }
    }
    None
}

/// The operation as seen at position `end`: if it had not completed by then, its outcome is
/// unknown.
fn unknown_after(operation: &Operation, end: usize) -> Operation {
    let mut seen = operation.clone();
    if operation.completed.is_none_or(|c| c > end) {
        seen.completed = None;
        seen.outcome = Outcome::Unknown;
    }
    seen
}

/// Whether no order of `window` is legal starting from `state` (within the budget).
fn refuted_from<M: Model>(model: &M, window: &[Operation], state: M::State) -> bool {
    let Ok(mut search) = Search::new(model, window.iter().collect()) else {
        return false;
    };
    search.state = state;
    matches!(search.advance(BUDGET), Progress::NotLinearizable)
}

fn describe(window: &[Operation], start: usize, end: usize) -> String {
    let mut text = format!(
        "The smallest window no order explains, from any state before it (history events {}..{}, \
         {} operations; those still running at its end count as unknown):",
        start + 1,
        end + 1,
        window.len()
    );
    for operation in window.iter().take(SHOWN) {
        let _ = write!(text, "\n  {operation}");
    }
    if window.len() > SHOWN {
        let _ = write!(text, "\n  ... and {} more", window.len() - SHOWN);
    }
    text
}
