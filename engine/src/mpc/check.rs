//! The parties' batch degree check of a dealing, with BGW complaint resolution.
//!
//! After every party has signed a receipt for its shares ([`crate::mpc::dealing`]), the
//! challenge coefficients are derived from the receipts root:
//! `c = expand(tag, SHA256(tag || receipts_root))` ([`Challenge::new`]), one per shared value.
//! Party `i` opens `o_i = mask_i + sum_j c_j * share_ij` ([`Challenge::opening`]); the openings
//! are echo-broadcast and must lie on one polynomial of degree at most `t`
//! ([`verify_openings`]).
//!
//! **Nothing leaks.** The opened polynomial is `r(x) + sum_j c_j f_j(x)` where `r` is the
//! mask's polynomial: uniformly random of degree `t`, dealt for this check and used once. So the
//! openings are uniformly random points of a degree-`t` polynomial, independent of the data.
//!
//! **Soundness.** If some party's shares are not on degree-`t` polynomials, the openings are
//! off with probability at least `1 - 1/p` over independent coefficients; PROTOCOL.md states the
//! conservative bound `m/p` for `m` values (`m <= 2^40` gives below `2^-86` even in the
//! 127-bit field). The owner cannot choose its shares after seeing the coefficients, and no
//! party can choose its vector after seeing them, because the coefficients are derived from
//! the signed receipts, which fix every share vector first.
//!
//! **Complaints (BGW).** If the openings are not on one polynomial, the decoder
//! ([`crate::mpc::decode`]) finds the polynomial that at least `2t + 1` openings agree on and the
//! parties whose openings are off it. The owner reveals exactly those parties' share vectors
//! (which reveals only those parties' own shares, at most `t` of them: nothing about the data).
//! For each: if the revealed vector does not hash to the party's signed receipt, or is missing,
//! the owner is at fault; if the opening recomputed from it differs from what the party opened,
//! the party lied and is named ([`Resolution`]`.liars`), otherwise its shares really are off the
//! polynomial and the owner dealt inconsistent shares: the store is refused.
//!
//! The same check serves the service's output masks, with [`mask_check_tag`] as the tag.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::debug;

use super::dealing::{Hash32, PartyShares};
use super::decode::{Decode, Decoder};
use super::field::{Expander, PrimeField};
use super::shamir::{on_one_polynomial, Params, ShamirError};
use std::collections::BTreeSet;

use crate::mpc::sig::{SigningKey, VerifyingKey};

use super::dealing::receipts_root;
use super::echo::{Broadcast, Equivocation};
use super::round::{Machine, Message, Outgoing, PartyId, RoundError, RoundId, Step};

/// Tag of the store check's challenge.
pub const STORE_CHECK_TAG: &[u8] = b"btcmpc/v1/store-check";
/// Prefix of the tag of an output-mask check; the job id follows.
pub const MASK_CHECK_TAG: &[u8] = b"btcmpc/v1/mask-check";

/// The tag of the check of the service's output masks in job `job_id`.
pub fn mask_check_tag(job_id: &Hash32) -> Vec<u8> {
    let mut t = MASK_CHECK_TAG.to_vec();
    t.extend_from_slice(job_id);
    t
}

/// `SHA256(tag || receipts_root)`: the seed of the challenge, and the identifier of the check.
///
/// Parties echo-broadcast their openings with this value as the job identifier of the signed
/// header ([`crate::mpc::echo::SignedHeader`]), so a signed opening is bound to one check and
/// can serve as evidence ([`crate::mpc::evidence::StoreCheckLie`]).
pub fn check_id(tag: &[u8], receipts_root: &Hash32) -> Hash32 {
    Sha256::new()
        .chain_update(tag)
        .chain_update(receipts_root)
        .finalize()
        .into()
}

/// Errors of the batch check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A party's shares do not have as many values as the challenge.
    #[error("party {index} holds {got} shared values, the challenge has {expected}")]
    LengthMismatch {
        /// The party whose shares these are.
        index: PartyId,
        /// Its number of values.
        got: usize,
        /// The challenge's.
        expected: usize,
    },
    /// Too few openings to check anything.
    #[error("{got} openings received, at least {need} needed")]
    TooFewOpenings {
        /// Openings received.
        got: usize,
        /// `2t + 1`.
        need: usize,
    },
    /// Receipts are missing for a party whose opening is off.
    #[error("no receipt for party {index}")]
    MissingReceipt {
        /// The party (the first one without a receipt).
        index: PartyId,
    },
    /// Bad indices.
    #[error(transparent)]
    Shamir(#[from] ShamirError),
    /// Revealed vectors were handed to a check that has no complaint pending.
    #[error("no complaint is pending: nothing to reveal")]
    NoComplaint,
}

