//! Upstream sets, round-robin selection and in-flight accounting (pure logic, no IO).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{watch, Notify};

use crate::admin::UpstreamStatus;

/// One upstream address with its counters and idle connection pool.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    in_flight: AtomicU64,
    served: AtomicU64,
    idle_changed: Notify,
    /// Open WebSocket tunnels (each also counted in `in_flight`).
    tunnels: AtomicU64,
    /// True once a drain of this (no longer current) upstream timed out: its tunnels
    /// close. Sticky, so a tunnel whose handshake was still under way closes too; reset
    /// when the upstream is put back into the current set.
    retired: watch::Sender<bool>,
    /// Idle keep-alive connections to this upstream (owned by the forwarder).
    pub(crate) pool: crate::forward::Pool,
}

impl Upstream {
    pub fn new(addr: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            addr,
            in_flight: AtomicU64::new(0),
            served: AtomicU64::new(0),
            idle_changed: Notify::new(),
            tunnels: AtomicU64::new(0),
            retired: watch::channel(false).0,
            pool: crate::forward::Pool::default(),
        })
    }

    /// Open WebSocket tunnels to this upstream.
    pub fn tunnels(&self) -> u64 {
        self.tunnels.load(Ordering::SeqCst)
    }

    /// Counts one WebSocket tunnel as open until the returned guard is dropped.
    pub(crate) fn tunnel_opened(self: &Arc<Self>) -> TunnelOpen {
        self.tunnels.fetch_add(1, Ordering::SeqCst);
        TunnelOpen(Arc::clone(self))
    }

    /// Watches the retired flag (see [`UpstreamSet::retire`]).
    pub(crate) fn retired(&self) -> watch::Receiver<bool> {
        self.retired.subscribe()
    }

    fn set_retired(&self, retired: bool) {
        self.retired
            .send_if_modified(|r| std::mem::replace(r, retired) != retired);
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> UpstreamStatus {
        UpstreamStatus {
            addr: self.addr,
            in_flight: self.in_flight(),
            served: self.served(),
        }
    }

    /// Waits until no request to this upstream is in flight or `deadline` passes.
    /// Returns the in-flight count at return time (0 = drained).
    pub async fn wait_idle(&self, deadline: tokio::time::Instant) -> u64 {
        loop {
            let notified = self.idle_changed.notified();
            tokio::pin!(notified);
            // Register before checking so a decrement between check and await is not missed.
            notified.as_mut().enable();
            let n = self.in_flight();
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight();
            }
        }
    }
}

/// Counts one request to an upstream as in flight until dropped.
#[derive(Debug)]
pub struct InFlight {
    upstream: Arc<Upstream>,
    answered: bool,
}

impl InFlight {
    fn new(upstream: Arc<Upstream>) -> Self {
        upstream.in_flight.fetch_add(1, Ordering::SeqCst);
        Self {
            upstream,
            answered: false,
        }
    }

    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Marks the request as answered by the upstream (counted in `served` when done).
    pub fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.answered {
            self.upstream.served.fetch_add(1, Ordering::SeqCst);
        }
        if self.upstream.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.upstream.idle_changed.notify_waiters();
        }
    }
}

/// Counts one open WebSocket tunnel until dropped.
#[derive(Debug)]
pub(crate) struct TunnelOpen(Arc<Upstream>);

