//! The party daemon: the second driver of the engine's protocol machines (the in-process
//! committee is the first), over Noise channels and the party's SQLite store.
//!
//! [`Party::start`] binds the party's endpoint and serves, on one task that owns all state:
//!
//! - **owners** storing datasets (the exchange of [`super::wire`]): share batches are taken
//!   into memory (at most [`PartyConfig::max_store_values`] values a session), then the whole
//!   dataset is committed to the store in one transaction **before** the signed receipt is
//!   sent; a party killed before that holds none of the dataset, after it all of it;
//! - **the store check** among the parties: a [`CheckMachine`] per session whose signed
//!   messages go through the outbox ([`Store::put_outgoing`]) before they are sent, whose
//!   delivered messages are persisted before they are handled, and which is rebuilt and replayed
//!   after a restart, so a restarted party re-sends the same bytes and never a second version of
//!   a slot;
//! - **its operator** asking for its status ([`wire::Status`]).
//!
//! A connection is authenticated by Noise; its remote key tells a party of the manifest (party
//! messages accepted) from a client (owner and status messages only). A frame a peer should not
//! send, or one that does not parse, is answered with a one-line `ERROR` and dropped; the
//! daemon goes on serving everyone else.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::mpc::sig::{SigningKey, VerifyingKey};
use bitcoin::secp256k1::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::access::{authorize, AccessAnswer, AccessRequest, AclView};
use super::card::{schnorr_sign, schnorr_verify};
use super::fault::{Fault, FaultStep};
use super::frame::{Frame, MessageType};
use super::manifest::Manifest;
use super::noise::{AllowedKeys, StaticKeypair, TransportKey};
use super::peer::{decode_message, message_bytes, peek_session, LogEntry, PeerMessage};
use super::store::{DatasetMeta, OutboxSlot, PutOutgoing, Store, StoreError};
use super::transport::{
    keepalive_period, Backoff, ChannelConfig, Listener, PeerEvent, Peers, TransportError,
};
use super::wire::{
    self, field_from_hex, json_frame, parse_json, receipt_digest, Complaint, DatasetStatus,
    Receipt, SessionOnly, ShareBatch, StoreBegin, StoreCheck, StoreCommit, StoreDone, WireError,
};
use crate::mpc::check::{
    CheckInput, CheckMachine, CheckOutput, STORE_CHECK_ROUND, STORE_CHECK_TAG,
};
use crate::mpc::dealing::{Hash32, PartyShares};
use crate::mpc::echo::Broadcast;
use crate::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
use crate::mpc::round::{Machine, Message, Outgoing, PartyId, Recipient, RoundId, Step};
use crate::mpc::shamir::Params;

mod claims;
mod jobs;
use jobs::Job;
pub use jobs::{job_summaries, JobSummary, DEFAULT_MAX_OPEN_JOBS, MIN_JOB_BLOCKS};

/// Default bound on the values one store session may hand a party (rows x shared columns):
/// 8 million, 256 MB of secp256k1 shares in memory at most.
pub const DEFAULT_MAX_STORE_VALUES: u64 = 8_000_000;
/// Store sessions a party takes on at once.
pub const MAX_OPEN_SESSIONS: usize = 4;
/// Messages from peers held for a session whose check has not started here yet.
pub const MAX_EARLY_MESSAGES: usize = 1024;
/// Bytes of such messages held at most, all sessions together (16 MiB), shared equally among
/// the sending parties.
pub const MAX_EARLY_BYTES: usize = 16 << 20;
/// Such messages are dropped after this long.
pub const EARLY_TTL: Duration = Duration::from_secs(120);
/// Received datasets whose check never ran are deleted after this long (seconds: ten minutes,
/// while an owner runs the check seconds after the receipts), so a client
/// that stores and vanishes cannot fill the party's disk.
pub const UNCHECKED_TTL_SECS: u64 = 600;
/// Received datasets whose check has not run yet, at most.
pub const MAX_UNCHECKED: usize = 8;

/// What a party daemon needs.
#[derive(Debug)]
pub struct PartyConfig {
    /// The manifest (roster and bonds) this party serves.
    pub manifest: Manifest,
    /// This party's key pair (its key is the roster's `party` entry).
    pub party_key: Keypair,
    /// This party's Noise static key pair (the card's transport key).
    pub transport: StaticKeypair,
    /// Where to listen (usually the card's endpoint).
    pub listen: SocketAddr,
    /// The SQLite file.
    pub store_path: PathBuf,
    /// How long a protocol round waits for the slowest party before treating it as absent.
    pub round_timeout: Duration,
    /// Most values (rows x shared columns) one store session may hand this party.
    pub max_store_values: u64,
    /// A fault to commit (tests and demos on regtest only; the caller checks the network with
    /// [`Fault::allowed_on`]).
    pub fault: Option<Fault>,
    /// Channel timeouts.
    pub channel: ChannelConfig,
    /// A store session that got no frame from its owner for this long may be dropped to make
    /// room for another ([`IDLE_SESSION`] by default).
    pub idle_session: Duration,
    /// Where to follow the chain for the ACL of every committed dataset (`None`: the party
    /// answers every access question with a refusal saying it follows no chain).
    pub chain: Option<ChainSource>,
    /// The party's wallet directory: claims of paid jobs pay into it (`None`: the party never
    /// claims, so it quotes no job).
    pub wallet: Option<PathBuf>,
    /// The smallest fee this party quotes a job for, sats.
    pub min_fee_sat: u64,
    /// Most jobs open at once ([`DEFAULT_MAX_OPEN_JOBS`]).
    pub max_open_jobs: usize,
    /// The fee rate this party assumes for its claims, sat/vB: each quote asks for the claim's
    /// fee at this rate on top of the fee ([`DEFAULT_CLAIM_FEE_RATE`]).
    pub claim_fee_rate: u64,
}

/// The default claim fee-rate assumption, sat/vB.
pub const DEFAULT_CLAIM_FEE_RATE: u64 = 2;

/// The Electrum server a party follows, and how often.
#[derive(Debug, Clone)]
pub struct ChainSource {
    /// `tcp://` or `ssl://` URL.
    pub url: String,
    /// The network.
    pub network: bitcoin::Network,
    /// Whether a plaintext connection is allowed off regtest.
    pub allow_plaintext: bool,
    /// How often the ACLs are read again.
    pub poll: Duration,
    /// Confirmations a GRANT needs ([`super::acl::DEFAULT_ACL_MIN_CONF`]).
    pub acl_min_conf: u32,
    /// Datasets with fewer rows are never queried ([`super::access::DEFAULT_MIN_ROWS`]).
    pub min_rows: u64,
}

/// Errors that stop a party daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PartyError {
    /// The party key is not in the manifest's roster.
    #[error("this party's key {0} is not in the manifest's roster")]
    NotInRoster(PublicKey),
    /// The card's transport key differs from the configured one.
    #[error("the transport key does not match party {0}'s card in the manifest")]
    TransportMismatch(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Binding failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The manifest is malformed.
    #[error("manifest: {0}")]
    Manifest(String),
}

/// A running party daemon.
#[derive(Debug)]
pub struct Party {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), PartyError>>,
    accept: JoinHandle<()>,
    stop_accept: Option<oneshot::Sender<()>>,
}