/// The challenge coefficients of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<F> {
    coefficients: Vec<F>,
}

impl<F: PrimeField> Challenge<F> {
    /// `m` coefficients `expand(tag, SHA256(tag || receipts_root))`.
    pub fn new(tag: &[u8], receipts_root: &Hash32, m: usize) -> Self {
        let seed = check_id(tag, receipts_root);
        let mut e = Expander::new(tag, &seed);
        Self {
            coefficients: (0..m).map(|_| e.next_element()).collect(),
        }
    }

    /// The coefficients, in the order of the values (column after column).
    pub fn coefficients(&self) -> &[F] {
        &self.coefficients
    }

    /// The opening `mask + sum c_j share_j` of one party's shares.
    ///
    /// # Errors
    /// [`CheckError::LengthMismatch`] if the shares hold a different number of values.
    pub fn opening(&self, shares: &PartyShares<F>) -> Result<F, CheckError> {
        let got = shares.len();
        if got != self.coefficients.len() {
            return Err(CheckError::LengthMismatch {
                index: shares.index,
                got,
                expected: self.coefficients.len(),
            });
        }
        let mut acc = shares.mask;
        let mut at = 0;
        for col in &shares.columns {
            acc += F::dot(&self.coefficients[at..at + col.len()], col);
            at += col.len();
        }
        Ok(acc)
    }
}

/// Result of checking the openings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckOutcome {
    /// All openings lie on one degree-`t` polynomial: the dealing is accepted.
    Accepted,
    /// These parties' openings are off the polynomial `2t + 1` others agree on: the owner must
    /// reveal their share vectors ([`resolve_complaints`]).
    Complaint {
        /// The parties whose openings are off, ascending.
        off: Vec<PartyId>,
    },
    /// No polynomial is agreed on by `2t + 1` openings within the decoding radius: the dealing
    /// is refused and nobody is named (with `n >= 3t + 1` and at most `t` faulty parties this
    /// means the owner dealt inconsistent shares).
    Refused,
}

/// Checks the echo-broadcast openings `(party, o_i)` (party `i`'s opening is the point
/// `(i, o_i)`); absent parties are erasures.
///
/// # Errors
/// Index errors (a party above `n`, a party twice); [`CheckError::TooFewOpenings`] with fewer
/// than `2t + 1` openings.
pub fn verify_openings<F: PrimeField>(
    params: Params,
    openings: &[(PartyId, F)],
) -> Result<CheckOutcome, CheckError> {
    params.check_indices(openings.iter().map(|o| o.0.point()))?;
    let need = 2 * params.t() + 1;
    if openings.len() < need {
        return Err(CheckError::TooFewOpenings {
            got: openings.len(),
            need,
        });
    }
    let parties: Vec<PartyId> = openings.iter().map(|o| o.0).collect();
    let ys: Vec<F> = openings.iter().map(|o| o.1).collect();
    Ok(match Decoder::new(params, &parties)?.decode(&ys)? {
        Decode::Decoded { culprits, .. } if culprits.is_empty() => CheckOutcome::Accepted,
        Decode::Decoded { culprits, .. } => CheckOutcome::Complaint { off: culprits },
        Decode::Inconsistent => CheckOutcome::Refused,
    })
}

/// Why a dealing was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Refusal {
    /// The openings could not be resolved (see [`CheckOutcome::Refused`]).
    Unresolvable,
    /// The owner did not reveal the vector of a complaining party.
    NotRevealed {
        /// The complaining party.
        index: PartyId,
    },
    /// The revealed vector does not hash to the party's signed receipt.
    RevealMismatch {
        /// The complaining party.
        index: PartyId,
    },
    /// The revealed vector does not have the challenge's shape.
    RevealShape {
        /// The complaining party.
        index: PartyId,
    },
    /// These parties opened exactly what their signed vectors give, yet are off the
    /// polynomial: the owner dealt inconsistent shares.
    Inconsistent {
        /// The parties, ascending.
        parties: Vec<PartyId>,
    },
}

