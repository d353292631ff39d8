//! The owner's client: stores a dataset with every party of a committee in one call, and binds
//! it to its STORE record.
//!
//! [`Owner::store_shares`] deals every value of every column (and one check mask) with a fresh
//! degree-`t` Shamir polynomial, sends each party its shares over an authenticated Noise
//! channel, checks that each party's signed receipt is for exactly the vectors it was sent,
//! hands every party all receipts so they run the batch degree check among themselves, answers
//! their complaints (revealing only the accused parties' own vectors), and reports which
//! parties hold the dataset. Publishing the STORE record is the wallet's part
//! ([`super::acl_ops::store_dataset`]); [`Owner::commit`] then tells the parties.
//!
//! Every exchange with a party has a deadline, and a party whose connection drops is dialled
//! again (with backoff) and sent its session again: a party restarted mid-store holds all of the
//! dataset or none of it, and takes the session up where it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;
use serde::Serialize;

use super::card::schnorr_verify;
use super::frame::{Frame, MessageType};
use super::manifest::Manifest;
use super::noise::{AllowedKeys, StaticKeypair, TransportKey};
use super::transport::{connect, Channel, ChannelConfig, TransportError};
use super::wire::{
    self, field_to_hex, json_frame, parse_json, receipt_digest, Complaint, Receipt, SessionOnly,
    ShareBatch, StoreBegin, StoreCheck, StoreCommit, StoreDone, WireError,
};
use crate::mpc::csv::Dataset;
use crate::mpc::dealing::{deal, receipts_root, Hash32, PartyShares};
use crate::mpc::field::PrimeField;
use crate::mpc::shamir::{dealer_rng, Params};

/// Values per share batch frame (64 Ki values: 2 MiB of secp256k1 shares).
pub const BATCH_VALUES: usize = 1 << 16;

/// The least time a store check waits for the parties still silent once `n - t` answered.
pub const STRAGGLER_GRACE: Duration = Duration::from_secs(5);

/// Errors of the owner's client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OwnerError {
    /// The manifest is malformed.
    #[error("manifest: {0}")]
    Manifest(String),
    /// Not every party took its shares: nothing was published; `held` says who holds them.
    #[error("store refused: {}; parties holding the shares: {held:?} (nothing was published)", reasons.join("; "))]
    Incomplete {
        /// Parties that committed the shares and signed a correct receipt.
        held: Vec<u32>,
        /// `party N: why` for each other party.
        reasons: Vec<String>,
    },
    /// The store check refused the dealing.
    #[error("store check refused the dealing: {0}")]
    Refused(String),
    /// The dataset's description (column names, category labels, ranges) does not fit the
    /// one message that declares a store.
    #[error("the dataset's description (column names, category labels, ranges) takes {bytes} bytes, more than the {cap} a store may declare: store fewer columns (--columns) or shorter names and labels")]
    TooLarge {
        /// Bytes of the `STORE_BEGIN` message.
        bytes: usize,
        /// The message type's cap.
        cap: u32,
    },
    /// A party refused a message or timed out.
    #[error("party {party}: {reason}")]
    Party {
        /// The party.
        party: u32,
        /// What happened.
        reason: String,
    },
}

/// What to store and how.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The dataset's name.
    pub name: String,
    /// Bound on each exchange with one party (upload and receipt, check, commit), including
    /// reconnections.
    pub party_timeout: Duration,
    /// Channel timeouts.
    pub channel: ChannelConfig,
}

impl StoreOptions {
    /// Options for `name` with a 60-second bound per party exchange.
    pub fn new(name: &str) -> Self {
        StoreOptions {
            name: name.to_string(),
            party_timeout: Duration::from_secs(60),
            channel: ChannelConfig::default(),
        }
    }
}

/// How a store went at the parties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreReport {
    /// The session id, hex.
    pub session: String,
    /// The receipts root the STORE record carries.
    #[serde(with = "wire::hex32")]
    pub receipts_root: Hash32,
    /// Parties that hold the dataset, checked (they reported the check passed).
    pub holders: Vec<u32>,
    /// Parties named by the check (a lying opening or an equivocation), ascending.
    pub blamed: Vec<u32>,
    /// Parties that did not report the check's end in time.
    pub silent: Vec<u32>,
    /// Rows stored.
    pub rows: usize,
    /// Shared columns (value and validity columns).
    pub columns: usize,
    /// Bytes of shares sent, all parties.
    pub bytes_sent: u64,
    /// Equivocation evidence the parties reported (one per equivocating party).
    pub equivocations: Vec<crate::mpc::echo::Equivocation>,
}

