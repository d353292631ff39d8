//! The service's client: its key (the one owners grant) and its questions to the committee.
//!
//! In this version a service asks every party whether it may query a dataset
//! ([`Service::check_access`]); each party answers from the ACL it reads on chain itself
//! ([`super::access`]). Paid queries build on this client.

use std::time::Duration;

use bitcoin::secp256k1::{Keypair, PublicKey};
use num_bigint::BigInt;
use sha2::{Digest, Sha256};

use super::access::{AccessAnswer, AccessRequest};
use super::card::schnorr_sign;
use super::frame::{Frame, MessageType};
use super::job::{
    gate_bits_encoding, JobCancel, JobDelivery, JobPaid, JobPaidAnswer, JobRequest, JobRun, Quote,
    GATE_BITS_TAG, JOB_PROTOCOL_VERSION, MAX_GATES,
};
use super::manifest::Manifest;
use super::noise::{AllowedKeys, StaticKeypair, TransportKey};
use super::owner::{deal_checked, OwnerError, StoreOptions, StoreReport};
use super::transport::{connect, ChannelConfig};
use super::wire::{json_frame, parse_json};
use crate::mpc::csv::{FieldColumn, Schema};
use crate::mpc::dealing::Hash32;
use crate::mpc::decode::{decode_vec, DecodeVec};
use crate::mpc::evidence::{open, verify_tagged, Delivery, PartyKey, Sig, DELIVERY_TAG};
use crate::mpc::field::PrimeField;
use crate::mpc::fixed::to_signed;
use crate::mpc::query::{OutputValue, Plan};
use crate::mpc::round::PartyId;
use crate::mpc::shamir::Params;

/// A service: its signing key and its Noise static key.
#[derive(Debug, Clone)]
pub struct Service {
    key: Keypair,
    transport: StaticKeypair,
}

impl Service {
    /// A service signing with `key` (the key owners grant) and connecting with `transport`.
    pub fn new(key: Keypair, transport: StaticKeypair) -> Self {
        Service { key, transport }
    }

    /// The signed question for `dataset_id` (hex): these CSV `columns`, this multiplicative
    /// `degree`.
    pub fn access_request(
        &self,
        dataset_id: &str,
        columns: &[String],
        degree: u8,
    ) -> AccessRequest {
        let mut r = AccessRequest {
            dataset_id: dataset_id.to_string(),
            service: self.key.public_key().to_string(),
            columns: columns.to_vec(),
            degree,
            signature: String::new(),
        };
        r.signature = hex::encode(schnorr_sign(&self.key, r.digest()));
        r
    }

    /// Asks every party of `manifest` (which the caller verified on chain) the signed question;
    /// one answer per party, in party order, or why there is none (each party bounded by
    /// `timeout`).
    pub async fn check_access(
        &self,
        manifest: &Manifest,
        request: &AccessRequest,
        config: ChannelConfig,
        timeout: Duration,
    ) -> Vec<(u32, Result<AccessAnswer, String>)> {
        let parties: Vec<u32> = (1..=manifest.roster.n() as u32).collect();
        let frame = match json_frame(MessageType::ACCESS, request) {
            Ok(f) => f,
            Err(e) => return parties.iter().map(|p| (*p, Err(e.to_string()))).collect(),
        };
        let dataset = request.dataset_id.clone();
        exchange(
            &self.transport,
            manifest,
            &parties,
            vec![frame; parties.len()],
            MessageType::ACCESS,
            config,
            timeout,
            move |party, f| {
                let a: AccessAnswer = parse_json(f).map_err(|e| e.to_string())?;
                if a.party != party || a.dataset_id != dataset {
                    return Err("answered for another party or dataset".into());
                }
                Ok(a)
            },
        )
        .await
    }
}