/// Result of complaint resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resolution {
    /// The dealing is accepted; `liars` opened values that disagree with the vectors they
    /// signed for (named, slashable).
    Accepted {
        /// Parties that lied, ascending.
        liars: Vec<PartyId>,
    },
    /// The dealing is refused with the owner at fault; `liars` are named all the same.
    Refused {
        /// Why.
        reason: Refusal,
        /// Parties that lied, ascending.
        liars: Vec<PartyId>,
    },
}

/// BGW complaint resolution. `receipts` holds the receipt hash every party signed
/// `(party, hash)`, `openings` the echo-broadcast openings `(party, o_i)`, `revealed` the
/// vectors the owner revealed for the complaining parties, `context` the receipt context of
/// [`PartyShares::receipt_hash`].
///
/// # Errors
/// As [`verify_openings`]; [`CheckError::MissingReceipt`] if a complaining party has no
/// receipt (the caller only starts a check once every receipt is in).
pub fn resolve_complaints<F: PrimeField>(
    params: Params,
    challenge: &Challenge<F>,
    context: &Hash32,
    receipts: &[(PartyId, Hash32)],
    openings: &[(PartyId, F)],
    revealed: &[PartyShares<F>],
) -> Result<Resolution, CheckError> {
    let off = match verify_openings(params, openings)? {
        CheckOutcome::Accepted => return Ok(Resolution::Accepted { liars: Vec::new() }),
        CheckOutcome::Refused => {
            return Ok(Resolution::Refused {
                reason: Refusal::Unresolvable,
                liars: Vec::new(),
            })
        }
        CheckOutcome::Complaint { off } => off,
    };
    let mut liars = Vec::new();
    let mut truly_off = Vec::new();
    // The openings with each liar's replaced by the one its signed vector gives, as points.
    let mut corrected: Vec<(usize, F)> = openings.iter().map(|(p, o)| (p.point(), *o)).collect();
    for &i in &off {
        let receipt = receipts
            .iter()
            .find(|r| r.0 == i)
            .ok_or(CheckError::MissingReceipt { index: i })?
            .1;
        let Some(vector) = revealed.iter().find(|v| v.index == i) else {
            return Ok(Resolution::Refused {
                reason: Refusal::NotRevealed { index: i },
                liars,
            });
        };
        if vector.receipt_hash(context) != receipt {
            return Ok(Resolution::Refused {
                reason: Refusal::RevealMismatch { index: i },
                liars,
            });
        }
        let Ok(recomputed) = challenge.opening(vector) else {
            return Ok(Resolution::Refused {
                reason: Refusal::RevealShape { index: i },
                liars,
            });
        };
        let slot = corrected
            .iter_mut()
            .find(|o| o.0 == i.point())
            .expect("an off party has an opening");
        if slot.1 == recomputed {
            truly_off.push(i);
        } else {
            debug!(target: "btcmpc_engine::mpc::check", party = i.get(), "opening disagrees with the signed vector");
            liars.push(i);
            slot.1 = recomputed;
        }
    }
    if !truly_off.is_empty() {
        return Ok(Resolution::Refused {
            reason: Refusal::Inconsistent { parties: truly_off },
            liars,
        });
    }
    if on_one_polynomial(&corrected, params.t())? {
        Ok(Resolution::Accepted { liars })
    } else {
        // A liar whose true opening is off as well: the owner dealt it inconsistent shares.
        Ok(Resolution::Refused {
            reason: Refusal::Inconsistent {
                parties: liars.clone(),
            },
            liars,
        })
    }
}

/// Round number of the store check's signed openings.
pub const STORE_CHECK_ROUND: u32 = 1 << 21;
/// Round number of the mask check's signed openings.
pub const MASK_CHECK_ROUND: u32 = (1 << 21) + 1;

