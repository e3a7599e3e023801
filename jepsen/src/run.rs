//! One harness run: start a cluster, run clients and a nemesis until the time limit, heal
//! everything, check that every key still serves a read and a write, record the history and
//! check it.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::client::Client;
use crate::cluster::{Cluster, ClusterConfig, LIBFAKETIME};
use crate::edn::event_line;
use crate::history::{operations, Event, EventType, Value};
use crate::interrupt;
use crate::key_rotation::KeyRotation;
use crate::nemesis::{self, FaultKind};
use crate::report::{self, Window};
use crate::verdict::Verdict;
use crate::workload::{Completion, Op, Workload};

/// What to run.
#[derive(Clone, Debug)]
pub struct TestConfig {
    pub workload: Workload,
    pub binary: PathBuf,
    pub out: PathBuf,
    pub nodes: usize,
    pub groups: u32,
    pub nemeses: Vec<FaultKind>,
    pub time_limit: Duration,
    pub seed: u64,
    pub concurrency: usize,
    pub keys: usize,
    /// More `autocache server` flags.
    pub server_args: Vec<String>,
}

/// The history being recorded, shared by the client threads.
struct Recorder {
    workload: Workload,
    started: Instant,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn record(
        &self,
        process: u64,
        kind: EventType,
        op: &Op,
        key: usize,
        value: Value,
        error: Option<String>,
    ) {
        let event = Event {
            process,
            kind,
            f: op.f().to_string(),
            key: Some(key.to_string()),
            value,
            time: Some(self.started.elapsed().as_nanos() as u64),
            error,
        };
        self.events.lock().expect("recorder lock").push(event);
    }

    /// Performs one operation, recording its invocation and completion.
    fn perform(&self, process: u64, client: &mut Client, key: usize, op: &Op) -> Completion {
        self.record(process, EventType::Invoke, op, key, op.input(), None);
        let completion = self.workload.perform(client, key, op);
        let (kind, value, error) = match &completion {
            Completion::Ok(value) => (EventType::Ok, value.clone(), None),
            Completion::Fail(error) => (EventType::Fail, op.input(), error.clone()),
            Completion::Info(error) => (EventType::Info, op.input(), Some(error.clone())),
        };
        self.record(process, kind, op, key, value, error);
        completion
    }
}