/// Progress of an upload: bytes of shares sent so far, of the total.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// An owner: its transport key and the committee's manifest.
#[derive(Debug, Clone)]
pub struct Owner {
    manifest: Manifest,
    transport: StaticKeypair,
}

struct Link {
    channel: Channel,
}

impl Link {
    async fn open(
        endpoint: &str,
        me: &StaticKeypair,
        peer: TransportKey,
        config: ChannelConfig,
    ) -> Result<Self, TransportError> {
        let channel = connect(endpoint, me, &AllowedKeys::new([peer]), config).await?;
        Ok(Link { channel })
    }

    async fn send(&mut self, f: &Frame) -> Result<(), String> {
        self.channel.send(f).await.map_err(|e| e.to_string())
    }

    /// The next frame that is not a keepalive; an `ERROR` frame becomes its text.
    async fn recv(&mut self) -> Result<Frame, String> {
        loop {
            let f = self
                .channel
                .recv_keepalive()
                .await
                .map_err(|e| e.to_string())?;
            match f.kind() {
                MessageType::PING => continue,
                MessageType::ERROR => {
                    return Err(format!(
                        "refused: {}",
                        String::from_utf8_lossy(f.payload())
                            .chars()
                            .take(300)
                            .collect::<String>()
                    ))
                }
                _ => return Ok(f),
            }
        }
    }
}

impl Owner {
    /// An owner with `transport` as its Noise static key, for the committee of `manifest`
    /// (which the caller has verified on chain: [`super::manifest::verify_manifest`]).
    pub fn new(manifest: Manifest, transport: StaticKeypair) -> Self {
        Owner {
            manifest,
            transport,
        }
    }

    /// The committee's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn endpoint(&self, party: u32) -> (String, TransportKey) {
        let c = &self.manifest.roster.cards[party as usize - 1];
        (c.endpoint.clone(), TransportKey(c.transport_key))
    }

    /// Deals `dataset` in field `F` to every party, collects and checks the receipts, runs the
    /// parties' store check with complaint resolution, and reports who holds the dataset.
    /// Nothing is published: the caller publishes the STORE record with
    /// [`StoreReport::receipts_root`], then calls [`Owner::commit`].
    ///
    /// # Errors
    /// [`OwnerError::Incomplete`] (naming who holds the shares) if some party did not take them
    /// or signed a wrong receipt; [`OwnerError::Refused`] if the check refused the dealing (or
    /// fewer than `n - t` parties confirmed it).
    pub async fn store_shares<F: PrimeField>(
        &self,
        dataset: &Dataset,
        options: &StoreOptions,
        progress: Option<Progress>,
    ) -> Result<StoreReport, OwnerError> {
        let columns: Vec<Vec<F>> = dataset.to_field::<F>();
        deal_checked::<F>(
            &self.manifest,
            &self.transport,
            &dataset.schema,
            columns,
            None,
            options,
            progress,
        )
        .await
    }
}

