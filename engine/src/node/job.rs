//! Paid queries across processes (PROTOCOL.md, "Job flow"): what a service and the parties
//! say to each other, and the contracts both sides rebuild from it.
//!
//! ```text
//! service -> party  JOB_REQUEST  signed {nonce, roster, dataset, query, S, fee, T}        JSON
//! party -> service  JOB_QUOTE    signed {job, i, H_i = sha256(k_i), P_i, fee, T}         JSON
//! service -> party  STORE_BEGIN .. STORE_DONE with `job` set: the output masks, checked
//!                   like a store (the parties' check of the service's dealing)
//! service -> party  JOB_RUN      {job, mask session}                                      JSON
//! party <-> party   SIGNED       setup (PRSS key agreement), then the evaluation          JSON
//! party -> service  RESULT       signed delivery {job, i, H_i, c_i}                       JSON
//! service -> party  JOB_PAID     {job, funding txid, escrow outputs, every quote}         JSON
//! party -> service  JOB_PAID     its answer: the claim it will make, or why not           JSON
//! ```
//!
//! The job id is the hash of the signed request ([`JobRequest::id`]), so parties that were
//! sent different requests never compute together. `k_i` is
//! `HMAC-SHA256(job key, job id)` with the job key derived from the party's secret key
//! ([`hashlock_key`]); `c_i` seals the masked output share under `k_i`
//! ([`crate::mpc::evidence::seal`]); the party reveals `k_i` only by claiming its escrow
//! output under the claim rule (PROTOCOL.md, step 6).

use bitcoin::secp256k1::{Keypair, PublicKey};
use bitcoin::Network;
use btcmpc_contracts::{ClaimOrRefund, Contract, ContractFile, Height, InternalKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::card::{schnorr_sign, schnorr_verify, tagged_hash};
use super::wire::{hex32, hex64};
use crate::mpc::csv::Schema;
use crate::mpc::dealing::Hash32;
use crate::mpc::field::PrimeField;
use crate::mpc::query::plan::{plan_with_rule, LeakageRule, Plan};

/// Version of the job exchange. Version 2: a quote names the leakage rule the party plans
/// the query under ([`Quote::min_rows`], [`Quote::earlier`]) and a delivery carries the gate
/// bits the evaluation opened ([`JobDelivery::gates`]).
pub const JOB_PROTOCOL_VERSION: u32 = 2;
/// Most earlier queries a quote names, and so the most distinct queries a party releases to
/// one service on one dataset: the leakage rule compares a new query with every query
/// released before it, so once there are this many only repeats of them are answered
/// ([`admit_query`]).
pub const MAX_EARLIER: usize = 16;

/// The leakage rule's history for a new `query`: `released` holds the distinct queries this
/// party released to the service on the dataset, oldest first. Returns the earlier queries
/// the quote names (all of them, at most [`MAX_EARLIER`]).
///
/// # Errors
/// One line when `MAX_EARLIER` distinct queries are released and `query` is not one of them:
/// comparing it with only the most recent ones would let a pair of queries whose supports
/// differ by one row through once enough queries separate them.
pub fn admit_query(query: &str, mut released: Vec<String>) -> Result<Vec<String>, String> {
    if released.len() >= MAX_EARLIER && !released.iter().any(|q| q == query) {
        return Err(format!(
            "this party has released {} queries to this service on this dataset, the most the leakage rule compares a new query with ({MAX_EARLIER}); repeats of them are still answered",
            released.len()
        ));
    }
    if released.len() > MAX_EARLIER {
        released.drain(..released.len() - MAX_EARLIER);
    }
    Ok(released)
}
/// The words every party's refusal of a run whose quote's leakage rule is out of date holds
/// (another query of the service on the dataset was answered or started after the quote, or
/// the party's `min_rows` changed): nothing was computed or paid, and a new job may be asked
/// for.
pub const STALE_RULE: &str = "the quote's leakage rule is out of date";
/// Most gate bits a delivery carries (a plan has at most one gate per query).
pub const MAX_GATES: usize = 64;
/// The tag of a party's signature on the gate bits it delivers ([`gate_bits_encoding`]).
pub const GATE_BITS_TAG: &[u8] = b"btcmpc/v2/gate-bits";
/// Longest query text, in bytes.
pub const MAX_QUERY_LEN: usize = 4096;
/// Most sats a fee may name (21 million bitcoin).
pub const MAX_FEE_SAT: u64 = 21_000_000 * 100_000_000;
/// Most sats a quote may ask for its claim's fee (a claim is about 150 vB: 100 sat/vB).
pub const MAX_CLAIM_FEE_SAT: u64 = 15_000;
/// Longest payout address, in characters (a bech32m address is at most 90).
pub const MAX_PAYOUT_LEN: usize = 90;
/// Lock values are heights below this (BIP65: larger values are times).
pub const LOCKTIME_THRESHOLD: u32 = 500_000_000;

/// `JOB_REQUEST`: what the service asks, signed with its service key (BIP340 over
/// [`JobRequest::id`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// [`JOB_PROTOCOL_VERSION`].
    pub version: u32,
    /// 32 random bytes: two requests for the same query are two jobs.
    #[serde(with = "hex32")]
    pub nonce: Hash32,
    /// The roster the service believes in.
    #[serde(with = "hex32")]
    pub roster: Hash32,
    /// The dataset, hex (`sha256(STORE outpoint || anchor key)`).
    pub dataset_id: String,
    /// The query text (PROTOCOL.md's version-1 language), at most [`MAX_QUERY_LEN`] bytes.
    pub query: String,
    /// The service key (33-byte compressed, hex): the key owners grant, and the escrow's
    /// refund key `S`.
    pub service: String,
    /// The fee offered to each party, sats.
    pub fee_sat: u64,
    /// `T`: the escrow refund height (blocks), `1 <= T < 500,000,000`.
    pub timeout: u32,
    /// Where a penalty for this job is paid (an address of the service's wallet, on the
    /// roster's network): the victim output of a canonical slash of a party convicted by
    /// evidence from this job. At most [`MAX_PAYOUT_LEN`] characters.
    pub payout: String,
    /// BIP340 signature over [`JobRequest::id`], hex.
    pub signature: String,
}

