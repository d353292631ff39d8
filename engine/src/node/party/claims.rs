//! The claimer: a thread (the wallet and the Electrum client are blocking) that claims the
//! escrow output of every paid job under PROTOCOL.md's claim rule (job flow, step 6), and
//! bumps claims every block until they are deep.
//!
//! Before `k_i` leaves this process the claimer rebuilds, from this party's own records and
//! its own chain view, what it was promised: every quote of the delivery set verifies under
//! the roster's party keys and names the job's fee and `T`; the funding transaction (read from
//! the server) pays each of those parties its own escrow script (rebuilt from the quote) with
//! at least the quoted fee; this party's output has `escrow_min_conf` confirmations and
//! `tip + claim_margin <= T` ([`RoleWallet::check_claim`]). A funding that breaks any of these
//! is refused for good: `k_i` is never revealed for it.

use super::jobs::{job_key, JobRecord};
use super::*;
use crate::node::job::{escrow_contract, hashlock_key, JobPaid, JobRequest};
use crate::node::judge::JudgeRequest;
use btcmpc_wallet::{ChainClient, ClaimRules, EscrowPromise, FeeChoice, RoleWallet};

/// Why a claim did not happen yet.
enum NotYet {
    /// Try again next round (not enough confirmations, the server is down, ...).
    Wait(String),
    /// Never: the funding does not pay what was promised, or `T` is too close.
    Never(String),
}

/// Most sat/vB a claim (or its bump) pays.
const MAX_CLAIM_RATE_SAT_VB: u64 = 100;

/// Claims every paid job (see the module docs) and judges the evidence clients send. With the
/// `withhold-key` testing fault it never claims, so `k_i` never leaves the process, and says so
/// once per job.
#[allow(clippy::too_many_arguments)]
pub(super) fn claim_paid_jobs(
    path: &std::path::Path,
    wallet_dir: &std::path::Path,
    src: &ChainSource,
    events: &mpsc::Sender<Event>,
    stop: &std::sync::atomic::AtomicBool,
    manifest: &Manifest,
    party_key: &Keypair,
    judge_rx: &std::sync::mpsc::Receiver<(u64, JudgeRequest)>,
    fault: Option<Fault>,
    claim_rate: u64,
) {
    use std::sync::atomic::Ordering;
    let mut client: Option<ChainClient> = None;
    let mut wallet: Option<RoleWallet> = None;
    let mut store: Option<Store> = None;
    let mut last_tip = 0u32;
    let mut logged: HashMap<String, String> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = ChainClient::connect_for(
                &src.url,
                src.network,
                src.allow_plaintext,
                Duration::from_secs(10),
            )
            .map_err(|e| debug!(target: "btcmpc::party", "claimer cannot connect: {e}"))
            .ok();
        }
        if store.is_none() {
            store = Store::open(path)
                .map_err(|e| warn!(target: "btcmpc::party", "claimer cannot open the store: {e}"))
                .ok();
        }
        if wallet.is_none() {
            wallet = RoleWallet::open(wallet_dir, src.network)
                .map_err(|e| warn!(target: "btcmpc::party", "claimer cannot open the wallet: {e}"))
                .ok();
        }
        if let (Some(c), Some(st), Some(w)) = (&client, &store, &mut wallet) {
            for rec in paid_unclaimed(st) {
                let job = rec.quote.job;
                if fault == Some(Fault::WithholdKey) {
                    if let std::collections::hash_map::Entry::Vacant(e) =
                        logged.entry(job_key(&job))
                    {
                        warn!(target: "btcmpc::party", job = %hex::encode(job), "testing fault withhold-key: never claiming, the key stays secret");
                        e.insert(String::new());
                    }
                    continue;
                }
                let result = match claim(c, w, src.network, manifest, party_key, &rec, claim_rate) {
                    Ok(txid) => {
                        if fault == Some(Fault::CrashAfter(FaultStep::Claim)) {
                            crash(FaultStep::Claim, "after");
                        }
                        Some(Ok(txid))
                    }
                    Err(NotYet::Never(reason)) => Some(Err(reason)),
                    Err(NotYet::Wait(reason)) => {
                        let key = job_key(&job);
                        if logged.get(&key) != Some(&reason) {
                            info!(target: "btcmpc::party", job = %hex::encode(job), "not claiming yet: {reason}");
                            logged.insert(key, reason);
                        }
                        None
                    }
                };
                if let Some(result) = result {
                    match &result {
                        Ok(txid) => {
                            info!(target: "btcmpc::party", job = %hex::encode(job), %txid, "claimed the escrow output")
                        }
                        Err(r) => {
                            warn!(target: "btcmpc::party", job = %hex::encode(job), "never claiming: {r}")
                        }
                    }
                    if events
                        .blocking_send(Event::Claimed { job, result })
                        .is_err()
                    {
                        return;
                    }
                }
            }
            // Claims are bumped every block until they confirm (the wallet keeps and
            // re-broadcasts them until they are deep).
            if let Ok((tip, _)) = c.tip() {
                if tip != last_tip {
                    last_tip = tip;
                    if let Err(e) = w.sync(c) {
                        debug!(target: "btcmpc::party", "claimer sync: {e}");
                        client = None;
                    } else if let Some(max) =
                        bitcoin::FeeRate::from_sat_per_vb(MAX_CLAIM_RATE_SAT_VB)
                    {
                        if let Err(e) = w.bump_stuck_claims(c, max) {
                            debug!(target: "btcmpc::party", "claim bump: {e}");
                        }
                    }
                }
            } else {
                client = None;
            }
        }
        // Evidence to judge arrives between rounds. The round lasts `poll` whatever arrives
        // (claims and their bumps never wait on judging), and at most JUDGE_PER_ROUND pieces
        // of evidence are judged per round; the rest are answered "busy".
        let until = std::time::Instant::now() + src.poll;
        let mut judged = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match judge_rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok((conn, req)) => {
                    let result = if judged >= JUDGE_PER_ROUND {
                        Err("this judge is busy; send the evidence again later".into())
                    } else {
                        judged += 1;
                        match (&client, &mut store, &mut wallet) {
                            (Some(c), Some(st), Some(w)) => {
                                judge_one(c, w, st, manifest, party_key, &req)
                            }
                            _ => {
                                Err("the judge has no chain connection or wallet yet; try again"
                                    .into())
                            }
                        }
                    };
                    if events
                        .blocking_send(Event::Judged { conn, result })
                        .is_err()
                    {
                        return;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left.min(Duration::from_millis(100)));
                }
            }
        }
    }
}

