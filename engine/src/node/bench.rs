//! A thin driver of the protocol machines over the party's real channels, for measuring the
//! committee across separate processes (`btcmpc bench committee`).
//!
//! Each party of a run is one call of [`run_party`] (in its own process, or its own task): it
//! listens on its address with the party's [`Listener`], dials the parties of lower index with
//! [`connect`] and keeps one channel per peer in a [`Peers`] manager (Noise `XX`, the default
//! cipher, the party's frame codec). Machine messages travel as the party daemon sends them:
//! `SIGNED` frames whose payload is `version | session | message` ([`super::peer`]). The driver
//! runs the **same machines as a real job**:
//!
//! 1. the PRSS key agreement ([`Setup`], signed contributions and confirmations), not timed,
//!    and a starting barrier (every party tells every other its setup is over, see [`READY`],
//!    and waits for all of them), so the parties start the timed part together;
//! 2. the timed workload ([`Workload`]): element-wise products ([`Task::Products`], one
//!    Damgård-Nielsen degree reduction with a PRSS double sharing, echo-broadcast openings
//!    checked on the degree-`2t` polynomial), the dot product of a plan `sum(a * b)`
//!    ([`Task::Plan`]: the local dot product, one reduction of one value), or the sum of a
//!    vector an owner stored; then the opening of the results to the committee
//!    ([`Task::Open`]: a signed echo-broadcast decoded with Berlekamp-Welch);
//! 3. a closing barrier (every party tells every other it is done, see [`DONE`]) so that no
//!    process leaves while a peer still reads from it.
//!
//! What a real party does and this driver does not: it persists every message to its SQLite
//! outbox before sending it and journals every delivered message (the driver keeps nothing on
//! disk), it encodes a message once per recipient (the driver once per message, the bytes being
//! the same), and it follows the chain. Deadlines are kept as a driver must ([`Machine::deadline`]
//! when no message came for `round_timeout`), but an honest run never reaches one.
//!
//! Inputs. The two factor vectors are dealt deterministically from the run's seed: every party
//! evaluates the same random polynomials (Shamir, degree `t`) at its own point
//! ([`dealt_share`]), so the clear values are known to whoever knows the seed
//! ([`clear_values`], [`expected`]) and a run can be checked. The stored vector of
//! [`Workload::Input`] is dealt by the owner ([`run_owner`]) with the store's own dealing
//! ([`crate::mpc::dealing::deal`]) and sent as the store sends it: `SHARE_BATCH` frames of
//! [`super::owner::BATCH_VALUES`] values ([`ShareBatch`]) over the owner's Noise channel to each
//! party, then `STORE_END`. The store check (the degree check) and the chain are not run.
//!
//! Keys. All keys of a run (Noise static keys, signing keys, the setup seeds) are derived from
//! the run's 32-byte seed ([`keys`]): they are bench-only keys, known to whoever knows the seed.
//!
//! Timing. Each party reports the wall-clock (Unix) instants at which its timed part started
//! and ended, so the span of a run is from the earliest start (or the owner's start) to the
//! latest end, on one machine's clock; and the time it spent computing (in the machines and in
//! encoding and decoding messages), the bytes it sent and received, and its peak resident set
//! ([`peak_rss_kib`]).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::mpc::sig::{SigningKey, VerifyingKey};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::frame::{Frame, MessageType};
use super::noise::{AllowedKeys, NoiseError, StaticKeypair, TransportKey};
use super::owner::BATCH_VALUES;
use super::peer::{decode_message, encode_message, peek_session, PEER_HEADER, PEER_VERSION};
use super::transport::{
    connect, Backoff, Channel, ChannelConfig, Listener, PeerEvent, Peers, TransportError,
};
use super::wire::{json_frame, parse_json, SessionOnly, ShareBatch};
use crate::mpc::dealing::{deal, Hash32};
use crate::mpc::echo::payload_hash;
use crate::mpc::eval::{evaluate_local, EvalMachine, Task};
use crate::mpc::field::PrimeField;
use crate::mpc::query::{Node, Opened, Plan};
use crate::mpc::round::{Machine, Outgoing, PartyId, Recipient, RoundError};
use crate::mpc::setup::Setup;
use crate::mpc::shamir::{dealer_rng, Params};

/// Payload of the `PING` frame a party sends every peer once its workload is over (and the
/// owner once it is ready for the stored vector, [`READY`]). Empty pings are the channels'
/// keepalives; these carry text and reach the driver.
pub const DONE: &[u8] = b"btcmpc bench done";
/// Payload of the `PING` frame a party sends every peer (and the owner) once its setup is
/// over.
pub const READY: &[u8] = b"btcmpc bench ready";

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// `a[k] * b[k]` for every `k` (one reduction), then the products opened.
    Products,
    /// `sum(a * b)` as a plan (local dot product, one reduction of one value), then opened.
    Dot,
    /// An owner deals and sends a vector of `size` values; the parties sum their shares and
    /// open the sum.
    Input,
}