impl JobRequest {
    /// The job id: `tagged_hash("btcmpc/v1/job-request", canonical JSON of every field but the
    /// signature)`.
    pub fn id(&self) -> Hash32 {
        let unsigned = serde_json::json!({
            "version": self.version,
            "nonce": hex::encode(self.nonce),
            "roster": hex::encode(self.roster),
            "dataset_id": self.dataset_id,
            "query": self.query,
            "service": self.service,
            "fee_sat": self.fee_sat,
            "timeout": self.timeout,
            "payout": self.payout,
        });
        tagged_hash("btcmpc/v1/job-request", unsigned.to_string().as_bytes())
    }

    /// Signs the request with the service key (which must be [`JobRequest::service`]).
    pub fn sign(&mut self, key: &Keypair) {
        self.signature = hex::encode(schnorr_sign(key, self.id()));
    }

    /// Checks the bounds and the signature; returns the service key.
    ///
    /// # Errors
    /// One line naming the field out of bounds or the bad signature.
    pub fn verify(&self) -> Result<PublicKey, String> {
        if self.version != JOB_PROTOCOL_VERSION {
            return Err(format!(
                "job protocol version {} is not {JOB_PROTOCOL_VERSION}",
                self.version
            ));
        }
        if self.query.is_empty() || self.query.len() > MAX_QUERY_LEN {
            return Err(format!(
                "the query has {} bytes, 1 to {MAX_QUERY_LEN} allowed",
                self.query.len()
            ));
        }
        if self.fee_sat == 0 || self.fee_sat > MAX_FEE_SAT {
            return Err(format!(
                "fee {} sat is outside 1 to {MAX_FEE_SAT}",
                self.fee_sat
            ));
        }
        if self.timeout == 0 || self.timeout >= LOCKTIME_THRESHOLD {
            return Err(format!(
                "timeout {} is not a block height (1 to {})",
                self.timeout,
                LOCKTIME_THRESHOLD - 1
            ));
        }
        if self.dataset_id.len() != 64 || hex::decode(&self.dataset_id).is_err() {
            return Err(format!(
                "dataset id {:?} is not 64 hex digits",
                self.dataset_id
            ));
        }
        if self.payout.is_empty() || self.payout.len() > MAX_PAYOUT_LEN {
            return Err(format!(
                "the payout address has {} characters, 1 to {MAX_PAYOUT_LEN} allowed",
                self.payout.len()
            ));
        }
        super::access::verify_service_signed(&self.service, &self.signature, self.id())
    }
}