/// Most pieces of evidence one claimer round judges (each costs chain lookups and a sync).
const JUDGE_PER_ROUND: usize = 4;

/// The job records that are paid and not yet claimed. A store that cannot be read, or a record
/// that cannot be read or decoded, is logged and skipped: the next pass reads it again.
fn paid_unclaimed(st: &Store) -> Vec<JobRecord> {
    let keys = match st.jobs_with_prefix("job:") {
        Ok(k) => k,
        Err(e) => {
            warn!(target: "btcmpc::party", "claimer cannot list the jobs: {e}");
            return Vec::new();
        }
    };
    keys.into_iter()
        .filter_map(|k| match st.job_state(&k) {
            Ok(Some(b)) => match serde_json::from_slice::<JobRecord>(&b) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(target: "btcmpc::party", record = %k, "claimer skips an unreadable job record: {e}");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                warn!(target: "btcmpc::party", record = %k, "claimer cannot read a job record: {e}");
                None
            }
        })
        .filter(|r| r.state == "paid" && r.claim_txid.is_none())
        .collect()
}

/// Judges evidence a client sent ([`crate::node::judge::judge`]), after syncing the wallet so
/// the judge's chain view is current.
fn judge_one(
    chain: &ChainClient,
    wallet: &mut RoleWallet,
    store: &mut Store,
    manifest: &Manifest,
    party_key: &Keypair,
    req: &JudgeRequest,
) -> Result<crate::node::judge::JudgeAnswer, String> {
    let me = manifest
        .roster
        .index_of(&party_key.public_key())
        .ok_or("this party is not in its roster")? as u32;
    // Everything that needs no chain first (signatures, roster, session, the rule itself with
    // every claim taken as confirmed): bogus evidence costs no chain lookup and no sync.
    let any_claim =
        |_: &crate::mpc::dealing::Hash32, _: PartyId, _: &crate::mpc::dealing::Hash32| true;
    crate::node::judge::verify_job_evidence(&req.evidence, manifest, &any_claim)
        .map_err(|e| e.to_string())?;
    wallet
        .sync(chain)
        .map_err(|e| format!("syncing the wallet: {e}"))?;
    let answer = crate::node::judge::judge(chain, wallet, store, manifest, me, req)
        .map_err(|e| e.to_string())?;
    info!(target: "btcmpc::party", accused = answer.accused, rule = %answer.rule, signatures = answer.signatures, victim_sat = answer.victim_sat, "evidence verified: signed the canonical slash");
    Ok(answer)
}