/// What one party brings to a batch check run as a machine ([`CheckMachine`]).
#[derive(Debug, Clone)]
pub struct CheckInput<F> {
    /// Committee parameters.
    pub params: Params,
    /// This party.
    pub me: PartyId,
    /// The challenge tag ([`STORE_CHECK_TAG`] or [`mask_check_tag`]).
    pub tag: Vec<u8>,
    /// The round number of the signed openings ([`STORE_CHECK_ROUND`], [`MASK_CHECK_ROUND`]).
    pub round: u32,
    /// The receipt context ([`PartyShares::receipt_hash`]).
    pub context: Hash32,
    /// The receipt hash every party signed, `receipts[i - 1]` for party `i`.
    pub receipts: Vec<Hash32>,
    /// This party's shares.
    pub shares: PartyShares<F>,
    /// The committee's keys, `keys[i - 1]` for party `i`.
    pub keys: Vec<VerifyingKey>,
    /// Parties excluded or convicted earlier: neither waited for nor heard.
    pub ignored: BTreeSet<PartyId>,
}

/// What a batch check ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutput<F> {
    /// Accepted or refused, and the liars.
    pub resolution: Resolution,
    /// Equivocation evidence gathered during the opening's echo-broadcast.
    pub evidence: Vec<Equivocation>,
    /// The openings used, `(party, opening)`.
    pub openings: Vec<(PartyId, F)>,
}

/// A complaint waiting for the dealer: the parties off, the openings, the evidence.
type Pending<F> = (Vec<PartyId>, Vec<(PartyId, F)>, Vec<Equivocation>);

/// One party's side of a batch check with complaint resolution, as a round-based machine.
///
/// Rounds: the opening is echo-broadcast ([`Broadcast`], job [`check_id`], round
/// `input.round`); the machine then checks the openings. If some are off the polynomial it
/// waits for the dealer: [`CheckMachine::complaint`] names the parties whose vectors the dealer
/// must reveal, and the driver hands them over with [`CheckMachine::reveal`] (a dealer that
/// reveals nothing: call it with an empty list, the dealing is refused). What a driver persists:
/// the [`CheckInput`], the signing key, and the messages delivered.
pub struct CheckMachine<F> {
    input: CheckInput<F>,
    signer: SigningKey,
    challenge: Challenge<F>,
    broadcast: Broadcast<F>,
    waiting: Option<Pending<F>>,
    lie: Option<F>,
    done: bool,
}