impl JobRequest {
    /// The payout address's output script, for `network`.
    ///
    /// # Errors
    /// An address that does not parse or is for another network, in one line.
    pub fn payout_script(&self, network: Network) -> Result<bitcoin::ScriptBuf, String> {
        let a: bitcoin::Address<bitcoin::address::NetworkUnchecked> = self
            .payout
            .parse()
            .map_err(|e| format!("payout address {:?}: {e}", self.payout))?;
        let a = a
            .require_network(network)
            .map_err(|_| format!("payout address {:?} is not for {network}", self.payout))?;
        Ok(a.script_pubkey())
    }
}

/// `JOB_QUOTE`: party `party` takes the job at `fee_sat` and will reveal the preimage of
/// `key_hash` by claiming its escrow output (signed with its party key, BIP340 over
/// [`Quote::digest`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quote {
    /// The job id.
    #[serde(with = "hex32")]
    pub job: Hash32,
    /// The quoting party (1-based).
    pub party: u32,
    /// `H_i = sha256(k_i)`.
    #[serde(with = "hex32")]
    pub key_hash: Hash32,
    /// `P_i`: the party key the escrow pays (33-byte compressed, hex).
    pub party_key: String,
    /// The fee, sats: what the party is paid, net of its claim's fee.
    pub fee_sat: u64,
    /// The claim's fee the escrow output carries on top of `fee_sat`, sats: the party's claim
    /// of its escrow at its fee-rate assumption, at most [`MAX_CLAIM_FEE_SAT`].
    pub claim_fee_sat: u64,
    /// `T`, as in the request.
    pub timeout: u32,
    /// The leakage rule's `min_rows` the party plans the query under
    /// ([`crate::mpc::query::plan::LeakageRule`]).
    #[serde(default)]
    pub min_rows: u64,
    /// The queries the party answered earlier for this service on this dataset, oldest first
    /// (the leakage rule's `earlier`): at most [`MAX_EARLIER`], each at most
    /// [`MAX_QUERY_LEN`] bytes. The service plans with them to finish the gated plan the
    /// parties evaluate.
    #[serde(default)]
    pub earlier: Vec<String>,
    /// The party's signature.
    #[serde(with = "hex64")]
    pub signature: [u8; 64],
}

impl Quote {
    /// `tagged_hash("btcmpc/v2/quote", job || u32_be(party) || H_i || P_i || u64_be(fee) ||
    /// u64_be(claim_fee) || u32_be(T) || u64_be(min_rows) || u32_be(#earlier) ||
    /// (u32_be(len) || text) per earlier query)`.
    pub fn digest(&self) -> Hash32 {
        let mut m = Vec::with_capacity(32 + 4 + 32 + 66 + 8 + 8 + 4 + 8 + 4);
        m.extend_from_slice(&self.job);
        m.extend_from_slice(&self.party.to_be_bytes());
        m.extend_from_slice(&self.key_hash);
        m.extend_from_slice(self.party_key.as_bytes());
        m.extend_from_slice(&self.fee_sat.to_be_bytes());
        m.extend_from_slice(&self.claim_fee_sat.to_be_bytes());
        m.extend_from_slice(&self.timeout.to_be_bytes());
        m.extend_from_slice(&self.min_rows.to_be_bytes());
        m.extend_from_slice(&(self.earlier.len() as u32).to_be_bytes());
        for q in &self.earlier {
            m.extend_from_slice(&(q.len() as u32).to_be_bytes());
            m.extend_from_slice(q.as_bytes());
        }
        tagged_hash("btcmpc/v2/quote", &m)
    }

