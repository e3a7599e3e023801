//! What a checker concludes, and the exit code that says it.

use std::fmt;

/// A checker's conclusion about a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The history is consistent with the model.
    Valid,
    /// It is not; the text says where.
    Invalid(String),
    /// The checker could not decide (out of time, or the history cannot be checked). A run
    /// with this verdict fails.
    Unknown(String),
}

impl Verdict {
    /// 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid(_) => 1,
            Verdict::Unknown(_) => 2,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Valid => f.write_str("valid"),
            Verdict::Invalid(why) => write!(f, "invalid: {why}"),
            Verdict::Unknown(why) => write!(f, "unknown: {why}"),
        }
    }
}
