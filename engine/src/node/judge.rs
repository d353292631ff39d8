//! Judging (PROTOCOL.md, "Evidence and penalties"): evidence against a party from a job,
//! checked against the judge's own manifest and its own chain view, and the canonical slash of
//! the convicted party's bond that it earns.
//!
//! ```text
//! service -> judge  EVIDENCE  {evidence, psbt?}       the evidence file, and the slash so far
//! judge -> service  EVIDENCE  {verdict, psbt}         the canonical slash with this judge's
//!                                                     signature, or an ERROR naming why not
//! ```
//!
//! A slash PSBT travels between judges in one format, whether in these messages or in the files
//! of `party judge` and `contract slash`/`sign-psbt`: the version-1 carrier of
//! [`btcmpc_contracts::encode_carrier`]. A bare PSBT without the carrier's version field is
//! refused ([`btcmpc_contracts::decode_carrier`] says so).
//!
//! The pure part ([`verify_job_evidence`], [`slash_terms`]) takes the judge's manifest and a
//! [`ClaimOracle`] and returns a [`Verdict`]; the driver ([`judge`]) reads the chain, checks and
//! signs with the judge's wallet, and keeps a record per `(job, accused)` so the same evidence
//! never pays twice.
//!
//! Everything a judge signs is rebuilt from its own records: the committee parameters and
//! roster keys come from its manifest (never from the evidence), the claims from its chain view,
//! the bond from its manifest's outpoint followed on chain, the victim and the penalty from the
//! service-signed request, and the slash transaction from the canonical builder
//! ([`btcmpc_wallet::RoleWallet::sign_slash`] refuses any other transaction).

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, FeeRate, Network, ScriptBuf};
use btcmpc_contracts::{ContractFile, SlashTerms};
use btcmpc_wallet::{contract_status, ChainClient, ClaimRules, ContractRecord, RoleWallet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::card::tagged_hash;
use super::job::{escrow_contract, JobRequest};
use super::manifest::Manifest;
use super::store::Store;
use crate::mpc::check::{check_id, mask_check_tag};
use crate::mpc::dealing::Hash32;
use crate::mpc::echo::Equivocation;
use crate::mpc::evidence::{
    verify_equivocation, ClaimOracle, EvidenceError, Fault, PartyKey, WrongOutputShare,
};
use crate::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
use crate::mpc::round::PartyId;
use crate::mpc::shamir::Params;

/// Version of the [`JobEvidence`] file.
pub const EVIDENCE_VERSION: u32 = 1;

/// An evidence file: the job's signed request (which names the victim's payout and the fee the
/// penalty is a multiple of) and the evidence under one rule of PROTOCOL.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobEvidence {
    /// [`EVIDENCE_VERSION`].
    pub version: u32,
    /// The job's request, signed by the service.
    pub request: JobRequest,
    /// The evidence.
    pub rule: EvidenceRule,
}

/// The rule the evidence is under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceRule {
    /// The wrong-output-share rule: the accused's delivery opens to a share off the polynomial
    /// through at least `2t + 1` other deliveries, every one signed and claimed on chain.
    WrongOutputShare(WrongOutputShare),
    /// The equivocation rule: two messages the accused signed for one slot of one of the
    /// job's sessions (the mask check, the key agreement or the evaluation), with different
    /// payloads.
    Equivocation {
        /// The two signed headers.
        equivocation: Equivocation,
        /// The mask check's receipts root, hex, when the slot is in the mask check (its
        /// session id is `SHA256(mask_check_tag(job) || receipts_root)`).
        #[serde(default, with = "opt_hex32")]
        mask_receipts_root: Option<Hash32>,
    },
}

/// Serde of an optional 32-byte value as hex.
mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let mut b = [0u8; 32];
        hex::decode_to_slice(&text, &mut b).map_err(serde::de::Error::custom)?;
        Ok(Some(b))
    }
}

