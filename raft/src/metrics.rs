//! Prometheus series of a node's groups: leadership, log positions, replication lag, proposal
//! outcomes, leader changes and WAL fsync durations.
//!
//! Counters are counted where things happen (proposal outcomes in `client.rs`, leader changes by
//! a watcher per group); gauges are read from openraft's metrics when scraped
//! ([`Groups::refresh_metrics`]).

use openraft::async_runtime::watch::WatchReceiver;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::groups::Groups;
use crate::typ::GroupId;

/// Per-group series, labelled by `group` (and `peer` for replication lag).
pub struct RaftMetrics {
    pub(crate) proposals: IntCounterVec,
    /// `proposals`' counters by group and outcome, resolved once: counting a write must not
    /// hash label values.
    proposal_counters: Vec<[IntCounter; 3]>,
    pub(crate) leader_changes: IntCounterVec,
    has_leader: IntGaugeVec,
    is_leader: IntGaugeVec,
    term: IntGaugeVec,
    last_log_index: IntGaugeVec,
    committed_index: IntGaugeVec,
    applied_index: IntGaugeVec,
    replication_lag: IntGaugeVec,
    fsync_seconds: Histogram,
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge")
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
}

/// What became of a proposal, as a label value.
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub(crate) enum ProposalOutcome {
    /// Applied: its reply went back to the client.
    Committed,
    /// Certainly not applied (this node did not lead the group).
    Failed,
    /// Proposed, outcome unknown (leadership lost, node stopping).
    Uncertain,
}

impl ProposalOutcome {
    fn label(self) -> &'static str {
        match self {
            ProposalOutcome::Committed => "committed",
            ProposalOutcome::Failed => "failed",
            ProposalOutcome::Uncertain => "uncertain",
        }
    }
}

impl RaftMetrics {
    pub(crate) fn new(groups: u32, fsync_seconds: Histogram) -> RaftMetrics {
        let group = &["group"];
        let proposals = counter(
            "autocache_raft_proposals_total",
            "Writes proposed to a group's log, by outcome (committed, failed, uncertain); proposed minus these is pending.",
            &["group", "outcome"],
        );
        let proposal_counters = (0..groups)
            .map(|g| {
                let g = g.to_string();
                [
                    ProposalOutcome::Committed,
                    ProposalOutcome::Failed,
                    ProposalOutcome::Uncertain,
                ]
                .map(|outcome| proposals.with_label_values(&[&g, outcome.label()]))
            })
            .collect();
        RaftMetrics {
            proposals,
            proposal_counters,
            leader_changes: counter(
                "autocache_raft_leader_changes_total",
                "Times this node saw the group's leader change (including to none).",
                group,
            ),
            has_leader: gauge(
                "autocache_raft_has_leader",
                "1 if this node knows the group's leader.",
                group,
            ),
            is_leader: gauge(
                "autocache_raft_is_leader",
                "1 if this node leads the group.",
                group,
            ),
            term: gauge(
                "autocache_raft_term",
                "The group's current raft term on this node.",
                group,
            ),
            last_log_index: gauge(
                "autocache_raft_last_log_index",
                "Index of the last entry in this node's log of the group.",
                group,
            ),
            committed_index: gauge(
                "autocache_raft_committed_index",
                "Index of the last entry this node knows committed.",
                group,
            ),
            applied_index: gauge(
                "autocache_raft_applied_index",
                "Index of the last entry applied to this node's keyspace.",
                group,
            ),
            replication_lag: gauge(
                "autocache_raft_replication_lag_entries",
                "On the leader: entries of its log a follower has not acknowledged.",
                &["group", "peer"],
            ),
            fsync_seconds,
        }
    }

    /// Adds every series to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.proposals.clone()))?;
        registry.register(Box::new(self.leader_changes.clone()))?;
        for gauge in [
            &self.has_leader,
            &self.is_leader,
            &self.term,
            &self.last_log_index,
            &self.committed_index,
            &self.applied_index,
            &self.replication_lag,
        ] {
            registry.register(Box::new(gauge.clone()))?;
        }
        registry.register(Box::new(self.fsync_seconds.clone()))
    }

    pub(crate) fn proposal(&self, group: GroupId, outcome: ProposalOutcome) {
        if let Some(counters) = self.proposal_counters.get(group as usize) {
            counters[outcome as usize].inc();
        }
    }
}

impl Groups {
    /// Sets the gauges from openraft's current metrics of every group this node replicates.
    pub fn refresh_metrics(&self) {
        let metrics = self.metrics();
        for group in 0..self.len() as GroupId {
            let Some(raft) = self.raft(group) else {
                continue;
            };
            let label = group.to_string();
            let labels = [label.as_str()];
            let m = raft.metrics().borrow_watched().clone();
            let leading = m.current_leader == Some(self.node_id());
            metrics
                .has_leader
                .with_label_values(&labels)
                .set(m.current_leader.is_some() as i64);
            metrics
                .is_leader
                .with_label_values(&labels)
                .set(leading as i64);
            metrics
                .term
                .with_label_values(&labels)
                .set(m.current_term as i64);
            let last = m.last_log_index.unwrap_or(0);
            metrics
                .last_log_index
                .with_label_values(&labels)
                .set(last as i64);
            metrics
                .committed_index
                .with_label_values(&labels)
                .set(m.local_committed.map_or(0, |id| id.index) as i64);
            metrics
                .applied_index
                .with_label_values(&labels)
                .set(m.last_applied.map_or(0, |id| id.index) as i64);
            // A follower reports no lag: only the leader knows what its followers hold.
            for (peer, matched) in m.replication.iter().flatten() {
                if *peer == self.node_id() {
                    continue;
                }
                let matched = matched.map_or(0, |id| id.index);
                metrics
                    .replication_lag
                    .with_label_values(&[label.as_str(), &peer.to_string()])
                    .set(last.saturating_sub(matched) as i64);
            }
            if !leading {
                // Stale lag series of a former leadership would read as a lagging follower.
                for peer in self.placement().replicas_of(group) {
                    let _ = metrics
                        .replication_lag
                        .remove_label_values(&[label.as_str(), &peer.to_string()]);
                }
            }
        }
    }
}