/// Deals `columns` (one vector per field column of `schema`) to every party of `manifest`,
/// collects and checks the receipts and runs the parties' check with complaint resolution:
/// an owner's store (`job` = `None`) or a service's output masks for job `job`.
///
/// # Errors
/// As [`Owner::store_shares`].
pub(crate) async fn deal_checked<F: PrimeField>(
    manifest: &Manifest,
    transport: &StaticKeypair,
    schema: &crate::mpc::csv::Schema,
    columns: Vec<Vec<F>>,
    job: Option<Hash32>,
    options: &StoreOptions,
    progress: Option<Progress>,
) -> Result<StoreReport, OwnerError> {
    wire::check_name(&options.name).map_err(|e| OwnerError::Manifest(e.to_string()))?;
    let endpoint_of = |party: u32| {
        let c = &manifest.roster.cards[party as usize - 1];
        (c.endpoint.clone(), TransportKey(c.transport_key))
    };
    let roster = &manifest.roster;
    let n = roster.n();
    let params =
        Params::new(n, roster.params.t).map_err(|e| OwnerError::Manifest(e.to_string()))?;
    let mut session = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut session);
    let roster_id = roster.id();
    let shares = Arc::new(deal(params, &columns, &mut dealer_rng()));
    drop(columns);
    let begin = |i: usize| StoreBegin {
        version: wire::STORE_PROTOCOL_VERSION,
        session,
        roster: roster_id,
        name: options.name.clone(),
        field: F::NAME.to_string(),
        schema: schema.clone(),
        mask: field_to_hex(&shares[i].mask),
        job,
    };
    // The declaration must fit its message: checked here, once, instead of failing at every
    // party (and being retried) after the dealing.
    let declared =
        serde_json::to_vec(&begin(0)).map_err(|e| OwnerError::Manifest(e.to_string()))?;
    let cap = MessageType::STORE_BEGIN.cap().unwrap_or(0);
    if declared.len() > cap as usize {
        return Err(OwnerError::TooLarge {
            bytes: declared.len(),
            cap,
        });
    }
    let context = begin(0).context();
    let expected: Vec<Hash32> = shares.iter().map(|s| s.receipt_hash(&context)).collect();
    let total = (schema.rows * schema.fields.len() * n * F::ENCODED_LEN) as u64;
    let sent = Arc::new(AtomicU64::new(0));

    // Phase 1: shares and receipts.
    let mut tasks = Vec::new();
    for i in 1..=n as u32 {
        let (endpoint, key) = endpoint_of(i);
        let me = transport.clone();
        let begin = begin(i as usize - 1);
        let shares = Arc::clone(&shares);
        let (sent, progress, options) = (Arc::clone(&sent), progress.clone(), options.clone());
        let party_key = roster.cards[i as usize - 1].party_key;
        let want = expected[i as usize - 1];
        tasks.push(tokio::spawn(async move {
            let r = with_retries(options.party_timeout, || {
                let (endpoint, me, begin, shares) = (&endpoint, &me, &begin, &shares);
                let (sent, progress) = (&sent, &progress);
                async move {
                    let mut link = Link::open(endpoint, me, key, options.channel)
                        .await
                        .map_err(|e| Retry::Again(e.to_string()))?;
                    upload::<F>(
                        &mut link,
                        begin,
                        &shares[i as usize - 1],
                        sent,
                        total,
                        progress.as_ref(),
                    )
                    .await
                    .map_err(Retry::Again)?;
                    let f = link.recv().await.map_err(Retry::Again)?;
                    let r: Receipt = parse_json(&f).map_err(|e| Retry::Stop(e.to_string()))?;
                    Ok(r)
                }
            })
            .await;
            let r = r.and_then(|r| {
                let digest = receipt_digest(&roster_id, &session, i, &r.hash);
                if r.party != i || r.session != session {
                    Err("answered with a receipt for another party or session".to_string())
                } else if !schnorr_verify(&party_key, digest, &r.signature) {
                    Err("its receipt signature does not verify".to_string())
                } else if r.hash != want {
                    Err(
                        "signed a receipt for shares it was not sent (wrong receipt hash)"
                            .to_string(),
                    )
                } else {
                    Ok(r)
                }
            });
            (i, r)
        }));
    }
    let mut receipts = Vec::new();
    let mut reasons = Vec::new();
    let mut held = Vec::new();
    for t in tasks {
        let (i, r) = t.await.map_err(|e| OwnerError::Manifest(e.to_string()))?;
        match r {
            Ok(r) => {
                held.push(i);
                receipts.push(r);
            }
            Err(e) => reasons.push(format!("party {i}: {e}")),
        }
    }
    if !reasons.is_empty() {
        return Err(OwnerError::Incomplete { held, reasons });
    }
    let root = receipts_root(&expected);

    // Phase 2: the parties' check, with complaint resolution.
    let check = StoreCheck {
        session,
        receipts: receipts.clone(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    let check_started = Instant::now();
    for i in 1..=n as u32 {
        let (endpoint, key) = endpoint_of(i);
        let me = transport.clone();
        let (check, shares, options) = (check.clone(), Arc::clone(&shares), options.clone());
        let begin = begin(i as usize - 1);
        tasks.spawn(async move {
            let r = with_retries(options.party_timeout, || {
                let (endpoint, me, check, shares, begin) =
                    (&endpoint, &me, &check, &shares, &begin);
                async move {
                    let mut link = Link::open(endpoint, me, key, options.channel)
                        .await
                        .map_err(|e| Retry::Again(e.to_string()))?;
                    // The party may have restarted and lost the session from memory: the
                    // session's header brings it back from its store (no batches needed).
                    let f = json_frame(MessageType::STORE_BEGIN, begin).map_err(stop)?;
                    link.send(&f).await.map_err(Retry::Again)?;
                    let f = json_frame(MessageType::STORE_CHECK, check).map_err(stop)?;
                    link.send(&f).await.map_err(Retry::Again)?;
                    loop {
                        let f = link.recv().await.map_err(Retry::Again)?;
                        match f.kind() {
                            MessageType::STORE_DONE => {
                                return parse_json::<StoreDone>(&f).map_err(stop);
                            }
                            MessageType::COMPLAINT => {
                                let c: Complaint = parse_json(&f).map_err(stop)?;
                                reveal::<F>(&mut link, &session, &c, shares)
                                    .await
                                    .map_err(Retry::Again)?;
                            }
                            other => return Err(Retry::Stop(format!("unexpected {other}"))),
                        }
                    }
                }
            })
            .await;
            (i, r)
        });
    }
    // Once n - t parties have answered, the others get a quarter of the time those took more
    // (at least STRAGGLER_GRACE, at most the party timeout): they ran the same rounds, so a
    // silent party costs the store a little more than the honest parties' time instead of
    // the whole party timeout.
    let quorum = n - params.t();
    let mut answers: Vec<(u32, Result<StoreDone, String>)> = Vec::new();
    let mut straggler_deadline: Option<tokio::time::Instant> = None;
    loop {
        let next = match straggler_deadline {
            Some(d) => match tokio::time::timeout_at(d, tasks.join_next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => tasks.join_next().await,
        };
        let Some(joined) = next else { break };
        answers.push(joined.map_err(|e| OwnerError::Manifest(e.to_string()))?);
        if answers.len() >= quorum && straggler_deadline.is_none() {
            let grace = (check_started.elapsed() / 4)
                .max(STRAGGLER_GRACE)
                .min(options.party_timeout);
            straggler_deadline = Some(tokio::time::Instant::now() + grace);
        }
    }
    tasks.abort_all();
    for i in 1..=n as u32 {
        if !answers.iter().any(|(p, _)| *p == i) {
            answers.push((i, Err("no answer within the stragglers' grace".into())));
        }
    }
    answers.sort_by_key(|(i, _)| *i);
    let mut holders = Vec::new();
    let mut silent = Vec::new();
    let mut refusals = Vec::new();
    let mut reports: Vec<(u32, Vec<u32>)> = Vec::new();
    let mut equivocations: Vec<crate::mpc::echo::Equivocation> = Vec::new();
    for (i, r) in answers {
        if let Ok(done) = &r {
            for e in &done.evidence {
                if !equivocations.iter().any(|k| k.sender() == e.sender()) {
                    equivocations.push(e.clone());
                }
            }
        }
        match r {
            Ok(done) if done.accepted && done.party == i => {
                holders.push(i);
                reports.push((i, done.liars.iter().map(|p| p.get()).collect()));
            }
            Ok(done) => {
                refusals.push(format!(
                    "party {i}: {}",
                    done.reason.clone().unwrap_or_default()
                ));
                reports.push((i, done.liars.iter().map(|p| p.get()).collect()));
            }
            Err(e) => {
                tracing::info!(target: "btcmpc::owner", party = i, "no check result: {e}");
                silent.push(i);
            }
        }
    }
    let t = params.t();
    let blamed = tally_blame(&reports, n, t);
    holders.retain(|p| !blamed.contains(p));
    if holders.len() < n - t {
        return Err(OwnerError::Refused(format!(
            "only parties {holders:?} confirmed the dealing, {} needed{}{}",
            n - t,
            if refusals.is_empty() {
                String::new()
            } else {
                format!("; {}", refusals.join("; "))
            },
            if silent.is_empty() {
                String::new()
            } else {
                // Late or unreachable: a party still in the check's rounds when the party
                // timeout passes is not necessarily silent.
                format!(
                    "; no check result from parties {silent:?} within the party timeout ({} s)",
                    options.party_timeout.as_secs()
                )
            },
        )));
    }
    Ok(StoreReport {
        session: hex::encode(session),
        receipts_root: root,
        holders,
        blamed,
        silent,
        rows: schema.rows,
        columns: schema.fields.len(),
        bytes_sent: sent.load(Ordering::Relaxed),
        equivocations,
    })
}

impl Owner {
    /// Tells `parties` that the dataset of `session` is bound to its published STORE record;
    /// returns the parties that confirmed.
    ///
    /// # Errors
    /// [`OwnerError::Party`] only if no party confirmed.
    pub async fn commit(
        &self,
        parties: &[u32],
        commit: &StoreCommit,
        channel: ChannelConfig,
        timeout: Duration,
    ) -> Result<Vec<u32>, OwnerError> {
        let mut tasks = Vec::new();
        for &i in parties {
            let (endpoint, key) = self.endpoint(i);
            let me = self.transport.clone();
            let commit = commit.clone();
            tasks.push(tokio::spawn(async move {
                let r = with_retries(timeout, || {
                    let (endpoint, me, commit) = (&endpoint, &me, &commit);
                    async move {
                        let mut link = Link::open(endpoint, me, key, channel)
                            .await
                            .map_err(|e| Retry::Again(e.to_string()))?;
                        let f = json_frame(MessageType::STORE_COMMIT, commit).map_err(stop)?;
                        link.send(&f).await.map_err(Retry::Again)?;
                        let f = link.recv().await.map_err(Retry::Stop)?;
                        let back: StoreCommit = parse_json(&f).map_err(stop)?;
                        if back != *commit {
                            return Err(Retry::Stop("confirmed another commit".into()));
                        }
                        Ok(())
                    }
                })
                .await;
                (i, r)
            }));
        }
        let mut ok = Vec::new();
        let mut last = String::new();
        for t in tasks {
            let (i, r) = t.await.map_err(|e| OwnerError::Manifest(e.to_string()))?;
            match r {
                Ok(()) => ok.push(i),
                Err(e) => {
                    tracing::warn!(target: "btcmpc::owner", party = i, "commit not confirmed: {e}");
                    last = format!("party {i}: {e}");
                }
            }
        }
        if ok.is_empty() {
            return Err(OwnerError::Party {
                party: parties.first().copied().unwrap_or(0),
                reason: last,
            });
        }
        Ok(ok)
    }
}

/// The parties the check blames: each named by more than `t` reporting parties (so by at least
/// one honest party). `reports` holds `(reporting party, parties it names)`; a reporting party
/// counts once for each party it names, however often it repeats it, and never for itself.
pub fn tally_blame(reports: &[(u32, Vec<u32>)], n: usize, t: usize) -> Vec<u32> {
    let mut votes: std::collections::BTreeMap<u32, std::collections::BTreeSet<u32>> =
        Default::default();
    for (from, named) in reports {
        for l in named {
            if *l != *from && *l >= 1 && (*l as usize) <= n {
                votes.entry(*l).or_default().insert(*from);
            }
        }
    }
    votes
        .into_iter()
        .filter(|(_, v)| v.len() > t)
        .map(|(p, _)| p)
        .collect()
}

/// A party's status, asked over an authenticated channel with the party's own transport key
/// (`party status` runs in the party's datadir).
///
/// # Errors
/// A one-line reason: unreachable, refused, or a malformed answer.
pub async fn party_status(
    endpoint: &str,
    me: &StaticKeypair,
    party: TransportKey,
    config: ChannelConfig,
) -> Result<wire::Status, String> {
    let mut link = Link::open(endpoint, me, party, config)
        .await
        .map_err(|e| format!("cannot reach the party at {endpoint}: {e}"))?;
    let f = Frame::new(MessageType::STATUS, Vec::new()).map_err(|e| e.to_string())?;
    link.send(&f).await?;
    let f = tokio::time::timeout(config.handshake_timeout, link.recv())
        .await
        .map_err(|_| "the party did not answer".to_string())??;
    parse_json(&f).map_err(|e| e.to_string())
}

enum Retry {
    Again(String),
    Stop(String),
}

fn stop(e: WireError) -> Retry {
    Retry::Stop(e.to_string())
}

/// Runs `attempt` until it succeeds, fails for good, or `timeout` has passed (each attempt is
/// bounded by what is left); waits 200 ms, doubling to 2 s, between attempts.
async fn with_retries<T, Fut>(
    timeout: Duration,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, String>
where
    Fut: std::future::Future<Output = Result<T, Retry>>,
{
    let end = Instant::now() + timeout;
    let mut delay = Duration::from_millis(200);
    let mut last = String::from("timed out");
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("{last} (gave up after {timeout:?})"));
        }
        match tokio::time::timeout(left, attempt()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(Retry::Stop(e))) => return Err(e),
            Ok(Err(Retry::Again(e))) => {
                if e.starts_with("refused:") {
                    return Err(e);
                }
                last = e;
            }
            Err(_) => return Err(format!("{last} (gave up after {timeout:?})")),
        }
        tokio::time::sleep(delay.min(end.saturating_duration_since(Instant::now()))).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

async fn upload<F: PrimeField>(
    link: &mut Link,
    begin: &StoreBegin,
    shares: &PartyShares<F>,
    sent: &AtomicU64,
    total: u64,
    progress: Option<&Progress>,
) -> Result<(), String> {
    let f = json_frame(MessageType::STORE_BEGIN, begin).map_err(|e| e.to_string())?;
    link.send(&f).await?;
    send_vectors(
        link,
        &begin.session,
        0,
        &shares.columns,
        Some((sent, total, progress)),
    )
    .await?;
    let f = json_frame(
        MessageType::STORE_END,
        &SessionOnly {
            session: begin.session,
        },
    )
    .map_err(|e| e.to_string())?;
    link.send(&f).await
}

async fn send_vectors<F: PrimeField>(
    link: &mut Link,
    session: &Hash32,
    holder: u32,
    columns: &[Vec<F>],
    progress: Option<(&AtomicU64, u64, Option<&Progress>)>,
) -> Result<(), String> {
    for (c, col) in columns.iter().enumerate() {
        for (k, chunk) in col.chunks(BATCH_VALUES).enumerate() {
            let b = ShareBatch {
                session: *session,
                holder,
                column: c as u32,
                first_row: (k * BATCH_VALUES) as u64,
                values: chunk.to_vec(),
            };
            let f = b.to_frame().map_err(|e| e.to_string())?;
            link.send(&f).await?;
            if let Some((sent, total, p)) = progress {
                let now = sent.fetch_add((chunk.len() * F::ENCODED_LEN) as u64, Ordering::Relaxed)
                    + (chunk.len() * F::ENCODED_LEN) as u64;
                if let Some(p) = p {
                    p(now.min(total), total);
                }
            }
        }
    }
    Ok(())
}

/// Answers a complaint: the accused parties' vectors (their own shares only), then their masks.
async fn reveal<F: PrimeField>(
    link: &mut Link,
    session: &Hash32,
    c: &Complaint,
    shares: &[PartyShares<F>],
) -> Result<(), String> {
    let mut masks = Vec::new();
    let mut parties = Vec::new();
    for &p in &c.parties {
        let Some(s) = shares.get((p as usize).wrapping_sub(1)) else {
            continue;
        };
        send_vectors(link, session, p, &s.columns, None).await?;
        parties.push(p);
        masks.push(field_to_hex(&s.mask));
    }
    let f = json_frame(
        MessageType::COMPLAINT,
        &Complaint {
            session: *session,
            parties,
            masks,
        },
    )
    .map_err(|e| e.to_string())?;
    link.send(&f).await
}

#[cfg(test)]
mod tests {
    use super::tally_blame;

    #[test]
    fn one_liar_cannot_blame_an_honest_party() {
        // Party 4 names party 2 three times: one vote, not enough for t = 1.
        assert!(tally_blame(&[(1, vec![]), (3, vec![]), (4, vec![2, 2, 2])], 4, 1).is_empty());
        // Parties naming themselves do not count; two honest parties naming 3 do.
        assert_eq!(
            tally_blame(&[(1, vec![3]), (2, vec![3]), (3, vec![3])], 4, 1),
            vec![3]
        );
        assert!(tally_blame(&[(3, vec![3]), (4, vec![3])], 4, 1).is_empty());
        // Out-of-range names are ignored.
        assert!(tally_blame(&[(1, vec![9, 0]), (2, vec![9, 0])], 4, 1).is_empty());
    }
}
