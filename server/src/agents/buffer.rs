//! The bounded buffer between an agent's WebSocket and one HTTP client.
//!
//! ```text
//!  agent ──ws──▶ connect::serve ──hub.handle──▶ BoundedTx::offer ─┐  (never waits)
//!                                                                 ▼
//!  client ◀──actix body (polled only when the socket is writable)── BoundedRx::recv
//! ```
//!
//! actix stops polling a response body while its client does not read, so
//! whatever the agent keeps sending must go somewhere. Here at most
//! [`Limits::events`] events and about [`Limits::bytes`] bytes wait; what
//! does not fit is skipped and counted, and the next event that does fit
//! carries the count (`skipped_before`) so the client sees a gap marker
//! exactly where lines are missing. The WebSocket reader only ever
//! `try_send`s: a slow client can never hold up the other requests of the
//! same agent. A buffer that stays full for [`Limits::stall_after`] says
//! [`Offer::Stalled`] once: the hub then cancels the request on the agent,
//! which stops following.
use crate::live::{StreamKind, StreamStats};
use slipway_types::agent::AgentEvent;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::Instant;

/// What one client's buffer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub events: usize,
    pub bytes: usize,
    /// A buffer full (nothing taken by the client) this long is stalled.
    pub stall_after: Duration,
}

/// An event as the client gets it: how many were skipped just before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub skipped_before: u64,
    pub event: AgentEvent,
}

/// What became of an offered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The buffer is full: the event was counted and dropped.
    Skipped,
    /// Dropped, and the buffer has been full for `stall_after`: stop the
    /// producer. Said once; later offers are `Skipped`.
    Stalled,
    /// The client is gone.
    Closed,
}

struct Shared {
    /// Bytes (estimated, see [`cost`]) waiting in the channel.
    bytes: AtomicUsize,
    /// Skipped after the last queued event, known when the sender is dropped.
    tail_skipped: AtomicU64,
    stats: StreamStats,
}

/// The producer's end, owned by the hub's pending call.
pub struct BoundedTx {
    tx: mpsc::Sender<Delivered>,
    shared: Arc<Shared>,
    limits: Limits,
    kind: StreamKind,
    skipped: u64,
    full_since: Option<Instant>,
    stalled: bool,
}

/// The client's end, owned by the response body.
pub struct BoundedRx {
    rx: mpsc::Receiver<Delivered>,
    shared: Arc<Shared>,
}

/// A bounded buffer for one client of a `kind` stream.
pub fn bounded(limits: Limits, kind: StreamKind, stats: StreamStats) -> (BoundedTx, BoundedRx) {
    let (tx, rx) = mpsc::channel(limits.events.max(1));
    let shared = Arc::new(Shared {
        bytes: AtomicUsize::new(0),
        tail_skipped: AtomicU64::new(0),
        stats,
    });
    (
        BoundedTx {
            tx,
            shared: shared.clone(),
            limits,
            kind,
            skipped: 0,
            full_since: None,
            stalled: false,
        },
        BoundedRx { rx, shared },
    )
}

/// What an event costs while it waits: its text plus the event itself.
pub fn cost(event: &AgentEvent) -> usize {
    let text = match event {
        AgentEvent::Log { line, .. } => line.len(),
        AgentEvent::Step { message } => message.len(),
        AgentEvent::Switched => 0,
    };
    text + std::mem::size_of::<Delivered>()
}

impl BoundedTx {
    pub fn stall_after(&self) -> Duration {
        self.limits.stall_after
    }

    /// Queues `event` if it fits, else counts it as skipped. Never waits.
    pub fn offer(&mut self, event: AgentEvent, now: Instant) -> Offer {
        let size = cost(&event);
        let queued = self.shared.bytes.load(Ordering::Acquire);
        // An empty buffer always takes one event, however long (frames are
        // bounded by the WebSocket's own limit).
        if queued == 0 || queued + size <= self.limits.bytes {
            self.shared.bytes.fetch_add(size, Ordering::AcqRel);
            let item = Delivered {
                skipped_before: self.skipped,
                event,
            };
            match self.tx.try_send(item) {
                Ok(()) => {
                    self.shared.stats.buffered_add(size);
                    self.skipped = 0;
                    self.full_since = None;
                    return Offer::Queued;
                }
                Err(e) => {
                    self.shared.bytes.fetch_sub(size, Ordering::AcqRel);
                    if matches!(e, TrySendError::Closed(_)) {
                        return Offer::Closed;
                    }
                }
            }
        }
        self.skipped += 1;
        self.shared.stats.skipped(self.kind, 1);
        let since = *self.full_since.get_or_insert(now);
        if !self.stalled && now.duration_since(since) >= self.limits.stall_after {
            self.stalled = true;
            self.shared.stats.stopped();
            return Offer::Stalled;
        }
        Offer::Skipped
    }
}

impl Drop for BoundedTx {
    fn drop(&mut self) {
        self.shared
            .tail_skipped
            .store(self.skipped, Ordering::Release);
    }
}