impl Workload {
    /// Every workload, in the order a run measures them.
    pub const ALL: [Workload; 3] = [Workload::Products, Workload::Dot, Workload::Input];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Products => "products",
            Workload::Dot => "dot",
            Workload::Input => "input",
        }
    }

    /// The workload called `name`, `None` for another name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// Errors of a bench run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// A channel failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A key could not be made.
    #[error(transparent)]
    Noise(#[from] NoiseError),
    /// A machine failed.
    #[error("protocol: {0}")]
    Round(#[from] RoundError),
    /// A bound passed.
    #[error("timed out while {0}")]
    Timeout(String),
    /// A bad configuration or an unexpected message.
    #[error("{0}")]
    Other(String),
}

/// `SHA256("btcmpc/bench/v1/" || label || seed || index)`: every secret of a run.
fn derive(seed: &Hash32, label: &str, index: u32) -> Hash32 {
    Sha256::new()
        .chain_update(b"btcmpc/bench/v1/")
        .chain_update(label.as_bytes())
        .chain_update(seed)
        .chain_update(index.to_le_bytes())
        .finalize()
        .into()
}

/// The keys of a run, derived from its seed (bench-only: whoever knows the seed knows them).
#[derive(Clone)]
pub struct BenchKeys {
    /// Noise static keys: `[0]` the owner's, `[i]` party `i`'s.
    pub noise: Vec<StaticKeypair>,
    /// Signing keys of the machines, `[i - 1]` for party `i`.
    pub signing: Vec<SigningKey>,
}

impl std::fmt::Debug for BenchKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchKeys")
            .field("parties", &self.signing.len())
            .finish_non_exhaustive()
    }
}

impl BenchKeys {
    /// The parties' verifying keys, `[i - 1]` for party `i`.
    pub fn verifying(&self) -> Vec<VerifyingKey> {
        self.signing.iter().map(|k| *k.verifying_key()).collect()
    }
}