impl JobEvidence {
    /// The accused party (1-based), as the evidence names it.
    pub fn accused(&self) -> u32 {
        match &self.rule {
            EvidenceRule::WrongOutputShare(w) => w.accused.index.get(),
            EvidenceRule::Equivocation { equivocation, .. } => equivocation.sender(),
        }
    }

    /// The rule's name, as PROTOCOL.md's table says it.
    pub fn rule_name(&self) -> &'static str {
        match &self.rule {
            EvidenceRule::WrongOutputShare(_) => "wrong output share",
            EvidenceRule::Equivocation { .. } => "equivocation",
        }
    }

    /// Parses an evidence file, refusing other versions.
    ///
    /// # Errors
    /// [`JudgeError::Malformed`].
    pub fn from_json(text: &str) -> Result<JobEvidence, JudgeError> {
        let ev: JobEvidence =
            serde_json::from_str(text).map_err(|e| JudgeError::Malformed(e.to_string()))?;
        if ev.version != EVIDENCE_VERSION {
            return Err(JudgeError::Malformed(format!(
                "evidence version {} is not {EVIDENCE_VERSION}",
                ev.version
            )));
        }
        Ok(ev)
    }
}

/// Why a judge does not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JudgeError {
    /// The file or message does not parse.
    #[error("malformed evidence: {0}")]
    Malformed(String),
    /// The request is not the service's, or is for another committee.
    #[error("the job request: {0}")]
    Request(String),
    /// The evidence does not convict (the reason of [`WrongOutputShare::verify`]).
    #[error("the evidence does not convict party {accused}: {reason}")]
    Invalid {
        /// The accused party.
        accused: u32,
        /// Why.
        reason: EvidenceError,
    },
    /// This judge is the accused, or not a judge of the accused's bond.
    #[error("not a judge of party {accused}: {reason}")]
    NotAJudge {
        /// The accused party.
        accused: u32,
        /// Why.
        reason: String,
    },
    /// This evidence already paid its penalty.
    #[error("party {accused} was already slashed for job {job} in {txid}")]
    AlreadySlashed {
        /// The accused party.
        accused: u32,
        /// The job, hex.
        job: String,
        /// The slash transaction.
        txid: String,
    },
    /// The slash cannot be built, or the one handed in is not the canonical one.
    #[error("the slash: {0}")]
    Slash(String),
    /// The chain or the store failed; nothing was signed.
    #[error("{0}")]
    Io(String),
}

/// What valid evidence convicts, and the penalty it earns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The job.
    pub job: Hash32,
    /// The convicted party (1-based).
    pub accused: u32,
    /// The rule's name.
    pub rule: &'static str,
    /// What is wrong, in words (for example `y_3 is off the polynomial at output 0`).
    pub detail: String,
    /// The victim's output script (the request's payout).
    pub victim: ScriptBuf,
    /// The penalty: `penalty_multiplier x fee_sat` of the request.
    pub penalty: Amount,
}

