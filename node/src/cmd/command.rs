//! COMMAND and its subcommands, answered from the command table.

use bytes::Bytes;
use resp::command_table::CommandSpec;
use resp::{CommandTable, Frame};
use tiering::glob::glob_match;

use crate::session::Outcome;

/// COMMAND with no subcommand: every command's entry.
pub fn all() -> Outcome {
    Frame::Array(CommandTable::get().iter().map(|s| s.info.clone()).collect()).into()
}

fn lookup_full(name: &[u8]) -> Option<&'static CommandSpec> {
    let table = CommandTable::get();
    match name.iter().position(|&b| b == b'|') {
        Some(bar) => table.lookup(&name[..bar])?.subcommand(&name[bar + 1..]),
        None => table.lookup(name),
    }
}

pub fn run(sub: &str, args: &[Bytes]) -> Outcome {
    let table = CommandTable::get();
    match sub {
        "count" => Frame::Integer(table.len() as i64).into(),
        "info" => {
            if args.len() == 2 {
                return all();
            }
            Frame::Array(
                args[2..]
                    .iter()
                    .map(|name| lookup_full(name).map_or(Frame::Null, |s| s.info.clone()))
                    .collect(),
            )
            .into()
        }
        "docs" => {
            let specs: Vec<&CommandSpec> = if args.len() == 2 {
                table.iter().collect()
            } else {
                args[2..]
                    .iter()
                    .filter_map(|name| lookup_full(name))
                    .collect()
            };
            Frame::Map(
                specs
                    .into_iter()
                    .map(|s| (Frame::bulk(s.name.as_bytes()), s.docs.clone()))
                    .collect(),
            )
            .into()
        }
        "list" => list(args),
        "getkeys" => getkeys(args, false),
        "getkeysandflags" => getkeys(args, true),
        _ => super::help(
            "COMMAND",
            &[
                "(no subcommand)",
                "    Return details about all Redis commands.",
                "COUNT",
                "    Return the total number of commands in this Redis server.",
                "LIST",
                "    Return a list of all commands in this Redis server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "GETKEYS <full-command>",
                "    Return the keys from a full Redis command.",
                "GETKEYSANDFLAGS <full-command>",
                "    Return the keys and the access flags from a full Redis command.",
            ],
        ),
    }
}

fn list(args: &[Bytes]) -> Outcome {
    let table = CommandTable::get();
    let names = table
        .iter()
        .flat_map(|s| std::iter::once(s).chain(s.subcommands.iter()))
        .map(|s| s.name.as_str());
    let filtered: Vec<&str> = match args.len() {
        2 => names.collect(),
        5 if args[2].eq_ignore_ascii_case(b"FILTERBY") => {
            let (kind, value) = (&args[3], &args[4]);
            if kind.eq_ignore_ascii_case(b"MODULE") {
                Vec::new()
            } else if kind.eq_ignore_ascii_case(b"ACLCAT") {
                let category = format!("@{}", String::from_utf8_lossy(value).to_ascii_lowercase());
                table
                    .iter()
                    .flat_map(|s| std::iter::once(s).chain(s.subcommands.iter()))
                    .filter(|s| s.acl_categories.contains(&category))
                    .map(|s| s.name.as_str())
                    .collect()
            } else if kind.eq_ignore_ascii_case(b"PATTERN") {
                names
                    .filter(|n| glob_match(value, n.as_bytes(), true))
                    .collect()
            } else {
                return Frame::error("ERR syntax error").into();
            }
        }
        _ => return Frame::error("ERR syntax error").into(),
    };
    Frame::Array(
        filtered
            .into_iter()
            .map(|n| Frame::bulk(n.as_bytes()))
            .collect(),
    )
    .into()
}

/// A key's flags; commands whose specs say `variable_flags` decide from their arguments, as
/// Redis's `setGetKeys` and `bitfieldGetKeys` do.
fn key_flags(spec: &CommandSpec, command: &[Bytes], spec_index: usize) -> Vec<String> {
    let flags = &spec.key_specs[spec_index].flags;
    if !flags.iter().any(|f| f == "variable_flags") {
        return flags.clone();
    }
    let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    match spec.name.as_str() {
        "set" if command[3..].iter().any(|a| a.eq_ignore_ascii_case(b"GET")) => {
            owned(&["RW", "access", "update"])
        }
        "set" => owned(&["OW", "update"]),
        "bitfield" => {
            let writes = command[2..]
                .iter()
                .any(|a| a.eq_ignore_ascii_case(b"SET") || a.eq_ignore_ascii_case(b"INCRBY"));
            if writes {
                owned(&["RW", "access", "update"])
            } else {
                owned(&["RO", "access"])
            }
        }
        _ => flags
            .iter()
            .filter(|f| *f != "variable_flags")
            .cloned()
            .collect(),
    }
}

fn getkeys(args: &[Bytes], with_flags: bool) -> Outcome {
    let command = &args[2..];
    let Some(spec) = CommandTable::get().lookup_request(command) else {
        return Frame::error("ERR Invalid command specified").into();
    };
    if spec.key_specs.is_empty() {
        return Frame::error("ERR The command has no key arguments").into();
    }
    if !spec.arity_ok(command.len()) {
        return Frame::error("ERR Invalid number of arguments specified for command").into();
    }
    let keys = match spec.key_positions(command) {
        Ok(keys) if !keys.is_empty() => keys,
        _ if spec.has_flag("no_mandatory_keys") => Vec::new(),
        _ => return Frame::error("ERR Invalid arguments specified for command").into(),
    };
    let out = keys
        .into_iter()
        .map(|k| {
            let key = Frame::Bulk(command[k.index].clone());
            if with_flags {
                let flags = key_flags(spec, command, k.spec)
                    .into_iter()
                    .map(|f| Frame::Simple(f.into()))
                    .collect();
                Frame::Array(vec![key, Frame::Set(flags)])
            } else {
                key
            }
        })
        .collect();
    Frame::Array(out).into()
}