impl Party {
    /// Opens the store, resumes unfinished store checks, binds `config.listen` and starts
    /// serving on the current tokio runtime.
    ///
    /// # Errors
    /// [`PartyError`]: a key not in the roster, a store that does not open, a port in use.
    pub async fn start(config: PartyConfig) -> Result<Party, PartyError> {
        let roster = &config.manifest.roster;
        let index = roster
            .index_of(&config.party_key.public_key())
            .ok_or(PartyError::NotInRoster(config.party_key.public_key()))?;
        if roster.cards[index - 1].transport_key != config.transport.public().0 {
            return Err(PartyError::TransportMismatch(index));
        }
        let n = roster.n();
        let params =
            Params::new(n, roster.params.t).map_err(|e| PartyError::Manifest(e.to_string()))?;
        let me = PartyId::new(index, n).map_err(|e| PartyError::Manifest(e.to_string()))?;
        let transport_keys: Vec<TransportKey> = roster
            .cards
            .iter()
            .map(|c| TransportKey(c.transport_key))
            .collect();
        let verifying = roster
            .cards
            .iter()
            .map(|c| VerifyingKey::from_bytes(&c.party_key.x_only_public_key().0.serialize()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PartyError::Manifest(format!("party key: {e}")))?;
        let signer = SigningKey::from_bytes(&config.party_key.secret_bytes())
            .map_err(|e| PartyError::Manifest(format!("party key: {e}")))?;
        let store = Store::open(&config.store_path)?;
        let others: Vec<TransportKey> = transport_keys
            .iter()
            .enumerate()
            .filter(|(i, _)| *i + 1 != index)
            .map(|(_, k)| *k)
            .collect();
        let (peers, peer_events) = Peers::new(
            config.transport.clone(),
            AllowedKeys::new(others.iter().copied()),
            config.channel,
            Backoff {
                initial: Duration::from_millis(200),
                max_delay: Duration::from_secs(2),
                max_attempts: 6,
            },
        );
        for (i, c) in roster.cards.iter().enumerate() {
            if i + 1 == index {
                continue;
            }
            match tokio::net::lookup_host(&c.endpoint)
                .await
                .ok()
                .and_then(|mut a| a.next())
            {
                Some(addr) => peers.add(TransportKey(c.transport_key), addr),
                None => {
                    warn!(target: "btcmpc::party", party = i + 1, endpoint = %c.endpoint, "cannot resolve a peer's endpoint")
                }
            }
        }
        let peers = Arc::new(peers);
        let mut listener = Listener::bind(
            config.listen,
            config.transport.clone(),
            AllowedKeys::any(),
            config.channel,
        )
        .await?;
        let local_addr = listener.local_addr();
        let (events_tx, events) = mpsc::channel::<Event>(1024);
        let mut queues = Vec::with_capacity(n);
        for (i, key) in transport_keys.iter().enumerate() {
            if i + 1 == index {
                queues.push(None);
                continue;
            }
            let (tx, mut rx) = mpsc::channel::<Frame>(4096);
            let (peers, key) = (Arc::clone(&peers), *key);
            tokio::spawn(async move {
                while let Some(frame) = rx.recv().await {
                    if let Err(e) = peers.send(key, &frame).await {
                        debug!(target: "btcmpc::party", peer = i + 1, "send failed: {e}");
                    }
                }
            });
            queues.push(Some(tx));
        }
        let core = Core {
            me,
            params,
            roster_id: roster.id(),
            party_keys: roster.cards.iter().map(|c| c.party_key).collect(),
            verifying,
            party_key: config.party_key,
            signer,
            transport_of: transport_keys
                .iter()
                .enumerate()
                .map(|(i, k)| (*k, PartyId::new(i + 1, n).expect("i < n")))
                .collect(),
            store,
            peers: Arc::clone(&peers),
            queues,
            clients: HashMap::new(),
            sessions: HashMap::new(),
            early: HashMap::new(),
            early_bytes: HashMap::new(),
            timers: HashSet::new(),
            acl_read: HashMap::new(),
            acl_wake: None,
            parked: Vec::new(),
            park_seq: 0,
            stale_peers: HashSet::new(),
            events: events_tx.clone(),
            round_timeout: config.round_timeout,
            idle_session: config.idle_session,
            max_store_values: config.max_store_values,
            fault: config.fault,
            bond: config
                .manifest
                .bonds
                .get(index - 1)
                .map(|b| (b.outpoint.to_string(), b.exit)),
            acls: HashMap::new(),
            min_rows: config
                .chain
                .as_ref()
                .filter(|_| config.wallet.is_some())
                .map(|c| c.min_rows),
            bond_state: None,
            bond_value: None,
            penalty_multiplier: u64::from(config.manifest.roster.params.penalty_multiplier),
            dispute_window: config.manifest.roster.params.dispute_window,
            deadline_horizon: config.manifest.roster.params.deadline_horizon,
            jobs: HashMap::new(),
            job_sessions: HashMap::new(),
            max_open_jobs: config.max_open_jobs,
            min_fee_sat: config.min_fee_sat,
            claim_fee_rate: config.claim_fee_rate.clamp(1, 100),
            network: config
                .chain
                .as_ref()
                .map_or(bitcoin::Network::Regtest, |c| c.network),
            judge_tx: None,
        };
        let mut core = core;
        let stop_follower = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(src) = config.chain.clone() {
            let claimer_src = src.clone();
            let (path, tx, stop) = (
                config.store_path.clone(),
                events_tx.clone(),
                Arc::clone(&stop_follower),
            );
            let (manifest, party) = (config.manifest.clone(), index);
            let (wake_tx, wake_rx) = std::sync::mpsc::sync_channel(1);
            core.acl_wake = Some(wake_tx);
            std::thread::Builder::new()
                .name("acl-follower".into())
                .spawn(move || follow_acls(&path, &src, &tx, &stop, &wake_rx, &manifest, party))
                .map_err(|e| PartyError::Manifest(format!("starting the ACL follower: {e}")))?;
            if let Some(wallet) = config.wallet.clone() {
                let (path, tx, stop) = (
                    config.store_path.clone(),
                    events_tx.clone(),
                    Arc::clone(&stop_follower),
                );
                let (manifest, src, key) = (config.manifest.clone(), claimer_src, config.party_key);
                // Bounded: evidence beyond it is refused "busy" at once (try_send).
                let (judge_tx, judge_rx) = std::sync::mpsc::sync_channel(16);
                core.judge_tx = Some(judge_tx);
                let (fault, claim_rate) = (config.fault, config.claim_fee_rate);
                std::thread::Builder::new()
                    .name("claimer".into())
                    .spawn(move || {
                        claims::claim_paid_jobs(
                            &path, &wallet, &src, &tx, &stop, &manifest, &key, &judge_rx, fault,
                            claim_rate,
                        )
                    })
                    .map_err(|e| PartyError::Manifest(format!("starting the claimer: {e}")))?;
            }
        }
        let (stop, stopped) = oneshot::channel();
        // Incoming connections: parties go to the peer manager, anyone else is a client.
        let accept_events = events_tx.clone();
        let accept_peers = Arc::clone(&peers);
        let party_keys: HashSet<TransportKey> = others.into_iter().collect();
        let own_key = config.transport.public();
        let client_idle = config.channel.idle_timeout;
        let clients: Arc<std::sync::Mutex<HashMap<TransportKey, usize>>> = Arc::default();
        let (stop_accept, mut accept_stopped) = oneshot::channel::<()>();
        let accept = tokio::spawn(async move {
            let mut next_conn = 1u64;
            loop {
                let r = tokio::select! {
                    r = listener.next() => r,
                    _ = &mut accept_stopped => None,
                };
                let Some(r) = r else { break };
                let ch = match r {
                    Ok(ch) => ch,
                    Err((from, e)) => {
                        debug!(target: "btcmpc::party", %from, "refused: {e}");
                        continue;
                    }
                };
                let remote = ch.remote();
                if party_keys.contains(&remote) {
                    if let Err(e) = accept_peers.adopt(ch) {
                        warn!(target: "btcmpc::party", "peer channel refused: {e}");
                    }
                    continue;
                }
                // Bounded client channels: at most MAX_CLIENTS_PER_KEY per key and MAX_CLIENTS in
                // all (any key may connect as a client, so a flood of fresh keys would
                // otherwise take every file descriptor). Refused ones are told why. The
                // operator's own key is not held to MAX_CLIENTS: `party status` and the other
                // operator commands still get through while a flood holds every other slot.
                let slot = match ClientSlot::take(&clients, remote, remote == own_key) {
                    Ok(slot) => slot,
                    Err(why) => {
                        warn!(target: "btcmpc::party", client = %remote, "client refused: {why}");
                        let (mut tx, _) = ch.split();
                        if let Ok(f) = Frame::new(MessageType::ERROR, why.into_bytes()) {
                            let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(&f)).await;
                        }
                        continue;
                    }
                };
                let conn = next_conn;
                next_conn += 1;
                let (mut tx, mut rx) = ch.split();
                let (out_tx, mut out_rx) = mpsc::channel::<Frame>(256);
                let ev = accept_events.clone();
                if ev
                    .send(Event::ClientUp {
                        conn,
                        operator: remote == own_key,
                        key: remote,
                        tx: out_tx,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                // The writer also sends a keepalive every third of the idle timeout, so a
                // client waiting for a long evaluation's answer does not drop this party as
                // silent.
                let period = keepalive_period(client_idle);
                tokio::spawn(async move {
                    let ping = Frame::new(MessageType::PING, Vec::new())
                        .expect("an empty ping is under its cap");
                    let mut tick =
                        tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                    loop {
                        let f = tokio::select! {
                            f = out_rx.recv() => match f {
                                Some(f) => f,
                                None => return,
                            },
                            _ = tick.tick() => ping.clone(),
                        };
                        if tx.send(&f).await.is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    let _slot = slot;
                    loop {
                        match rx.recv().await {
                            Ok(frame) if frame.kind() == MessageType::PING => {}
                            Ok(frame) => {
                                if ev.send(Event::Client { conn, frame }).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                debug!(target: "btcmpc::party", conn, "client gone: {e}");
                                let _ = ev.send(Event::ClientDown { conn }).await;
                                return;
                            }
                        }
                    }
                });
            }
            listener.close().await;
        });
        let task = tokio::spawn(async move {
            let r = core.run(events, peer_events, stopped).await;
            stop_follower.store(true, std::sync::atomic::Ordering::Relaxed);
            r
        });
        info!(target: "btcmpc::party", party = index, %local_addr, "party daemon listening");
        Ok(Party {
            local_addr,
            stop: Some(stop),
            task,
            accept,
            stop_accept: Some(stop_accept),
        })
    }

    /// The address the daemon listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the daemon (every write already committed stays) and waits for it. The listening
    /// address is free again when this returns (a daemon can be started on it at once).
    ///
    /// # Errors
    /// The error that stopped the daemon earlier, if one did.
    pub async fn shutdown(mut self) -> Result<(), PartyError> {
        // Stop accepting first, and wait until the listening socket is closed.
        if let Some(s) = self.stop_accept.take() {
            let _ = s.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.accept)
            .await
            .is_err()
        {
            self.accept.abort();
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(PartyError::Manifest(format!("the daemon task failed: {e}"))),
        }
    }

    /// Waits until the daemon stops by itself (an error) or `ctrl-c`-like cancellation.
    ///
    /// # Errors
    /// The error that stopped the daemon.
    pub async fn wait(mut self) -> Result<(), PartyError> {
        let _keep = self.stop.take();
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(PartyError::Manifest(format!("the daemon task failed: {e}"))),
        }
    }
}

enum Event {
    ClientUp {
        conn: u64,
        operator: bool,
        key: TransportKey,
        tx: mpsc::Sender<Frame>,
    },
    Client {
        conn: u64,
        frame: Frame,
    },
    ClientDown {
        conn: u64,
    },
    Timer {
        session: Hash32,
        round: RoundId,
    },
    Acl {
        session: String,
        view: AclView,
        /// When the follower started reading this view (before it asked for the tip).
        read_at: std::time::Instant,
    },
    /// A request parked for a fresh ACL read waited [`ACL_FRESH_WAIT`]: refuse it.
    Unpark {
        id: u64,
    },
    /// This party's bond as clients check it, and the value it holds (sats), if read.
    Bond(String, Option<u64>),
    Claimed {
        job: Hash32,
        result: Result<String, String>,
    },
    /// A judgment of evidence a client sent, for its connection.
    Judged {
        conn: u64,
        result: Result<super::judge::JudgeAnswer, String>,
    },
}

/// A client request that waits for an ACL read begun after it arrived (a REVOKE counts as
/// soon as it is seen, so a job is never quoted or run on a cached reading).
struct Parked {
    id: u64,
    conn: u64,
    frame: Frame,
    dataset: String,
    since: std::time::Instant,
}

/// How long a request waits for a fresh ACL read before it is refused.
pub const ACL_FRESH_WAIT: Duration = Duration::from_secs(10);

/// Most requests waiting for an ACL read at once (beyond it they are refused "ask again").
const MAX_PARKED: usize = 256;

struct Client {
    tx: mpsc::Sender<Frame>,
    operator: bool,
    key: TransportKey,
}

/// What a party records of a store session in its dataset's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionRecord {
    begin: StoreBegin,
    /// `received`, `checked`, `committed`.
    state: String,
    #[serde(default)]
    receipt_hash: Option<String>,
    #[serde(default)]
    dataset_id: Option<String>,
    #[serde(default)]
    store_outpoint: Option<String>,
    /// The receipts root the check ran over, hex (its STORE record must carry it).
    #[serde(default)]
    receipts_root: Option<String>,
    /// The anchor key, from the STORE_COMMIT.
    #[serde(default)]
    anchor_key: Option<String>,
    /// When the shares were committed (unix seconds).
    #[serde(default)]
    received_at: u64,
    /// The owner's transport key, hex: only it may check, complain about or commit the store.
    #[serde(default)]
    owner_key: String,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why `serde_json::to_vec` cannot fail on a [`CheckJournal`]: derived `Serialize` of lists of
/// byte strings and numbers (`serde_json` fails only on a map with non-string keys or a
/// failing `Serialize` impl).
const JOURNAL_SERIALIZES: &str =
    "a check journal serializes: derived Serialize of lists of byte strings and numbers";
/// Why `serde_json::to_vec` cannot fail on a [`SessionRecord`] (as [`JOURNAL_SERIALIZES`]).
const RECORD_SERIALIZES: &str =
    "a session record serializes: derived Serialize of strings, numbers and a schema";
/// Why `serde_json::to_vec` cannot fail on a list of equivocations (as [`JOURNAL_SERIALIZES`]).
const EVIDENCE_SERIALIZES: &str =
    "equivocation evidence serializes: derived Serialize of signed message headers";

/// What a party persists of a running check: the receipts and every delivered message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CheckJournal {
    receipts: Vec<Receipt>,
    delivered: Vec<LogEntry>,
    #[serde(default)]
    revealed: Vec<u32>,
}

enum Session {
    S(StoreSession<Secp256k1Scalar>),
    M(StoreSession<Mersenne127>),
}

macro_rules! with_session {
    ($s:expr, $v:ident => $e:expr) => {
        match $s {
            Session::S($v) => $e,
            Session::M($v) => $e,
        }
    };
}

struct StoreSession<F: PrimeField> {
    begin: StoreBegin,
    context: Hash32,
    mask: F,
    owner: Option<u64>,
    /// The transport key of the client that began the session: the only one it answers.
    owner_key: TransportKey,
    /// The last frame of the owner for this session.
    last_activity: std::time::Instant,
    columns: Vec<Vec<F>>,
    /// Revealed vectors of accused parties (holder -> columns).
    revealed: BTreeMap<u32, Vec<Vec<F>>>,
    received: bool,
    /// The hash this party signed its receipt for.
    receipt: Option<Hash32>,
    machine: Option<CheckMachine<F>>,
    twin: Option<CheckMachine<F>>,
    journal: CheckJournal,
    done: Option<StoreDone>,
    /// Equivocation evidence the check gathered.
    evidence: Vec<crate::mpc::echo::Equivocation>,
}

struct Core {
    me: PartyId,
    params: Params,
    roster_id: Hash32,
    party_keys: Vec<PublicKey>,
    verifying: Vec<VerifyingKey>,
    party_key: Keypair,
    signer: SigningKey,
    transport_of: HashMap<TransportKey, PartyId>,
    store: Store,
    peers: Arc<Peers>,
    queues: Vec<Option<mpsc::Sender<Frame>>>,
    clients: HashMap<u64, Client>,
    sessions: HashMap<Hash32, Session>,
    early: HashMap<Hash32, Vec<(PartyId, bytes::Bytes, std::time::Instant)>>,
    /// Bytes held in `early`, by sending party.
    early_bytes: HashMap<PartyId, usize>,
    timers: HashSet<(Hash32, RoundId)>,
    /// When the view in `acls` of each dataset was read (its follower pass began).
    acl_read: HashMap<String, std::time::Instant>,
    /// Wakes the ACL follower for an immediate read.
    acl_wake: Option<std::sync::mpsc::SyncSender<()>>,
    /// Requests waiting for a fresh ACL read, oldest first.
    parked: Vec<Parked>,
    park_seq: u64,
    stale_peers: HashSet<PartyId>,
    events: mpsc::Sender<Event>,
    round_timeout: Duration,
    idle_session: Duration,
    max_store_values: u64,
    fault: Option<Fault>,
    bond: Option<(String, u32)>,
    acls: HashMap<String, AclView>,
    min_rows: Option<u64>,
    bond_state: Option<String>,
    /// The bond's value (sats, followed through slashes), as last read from the chain.
    bond_value: Option<u64>,
    /// The roster's penalty multiplier: a job's penalty is this times its fee.
    penalty_multiplier: u64,
    /// The roster's dispute window (blocks after T in which evidence is judged).
    dispute_window: u32,
    /// The roster's deadline horizon: the furthest T a job may name, in blocks from the tip.
    deadline_horizon: u32,
    jobs: HashMap<Hash32, Job>,
    /// Session id (a job's setup or evaluation) -> job id.
    job_sessions: HashMap<Hash32, Hash32>,
    max_open_jobs: usize,
    min_fee_sat: u64,
    claim_fee_rate: u64,
    network: bitcoin::Network,
    /// Evidence to judge, to the claimer thread (which holds the wallet); `None` without one.
    judge_tx: Option<std::sync::mpsc::SyncSender<(u64, super::judge::JudgeRequest)>>,
}

/// A one-line refusal for the peer.
type Refuse = String;

fn crash(step: FaultStep, when: &str) -> ! {
    warn!(target: "btcmpc::party", "testing fault: crashing {when} {step:?}");
    std::process::abort()
}

/// A store session that got no frame from its owner for this long may be dropped to make room
/// (the default of [`PartyConfig::idle_session`]).
pub const IDLE_SESSION: Duration = Duration::from_secs(30);

fn hex32(text: &str) -> Hash32 {
    let mut out = [0u8; 32];
    let _ = hex::decode_to_slice(text, &mut out);
    out
}

fn session_hex(s: &Hash32) -> String {
    hex::encode(s)
}

fn store_job(s: &Hash32) -> String {
    format!("store:{}", session_hex(s))
}

/// Most client channels (owners, services, operators) a party holds at once.
pub const MAX_CLIENTS: usize = 512;
/// Most client channels a party holds at once for one client key.
pub const MAX_CLIENTS_PER_KEY: usize = 8;

/// One client channel counted against [`MAX_CLIENTS`] and [`MAX_CLIENTS_PER_KEY`] until it is
/// dropped (the operator's key against [`MAX_CLIENTS_PER_KEY`] only).
struct ClientSlot {
    table: Arc<std::sync::Mutex<HashMap<TransportKey, usize>>>,
    key: TransportKey,
}

impl ClientSlot {
    fn take(
        table: &Arc<std::sync::Mutex<HashMap<TransportKey, usize>>>,
        key: TransportKey,
        operator: bool,
    ) -> Result<Self, String> {
        let mut t = table.lock().expect("client table lock is never poisoned");
        let all: usize = t.values().sum();
        if all >= MAX_CLIENTS && !operator {
            return Err(format!(
                "busy: {MAX_CLIENTS} client connections are open here; try later"
            ));
        }
        let n = t.entry(key).or_insert(0);
        if *n >= MAX_CLIENTS_PER_KEY {
            return Err(format!(
                "busy: this key already has {MAX_CLIENTS_PER_KEY} connections open here"
            ));
        }
        *n += 1;
        Ok(Self {
            table: Arc::clone(table),
            key,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut t = self
            .table
            .lock()
            .expect("client table lock is never poisoned");
        if let Some(n) = t.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.key);
            }
        }
    }
}