impl Drop for TunnelOpen {
    fn drop(&mut self) {
        self.0.tunnels.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An immutable upstream set with its round-robin cursor.
#[derive(Debug)]
struct Snapshot {
    upstreams: Vec<Arc<Upstream>>,
    next: AtomicUsize,
}

/// The upstream state of one route: the current set (switched atomically) and the
/// former upstreams that still have requests in flight.
#[derive(Debug)]
pub struct UpstreamSet {
    current: RwLock<Arc<Snapshot>>,
    draining: Mutex<Vec<Arc<Upstream>>>,
}

impl UpstreamSet {
    pub fn new(addrs: &[SocketAddr]) -> Self {
        let upstreams = addrs.iter().map(|a| Upstream::new(*a)).collect();
        Self {
            current: RwLock::new(Arc::new(Snapshot {
                upstreams,
                next: AtomicUsize::new(0),
            })),
            draining: Mutex::new(Vec::new()),
        }
    }

    /// Picks the next upstream round-robin, skipping `avoid` when another one exists, and
    /// counts the request in flight. Selection and increment happen under the read lock, so
    /// once [`UpstreamSet::replace`] returns, every request routed to an old upstream is
    /// already visible in its in-flight count.
    pub fn acquire(&self, avoid: Option<SocketAddr>) -> Option<InFlight> {
        let snap = self.current.read().unwrap_or_else(|e| e.into_inner());
        let len = snap.upstreams.len();
        if len == 0 {
            return None;
        }
        let start = snap.next.fetch_add(1, Ordering::Relaxed);
        let mut chosen = &snap.upstreams[start % len];
        if let Some(avoid) = avoid {
            if let Some(other) = (0..len)
                .map(|i| &snap.upstreams[(start + i) % len])
                .find(|u| u.addr != avoid)
            {
                chosen = other;
            }
        }
        Some(InFlight::new(Arc::clone(chosen)))
    }

    /// Atomically switches to `addrs`. Upstreams present before and after keep their
    /// counters (and connections); removed ones move to the draining list.
    pub fn replace(&self, addrs: &[SocketAddr]) {
        let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let old = Arc::clone(&current);
        let upstreams: Vec<Arc<Upstream>> = addrs
            .iter()
            .map(|a| {
                if let Some(u) = old.upstreams.iter().find(|u| u.addr == *a) {
                    Arc::clone(u)
                } else if let Some(pos) = draining.iter().position(|u| u.addr == *a) {
                    let back = draining.swap_remove(pos);
                    back.set_retired(false);
                    back
                } else {
                    Upstream::new(*a)
                }
            })
            .collect();
        for u in &old.upstreams {
            if !addrs.contains(&u.addr) {
                draining.push(Arc::clone(u));
            }
        }
        draining.retain(|u| u.in_flight() > 0);
        let next = old.next.load(Ordering::Relaxed);
        *current = Arc::new(Snapshot {
            upstreams,
            next: AtomicUsize::new(next),
        });
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        let snap = self.current.read().unwrap_or_else(|e| e.into_inner());
        snap.upstreams.iter().map(|u| u.addr).collect()
    }

    /// Current and draining upstream status; forgets draining upstreams that finished.
    pub fn status(&self) -> (Vec<UpstreamStatus>, Vec<UpstreamStatus>) {
        let mut draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        draining.retain(|u| u.in_flight() > 0);
        let snap = self.current.read().unwrap_or_else(|e| e.into_inner());
        let current = snap.upstreams.iter().map(|u| u.status()).collect();
        (current, draining.iter().map(|u| u.status()).collect())
    }

    /// Closes the WebSocket tunnels to `addr` (and any whose handshake is under way) when
    /// it is a former upstream; returns false, changing nothing, when `addr` is current.
    pub fn retire(&self, addr: SocketAddr) -> bool {
        let draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        let snap = self.current.read().unwrap_or_else(|e| e.into_inner());
        if snap.upstreams.iter().any(|u| u.addr == addr) {
            return false;
        }
        if let Some(u) = draining.iter().find(|u| u.addr == addr) {
            u.set_retired(true);
        }
        true
    }

    /// The upstream with this address, current or draining.
    pub fn find(&self, addr: SocketAddr) -> Option<Arc<Upstream>> {
        {
            let snap = self.current.read().unwrap_or_else(|e| e.into_inner());
            if let Some(u) = snap.upstreams.iter().find(|u| u.addr == addr) {
                return Some(Arc::clone(u));
            }
        }
        let draining = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        draining.iter().find(|u| u.addr == addr).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn round_robin() {
        let set = UpstreamSet::new(&[a(1), a(2), a(3)]);
        let picks: Vec<u16> = (0..6)
            .filter_map(|_| set.acquire(None))
            .map(|g| g.upstream().addr.port())
            .collect();
        assert_eq!(picks, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn avoid_picks_another_when_possible() {
        let set = UpstreamSet::new(&[a(1), a(2)]);
        for _ in 0..5 {
            let g = set.acquire(Some(a(1))).unwrap();
            assert_eq!(g.upstream().addr, a(2));
        }
        let single = UpstreamSet::new(&[a(1)]);
        assert_eq!(single.acquire(Some(a(1))).unwrap().upstream().addr, a(1));
    }

    #[test]
    fn in_flight_and_served_counting() {
        let set = UpstreamSet::new(&[a(1)]);
        let mut g1 = set.acquire(None).unwrap();
        let g2 = set.acquire(None).unwrap();
        let up = Arc::clone(g1.upstream());
        assert_eq!(up.in_flight(), 2);
        g1.answered();
        drop(g1);
        drop(g2);
        assert_eq!(up.in_flight(), 0);
        assert_eq!(up.served(), 1);
    }

    #[test]
    fn replace_moves_busy_upstreams_to_draining_and_keeps_survivors() {
        let set = UpstreamSet::new(&[a(1), a(2)]);
        let g1 = set.acquire(None).unwrap(); // on 1
        let survivor = set.find(a(2)).unwrap();
        set.replace(&[a(2), a(3)]);
        assert_eq!(set.addrs(), vec![a(2), a(3)]);
        assert!(Arc::ptr_eq(&set.find(a(2)).unwrap(), &survivor));
        let (cur, draining) = set.status();
        assert_eq!(cur.len(), 2);
        assert_eq!(draining.len(), 1);
        assert_eq!(draining[0].addr, a(1));
        assert_eq!(draining[0].in_flight, 1);
        // New requests never go to the removed upstream.
        for _ in 0..10 {
            assert_ne!(set.acquire(None).unwrap().upstream().addr, a(1));
        }
        drop(g1);
        let (_, draining) = set.status();
        assert!(draining.is_empty());
        assert!(set.find(a(1)).is_none());
    }

    #[test]
    fn re_adding_a_draining_upstream_reuses_it() {
        let set = UpstreamSet::new(&[a(1)]);
        let g = set.acquire(None).unwrap();
        let orig = Arc::clone(g.upstream());
        set.replace(&[a(2)]);
        set.replace(&[a(1)]);
        let (cur, draining) = set.status();
        assert!(draining.is_empty());
        assert_eq!(cur[0].in_flight, 1);
        assert!(Arc::ptr_eq(&set.find(a(1)).unwrap(), &orig));
        drop(g);
    }

    #[test]
    fn retire_only_former_upstreams_and_reset_when_re_added() {
        let set = UpstreamSet::new(&[a(1)]);
        let g = set.acquire(None).unwrap();
        let up = Arc::clone(g.upstream());
        let retired = up.retired();
        assert!(!set.retire(a(1)), "a current upstream is never retired");
        assert!(!*retired.borrow());
        set.replace(&[a(2)]);
        assert!(set.retire(a(1)));
        assert!(*retired.borrow());
        // Sticky: a tunnel subscribing late still sees it.
        assert!(*up.retired().borrow());
        assert!(set.retire(a(9)), "unknown upstreams are not current");
        set.replace(&[a(1)]);
        assert!(!*up.retired().borrow());
        let t = up.tunnel_opened();
        assert_eq!(up.tunnels(), 1);
        drop(t);
        assert_eq!(up.tunnels(), 0);
        drop(g);
    }

    #[tokio::test]
    async fn wait_idle_returns_when_last_request_ends() {
        let set = UpstreamSet::new(&[a(1)]);
        let g = set.acquire(None).unwrap();
        let up = Arc::clone(g.upstream());
        let short = tokio::time::Instant::now() + Duration::from_millis(50);
        assert_eq!(up.wait_idle(short).await, 1);
        let waiter = {
            let up = Arc::clone(&up);
            tokio::spawn(async move {
                up.wait_idle(tokio::time::Instant::now() + Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(g);
        assert_eq!(waiter.await.unwrap(), 0);
    }
}
