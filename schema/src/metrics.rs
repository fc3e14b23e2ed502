//! Counters for `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// This node's counters. Cheap to update from anywhere.
#[derive(Default)]
pub struct Metrics {
    pub websocket_connections: AtomicI64,
    pub document_updates: AtomicU64,
    pub runs_started: AtomicU64,
    runs_finished: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn run_finished(&self, status: &str) {
        *self
            .runs_finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(status.to_owned())
            .or_default() += 1;
    }
}

/// The text `/metrics` answers, with the gauges read at the moment.
pub fn render(services: &crate::Services) -> String {
    let metrics = &services.metrics;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in lines {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    metric(
        "codecrafter_websocket_connections",
        "gauge",
        "Open graphql-ws connections on this node.",
        vec![(
            String::new(),
            metrics
                .websocket_connections
                .load(Ordering::Relaxed)
                .to_string(),
        )],
    );
    metric(
        "codecrafter_documents_loaded",
        "gauge",
        "Project documents held in memory on this node.",
        vec![(String::new(), services.documents.loaded_count().to_string())],
    );
    metric(
        "codecrafter_presence_replicas",
        "gauge",
        "Projects whose presence this node follows.",
        vec![(String::new(), services.presence.replica_count().to_string())],
    );
    metric(
        "codecrafter_document_updates_total",
        "counter",
        "Document updates stored by this node.",
        vec![(
            String::new(),
            metrics.document_updates.load(Ordering::Relaxed).to_string(),
        )],
    );
    metric(
        "codecrafter_runs_started_total",
        "counter",
        "Code runs this node's workers started.",
        vec![(
            String::new(),
            metrics.runs_started.load(Ordering::Relaxed).to_string(),
        )],
    );
    let finished: Vec<(String, String)> = metrics
        .runs_finished
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(status, n)| (format!("{{status=\"{status}\"}}"), n.to_string()))
        .collect();
    metric(
        "codecrafter_runs_finished_total",
        "counter",
        "Code runs that ended, by status, as seen by this node.",
        finished,
    );
    out
}