/// Runs a handler that may compute for long (an evaluation round over many rows) so that the
/// runtime's other tasks (socket readers and writers, keepalives, timers) go on meanwhile: on a
/// multi-threaded runtime the worker hands its queued tasks to another thread first
/// (`block_in_place`); on a current-thread runtime it runs in place.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Core {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut peer_events: mpsc::Receiver<PeerEvent>,
        mut stop: oneshot::Receiver<()>,
    ) -> Result<(), PartyError> {
        self.resume()?;
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                Some(ev) = events.recv() => off_runtime(|| self.on_event(ev))?,
                Some(ev) = peer_events.recv() => off_runtime(|| self.on_peer_event(ev))?,
                else => return Ok(()),
            }
        }
    }

    fn fault(&self, f: Fault) -> bool {
        self.fault == Some(f)
    }

    fn crash_point(&self, step: FaultStep, before: bool) {
        match self.fault {
            Some(Fault::CrashBefore(s)) if before && s == step => crash(step, "before"),
            Some(Fault::CrashAfter(s)) if !before && s == step => crash(step, "after"),
            _ => {}
        }
    }

    /// Rebuilds every dataset that was received but not yet checked, and every check that was
    /// under way, replaying what was delivered; then re-sends the outbox.
    fn resume(&mut self) -> Result<(), PartyError> {
        for job in self.store.open_jobs()? {
            let Some(hex_session) = job.strip_prefix("store:") else {
                continue;
            };
            let mut session = [0u8; 32];
            if hex::decode_to_slice(hex_session, &mut session).is_err() {
                continue;
            }
            let Some(meta) = self
                .store
                .datasets()?
                .into_iter()
                .find(|d| d.id == hex_session)
            else {
                self.store.put_job_state(&job, b"{}", false)?;
                continue;
            };
            let Ok(record) = serde_json::from_slice::<SessionRecord>(&meta.meta) else {
                warn!(target: "btcmpc::party", %job, "unreadable dataset record; not resumed");
                continue;
            };
            match self.load_session(&record) {
                Ok((s, replay)) => {
                    info!(target: "btcmpc::party", %job, replay = replay.len(), "resumed a store session");
                    self.reinstate(session, s, replay)?;
                }
                Err(e) => warn!(target: "btcmpc::party", %job, "cannot resume: {e}"),
            }
        }
        self.resume_jobs()?;
        let open = self.store.open_jobs()?;
        for job in open {
            for (slot, bytes, _) in self.store.outbox(&job)? {
                self.resend(&slot, bytes);
            }
        }
        Ok(())
    }

    /// The session of a received dataset, rebuilt from its record and its journal, in its field.
    #[allow(clippy::type_complexity)]
    fn load_session(&mut self, record: &SessionRecord) -> Result<(Session, Vec<LogEntry>), String> {
        let journal: CheckJournal = self
            .store
            .job_state(&store_job(&record.begin.session))
            .ok()
            .flatten()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        match record.begin.field.as_str() {
            Secp256k1Scalar::NAME => self
                .resume_session::<Secp256k1Scalar>(record, journal)
                .map(|(s, r)| (Session::S(s), r)),
            Mersenne127::NAME => self
                .resume_session::<Mersenne127>(record, journal)
                .map(|(s, r)| (Session::M(s), r)),
            other => Err(format!("unknown field {other}")),
        }
    }

    /// Puts a rebuilt session back: its check (if one was under way) restarts and the journaled
    /// messages are delivered again in their order, so it re-sends the same bytes.
    fn reinstate(
        &mut self,
        session: Hash32,
        s: Session,
        replay: Vec<LogEntry>,
    ) -> Result<(), PartyError> {
        let running = with_session!(&s, s => s.machine.is_some());
        self.sessions.insert(session, s);
        if !running {
            return Ok(());
        }
        self.drive(session, None)?;
        for LogEntry(from, message) in replay {
            if let Ok(from) = PartyId::new(from as usize, self.params.n()) {
                self.deliver(from, PeerMessage { session, message })?;
            }
        }
        Ok(())
    }

    /// A received dataset's session rebuilt from disk, its check started again if one was
    /// under way; returns the messages to replay (in their original order).
    #[allow(clippy::type_complexity)]
    fn resume_session<F: PrimeField>(
        &mut self,
        record: &SessionRecord,
        journal: CheckJournal,
    ) -> Result<(StoreSession<F>, Vec<LogEntry>), String> {
        let mask = field_from_hex::<F>(&record.begin.mask).map_err(|e| e.to_string())?;
        let owner_key = record.owner()?;
        let mut receipt = [0u8; 32];
        hex::decode_to_slice(
            record.receipt_hash.clone().unwrap_or_default(),
            &mut receipt,
        )
        .map_err(|_| "stored receipt hash is corrupt".to_string())?;
        let mut s = StoreSession {
            context: record.begin.context(),
            begin: record.begin.clone(),
            mask,
            owner: None,
            owner_key,
            last_activity: std::time::Instant::now(),
            columns: Vec::new(),
            revealed: BTreeMap::new(),
            received: true,
            receipt: Some(receipt),
            machine: None,
            twin: None,
            journal: CheckJournal::default(),
            done: None,
            evidence: Vec::new(),
        };
        let replay = journal.delivered.clone();
        if !journal.receipts.is_empty() {
            self.start_check(&mut s, journal.receipts)?;
        }
        Ok((s, replay))
    }

    fn on_event(&mut self, ev: Event) -> Result<(), PartyError> {
        match ev {
            Event::ClientUp {
                conn,
                operator,
                key,
                tx,
            } => {
                self.clients.insert(conn, Client { tx, operator, key });
            }
            Event::ClientDown { conn } => {
                self.clients.remove(&conn);
                // Sessions of a client that left before its receipt are dropped (nothing of
                // them was committed); committed ones wait for the owner to come back.
                let gone: Vec<Hash32> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| with_session!(s, s => s.owner == Some(conn) && !s.received))
                    .map(|(k, _)| *k)
                    .collect();
                for k in gone {
                    self.sessions.remove(&k);
                }
                for s in self.sessions.values_mut() {
                    with_session!(s, s => if s.owner == Some(conn) { s.owner = None; });
                }
            }
            Event::Client { conn, frame } => {
                if let Some(dataset) = self.needs_fresh_acl(&frame) {
                    self.park(conn, frame, dataset);
                } else {
                    self.dispatch_client(conn, &frame);
                }
            }
            Event::Timer { session, round } => {
                self.timers.remove(&(session, round));
                if self.job_sessions.contains_key(&session) {
                    self.job_deadline(session, round)?;
                } else {
                    self.drive(session, Some(round))?;
                }
            }
            Event::Acl {
                session,
                view,
                read_at,
            } => {
                for (service, access) in &view.table {
                    let entry = format!("{access:?}");
                    self.store.put_acl(
                        &session,
                        &service.to_string(),
                        entry.as_bytes(),
                        view.tip,
                    )?;
                }
                self.acls.insert(session.clone(), view);
                self.acl_read.insert(session.clone(), read_at);
                // Requests that waited for this read are answered now, in arrival order.
                let (ready, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
                    .into_iter()
                    .partition(|p| p.dataset == session && p.since <= read_at);
                self.parked = waiting;
                for p in ready {
                    self.dispatch_client(p.conn, &p.frame);
                }
            }
            Event::Unpark { id } => {
                if let Some(i) = self.parked.iter().position(|p| p.id == id) {
                    let p = self.parked.remove(i);
                    let reason = format!(
                        "this party could not read the dataset's ACL from the chain within {} s; ask again",
                        ACL_FRESH_WAIT.as_secs()
                    );
                    info!(target: "btcmpc::party", conn = p.conn, kind = %p.frame.kind(), "refused: {reason}");
                    self.reply(p.conn, MessageType::ERROR, reason.into_bytes());
                }
            }
            Event::Bond(state, value) => {
                self.bond_state = Some(state);
                self.bond_value = value;
            }
            Event::Claimed { job, result } => self.on_claimed(job, result),
            Event::Judged { conn, result } => match result {
                Ok(answer) => self.reply_json(Some(conn), MessageType::EVIDENCE, &answer),
                Err(reason) => {
                    info!(target: "btcmpc::party", conn, "evidence refused: {reason}");
                    self.reply(conn, MessageType::ERROR, reason.into_bytes());
                }
            },
        }
        Ok(())
    }

    fn client_key(&self, conn: u64) -> Result<TransportKey, Refuse> {
        self.clients
            .get(&conn)
            .map(|c| c.key)
            .ok_or_else(|| "unknown connection".to_string())
    }

    /// The session's owner key must be the connection's.
    fn require_owner(&self, conn: u64, session: &Hash32) -> Result<(), Refuse> {
        let key = self.client_key(conn)?;
        let owner = match self.sessions.get(session) {
            Some(s) => with_session!(s, s => s.owner_key),
            None => {
                let id = session_hex(session);
                let d = self
                    .store
                    .datasets()
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .find(|d| d.id == id)
                    .ok_or_else(|| format!("no store session {id}"))?;
                serde_json::from_slice::<SessionRecord>(&d.meta)
                    .map_err(|e| e.to_string())?
                    .owner()?
            }
        };
        if owner != key {
            return Err("this store session belongs to another owner".into());
        }
        Ok(())
    }

    fn reply(&self, conn: u64, kind: MessageType, payload: Vec<u8>) {
        if let Some(c) = self.clients.get(&conn) {
            if let Ok(f) = Frame::new(kind, payload) {
                let _ = c.tx.try_send(f);
            }
        }
    }

    fn reply_json<T: Serialize>(&self, conn: Option<u64>, kind: MessageType, v: &T) {
        let Some(conn) = conn else { return };
        if let (Some(c), Ok(f)) = (self.clients.get(&conn), json_frame(kind, v)) {
            let _ = c.tx.try_send(f);
        }
    }

    fn dispatch_client(&mut self, conn: u64, frame: &Frame) {
        if let Err(reason) = self.on_client(conn, frame) {
            info!(target: "btcmpc::party", conn, kind = %frame.kind(), "refused: {reason}");
            self.reply(conn, MessageType::ERROR, reason.into_bytes());
        }
    }

    /// The dataset (store session id) whose ACL must be read afresh before `frame` is
    /// answered: an access question, a job request, a run of a quoted job or the first
    /// funding notice of a delivered job, on a party that follows a chain.
    /// `None` for every other frame (and for frames too malformed to name a dataset: they are
    /// refused by the handler).
    fn needs_fresh_acl(&self, frame: &Frame) -> Option<String> {
        self.acl_wake.as_ref()?;
        let dataset = match frame.kind() {
            MessageType::JOB_REQUEST => {
                let m: super::job::JobRequest = parse_json(frame).ok()?;
                if self.jobs.contains_key(&m.id()) {
                    return None; // already quoted: the same quote again
                }
                self.committed_dataset(&m.dataset_id).ok()?.0
            }
            MessageType::JOB_RUN => {
                let m: super::job::JobRun = parse_json(frame).ok()?;
                self.quoted_job_dataset(&m.job)?
            }
            MessageType::ACCESS => {
                let m: AccessRequest = parse_json(frame).ok()?;
                self.committed_dataset(&m.dataset_id).ok()?.0
            }
            MessageType::JOB_PAID => {
                let m: super::job::JobPaid = parse_json(frame).ok()?;
                self.unpaid_job_dataset(&m.job)?
            }
            _ => return None,
        };
        Some(dataset)
    }

    /// Holds `frame` until the follower has read `dataset`'s ACL again (woken now), or
    /// refuses it after [`ACL_FRESH_WAIT`].
    fn park(&mut self, conn: u64, frame: Frame, dataset: String) {
        if self.parked.len() >= MAX_PARKED {
            self.reply(
                conn,
                MessageType::ERROR,
                b"too many requests wait for the chain here; ask again".to_vec(),
            );
            return;
        }
        self.park_seq += 1;
        let id = self.park_seq;
        self.parked.push(Parked {
            id,
            conn,
            frame,
            dataset,
            since: std::time::Instant::now(),
        });
        if let Some(w) = &self.acl_wake {
            let _ = w.try_send(());
        }
        let tx = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ACL_FRESH_WAIT).await;
            let _ = tx.send(Event::Unpark { id }).await;
        });
    }

    fn on_client(&mut self, conn: u64, frame: &Frame) -> Result<(), Refuse> {
        let e = |e: WireError| e.to_string();
        match frame.kind() {
            MessageType::STATUS => {
                if !self.clients.get(&conn).is_some_and(|c| c.operator) {
                    return Err("status is for this party's operator only".into());
                }
                let status = self.status().map_err(|e| e.to_string())?;
                self.reply_json(Some(conn), MessageType::STATUS, &status);
                Ok(())
            }
            MessageType::STORE_BEGIN => {
                let begin: StoreBegin = parse_json(frame).map_err(e)?;
                self.on_begin(conn, begin)
            }
            MessageType::SHARE_BATCH => {
                let Some(session) = frame.payload().get(..32) else {
                    return Err("share batch shorter than its session id".into());
                };
                let session: Hash32 = session.try_into().map_err(|_| "bad session".to_string())?;
                let s = self
                    .sessions
                    .get_mut(&session)
                    .ok_or_else(|| format!("no store session {}", session_hex(&session)))?;
                with_session!(s, s => s.on_batch(conn, frame.payload()))
            }
            MessageType::STORE_END => {
                let m: SessionOnly = parse_json(frame).map_err(e)?;
                self.on_end(conn, m.session)
            }
            MessageType::STORE_CHECK => {
                let m: StoreCheck = parse_json(frame).map_err(e)?;
                self.on_check(conn, m)
            }
            MessageType::COMPLAINT => {
                let m: Complaint = parse_json(frame).map_err(e)?;
                self.on_reveal(conn, m)
            }
            MessageType::STORE_COMMIT => {
                let m: StoreCommit = parse_json(frame).map_err(e)?;
                self.on_commit(conn, m)
            }
            MessageType::ACCESS => {
                let m: AccessRequest = parse_json(frame).map_err(e)?;
                let answer = self.on_access(&m)?;
                self.reply_json(Some(conn), MessageType::ACCESS, &answer);
                Ok(())
            }
            MessageType::JOB_REQUEST => {
                let m: super::job::JobRequest = parse_json(frame).map_err(e)?;
                self.on_job_request(conn, m)
            }
            MessageType::JOB_RUN => {
                let m: super::job::JobRun = parse_json(frame).map_err(e)?;
                self.on_job_run(conn, m)
            }
            MessageType::JOB_CANCEL => {
                let m: super::job::JobCancel = parse_json(frame).map_err(e)?;
                self.on_job_cancel(conn, m)
            }
            MessageType::JOB_PAID => {
                let m: super::job::JobPaid = parse_json(frame).map_err(e)?;
                self.on_job_paid(conn, m)
            }
            MessageType::EVIDENCE => {
                let m: super::judge::JudgeRequest = parse_json(frame).map_err(e)?;
                let tx = self
                    .judge_tx
                    .as_ref()
                    .ok_or("this party runs without a wallet: it cannot judge")?;
                info!(target: "btcmpc::party", accused = m.evidence.accused(), job = %hex::encode(m.evidence.request.id()), "evidence received");
                tx.try_send((conn, m)).map_err(|e| match e {
                    std::sync::mpsc::TrySendError::Full(_) => {
                        "this judge is busy; send the evidence again later".to_string()
                    }
                    std::sync::mpsc::TrySendError::Disconnected(_) => {
                        "this party's judge has stopped".to_string()
                    }
                })
            }
            other => Err(format!("a client may not send {other}")),
        }
    }

    fn on_begin(&mut self, conn: u64, begin: StoreBegin) -> Result<(), Refuse> {
        begin
            .check(self.max_store_values)
            .map_err(|e| e.to_string())?;
        if begin.roster != self.roster_id {
            return Err(format!(
                "store for roster {}, this party serves roster {}",
                hex::encode(begin.roster),
                hex::encode(self.roster_id)
            ));
        }
        let key = self.client_key(conn)?;
        if let Some(job) = &begin.job {
            // A service's output masks: only for a job it was quoted, from its connection key.
            let client = self
                .jobs
                .get(job)
                .map(|j| jobs::with_job!(j, j => j.record.client_key.clone()))
                .ok_or_else(|| {
                    format!(
                        "masks for job {}, which this party has not quoted",
                        hex::encode(job)
                    )
                })?;
            if client != hex::encode(key.0) {
                return Err("masks for a job of another service connection key".into());
            }
        }
        if let Some(s) = self.sessions.get_mut(&begin.session) {
            // A reconnecting owner re-sends the session.
            return with_session!(s, s => {
                if s.begin != begin {
                    return Err("a different store was begun under this session id".into());
                }
                if s.owner_key != key {
                    return Err("this store session belongs to another owner".into());
                }
                s.owner = Some(conn);
                s.last_activity = std::time::Instant::now();
                if !s.received {
                    s.columns = vec![Vec::new(); s.begin.schema.fields.len()];
                }
                Ok(())
            });
        }
        let id = session_hex(&begin.session);
        let held = self.store.datasets().map_err(|e| e.to_string())?;
        if let Some(d) = held.iter().find(|d| d.id == id) {
            // Committed before a restart: take the owner back; the batches are ignored.
            let record: SessionRecord =
                serde_json::from_slice(&d.meta).map_err(|e| e.to_string())?;
            if record.begin != begin {
                return Err("a different store was begun under this session id".into());
            }
            if record.owner()? != key {
                return Err("this store session belongs to another owner".into());
            }
        } else {
            // One store under way per owner key: a new one replaces the owner's older one.
            let mine: Vec<Hash32> = self
                .sessions
                .iter()
                .filter(|(_, s)| with_session!(s, s => !s.received && s.owner_key == key))
                .map(|(k, _)| *k)
                .collect();
            for k in mine {
                self.sessions.remove(&k);
            }
            // Idle sessions make room (a client that begins and stalls).
            let idle = self.idle_session;
            let idle: Vec<Hash32> = self
                .sessions
                .iter()
                .filter(
                    |(_, s)| with_session!(s, s => !s.received && s.last_activity.elapsed() > idle),
                )
                .map(|(k, _)| *k)
                .collect();
            for k in idle {
                info!(target: "btcmpc::party", session = %session_hex(&k), "dropping an idle store session");
                self.sessions.remove(&k);
            }
            let open = self
                .sessions
                .values()
                .filter(|s| with_session!(s, s => !s.received))
                .count();
            if open >= MAX_OPEN_SESSIONS {
                return Err(format!(
                    "{MAX_OPEN_SESSIONS} store sessions are already open; try later"
                ));
            }
            // Shares in memory are bounded across sessions, not only per session.
            let in_memory: u64 = self
                .sessions
                .values()
                .filter(|s| with_session!(s, s => !s.received))
                .map(|s| with_session!(s, s => s.begin.values()))
                .sum();
            if in_memory + begin.values() > self.max_store_values {
                return Err(format!(
                    "stores under way hold {in_memory} values; {} more would pass this party's {} (try later)",
                    begin.values(),
                    self.max_store_values
                ));
            }
            // Unchecked datasets of owners that vanished expire; a few may wait, and when they
            // are many the oldest one past a minute makes room.
            let now = unix_now();
            let mut unchecked: Vec<(u64, String)> = held
                .iter()
                .filter_map(|d| {
                    let r: SessionRecord = serde_json::from_slice(&d.meta).ok()?;
                    (r.state == "received").then(|| (r.received_at, d.id.clone()))
                })
                .collect();
            unchecked.sort();
            let expired = |at: u64, ttl: u64| now.saturating_sub(at) > ttl;
            while let Some((at, id)) = unchecked.first().cloned() {
                let in_check = self.sessions.get(&hex32(&id)).is_some_and(
                    |s| with_session!(s, s => s.machine.is_some() || s.done.is_some()),
                );
                let make_room = unchecked.len() >= MAX_UNCHECKED && expired(at, 60);
                if in_check || !(expired(at, UNCHECKED_TTL_SECS) || make_room) {
                    break;
                }
                info!(target: "btcmpc::party", session = %id, "deleting a store whose check never ran");
                self.store.delete_dataset(&id).map_err(|e| e.to_string())?;
                self.store
                    .put_job_state(&format!("store:{id}"), b"{}", false)
                    .map_err(|e| e.to_string())?;
                self.sessions.remove(&hex32(&id));
                unchecked.remove(0);
            }
            if unchecked.len() >= MAX_UNCHECKED {
                return Err(format!(
                    "{} stored datasets still wait for their check; try later",
                    unchecked.len()
                ));
            }
            for d in &held {
                if let Ok(r) = serde_json::from_slice::<SessionRecord>(&d.meta) {
                    if r.begin.name == begin.name && r.state == "committed" {
                        return Err(format!(
                            "a dataset named {} is already stored here",
                            begin.name
                        ));
                    }
                }
            }
        }
        let committed = held.iter().any(|d| d.id == id);
        let session = begin.session;
        let s = match begin.field.as_str() {
            Secp256k1Scalar::NAME => Session::S(StoreSession::new(begin, conn, key, committed)?),
            Mersenne127::NAME => Session::M(StoreSession::new(begin, conn, key, committed)?),
            other => return Err(format!("unknown field {other:?} (secp256k1 or m127)")),
        };
        self.sessions.insert(session, s);
        if committed {
            // Rebuild the shares from disk (the check may need them).
            let d = held.into_iter().find(|d| d.id == id).expect("found above");
            let record: SessionRecord =
                serde_json::from_slice(&d.meta).map_err(|e| e.to_string())?;
            let (mut s, replay) = self.load_session(&record)?;
            with_session!(&mut s, s => s.owner = Some(conn));
            self.reinstate(session, s, replay)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn on_end(&mut self, conn: u64, session: Hash32) -> Result<(), Refuse> {
        self.require_owner(conn, &session)?;
        let me = self.me;
        let bad_receipt = self.fault(Fault::BadReceipt);
        let (roster, party_key) = (self.roster_id, self.party_key);
        let fault = self.fault;
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or_else(|| format!("no store session {}", session_hex(&session)))?;
        let store = &mut self.store;
        let receipt = with_session!(s, s => s.finish(conn, me, store, bad_receipt, fault))?;
        let signature = schnorr_sign(
            &party_key,
            receipt_digest(&roster, &session, me.get(), &receipt),
        );
        self.reply_json(
            Some(conn),
            MessageType::RECEIPT,
            &Receipt {
                session,
                party: me.get(),
                hash: receipt,
                signature,
            },
        );
        self.crash_point(FaultStep::Receipt, false);
        Ok(())
    }

    fn verify_receipts(&self, m: &StoreCheck) -> Result<(), Refuse> {
        let n = self.params.n();
        if m.receipts.len() != n {
            return Err(format!(
                "{} receipts for a committee of {n}",
                m.receipts.len()
            ));
        }
        for (i, r) in m.receipts.iter().enumerate() {
            if r.party as usize != i + 1 || r.session != m.session {
                return Err(format!(
                    "receipt {} is not party {}'s for this session",
                    i + 1,
                    i + 1
                ));
            }
            let digest = receipt_digest(&self.roster_id, &m.session, r.party, &r.hash);
            if !schnorr_verify(&self.party_keys[i], digest, &r.signature) {
                return Err(format!(
                    "party {}'s receipt signature does not verify",
                    i + 1
                ));
            }
        }
        Ok(())
    }

    fn on_check(&mut self, conn: u64, m: StoreCheck) -> Result<(), Refuse> {
        self.require_owner(conn, &m.session)?;
        self.verify_receipts(&m)?;
        let session = m.session;
        let mut s = self
            .sessions
            .remove(&session)
            .ok_or_else(|| format!("no store session {}", session_hex(&session)))?;
        let r = with_session!(&mut s, s => {
            s.owner = Some(conn);
            if let Some(done) = &s.done {
                if !self.fault(Fault::Withhold) {
                    self.reply_json(Some(conn), MessageType::STORE_DONE, done);
                }
                Ok(false)
            } else if s.machine.is_some() {
                Ok(false)
            } else if !s.received {
                Err("the shares of this session are not all received".to_string())
            } else {
                let own = &m.receipts[self.me.slot()].hash;
                if Some(*own) != s.receipt && !self.fault(Fault::BadReceipt) {
                    Err("my receipt in the check differs from the one I signed".to_string())
                } else {
                    self.start_check(s, m.receipts.clone()).map(|_| true)
                }
            }
        });
        self.sessions.insert(session, s);
        if r? {
            let id = session_hex(&session);
            for rc in &m.receipts {
                let bytes = serde_json::to_vec(rc).map_err(|e| e.to_string())?;
                self.store
                    .put_receipt(&id, rc.party, &bytes)
                    .map_err(|e| e.to_string())?;
            }
            self.persist_journal(&session).map_err(|e| e.to_string())?;
            self.drive(session, None).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn start_check<F: PrimeField>(
        &self,
        s: &mut StoreSession<F>,
        receipts: Vec<Receipt>,
    ) -> Result<(), Refuse> {
        // The shares are read back from the store: what the receipt covers, and nothing of a
        // received dataset stays in memory while it waits for its check.
        let id = session_hex(&s.begin.session);
        let mut columns = Vec::with_capacity(s.begin.schema.fields.len());
        for c in 0..s.begin.schema.fields.len() {
            columns.push(
                self.store
                    .read_column::<F>(&id, c as u32)
                    .map_err(|e| e.to_string())?,
            );
        }
        let input = CheckInput {
            params: self.params,
            me: self.me,
            tag: match &s.begin.job {
                Some(job) => crate::mpc::check::mask_check_tag(job),
                None => STORE_CHECK_TAG.to_vec(),
            },
            round: STORE_CHECK_ROUND,
            context: s.context,
            receipts: receipts.iter().map(|r| r.hash).collect(),
            shares: PartyShares {
                index: self.me,
                mask: s.mask,
                columns,
            },
            keys: self.verifying.clone(),
            ignored: BTreeSet::new(),
        };
        let mut machine =
            CheckMachine::new(input.clone(), self.signer.clone()).map_err(|e| e.to_string())?;
        if self.fault(Fault::WrongOpening) {
            machine.lie_in_opening(F::ONE);
        }
        if self.fault(Fault::Equivocate) {
            let mut twin =
                CheckMachine::new(input, self.signer.clone()).map_err(|e| e.to_string())?;
            twin.lie_in_opening(F::ONE);
            s.twin = Some(twin);
        }
        s.machine = Some(machine);
        s.journal.receipts = receipts;
        Ok(())
    }

    fn persist_journal(&mut self, session: &Hash32) -> Result<(), StoreError> {
        let Some(s) = self.sessions.get(session) else {
            return Ok(());
        };
        // A check stays open until the dataset is committed (or refused): its outbox is
        // re-sent to a peer that comes back, which may still need it to finish.
        let (journal, open) = with_session!(s, s => (
            serde_json::to_vec(&s.journal).expect(JOURNAL_SERIALIZES),
            s.done.as_ref().is_none_or(|d| d.accepted),
        ));
        self.store
            .put_job_state(&store_job(session), &journal, open)
    }

    /// Starts (or re-starts after a restart) the session's machine, or fires a deadline, and
    /// sends what it asks for.
    fn drive(&mut self, session: Hash32, deadline: Option<RoundId>) -> Result<(), PartyError> {
        let Some(mut s) = self.sessions.remove(&session) else {
            return Ok(());
        };
        let r = with_session!(&mut s, s => self.drive_session(s, deadline));
        self.sessions.insert(session, s);
        r?;
        // Messages that arrived before the check started here.
        if self.started(&session) {
            if let Some(early) = self.early.remove(&session) {
                for (from, bytes, _) in &early {
                    if let Some(b) = self.early_bytes.get_mut(from) {
                        *b = b.saturating_sub(bytes.len());
                    }
                }
                for (from, bytes, _) in early {
                    if let Ok(m) = PeerMessage::decode(&bytes) {
                        self.deliver(from, m)?;
                    }
                }
            }
        }
        self.persist_journal(&session)?;
        Ok(())
    }

    fn drive_session<F: PrimeField>(
        &mut self,
        s: &mut StoreSession<F>,
        deadline: Option<RoundId>,
    ) -> Result<(), PartyError> {
        let Some(machine) = s.machine.as_mut() else {
            return Ok(());
        };
        let step = match deadline {
            Some(r) => machine.deadline(r),
            None => machine.start(),
        };
        let twin = match (deadline, s.twin.as_mut()) {
            (None, Some(t)) => t.start().ok(),
            _ => None,
        };
        self.after_step(s, step, twin)
    }

    fn after_step<F: PrimeField>(
        &mut self,
        s: &mut StoreSession<F>,
        step: Result<Step<F, CheckOutput<F>>, crate::mpc::round::RoundError>,
        twin: Option<Step<F, CheckOutput<F>>>,
    ) -> Result<(), PartyError> {
        let session = s.begin.session;
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                let done = StoreDone {
                    session,
                    party: self.me.get(),
                    accepted: false,
                    reason: Some(format!("store check failed: {e}")),
                    liars: Vec::new(),
                    evidence: Vec::new(),
                };
                self.finish_session(s, done)?;
                return Ok(());
            }
        };
        let twin_msgs: Vec<Outgoing<F>> = twin.map(|t| t.send).unwrap_or_default();
        for (k, out) in step.send.into_iter().enumerate() {
            let alt = twin_msgs.get(k);
            self.send_out(&store_job(&session), &session, out, alt)?;
        }
        if let Some(out) = step.output {
            let done = self.outcome(&session, &out);
            s.evidence = out.evidence.clone();
            self.finish_session(s, done)?;
        } else if let Some(off) = s.machine.as_ref().and_then(|m| m.complaint()) {
            let c = Complaint {
                session,
                parties: off.iter().map(|p| p.get()).collect(),
                masks: Vec::new(),
            };
            self.reply_json(s.owner, MessageType::COMPLAINT, &c);
        }
        if let Some(round) = s.machine.as_ref().and_then(|m| m.waiting()) {
            self.arm_timer(session, round);
        }
        Ok(())
    }

    fn outcome<F: PrimeField>(&self, session: &Hash32, out: &CheckOutput<F>) -> StoreDone {
        use crate::mpc::check::Resolution;
        let (liars, refusal) = match &out.resolution {
            Resolution::Accepted { liars } => (liars, None),
            Resolution::Refused { reason, liars } => (liars, Some(reason)),
        };
        let liars: Vec<PartyId> = liars
            .iter()
            .copied()
            .chain(
                out.evidence
                    .iter()
                    .filter_map(|e| PartyId::from_wire(e.sender())),
            )
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let accepted = refusal.is_none();
        StoreDone {
            session: *session,
            party: self.me.get(),
            accepted,
            reason: refusal.map(|r| format!("{r:?}")),
            liars,
            evidence: out.evidence.clone(),
        }
    }

    fn finish_session<F: PrimeField>(
        &mut self,
        s: &mut StoreSession<F>,
        done: StoreDone,
    ) -> Result<(), PartyError> {
        let id = session_hex(&s.begin.session);
        if done.accepted {
            if let Some(d) = self.store.datasets()?.into_iter().find(|d| d.id == id) {
                if let Ok(mut r) = serde_json::from_slice::<SessionRecord>(&d.meta) {
                    if r.state == "received" {
                        r.state = "checked".into();
                        let hashes: Vec<Hash32> =
                            s.journal.receipts.iter().map(|r| r.hash).collect();
                        r.receipts_root =
                            Some(hex::encode(crate::mpc::dealing::receipts_root(&hashes)));
                        self.store.set_dataset_meta(
                            &id,
                            &serde_json::to_vec(&r).expect(RECORD_SERIALIZES),
                        )?;
                    }
                }
            }
        } else {
            self.store.delete_dataset(&id)?;
            self.store
                .put_job_state(&store_job(&s.begin.session), b"{}", false)?;
        }
        info!(target: "btcmpc::party", session = %id, accepted = done.accepted, liars = ?done.liars, "store check finished");
        if !s.evidence.is_empty() {
            // Two conflicting signed messages for one slot: kept as evidence, never dropped.
            let bytes = serde_json::to_vec(&s.evidence).expect(EVIDENCE_SERIALIZES);
            self.store
                .put_job_state(&format!("evidence:{id}"), &bytes, false)?;
        }
        s.machine = None;
        s.twin = None;
        s.columns = Vec::new();
        s.revealed.clear();
        if !self.fault(Fault::Withhold) {
            self.reply_json(s.owner, MessageType::STORE_DONE, &done);
        }
        s.done = Some(done);
        Ok(())
    }

    fn arm_timer(&mut self, session: Hash32, round: RoundId) {
        if !self.timers.insert((session, round)) {
            return;
        }
        let (tx, after) = (self.events.clone(), self.round_timeout);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = tx.send(Event::Timer { session, round }).await;
        });
    }

    /// Persists a signed message in the outbox, then sends it (or the bytes stored for its slot
    /// before a restart).
    fn send_out<F: PrimeField>(
        &mut self,
        outbox: &str,
        session: &Hash32,
        out: Outgoing<F>,
        alt: Option<&Outgoing<F>>,
    ) -> Result<(), PartyError> {
        if self.fault(Fault::Withhold) {
            return Ok(());
        }
        let targets: Vec<PartyId> = match out.to {
            Recipient::All => PartyId::all(self.params.n())
                .filter(|p| *p != self.me)
                .collect(),
            Recipient::One(p) => vec![p],
        };
        let (round, sub) = jobs::message_slot(&out.msg);
        for to in targets {
            let msg = match alt {
                Some(a) if to.get() > (self.params.n() as u32) / 2 => &a.msg,
                _ => &out.msg,
            };
            let bytes = PeerMessage {
                session: *session,
                message: message_bytes(msg),
            }
            .encode();
            let slot = OutboxSlot {
                job: outbox.to_string(),
                round,
                slot: u32::from(sub) * 256 + to.get(),
            };
            let bytes = match self.store.put_outgoing(&slot, &bytes)? {
                PutOutgoing::Inserted | PutOutgoing::Unchanged => bytes,
                PutOutgoing::KeptExisting { stored } => stored,
            };
            self.crash_point(FaultStep::CheckSend, true);
            self.send_to(to, bytes);
            self.crash_point(FaultStep::CheckSend, false);
        }
        Ok(())
    }

    fn send_to(&self, to: PartyId, bytes: Vec<u8>) {
        if self.fault == Some(Fault::DropTo(to.get())) {
            return;
        }
        let Some(Some(q)) = self.queues.get(to.slot()) else {
            return;
        };
        if let Ok(f) = Frame::new(MessageType::SIGNED, bytes) {
            let _ = q.try_send(f);
        }
    }

    fn resend(&self, slot: &OutboxSlot, bytes: Vec<u8>) {
        let to = slot.slot % 256;
        if let Ok(p) = PartyId::new(to as usize, self.params.n()) {
            self.send_to(p, bytes);
        }
    }

    fn on_peer_event(&mut self, ev: PeerEvent) -> Result<(), PartyError> {
        match ev {
            PeerEvent::Frame { peer, frame } => {
                let Some(&from) = self.transport_of.get(&peer) else {
                    warn!(target: "btcmpc::party", %peer, "frame from a key not in the manifest: refused");
                    return Ok(());
                };
                if self.stale_peers.remove(&from) {
                    // The peer came back: re-send what it may have missed.
                    for job in self.store.open_jobs()? {
                        for (slot, bytes, _) in self.store.outbox(&job)? {
                            if slot.slot % 256 == from.get() {
                                self.send_to(from, bytes);
                            }
                        }
                    }
                }
                if frame.kind() != MessageType::SIGNED {
                    debug!(target: "btcmpc::party", %from, kind = %frame.kind(), "unexpected frame from a party: dropped");
                    return Ok(());
                }
                // A session whose check has not started here keeps the raw bytes (bounded).
                if let Ok(session) = peek_session(frame.payload()) {
                    if !self.started(&session) {
                        self.hold_early(from, session, frame.into_payload());
                        return Ok(());
                    }
                }
                match PeerMessage::decode(frame.payload()) {
                    Ok(m) => self.deliver(from, m)?,
                    Err(e) => info!(target: "btcmpc::party", %from, "refused: {e}"),
                }
            }
            PeerEvent::Disconnected { peer, error } => {
                if let Some(&p) = self.transport_of.get(&peer) {
                    debug!(target: "btcmpc::party", party = %p, "peer disconnected: {error}");
                    self.stale_peers.insert(p);
                }
            }
        }
        Ok(())
    }

    fn started(&self, session: &Hash32) -> bool {
        if let Some(started) = self.job_started(session) {
            return started;
        }
        self.sessions
            .get(session)
            .is_some_and(|s| with_session!(s, s => s.machine.is_some() || s.done.is_some()))
    }

    /// Keeps a message for a check that has not started here yet, within
    /// [`MAX_EARLY_BYTES`] in all, [`MAX_EARLY_MESSAGES`] a session and 64 sessions.
    ///
    /// Each sending party has its own share of the byte budget (a party that floods fills only
    /// its own), and messages older than [`EARLY_TTL`] are dropped first.
    fn hold_early(&mut self, from: PartyId, session: Hash32, payload: bytes::Bytes) {
        let now = std::time::Instant::now();
        let mut freed: Vec<(PartyId, usize)> = Vec::new();
        self.early.retain(|_, q| {
            q.retain(|(p, b, at)| {
                let keep = now.duration_since(*at) < EARLY_TTL;
                if !keep {
                    freed.push((*p, b.len()));
                }
                keep
            });
            !q.is_empty()
        });
        for (p, n) in freed {
            if let Some(b) = self.early_bytes.get_mut(&p) {
                *b = b.saturating_sub(n);
            }
        }
        let budget = MAX_EARLY_BYTES / self.params.n().saturating_sub(1).max(1);
        let used = self.early_bytes.get(&from).copied().unwrap_or(0);
        let fits = used + payload.len() <= budget
            && (self.early.contains_key(&session) || self.early.len() < 64)
            && self.early.get(&session).map_or(0, Vec::len) < MAX_EARLY_MESSAGES;
        if !fits {
            debug!(target: "btcmpc::party", %from, "early message dropped: buffer full");
            return;
        }
        *self.early_bytes.entry(from).or_default() += payload.len();
        self.early
            .entry(session)
            .or_default()
            .push((from, payload, now));
    }

    fn deliver(&mut self, from: PartyId, m: PeerMessage) -> Result<(), PartyError> {
        let session = m.session;
        if !self.started(&session) {
            self.hold_early(from, session, m.encode().into());
            return Ok(());
        }
        if self.job_sessions.contains_key(&session) {
            return self.deliver_job(from, session, m.message);
        }
        let Some(mut s) = self.sessions.remove(&session) else {
            return Ok(());
        };
        let r = with_session!(&mut s, s => self.deliver_to(s, from, m.message));
        self.sessions.insert(session, s);
        r?;
        self.persist_journal(&session)?;
        Ok(())
    }

    fn deliver_to<F: PrimeField>(
        &mut self,
        s: &mut StoreSession<F>,
        from: PartyId,
        raw: Vec<u8>,
    ) -> Result<(), PartyError> {
        let Some(machine) = s.machine.as_mut() else {
            return Ok(()); // finished: late messages are ignored
        };
        let msg: Message<F> = match decode_message(&raw) {
            Ok(m) => m,
            Err(e) => {
                info!(target: "btcmpc::party", %from, "malformed check message refused: {e}");
                return Ok(());
            }
        };
        let step = machine.handle(from, msg);
        if let Err(e) = &step {
            if e.is_refusal() {
                debug!(target: "btcmpc::party", %from, "message refused: {e}");
                return Ok(());
            }
        }
        // Persisted before anything it caused is sent: a restart replays exactly this.
        s.journal.delivered.push(LogEntry(from.get(), raw));
        self.store.put_job_state(
            &store_job(&s.begin.session),
            &serde_json::to_vec(&s.journal).expect(JOURNAL_SERIALIZES),
            true,
        )?;
        self.after_step(s, step, None)
    }

    fn on_reveal(&mut self, conn: u64, m: Complaint) -> Result<(), Refuse> {
        self.require_owner(conn, &m.session)?;
        let session = m.session;
        let mut s = self
            .sessions
            .remove(&session)
            .ok_or_else(|| format!("no store session {}", session_hex(&session)))?;
        let r = with_session!(&mut s, s => {
            s.owner = Some(conn);
            self.reveal(s, &m)
        });
        self.sessions.insert(session, s);
        r?;
        let _ = self.persist_journal(&session);
        Ok(())
    }

    fn reveal<F: PrimeField>(
        &mut self,
        s: &mut StoreSession<F>,
        m: &Complaint,
    ) -> Result<(), Refuse> {
        let Some(machine) = s.machine.as_mut() else {
            return Err("no check is waiting for revealed vectors".into());
        };
        let Some(off) = machine.complaint().map(|o| o.to_vec()) else {
            return Err("no complaint is pending".into());
        };
        if m.parties.len() != m.masks.len() {
            return Err("one mask per revealed party is needed".into());
        }
        let mut revealed = Vec::new();
        for (p, mask) in m.parties.iter().zip(&m.masks) {
            if !off.iter().any(|o| o.get() == *p) {
                return Err(format!("party {p} was not accused"));
            }
            let Some(cols) = s.revealed.remove(p) else {
                continue;
            };
            revealed.push(PartyShares {
                index: PartyId::from_wire(*p).ok_or("party index 0")?,
                mask: field_from_hex::<F>(mask).map_err(|e| e.to_string())?,
                columns: cols,
            });
        }
        let out = machine.reveal(&revealed).map_err(|e| e.to_string())?;
        let done = self.outcome(&s.begin.session, &out);
        s.evidence = out.evidence.clone();
        self.finish_session(s, done).map_err(|e| e.to_string())?;
        Ok(())
    }

    fn on_commit(&mut self, conn: u64, m: StoreCommit) -> Result<(), Refuse> {
        let id = session_hex(&m.session);
        let d = self
            .store
            .datasets()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| format!("no checked dataset for session {id}"))?;
        let mut r: SessionRecord = serde_json::from_slice(&d.meta).map_err(|e| e.to_string())?;
        if r.owner()? != self.client_key(conn)? {
            return Err("this store session belongs to another owner".into());
        }
        if r.state == "received" {
            return Err("the store check of this session has not passed here".into());
        }
        if r.state == "committed" {
            // Idempotent for the same record; a committed dataset is never rebound.
            if r.store_outpoint.as_deref() == Some(m.store_outpoint.as_str())
                && r.anchor_key.as_deref() == Some(m.anchor_key.as_str())
                && r.dataset_id.as_deref() == Some(m.dataset_id.as_str())
            {
                self.reply_json(Some(conn), MessageType::STORE_COMMIT, &m);
                return Ok(());
            }
            return Err(format!(
                "this dataset is already bound to STORE {}",
                r.store_outpoint.unwrap_or_default()
            ));
        }
        let outpoint: bitcoin::OutPoint = m
            .store_outpoint
            .parse()
            .map_err(|_| format!("bad STORE outpoint {:?}", m.store_outpoint))?;
        let key: PublicKey = m
            .anchor_key
            .parse()
            .map_err(|_| format!("bad anchor key {:?}", m.anchor_key))?;
        let want = hex::encode(super::acl::dataset_id(&outpoint, &key));
        if want != m.dataset_id {
            return Err(format!(
                "dataset id {} is not sha256(outpoint || anchor key) = {want}",
                m.dataset_id
            ));
        }
        self.crash_point(FaultStep::Commit, true);
        r.state = "committed".into();
        r.dataset_id = Some(m.dataset_id.clone());
        r.store_outpoint = Some(m.store_outpoint.clone());
        r.anchor_key = Some(m.anchor_key.clone());
        self.store
            .set_dataset_meta(&id, &serde_json::to_vec(&r).expect(RECORD_SERIALIZES))
            .map_err(|e| e.to_string())?;
        self.store
            .put_job_state(&store_job(&m.session), b"{}", false)
            .map_err(|e| e.to_string())?;
        self.sessions.remove(&m.session);
        self.crash_point(FaultStep::Commit, false);
        self.reply_json(Some(conn), MessageType::STORE_COMMIT, &m);
        Ok(())
    }

    /// The dataset bound to `dataset_id` (hex): its store id, record and row count.
    fn committed_dataset(&self, dataset_id: &str) -> Result<(String, SessionRecord, u64), Refuse> {
        self.store
            .datasets()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find_map(|d| {
                let r: SessionRecord = serde_json::from_slice(&d.meta).ok()?;
                (r.dataset_id.as_deref() == Some(dataset_id)).then_some((d.id, r, d.rows))
            })
            .ok_or_else(|| format!("this party holds no dataset {dataset_id}"))
    }

    fn on_access(&self, m: &AccessRequest) -> Result<AccessAnswer, Refuse> {
        let service = m.verify()?;
        let Some(min_rows) = self.min_rows else {
            return Err("this party follows no chain: it cannot read the dataset's ACL".into());
        };
        let (id, record, rows) = self.committed_dataset(&m.dataset_id)?;
        let view = self
            .acls
            .get(&id)
            .ok_or("this party has not read the dataset's ACL from the chain yet; ask again")?;
        let names = record.begin.schema.column_names();
        let verdict = authorize(view, &service, m, &names, rows, min_rows);
        Ok(AccessAnswer {
            party: self.me.get(),
            dataset_id: m.dataset_id.clone(),
            granted: verdict.is_ok(),
            reason: verdict.err(),
            tip: view.tip,
        })
    }

    fn status(&self) -> Result<wire::Status, StoreError> {
        let connected: HashSet<TransportKey> = self.peers.connected().into_iter().collect();
        let mut peers: Vec<u32> = self
            .transport_of
            .iter()
            .filter(|(k, _)| connected.contains(k))
            .map(|(_, p)| p.get())
            .collect();
        peers.sort_unstable();
        let datasets = self
            .store
            .datasets()?
            .into_iter()
            .filter_map(|d: DatasetMeta| {
                let r: SessionRecord = serde_json::from_slice(&d.meta).ok()?;
                if r.begin.job.is_some() {
                    return None; // a job's output masks
                }
                Some(DatasetStatus {
                    name: r.begin.name,
                    session: d.id,
                    rows: d.rows,
                    columns: d.columns,
                    state: r.state,
                    dataset_id: r.dataset_id,
                })
            })
            .collect();
        Ok(wire::Status {
            party: self.me.get(),
            n: self.params.n() as u32,
            roster: hex::encode(self.roster_id),
            peers_connected: peers,
            datasets,
            open_jobs: self.store.open_jobs()?,
            jobs_counted: u32::try_from(self.counted_open_jobs()).unwrap_or(u32::MAX),
            max_open_jobs: u32::try_from(self.max_open_jobs).unwrap_or(u32::MAX),
            bond: self.bond.clone(),
            bond_state: self.bond_state.clone(),
            evidence: self
                .store
                .jobs_with_prefix("evidence:")?
                .into_iter()
                .map(|j| j.trim_start_matches("evidence:").to_string())
                .collect(),
            fault: self.fault.map(|f| f.to_string()),
        })
    }
}

