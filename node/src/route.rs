//! Where a command runs: on this node only, as a read of some groups' keyspaces (after a
//! linearizability fence), or as a write through one group's raft log.

use bytes::Bytes;
use resp::command_table::CommandSpec;
use smallvec::SmallVec;
use tiering::{slot_of, Db};

/// Group ids, few per command.
pub type GroupIds = SmallVec<[u32; 4]>;

/// How a command is served.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// The server answers it without reading data (PING, CONFIG, PUBLISH, ...).
    Local,
    /// It reads the keyspaces of these groups.
    Read(GroupIds),
    /// It changes data in this group: one entry of its log.
    Write(u32),
    /// It changes every group (FLUSHALL, FLUSHDB): one entry in each group's log.
    WriteAll,
    /// Its keys belong to different groups, so no single log can apply it atomically.
    CrossSlot,
    /// It cannot run with several groups; the error says why.
    Refused(&'static str),
}

/// The reply to a command whose keys span groups, as Redis Cluster words it.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// Routes a command that passed the arity and permission checks.
pub fn route(db: &Db, spec: &CommandSpec, args: &[Bytes]) -> Route {
    if !Db::handles(spec) {
        return match spec.name.as_str() {
            // A watch starts from a linearizable view of the key's group.
            "watch" => Route::Read(key_groups(db, &args[1..])),
            name if name.starts_with("cluster|") => {
                match crate::cmd::cluster::slot_argument(&name[8..], args) {
                    Some(slot) => Route::Read(smallvec::smallvec![db.group_of_slot(slot) as u32]),
                    None => Route::Local,
                }
            }
            _ => Route::Local,
        };
    }
    if !spec.has_flag("write") {
        return Route::Read(db.groups_of(spec, args).iter().map(|&g| g as u32).collect());
    }
    if matches!(spec.name.as_str(), "flushall" | "flushdb") {
        return Route::WriteAll;
    }
    write_route(db, spec, args)
}

/// The group a write command goes to.
fn write_route(db: &Db, spec: &CommandSpec, args: &[Bytes]) -> Route {
    if spec.name == "sort" && db.groups() > 1 {
        if let Some(refusal) = sort_pattern_refusal(args) {
            return Route::Refused(refusal);
        }
    }
    if let Some(index) = spec.single_key_index(args.len()) {
        return Route::Write(db.group_of_slot(slot_of(&args[index])) as u32);
    }
    match spec.key_positions(args) {
        Ok(keys) => {
            let groups = key_groups(db, keys.iter().map(|k| &args[k.index]));
            match groups.as_slice() {
                [] => Route::Write(0),
                [group] => Route::Write(*group),
                _ => Route::CrossSlot,
            }
        }
        // The command rejects its own arguments when it applies, changing nothing; any group's
        // log can carry it.
        Err(_) => Route::Write(0),
    }
}

/// The distinct groups of `keys`, in order.
pub fn key_groups<'a>(db: &Db, keys: impl IntoIterator<Item = &'a Bytes>) -> GroupIds {
    let mut groups: GroupIds = keys
        .into_iter()
        .map(|key| db.group_of_slot(slot_of(key)) as u32)
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// SORT ... STORE applies in its group's log, so it may not read keys named by BY or GET
/// patterns, which can live in other groups (Redis Cluster refuses them for the same reason).
fn sort_pattern_refusal(args: &[Bytes]) -> Option<&'static str> {
    let mut i = 2;
    while i + 1 < args.len() {
        let option = &args[i];
        let value = &args[i + 1];
        if option.eq_ignore_ascii_case(b"BY") && value.contains(&b'*') {
            return Some("ERR BY option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots.");
        }
        if option.eq_ignore_ascii_case(b"GET") && value.as_ref() != b"#" {
            return Some("ERR GET option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots.");
        }
        i += 1;
    }
    None
}