/// Runs the test; returns the verdict (and writes everything to `out`).
pub fn run(config: &TestConfig) -> anyhow::Result<Verdict> {
    let together = config.workload.keys_retiring_together();
    if config.keys == 0 || !config.keys.is_multiple_of(together) {
        anyhow::bail!(
            "--keys must be a positive multiple of {together} for {}",
            config.workload
        );
    }
    fs::create_dir_all(&config.out).with_context(|| format!("create {}", config.out.display()))?;
    let faketime = config.nemeses.iter().any(|k| k.needs_faketime());
    if faketime && !std::path::Path::new(LIBFAKETIME).exists() {
        anyhow::bail!("the clock nemesis needs {LIBFAKETIME} (Debian's libfaketime; scripts/setup.sh installs it)");
    }
    let mut cluster = Cluster::start(ClusterConfig {
        binary: config.binary.clone(),
        dir: config.out.join("cluster"),
        nodes: config.nodes,
        groups: config.groups,
        server_args: config.server_args.clone(),
        faketime,
    })?;
    cluster.wait_ready(Duration::from_secs(60))?;
    let recorder = Arc::new(Recorder {
        workload: config.workload,
        started: Instant::now(),
        events: Mutex::new(Vec::new()),
    });
    let deadline = Instant::now() + config.time_limit;
    let fresh = Arc::new(AtomicI64::new(1));
    let rotation = Arc::new(KeyRotation::new(
        config.keys,
        config.workload.keys_retiring_together(),
        config.workload.ops_per_key(),
    ));
    let addrs: Vec<_> = (1..=config.nodes).map(|n| cluster.client_addr(n)).collect();

    let workers: Vec<_> = (0..config.concurrency)
        .map(|worker| {
            let recorder = recorder.clone();
            let fresh = fresh.clone();
            let rotation = rotation.clone();
            let addrs = addrs.clone();
            let (keys, concurrency, seed) = (config.keys, config.concurrency as u64, config.seed);
            let config_workload = config.workload;
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(1_000_003) + worker as u64);
                let mut process = worker as u64;
                let mut client = Client::new(addrs[worker % addrs.len()]);
                let mut last_seen = HashMap::new();
                while Instant::now() < deadline && !interrupt::interrupted() {
                    let key = rotation.next(rng.random_range(0..keys));
                    let op = config_workload.next_op(
                        &mut rng,
                        &mut || fresh.fetch_add(1, Ordering::Relaxed),
                        key,
                        last_seen.get(&key).copied(),
                    );
                    match recorder.perform(process, &mut client, key, &op) {
                        Completion::Ok(Value::Int(v)) => {
                            last_seen.insert(key, v);
                        }
                        Completion::Ok(Value::List(pair)) => {
                            if let Some(Value::Int(v)) = pair.get(1) {
                                last_seen.insert(key, *v);
                            }
                        }
                        // Jepsen's rule: a process whose operation's outcome is unknown is
                        // abandoned; its successor gets a new number.
                        Completion::Info(_) => {
                            process += concurrency;
                            client = Client::new(addrs[rng.random_range(0..addrs.len())]);
                        }
                        _ => {}
                    }
                    std::thread::sleep(Duration::from_millis(rng.random_range(0..20)));
                }
            })
        })
        .collect();

    let mut windows = Vec::new();
    let mut faults_ok = true;
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let mut log = fs::File::create(config.out.join("nemesis.log"))?;
    // A node can be replaced only where the others can hold every group's replicas (the
    // cluster runs min(nodes, 3) per group): not on three nodes.
    let nemeses: Vec<FaultKind> = config
        .nemeses
        .iter()
        .copied()
        .filter(|&kind| kind != FaultKind::ReplaceNode || config.nodes > 3)
        .collect();
    if !nemeses.is_empty() {
        while Instant::now() + Duration::from_secs(8) < deadline && !interrupt::interrupted() {
            interrupt::sleep(Duration::from_secs(2));
            let start_ns = recorder.started.elapsed().as_nanos() as u64;
            let mut faults = Vec::new();
            for kind in nemesis::choose(&nemeses, &mut rng) {
                match nemesis::install(&mut cluster, kind, &mut rng) {
                    Ok(fault) => {
                        writeln!(log, "{start_ns} installed {fault}")?;
                        faults.push(fault);
                    }
                    Err(e) => {
                        writeln!(log, "{start_ns} install {kind} failed: {e}")?;
                        faults_ok = false;
                        break;
                    }
                }
            }
            if faults_ok {
                interrupt::sleep(Duration::from_secs(5));
            }
            let end_ns = recorder.started.elapsed().as_nanos() as u64;
            for fault in faults.iter_mut().rev() {
                match nemesis::heal(&mut cluster, fault) {
                    Ok(()) => writeln!(log, "{end_ns} healed {fault}")?,
                    Err(e) => {
                        writeln!(log, "{end_ns} heal {fault} failed: {e}")?;
                        faults_ok = false;
                    }
                }
            }
            if faults
                .iter()
                .any(|fault| fault.kind == FaultKind::MoveSlots)
            {
                let finished = nemesis::finish_slot_moves(&cluster);
                writeln!(log, "{end_ns} after the window: {finished}")?;
            }
            for fault in faults.iter().filter(|f| f.kind == FaultKind::ReplaceNode) {
                let replaced = nemesis::finish_replacement(&mut cluster, fault.nodes[0]);
                writeln!(log, "{end_ns} after the window: {replaced}")?;
            }
            windows.push(Window {
                fault: faults
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" + "),
                start_ns,
                end_ns,
            });
            if !faults_ok {
                break;
            }
        }
    }
    for worker in workers {
        let _ = worker.join();
    }
    if interrupt::interrupted() {
        let events = std::mem::take(&mut *recorder.events.lock().expect("recorder lock"));
        write_history(config, &events, &windows)?;
        let verdict = Verdict::Unknown(format!(
            "interrupted; the history so far is in {}",
            config.out.display()
        ));
        let summary = serde_json::json!({ "interrupted": true, "seed": config.seed });
        write_report(config, &events, &windows, &verdict, &summary)?;
        return Ok(verdict);
    }

    // Everything healed: every key must serve a read and a write within 30 s.
    let final_ok = final_reads_and_writes(&mut cluster, &recorder, config, &fresh, rotation.used());

    let events = std::mem::take(&mut *recorder.events.lock().expect("recorder lock"));
    write_history(config, &events, &windows)?;
    let operations = operations(&events)?;
    let verdict = config.workload.check(&operations, Duration::from_secs(120));
    let kinds_ok = config.workload.kinds().iter().all(|f| {
        operations
            .iter()
            .any(|o| o.f == *f && matches!(o.outcome, crate::history::Outcome::Ok(_)))
    });
    let count = |kind: EventType| events.iter().filter(|e| e.kind == kind).count();
    let summary = serde_json::json!({
        "operations": operations.len(),
        "ok": count(EventType::Ok),
        "fail": count(EventType::Fail),
        "info": count(EventType::Info),
        "faults": windows.iter().map(|w| &w.fault).collect::<Vec<_>>(),
        "faults_installed_and_healed": faults_ok,
        "every_operation_kind_succeeded": kinds_ok,
        "final_read_and_write_on_every_key": final_ok,
        "seed": config.seed,
        "checker": verdict.to_string(),
    });
    fs::write(
        config.out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    fs::write(config.out.join("verdict.txt"), format!("{verdict}\n"))?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    let verdict = match verdict {
        Verdict::Valid if !(faults_ok && kinds_ok && final_ok) => Verdict::Unknown(format!(
            "the history is linearizable, but the run is not a pass: faults installed and healed: \
             {faults_ok}, every operation kind succeeded: {kinds_ok}, final read and write on every key: {final_ok}"
        )),
        verdict => verdict,
    };
    write_report(config, &events, &windows, &verdict, &summary)?;
    Ok(verdict)
}

