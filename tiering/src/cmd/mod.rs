//! Command implementations, one family per file. Each family lists its commands in a
//! `COMMANDS` table; adding a command touches its family file and `resp/commands/supported.txt`.

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;
use resp::command_table::CommandSpec;
use resp::CommandTable;

use crate::error::CommandResult;
use crate::exec::Exec;

mod bitmap;
mod hashes;
mod keys;
mod lists;
mod scan;
mod server;
mod sets;
mod sort;
mod strings;
mod zsets;

/// A command's implementation: parses its arguments, runs, replies.
pub type Handler = fn(&mut Exec, &[Bytes]) -> CommandResult;

/// Which keyspaces a command locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockScope {
    /// Those of the keys its key specifications name.
    Keys,
    /// All of them (commands over the whole keyspace, or whose keys come from data, like SORT BY).
    All,
}

/// One command the engine runs.
pub struct CommandDef {
    pub name: &'static str,
    pub handler: Handler,
    pub locks: LockScope,
}

/// Shorthand for a table entry locking the command's keys.
pub(crate) const fn keyed(name: &'static str, handler: Handler) -> CommandDef {
    CommandDef {
        name,
        handler,
        locks: LockScope::Keys,
    }
}

/// Shorthand for a table entry locking every keyspace.
pub(crate) const fn global(name: &'static str, handler: Handler) -> CommandDef {
    CommandDef {
        name,
        handler,
        locks: LockScope::All,
    }
}

static BY_NAME: LazyLock<HashMap<&'static str, &'static CommandDef>> = LazyLock::new(|| {
    [
        bitmap::COMMANDS,
        hashes::COMMANDS,
        keys::COMMANDS,
        lists::COMMANDS,
        scan::COMMANDS,
        server::COMMANDS,
        sets::COMMANDS,
        sort::COMMANDS,
        strings::COMMANDS,
        zsets::COMMANDS,
    ]
    .into_iter()
    .flatten()
    .map(|def| (def.name, def))
    .collect()
});

/// The engine's implementations indexed by `CommandSpec::id`, so that routing a request costs
/// an array index rather than a name lookup.
static BY_ID: LazyLock<Vec<Option<&'static CommandDef>>> = LazyLock::new(|| {
    let table = CommandTable::get();
    (0..table.spec_count())
        .map(|id| BY_NAME.get(table.name_of(id)).copied())
        .collect()
});

/// The engine's implementation of a command, by lowercase name (`object|encoding` for
/// subcommands).
pub fn lookup(name: &str) -> Option<&'static CommandDef> {
    BY_NAME.get(name).copied()
}

/// The engine's implementation of a command-table entry.
pub fn lookup_spec(spec: &CommandSpec) -> Option<&'static CommandDef> {
    BY_ID.get(spec.id).copied().flatten()
}