/// Sends `frame_for(party)` to each party of `parties` and reads its answer of kind `answer`,
/// each bounded by `timeout`; `check` turns the answer into the result. One entry per party,
/// in the order of `parties`.
#[allow(clippy::too_many_arguments)]
async fn exchange<T, F>(
    transport: &StaticKeypair,
    manifest: &Manifest,
    parties: &[u32],
    frames: Vec<Frame>,
    answer: MessageType,
    config: ChannelConfig,
    timeout: Duration,
    check: F,
) -> Vec<(u32, Result<T, String>)>
where
    T: Send + 'static,
    F: Fn(u32, &Frame) -> Result<T, String> + Send + Sync + Clone + 'static,
{
    let mut tasks = Vec::new();
    for (&party, frame) in parties.iter().zip(frames) {
        let Some(card) = manifest.roster.cards.get((party as usize).wrapping_sub(1)) else {
            tasks.push(tokio::spawn(async move {
                (party, Err(format!("party {party} is not in the roster")))
            }));
            continue;
        };
        let (endpoint, key) = (card.endpoint.clone(), TransportKey(card.transport_key));
        let (me, check) = (transport.clone(), check.clone());
        tasks.push(tokio::spawn(async move {
            let ask = async {
                let mut ch = connect(&endpoint, &me, &AllowedKeys::new([key]), config)
                    .await
                    .map_err(|e| format!("unreachable: {e}"))?;
                ch.send(&frame).await.map_err(|e| e.to_string())?;
                loop {
                    let f = ch.recv_keepalive().await.map_err(|e| e.to_string())?;
                    match f.kind() {
                        MessageType::PING => continue,
                        MessageType::ERROR => {
                            return Err(String::from_utf8_lossy(f.payload())
                                .chars()
                                .take(300)
                                .collect())
                        }
                        k if k == answer => return check(party, &f),
                        other => return Err(format!("unexpected {other}")),
                    }
                }
            };
            let r = match tokio::time::timeout(timeout, ask).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            (party, r)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        match t.await {
            Ok(x) => out.push(x),
            Err(e) => out.push((0, Err(e.to_string()))),
        }
    }
    out
}

/// The schema of a job's output masks: one field column of `count` values.
pub fn mask_schema(count: usize) -> Schema {
    Schema {
        rows: count,
        columns: Vec::new(),
        fields: vec![FieldColumn {
            name: "mask".into(),
            min: 0,
            max: 0,
            validity: None,
            present_of: None,
        }],
    }
}

impl Service {
    /// The service key (the one owners grant; the escrow refund key `S`).
    pub fn key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// A signed request for `query` on `dataset_id` (hex) to the committee of roster
    /// `roster`: `fee_sat` to each party, escrow refund height `timeout` (blocks). A fresh
    /// random nonce makes it a new job.
    pub fn job_request(
        &self,
        roster: Hash32,
        dataset_id: &str,
        query: &str,
        fee_sat: u64,
        timeout: u32,
        payout: &str,
    ) -> JobRequest {
        let mut nonce = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut nonce);
        let mut r = JobRequest {
            version: JOB_PROTOCOL_VERSION,
            nonce,
            roster,
            dataset_id: dataset_id.to_string(),
            query: query.to_string(),
            service: self.key.public_key().to_string(),
            fee_sat,
            timeout,
            payout: payout.to_string(),
            signature: String::new(),
        };
        r.sign(&self.key);
        r
    }

    /// Sends `request` to every party; each answer is a quote checked against the request
    /// and the party's roster key (PROTOCOL.md, step 2), or why there is none.
    pub async fn quotes(
        &self,
        manifest: &Manifest,
        request: &JobRequest,
        config: ChannelConfig,
        timeout: Duration,
    ) -> Vec<(u32, Result<Quote, String>)> {
        let parties: Vec<u32> = (1..=manifest.roster.n() as u32).collect();
        let frame = match json_frame(MessageType::JOB_REQUEST, request) {
            Ok(f) => f,
            Err(e) => return parties.iter().map(|p| (*p, Err(e.to_string()))).collect(),
        };
        let keys: Vec<PublicKey> = manifest.roster.cards.iter().map(|c| c.party_key).collect();
        let req = request.clone();
        exchange(
            &self.transport,
            manifest,
            &parties,
            vec![frame; parties.len()],
            MessageType::JOB_QUOTE,
            config,
            timeout,
            move |party, f| {
                let q: Quote = parse_json(f).map_err(|e| e.to_string())?;
                q.verify(&req, party, &keys[party as usize - 1])?;
                Ok(q)
            },
        )
        .await
    }

    /// Deals the job's output masks (`masks[j]` for opened sum `j`) to every party and runs
    /// their check of the dealing, as a store with [`super::wire::StoreBegin::job`] set.
    ///
    /// # Errors
    /// As [`super::owner::Owner::store_shares`].
    pub async fn deal_masks<F: PrimeField>(
        &self,
        manifest: &Manifest,
        job: &Hash32,
        masks: &[F],
        options: &StoreOptions,
    ) -> Result<StoreReport, OwnerError> {
        deal_checked::<F>(
            manifest,
            &self.transport,
            &mask_schema(masks.len()),
            vec![masks.to_vec()],
            Some(*job),
            options,
            None,
        )
        .await
    }

    /// Asks `parties` to compute job `job` with the masks dealt in `mask_session`; each answer
    /// is a delivery whose signature verifies under the party's key and whose `H_i` is its
    /// quote's.
    pub async fn run(
        &self,
        manifest: &Manifest,
        quotes: &[Quote],
        mask_session: Hash32,
        config: ChannelConfig,
        timeout: Duration,
    ) -> Vec<(u32, Result<JobDelivery, String>)> {
        let parties: Vec<u32> = quotes.iter().map(|q| q.party).collect();
        let Some(job) = quotes.first().map(|q| q.job) else {
            return Vec::new();
        };
        let frame = match json_frame(MessageType::JOB_RUN, &JobRun { job, mask_session }) {
            Ok(f) => f,
            Err(e) => return parties.iter().map(|p| (*p, Err(e.to_string()))).collect(),
        };
        let roster: Vec<PublicKey> = manifest.roster.cards.iter().map(|c| c.party_key).collect();
        let quotes = quotes.to_vec();
        exchange(
            &self.transport,
            manifest,
            &parties,
            vec![frame; parties.len()],
            MessageType::RESULT,
            config,
            timeout,
            move |party, f| {
                let d: JobDelivery = parse_json(f).map_err(|e| e.to_string())?;
                check_delivery(&d, job, party, &roster, &quotes)?;
                Ok(d)
            },
        )
        .await
    }

    /// Withdraws quoted job `job` at `parties` (1-based indices): each frees its place among
    /// the open jobs. One answer per party: `Ok` once cancelled there (or cancelled before),
    /// the refusal otherwise (a job already run is not stopped).
    pub async fn cancel(
        &self,
        manifest: &Manifest,
        job: Hash32,
        parties: &[u32],
        config: ChannelConfig,
        timeout: Duration,
    ) -> Vec<(u32, Result<(), String>)> {
        let frame = match json_frame(MessageType::JOB_CANCEL, &JobCancel { job }) {
            Ok(f) => f,
            Err(e) => return parties.iter().map(|p| (*p, Err(e.to_string()))).collect(),
        };
        exchange(
            &self.transport,
            manifest,
            parties,
            vec![frame; parties.len()],
            MessageType::JOB_CANCEL,
            config,
            timeout,
            move |_, f| {
                let m: JobCancel = parse_json(f).map_err(|e| e.to_string())?;
                if m.job != job {
                    return Err("the party cancelled another job".into());
                }
                Ok(())
            },
        )
        .await
    }

    /// Sends `request` (evidence and the slash so far) to judge `party` and reads its signed
    /// slash, or why it refuses.
    ///
    /// # Errors
    /// The judge's refusal, unreachable judge, or an answer for another party.
    pub async fn judge(
        &self,
        manifest: &Manifest,
        party: u32,
        request: &super::judge::JudgeRequest,
        config: ChannelConfig,
        timeout: Duration,
    ) -> Result<super::judge::JudgeAnswer, String> {
        let frame = json_frame(MessageType::EVIDENCE, request).map_err(|e| e.to_string())?;
        let accused = request.evidence.accused();
        exchange(
            &self.transport,
            manifest,
            &[party],
            vec![frame],
            MessageType::EVIDENCE,
            config,
            timeout,
            move |party, f| {
                let a: super::judge::JudgeAnswer = parse_json(f).map_err(|e| e.to_string())?;
                if a.judge != party || a.accused != accused {
                    return Err("answered for another judge or accused".into());
                }
                Ok(a)
            },
        )
        .await
        .pop()
        .map_or_else(|| Err("no answer".into()), |(_, r)| r)
    }

    /// Tells every paid party of its funding (the escrow transaction and its outputs); one
    /// answer per party, in `paid.outputs` order.
    pub async fn paid(
        &self,
        manifest: &Manifest,
        paid: &JobPaid,
        config: ChannelConfig,
        timeout: Duration,
    ) -> Vec<(u32, Result<JobPaidAnswer, String>)> {
        let parties: Vec<u32> = paid.outputs.iter().map(|o| o.party).collect();
        let frame = match json_frame(MessageType::JOB_PAID, paid) {
            Ok(f) => f,
            Err(e) => return parties.iter().map(|p| (*p, Err(e.to_string()))).collect(),
        };
        let job = paid.job;
        exchange(
            &self.transport,
            manifest,
            &parties,
            vec![frame; parties.len()],
            MessageType::JOB_PAID,
            config,
            timeout,
            move |party, f| {
                let a: JobPaidAnswer = parse_json(f).map_err(|e| e.to_string())?;
                if a.job != job || a.party != party {
                    return Err("answered for another job or party".into());
                }
                Ok(a)
            },
        )
        .await
    }
}

/// Checks party `party`'s delivery for job `job`: its signature on `(job, i, H_i, sha256(c_i))`
/// under the party's roster key, and `H_i` equal to its quote's.
///
/// # Errors
/// One line naming what is wrong.
pub fn check_delivery(
    d: &JobDelivery,
    job: Hash32,
    party: u32,
    roster: &[PublicKey],
    quotes: &[Quote],
) -> Result<(), String> {
    if d.job != job || d.party != party {
        return Err("delivered for another job or party".into());
    }
    let quote = quotes
        .iter()
        .find(|q| q.party == party)
        .ok_or("delivered without a quote")?;
    if d.key_hash != quote.key_hash {
        return Err("delivered under another hashlock than its quote".into());
    }
    let sealed = hex::decode(&d.sealed).map_err(|_| "the sealed share is not hex".to_string())?;
    let key = roster
        .get((party as usize).wrapping_sub(1))
        .ok_or("not in the roster")?;
    let id = PartyId::from_wire(party).ok_or("party index 0")?;
    let pk = PartyKey::from_compressed(&key.serialize(), id).map_err(|e| e.to_string())?;
    let delivery = Delivery {
        job_id: job,
        index: id,
        key_hash: d.key_hash,
        ciphertext_hash: Sha256::digest(&sealed).into(),
    };
    verify_tagged(
        &pk,
        DELIVERY_TAG,
        &delivery.encoding(),
        &Sig(d.signature),
        id,
    )
    .map_err(|e| format!("the delivery signature: {e}"))?;
    if d.gates.len() > MAX_GATES {
        return Err(format!(
            "delivered {} gate bits, at most {MAX_GATES}",
            d.gates.len()
        ));
    }
    if !d.gates.is_empty() {
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&d.gates_signature, &mut sig)
            .map_err(|_| "the gate bits' signature is not 64 bytes of hex".to_string())?;
        verify_tagged(
            &pk,
            GATE_BITS_TAG,
            &gate_bits_encoding(&job, party, &d.gates),
            &Sig(sig),
            id,
        )
        .map_err(|e| format!("the gate bits' signature: {e}"))?;
    }
    Ok(())
}

/// The gate bits of a job from the parties' deliveries: for each gate, the bit at least
/// `2t + 1` parties delivered (every honest party opened the same bit inside the evaluation,
/// and at most `t` parties lie), and the parties that delivered anything else (another bit,
/// or another number of bits). `deliveries` holds `(party, gate bits)`.
///
/// # Errors
/// A gate on whose bit fewer than `2t + 1` deliveries agree (no result can be finished).
#[allow(clippy::type_complexity)]
pub fn majority_gates(
    gates: usize,
    t: usize,
    deliveries: &[(u32, &[bool])],
) -> Result<(Vec<bool>, Vec<(u32, String)>), String> {
    let mut bits = Vec::with_capacity(gates);
    for g in 0..gates {
        let ones = deliveries
            .iter()
            .filter(|(_, d)| d.len() == gates && d[g])
            .count();
        let zeros = deliveries
            .iter()
            .filter(|(_, d)| d.len() == gates && !d[g])
            .count();
        bits.push(if ones > 2 * t {
            true
        } else if zeros > 2 * t {
            false
        } else {
            return Err(format!(
                "no 2t + 1 = {} deliveries agree on gate {g}'s bit ({ones} say 1, {zeros} say 0)",
                2 * t + 1
            ));
        });
    }
    let dissent = deliveries
        .iter()
        .filter(|(_, d)| *d != &bits[..])
        .map(|(p, d)| {
            let show = |b: &[bool]| {
                b.iter()
                    .map(|x| if *x { '1' } else { '0' })
                    .collect::<String>()
            };
            (
                *p,
                format!(
                    "delivered gate bits {:?} where 2t + 1 parties delivered {:?}",
                    show(d),
                    show(&bits)
                ),
            )
        })
        .collect();
    Ok((bits, dissent))
}

/// What the service learns from the opened output shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// Every output of the plan, finished (PROTOCOL.md: the service divides by the scale).
    pub result: Vec<OutputValue>,
    /// Parties whose output share was off the polynomial of the others (Berlekamp-Welch), or
    /// did not open, ascending.
    pub culprits: Vec<PartyId>,
}

