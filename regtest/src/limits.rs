//! What one client may take from the node's servers, and how slots are shared.
//!
//! Both servers draw their connections from one file-descriptor budget ([`Limits::from_fd_limit`]:
//! the process's `RLIMIT_NOFILE` less a reserve for the chain's files and the listeners).
//! Each server has a global connection cap and, for Electrum, a per-peer-IP cap below it (the
//! reserve that keeps one remote host from taking every slot).
//!
//! **Admission policy.** A new connection is always admitted. When its peer IP already holds
//! its share, the least recently active connection *of that IP* is closed to make room; when
//! the server is full, the least recently active connection of the IP holding the most
//! connections is closed. "Active" means a complete request (a connection that only connected,
//! or only subscribed and then waits, ages from its last request). So a flood from one host
//! evicts its own connections first, and a new client can always get an answer. On loopback
//! every client shares 127.0.0.1, so there the oldest idle connection is evicted whoever owns
//! it: a subscribed client that waits longer than every other client is the one that has to
//! reconnect (its socket is closed, which its client sees at once).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The largest request body accepted by default: Core's `MAX_SIZE` (32 MiB, 0x02000000), the
/// max body size of its HTTP server; bigger ones get HTTP 413 and the connection is closed.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// File descriptors kept back from the connection budget (chain files, listeners, logs).
const FD_RESERVE: usize = 64;
/// The budget used when the process's limit cannot be read.
const FD_FALLBACK: usize = 1024;
/// The largest connection budget, whatever the limit.
const FD_MAX_BUDGET: usize = 4096;

/// The bounds every server input is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most Electrum connections at once.
    pub electrum_connections: usize,
    /// Most Electrum connections from one peer IP.
    pub electrum_per_ip: usize,
    /// Most RPC connections at once (beyond: HTTP 503, or the oldest idle one is closed).
    pub rpc_connections: usize,
    /// The longest Electrum request line, newline included (bytes).
    pub max_line: usize,
    /// Most requests in one Electrum batch.
    pub max_batch: usize,
    /// Most script hashes one Electrum connection may subscribe to.
    pub max_subscriptions: usize,
    /// Most script-hash subscriptions over all connections.
    pub max_total_subscriptions: usize,
    /// Most replies and notifications queued for one Electrum client.
    pub out_queue: usize,
    /// The largest reply to one Electrum batch line (bytes of JSON): a batch whose replies add
    /// up to more is answered with one `-32600` "reply too large" error instead (the
    /// connection stays). A single request is bounded by its method (at most 2,016 headers,
    /// 323 KB; one transaction, at most 8 MB of hex).
    pub max_reply: usize,
    /// Most reply and notification bytes queued, unwritten, for one Electrum client. Past it
    /// the server stops reading that client's requests until its replies are written
    /// (back-pressure); a notification that does not fit closes the connection.
    pub out_bytes: usize,
    /// Most reply and notification bytes queued over all Electrum clients. Past it every
    /// client's next reply waits until others are written or their connections close (a
    /// client that takes no bytes for 60 s is closed, which gives its bytes back).
    pub out_bytes_total: usize,
    /// The largest RPC request body (bytes; bigger ones get HTTP 413).
    pub max_body: usize,
    /// Lines or bodies above 64 KiB being read or handled at once (each can cost tens of times
    /// its size while parsed): the bound on the servers' memory.
    pub large_inputs: usize,
}

/// Requests up to this size never wait for a large-input permit.
pub(crate) const SMALL_INPUT: usize = 64 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits::from_fd_limit(open_file_limit().unwrap_or(FD_FALLBACK))
    }
}

