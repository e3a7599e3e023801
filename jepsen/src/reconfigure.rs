//! The membership nemesis: a replica moved to another node, the leader's replica moved away,
//! leadership transferred, or slots moved to another group, driven through `autocache admin`
//! as an operator would, while other faults may be in force.
//!
//! The change runs in a thread of its own for the length of the window; healing stops it, so
//! a change may be cut off midway (a learner added but not promoted, a joint configuration
//! not finished), which is what a coordinator dying looks like to the cluster. The next
//! change of the same group completes it.

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// What the change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// A random voter of a random group replaced by a node outside the group.
    MoveReplica,
    /// The leader's replica of a random group replaced by a node outside the group.
    MoveLeader,
    /// A run of up to 64 slots of one group moved to another group (`move-slots`); a move
    /// left unfinished by an earlier window is finished first.
    MoveSlots,
    /// A random group's leadership handed to another voter.
    TransferLeader,
}

/// Slots moved at most by one change.
const SLOTS_PER_MOVE: u16 = 64;

/// One group as `autocache admin status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    pub group: u32,
    pub leader: Option<usize>,
    pub voters: Vec<usize>,
    /// The slots it owns, as inclusive runs.
    pub slots: Vec<(u16, u16)>,
}

/// A run of slots an interrupted move left between two groups: (first, last, to).
pub type InFlight = (u16, u16, u32);

/// Reads the group table of `autocache admin status`.
pub fn parse_status(status: &str) -> Vec<GroupRow> {
    let ids =
        |field: &str| -> Vec<usize> { field.split(',').filter_map(|id| id.parse().ok()).collect() };
    status
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("GROUP"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some(GroupRow {
                group: fields.first()?.parse().ok()?,
                leader: fields.get(2)?.parse().ok(),
                voters: ids(fields.get(4)?),
                slots: runs(fields.get(1)?),
            })
        })
        .collect()
}

/// `first-last,slot,...` as inclusive runs.
fn runs(field: &str) -> Vec<(u16, u16)> {
    field
        .split(',')
        .filter_map(|run| {
            let (first, last) = run.split_once('-').unwrap_or((run, run));
            Some((first.parse().ok()?, last.parse().ok()?))
        })
        .collect()
}

/// Reads the `MOVING first-last from A to B` lines of `autocache admin status`.
pub fn parse_moving(status: &str) -> Vec<InFlight> {
    status
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.first() != Some(&"MOVING") {
                return None;
            }
            let (first, last) = *runs(fields.get(1)?).first()?;
            Some((first, last, fields.get(5)?.parse().ok()?))
        })
        .collect()
}

/// The `autocache admin` arguments for a change of `kind` on a cluster of the nodes `ids`
/// laid out as `groups`, or None when nothing fits (no group has a leader). A move for which
/// no node is outside the group (as many nodes as replicas) becomes a leadership transfer.
pub fn plan(
    kind: ChangeKind,
    groups: &[GroupRow],
    moving: &[InFlight],
    ids: &[usize],
    rng: &mut SmallRng,
) -> Option<Vec<String>> {
    let led: Vec<&GroupRow> = groups.iter().filter(|g| g.leader.is_some()).collect();
    if kind == ChangeKind::MoveSlots {
        return plan_slot_move(groups, &led, moving, rng);
    }
    let group = led.choose(rng)?;
    let leader = group.leader?;
    let outside: Vec<usize> = ids
        .iter()
        .copied()
        .filter(|n| !group.voters.contains(n))
        .collect();
    let others: Vec<usize> = group
        .voters
        .iter()
        .copied()
        .filter(|&v| v != leader)
        .collect();
    let transfer = |rng: &mut SmallRng| {
        let to = others.choose(rng)?;
        Some(vec![
            "transfer-leader".into(),
            group.group.to_string(),
            to.to_string(),
        ])
    };
    let from = match kind {
        ChangeKind::TransferLeader | ChangeKind::MoveSlots => return transfer(rng),
        ChangeKind::MoveLeader => leader,
        ChangeKind::MoveReplica => *group.voters.choose(rng)?,
    };
    match outside.choose(rng) {
        Some(to) => Some(vec![
            "move-replica".into(),
            group.group.to_string(),
            from.to_string(),
            to.to_string(),
        ]),
        None => transfer(rng),
    }
}