/// The keys of a run of `n` parties with seed `seed`.
///
/// # Errors
/// [`BenchError::Other`] in the (negligible) case a derived signing key is not a valid scalar.
pub fn keys(seed: &Hash32, n: usize) -> Result<BenchKeys, BenchError> {
    let noise = (0..=n as u32)
        .map(|i| StaticKeypair::from_secret(&derive(seed, "noise", i)))
        .collect::<Result<Vec<_>, _>>()?;
    let signing = (1..=n as u32)
        .map(|i| {
            SigningKey::from_bytes(&derive(seed, "signing", i))
                .map_err(|e| BenchError::Other(format!("signing key {i}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BenchKeys { noise, signing })
}

/// The clear vector `which` of a run (0: the left factors, 1: the right factors, 2: the
/// owner's values): `len` uniform field elements from a ChaCha20 stream keyed by the seed.
pub fn clear_values<F: PrimeField>(seed: &Hash32, which: u32, len: usize) -> Vec<F> {
    let mut rng = ChaCha20Rng::from_seed(derive(seed, "values", which));
    let mut out = vec![F::ZERO; len];
    F::fill_random(&mut rng, &mut out);
    out
}

/// Party `point`'s Shamir share of [`clear_values`] `which`: every party draws the same
/// random polynomials of degree `t` (coefficients from a ChaCha20 stream keyed by the seed) and
/// evaluates them at its own point, so only its own shares are ever in its memory.
pub fn dealt_share<F: PrimeField>(
    seed: &Hash32,
    which: u32,
    len: usize,
    t: usize,
    point: usize,
) -> Vec<F> {
    let mut out = clear_values::<F>(seed, which, len);
    let mut rng = ChaCha20Rng::from_seed(derive(seed, "coefficients", which));
    let x = F::from_u64(point as u64);
    let powers: Vec<F> = (1..=t as u64).map(|j| x.pow_u64(j)).collect();
    let mut coefficients = vec![F::ZERO; t];
    for v in out.iter_mut() {
        F::fill_random(&mut rng, &mut coefficients);
        for (c, p) in coefficients.iter().zip(&powers) {
            *v += *c * *p;
        }
    }
    out
}

/// What the parties of a run open: the products, the dot product, or the sum of the owner's
/// values.
pub fn expected<F: PrimeField>(workload: Workload, seed: &Hash32, size: usize) -> Vec<F> {
    match workload {
        Workload::Products | Workload::Dot => {
            let a = clear_values::<F>(seed, 0, size);
            let b = clear_values::<F>(seed, 1, size);
            if workload == Workload::Dot {
                vec![F::dot(&a, &b)]
            } else {
                a.iter().zip(&b).map(|(x, y)| *x * *y).collect()
            }
        }
        Workload::Input => vec![F::sum_slice(&clear_values::<F>(seed, 2, size))],
    }
}

/// The digest a party reports for what it opened ([`payload_hash`] of the values).
pub fn digest<F: PrimeField>(values: &[F]) -> String {
    hex::encode(payload_hash(values))
}

/// This process's peak resident set in KiB (`VmHWM` of `/proc/self/status`); `None` where
/// there is no such file.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of this process so far, all its threads (user and system, exited threads
/// included), in milliseconds: `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`, one system call
/// (reading every thread's `/proc/self/task/*/schedstat` took about 1% of a short run's CPU);
/// `None` where the clock is missing.
pub fn cpu_ms() -> Option<f64> {
    use nix::time::{clock_gettime, ClockId};
    let t = clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID).ok()?;
    Some(t.tv_sec() as f64 * 1e3 + t.tv_nsec() as f64 / 1e6)
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One party of a run.
#[derive(Debug, Clone)]
pub struct PartyConfig {
    /// Parties.
    pub n: usize,
    /// Threshold (at most `t` corrupt; `n >= 2t + 1`).
    pub t: usize,
    /// This party's index, `1..=n`.
    pub me: usize,
    /// The run's seed.
    pub seed: Hash32,
    /// Values per vector.
    pub size: usize,
    /// What to measure.
    pub workload: Workload,
    /// Every party's listening address, `[i - 1]` for party `i` (this party binds its own).
    pub addrs: Vec<SocketAddr>,
    /// Bound on the whole run (connecting, setup, workload, closing).
    pub timeout: Duration,
    /// A machine waiting this long with no message is told its deadline passed.
    pub round_timeout: Duration,
}

/// What a party measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartyReport {
    /// The party.
    pub party: usize,
    /// The field's name.
    pub field: String,
    /// The workload.
    pub workload: Workload,
    /// Values per vector.
    pub size: usize,
    /// Parties.
    pub n: usize,
    /// Threshold.
    pub t: usize,
    /// Where the inputs came from: `dealt from the seed` or `stored by the owner`.
    pub inputs: String,
    /// Unix microseconds at the start of the timed part (after setup).
    pub start_us: u64,
    /// Unix microseconds when the workload's own machine ended (products re-shared, the dot
    /// product reduced, the stored vector received and summed), before the opening.
    pub computed_us: u64,
    /// Unix microseconds when the last opening was decoded.
    pub end_us: u64,
    /// Milliseconds of the PRSS key agreement (not timed).
    pub setup_ms: f64,
    /// Milliseconds of the timed part spent in the machines and in encoding and decoding
    /// messages, wall clock (the rest is waiting: for peers, the network; on a loaded machine
    /// it includes waiting for a core).
    pub busy_ms: f64,
    /// CPU milliseconds of the whole process over the timed part, every thread (machines,
    /// encryption, sockets): [`cpu_ms`].
    pub cpu_ms: Option<f64>,
    /// Frame payload bytes sent in the timed part (each recipient counted).
    pub bytes_sent: u64,
    /// Frame payload bytes received in the timed part.
    pub bytes_received: u64,
    /// Bytes of this party's input shares.
    pub input_bytes: u64,
    /// Values opened.
    pub opened: usize,
    /// [`digest`] of the opened values.
    pub opened_digest: String,
    /// Peak resident set of the process, KiB ([`peak_rss_kib`]).
    pub peak_rss_kib: Option<u64>,
}

/// The owner of a [`Workload::Input`] run.
#[derive(Debug, Clone)]
pub struct OwnerConfig {
    /// Parties.
    pub n: usize,
    /// Threshold.
    pub t: usize,
    /// The run's seed.
    pub seed: Hash32,
    /// Values to store.
    pub size: usize,
    /// Every party's address, `[i - 1]` for party `i`.
    pub addrs: Vec<SocketAddr>,
    /// Bound on the whole run.
    pub timeout: Duration,
}

/// What the owner measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerReport {
    /// Unix microseconds when it started dealing (every party ready).
    pub start_us: u64,
    /// Milliseconds of the dealing.
    pub deal_ms: f64,
    /// Unix microseconds when the last batch was handed to the kernel.
    pub sent_us: u64,
    /// Frame payload bytes sent, all parties.
    pub bytes_sent: u64,
}

/// The network side of a party: its channels and the messages of sessions not running yet.
struct Net {
    me: PartyId,
    n: usize,
    queues: Vec<Option<mpsc::Sender<Frame>>>,
    senders: Vec<JoinHandle<()>>,
    events: mpsc::Receiver<PeerEvent>,
    party_of: HashMap<TransportKey, PartyId>,
    held: Vec<(PartyId, Frame)>,
    finished: BTreeSet<Hash32>,
    done_from: BTreeSet<PartyId>,
    ready_from: BTreeSet<PartyId>,
    round_timeout: Duration,
    busy: Duration,
    bytes_sent: u64,
    bytes_received: u64,
    _peers: Arc<Peers>,
}

impl Net {
    /// Encodes each message once and queues the frame for its recipients.
    async fn send<F: PrimeField>(
        &mut self,
        session: &Hash32,
        out: Vec<Outgoing<F>>,
    ) -> Result<(), BenchError> {
        for o in out {
            let t0 = Instant::now();
            let mut bytes = Vec::with_capacity(PEER_HEADER + 64);
            bytes.push(PEER_VERSION);
            bytes.extend_from_slice(session);
            encode_message(&o.msg, &mut bytes);
            let frame = Frame::new(MessageType::SIGNED, bytes)
                .map_err(|e| BenchError::Other(format!("message too large: {e}")))?;
            self.busy += t0.elapsed();
            let targets: Vec<PartyId> = match o.to {
                Recipient::All => PartyId::all(self.n).filter(|p| *p != self.me).collect(),
                Recipient::One(p) => vec![p],
            };
            for p in targets {
                self.send_frame(p, frame.clone()).await?;
            }
        }
        Ok(())
    }

    async fn send_frame(&mut self, to: PartyId, frame: Frame) -> Result<(), BenchError> {
        let q = self
            .queues
            .get(to.slot())
            .and_then(Option::as_ref)
            .ok_or_else(|| BenchError::Other(format!("no channel to party {to}")))?;
        self.bytes_sent += frame.payload().len() as u64;
        q.send(frame)
            .await
            .map_err(|_| BenchError::Other(format!("the sender to party {to} stopped")))
    }

    /// Runs `m` to its output over the channels, as session `session`.
    async fn drive<F: PrimeField, M: Machine<F>>(
        &mut self,
        m: &mut M,
        session: Hash32,
    ) -> Result<M::Output, BenchError> {
        let t0 = Instant::now();
        let step = m.start()?;
        self.busy += t0.elapsed();
        self.send(&session, step.send).await?;
        if let Some(out) = step.output {
            self.finished.insert(session);
            return Ok(out);
        }
        let mut backlog: Vec<(PartyId, Frame)> = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            if peek_session(self.held[i].1.payload()).ok() == Some(session) {
                backlog.push(self.held.remove(i));
            } else {
                i += 1;
            }
        }
        let mut backlog = backlog.into_iter();
        loop {
            let (from, frame) = match backlog.next() {
                Some(x) => x,
                None => match tokio::time::timeout(self.round_timeout, self.events.recv()).await {
                    Err(_) => {
                        let Some(round) = m.waiting() else {
                            return Err(BenchError::Other("a machine waits for nothing".into()));
                        };
                        tracing::warn!(target: "btcmpc::bench", round = round.round, "deadline passed");
                        let t0 = Instant::now();
                        let step = m.deadline(round)?;
                        self.busy += t0.elapsed();
                        self.send(&session, step.send).await?;
                        if let Some(out) = step.output {
                            self.finished.insert(session);
                            return Ok(out);
                        }
                        continue;
                    }
                    Ok(None) => return Err(BenchError::Other("the peer manager stopped".into())),
                    Ok(Some(ev)) => match self.sort(ev) {
                        Some(x) => x,
                        None => continue,
                    },
                },
            };
            let Ok(s) = peek_session(frame.payload()) else {
                tracing::debug!(target: "btcmpc::bench", %from, "undecodable frame dropped");
                continue;
            };
            if s != session {
                if !self.finished.contains(&s) {
                    self.held.push((from, frame));
                }
                continue;
            }
            let t0 = Instant::now();
            let msg = match decode_message::<F>(&frame.payload()[PEER_HEADER..]) {
                Ok(msg) => msg,
                Err(e) => {
                    self.busy += t0.elapsed();
                    tracing::info!(target: "btcmpc::bench", %from, "malformed message refused: {e}");
                    continue;
                }
            };
            drop(frame);
            let step = m.handle(from, msg);
            self.busy += t0.elapsed();
            let step = match step {
                Ok(s) => s,
                Err(e) if e.is_refusal() => {
                    tracing::debug!(target: "btcmpc::bench", %from, "message refused: {e}");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.send(&session, step.send).await?;
            if let Some(out) = step.output {
                self.finished.insert(session);
                return Ok(out);
            }
        }
    }

    /// A `SIGNED` frame from a party, for the machines; `None` for anything else (a closing
    /// ping is recorded, a disconnection logged).
    fn sort(&mut self, ev: PeerEvent) -> Option<(PartyId, Frame)> {
        match ev {
            PeerEvent::Frame { peer, frame } => {
                let from = *self.party_of.get(&peer)?;
                self.bytes_received += frame.payload().len() as u64;
                if frame.kind() == MessageType::PING && frame.payload().as_ref() == DONE {
                    self.done_from.insert(from);
                    return None;
                }
                if frame.kind() == MessageType::PING && frame.payload().as_ref() == READY {
                    self.ready_from.insert(from);
                    return None;
                }
                (frame.kind() == MessageType::SIGNED).then_some((from, frame))
            }
            PeerEvent::Disconnected { peer, error } => {
                tracing::debug!(target: "btcmpc::bench", %peer, "peer disconnected: {error}");
                None
            }
        }
    }

    /// Tells every peer this party's setup is over and waits until every peer said so, so
    /// that the timed part starts at every party within one message's delivery, not when
    /// each one's setup happened to end.
    async fn barrier(&mut self) -> Result<(), BenchError> {
        self.all_say(READY, "waiting for the peers' setup to end")
            .await
    }

    /// Sends every peer the `PING` `word` ([`READY`] or [`DONE`]) and waits until every peer
    /// sent it too, within `round_timeout` per message; a machine message arriving meanwhile
    /// is held for its machine (unless its session is over).
    async fn all_say(&mut self, word: &[u8], waiting: &str) -> Result<(), BenchError> {
        let ping = Frame::new(MessageType::PING, word.to_vec())
            .map_err(|e| BenchError::Other(e.to_string()))?;
        let me = self.me;
        for p in PartyId::all(self.n).filter(|p| *p != me) {
            self.send_frame(p, ping.clone()).await?;
        }
        loop {
            let heard = if word == READY {
                &self.ready_from
            } else {
                &self.done_from
            };
            if heard.len() + 1 >= self.n {
                return Ok(());
            }
            match tokio::time::timeout(self.round_timeout, self.events.recv()).await {
                Ok(Some(ev)) => {
                    if let Some((from, frame)) = self.sort(ev) {
                        let session = peek_session(frame.payload()).ok();
                        if session.is_some_and(|s| !self.finished.contains(&s)) {
                            self.held.push((from, frame));
                        }
                    }
                }
                Ok(None) => return Err(BenchError::Other("the peer manager stopped".into())),
                Err(_) => return Err(BenchError::Timeout(waiting.into())),
            }
        }
    }

    /// Tells every peer this party is done, waits until every peer said so too, and flushes
    /// the send queues.
    async fn close(mut self) -> Result<(), BenchError> {
        self.all_say(DONE, "waiting for the peers to finish")
            .await?;
        self.queues.clear();
        for s in self.senders.drain(..) {
            let _ = s.await;
        }
        Ok(())
    }
}

/// Connects party `me` to every other party: dials the lower indices, takes the others from
/// the listener; the channels of an owner go to `owner`.
async fn connect_all(
    cfg: &PartyConfig,
    keys: &BenchKeys,
    owner: mpsc::Sender<Channel>,
) -> Result<Net, BenchError> {
    let (n, me) = (cfg.n, cfg.me);
    let me_id = PartyId::new(me, n)?;
    let own = keys.noise[me].clone();
    let channel = ChannelConfig::default();
    let parties: Vec<TransportKey> = (1..=n)
        .filter(|i| *i != me)
        .map(|i| keys.noise[i].public())
        .collect();
    let owner_key = keys.noise[0].public();
    let mut allowed = parties.clone();
    allowed.push(owner_key);
    let addr = *cfg
        .addrs
        .get(me - 1)
        .ok_or_else(|| BenchError::Other(format!("no address for party {me}")))?;
    let mut listener =
        Listener::bind(addr, own.clone(), AllowedKeys::new(allowed), channel).await?;
    let (peers, events) = Peers::new(
        own.clone(),
        AllowedKeys::new(parties.iter().copied()),
        channel,
        Backoff::default(),
    );
    let peers = Arc::new(peers);
    for i in (1..=n).filter(|i| *i != me) {
        peers.add(keys.noise[i].public(), cfg.addrs[i - 1]);
    }
    let accepting = Arc::clone(&peers);
    tokio::spawn(async move {
        while let Some(r) = listener.next().await {
            match r {
                Ok(ch) if ch.remote() == owner_key => {
                    let _ = owner.send(ch).await;
                }
                Ok(ch) => {
                    if let Err(e) = accepting.adopt(ch) {
                        tracing::warn!(target: "btcmpc::bench", "channel refused: {e}");
                    }
                }
                Err((from, e)) => {
                    tracing::warn!(target: "btcmpc::bench", %from, "connection refused: {e}");
                }
            }
        }
    });
    for j in 1..me {
        let only = AllowedKeys::new([keys.noise[j].public()]);
        let ch = loop {
            match connect(cfg.addrs[j - 1], &own, &only, channel).await {
                Ok(ch) => break ch,
                Err(e) => {
                    tracing::debug!(target: "btcmpc::bench", party = j, "dial failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        peers.adopt(ch)?;
    }
    while peers.connected().len() + 1 < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut queues = Vec::with_capacity(n);
    let mut senders = Vec::new();
    for i in 1..=n {
        if i == me {
            queues.push(None);
            continue;
        }
        let (tx, mut rx) = mpsc::channel::<Frame>(4096);
        let (p, key) = (Arc::clone(&peers), keys.noise[i].public());
        senders.push(tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if let Err(e) = p.send(key, &frame).await {
                    tracing::warn!(target: "btcmpc::bench", party = i, "send failed: {e}");
                }
            }
        }));
        queues.push(Some(tx));
    }
    Ok(Net {
        me: me_id,
        n,
        queues,
        senders,
        events,
        party_of: (1..=n)
            .filter(|i| *i != me)
            .map(|i| Ok((keys.noise[i].public(), PartyId::new(i, n)?)))
            .collect::<Result<_, RoundError>>()?,
        held: Vec::new(),
        finished: BTreeSet::new(),
        done_from: BTreeSet::new(),
        ready_from: BTreeSet::new(),
        round_timeout: cfg.round_timeout,
        busy: Duration::ZERO,
        bytes_sent: 0,
        bytes_received: 0,
        _peers: peers,
    })
}

/// The plan `sum(a * b)` over two columns of `rows` rows.
fn dot_plan<F: PrimeField>(rows: usize) -> Plan {
    let node = Node::Mul(Box::new(Node::Column(0)), Box::new(Node::Column(1)));
    Plan {
        field: F::NAME,
        rows,
        opened: vec![Opened {
            label: "sum(a * b)".into(),
            degree: node.degree(),
            node,
            scale: 0,
            bits: u64::from(F::MODULUS_BITS),
        }],
        outputs: Vec::new(),
        degree: 2,
        gates: Vec::new(),
        min_rows: None,
        supports: Vec::new(),
    }
}

/// The plan `sum(x)` over one column of `rows` rows.
fn sum_plan<F: PrimeField>(rows: usize) -> Plan {
    let node = Node::Column(0);
    Plan {
        field: F::NAME,
        rows,
        opened: vec![Opened {
            label: "sum(x)".into(),
            degree: node.degree(),
            node,
            scale: 0,
            bits: u64::from(F::MODULUS_BITS),
        }],
        outputs: Vec::new(),
        degree: 1,
        gates: Vec::new(),
        min_rows: None,
        supports: Vec::new(),
    }
}

/// Receives the owner's share batches of one store until `STORE_END`.
async fn receive_store<F: PrimeField>(
    ch: &mut Channel,
    size: usize,
    net: &mut Net,
) -> Result<Vec<F>, BenchError> {
    let mut column: Vec<F> = Vec::with_capacity(size);
    loop {
        let frame = ch.recv().await?;
        net.bytes_received += frame.payload().len() as u64;
        match frame.kind() {
            MessageType::SHARE_BATCH => {
                let t0 = Instant::now();
                let b = ShareBatch::<F>::parse(frame.payload())
                    .map_err(|e| BenchError::Other(e.to_string()))?;
                if b.holder != 0 || b.column != 0 || b.first_row != column.len() as u64 {
                    return Err(BenchError::Other(format!(
                        "share batch for holder {} column {} row {} out of order",
                        b.holder, b.column, b.first_row
                    )));
                }
                if column.len() + b.values.len() > size {
                    return Err(BenchError::Other("more shares than announced".into()));
                }
                column.extend_from_slice(&b.values);
                net.busy += t0.elapsed();
            }
            MessageType::STORE_END => {
                let _: SessionOnly =
                    parse_json(&frame).map_err(|e| BenchError::Other(e.to_string()))?;
                break;
            }
            k => return Err(BenchError::Other(format!("unexpected {k} from the owner"))),
        }
    }
    if column.len() != size {
        return Err(BenchError::Other(format!(
            "the owner sent {} shares, {size} expected",
            column.len()
        )));
    }
    Ok(column)
}

/// Runs one party of a run (see the module docs): connects, agrees on PRSS keys, runs the
/// timed workload, opens its result and waits for every peer to finish. Returns the report and
/// the opened values.
///
/// # Errors
/// [`BenchError`]: a bad configuration, a channel or machine failure, or `cfg.timeout`
/// passing.
pub async fn run_party<F: PrimeField>(
    cfg: &PartyConfig,
) -> Result<(PartyReport, Vec<F>), BenchError> {
    match tokio::time::timeout(cfg.timeout, party_inner::<F>(cfg)).await {
        Ok(r) => r,
        Err(_) => Err(BenchError::Timeout(format!(
            "running party {} ({} s)",
            cfg.me,
            cfg.timeout.as_secs()
        ))),
    }
}

async fn party_inner<F: PrimeField>(
    cfg: &PartyConfig,
) -> Result<(PartyReport, Vec<F>), BenchError> {
    let (n, t, me) = (cfg.n, cfg.t, cfg.me);
    Params::new(n, t).map_err(|e| BenchError::Other(e.to_string()))?;
    let me_id = PartyId::new(me, n)?;
    if cfg.addrs.len() != n {
        return Err(BenchError::Other(format!(
            "{} addresses for {n} parties",
            cfg.addrs.len()
        )));
    }
    let keys = keys(&cfg.seed, n)?;
    let verifying = keys.verifying();
    let signer = keys.signing[me - 1].clone();
    // The inputs, before anything is timed.
    let (a, b): (Vec<F>, Vec<F>) = match cfg.workload {
        Workload::Products | Workload::Dot => (
            dealt_share(&cfg.seed, 0, cfg.size, t, me),
            dealt_share(&cfg.seed, 1, cfg.size, t, me),
        ),
        Workload::Input => (Vec::new(), Vec::new()),
    };
    let (owner_tx, mut owner_rx) = mpsc::channel(1);
    let mut net = connect_all(cfg, &keys, owner_tx).await?;
    let setup_start = Instant::now();
    let mut setup = Setup::<F>::new(
        me_id,
        t,
        derive(&cfg.seed, "roster", 0),
        verifying.clone(),
        signer.clone(),
        derive(&cfg.seed, "setup", me as u32),
    )?;
    let out = net
        .drive(&mut setup, derive(&cfg.seed, "setup-session", 0))
        .await?;
    let prss = out
        .prss
        .ok_or_else(|| BenchError::Other("this party was excluded at setup".into()))?;
    let setup_ms = setup_start.elapsed().as_secs_f64() * 1e3;
    net.barrier().await?;
    let mut owner = match cfg.workload {
        Workload::Input => {
            let mut ch = owner_rx
                .recv()
                .await
                .ok_or_else(|| BenchError::Other("the listener stopped".into()))?;
            ch.send(
                &Frame::new(MessageType::PING, READY.to_vec())
                    .map_err(|e| BenchError::Other(e.to_string()))?,
            )
            .await?;
            Some(ch)
        }
        _ => None,
    };
    net.busy = Duration::ZERO;
    net.bytes_sent = 0;
    net.bytes_received = 0;
    let job = |label: &str| derive(&cfg.seed, label, 0);
    let ignored = BTreeSet::new();
    let columns = [a, b];
    let plan = dot_plan::<F>(cfg.size);
    // What the timed part leaves behind (its machine, a stored column) is freed after the
    // clock stops: freeing 2 x 32 MB takes milliseconds of the kernel's time and is no part of
    // the operation.
    let mut spent: Option<EvalMachine<'_, F>> = None;
    let mut stored: Vec<F> = Vec::new();
    let cpu_start = cpu_ms();
    let start_us = unix_us();
    let (shares, input_bytes) = match cfg.workload {
        Workload::Products => {
            let mut m = EvalMachine::new(
                &prss,
                job("products"),
                Task::Products {
                    a: &columns[0],
                    b: &columns[1],
                },
                verifying.clone(),
                signer.clone(),
                ignored.clone(),
            )?;
            let c = net.drive(&mut m, job("products")).await?.values;
            spent = Some(m);
            (c, 2 * cfg.size * F::ENCODED_LEN)
        }
        Workload::Dot => {
            let mut m = EvalMachine::new(
                &prss,
                job("dot"),
                Task::Plan {
                    plan: &plan,
                    columns: &columns,
                },
                verifying.clone(),
                signer.clone(),
                ignored.clone(),
            )?;
            let c = net.drive(&mut m, job("dot")).await?.values;
            spent = Some(m);
            (c, 2 * cfg.size * F::ENCODED_LEN)
        }
        Workload::Input => {
            let ch = owner
                .as_mut()
                .ok_or_else(|| BenchError::Other("no owner".into()))?;
            let column = receive_store::<F>(ch, cfg.size, &mut net).await?;
            let t0 = Instant::now();
            let sum = evaluate_local(&sum_plan::<F>(cfg.size), std::slice::from_ref(&column))
                .map_err(|e| BenchError::Other(e.to_string()))?;
            net.busy += t0.elapsed();
            stored = column;
            (sum, cfg.size * F::ENCODED_LEN)
        }
    };
    let computed_us = unix_us();
    let mut m = EvalMachine::new(
        &prss,
        job("open"),
        Task::Open { shares: &shares },
        verifying,
        signer,
        ignored,
    )?;
    let opened = net.drive(&mut m, job("open")).await?.values;
    let end_us = unix_us();
    let cpu = cpu_ms().zip(cpu_start).map(|(b, a)| b - a);
    // Nothing else runs until every party is done (the close is a barrier): freeing the
    // vectors (milliseconds of the kernel's time) or hashing the opened values here took the
    // CPU from the parties still in their timed part.
    let (busy, bytes_sent, bytes_received) = (net.busy, net.bytes_sent, net.bytes_received);
    net.close().await?;
    drop(m);
    drop(shares);
    drop(spent);
    drop(stored);
    drop(columns);
    drop(owner.take());
    let report = PartyReport {
        party: me,
        field: F::NAME.to_string(),
        workload: cfg.workload,
        size: cfg.size,
        n,
        t,
        inputs: match cfg.workload {
            Workload::Input => "stored by the owner".into(),
            _ => "dealt from the seed".into(),
        },
        start_us,
        computed_us,
        end_us,
        setup_ms,
        busy_ms: busy.as_secs_f64() * 1e3,
        cpu_ms: cpu,
        bytes_sent,
        bytes_received,
        input_bytes: input_bytes as u64,
        opened: opened.len(),
        opened_digest: digest(&opened),
        peak_rss_kib: peak_rss_kib(),
    };
    Ok((report, opened))
}

/// Runs the owner of a [`Workload::Input`] run: connects to every party, waits until each is
/// ready (its setup done), then deals [`clear_values`] `2` with the store's dealing and sends
/// each party its shares as the store does, all parties at once.
///
/// # Errors
/// [`BenchError`]: a channel failure, or `cfg.timeout` passing.
pub async fn run_owner<F: PrimeField>(cfg: &OwnerConfig) -> Result<OwnerReport, BenchError> {
    match tokio::time::timeout(cfg.timeout, owner_inner::<F>(cfg)).await {
        Ok(r) => r,
        Err(_) => Err(BenchError::Timeout(format!(
            "running the owner ({} s)",
            cfg.timeout.as_secs()
        ))),
    }
}

async fn owner_inner<F: PrimeField>(cfg: &OwnerConfig) -> Result<OwnerReport, BenchError> {
    let params = Params::new(cfg.n, cfg.t).map_err(|e| BenchError::Other(e.to_string()))?;
    let keys = keys(&cfg.seed, cfg.n)?;
    let values = clear_values::<F>(&cfg.seed, 2, cfg.size);
    let mut channels = Vec::with_capacity(cfg.n);
    for i in 1..=cfg.n {
        let only = AllowedKeys::new([keys.noise[i].public()]);
        let ch = loop {
            match connect(
                cfg.addrs[i - 1],
                &keys.noise[0],
                &only,
                ChannelConfig::default(),
            )
            .await
            {
                Ok(ch) => break ch,
                Err(e) => {
                    tracing::debug!(target: "btcmpc::bench", party = i, "dial failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        channels.push(ch);
    }
    for (i, ch) in channels.iter_mut().enumerate() {
        let f = ch.recv().await?;
        if f.kind() != MessageType::PING || f.payload().as_ref() != READY {
            return Err(BenchError::Other(format!(
                "party {} sent {} instead of its ready",
                i + 1,
                f.kind()
            )));
        }
    }
    let start_us = unix_us();
    let t0 = Instant::now();
    let dealt = deal(params, &[values], &mut dealer_rng());
    let deal_ms = t0.elapsed().as_secs_f64() * 1e3;
    let session = derive(&cfg.seed, "store-session", 0);
    let mut tasks = Vec::with_capacity(cfg.n);
    for (mut ch, shares) in channels.into_iter().zip(dealt) {
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let column = shares.columns.into_iter().next().unwrap_or_default();
            for (k, chunk) in column.chunks(BATCH_VALUES).enumerate() {
                let f = ShareBatch {
                    session,
                    holder: 0,
                    column: 0,
                    first_row: (k * BATCH_VALUES) as u64,
                    values: chunk.to_vec(),
                }
                .to_frame()
                .map_err(|e| BenchError::Other(e.to_string()))?;
                sent += f.payload().len() as u64;
                ch.send(&f).await?;
            }
            let f = json_frame(MessageType::STORE_END, &SessionOnly { session })
                .map_err(|e| BenchError::Other(e.to_string()))?;
            sent += f.payload().len() as u64;
            ch.send(&f).await?;
            let sent_us = unix_us();
            // Held until the party closes it: the party reads everything first.
            let _ = ch.recv().await;
            Ok::<(u64, u64), BenchError>((sent, sent_us))
        }));
    }
    let mut bytes_sent = 0;
    let mut sent_us = 0;
    for t in tasks {
        let (bytes, at) = t
            .await
            .map_err(|e| BenchError::Other(format!("owner task: {e}")))??;
        bytes_sent += bytes;
        sent_us = sent_us.max(at);
    }
    Ok(OwnerReport {
        start_us,
        deal_ms,
        sent_us,
        bytes_sent,
    })
}

/// A fresh seed for a run, from the operating system's randomness.
pub fn random_seed() -> Hash32 {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    seed
}
