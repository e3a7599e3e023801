use std::borrow::Cow;

use resp::Frame;
use thiserror::Error;

/// Why a command failed. Every variant is a client error: the command had no effect.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR index out of range")]
    IndexOutOfRange,
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    /// Any other error, with its full text, code included (`ERR ...`).
    #[error("{0}")]
    Other(Cow<'static, str>),
}

impl CommandError {
    /// An error with a full reply text (`"ERR timeout is negative"`).
    pub fn other(text: impl Into<Cow<'static, str>>) -> CommandError {
        CommandError::Other(text.into())
    }

    /// The error reply: the one place command errors become RESP.
    pub fn to_frame(&self) -> Frame {
        Frame::Error(self.to_string().into())
    }
}

/// A command's outcome.
pub type CommandResult = Result<Frame, CommandError>;