/// Opens each claimed `c_i` with its revealed `k_i`, decodes the masked outputs (naming wrong
/// shares), removes the masks and finishes the plan with the opened gate bits `gates` (one per
/// [`Plan::gates`]; an output of a closed gate is withheld). `claimed` holds
/// `(party, c_i, k_i)`.
///
/// # Errors
/// One line: too few shares, inconsistent shares (no result and no blame), a plan that does
/// not finish.
pub fn open_result<F: PrimeField>(
    params: Params,
    plan: &Plan,
    masks: &[F],
    gates: &[bool],
    job: &Hash32,
    claimed: &[(u32, Vec<u8>, Hash32)],
) -> Result<JobResult, String> {
    let mut culprits = Vec::new();
    let mut vectors: Vec<(PartyId, Vec<F>)> = Vec::new();
    for (party, sealed, k) in claimed {
        let Some(id) = PartyId::from_wire(*party) else {
            continue;
        };
        match open::<F>(job, id, k, sealed) {
            Ok(y) if y.len() == masks.len() => vectors.push((id, y)),
            // A share that does not open, or has the wrong length, is wrong.
            _ => culprits.push(id),
        }
    }
    let refs: Vec<(PartyId, &[F])> = vectors.iter().map(|(i, v)| (*i, &v[..])).collect();
    let decoded = decode_vec(params, &refs).map_err(|e| format!("decoding: {e}"))?;
    let values = match decoded {
        DecodeVec::Decoded {
            values,
            culprits: c,
        } => {
            culprits.extend(c);
            values
        }
        DecodeVec::Inconsistent { .. } => {
            return Err(
                "the output shares are inconsistent beyond what decoding corrects: no result"
                    .into(),
            )
        }
    };
    let opened: Vec<BigInt> = values
        .iter()
        .zip(masks)
        .map(|(y, m)| to_signed(*y - *m))
        .collect();
    let result = plan
        .finish_gated(&opened, gates)
        .map_err(|e| e.to_string())?;
    culprits.sort_unstable();
    culprits.dedup();
    Ok(JobResult { result, culprits })
}