/// `move-slots` arguments: an unfinished move first, else up to [`SLOTS_PER_MOVE`] slots of
/// one group's run to another group with a leader.
fn plan_slot_move(
    groups: &[GroupRow],
    led: &[&GroupRow],
    moving: &[InFlight],
    rng: &mut SmallRng,
) -> Option<Vec<String>> {
    let (first, last, to) = match moving.choose(rng) {
        Some(&unfinished) => unfinished,
        None => {
            let to = led.choose(rng)?.group;
            let runs: Vec<(u16, u16)> = groups
                .iter()
                .filter(|g| g.group != to)
                .flat_map(|g| g.slots.iter().copied())
                .collect();
            let &(start, end) = runs.choose(rng)?;
            // Most moves take a slot the workloads use, so they meet the move.
            let aimed = workload_slots()
                .into_iter()
                .filter(|slot| (start..=end).contains(slot))
                .collect::<Vec<_>>();
            let first = match aimed.choose(rng) {
                Some(&slot) if rng.random_bool(0.75) => slot,
                _ => rng.random_range(start..=end),
            };
            let last = end.min(first.saturating_add(rng.random_range(0..SLOTS_PER_MOVE)));
            (first, last, to)
        }
    };
    Some(vec![
        "move-slots".into(),
        format!("{first}-{last}"),
        to.to_string(),
    ])
}

/// The slots of the first keys of every workload (see `workload.rs`, `register_workload.rs`).
fn workload_slots() -> Vec<u16> {
    (0..64)
        .flat_map(|key: u32| {
            [
                format!("jepsen-r{key}"),
                format!("jepsen-s{key}"),
                format!("jepsen-c{key}"),
                // list-append's hash tags
                format!("{{{key}}}"),
            ]
        })
        .map(|key| tiering::slot_of(key.as_bytes()))
        .collect()
}

/// A change under way.
#[derive(Debug)]
pub struct Change {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<String>>,
}

/// How long finishing interrupted slot moves may take.
const RESUME_FOR: Duration = Duration::from_secs(60);

impl Change {
    /// Starts a change of `kind` through `binary`'s admin command, asking the nodes at `admin`
    /// (raft addresses) in turn, on a cluster of the nodes `ids`.
    pub fn start(
        binary: PathBuf,
        admin: Vec<SocketAddrV4>,
        ids: Vec<usize>,
        kind: ChangeKind,
        seed: u64,
    ) -> Change {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(seed);
            let nodes = admin.len();
            let mut last = String::from("no node answered");
            for addr in admin.iter().cycle().take(nodes * 3) {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let status = match admin_command(&binary, *addr, &["status".into()], &stopping) {
                    Ok(status) => status,
                    Err(error) => {
                        last = error;
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                };
                let groups = parse_status(&status);
                let moving = parse_moving(&status);
                let Some(args) = plan(kind, &groups, &moving, &ids, &mut rng) else {
                    last = "no group has a leader".into();
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                };
                let started = Instant::now();
                return match admin_command(&binary, *addr, &args, &stopping) {
                    Ok(_) => format!(
                        "{} done in {:.1}s",
                        args.join(" "),
                        started.elapsed().as_secs_f64()
                    ),
                    Err(error) => format!("{} not done: {error}", args.join(" ")),
                };
            }
            format!("no change made: {last}")
        });
        Change {
            stop,
            thread: Some(thread),
        }
    }

    /// Starts `autocache admin ARGS`, asking the node at `admin`, cut off if the window ends
    /// first.
    pub fn run(binary: PathBuf, admin: SocketAddrV4, args: Vec<String>) -> Change {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            match admin_command(&binary, admin, &args, &stopping) {
                Ok(_) => format!(
                    "{} done in {:.1}s",
                    args.join(" "),
                    started.elapsed().as_secs_f64()
                ),
                Err(error) => format!("{} not done: {error}", args.join(" ")),
            }
        });
        Change {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the change (cutting it off if it is still running) and says what it did.
    pub fn finish(&mut self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => "the change's thread panicked".into(),
            None => "finished already".into(),
        }
    }
}