impl<F: PrimeField> StoreSession<F> {
    fn new(
        begin: StoreBegin,
        owner: u64,
        owner_key: TransportKey,
        committed: bool,
    ) -> Result<Self, Refuse> {
        let mask = field_from_hex::<F>(&begin.mask).map_err(|e| e.to_string())?;
        Ok(StoreSession {
            context: begin.context(),
            columns: vec![Vec::new(); begin.schema.fields.len()],
            begin,
            mask,
            owner: Some(owner),
            owner_key,
            last_activity: std::time::Instant::now(),
            revealed: BTreeMap::new(),
            received: committed,
            receipt: None,
            machine: None,
            twin: None,
            journal: CheckJournal::default(),
            done: None,
            evidence: Vec::new(),
        })
    }

    fn on_batch(&mut self, conn: u64, payload: &[u8]) -> Result<(), Refuse> {
        if self.owner != Some(conn) {
            return Err("share batch for a session of another connection".into());
        }
        let b = ShareBatch::<F>::parse(payload).map_err(|e| e.to_string())?;
        self.last_activity = std::time::Instant::now();
        let rows = self.begin.schema.rows as u64;
        let col = b.column as usize;
        if col >= self.begin.schema.fields.len() {
            return Err(format!(
                "share batch for column {col} of {}",
                self.begin.schema.fields.len()
            ));
        }
        let target = if b.holder == 0 {
            if self.received {
                return Ok(()); // already committed: a re-sent session
            }
            &mut self.columns
        } else {
            if self.machine.as_ref().and_then(|m| m.complaint()).is_none() {
                return Err("revealed vectors sent while no complaint is pending".into());
            }
            let n = self.begin.schema.fields.len();
            self.revealed
                .entry(b.holder)
                .or_insert_with(|| vec![Vec::new(); n])
        };
        let have = target[col].len() as u64;
        if b.first_row != have {
            return Err(format!(
                "share batch for column {col} starts at row {}, {have} expected",
                b.first_row
            ));
        }
        if have + b.values.len() as u64 > rows {
            return Err(format!("column {col} gets more than its {rows} rows"));
        }
        target[col].extend_from_slice(&b.values);
        Ok(())
    }