/// Verifies `evidence` against this judge's `manifest` and its view of the claims on chain.
/// Pure: reads nothing but its arguments.
///
/// # Errors
/// The first reason the evidence does not convict, in one line.
pub fn verify_job_evidence(
    evidence: &JobEvidence,
    manifest: &Manifest,
    claims: &dyn ClaimOracle,
) -> Result<Verdict, JudgeError> {
    let req = &evidence.request;
    req.verify().map_err(JudgeError::Request)?;
    if req.roster != manifest.roster.id() {
        return Err(JudgeError::Request(format!(
            "for roster {}, this judge's committee is {}",
            hex::encode(req.roster),
            hex::encode(manifest.roster.id())
        )));
    }
    let job = req.id();
    let roster: Vec<PartyKey> = manifest
        .roster
        .cards
        .iter()
        .zip(PartyId::all(manifest.roster.cards.len()))
        .map(|(c, p)| PartyKey::from_compressed(&c.party_key.serialize(), p))
        .collect::<Result<_, _>>()
        .map_err(|e| JudgeError::Io(format!("the manifest's roster keys: {e}")))?;
    let params = Params::new(manifest.roster.n(), manifest.roster.params.t)
        .map_err(|e| JudgeError::Io(format!("the manifest's parameters: {e}")))?;
    let accused = evidence.accused();
    let (rule, detail) = match &evidence.rule {
        EvidenceRule::WrongOutputShare(w) => {
            if w.job_id != job {
                return Err(JudgeError::Malformed(format!(
                    "the deliveries are for job {}, the request is job {}",
                    hex::encode(w.job_id),
                    hex::encode(job)
                )));
            }
            let invalid = |reason| JudgeError::Invalid { accused, reason };
            let fault = match w.field.as_str() {
                Secp256k1Scalar::NAME => w.verify::<Secp256k1Scalar>(params, &roster, claims),
                Mersenne127::NAME => w.verify::<Mersenne127>(params, &roster, claims),
                other => {
                    return Err(JudgeError::Malformed(format!("unknown field {other:?}")));
                }
            }
            .map_err(|e| match e {
                // The chain, not the evidence: nothing is decided.
                EvidenceError::ClaimUnknown { .. } => JudgeError::Io(e.to_string()),
                e => invalid(e),
            })?;
            let detail = match fault {
                Fault::Unopenable => format!("c_{accused} does not open to a share vector"),
                Fault::WrongLength => format!("y_{accused} has the wrong number of values"),
                Fault::OffPolynomial { position } => format!(
                    "y_{accused} is off the polynomial of the other deliveries at output {position}"
                ),
            };
            (evidence.rule_name(), detail)
        }
        EvidenceRule::Equivocation {
            equivocation,
            mask_receipts_root,
        } => {
            let session = equivocation.first.job;
            let of_job = session == job
                || session == tagged_hash("btcmpc/v1/job-setup", &job)
                || mask_receipts_root
                    .is_some_and(|r| session == check_id(&mask_check_tag(&job), &r));
            if !of_job {
                return Err(JudgeError::Malformed(format!(
                    "the messages are of session {}, not of job {}",
                    hex::encode(session),
                    hex::encode(job)
                )));
            }
            verify_equivocation(equivocation, &roster)
                .map_err(|reason| JudgeError::Invalid { accused, reason })?;
            let detail = format!(
                "party {accused} signed two different messages for round {} slot {} of the job",
                equivocation.first.round, equivocation.first.slot
            );
            (evidence.rule_name(), detail)
        }
    };
    let terms = slash_terms(req, manifest)?;
    Ok(Verdict {
        job,
        accused,
        rule,
        detail,
        victim: terms.victim,
        penalty: terms.penalty.unwrap_or(Amount::ZERO),
    })
}

/// The canonical slash terms for a penalty in `request`'s job under `manifest`'s roster: the
/// victim's script (the request's payout), the penalty (`penalty_multiplier x fee_sat`, sats)
/// and the roster's slash fee rate (sat/vB). Judges and the service compute them alike.
///
/// # Errors
/// A payout for another network; a penalty or fee rate that overflows.
pub fn slash_terms(request: &JobRequest, manifest: &Manifest) -> Result<SlashTerms, JudgeError> {
    let victim = request
        .payout_script(manifest.roster.network)
        .map_err(JudgeError::Request)?;
    let penalty = request
        .fee_sat
        .checked_mul(u64::from(manifest.roster.params.penalty_multiplier))
        .filter(|p| *p <= Amount::MAX_MONEY.to_sat())
        .ok_or_else(|| JudgeError::Request("the penalty overflows".into()))?;
    let fee_rate = FeeRate::from_sat_per_vb(manifest.roster.params.slash_fee_rate)
        .ok_or_else(|| JudgeError::Io("the roster's slash fee rate overflows".into()))?;
    Ok(SlashTerms {
        victim,
        penalty: Some(Amount::from_sat(penalty)),
        fee_rate,
    })
}

