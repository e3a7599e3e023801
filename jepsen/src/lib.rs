//! AutoCache's black-box correctness harness, in the manner of Jepsen.
//!
//! Histories of operations (invocation, then ok / fail / info) are recorded in Jepsen's own
//! formats, so Knossos or Elle can re-check them elsewhere, and checked here against sequential
//! models. This crate talks to AutoCache only over the network.

/// A harness process's connection, and how replies become outcomes.
pub mod client;
/// The cluster under test: real processes in network namespaces.
pub mod cluster;
/// The counter checker (bounds on reads).
pub mod counter;
/// Reading and writing histories as Jepsen's `history.edn`.
pub mod edn;
/// Events, operations and their outcomes.
pub mod history;
/// Ctrl-C and SIGTERM: stop early, clean up.
pub mod interrupt;
/// Jepsen's older text logs of a register.
pub mod jepsen_log;
/// Keys that retire after a number of operations, as Jepsen's independent keys do.
pub mod key_rotation;
/// The linearizability checker.
pub mod linearizable;
/// The Elle-style checker of list-append transactions.
pub mod list_append;
/// Sequential specifications: register, append-only strings.
pub mod model;
/// Faults: partitions, kills, pauses, clocks, packet loss; the combined schedule.
pub mod nemesis;
/// Network namespaces, a bridge and iptables faults between nodes.
pub mod net;
/// The shapes of partitions: halves, an isolated node, a majorities ring, a bridge.
pub mod partition;
/// The membership nemesis: replica moves and leader transfers through `autocache admin`.
pub mod reconfigure;
/// The register workload's operations.
pub mod register_workload;
/// A run's HTML page: timeline, nemesis windows, throughput and latency.
pub mod report;
/// One harness run, start to verdict.
pub mod run;
/// The set checker (lost, unexpected and never-read elements).
pub mod set;
/// A node's clock flipped between a skew and the true time.
pub mod strobe;
/// Checkers' conclusions and exit codes.
pub mod verdict;
/// The workloads `jepsen test` runs: register, set, counter.
pub mod workload;

pub use history::{operations, Event, EventType, Operation, Outcome, Value};
pub use verdict::Verdict;