    /// Every column complete: commits the dataset (one transaction) and returns the receipt
    /// hash to sign.
    fn finish(
        &mut self,
        conn: u64,
        me: PartyId,
        store: &mut Store,
        bad_receipt: bool,
        fault: Option<Fault>,
    ) -> Result<Hash32, Refuse> {
        if self.owner != Some(conn) {
            return Err("store end for a session of another connection".into());
        }
        let rows = self.begin.schema.rows;
        let id = session_hex(&self.begin.session);
        if !self.received {
            if let Some((c, col)) = self
                .columns
                .iter()
                .enumerate()
                .find(|(_, c)| c.len() != rows)
            {
                return Err(format!("column {c} has {} of its {rows} rows", col.len()));
            }
            if fault == Some(Fault::CrashBefore(FaultStep::Receipt)) {
                crash(FaultStep::Receipt, "before");
            }
            let record = SessionRecord {
                begin: self.begin.clone(),
                state: "received".into(),
                receipt_hash: None,
                dataset_id: None,
                store_outpoint: None,
                receipts_root: None,
                anchor_key: None,
                received_at: unix_now(),
                owner_key: self.owner_key.to_hex(),
            };
            let shares = PartyShares {
                index: me,
                mask: self.mask,
                columns: std::mem::take(&mut self.columns),
            };
            let hash = shares.receipt_hash(&self.context);
            let mut record = record;
            record.receipt_hash = Some(hex::encode(hash));
            let meta = DatasetMeta {
                id: id.clone(),
                meta: serde_json::to_vec(&record).map_err(|e| e.to_string())?,
                rows: rows as u64,
                columns: shares.columns.len() as u32,
            };
            let mut w = store.begin_dataset(&meta).map_err(|e| e.to_string())?;
            const CHUNK: usize = 1 << 16;
            for (c, col) in shares.columns.iter().enumerate() {
                for (k, chunk) in col.chunks(CHUNK).enumerate() {
                    w.put_field_chunk(c as u32, k as u32, (k * CHUNK) as u64, chunk)
                        .map_err(|e| e.to_string())?;
                }
            }
            w.commit().map_err(|e| e.to_string())?;
            store
                .put_job_state(&store_job(&self.begin.session), b"{}", true)
                .map_err(|e| e.to_string())?;
            // Nothing of a received dataset stays in memory: the check reads it back.
            drop(shares);
            self.received = true;
        }
        let d = store
            .datasets()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or("the dataset vanished")?;
        let record: SessionRecord = serde_json::from_slice(&d.meta).map_err(|e| e.to_string())?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(record.receipt_hash.unwrap_or_default(), &mut hash)
            .map_err(|_| "stored receipt hash is corrupt".to_string())?;
        if bad_receipt {
            hash[0] ^= 1;
        }
        self.receipt = Some(hash);
        Ok(hash)
    }
}