/// Party `index`'s bond as a contract file, from the manifest.
///
/// # Errors
/// An unbonded roster, an index outside `1..=n`.
pub fn bond_file(manifest: &Manifest, index: u32) -> Result<ContractFile, JudgeError> {
    let bond = manifest
        .bonds
        .get((index as usize).wrapping_sub(1))
        .ok_or_else(|| JudgeError::NotAJudge {
            accused: index,
            reason: "the manifest holds no bond for this party".into(),
        })?;
    let contract = manifest
        .roster
        .bond_contract(index as usize, bond.exit)
        .map_err(|e| JudgeError::Io(e.to_string()))?;
    ContractFile::new(contract, manifest.roster.network).map_err(|e| JudgeError::Io(e.to_string()))
}

/// Tells `wallet` the accused's bond and its funding outpoint from the manifest, so the slash
/// is built from the bond's own money (followed through earlier slashes' remainders) and never
/// from another output paying the bond script.
///
/// # Errors
/// Database errors.
pub fn remember_bond(
    wallet: &RoleWallet,
    manifest: &Manifest,
    index: u32,
    file: &ContractFile,
) -> Result<(), JudgeError> {
    let bond = manifest
        .bonds
        .get((index as usize).wrapping_sub(1))
        .ok_or_else(|| JudgeError::Io(format!("the manifest holds no bond of party {index}")))?;
    let name = btcmpc_wallet::contract_name(file);
    let known = wallet
        .contract(&name)
        .map_err(|e| JudgeError::Io(e.to_string()))?;
    if known.as_ref().and_then(|r| r.funding) == Some(bond.outpoint) {
        return Ok(());
    }
    wallet
        .remember_contract(&ContractRecord {
            name,
            file: file.to_json(),
            script_pubkey: file.compiled().script_pubkey().to_hex_string(),
            funding: Some(bond.outpoint),
            amount_sat: None,
        })
        .map_err(|e| JudgeError::Io(e.to_string()))
}

/// Claims as this judge's chain view shows them: a claim of party `i` in the job is a spend,
/// with at least `min_conf` confirmations, of party `i`'s escrow output for the request (its
/// script rebuilt from the request and the roster key) whose witness reveals the key.
pub struct ChainClaims<'a> {
    chain: &'a ChainClient,
    network: Network,
    request: &'a JobRequest,
    keys: Vec<PublicKey>,
    min_conf: u32,
}

impl std::fmt::Debug for ChainClaims<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClaims")
            .field("job", &hex::encode(self.request.id()))
            .field("min_conf", &self.min_conf)
            .finish_non_exhaustive()
    }
}

impl<'a> ChainClaims<'a> {
    /// Claims of `request`'s job under `manifest`'s roster, read from `chain`.
    pub fn new(chain: &'a ChainClient, manifest: &Manifest, request: &'a JobRequest) -> Self {
        let network = manifest.roster.network;
        ChainClaims {
            chain,
            network,
            request,
            keys: manifest.roster.cards.iter().map(|c| c.party_key).collect(),
            min_conf: ClaimRules::for_network(network).min_conf.max(1),
        }
    }
}

impl ClaimOracle for ChainClaims<'_> {
    fn claim_confirmed(
        &self,
        job_id: &Hash32,
        index: PartyId,
        key: &Hash32,
    ) -> Result<bool, String> {
        // A claim of another job, or of an escrow that cannot exist (a key or timeout the
        // request does not make valid), is no claim; a chain that cannot be read is no answer.
        if *job_id != self.request.id() {
            return Ok(false);
        }
        let (Ok(service), Some(party)) = (
            self.request.service.parse::<PublicKey>(),
            self.keys.get(index.slot()),
        ) else {
            return Ok(false);
        };
        let h: Hash32 = Sha256::digest(key).into();
        let Ok(file) = escrow_contract(self.network, service, *party, &h, self.request.timeout)
        else {
            return Ok(false);
        };
        let status = contract_status(self.chain, file.compiled(), None)
            .map_err(|e| format!("the escrow of party {}: {e}", index.point()))?;
        Ok(status.outputs.iter().any(|o| {
            o.spend.as_ref().is_some_and(|s| {
                s.preimage.as_ref() == Some(key) && s.confirmations >= self.min_conf
            })
        }))
    }
}

