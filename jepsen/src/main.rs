//! `jepsen`: AutoCache's correctness harness. `jepsen test` runs a faulty cluster and checks
//! its history; `jepsen check` re-checks a saved history.
//!
//! Exit codes: 0 valid, 1 invalid, 2 unknown (the checker could not decide, or the history
//! could not be read).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use jepsen::cluster::default_binary;
use jepsen::model::{AppendString, Register};
use jepsen::nemesis::FaultKind;
use jepsen::run::{self, TestConfig};
use jepsen::{counter, edn, jepsen_log, linearizable, list_append, operations, set, Verdict};

#[derive(Parser)]
#[command(name = "jepsen", about = "AutoCache's correctness harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a cluster in network namespaces under faults, records a history and checks it
    /// (needs root).
    Test {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// The workload: register, set, counter or list-append.
        #[arg(long, value_enum, default_value = "register")]
        workload: Workload,
        /// Faults, comma-separated: partition, partition-leader, partition-ring,
        /// partition-bridge, kill, kill-minority, kill-leader, kill-all, pause, pause-leader,
        /// clock, clock-strobe, loss; all for every one (the combined schedule); none.
        #[arg(long, default_value = "partition,kill")]
        nemesis: String,
        /// How long clients run, in seconds.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where the histories, verdict and node logs go.
        #[arg(long)]
        out: PathBuf,
        /// Client processes.
        #[arg(long, default_value_t = 6)]
        concurrency: usize,
        /// Registers, spread over slot groups.
        #[arg(long, default_value_t = 8)]
        keys: usize,
        #[arg(long, default_value_t = 16)]
        groups: u32,
        /// The autocache binary (default: the one built beside this program).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Another flag for every server, e.g. `--server-arg=--unsafe-stale-reads` (the unsafe
        /// mode that proves the harness catches stale reads).
        #[arg(long, allow_hyphen_values = true)]
        server_arg: Vec<String>,
    },
    /// Checks a saved history: Jepsen EDN (one operation map per line) or, for a register,
    /// Jepsen's text log.
    Check {
        /// What the history's operations are.
        #[arg(long, value_enum)]
        workload: Workload,
        /// Longest the checker may search before answering unknown, in seconds.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        /// The history file.
        file: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Workload {
    /// Read, write and compare-and-set on registers (per `:key` when present), checked for
    /// linearizability.
    Register,
    /// Get, put and append on string keys, checked for linearizability per key.
    Kv,
    /// Add of unique integers and read of the whole set, per key.
    Set,
    /// Add of deltas and read, per key.
    Counter,
    /// Transactions of appends to and reads of lists (Elle's list-append), checked for
    /// dependency cycles (G0, G1c, G-single, G2), aborted and intermediate reads, lost appends.
    ListAppend,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A run interrupted by Ctrl-C still removes its processes, namespaces and rules.
    jepsen::interrupt::install();
    let verdict = match cli.command {
        Command::Test {
            nodes,
            workload,
            nemesis,
            time_limit,
            seed,
            out,
            concurrency,
            keys,
            groups,
            binary,
            server_arg,
        } => test(
            workload,
            nemesis,
            binary,
            move |workload, nemeses, binary| TestConfig {
                workload,
                binary,
                out,
                nodes,
                groups,
                nemeses,
                time_limit: Duration::from_secs(time_limit),
                seed,
                concurrency,
                keys,
                server_args: server_arg,
            },
        )
        .unwrap_or_else(|e| Verdict::Unknown(format!("{e:#}"))),
        Command::Check {
            workload,
            time_limit,
            file,
        } => check(workload, Duration::from_secs(time_limit), &file)
            .unwrap_or_else(|e| Verdict::Unknown(format!("{e:#}"))),
    };
    println!("{verdict}");
    ExitCode::from(verdict.exit_code() as u8)
}

fn test(
    workload: Workload,
    nemesis: String,
    binary: Option<PathBuf>,
    config: impl FnOnce(jepsen::workload::Workload, Vec<FaultKind>, PathBuf) -> TestConfig,
) -> anyhow::Result<Verdict> {
    let workload = match workload {
        Workload::Register => jepsen::workload::Workload::Register,
        Workload::Set => jepsen::workload::Workload::Set,
        Workload::Counter => jepsen::workload::Workload::Counter,
        Workload::ListAppend => jepsen::workload::Workload::ListAppend,
        Workload::Kv => anyhow::bail!("jepsen test runs register, set, counter and list-append"),
    };
    let nemeses = FaultKind::parse_list(&nemesis).map_err(anyhow::Error::msg)?;
    let binary = binary
        .or_else(default_binary)
        .context("no autocache binary beside jepsen: build the workspace or pass --binary")?;
    run::run(&config(workload, nemeses, binary))
}

fn check(workload: Workload, time_limit: Duration, file: &PathBuf) -> anyhow::Result<Verdict> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let events = if jepsen_log::is_jepsen_log(&text) {
        jepsen_log::parse_log(&text)?
    } else {
        edn::parse_history(&text)?
    };
    let operations = operations(&events)?;
    Ok(match workload {
        Workload::Register => linearizable::check(&Register, &operations, time_limit),
        Workload::Kv => linearizable::check(&AppendString, &operations, time_limit),
        Workload::Set => set::check(&operations),
        Workload::Counter => counter::check(&operations),
        Workload::ListAppend => list_append::check(&operations),
    })
}