    /// Checks the bounds of the leakage rule the quote names.
    ///
    /// # Errors
    /// One line naming the bound.
    pub fn check_rule(&self) -> Result<(), String> {
        if self.earlier.len() > MAX_EARLIER {
            return Err(format!(
                "party {} names {} earlier queries, at most {MAX_EARLIER}",
                self.party,
                self.earlier.len()
            ));
        }
        if let Some(q) = self
            .earlier
            .iter()
            .find(|q| q.is_empty() || q.len() > MAX_QUERY_LEN)
        {
            return Err(format!(
                "party {} names an earlier query of {} bytes, 1 to {MAX_QUERY_LEN} allowed",
                self.party,
                q.len()
            ));
        }
        Ok(())
    }

    /// Checks the quote against the job, the party's roster key and the request's terms.
    ///
    /// # Errors
    /// One line naming what differs.
    pub fn verify(
        &self,
        request: &JobRequest,
        party: u32,
        party_key: &PublicKey,
    ) -> Result<(), String> {
        if self.job != request.id() {
            return Err(format!("party {party} quoted another job"));
        }
        if self.party != party {
            return Err(format!("party {party} quoted as party {}", self.party));
        }
        if self.party_key != party_key.to_string() {
            return Err(format!(
                "party {party} quoted with key {} instead of its roster key",
                self.party_key
            ));
        }
        self.check_rule()?;
        if self.claim_fee_sat > MAX_CLAIM_FEE_SAT {
            return Err(format!(
                "party {party} asks {} sat for its claim's fee, at most {MAX_CLAIM_FEE_SAT}",
                self.claim_fee_sat
            ));
        }
        if self.fee_sat != request.fee_sat || self.timeout != request.timeout {
            return Err(format!(
                "party {party} quoted {} sat until height {}, not the requested {} sat until {}",
                self.fee_sat, self.timeout, request.fee_sat, request.timeout
            ));
        }
        if !schnorr_verify(party_key, self.digest(), &self.signature) {
            return Err(format!("party {party}'s quote signature does not verify"));
        }
        Ok(())
    }
}

/// `JOB_RUN`: the masks of the job were dealt (and checked) in store session `mask_session`;
/// compute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRun {
    /// The job id.
    #[serde(with = "hex32")]
    pub job: Hash32,
    /// The store session that dealt the output masks.
    #[serde(with = "hex32")]
    pub mask_session: Hash32,
}

/// `JOB_CANCEL`: the service withdraws job `job`, quoted and not run (a party frees its place
/// among the open jobs at once instead of holding the quote until `T`). A party answers with
/// the same message once the job is cancelled, or an `ERROR` if it was run already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobCancel {
    /// The job id.
    #[serde(with = "hex32")]
    pub job: Hash32,
}

/// `RESULT`: party `party`'s sealed masked output share `c_i` and its signature on
/// `(job, i, H_i, sha256(c_i))` ([`crate::mpc::evidence::Delivery`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDelivery {
    /// The job id.
    #[serde(with = "hex32")]
    pub job: Hash32,
    /// The delivering party.
    pub party: u32,
    /// `H_i`.
    #[serde(with = "hex32")]
    pub key_hash: Hash32,
    /// `c_i`, hex.
    pub sealed: String,
    /// The signature, hex (64 bytes).
    #[serde(with = "hex64")]
    pub signature: [u8; 64],
    /// The public bit of every gate of the job's plan, in order, as the evaluation opened it
    /// to the committee (at most [`MAX_GATES`]; empty for a plan without gates).
    #[serde(default)]
    pub gates: Vec<bool>,
    /// The party's signature on [`gate_bits_encoding`] under [`GATE_BITS_TAG`], hex (64
    /// bytes; empty when there are no gates).
    #[serde(default)]
    pub gates_signature: String,
}