/// What a judge sends to the service: a judge's `EVIDENCE` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeRequest {
    /// The evidence.
    pub evidence: JobEvidence,
    /// The slash PSBT with the signatures collected so far, as a version-1 carrier
    /// ([`btcmpc_contracts::encode_carrier`]), if any.
    #[serde(default)]
    pub psbt: Option<String>,
}

/// A judge's answer: the verdict and the canonical slash carrying its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeAnswer {
    /// The convicted party.
    pub accused: u32,
    /// The judging party.
    pub judge: u32,
    /// The rule.
    pub rule: String,
    /// What is wrong.
    pub detail: String,
    /// The slash PSBT with every valid signature it had plus this judge's, as a version-1
    /// carrier ([`btcmpc_contracts::encode_carrier`]: base64 and a newline).
    pub psbt: String,
    /// Valid judge signatures on it.
    pub signatures: usize,
    /// Signatures the slash needs (`k = t + 1`).
    pub needed: usize,
    /// The bond output it spends.
    pub bond_outpoint: String,
    /// The bond output's value, sats.
    pub bond_sat: u64,
    /// What the victim gets, sats.
    pub victim_sat: u64,
    /// What returns to the bond script, sats.
    pub remainder_sat: u64,
    /// The slash fee, sats.
    pub fee_sat: u64,
}

/// The slash PSBT a request carries, decoded from its version-1 carrier (nothing in it is
/// trusted: [`RoleWallet::sign_slash`] compares it with the canonical slash).
fn received_slash(req: &JudgeRequest) -> Result<Option<bitcoin::Psbt>, JudgeError> {
    req.psbt
        .as_deref()
        .map(|carrier| {
            btcmpc_contracts::decode_carrier(carrier)
                .map_err(|e| JudgeError::Malformed(format!("the slash PSBT: {e}")))
        })
        .transpose()
}

/// The store key of the judge's record for `(job, accused)`.
fn record_key(job: &Hash32, accused: u32) -> String {
    format!("slash:{}:{accused}", hex::encode(job))
}