impl<F> std::fmt::Debug for CheckMachine<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckMachine")
            .field("me", &self.input.me)
            .field("complaint", &self.waiting.as_ref().map(|w| &w.0))
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<F: PrimeField> CheckMachine<F> {
    /// A check of `input.shares` signed with `signer`.
    ///
    /// # Errors
    /// [`RoundError::BadParty`] if `input.me` is outside the committee;
    /// [`RoundError::Malformed`]-free: a receipt count that is not `n` is
    /// [`CheckError::MissingReceipt`].
    pub fn new(input: CheckInput<F>, signer: SigningKey) -> Result<Self, RoundError> {
        let n = input.params.n();
        PartyId::new(input.me.point(), n)?;
        if input.receipts.len() != n || input.keys.len() != n {
            let first_missing = input.receipts.len().min(input.keys.len()) + 1;
            return Err(CheckError::MissingReceipt {
                index: PartyId::from_wire(u32::try_from(first_missing).unwrap_or(u32::MAX))
                    .expect("a count plus one is not 0"),
            }
            .into());
        }
        let root = receipts_root(&input.receipts);
        let challenge = Challenge::new(&input.tag, &root, input.shares.len());
        let broadcast = Broadcast::new(
            input.me,
            check_id(&input.tag, &root),
            input.round,
            input.keys.clone(),
            input.ignored.clone(),
        );
        Ok(CheckMachine {
            input,
            signer,
            challenge,
            broadcast,
            waiting: None,
            lie: None,
            done: false,
        })
    }

    /// Fault injection for tests and demos: adds `delta` to this party's opening before it is
    /// signed, its own view included (a lying check opening: the evil twin of the in-process
    /// committee, and the party daemon's `wrong-opening` fault, which only regtest allows).
    pub fn lie_in_opening(&mut self, delta: F) {
        self.lie = Some(delta);
    }

    /// The check's identifier (the job of its signed openings).
    pub fn id(&self) -> Hash32 {
        check_id(&self.input.tag, &receipts_root(&self.input.receipts))
    }

    /// The parties whose vectors the dealer must reveal, while the machine waits for them.
    pub fn complaint(&self) -> Option<&[PartyId]> {
        self.waiting.as_ref().map(|w| &w.0[..])
    }

    /// The dealer's revealed vectors for the parties of [`CheckMachine::complaint`]: resolves
    /// the complaints and finishes.
    ///
    /// # Errors
    /// [`RoundError::Check`] if the check cannot run; [`RoundError::Setup`]-free.
    pub fn reveal(&mut self, revealed: &[PartyShares<F>]) -> Result<CheckOutput<F>, RoundError> {
        let (_, openings, evidence) = self
            .waiting
            .take()
            .ok_or(RoundError::Check(CheckError::NoComplaint))?;
        self.resolve(openings, evidence, revealed)
    }

    fn resolve(
        &mut self,
        openings: Vec<(PartyId, F)>,
        evidence: Vec<Equivocation>,
        revealed: &[PartyShares<F>],
    ) -> Result<CheckOutput<F>, RoundError> {
        let receipts: Vec<(PartyId, Hash32)> = PartyId::all(self.input.params.n())
            .zip(self.input.receipts.iter().copied())
            .collect();
        let resolution = resolve_complaints(
            self.input.params,
            &self.challenge,
            &self.input.context,
            &receipts,
            &openings,
            revealed,
        )?;
        self.done = true;
        Ok(CheckOutput {
            resolution,
            evidence,
            openings,
        })
    }

    /// After the broadcast: the openings, then acceptance or a complaint.
    fn after(&mut self, send: Vec<Outgoing<F>>) -> Result<Step<F, CheckOutput<F>>, RoundError> {
        let Some(out) = self
            .broadcast
            .output()
            .filter(|_| self.waiting.is_none() && !self.done)
        else {
            return Ok(Step::send(send));
        };
        let convicted: BTreeSet<u32> = out.evidence.iter().map(Equivocation::sender).collect();
        let openings: Vec<(PartyId, F)> = out
            .values
            .iter()
            .filter(|(p, v)| v.len() == 1 && !convicted.contains(&p.get()))
            .map(|(p, v)| (*p, v[0]))
            .collect();
        if let CheckOutcome::Complaint { off } = verify_openings(self.input.params, &openings)? {
            self.waiting = Some((off, openings, out.evidence));
            return Ok(Step::send(send));
        }
        let output = self.resolve(openings, out.evidence, &[])?;
        Ok(Step {
            send,
            output: Some(output),
        })
    }
}

impl<F: PrimeField> Machine<F> for CheckMachine<F> {
    type Output = CheckOutput<F>;

    fn start(&mut self) -> Result<Step<F, CheckOutput<F>>, RoundError> {
        let opening = self.challenge.opening(&self.input.shares)? + self.lie.unwrap_or(F::ZERO);
        let send = self.broadcast.start(&self.signer, vec![opening]);
        self.after(send)
    }

    fn handle(
        &mut self,
        from: PartyId,
        msg: Message<F>,
    ) -> Result<Step<F, CheckOutput<F>>, RoundError> {
        if self.done || self.broadcast.is_done() {
            return Err(RoundError::Finished {
                from,
                kind: msg.kind(),
            });
        }
        let send = self.broadcast.handle(from, msg)?;
        self.after(send)
    }

    fn deadline(&mut self, round: RoundId) -> Result<Step<F, CheckOutput<F>>, RoundError> {
        let send = self.broadcast.deadline(round);
        self.after(send)
    }