impl Limits {
    /// The limits for a process allowed `nofile` open files: the budget is `nofile` less 64
    /// (at most 4,096), one eighth of it (at most 64) for RPC, the rest for Electrum, a quarter
    /// of that per peer IP.
    pub fn from_fd_limit(nofile: usize) -> Self {
        let budget = nofile.saturating_sub(FD_RESERVE).clamp(16, FD_MAX_BUDGET);
        let rpc = (budget / 8).clamp(4, 64);
        let electrum = budget - rpc;
        Limits {
            electrum_connections: electrum,
            electrum_per_ip: (electrum / 4).max(2),
            rpc_connections: rpc,
            max_line: 1024 * 1024,
            max_batch: 1000,
            max_subscriptions: 20_000,
            max_total_subscriptions: 500_000,
            out_queue: 256,
            max_reply: 4 * 1024 * 1024,
            out_bytes: 16 * 1024 * 1024,
            out_bytes_total: 256 * 1024 * 1024,
            max_body: MAX_BODY,
            large_inputs: 4,
        }
    }
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits` (Linux).
fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        return Some(usize::MAX);
    }
    soft.parse().ok()
}

/// Whether the JSON text `bytes` holds at most `max` structural tokens (`{`, `[`, `,`, `:`
/// outside strings), which bounds the number of values a parser builds from it (and so its
/// memory) whatever the text's shape. One pass, no allocation; malformed text is left to the
/// parser.
pub(crate) fn json_within(bytes: &[u8], max: usize) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    let mut n = 0usize;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' | b',' | b':' => {
                n += 1;
                if n > max {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// The bytes one Electrum client may have queued for writing, drawn from the client's own
/// budget and from the server's total budget (both in bytes; [`Limits::out_bytes`],
/// [`Limits::out_bytes_total`]).
#[derive(Debug, Clone)]
pub(crate) struct OutBudget {
    client: Arc<Semaphore>,
    client_cap: usize,
    total: Arc<Semaphore>,
    total_cap: usize,
}

/// Bytes reserved for one queued message; given back when it is dropped (written or discarded).
#[derive(Debug)]
pub(crate) struct OutPermit {
    _client: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl OutBudget {
    /// The server-wide budget of `total_cap` bytes, shared by every client.
    pub(crate) fn total(total_cap: usize) -> (Arc<Semaphore>, usize) {
        let cap = total_cap.clamp(1, Semaphore::MAX_PERMITS);
        (Arc::new(Semaphore::new(cap)), cap)
    }

    /// One client's budget of `client_cap` bytes, within `total`.
    pub(crate) fn new(client_cap: usize, total: (Arc<Semaphore>, usize)) -> Self {
        let client_cap = client_cap.clamp(1, Semaphore::MAX_PERMITS);
        OutBudget {
            client: Arc::new(Semaphore::new(client_cap)),
            client_cap,
            total: total.0,
            total_cap: total.1,
        }
    }

    /// What a message of `bytes` is charged: its size, but never more than either budget (a
    /// message larger than the budget is queued alone).
    fn charge(&self, bytes: usize) -> (u32, u32) {
        let c = bytes.clamp(1, self.client_cap).min(u32::MAX as usize) as u32;
        let t = bytes.clamp(1, self.total_cap).min(u32::MAX as usize) as u32;
        (c, t)
    }

    /// Reserve `bytes`, waiting until this client's and the server's queues have room.
    /// `None` only when a budget is closed.
    pub(crate) async fn reserve(&self, bytes: usize) -> Option<OutPermit> {
        let (c, t) = self.charge(bytes);
        let client = self.client.clone().acquire_many_owned(c).await.ok()?;
        let total = self.total.clone().acquire_many_owned(t).await.ok()?;
        Some(OutPermit {
            _client: client,
            _total: total,
        })
    }

    /// Reserve `bytes` now, or `None` when either queue is full.
    pub(crate) fn try_reserve(&self, bytes: usize) -> Option<OutPermit> {
        let (c, t) = self.charge(bytes);
        let client = self.client.clone().try_acquire_many_owned(c).ok()?;
        let total = self.total.clone().try_acquire_many_owned(t).ok()?;
        Some(OutPermit {
            _client: client,
            _total: total,
        })
    }

    /// Bytes this client has queued.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        self.client_cap - self.client.available_permits()
    }
}

struct Entry {
    ip: IpAddr,
    last_active: Instant,
    evict: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    conns: HashMap<u64, Entry>,
}

/// The connection slots of one server.
pub(crate) struct Slots {
    total: usize,
    per_ip: usize,
    table: Mutex<Table>,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("total", &self.total)
            .field("per_ip", &self.per_ip)
            .finish()
    }
}

/// One admitted connection; its slot is given back when this is dropped.
pub(crate) struct Slot {
    id: u64,
    slots: Arc<Slots>,
    evict: Arc<Notify>,
}

impl Slots {
    pub(crate) fn new(total: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Slots {
            total: total.max(1),
            per_ip: per_ip.clamp(1, total.max(1)),
            table: Mutex::new(Table::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding this lock leaves a consistent table (every update is one call).
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit a connection from `ip`, evicting one (see the module docs) when full; with
    /// `evict_when_full` false a full server refuses instead (`None`).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, evict_when_full: bool) -> Option<Slot> {
        let mut t = self.lock();
        let same_ip = t.conns.values().filter(|e| e.ip == ip).count();
        let victim_ip = if same_ip >= self.per_ip {
            Some(ip)
        } else if t.conns.len() >= self.total {
            let mut counts: HashMap<IpAddr, usize> = HashMap::new();
            for e in t.conns.values() {
                *counts.entry(e.ip).or_default() += 1;
            }
            counts.into_iter().max_by_key(|&(_, n)| n).map(|(ip, _)| ip)
        } else {
            None
        };
        if let Some(vip) = victim_ip {
            if !evict_when_full {
                return None;
            }
            let victim = t
                .conns
                .iter()
                .filter(|(_, e)| e.ip == vip)
                .min_by_key(|(_, e)| e.last_active)
                .map(|(&id, _)| id);
            if let Some(id) = victim {
                if let Some(e) = t.conns.remove(&id) {
                    tracing::debug!(target: "btcmpc_regtest::limits", ip = %e.ip, "server full: closing the least recently active connection");
                    e.evict.notify_one();
                }
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let evict = Arc::new(Notify::new());
        t.conns.insert(
            id,
            Entry {
                ip,
                last_active: Instant::now(),
                evict: evict.clone(),
            },
        );
        Some(Slot {
            id,
            slots: self.clone(),
            evict,
        })
    }

    /// Connections holding a slot.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().conns.len()
    }
}

impl Slot {
    /// Record a complete request now.
    pub(crate) fn touch(&self) {
        if let Some(e) = self.slots.lock().conns.get_mut(&self.id) {
            e.last_active = Instant::now();
        }
    }

    /// Resolves when this connection is evicted to make room for another.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().conns.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_ip_evicts_its_own_least_active_connection() {
        let slots = Slots::new(4, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = slots.admit(a, true).unwrap();
        let a2 = slots.admit(a, true).unwrap();
        let b1 = slots.admit(b, true).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        a1.touch();
        // A third from `a` evicts a2 (a1 was active more recently), never b1.
        let _a3 = slots.admit(a, true).unwrap();
        assert_eq!(slots.len(), 3);
        tokio::time::timeout(std::time::Duration::from_secs(5), a2.evicted())
            .await
            .expect("a2 is evicted");
        drop(b1);
        assert_eq!(slots.len(), 2);
        // Refusing instead of evicting.
        assert!(slots.admit(a, false).is_none());
    }

    #[tokio::test]
    async fn queued_bytes_are_counted_per_client_and_in_total() {
        let total = OutBudget::total(1000);
        let a = OutBudget::new(600, total.clone());
        let b = OutBudget::new(600, total.clone());
        let a1 = a.reserve(400).await.unwrap();
        assert_eq!(a.queued(), 400);
        // Over a's own budget: refused now, while b still has room.
        assert!(a.try_reserve(201).is_none());
        let a2 = a.try_reserve(200).unwrap();
        assert_eq!(a.queued(), 600);
        // The total (1000) leaves b only 400 of its 600.
        assert!(b.try_reserve(401).is_none());
        let b1 = b.try_reserve(400).unwrap();
        assert_eq!(total.0.available_permits(), 0);
        // Written (dropped) messages give their bytes back to both budgets.
        drop(a1);
        assert_eq!(a.queued(), 200);
        assert_eq!(total.0.available_permits(), 400);
        // A message larger than the budget is charged the whole budget, so it waits for an
        // empty queue rather than forever.
        drop((a2, b1));
        let big = a.try_reserve(10_000).unwrap();
        assert_eq!(a.queued(), 600);
        assert!(a.try_reserve(1).is_none());
        drop(big);
        assert_eq!(a.queued(), 0);
        assert_eq!(total.0.available_permits(), 1000);
    }

    #[test]
    fn json_tokens_are_counted_outside_strings() {
        assert!(json_within(br#"{"a":[1,2]}"#, 4));
        assert!(!json_within(br#"{"a":[1,2]}"#, 3));
        // Brackets, commas and escaped quotes inside strings do not count.
        assert!(json_within(br#"["[,{:\"[,"]"#, 1));
        let many = format!("[{}]", vec!["[]"; 1000].join(","));
        assert!(!json_within(many.as_bytes(), 1000));
        assert!(json_within(many.as_bytes(), 2000));
    }

    #[test]
    fn the_budget_splits_the_file_limit() {
        let l = Limits::from_fd_limit(1024);
        assert_eq!(l.rpc_connections + l.electrum_connections, 1024 - 64);
        assert!(l.electrum_per_ip < l.electrum_connections);
        let tiny = Limits::from_fd_limit(10);
        assert!(tiny.electrum_connections >= 2 && tiny.rpc_connections >= 4);
        assert_eq!(
            Limits::from_fd_limit(usize::MAX).electrum_connections
                + Limits::from_fd_limit(usize::MAX).rpc_connections,
            4096
        );
    }
}