/// Judges `req` as party `me`: verifies the evidence ([`verify_job_evidence`], claims from
/// `chain`), builds the canonical slash of the accused's bond from this judge's own chain view
/// (or checks that `req.psbt` is exactly that slash), signs it with the judge key in `wallet`,
/// and records in `store` which slash it signed for `(job, accused)`. Signing the same slash
/// again is allowed (a retry); once a slash of the bond paying the request's payout is on chain
/// (or in the mempool), the evidence has paid and every judge refuses it, whether it signed
/// the first slash or not.
///
/// # Errors
/// [`JudgeError`], naming why nothing was signed.
pub fn judge(
    chain: &ChainClient,
    wallet: &RoleWallet,
    store: &mut Store,
    manifest: &Manifest,
    me: u32,
    req: &JudgeRequest,
) -> Result<JudgeAnswer, JudgeError> {
    let accused = req.evidence.accused();
    if accused == me {
        return Err(JudgeError::NotAJudge {
            accused,
            reason: "a party does not judge itself".into(),
        });
    }
    let (tip, _) = chain.tip().map_err(|e| JudgeError::Io(e.to_string()))?;
    let window_end = req
        .evidence
        .request
        .timeout
        .saturating_add(manifest.roster.params.dispute_window);
    if tip > window_end {
        return Err(JudgeError::Request(format!(
            "the dispute window closed at height {window_end} (T + {}), the tip is {tip}",
            manifest.roster.params.dispute_window
        )));
    }
    let claims = ChainClaims::new(chain, manifest, &req.evidence.request);
    let verdict = verify_job_evidence(&req.evidence, manifest, &claims)?;
    let terms = slash_terms(&req.evidence.request, manifest)?;
    let file = bond_file(manifest, accused)?;
    remember_bond(wallet, manifest, accused, &file)?;
    let io = |e: &dyn std::fmt::Display| JudgeError::Io(e.to_string());
    let key = record_key(&verdict.job, accused);
    // The chain decides whether this evidence already paid, whoever signed: a slash of this
    // bond (confirmed or in the mempool) paying the request's payout script (fresh per job)
    // paid this job's penalty. A judge that did not sign the first slash refuses too.
    let status = contract_status(chain, file.compiled(), None).map_err(|e| io(&e))?;
    for spend in status.outputs.iter().filter_map(|o| o.spend.as_ref()) {
        let tx = chain.transaction(&spend.txid).map_err(|e| io(&e))?;
        if tx.output.iter().any(|o| o.script_pubkey == terms.victim) {
            return Err(JudgeError::AlreadySlashed {
                accused,
                job: hex::encode(verdict.job),
                txid: spend.txid.to_string(),
            });
        }
    }
    let mut psbt = match received_slash(req)? {
        Some(psbt) => psbt,
        None => {
            wallet
                .slash_psbt(chain, &file, &terms)
                .map_err(|e| JudgeError::Slash(e.to_string()))?
                .0
        }
    };
    let (_, summary) = wallet
        .sign_slash(chain, &file, &terms, &mut psbt)
        .map_err(|e| JudgeError::Slash(e.to_string()))?;
    let txid = psbt.unsigned_tx.compute_txid().to_string();
    store
        .put_job_state(&key, txid.as_bytes(), false)
        .map_err(|e| io(&e))?;
    let signatures = psbt.inputs.first().map_or(0, |i| i.tap_script_sigs.len());
    Ok(JudgeAnswer {
        accused,
        judge: me,
        rule: verdict.rule.to_string(),
        detail: verdict.detail,
        psbt: btcmpc_contracts::encode_carrier(&psbt),
        signatures,
        needed: manifest.roster.params.t + 1,
        bond_outpoint: summary.outpoint.to_string(),
        bond_sat: summary.bond.to_sat(),
        victim_sat: summary.paid.to_sat(),
        remainder_sat: summary.remainder.to_sat(),
        fee_sat: summary.fee.to_sat(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::evidence::DeliveryItem;
    use crate::mpc::sig::SigningKey;
    use crate::node::card::tests::keypair;
    use crate::node::manifest::tests::manifest;

    type F = Secp256k1Scalar;
    const PAYOUT: &str = "bcrt1p8wpt9v4frpf3tkn0srd97pksgsxc5hs52lafxwru9kgeephvs7rqjeprhg";

    fn request(m: &Manifest, payout: &str) -> JobRequest {
        let mut r = JobRequest {
            version: super::super::job::JOB_PROTOCOL_VERSION,
            nonce: [5; 32],
            roster: m.roster.id(),
            dataset_id: "cd".repeat(32),
            query: "sum(a), count()".into(),
            service: keypair(9).public_key().to_string(),
            fee_sat: 5000,
            timeout: 300,
            payout: payout.into(),
            signature: String::new(),
        };
        r.sign(&keypair(9));
        r
    }

    /// Party `i`'s delivery of `g(i)` for `g(x) = (7 + 3x, 11 + 5x)`, plus `lie` on each value.
    fn item(job: &Hash32, i: usize, lie: u64) -> DeliveryItem {
        let values: Vec<F> = [(7, 3), (11, 5)]
            .iter()
            .map(|(a, b)| F::from_u64(a + b * i as u64 + lie))
            .collect();
        let sk = SigningKey::from_bytes(&keypair(i as u8).secret_bytes()).unwrap();
        DeliveryItem::create(
            job,
            PartyId::from_wire(i as u32).unwrap(),
            &[i as u8 + 40; 32],
            &values,
            &sk,
        )
    }

    /// Evidence against `accused` (who added `lie`), the other three as witnesses.
    fn evidence(req: JobRequest, accused: usize, lie: u64) -> JobEvidence {
        let job = req.id();
        JobEvidence {
            version: EVIDENCE_VERSION,
            request: req,
            rule: EvidenceRule::WrongOutputShare(WrongOutputShare {
                field: F::NAME.into(),
                job_id: job,
                params: Params::new(4, 1).unwrap(),
                accused: item(&job, accused, lie),
                others: (1..=4)
                    .filter(|i| *i != accused)
                    .map(|i| item(&job, i, 0))
                    .collect(),
            }),
        }
    }

    fn claimed(_: &Hash32, _: PartyId, _: &Hash32) -> bool {
        true
    }

    /// The slash PSBT between judges is the version-1 carrier: a judge reads what another
    /// wrote, and refuses a bare base64 PSBT (no version field), naming why.
    #[test]
    fn the_slash_psbt_travels_as_a_carrier() {
        let m = manifest();
        let tx = bitcoin::Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![bitcoin::TxIn::default()],
            output: vec![bitcoin::TxOut::NULL],
        };
        let psbt = bitcoin::Psbt::from_unsigned_tx(tx).unwrap();
        let mut req = JudgeRequest {
            evidence: evidence(request(&m, PAYOUT), 3, 1),
            psbt: None,
        };
        assert_eq!(received_slash(&req).unwrap(), None);
        req.psbt = Some(btcmpc_contracts::encode_carrier(&psbt));
        let got = received_slash(&req).unwrap().unwrap();
        assert_eq!(got.unsigned_tx, psbt.unsigned_tx);
        // The request's JSON carries the carrier text unchanged.
        let back: JudgeRequest =
            serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
        assert_eq!(back, req);
        req.psbt = Some(psbt.to_string());
        let e = received_slash(&req).unwrap_err().to_string();
        assert!(
            e.contains("the slash PSBT") && e.contains("carrier version"),
            "{e}"
        );
    }

    #[test]
    fn valid_evidence_convicts_and_prices_the_penalty_from_the_request() {
        let m = manifest();
        let ev = evidence(request(&m, PAYOUT), 3, 1);
        let back = JobEvidence::from_json(&serde_json::to_string(&ev).unwrap()).unwrap();
        assert_eq!(back, ev, "the file round-trips");
        let v = verify_job_evidence(&ev, &m, &claimed).unwrap();
        assert_eq!(v.accused, 3);
        assert_eq!(v.penalty, Amount::from_sat(50_000), "10 x 5000 sat");
        assert_eq!(
            v.victim,
            ev.request.payout_script(Network::Regtest).unwrap(),
            "paid to the request's payout"
        );
        assert!(v.detail.contains("output 0"), "{}", v.detail);
        let terms = slash_terms(&ev.request, &m).unwrap();
        assert_eq!(terms.fee_rate, FeeRate::from_sat_per_vb(2).unwrap());
    }

    #[test]
    fn a_framing_service_convicts_nobody() {
        let m = manifest();
        // The service names honest party 1, with liar 3 among the witnesses.
        let mut ev = evidence(request(&m, PAYOUT), 3, 1);
        let EvidenceRule::WrongOutputShare(w) = &mut ev.rule else {
            unreachable!()
        };
        let pos = w.others.iter().position(|o| o.index.get() == 1).unwrap();
        std::mem::swap(&mut w.accused, &mut w.others[pos]);
        let e = verify_job_evidence(&ev, &m, &claimed).unwrap_err();
        assert!(
            matches!(
                e,
                JudgeError::Invalid {
                    accused: 1,
                    reason: EvidenceError::OthersInconsistent { .. }
                }
            ),
            "{e}"
        );
        // An honest accused with honest witnesses.
        let ev = evidence(request(&m, PAYOUT), 2, 0);
        let e = verify_job_evidence(&ev, &m, &claimed).unwrap_err();
        assert!(
            matches!(
                e,
                JudgeError::Invalid {
                    accused: 2,
                    reason: EvidenceError::NotGuilty { .. }
                }
            ),
            "{e}"
        );
        // Keys no confirmed claim revealed (the judge's chain view says no).
        let ev = evidence(request(&m, PAYOUT), 3, 1);
        let none = |_: &Hash32, _: PartyId, _: &Hash32| false;
        let e = verify_job_evidence(&ev, &m, &none).unwrap_err();
        assert!(
            matches!(
                e,
                JudgeError::Invalid {
                    reason: EvidenceError::ClaimNotConfirmed { .. },
                    ..
                }
            ),
            "{e}"
        );
        // A chain that cannot be read decides nothing: neither a conviction nor "does not
        // convict", but the judge's own failure.
        struct Unreadable;
        impl ClaimOracle for Unreadable {
            fn claim_confirmed(&self, _: &Hash32, _: PartyId, _: &Hash32) -> Result<bool, String> {
                Err("electrum server down".into())
            }
        }
        let e = verify_job_evidence(&ev, &m, &Unreadable).unwrap_err();
        assert!(
            matches!(&e, JudgeError::Io(m) if m.contains("electrum server down")),
            "{e}"
        );
    }

    #[test]
    fn evidence_outside_this_committee_or_job_is_refused() {
        let m = manifest();
        // Another roster.
        let mut req = request(&m, PAYOUT);
        req.roster = [9; 32];
        req.sign(&keypair(9));
        let e = verify_job_evidence(&evidence(req, 3, 1), &m, &claimed).unwrap_err();
        assert!(e.to_string().contains("this judge's committee"), "{e}");
        // A request edited after the service signed it (a bigger penalty).
        let mut ev = evidence(request(&m, PAYOUT), 3, 1);
        ev.request.fee_sat = 1_000_000;
        let e = verify_job_evidence(&ev, &m, &claimed).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        // Deliveries of another job under this request.
        let other = evidence(request(&m, PAYOUT), 3, 1);
        let mut req = request(&m, PAYOUT);
        req.nonce = [6; 32];
        req.sign(&keypair(9));
        let ev = JobEvidence {
            request: req,
            ..other
        };
        let e = verify_job_evidence(&ev, &m, &claimed).unwrap_err();
        assert!(matches!(e, JudgeError::Malformed(_)), "{e}");
        // A payout on another chain can never be paid.
        let ev = evidence(
            request(&m, "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"),
            3,
            1,
        );
        let e = verify_job_evidence(&ev, &m, &claimed).unwrap_err();
        assert!(e.to_string().contains("not for regtest"), "{e}");
        // Fewer than 2t + 1 witnesses.
        let mut ev = evidence(request(&m, PAYOUT), 3, 1);
        let EvidenceRule::WrongOutputShare(w) = &mut ev.rule else {
            unreachable!()
        };
        w.others.pop();
        let e = verify_job_evidence(&ev, &m, &claimed).unwrap_err();
        assert!(
            matches!(
                e,
                JudgeError::Invalid {
                    reason: EvidenceError::TooFewOthers { got: 2, need: 3 },
                    ..
                }
            ),
            "{e}"
        );
        // Another version of the file.
        let text = serde_json::to_string(&evidence(request(&m, PAYOUT), 3, 1))
            .unwrap()
            .replacen("\"version\":1", "\"version\":2", 1);
        assert!(JobEvidence::from_json(&text).is_err());
    }
}
