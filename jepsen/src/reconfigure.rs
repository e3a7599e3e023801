//! The membership nemesis: a replica moved to another node, the leader's replica moved away,
//! or leadership transferred, driven through `autocache admin` as an operator would, while
//! other faults may be in force.
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
use rand::SeedableRng;

/// What the change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// A random voter of a random group replaced by a node outside the group.
    MoveReplica,
    /// The leader's replica of a random group replaced by a node outside the group.
    MoveLeader,
    /// A random group's leadership handed to another voter.
    TransferLeader,
}

/// One group as `autocache admin status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    pub group: u32,
    pub leader: Option<usize>,
    pub voters: Vec<usize>,
}

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
            })
        })
        .collect()
}

/// The `autocache admin` arguments for a change of `kind` on a cluster of nodes `1..=nodes`
/// laid out as `groups`, or None when nothing fits (no group has a leader). A move for which
/// no node is outside the group (as many nodes as replicas) becomes a leadership transfer.
pub fn plan(
    kind: ChangeKind,
    groups: &[GroupRow],
    nodes: usize,
    rng: &mut SmallRng,
) -> Option<Vec<String>> {
    let led: Vec<&GroupRow> = groups.iter().filter(|g| g.leader.is_some()).collect();
    let group = led.choose(rng)?;
    let leader = group.leader?;
    let outside: Vec<usize> = (1..=nodes).filter(|n| !group.voters.contains(n)).collect();
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
        ChangeKind::TransferLeader => return transfer(rng),
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

/// A change under way.
#[derive(Debug)]
pub struct Change {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<String>>,
}

impl Change {
    /// Starts a change of `kind` through `binary`'s admin command, asking the nodes at `admin`
    /// (raft addresses) in turn.
    pub fn start(binary: PathBuf, admin: Vec<SocketAddrV4>, kind: ChangeKind, seed: u64) -> Change {
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
                let Some(args) = plan(kind, &parse_status(&status), nodes, &mut rng) else {
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

impl Drop for Change {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Runs `autocache admin --node ADDR ARGS` until it exits or `stop` is set (then it is killed:
/// an interrupted coordinator). Returns its output, or why it failed.
fn admin_command(
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
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(stderr.lines().last().unwrap_or("failed").to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
GROUP        SLOTS  LEADER   TERM  VOTERS        LEARNERS   STATE       APPLIED
    0       0-8191       2      3  1,2,3         -          ok             4419
    1   8192-16383       -      4  2,3,4         5          electing         12

NODE  CLIENT                 RAFT                   REPLICAS    LEADS
   1  10.0.0.1:6379          10.0.0.1:7379                 1        0
";

    #[test]
    fn the_status_table_parses() {
        assert_eq!(
            parse_status(STATUS),
            vec![
                GroupRow {
                    group: 0,
                    leader: Some(2),
                    voters: vec![1, 2, 3]
                },
                GroupRow {
                    group: 1,
                    leader: None,
                    voters: vec![2, 3, 4]
                },
            ]
        );
    }

    #[test]
    fn changes_target_a_led_group_and_a_node_outside_it() {
        let groups = parse_status(STATUS);
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..50 {
            let args = plan(ChangeKind::MoveLeader, &groups, 5, &mut rng).unwrap();
            assert_eq!(args[..3], ["move-replica", "0", "2"]);
            assert!(["4", "5"].contains(&args[3].as_str()), "{args:?}");
            let args = plan(ChangeKind::MoveReplica, &groups, 5, &mut rng).unwrap();
            assert!(["1", "2", "3"].contains(&args[2].as_str()), "{args:?}");
            let args = plan(ChangeKind::TransferLeader, &groups, 5, &mut rng).unwrap();
            assert!(args == ["transfer-leader", "0", "1"] || args == ["transfer-leader", "0", "3"]);
        }
        // With no node outside the group, a move becomes a transfer.
        let args = plan(ChangeKind::MoveReplica, &groups, 3, &mut rng).unwrap();
        assert_eq!(args[0], "transfer-leader");
    }
}