/// The ACL follower (a thread: the Electrum client is blocking): every `src.poll`, reads the ACL
/// of every committed dataset from the anchor's spend chain and hands it to the daemon. A
/// party that was offline during a GRANT or REVOKE catches up here: the spend chain is read
/// from the STORE outpoint on.
fn follow_acls(
    path: &std::path::Path,
    src: &ChainSource,
    events: &mpsc::Sender<Event>,
    stop: &std::sync::atomic::AtomicBool,
    wake: &std::sync::mpsc::Receiver<()>,
    manifest: &Manifest,
    party: usize,
) {
    use super::acl;
    use super::chain::{ChainView, ElectrumView};
    use std::sync::atomic::Ordering;
    let mut client: Option<btcmpc_wallet::ChainClient> = None;
    let mut states: HashMap<String, acl::AclState> = HashMap::new();
    let mut store: Option<Store> = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = btcmpc_wallet::ChainClient::connect_for(
                &src.url,
                src.network,
                src.allow_plaintext,
                Duration::from_secs(10),
            )
            .map_err(|e| debug!(target: "btcmpc::party", "ACL follower cannot connect: {e}"))
            .ok();
        }
        if store.is_none() {
            store = Store::open(path)
                .map_err(
                    |e| warn!(target: "btcmpc::party", "ACL follower cannot open the store: {e}"),
                )
                .ok();
        }
        let read_at = std::time::Instant::now();
        if let (Some(c), Some(st)) = (&client, &store) {
            let view = ElectrumView::new(c);
            match view.tip() {
                Err(e) => {
                    debug!(target: "btcmpc::party", "ACL follower lost the server: {e}");
                    client = None;
                }
                Ok(tip) => {
                    // This party's own bond, as every client checks it.
                    if !manifest.bonds.is_empty() {
                        let (state, value) = match super::manifest::verify_manifest(manifest, &view)
                        {
                            Ok(r) => match r.rows.get(party - 1) {
                                Some(row) => match &row.status {
                                    Ok(()) => (format!("ok at tip {tip}"), row.value_sat),
                                    Err(e) => (format!("FAILING at tip {tip}: {e}"), row.value_sat),
                                },
                                None => ("not in the manifest".into(), None),
                            },
                            Err(e) => (format!("unchecked: {e}"), None),
                        };
                        if events.blocking_send(Event::Bond(state, value)).is_err() {
                            return;
                        }
                    }
                    let datasets = st.datasets().unwrap_or_else(|e| {
                        warn!(target: "btcmpc::party", "ACL follower cannot list the datasets: {e}");
                        Vec::new()
                    });
                    for d in datasets {
                        let Ok(r) = serde_json::from_slice::<SessionRecord>(&d.meta) else {
                            continue;
                        };
                        let (Some(op), Some(key)) = (&r.store_outpoint, &r.begin_anchor()) else {
                            continue;
                        };
                        let Ok(op) = op.parse::<bitcoin::OutPoint>() else {
                            continue;
                        };
                        let state = match states.entry(d.id.clone()) {
                            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                            std::collections::hash_map::Entry::Vacant(e) => {
                                match acl::start(&view, op, *key, src.acl_min_conf) {
                                    Ok(s) => e.insert(s),
                                    Err(err) => {
                                        debug!(target: "btcmpc::party", dataset = %d.id, "STORE not readable yet: {err}");
                                        continue;
                                    }
                                }
                            }
                        };
                        let mut ok = true;
                        while ok {
                            match acl::follow(state, &view, acl::MAX_STEPS_PER_CALL) {
                                Ok(n) => ok = n == acl::MAX_STEPS_PER_CALL,
                                Err(e) => {
                                    debug!(target: "btcmpc::party", "ACL follow failed: {e}");
                                    ok = false;
                                }
                            }
                        }
                        let mismatch = r
                            .receipts_root
                            .as_deref()
                            .is_some_and(|root| root != hex::encode(state.receipts_root));
                        let closed = if mismatch {
                            Some("its STORE record carries another receipts root than the one checked".to_string())
                        } else {
                            state.closed.as_ref().map(|c| c.reason.clone())
                        };
                        let v = AclView {
                            tip,
                            table: state.table(tip),
                            closed,
                        };
                        if events
                            .blocking_send(Event::Acl {
                                session: d.id.clone(),
                                view: v,
                                read_at,
                            })
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        }
        // Sleep until the next poll, a wake-up (a request that needs a fresh read) or stop.
        let end = std::time::Instant::now() + src.poll;
        loop {
            let now = std::time::Instant::now();
            if now >= end || stop.load(Ordering::Relaxed) {
                break;
            }
            match wake.recv_timeout((end - now).min(Duration::from_millis(50))) {
                Ok(()) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep((end - now).min(Duration::from_millis(50)))
                }
            }
        }
    }
}

