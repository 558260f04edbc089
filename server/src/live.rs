//! In-process fan-out of what the dashboard shows live: deployment steps and
//! state changes, host status. Producers never block: a slow subscriber just
//! misses events (it re-reads the store, which is the truth).
//!
//! Also the accounting of every per-client stream buffer ([`StreamStats`]):
//! what was skipped because a client read too slowly, what waits in the
//! bounded log buffers right now, and how many log follows were stopped. It
//! is exported on `/metrics` next to the request metrics.
use prometheus::{core::Collector, proto::MetricFamily, IntCounter, IntCounterVec, IntGauge, Opts};
use slipway_types::{
    api::{DeploymentState, DeploymentStep, LiveEvent},
    sse::Lagged,
};
use std::sync::{
    atomic::{AtomicI64, AtomicU64, Ordering},
    Arc,
};
use tokio::sync::broadcast;
use uuid::Uuid;

/// Events kept for subscribers; one that falls further behind skips the
/// oldest and gets `event: lagged` (memory stays this bounded whatever the
/// number of slow clients: the ring is shared).
pub const BUS_CAPACITY: usize = 1024;

#[derive(Debug, Clone)]
pub enum Live {
    Step {
        deployment_id: Uuid,
        step: DeploymentStep,
    },
    State {
        deployment_id: Uuid,
        state: DeploymentState,
        reason: Option<String>,
    },
    Event(LiveEvent),
}

#[derive(Clone)]
pub struct LiveBus {
    tx: broadcast::Sender<Live>,
    stats: StreamStats,
}

impl Default for LiveBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BUS_CAPACITY).0,
            stats: StreamStats::default(),
        }
    }
}

impl LiveBus {
    pub fn publish(&self, event: Live) {
        // No subscribers is fine.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.tx.subscribe()
    }

    /// The accounting of every SSE stream of this process.
    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }
}

/// One server-sent event: `event: {name}` (none for plain data) and one
/// `data:` line of JSON (JSON never contains a raw newline).
pub fn sse_event<T: serde::Serialize>(name: Option<&str>, value: &T) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    match name {
        Some(n) => format!("event: {n}\ndata: {json}\n\n"),
        None => format!("data: {json}\n\n"),
    }
}

/// `event: lagged` for `skipped` events; empty when none were skipped.
pub fn sse_lagged(skipped: u64) -> String {
    if skipped == 0 {
        return String::new();
    }
    sse_event(Some(Lagged::EVENT), &Lagged { skipped })
}

/// The three kinds of per-client streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `GET /hosts/{id}/containers/{c}/logs`
    Logs,
    /// `GET /deployments/{id}/events`
    Deployment,
    /// `GET /events`
    Events,
}

impl StreamKind {
    pub const ALL: [StreamKind; 3] = [StreamKind::Logs, StreamKind::Deployment, StreamKind::Events];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Logs => "logs",
            StreamKind::Deployment => "deployment",
            StreamKind::Events => "events",
        }
    }
}

/// Counters of the SSE streams (cheap to clone: shared atomics, turned into
/// metric families when `/metrics` is scraped).
#[derive(Clone, Default)]
pub struct StreamStats(Arc<Counts>);

#[derive(Default)]
struct Counts {
    skipped: [AtomicU64; 3],
    buffered: AtomicI64,
    stopped: AtomicU64,
}

impl StreamStats {
    pub fn skipped(&self, kind: StreamKind, n: u64) {
        self.0.skipped[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn skipped_total(&self, kind: StreamKind) -> u64 {
        self.0.skipped[kind as usize].load(Ordering::Relaxed)
    }

    pub fn buffered_add(&self, bytes: usize) {
        let b = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.0.buffered.fetch_add(b, Ordering::Relaxed);
    }

    pub fn buffered_sub(&self, bytes: usize) {
        let b = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.0.buffered.fetch_sub(b, Ordering::Relaxed);
    }

    pub fn buffered(&self) -> i64 {
        self.0.buffered.load(Ordering::Relaxed)
    }

    pub fn stopped(&self) {
        self.0.stopped.fetch_add(1, Ordering::Relaxed);
    }

    /// Current values as metric families, for `/metrics`.
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.families().unwrap_or_default()
    }

    fn families(&self) -> Result<Vec<MetricFamily>, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace("slipway");
        let skipped = IntCounterVec::new(
            opts(
                "stream_skipped_total",
                "Events skipped because a client read its server-sent event stream too slowly, by stream",
            ),
            &["stream"],
        )?;
        for k in StreamKind::ALL {
            skipped
                .with_label_values(&[k.as_str()])
                .inc_by(self.skipped_total(k));
        }
        let buffered = IntGauge::with_opts(opts(
            "stream_buffered_bytes",
            "Bytes of log lines waiting in per-client buffers for their clients to read them",
        ))?;
        buffered.set(self.buffered());
        let stopped = IntCounter::with_opts(opts(
            "stream_stopped_total",
            "Log follows ended because their client read nothing for too long (the agent stops following)",
        ))?;
        stopped.inc_by(self.0.stopped.load(Ordering::Relaxed));
        let mut out = skipped.collect();
        out.extend(buffered.collect());
        out.extend(stopped.collect());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_become_metric_families() {
        let s = StreamStats::default();
        s.skipped(StreamKind::Logs, 5);
        s.skipped(StreamKind::Events, 2);
        s.buffered_add(100);
        s.buffered_sub(40);
        s.stopped();
        let mut buf = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &s.gather(), &mut buf)
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        for line in [
            "slipway_stream_skipped_total{stream=\"logs\"} 5",
            "slipway_stream_skipped_total{stream=\"deployment\"} 0",
            "slipway_stream_skipped_total{stream=\"events\"} 2",
            "slipway_stream_buffered_bytes 60",
            "slipway_stream_stopped_total 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