/// Finishes every slot move `autocache admin status` shows in flight, as an operator would
/// rerun an interrupted `move-slots` (its slots answer TRYAGAIN until then).
pub fn resume_slot_moves(binary: &PathBuf, admin: &[SocketAddrV4]) -> String {
    let never = AtomicBool::new(false);
    let deadline = Instant::now() + RESUME_FOR;
    let mut last = String::from("no node answered");
    for addr in admin.iter().cycle() {
        if Instant::now() > deadline {
            break;
        }
        let moving = match admin_command(binary, *addr, &["status".into()], &never) {
            Ok(status) => parse_moving(&status),
            Err(error) => {
                last = error;
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
        };
        let Some(&(first, last_slot, to)) = moving.first() else {
            return "no slot move left unfinished".into();
        };
        let args = [
            "move-slots".to_string(),
            format!("{first}-{last_slot}"),
            to.to_string(),
        ];
        if let Err(error) = admin_command(binary, *addr, &args, &never) {
            last = error;
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    format!("slot moves left unfinished: {last}")
}

impl Drop for Change {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Runs `autocache admin --node ADDR ARGS` until it exits or `stop` is set (then it is killed:
/// an interrupted coordinator). Returns its output, or why it failed.
pub fn admin_command(
    binary: &PathBuf,
    addr: SocketAddrV4,
    args: &[String],
    stop: &AtomicBool,
) -> Result<String, String> {
    let mut child: Child = Command::new(binary)
        .arg("admin")
        .args(["--node", &addr.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {}: {e}", binary.display()))?;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if stop.load(Ordering::Relaxed) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("interrupted by the end of the window".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        // anyhow's report: `Error: ...` (then causes, and a backtrace if RUST_BACKTRACE is set).
        let stderr = String::from_utf8_lossy(&output.stderr);
        let error = stderr
            .lines()
            .find(|line| line.starts_with("Error:"))
            .or_else(|| stderr.lines().last())
            .unwrap_or("failed");
        Err(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE: [usize; 5] = [1, 2, 3, 4, 5];

    const STATUS: &str = "\
GROUP        SLOTS  LEADER   TERM  VOTERS        LEARNERS   STATE       APPLIED
    0  0-99,120-8191       2      3  1,2,3         -          ok             4419
    1   8192-16383       -      4  2,3,4         5          electing         12

NODE  CLIENT                 RAFT                   REPLICAS    LEADS
   1  10.0.0.1:6379          10.0.0.1:7379                 1        0

MOVING  100-119  from 0 to 1
";

    #[test]
    fn the_status_table_parses() {
        assert_eq!(
            parse_status(STATUS),
            vec![
                GroupRow {
                    group: 0,
                    leader: Some(2),
                    voters: vec![1, 2, 3],
                    slots: vec![(0, 99), (120, 8191)],
                },
                GroupRow {
                    group: 1,
                    leader: None,
                    voters: vec![2, 3, 4],
                    slots: vec![(8192, 16383)],
                },
            ]
        );
        assert_eq!(parse_moving(STATUS), vec![(100, 119, 1)]);
    }

    #[test]
    fn slot_moves_finish_what_was_left_then_move_a_run_to_a_led_group() {
        let groups = parse_status(STATUS);
        let mut rng = SmallRng::seed_from_u64(3);
        let args = plan(
            ChangeKind::MoveSlots,
            &groups,
            &parse_moving(STATUS),
            &FIVE,
            &mut rng,
        );
        assert_eq!(args.unwrap(), ["move-slots", "100-119", "1"]);
        for _ in 0..50 {
            let args = plan(ChangeKind::MoveSlots, &groups, &[], &FIVE, &mut rng).unwrap();
            // Only group 0 leads: slots of group 1 move to it.
            assert_eq!((args[0].as_str(), args[2].as_str()), ("move-slots", "0"));
            let (first, last) = args[1].split_once('-').unwrap();
            let (first, last): (u16, u16) = (first.parse().unwrap(), last.parse().unwrap());
            assert!(
                8192 <= first && first <= last && last - first < 64,
                "{args:?}"
            );
        }
    }

    #[test]
    fn changes_target_a_led_group_and_a_node_outside_it() {
        let groups = parse_status(STATUS);
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..50 {
            let args = plan(ChangeKind::MoveLeader, &groups, &[], &FIVE, &mut rng).unwrap();
            assert_eq!(args[..3], ["move-replica", "0", "2"]);
            assert!(["4", "5"].contains(&args[3].as_str()), "{args:?}");
            let args = plan(ChangeKind::MoveReplica, &groups, &[], &FIVE, &mut rng).unwrap();
            assert!(["1", "2", "3"].contains(&args[2].as_str()), "{args:?}");
            let args = plan(ChangeKind::TransferLeader, &groups, &[], &FIVE, &mut rng).unwrap();
            assert!(args == ["transfer-leader", "0", "1"] || args == ["transfer-leader", "0", "3"]);
        }
        // With no node outside the group, a move becomes a transfer.
        let args = plan(ChangeKind::MoveReplica, &groups, &[], &[1, 2, 3], &mut rng).unwrap();
        assert_eq!(args[0], "transfer-leader");
    }
}