impl BoundedRx {
    /// The next event; `None` once the producer is gone and all were read.
    pub async fn recv(&mut self) -> Option<Delivered> {
        let d = self.rx.recv().await?;
        self.taken(&d);
        Some(d)
    }

    fn taken(&self, d: &Delivered) {
        let size = cost(&d.event);
        self.shared.bytes.fetch_sub(size, Ordering::AcqRel);
        self.shared.stats.buffered_sub(size);
    }

    /// After [`BoundedRx::recv`] gave `None`: events skipped after the last
    /// one delivered.
    pub fn skipped_at_end(&self) -> u64 {
        self.shared.tail_skipped.load(Ordering::Acquire)
    }
}

impl Drop for BoundedRx {
    fn drop(&mut self) {
        // Nothing more gets in; what waits is freed with the channel.
        self.rx.close();
        while let Ok(d) = self.rx.try_recv() {
            self.taken(&d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_types::agent::LogStream;

    fn line(s: &str) -> AgentEvent {
        AgentEvent::Log {
            stream: LogStream::Stdout,
            line: s.into(),
        }
    }

    const LIMITS: Limits = Limits {
        events: 3,
        bytes: 1 << 20,
        stall_after: Duration::from_secs(20),
    };

    #[tokio::test]
    async fn a_full_buffer_skips_and_the_next_event_carries_the_gap() {
        let stats = StreamStats::default();
        let (mut tx, mut rx) = bounded(LIMITS, StreamKind::Logs, stats.clone());
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(tx.offer(line(&i.to_string()), t0), Offer::Queued);
        }
        // A client that reads nothing: everything else is counted, not kept.
        for i in 3..10_000 {
            assert_eq!(tx.offer(line(&i.to_string()), t0), Offer::Skipped);
        }
        assert_eq!(stats.skipped_total(StreamKind::Logs), 9_997);
        assert_eq!(stats.buffered(), 3 * cost(&line("0")) as i64);
        // It reads again: the three, then the gap right before the next.
        for i in 0..3 {
            let d = rx.recv().await.unwrap();
            assert_eq!((d.skipped_before, d.event), (0, line(&i.to_string())));
        }
        assert_eq!(tx.offer(line("next"), t0), Offer::Queued);
        let d = rx.recv().await.unwrap();
        assert_eq!((d.skipped_before, d.event), (9_997, line("next")));
        // Skipped at the very end are known after the producer is gone.
        tx.offer(line("a"), t0);
        tx.offer(line("b"), t0);
        tx.offer(line("c"), t0);
        tx.offer(line("d"), t0);
        drop(tx);
        for _ in 0..3 {
            rx.recv().await.unwrap();
        }
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.skipped_at_end(), 1);
        assert_eq!(stats.buffered(), 0);
    }

    #[tokio::test]
    async fn bytes_are_bounded_too_and_freed_when_the_client_goes() {
        let stats = StreamStats::default();
        let limits = Limits {
            events: 1000,
            bytes: 3 * cost(&line(&"x".repeat(100))),
            ..LIMITS
        };
        let (mut tx, rx) = bounded(limits, StreamKind::Logs, stats.clone());
        let now = Instant::now();
        let long = || line(&"x".repeat(100));
        for _ in 0..3 {
            assert_eq!(tx.offer(long(), now), Offer::Queued);
        }
        assert_eq!(tx.offer(long(), now), Offer::Skipped);
        // One over the limit still fits in an empty buffer.
        let (mut tx2, _rx2) = bounded(limits, StreamKind::Logs, stats.clone());
        assert_eq!(tx2.offer(line(&"y".repeat(10_000)), now), Offer::Queued);
        drop(rx);
        assert_eq!(tx.offer(line("z"), now), Offer::Closed);
        assert_eq!(stats.buffered(), cost(&line(&"y".repeat(10_000))) as i64);
    }

    #[tokio::test]
    async fn a_buffer_full_for_the_stall_limit_stalls_once() {
        let stats = StreamStats::default();
        let (mut tx, mut rx) = bounded(LIMITS, StreamKind::Logs, stats.clone());
        let t0 = Instant::now();
        for _ in 0..3 {
            tx.offer(line("q"), t0);
        }
        assert_eq!(tx.offer(line("s"), t0), Offer::Skipped);
        let later = t0 + LIMITS.stall_after - Duration::from_millis(1);
        assert_eq!(tx.offer(line("s"), later), Offer::Skipped);
        // A client that reads, however slowly, is not stalled: the clock restarts.
        rx.recv().await.unwrap();
        assert_eq!(tx.offer(line("s"), later), Offer::Queued);
        assert_eq!(tx.offer(line("s"), later), Offer::Skipped);
        let stall = later + LIMITS.stall_after;
        assert_eq!(tx.offer(line("s"), stall), Offer::Stalled);
        assert_eq!(tx.offer(line("s"), stall), Offer::Skipped);
    }
}