/// Writes `report.html`: the verdict, the timeline, throughput and latency.
fn write_report(
    config: &TestConfig,
    events: &[Event],
    windows: &[Window],
    verdict: &Verdict,
    summary: &serde_json::Value,
) -> anyhow::Result<()> {
    let title = format!(
        "{} on {} nodes, nemesis {}, seed {}",
        config.workload,
        config.nodes,
        if config.nemeses.is_empty() {
            "none".to_string()
        } else {
            config
                .nemeses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        },
        config.seed
    );
    let page = report::render(
        &report::Header {
            title: &title,
            verdict: &verdict.to_string(),
            summary,
        },
        events,
        windows,
        config.concurrency as u64,
    );
    fs::write(config.out.join("report.html"), page)?;
    Ok(())
}

fn final_reads_and_writes(
    cluster: &mut Cluster,
    recorder: &Recorder,
    config: &TestConfig,
    fresh: &AtomicI64,
    keys: std::ops::Range<usize>,
) -> bool {
    let _ = cluster.net().heal();
    for node in 1..=config.nodes {
        if !cluster.is_running(node) {
            let _ = cluster.start_node(node);
        }
        cluster.resume(node);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let process = 1_000_000;
    let mut client = Client::new(cluster.client_addr(1));
    keys.into_iter().all(|key| {
        // The write, then the read; each attempt with a fresh value, since a retried write
        // whose first attempt ended unknown may have applied too.
        (0..2).all(|step| loop {
            let [write, read] = config
                .workload
                .final_ops(key, fresh.fetch_add(1, Ordering::Relaxed));
            let op = if step == 0 { write } else { read };
            match recorder.perform(process, &mut client, key, &op) {
                Completion::Ok(_) => break true,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
                _ => break false,
            }
        })
    })
}

fn write_history(config: &TestConfig, events: &[Event], windows: &[Window]) -> anyhow::Result<()> {
    let mut edn = fs::File::create(config.out.join("history.edn"))?;
    let mut jsonl = fs::File::create(config.out.join("history.jsonl"))?;
    for (index, event) in events.iter().enumerate() {
        writeln!(edn, "{}", event_line(event, index))?;
        let json = serde_json::json!({
            "index": index,
            "process": event.process,
            "type": event.kind.keyword(),
            "f": event.f,
            "key": event.key,
            "value": event.value.to_string(),
            "time": event.time,
            "error": event.error,
        });
        writeln!(jsonl, "{json}")?;
    }
    let mut nemesis = fs::File::create(config.out.join("nemesis.jsonl"))?;
    for window in windows {
        let json = serde_json::json!({
            "fault": window.fault,
            "start_ns": window.start_ns,
            "end_ns": window.end_ns,
        });
        writeln!(nemesis, "{json}")?;
    }
    Ok(())
}