/// The plan of a job's `query` under the leakage rule a quote names (`min_rows`, the earlier
/// queries' texts): what every party evaluates and what the service finishes, so both sides
/// call this with the same inputs.
///
/// The rule (its cell supports, gates and differencing tests) applies to the queries that
/// select rows: a `where` on any aggregate, a `group by` or a `hist`. A query of plain
/// aggregates over every row (`sum`, `count`, `mean`, `var`, `cov`, `dot` without a filter) is
/// planned without gates: it needs no secure comparison, and its only size test is the public
/// one every party makes before quoting (the dataset holds at least `min_rows` rows). What this
/// leaves open (a product with a 0/1 column as an implicit filter, a column that is zero on all
/// but a few rows) is stated in the README.
///
/// # Errors
/// A query or earlier query that does not parse or plan, in one line.
pub fn plan_job<F: PrimeField>(
    query: &str,
    schema: &Schema,
    min_rows: u64,
    earlier: &[String],
) -> Result<Plan, String> {
    let parsed = crate::mpc::query::parse(query).map_err(|e| format!("query: {e}"))?;
    let selects_rows = parsed.group_by.is_some()
        || parsed.filters.iter().any(Option::is_some)
        || parsed
            .aggregates
            .iter()
            .any(|(a, _)| matches!(a, crate::mpc::query::Aggregate::Hist { .. }));
    if !selects_rows {
        return crate::mpc::query::plan::plan_text::<F>(query, &parsed, schema)
            .map_err(|e| format!("query: {e}"));
    }
    let earlier = earlier
        .iter()
        .map(|q| crate::mpc::query::parse(q).map_err(|e| format!("earlier query {q:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    plan_with_rule::<F>(query, &parsed, schema, &LeakageRule { min_rows, earlier })
        .map_err(|e| format!("query: {e}"))
}

/// What a party signs of the gate bits it delivers: `job || u32_be(party) || u32_be(count) ||
/// one byte (0 or 1) per gate`.
pub fn gate_bits_encoding(job: &Hash32, party: u32, gates: &[bool]) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + 8 + gates.len());
    m.extend_from_slice(job);
    m.extend_from_slice(&party.to_be_bytes());
    m.extend_from_slice(&(gates.len() as u32).to_be_bytes());
    m.extend(gates.iter().map(|b| u8::from(*b)));
    m
}

/// One escrow output of the funding transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaidOutput {
    /// The party it pays.
    pub party: u32,
    /// Its output index in the funding transaction.
    pub vout: u32,
    /// Its value, sats.
    pub sats: u64,
}

/// `JOB_PAID` from the service: the funding transaction of the job's escrow outputs, one per
/// delivering party, and the quotes of the whole delivery set (so every party can check that
/// each of them is paid at its quoted fee).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPaid {
    /// The job id.
    #[serde(with = "hex32")]
    pub job: Hash32,
    /// The funding transaction's id.
    pub funding_txid: String,
    /// The escrow outputs.
    pub outputs: Vec<PaidOutput>,
    /// The quote of every party of the delivery set.
    pub quotes: Vec<Quote>,
}

/// A party's answer to [`JobPaid`]: what it will do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPaidAnswer {
    /// The job id.
    #[serde(with = "hex32")]
    pub job: Hash32,
    /// The answering party.
    pub party: u32,
    /// `claiming` (it claims once the claim rule holds), `claimed` (with the txid), or
    /// `refused` (with the reason: it never reveals `k_i` for this funding).
    pub state: String,
    /// The claim transaction, once broadcast.
    #[serde(default)]
    pub claim_txid: Option<String>,
    /// Why it refuses.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `k_i = HMAC-SHA256(job key, job id)` with `job key = tagged_hash("btcmpc/v1/job-key",
/// party secret key)` (PROTOCOL.md, job flow step 2): the party can re-derive it after any
/// restart and never stores it.
pub fn hashlock_key(party: &Keypair, job: &Hash32) -> Hash32 {
    let job_key = tagged_hash("btcmpc/v1/job-key", &party.secret_bytes());
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(&job_key).expect("HMAC takes keys of any length");
    mac.update(job);
    mac.finalize().into_bytes().into()
}

impl Quote {
    /// The escrow output's value for this quote: the fee plus the claim's fee, sats.
    pub fn escrow_sat(&self) -> u64 {
        self.fee_sat.saturating_add(self.claim_fee_sat)
    }
}