impl SessionRecord {
    fn owner(&self) -> Result<TransportKey, String> {
        hex::decode(&self.owner_key)
            .ok()
            .and_then(|b| TransportKey::from_slice(&b).ok())
            .ok_or_else(|| "stored owner key is corrupt".to_string())
    }

    /// The anchor key recorded by the owner's STORE_COMMIT.
    fn begin_anchor(&self) -> Option<PublicKey> {
        self.anchor_key.as_deref().and_then(|k| k.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Client channels are bounded per key and in all; a dropped channel frees its slot.
    #[test]
    fn client_slots_are_bounded_per_key_and_in_all() {
        let table: Arc<std::sync::Mutex<HashMap<TransportKey, usize>>> = Arc::default();
        let key = |i: u16| {
            let mut k = [0u8; 32];
            k[..2].copy_from_slice(&i.to_le_bytes());
            TransportKey(k)
        };
        let mut held: Vec<ClientSlot> = (0..MAX_CLIENTS_PER_KEY)
            .map(|_| ClientSlot::take(&table, key(0), false).unwrap())
            .collect();
        let e = ClientSlot::take(&table, key(0), false).err().unwrap();
        assert!(e.contains("this key already has 8"), "{e}");
        held.pop();
        held.push(ClientSlot::take(&table, key(0), false).expect("a freed slot is taken again"));
        // Fresh keys fill the rest; then every key is refused, until one is dropped.
        let mut i = 1;
        while held.len() < MAX_CLIENTS {
            held.push(ClientSlot::take(&table, key(i), false).unwrap());
            i += 1;
        }
        let e = ClientSlot::take(&table, key(i), false).err().unwrap();
        assert!(e.contains("512 client connections"), "{e}");
        // The operator still gets its own slots, up to the per-key bound.
        let operator = key(u16::MAX);
        let ops: Vec<ClientSlot> = (0..MAX_CLIENTS_PER_KEY)
            .map(|_| ClientSlot::take(&table, operator, true).expect("the operator is let in"))
            .collect();
        let e = ClientSlot::take(&table, operator, true).err().unwrap();
        assert!(e.contains("this key already has 8"), "{e}");
        drop(ops);
        drop(held.pop());
        assert!(ClientSlot::take(&table, key(i), false).is_ok());
        drop(held);
        assert!(table.lock().unwrap().is_empty(), "every slot given back");
    }
}