#[cfg(test)]
mod tests {
    use super::majority_gates;

    #[test]
    fn the_gate_bit_is_the_one_2t_plus_1_deliveries_agree_on_and_dissenters_are_named() {
        // n = 4, t = 1: party 3 flips the second gate's bit.
        let honest = [true, false];
        let flipped = [true, true];
        let d: Vec<(u32, &[bool])> = vec![(1, &honest), (2, &honest), (3, &flipped), (4, &honest)];
        let (bits, dissent) = majority_gates(2, 1, &d).unwrap();
        assert_eq!(bits, honest);
        assert_eq!(dissent.len(), 1);
        assert_eq!(dissent[0].0, 3);
        assert!(dissent[0]
            .1
            .contains("\"11\" where 2t + 1 parties delivered \"10\""));
        // A delivery with another number of bits counts for neither bit and is named.
        let short = [true];
        let d: Vec<(u32, &[bool])> = vec![(1, &honest), (2, &honest), (3, &honest), (4, &short)];
        let (bits, dissent) = majority_gates(2, 1, &d).unwrap();
        assert_eq!(bits, honest);
        assert_eq!(dissent.iter().map(|x| x.0).collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn without_2t_plus_1_agreeing_deliveries_no_result_is_finished() {
        // Two say 1 and two say 0 (or only three delivered, one of them dissenting).
        let one = [true];
        let zero = [false];
        let split: Vec<(u32, &[bool])> = vec![(1, &one), (2, &one), (3, &zero), (4, &zero)];
        let e = majority_gates(1, 1, &split).unwrap_err();
        assert!(
            e.contains("no 2t + 1 = 3 deliveries agree on gate 0's bit (2 say 1, 2 say 0)"),
            "{e}"
        );
        let three: Vec<(u32, &[bool])> = vec![(1, &one), (2, &one), (3, &zero)];
        assert!(majority_gates(1, 1, &three).is_err());
        // t = 2 (n = 7): five must agree.
        let seven: Vec<(u32, &[bool])> = (1..=7)
            .map(|p| (p, if p <= 5 { &one[..] } else { &zero[..] }))
            .collect();
        assert_eq!(majority_gates(1, 2, &seven).unwrap().0, vec![true]);
        assert!(majority_gates(1, 2, &seven[1..]).is_err());
    }
}