    fn waiting(&self) -> Option<RoundId> {
        self.broadcast.waiting()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::dealing::{deal, receipts_root};
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    fn p(i: u32) -> PartyId {
        PartyId::from_wire(i).expect("test parties are 1-based")
    }

    struct Run<F> {
        params: Params,
        parties: Vec<PartyShares<F>>,
        ctx: Hash32,
    }

    fn setup<F: PrimeField>(n: usize, t: usize, rows: usize, rng: &mut StdRng) -> Run<F> {
        let params = Params::new(n, t).unwrap();
        let cols: Vec<Vec<F>> = (0..2)
            .map(|_| {
                (0..rows)
                    .map(|_| F::from_u64(rng.gen_range(0..1000)))
                    .collect()
            })
            .collect();
        Run {
            params,
            parties: deal(params, &cols, rng),
            ctx: [9u8; 32],
        }
    }

    impl<F: PrimeField> Run<F> {
        fn receipts(&self) -> Vec<(PartyId, Hash32)> {
            self.parties
                .iter()
                .map(|p| (p.index, p.receipt_hash(&self.ctx)))
                .collect()
        }
        fn challenge(&self) -> Challenge<F> {
            let hashes: Vec<Hash32> = self.receipts().iter().map(|r| r.1).collect();
            Challenge::new(
                STORE_CHECK_TAG,
                &receipts_root(&hashes),
                self.parties[0].len(),
            )
        }
        fn openings(&self, ch: &Challenge<F>) -> Vec<(PartyId, F)> {
            self.parties
                .iter()
                .map(|p| (p.index, ch.opening(p).unwrap()))
                .collect()
        }
        fn resolve(&self, ch: &Challenge<F>, openings: &[(PartyId, F)]) -> Resolution {
            let off = match verify_openings(self.params, openings).unwrap() {
                CheckOutcome::Complaint { off } => off,
                _ => Vec::new(),
            };
            let revealed: Vec<PartyShares<F>> =
                off.iter().map(|i| self.parties[i.slot()].clone()).collect();
            resolve_complaints(
                self.params,
                ch,
                &self.ctx,
                &self.receipts(),
                openings,
                &revealed,
            )
            .unwrap()
        }
    }

    fn honest<F: PrimeField>(seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let run = setup::<F>(4, 1, 50, &mut rng);
        let ch = run.challenge();
        let op = run.openings(&ch);
        assert_eq!(
            verify_openings(run.params, &op).unwrap(),
            CheckOutcome::Accepted
        );
        assert_eq!(
            run.resolve(&ch, &op),
            Resolution::Accepted { liars: vec![] }
        );
    }

    /// The owner puts one share off its polynomial in a random position, before the receipts.
    fn cheating_owner<F: PrimeField>(n: usize, t: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut run = setup::<F>(n, t, 30, &mut rng);
        let victim = rng.gen_range(0..n);
        let col = rng.gen_range(0..2);
        let row = rng.gen_range(0..30);
        let delta = F::from_u64(rng.gen_range(1..u64::MAX));
        if rng.gen_bool(0.2) {
            // The mask share itself off its polynomial.
            run.parties[victim].mask += delta;
        } else {
            run.parties[victim].columns[col][row] += delta;
        }
        let who = run.parties[victim].index;
        let ch = run.challenge();
        let op = run.openings(&ch);
        assert_eq!(
            verify_openings(run.params, &op).unwrap(),
            CheckOutcome::Complaint { off: vec![who] }
        );
        assert_eq!(
            run.resolve(&ch, &op),
            Resolution::Refused {
                reason: Refusal::Inconsistent { parties: vec![who] },
                liars: vec![]
            }
        );
        // The owner cannot shift blame by revealing another vector: it must hash to the receipt.
        let mut forged = run.parties[victim].clone();
        forged.columns[col][row] = F::ZERO;
        let r =
            resolve_complaints(run.params, &ch, &run.ctx, &run.receipts(), &op, &[forged]).unwrap();
        assert_eq!(
            r,
            Resolution::Refused {
                reason: Refusal::RevealMismatch { index: who },
                liars: vec![]
            }
        );
        let r = resolve_complaints(run.params, &ch, &run.ctx, &run.receipts(), &op, &[]).unwrap();
        assert_eq!(
            r,
            Resolution::Refused {
                reason: Refusal::NotRevealed { index: who },
                liars: vec![]
            }
        );
    }

    /// Up to t parties open wrong values; they are named and nobody else; the store stands. The
    /// openings arrive in random order, so a party named by its place among them is caught.
    fn lying_parties<F: PrimeField>(n: usize, t: usize, liars: usize, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let run = setup::<F>(n, t, 20, &mut rng);
        let ch = run.challenge();
        let mut op = run.openings(&ch);
        let mut bad = Vec::new();
        while bad.len() < liars {
            let i = PartyId::new(rng.gen_range(1..=n), n).unwrap();
            if !bad.contains(&i) {
                bad.push(i);
                op[i.slot()].1 += F::ONE;
            }
        }
        bad.sort_unstable();
        // Withhold some openings too, as long as the faults stay within t.
        let withheld = if liars < t && n > 2 * t + 1 { 1 } else { 0 };
        let mut op: Vec<(PartyId, F)> = op
            .into_iter()
            .filter(|o| bad.contains(&o.0) || o.0.point() > withheld)
            .collect();
        op.shuffle(&mut rng);
        assert_eq!(run.resolve(&ch, &op), Resolution::Accepted { liars: bad });
    }

    #[test]
    fn honest_dealing_is_accepted() {
        honest::<Secp256k1Scalar>(1);
        honest::<Mersenne127>(2);
    }

    #[test]
    fn liar_with_inconsistent_shares() {
        // The owner deals party 2 a bad share and party 2 lies on top: both are at fault.
        let mut rng = StdRng::seed_from_u64(6);
        let mut run = setup::<Mersenne127>(4, 1, 10, &mut rng);
        run.parties[1].columns[0][0] += Mersenne127::ONE;
        let ch = run.challenge();
        let mut op = run.openings(&ch);
        op[1].1 += Mersenne127::from_u64(3);
        assert_eq!(
            run.resolve(&ch, &op),
            Resolution::Refused {
                reason: Refusal::Inconsistent {
                    parties: vec![p(2)]
                },
                liars: vec![p(2)]
            }
        );
    }

    #[test]
    fn errors_are_typed() {
        let mut rng = StdRng::seed_from_u64(5);
        let run = setup::<Mersenne127>(4, 1, 5, &mut rng);
        let ch = Challenge::<Mersenne127>::new(STORE_CHECK_TAG, &[0; 32], 3);
        assert_eq!(
            ch.opening(&run.parties[0]),
            Err(CheckError::LengthMismatch {
                index: p(1),
                got: 10,
                expected: 3
            })
        );
        let one = Mersenne127::ONE;
        assert_eq!(
            verify_openings(run.params, &[(p(1), one), (p(2), one)]),
            Err(CheckError::TooFewOpenings { got: 2, need: 3 })
        );
        assert!(matches!(
            verify_openings(run.params, &[(p(1), one), (p(1), one), (p(2), one)]),
            Err(CheckError::Shamir(ShamirError::DuplicateIndex { index: 1 }))
        ));
        // The challenge depends on the tag and the root.
        let a = Challenge::<Mersenne127>::new(STORE_CHECK_TAG, &[0; 32], 2);
        let b = Challenge::<Mersenne127>::new(&mask_check_tag(&[0; 32]), &[0; 32], 2);
        let c = Challenge::<Mersenne127>::new(STORE_CHECK_TAG, &[1; 32], 2);
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    /// A refusal's `Debug` text is what a party sends its owner as the reason of a refused
    /// store (`STORE_DONE`), and the resolution goes into logs: parties read as bare numbers.
    #[test]
    fn refusals_name_parties_by_number() {
        assert_eq!(
            format!("{:?}", Refusal::NotRevealed { index: p(3) }),
            "NotRevealed { index: 3 }"
        );
        assert_eq!(
            format!(
                "{:?}",
                Refusal::Inconsistent {
                    parties: vec![p(2), p(5)]
                }
            ),
            "Inconsistent { parties: [2, 5] }"
        );
        assert_eq!(
            serde_json::to_string(&Resolution::Accepted {
                liars: vec![p(1), p(4)]
            })
            .unwrap(),
            r#"{"Accepted":{"liars":[1,4]}}"#
        );
        assert!(serde_json::from_str::<Resolution>(r#"{"Accepted":{"liars":[0]}}"#).is_err());
        assert_eq!(
            CheckError::MissingReceipt { index: p(7) }.to_string(),
            "no receipt for party 7"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        #[test]
        fn owner_with_one_bad_share_is_refused(n in 4usize..8, seed in any::<u64>()) {
            let t = (n - 1) / 3;
            cheating_owner::<Secp256k1Scalar>(n, t, seed);
            cheating_owner::<Mersenne127>(n, t, seed);
        }

        #[test]
        fn lying_parties_are_named_exactly(n in 4usize..8, l in 0usize..3, seed in any::<u64>()) {
            let t = (n - 1) / 3;
            lying_parties::<Secp256k1Scalar>(n, t, l.min(t), seed);
            lying_parties::<Mersenne127>(n, t, l.min(t), seed);
        }
    }
}