/// The fee of a claim of `file`'s escrow output with `preimage` at `rate_sat_vb` (sat/vB): the
/// claim is built on a placeholder output and paid to a P2TR script, as a party's wallet pays
/// it.
///
/// # Errors
/// A rate that overflows; a preimage that is not the escrow's.
pub fn claim_fee(file: &ContractFile, preimage: &Hash32, rate_sat_vb: u64) -> Result<u64, String> {
    let rate = bitcoin::FeeRate::from_sat_per_vb(rate_sat_vb)
        .ok_or_else(|| format!("claim fee rate {rate_sat_vb} sat/vB overflows"))?;
    let utxo = btcmpc_contracts::Utxo {
        outpoint: bitcoin::OutPoint::null(),
        txout: bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(100_000_000),
            script_pubkey: file.compiled().script_pubkey().clone(),
        },
    };
    // A P2TR destination: OP_1 <32 bytes>.
    let mut to = vec![0x51, 0x20];
    to.extend_from_slice(&[2; 32]);
    let (_, summary) = file
        .compiled()
        .build_claim(&utxo, preimage, bitcoin::ScriptBuf::from_bytes(to), rate)
        .map_err(|e| format!("the claim of the escrow: {e}"))?;
    Ok(summary.fee.to_sat())
}

/// The escrow contract of one party in a job: `or(and(pk(P_i),sha256(H_i)),and(pk(S),
/// after(T)))` with BIP341's NUMS point as internal key, so the service and the party build
/// the same output from the quote alone.
///
/// # Errors
/// A height out of range or a contract the compiler refuses, in one line.
pub fn escrow_contract(
    network: Network,
    service: PublicKey,
    party: PublicKey,
    key_hash: &Hash32,
    timeout: u32,
) -> Result<ContractFile, String> {
    use bitcoin::hashes::Hash;
    let contract = Contract::ClaimOrRefund(ClaimOrRefund {
        receiver: party,
        sender: service,
        hash: bitcoin::hashes::sha256::Hash::from_byte_array(*key_hash),
        timeout: Height::new(timeout).map_err(|e| e.to_string())?,
        internal_key: InternalKey::Nums,
    });
    ContractFile::new(contract, network).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::Secp256k1;

    fn request(kp: &Keypair) -> JobRequest {
        let mut r = JobRequest {
            version: JOB_PROTOCOL_VERSION,
            nonce: [7; 32],
            roster: [1; 32],
            dataset_id: "ab".repeat(32),
            query: "sum(a)".into(),
            service: kp.public_key().to_string(),
            fee_sat: 1000,
            timeout: 300,
            payout: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
            signature: String::new(),
        };
        r.sign(kp);
        r
    }

    #[test]
    fn once_the_history_is_full_only_repeats_are_answered() {
        let history = |k: usize| {
            (0..k)
                .map(|i| format!("count() where id > -{i}"))
                .collect::<Vec<_>>()
        };
        // Below the bound: everything is admitted and named.
        let named = admit_query("sum(v) where id <= 41", history(MAX_EARLIER - 1)).unwrap();
        assert_eq!(named, history(MAX_EARLIER - 1));
        // At the bound: a new query is refused (it could not be compared with everything
        // released), a repeat of a released one is answered with the whole history.
        let e = admit_query("sum(v) where id <= 41", history(MAX_EARLIER)).unwrap_err();
        assert!(
            e.contains("released 16 queries") && e.contains("repeats"),
            "{e}"
        );
        let named = admit_query("count() where id > -3", history(MAX_EARLIER)).unwrap();
        assert_eq!(named, history(MAX_EARLIER));
        // A longer history (another version's records) names the most recent MAX_EARLIER.
        let named = admit_query("count() where id > -19", history(MAX_EARLIER + 4)).unwrap();
        assert_eq!(named, history(MAX_EARLIER + 4)[4..].to_vec());
    }

    #[test]
    fn a_request_verifies_only_as_signed_and_within_bounds() {
        let secp = Secp256k1::new();
        let kp = Keypair::new(&secp, &mut rand::thread_rng());
        let r = request(&kp);
        assert_eq!(r.verify(), Ok(kp.public_key()));
        let mut bad = r.clone();
        bad.query = "sum(b)".into();
        assert!(bad.verify().unwrap_err().contains("does not verify"));
        assert_ne!(bad.id(), r.id(), "the id covers the query");
        for (f, want) in [
            (
                Box::new(|r: &mut JobRequest| r.timeout = 500_000_000) as Box<dyn Fn(&mut _)>,
                "timeout 500000000",
            ),
            (Box::new(|r: &mut JobRequest| r.fee_sat = 0), "fee 0 sat"),
            (
                Box::new(|r: &mut JobRequest| r.query = "x".repeat(MAX_QUERY_LEN + 1)),
                "4097 bytes",
            ),
            (
                Box::new(|r: &mut JobRequest| r.dataset_id = "zz".into()),
                "not 64 hex",
            ),
        ] {
            let mut b = r.clone();
            f(&mut b);
            b.sign(&kp);
            assert!(b.verify().unwrap_err().contains(want), "{want}");
        }
    }

    #[test]
    fn quotes_bind_the_job_the_party_and_the_terms() {
        let secp = Secp256k1::new();
        let service = Keypair::new(&secp, &mut rand::thread_rng());
        let party = Keypair::new(&secp, &mut rand::thread_rng());
        let r = request(&service);
        let k = hashlock_key(&party, &r.id());
        assert_eq!(
            k,
            hashlock_key(&party, &r.id()),
            "derived again after a restart"
        );
        assert_ne!(k, hashlock_key(&party, &[0; 32]), "one key per job");
        let mut q = Quote {
            job: r.id(),
            party: 2,
            key_hash: bitcoin::hashes::Hash::to_byte_array(
                <bitcoin::hashes::sha256::Hash as bitcoin::hashes::Hash>::hash(&k),
            ),
            party_key: party.public_key().to_string(),
            fee_sat: r.fee_sat,
            claim_fee_sat: 300,
            timeout: r.timeout,
            min_rows: 10,
            earlier: vec!["count() where age > 65".into()],
            signature: [0; 64],
        };
        q.signature = schnorr_sign(&party, q.digest());
        assert_eq!(q.verify(&r, 2, &party.public_key()), Ok(()));
        assert!(q.verify(&r, 3, &party.public_key()).is_err());
        assert!(q.verify(&r, 2, &service.public_key()).is_err());
        let mut cheap = q.clone();
        cheap.fee_sat += 1;
        cheap.signature = schnorr_sign(&party, cheap.digest());
        assert!(cheap
            .verify(&r, 2, &party.public_key())
            .unwrap_err()
            .contains("not the requested"));
        // The leakage rule is signed: another min_rows or earlier list is another quote.
        let mut other = q.clone();
        other.earlier.clear();
        assert!(other.verify(&r, 2, &party.public_key()).is_err());
        other = q.clone();
        other.min_rows = 11;
        assert!(other.verify(&r, 2, &party.public_key()).is_err());
        // Bounded: too many earlier queries, or an empty one, are refused even when signed.
        let mut many = q.clone();
        many.earlier = vec!["sum(x)".into(); MAX_EARLIER + 1];
        many.signature = schnorr_sign(&party, many.digest());
        assert!(many
            .verify(&r, 2, &party.public_key())
            .unwrap_err()
            .contains("earlier queries"));
        many.earlier = vec![String::new()];
        many.signature = schnorr_sign(&party, many.digest());
        assert!(many.verify(&r, 2, &party.public_key()).is_err());
        // Both sides build the same escrow from the quote.
        let a = escrow_contract(
            Network::Regtest,
            service.public_key(),
            party.public_key(),
            &q.key_hash,
            r.timeout,
        )
        .unwrap();
        let b = escrow_contract(
            Network::Regtest,
            service.public_key(),
            party.public_key(),
            &q.key_hash,
            r.timeout,
        )
        .unwrap();
        assert_eq!(a.compiled().script_pubkey(), b.compiled().script_pubkey());
    }
}