/// The claim of one paid job, after every check of the module docs.
fn claim(
    chain: &ChainClient,
    wallet: &mut RoleWallet,
    network: bitcoin::Network,
    manifest: &Manifest,
    party_key: &Keypair,
    rec: &JobRecord,
    claim_rate: u64,
) -> Result<String, NotYet> {
    let paid: &JobPaid = rec
        .paid
        .as_ref()
        .ok_or_else(|| NotYet::Never("no funding recorded".into()))?;
    let req: &JobRequest = &rec.request;
    let service: PublicKey = req
        .service
        .parse()
        .map_err(|_| NotYet::Never("the request's service key does not parse".into()))?;
    let funding_txid: bitcoin::Txid = paid
        .funding_txid
        .parse()
        .map_err(|_| NotYet::Never(format!("funding txid {:?}", paid.funding_txid)))?;
    let tx = chain
        .transaction(&funding_txid)
        .map_err(|e| NotYet::Wait(format!("funding {funding_txid} not seen yet: {e}")))?;
    if tx.compute_txid() != funding_txid {
        return Err(NotYet::Wait("the server sent another transaction".into()));
    }
    let roster = &manifest.roster;
    // The delivery set a service pays must be at least 2t + 1 parties (PROTOCOL.md, step 5):
    // paying t + 1 of them would buy the result while the others worked for nothing.
    let need = 2 * roster.params.t + 1;
    if paid.outputs.len() < need {
        return Err(NotYet::Never(format!(
            "the funding pays {} parties, the claim rule needs the whole delivery set of at least 2t + 1 = {need}",
            paid.outputs.len()
        )));
    }
    let me = roster
        .index_of(&party_key.public_key())
        .ok_or_else(|| NotYet::Never("not in the roster".into()))? as u32;
    let mut mine: Option<(bitcoin::OutPoint, u64, btcmpc_contracts::ContractFile)> = None;
    let mut seen = BTreeSet::new();
    for out in &paid.outputs {
        if !seen.insert(out.party) {
            return Err(NotYet::Never(format!("party {} is paid twice", out.party)));
        }
        let card = roster
            .cards
            .get((out.party as usize).wrapping_sub(1))
            .ok_or_else(|| NotYet::Never(format!("party {} is not in the roster", out.party)))?;
        let quote = paid
            .quotes
            .iter()
            .find(|q| q.party == out.party)
            .ok_or_else(|| NotYet::Never(format!("no quote of party {}", out.party)))?;
        quote
            .verify(req, out.party, &card.party_key)
            .map_err(NotYet::Never)?;
        if out.party == me && quote.key_hash != rec.quote.key_hash {
            return Err(NotYet::Never("my quote in the funding is not mine".into()));
        }
        let file = escrow_contract(
            network,
            service,
            card.party_key,
            &quote.key_hash,
            quote.timeout,
        )
        .map_err(NotYet::Never)?;
        let txout = tx
            .output
            .get(out.vout as usize)
            .ok_or_else(|| NotYet::Never(format!("the funding has no output {}", out.vout)))?;
        if txout.script_pubkey != *file.compiled().script_pubkey() {
            return Err(NotYet::Never(format!(
                "output {} does not pay party {}'s escrow",
                out.vout, out.party
            )));
        }
        if txout.value.to_sat() < quote.escrow_sat() {
            return Err(NotYet::Never(format!(
                "output {} pays party {} {} sat, less than its quoted {} sat (fee {} + claim fee {})",
                out.vout,
                out.party,
                txout.value.to_sat(),
                quote.escrow_sat(),
                quote.fee_sat,
                quote.claim_fee_sat
            )));
        }
        if out.party == me {
            mine = Some((
                bitcoin::OutPoint {
                    txid: funding_txid,
                    vout: out.vout,
                },
                quote.escrow_sat(),
                file,
            ));
        }
    }
    let (outpoint, fee, file) =
        mine.ok_or_else(|| NotYet::Never("the funding pays nothing to this party".into()))?;
    // Already claimed (a crash after the broadcast, before it was recorded): the wallet keeps
    // that claim until it is buried; record it.
    let status = wallet
        .contract_status(chain, &file)
        .map_err(|e| NotYet::Wait(format!("chain: {e}")))?;
    if let Some(spend) = status
        .outputs
        .iter()
        .find(|o| o.outpoint == outpoint)
        .and_then(|o| o.spend.as_ref())
        .filter(|s| s.path == Some(btcmpc_contracts::PathKind::Claim))
    {
        return Ok(spend.txid.to_string());
    }
    let rules = ClaimRules::for_network(network);
    let promise = EscrowPromise {
        outpoint,
        amount: bitcoin::Amount::from_sat(fee),
    };
    // The claim rule first, with nothing revealed: a timeout too close is final.
    if let Err(e) = wallet.check_claim(chain, &file, &promise, &rules) {
        let text = e.to_string();
        let (tip, _) = chain
            .tip()
            .map_err(|e| NotYet::Wait(format!("chain: {e}")))?;
        if tip.saturating_add(rules.margin) > req.timeout {
            return Err(NotYet::Never(text));
        }
        return Err(NotYet::Wait(text));
    }
    let k = hashlock_key(party_key, &rec.quote.job);
    // At least the rate the quote assumed (the escrow carries that claim fee on top of the
    // fee), more if the server estimates more, at most MAX_CLAIM_RATE_SAT_VB.
    let rate = bitcoin::FeeRate::from_sat_per_vb(claim_rate.clamp(1, MAX_CLAIM_RATE_SAT_VB))
        .unwrap_or(bitcoin::FeeRate::BROADCAST_MIN);
    let fee_choice = chain
        .fee_rate(2, rate)
        .map_err(|e| NotYet::Wait(format!("chain: {e}")))?;
    let fee_choice = match fee_choice {
        FeeChoice::Automatic(r) if r.to_sat_per_vb_ceil() > MAX_CLAIM_RATE_SAT_VB => {
            FeeChoice::Automatic(rate)
        }
        other => other,
    };
    wallet
        .claim(chain, &file, &k, &promise, &rules, fee_choice)
        .map(|t| t.to_string())
        .map_err(|e| NotYet::Wait(e.to_string()))
}
