//! An in-process committee: `n` parties in one process, each honest or an evil twin, running
//! setup -> store -> check -> query -> decode end to end. The main test fixture of the
//! cryptography, and the engine of `btcmpc bench engine`'s product figures.
//!
//! Phases (all messages are field vectors in queues; nothing touches a socket or a clock):
//!
//! 1. **Setup.** Signing keys; PRSS key agreement ([`crate::mpc::prss::KeyAgreement`]) with
//!    signed contributions and echoed key confirmations. A member that sends conflicting
//!    contributions is caught by the confirmations, named by the two signed contributions
//!    ([`Equivocation`]) and excluded; the agreement is re-run with its contributions fixed to
//!    zero (the key of the all-honest set is still made of honest contributions only).
//! 2. **Store.** The owner deals the dataset plus a check mask ([`dealing::deal`]); every party
//!    hashes its shares into a receipt; the parties open the batch check with the challenge
//!    derived from the receipts root, echo-broadcast ([`crate::mpc::echo`]), and run BGW
//!    complaint resolution ([`check::resolve_complaints`]): liars are named, an inconsistent
//!    owner gets the store refused.
//! 3. **Job.** The plan is made ([`crate::mpc::query::plan`]); the service deals one mask per
//!    opened sum, checked like the store (an inconsistent service gets the job refused).
//! 4. **Compute.** One thread per party evaluates the plan on its shares
//!    ([`crate::mpc::eval`]); degree-`2t` openings travel through an echo-broadcast exchange
//!    over `std::sync::mpsc` queues. Each party masks its aggregate shares.
//! 5. **Decode.** The service decodes the masked shares with Berlekamp-Welch
//!    ([`crate::mpc::decode`]), names the parties off the polynomial, removes the masks and
//!    finishes the query ([`Plan::finish`]).
//!
//! The synchronous network's round deadline is modelled by an explicit "nothing from me this
//! round" marker, so a withholding party costs no wall-clock time; every receive still has a
//! timeout ([`RECV_TIMEOUT`]).
//!
//! What version 1 guarantees, and what the tests assert: with `n >= 3t + 1` and at most `t`
//! faulty parties, linear aggregates (`sum`, `count`, `mean`, `hist`) are delivered correctly
//! and every wrong output share, lying check opening and equivocation is named; a party that
//! only withholds is not named (it is simply not paid). Aggregates with products stay private;
//! a wrong product contribution is detected by every honest party (the degree-`2t` openings
//! are over-determined) and the job aborts without blame. With `n = 2t + 1` the same attack goes
//! undetected and shifts the result (an additive attack): version 1 is correct for products
//! only against a semi-honest minority, as PROTOCOL.md states.

use std::collections::BTreeSet;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use k256::schnorr::{SigningKey, VerifyingKey};
use num_bigint::BigInt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use crate::mpc::check::{self, Challenge, CheckError, Refusal, Resolution};
use crate::mpc::csv::Dataset;
use crate::mpc::dealing::{self, Hash32, PartyShares};
use crate::mpc::decode::{decode_vec, DecodeVec};
use crate::mpc::echo::{payload_hash, Echo, EchoRound, Equivocation, SignedHeader};
use crate::mpc::eval::{mask_outputs, EvalError, Evaluator, Exchange, Openings};
use crate::mpc::evidence::PartyKey;
use crate::mpc::field::PrimeField;
use crate::mpc::mult;
use crate::mpc::prss::{Contribution, KeyAgreement, Prss, PrssError};
use crate::mpc::query::num::to_signed;
use crate::mpc::query::{parse, plan::plan_text, OutputValue, Plan, QueryError};
use crate::mpc::shamir::{Params, ShamirError};

/// How long a party waits for one message before giving up.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(60);

/// Round numbers of the setup's signed contributions start here (plus the set index).
const SETUP_ROUND: u32 = 1 << 20;
/// Round number of the store check's openings.
const STORE_CHECK_ROUND: u32 = 1 << 21;
/// Round number of the mask check's openings.
const MASK_CHECK_ROUND: u32 = (1 << 21) + 1;

/// How a party behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Behaviour {
    /// Follows the protocol.
    Honest,
    /// Adds 1 to every masked output share it delivers.
    WrongOutputShare,
    /// Adds 1 to the first value of every degree-`2t` opening it sends.
    WrongProductContribution,
    /// Adds 1 to its store-check opening.
    WrongCheckOpening,
    /// Sends conflicting PRSS key contributions to different members.
    BadRandomnessContribution,
    /// Sends nothing in the job: no check opening, no degree-`2t` opening, no output share.
    Withhold,
    /// Sends different signed values to different parties (check openings and degree-`2t`
    /// openings).
    Equivocate,
}

impl Behaviour {
    /// Every behaviour, honest first.
    pub const ALL: [Behaviour; 7] = [
        Behaviour::Honest,
        Behaviour::WrongOutputShare,
        Behaviour::WrongProductContribution,
        Behaviour::WrongCheckOpening,
        Behaviour::BadRandomnessContribution,
        Behaviour::Withhold,
        Behaviour::Equivocate,
    ];
}

/// How the owner deals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnerBehaviour {
    /// Consistent shares.
    Honest,
    /// Party `victim` gets one share off its polynomial.
    Inconsistent {
        /// The party dealt a bad share.
        victim: usize,
    },
}

/// How the service deals its output masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceBehaviour {
    /// Consistent masks.
    Honest,
    /// Party `victim` gets one mask share off its polynomial.
    InconsistentMask {
        /// The party dealt a bad share.
        victim: usize,
    },
}

/// One end-to-end run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Parties.
    pub n: usize,
    /// Threshold.
    pub t: usize,
    /// `behaviours[i - 1]` for party `i`.
    pub behaviours: Vec<Behaviour>,
    /// The owner.
    pub owner: OwnerBehaviour,
    /// The service.
    pub service: ServiceBehaviour,
    /// Seed of every random choice (keys, dealing, masks).
    pub seed: u64,
}

impl Scenario {
    /// An all-honest committee.
    pub fn honest(n: usize, t: usize) -> Self {
        Scenario {
            n,
            t,
            behaviours: vec![Behaviour::Honest; n],
            owner: OwnerBehaviour::Honest,
            service: ServiceBehaviour::Honest,
            seed: 1,
        }
    }

    /// The same scenario with party `i` behaving as `b`.
    pub fn with(mut self, i: usize, b: Behaviour) -> Self {
        if let Some(slot) = self.behaviours.get_mut(i.wrapping_sub(1)) {
            *slot = b;
        }
        self
    }

    fn behaviour(&self, i: usize) -> Behaviour {
        self.behaviours
            .get(i - 1)
            .copied()
            .unwrap_or(Behaviour::Honest)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// The service got the result.
    Delivered,
    /// The store check refused the owner's dealing.
    StoreRefused(Refusal),
    /// The mask check refused the service's masks.
    JobRefused(Refusal),
    /// A compute step aborted (inconsistent degree-`2t` openings, too few parties...).
    Aborted(String),
    /// The output shares could not be decoded: no result, no blame.
    Inconsistent,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub status: Status,
    /// The finished outputs, when delivered.
    pub result: Option<Vec<OutputValue>>,
    /// The opened sums (signed integers at their scales), when delivered.
    pub opened: Option<Vec<BigInt>>,
    /// Every party named: equivocation, lying check opening, wrong output share.
    pub culprits: BTreeSet<usize>,
    /// The equivocation evidence gathered.
    pub equivocations: Vec<Equivocation>,
    /// The committee's signing keys, `roster[i - 1]` for party `i` (what a judge verifies
    /// evidence against).
    pub roster: Vec<PartyKey>,
    /// The plan.
    pub plan: Plan,
}

/// Errors that stop a run before any protocol outcome (bad scenario or query).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommitteeError {
    /// Bad committee parameters.
    #[error(transparent)]
    Params(#[from] ShamirError),
    /// PRSS setup failed for an honest reason (bad parameters).
    #[error(transparent)]
    Prss(#[from] PrssError),
    /// The query does not parse or plan.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The check could not run.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The scenario names `behaviours` for a different number of parties.
    #[error("{got} behaviours for {n} parties")]
    Behaviours {
        /// Behaviours given.
        got: usize,
        /// Parties.
        n: usize,
    },
    /// Honest parties reached different views (a bug; never expected).
    #[error("honest parties disagree: {0}")]
    Diverged(String),
}

/// A signing key that never prints.
#[derive(Clone)]
struct Key(SigningKey);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// A set-up committee: keys and PRSS of every party, and the parties excluded at setup.
#[derive(Debug)]
pub struct Committee<F> {
    params: Params,
    signing: Vec<Key>,
    verifying: Vec<VerifyingKey>,
    prss: Vec<Prss<F>>,
    excluded: BTreeSet<usize>,
    equivocations: Vec<Equivocation>,
}

fn contribution_hash(value: &[u8; 32]) -> Hash32 {
    Sha256::new()
        .chain_update(b"btcmpc/v1/prss-contribution")
        .chain_update(value)
        .finalize()
        .into()
}

impl<F: PrimeField> Committee<F> {
    /// Sets up a committee; parties with [`Behaviour::BadRandomnessContribution`] equivocate on
    /// their key contributions, are named and excluded.
    ///
    /// # Errors
    /// [`CommitteeError::Params`], [`CommitteeError::Prss`] for unsupported `n`, `t`.
    pub fn setup(scenario: &Scenario) -> Result<Self, CommitteeError> {
        let (n, t) = (scenario.n, scenario.t);
        let params = Params::new(n, t)?;
        if scenario.behaviours.len() != n {
            return Err(CommitteeError::Behaviours {
                got: scenario.behaviours.len(),
                n,
            });
        }
        let mut rng = ChaCha20Rng::seed_from_u64(scenario.seed);
        let signing: Vec<Key> = (0..n).map(|_| Key(SigningKey::random(&mut rng))).collect();
        let verifying: Vec<VerifyingKey> = signing.iter().map(|k| *k.0.verifying_key()).collect();
        let roster: Hash32 = {
            let mut h = Sha256::new();
            h.update(b"btcmpc/v1/roster");
            for v in &verifying {
                h.update(v.to_bytes());
            }
            h.finalize().into()
        };
        let mut excluded = BTreeSet::new();
        let mut equivocations = Vec::new();
        for attempt in 0..2 {
            let mut states = Vec::with_capacity(n);
            let mut mail: Vec<(Contribution, SignedHeader)> = Vec::new();
            for me in 1..=n as u32 {
                let (mut s, out) = KeyAgreement::new(n, t, me, &mut rng)?;
                for x in &excluded {
                    s.exclude(*x as u32);
                }
                let bad = attempt == 0
                    && scenario.behaviour(me as usize) == Behaviour::BadRandomnessContribution;
                let mut signed: Vec<([u8; 32], usize, SignedHeader)> = Vec::new();
                for mut c in out {
                    if excluded.contains(&(me as usize)) {
                        continue;
                    }
                    if bad {
                        c.value[0] ^= c.to as u8;
                    }
                    // One signature per distinct (set, value): an honest member sends one value.
                    let h = match signed.iter().find(|x| x.0 == c.value && x.1 == c.set) {
                        Some(x) => x.2.clone(),
                        None => {
                            let h = SignedHeader::sign(
                                &signing[me as usize - 1].0,
                                roster,
                                SETUP_ROUND + c.set as u32,
                                me,
                                me,
                                contribution_hash(&c.value),
                            );
                            signed.push((c.value, c.set, h.clone()));
                            h
                        }
                    };
                    mail.push((c, h));
                }
                states.push(s);
            }
            for (c, _) in &mail {
                let to = c.to as usize;
                if !excluded.contains(&to) {
                    states[to - 1].receive(c)?;
                }
            }
            let mut confirmations = Vec::new();
            for (i, s) in states.iter_mut().enumerate() {
                if !excluded.contains(&(i + 1)) {
                    confirmations.extend(s.derive()?);
                }
            }
            // Honest members compare confirmations; a mismatch makes the members of that set
            // forward the signed contributions they received, which convicts an equivocator.
            let mut convicted = BTreeSet::new();
            let mut mismatch = false;
            let mut prss = Vec::with_capacity(n);
            for (i, s) in states.into_iter().enumerate() {
                let me = i + 1;
                if excluded.contains(&me) {
                    prss.push(None);
                    continue;
                }
                match s.finish::<F>(&confirmations) {
                    Ok(p) => prss.push(Some(p)),
                    Err(PrssError::KeyMismatch { set, .. }) => {
                        mismatch = true;
                        prss.push(None);
                        for ev in resolve_contributions(&mail, set, &verifying) {
                            if convicted.insert(ev.sender() as usize) {
                                equivocations.push(ev);
                            }
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if !mismatch {
                let prss: Vec<Prss<F>> = prss
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| match p {
                        Some(p) => Ok(p),
                        // An excluded party gets a placeholder it never uses.
                        None => Prss::new(n, t, i as u32 + 1, placeholder_keys(n, t, i + 1)?),
                    })
                    .collect::<Result<_, PrssError>>()?;
                return Ok(Committee {
                    params,
                    signing,
                    verifying,
                    prss,
                    excluded,
                    equivocations,
                });
            }
            if convicted.is_empty() {
                return Err(CommitteeError::Diverged(
                    "key confirmation mismatch without an equivocator".into(),
                ));
            }
            excluded.extend(convicted);
        }
        Err(CommitteeError::Diverged(
            "key agreement failed twice".into(),
        ))
    }

    /// Parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Party `i`'s PRSS generator.
    pub fn prss(&self, i: usize) -> Option<&Prss<F>> {
        self.prss.get(i.checked_sub(1)?)
    }

    /// Parties excluded at setup.
    pub fn excluded(&self) -> &BTreeSet<usize> {
        &self.excluded
    }

    /// The parties' public keys, `[i - 1]` for party `i`.
    pub fn roster_keys(&self) -> Vec<PartyKey> {
        self.verifying
            .iter()
            .map(|v| PartyKey(v.to_bytes().into()))
            .collect()
    }

    /// Multiplies share vectors element-wise through the committee (one degree reduction of
    /// the whole batch, one thread per party): `a[i - 1]`, `b[i - 1]` are party `i`'s shares;
    /// returns every party's shares of the products. All parties honest.
    ///
    /// # Errors
    /// [`EvalError`] from the reduction.
    pub fn multiply(
        &self,
        job: Hash32,
        a: &[Vec<F>],
        b: &[Vec<F>],
    ) -> Result<Vec<Vec<F>>, EvalError> {
        let n = self.params.n();
        let nets = self.network(job, &vec![Behaviour::Honest; n]);
        let results: Vec<Result<Vec<F>, EvalError>> = std::thread::scope(|s| {
            let handles: Vec<_> = nets
                .into_iter()
                .enumerate()
                .map(|(i, net)| {
                    let prss = &self.prss[i];
                    let (x, y) = (&a[i], &b[i]);
                    s.spawn(move || {
                        let c = mult::local_products(x, y)
                            .map_err(|source| EvalError::Reduction { round: 0, source })?;
                        Evaluator::new(prss, job, net).reduce(c)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(EvalError::Exchange {
                            round: 0,
                            reason: "party thread panicked".into(),
                        })
                    })
                })
                .collect()
        });
        results.into_iter().collect()
    }

    fn network(&self, job: Hash32, behaviours: &[Behaviour]) -> Vec<QueueExchange<F>> {
        let n = self.params.n();
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| channel()).unzip();
        rxs.into_iter()
            .enumerate()
            .map(|(i, rx)| QueueExchange {
                me: i + 1,
                n,
                job,
                behaviour: if self.excluded.contains(&(i + 1)) {
                    Behaviour::Withhold
                } else {
                    behaviours[i]
                },
                signing: self.signing[i].clone(),
                verifying: self.verifying.clone(),
                peers: txs.clone(),
                rx,
                pending: Vec::new(),
                convicted: self.excluded.clone(),
                evidence: Vec::new(),
                gone: BTreeSet::new(),
            })
            .collect()
    }
}

fn placeholder_keys(n: usize, t: usize, me: usize) -> Result<crate::mpc::prss::SetKeys, PrssError> {
    Ok(crate::mpc::prss::key_sets(n, t)?
        .into_iter()
        .filter(|s| s.contains(&(me as u32)))
        .map(|s| (s, [0u8; 32]))
        .collect())
}

/// Two validly signed, different contributions of one sender to `set`.
fn resolve_contributions(
    mail: &[(Contribution, SignedHeader)],
    set: usize,
    keys: &[VerifyingKey],
) -> Vec<Equivocation> {
    let mut out = Vec::new();
    for (i, (c, h)) in mail.iter().enumerate() {
        if c.set != set {
            continue;
        }
        for (d, g) in &mail[i + 1..] {
            if d.set == set && d.from == c.from && h.payload_hash != g.payload_hash {
                let ev = Equivocation {
                    first: h.clone(),
                    second: g.clone(),
                };
                if ev.verify(&keys[c.from as usize - 1])
                    && !out.iter().any(|e: &Equivocation| e.sender() == c.from)
                {
                    out.push(ev);
                }
            }
        }
    }
    out
}

/// A message between parties in the compute phase.
#[derive(Debug)]
enum Wire<F> {
    Opening {
        header: SignedHeader,
        payload: Arc<Vec<F>>,
    },
    Echo(u32, Echo),
    Forward(u32, Vec<SignedHeader>),
    /// The round deadline passed without a message of `sub` from this sender.
    Nothing {
        round: u32,
        sub: u8,
    },
    /// The sender has finished (or failed): it sends nothing more.
    Gone,
}

impl<F> Wire<F> {
    fn key(&self) -> Option<(u32, u8)> {
        match self {
            Wire::Opening { header, .. } => Some((header.round, 0)),
            Wire::Echo(r, _) => Some((*r, 1)),
            Wire::Forward(r, _) => Some((*r, 2)),
            Wire::Nothing { round, sub } => Some((*round, *sub)),
            Wire::Gone => None,
        }
    }
}

/// The queue-based echo-broadcast exchange of one party.
#[derive(Debug)]
struct QueueExchange<F> {
    me: usize,
    n: usize,
    job: Hash32,
    behaviour: Behaviour,
    signing: Key,
    verifying: Vec<VerifyingKey>,
    peers: Vec<Sender<(usize, Wire<F>)>>,
    rx: Receiver<(usize, Wire<F>)>,
    pending: Vec<(usize, Wire<F>)>,
    convicted: BTreeSet<usize>,
    evidence: Vec<Equivocation>,
    gone: BTreeSet<usize>,
}

impl<F: PrimeField> QueueExchange<F> {
    fn send(&self, to: usize, w: Wire<F>) {
        // A closed queue means that party finished or failed; it is then an erasure.
        let _ = self.peers[to - 1].send((self.me, w));
    }

    fn others(&self) -> impl Iterator<Item = usize> + '_ {
        (1..=self.n).filter(move |j| *j != self.me)
    }

    fn silent(&self) -> bool {
        self.behaviour == Behaviour::Withhold
    }

    /// One message of `(round, sub)` from every other party that has not left.
    fn collect(&mut self, round: u32, sub: u8) -> Result<Vec<(usize, Wire<F>)>, EvalError> {
        let mut got: Vec<(usize, Wire<F>)> = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].1.key() == Some((round, sub)) {
                got.push(self.pending.swap_remove(i));
            } else {
                i += 1;
            }
        }
        loop {
            let heard: BTreeSet<usize> = got.iter().map(|g| g.0).collect();
            if self
                .others()
                .all(|j| heard.contains(&j) || self.gone.contains(&j))
            {
                return Ok(got);
            }
            match self.rx.recv_timeout(RECV_TIMEOUT) {
                Ok((from, Wire::Gone)) => {
                    self.gone.insert(from);
                }
                Ok((from, w)) => {
                    if w.key() == Some((round, sub)) {
                        got.push((from, w));
                    } else {
                        self.pending.push((from, w));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(EvalError::Exchange {
                        round,
                        reason: format!("party {} timed out waiting for round {round}", self.me),
                    })
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(got),
            }
        }
    }
}

impl<F> Drop for QueueExchange<F> {
    fn drop(&mut self) {
        // Leaving: nobody waits for this party any more.
        for (j, tx) in self.peers.iter().enumerate() {
            if j + 1 != self.me {
                let _ = tx.send((self.me, Wire::Gone));
            }
        }
    }
}

impl<F: PrimeField> Exchange<F> for QueueExchange<F> {
    fn exchange(&mut self, round: u32, mut mine: Vec<F>) -> Result<Openings<F>, EvalError> {
        let job = self.job;
        let me = self.me as u32;
        // Sub-round 0: the signed openings. A silent party computes on but sends nothing.
        if self.behaviour == Behaviour::WrongProductContribution {
            if let Some(x) = mine.first_mut() {
                *x += F::ONE;
            }
        }
        let honest = Arc::new(mine);
        let h = SignedHeader::sign(&self.signing.0, job, round, me, me, payload_hash(&honest));
        if self.silent() {
            for j in self.others().collect::<Vec<_>>() {
                self.send(j, Wire::Nothing { round, sub: 0 });
            }
        } else {
            let forked = if self.behaviour == Behaviour::Equivocate && !honest.is_empty() {
                let mut other = (*honest).clone();
                other[0] += F::ONE;
                let g =
                    SignedHeader::sign(&self.signing.0, job, round, me, me, payload_hash(&other));
                Some((g, Arc::new(other)))
            } else {
                None
            };
            for j in self.others().collect::<Vec<_>>() {
                let w = match &forked {
                    Some((g, p)) if j % 2 == 0 => Wire::Opening {
                        header: g.clone(),
                        payload: p.clone(),
                    },
                    _ => Wire::Opening {
                        header: h.clone(),
                        payload: honest.clone(),
                    },
                };
                self.send(j, w);
            }
        }
        let own = Some((h, honest));
        let mut echo = EchoRound::new(me, job, round, self.verifying.clone());
        let mut payloads: Vec<Option<Arc<Vec<F>>>> = vec![None; self.n];
        let got = self.collect(round, 0)?;
        // Our own payload was hashed for its header just above: same bytes, same hash, so
        // it is not hashed a second time.
        let own = own.map(|(header, payload)| {
            let computed = header.payload_hash;
            (self.me, Wire::Opening { header, payload }, Some(computed))
        });
        for (from, w, known) in got.into_iter().map(|(from, w)| (from, w, None)).chain(own) {
            if let Wire::Opening { header, payload } = w {
                if header.sender as usize != from || self.convicted.contains(&from) {
                    continue;
                }
                let computed = known.unwrap_or_else(|| payload_hash(&payload));
                if echo.receive(header, &computed).is_ok() {
                    payloads[from - 1] = Some(payload);
                }
            }
        }
        // Sub-round 1: echoes.
        let my_echo = echo.echo();
        for j in self.others().collect::<Vec<_>>() {
            let w = if self.silent() {
                Wire::Nothing { round, sub: 1 }
            } else {
                Wire::Echo(round, my_echo.clone())
            };
            self.send(j, w);
        }
        for (from, w) in self.collect(round, 1)? {
            if let Wire::Echo(_, e) = w {
                if e.from as usize == from {
                    echo.receive_echo(e);
                }
            }
        }
        // Sub-round 2: forward the headers of conflicting senders (always sent, maybe empty).
        let conflicts = echo.conflicts();
        let held: Vec<SignedHeader> = conflicts
            .iter()
            .filter_map(|s| echo.held(*s).cloned())
            .collect();
        for j in self.others().collect::<Vec<_>>() {
            let w = if self.silent() {
                Wire::Nothing { round, sub: 2 }
            } else {
                Wire::Forward(round, held.clone())
            };
            self.send(j, w);
        }
        for (_, w) in self.collect(round, 2)? {
            if let Wire::Forward(_, hs) = w {
                for h in hs {
                    echo.receive_forwarded(h);
                }
            }
        }
        for ev in echo.evidence() {
            let s = ev.sender() as usize;
            if self.convicted.insert(s) {
                self.evidence.push(ev.clone());
            }
        }
        // Openings of conflicting senders without a proof are dropped too (the echo lied or
        // the sender equivocated): they are erasures.
        Ok(payloads
            .into_iter()
            .enumerate()
            .filter(|(i, _)| {
                !self.convicted.contains(&(i + 1)) && !conflicts.contains(&(*i as u32 + 1))
            })
            .filter_map(|(i, p)| p.map(|p| (i + 1, p)))
            .collect())
    }
}

/// What the parties agreed after an echo-broadcast of one field value each (lockstep).
struct Opened<F> {
    values: Vec<(usize, F)>,
    convicted: Vec<Equivocation>,
    /// Every header signed in the round (what any receiver could keep as evidence).
    signed: Vec<SignedHeader>,
}

/// Lockstep echo-broadcast of one value per party. `sent[s][r]` is what sender `s + 1` sent to
/// receiver `r + 1` (`None`: nothing). Returns the view of the first honest receiver after
/// checking every honest receiver agrees.
fn broadcast_values<F: PrimeField>(
    committee: &Committee<F>,
    job: Hash32,
    round: u32,
    sent: &[Vec<Option<F>>],
    honest: &[usize],
) -> Result<Opened<F>, CommitteeError> {
    let n = committee.params.n();
    let mut rounds: Vec<EchoRound> = (1..=n as u32)
        .map(|me| EchoRound::new(me, job, round, committee.verifying.clone()))
        .collect();
    let mut all_signed: Vec<SignedHeader> = Vec::new();
    for (s, row) in sent.iter().enumerate() {
        let mut signed: Vec<(F, SignedHeader)> = Vec::new();
        for (r, v) in row.iter().enumerate() {
            if let Some(v) = v {
                let h = payload_hash(&[*v]);
                let hdr = match signed.iter().find(|x| x.0 == *v) {
                    Some(x) => x.1.clone(),
                    None => {
                        let hdr = SignedHeader::sign(
                            &committee.signing[s].0,
                            job,
                            round,
                            s as u32 + 1,
                            s as u32 + 1,
                            h,
                        );
                        signed.push((*v, hdr.clone()));
                        all_signed.push(hdr.clone());
                        hdr
                    }
                };
                // Only well-formed messages are accepted; a refused one is an erasure.
                let _ = rounds[r].receive(hdr, &h);
            }
        }
    }
    let echoes: Vec<Echo> = rounds.iter().map(EchoRound::echo).collect();
    for r in rounds.iter_mut() {
        for e in &echoes {
            r.receive_echo(e.clone());
        }
    }
    let forwarded: Vec<SignedHeader> = rounds
        .iter()
        .flat_map(|r| {
            r.conflicts()
                .into_iter()
                .filter_map(|s| r.held(s).cloned())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut views = Vec::new();
    for &me in honest {
        let r = &mut rounds[me - 1];
        for h in &forwarded {
            r.receive_forwarded(h.clone());
        }
        let conflicts = r.conflicts();
        let mut values = Vec::new();
        for s in 1..=n {
            if conflicts.contains(&(s as u32)) || committee.excluded.contains(&s) {
                continue;
            }
            if let Some(v) = sent[s - 1][me - 1] {
                values.push((s, v));
            }
        }
        views.push(Opened {
            values,
            convicted: r.evidence().to_vec(),
            signed: all_signed.clone(),
        });
    }
    let senders = |o: &Opened<F>| {
        o.convicted
            .iter()
            .map(Equivocation::sender)
            .collect::<Vec<_>>()
    };
    let mut views = views.into_iter();
    let first = views
        .next()
        .ok_or_else(|| CommitteeError::Diverged("no honest party".into()))?;
    for v in views {
        if v.values != first.values || senders(&v) != senders(&first) {
            return Err(CommitteeError::Diverged(format!(
                "honest views of round {round} differ"
            )));
        }
    }
    Ok(first)
}

/// A batch check that ran: its resolution and every signed opening header.
struct CheckRun {
    resolution: Resolution,
    /// Read by the tests, which pair the openings of different checks.
    #[cfg_attr(not(test), allow(dead_code))]
    headers: Vec<SignedHeader>,
}

/// The batch check of a dealing among the committee (store or mask), with complaint
/// resolution; returns the resolution and the signed openings, and adds the equivocators
/// convicted on the way.
///
/// Openings are signed for the check's own identifier ([`check::check_id`] of `tag` and the
/// receipts root), never the roster alone: two checks on one roster open different values,
/// which must not read as equivocation.
#[allow(clippy::too_many_arguments)]
fn run_check<F: PrimeField>(
    committee: &Committee<F>,
    scenario: &Scenario,
    tag: &[u8],
    context: &Hash32,
    round: u32,
    dealt: &[PartyShares<F>],
    lying_allowed: bool,
    convicted: &mut BTreeSet<usize>,
    equivocations: &mut Vec<Equivocation>,
) -> Result<CheckRun, CommitteeError> {
    let n = committee.params.n();
    let receipts: Vec<Hash32> = dealt.iter().map(|p| p.receipt_hash(context)).collect();
    let root = dealing::receipts_root(&receipts);
    let id = check::check_id(tag, &root);
    let m = dealt[0].len();
    let challenge = Challenge::<F>::new(tag, &root, m);
    let mut sent = vec![vec![None; n]; n];
    for (i, p) in dealt.iter().enumerate() {
        let me = i + 1;
        if committee.excluded.contains(&me) {
            continue;
        }
        let mut o = challenge.opening(p)?;
        let b = scenario.behaviour(me);
        if b == Behaviour::Withhold {
            continue;
        }
        if b == Behaviour::WrongCheckOpening && lying_allowed {
            o += F::ONE;
        }
        for (r, slot) in sent[i].iter_mut().enumerate() {
            *slot = Some(if b == Behaviour::Equivocate && (r + 1) % 2 == 0 {
                o + F::ONE
            } else {
                o
            });
        }
    }
    let honest: Vec<usize> = (1..=n)
        .filter(|i| scenario.behaviour(*i) == Behaviour::Honest && !committee.excluded.contains(i))
        .collect();
    let opened = broadcast_values(committee, id, round, &sent, &honest)?;
    let headers = opened.signed;
    for ev in opened.convicted {
        if convicted.insert(ev.sender() as usize) {
            equivocations.push(ev);
        }
    }
    let openings: Vec<(usize, F)> = opened
        .values
        .into_iter()
        .filter(|(s, _)| !convicted.contains(s))
        .collect();
    let receipts: Vec<(usize, Hash32)> = receipts
        .into_iter()
        .enumerate()
        .map(|(i, r)| (i + 1, r))
        .collect();
    // The dealer reveals the vectors it dealt to the parties whose openings are off.
    let off = match check::verify_openings(committee.params, &openings)? {
        check::CheckOutcome::Complaint { off } => off,
        _ => Vec::new(),
    };
    let revealed: Vec<PartyShares<F>> = off.iter().map(|i| dealt[i - 1].clone()).collect();
    let resolution = check::resolve_complaints(
        committee.params,
        &challenge,
        context,
        &receipts,
        &openings,
        &revealed,
    )?;
    Ok(CheckRun {
        resolution,
        headers,
    })
}

fn digest_json<T: serde::Serialize>(tag: &[u8], v: &T) -> Hash32 {
    let json = serde_json::to_vec(v).expect("plain data serializes to JSON");
    Sha256::new()
        .chain_update(tag)
        .chain_update(json)
        .finalize()
        .into()
}

/// Runs `query` over the CSV `data` through the committee of `scenario`, end to end.
///
/// # Errors
/// [`CommitteeError`] for a bad scenario or query (not for cheating parties, which end in an
/// [`Outcome`]).
pub fn run<F: PrimeField>(
    scenario: &Scenario,
    data: &Dataset,
    query: &str,
) -> Result<Outcome, CommitteeError> {
    let parsed = parse(query)?;
    let plan = plan_text::<F>(query, &parsed, &data.schema)?;
    let committee = Committee::<F>::setup(scenario)?;
    let params = committee.params;
    let mut convicted: BTreeSet<usize> = committee.excluded.clone();
    let mut equivocations = committee.equivocations.clone();
    let mut rng = ChaCha20Rng::seed_from_u64(scenario.seed ^ 0x5eed);
    let roster = committee.roster_keys();
    let done = |status, convicted: BTreeSet<usize>, equivocations, plan: Plan| Outcome {
        status,
        result: None,
        opened: None,
        culprits: convicted,
        equivocations,
        roster: roster.clone(),
        plan,
    };

    // Store.
    let mut dealt = dealing::deal(params, &data.to_field::<F>(), &mut rng);
    if let OwnerBehaviour::Inconsistent { victim } = scenario.owner {
        if let Some(x) = dealt
            .get_mut(victim.wrapping_sub(1))
            .and_then(|p| p.columns.first_mut())
            .and_then(|c| c.first_mut())
        {
            *x += F::ONE;
        }
    }
    let context = digest_json(b"btcmpc/v1/dataset", &data.schema);
    match run_check(
        &committee,
        scenario,
        check::STORE_CHECK_TAG,
        &context,
        STORE_CHECK_ROUND,
        &dealt,
        true,
        &mut convicted,
        &mut equivocations,
    )?
    .resolution
    {
        Resolution::Accepted { liars } => convicted.extend(liars),
        Resolution::Refused { reason, liars } => {
            convicted.extend(liars);
            return Ok(done(
                Status::StoreRefused(reason),
                convicted,
                equivocations,
                plan,
            ));
        }
    }

    // Job: the service deals one mask per opened sum.
    let job: Hash32 = {
        let mut j = [0u8; 32];
        rng.fill(&mut j);
        j
    };
    let masks: Vec<F> = (0..plan.opened.len())
        .map(|_| F::random(&mut rng))
        .collect();
    let mut mask_shares = dealing::deal(params, std::slice::from_ref(&masks), &mut rng);
    if let ServiceBehaviour::InconsistentMask { victim } = scenario.service {
        if let Some(x) = mask_shares
            .get_mut(victim.wrapping_sub(1))
            .and_then(|p| p.columns.first_mut())
            .and_then(|c| c.first_mut())
        {
            *x += F::ONE;
        }
    }
    let job_context = digest_json(b"btcmpc/v1/job", &(hex::encode(job), parsed.to_string()));
    match run_check(
        &committee,
        scenario,
        &check::mask_check_tag(&job),
        &job_context,
        MASK_CHECK_ROUND,
        &mask_shares,
        false,
        &mut convicted,
        &mut equivocations,
    )?
    .resolution
    {
        Resolution::Accepted { liars } => convicted.extend(liars),
        Resolution::Refused { reason, liars } => {
            convicted.extend(liars);
            return Ok(done(
                Status::JobRefused(reason),
                convicted,
                equivocations,
                plan,
            ));
        }
    }

    // Compute: one thread per party.
    let mut behaviours: Vec<Behaviour> = scenario.behaviours.clone();
    for c in &convicted {
        behaviours[c - 1] = Behaviour::Withhold;
    }
    let nets = committee.network(job, &behaviours);
    type PartyResult<F> = (usize, Result<Vec<F>, EvalError>, Vec<Equivocation>);
    let results: Vec<PartyResult<F>> = std::thread::scope(|s| {
        let handles: Vec<_> = nets
            .into_iter()
            .enumerate()
            .map(|(i, mut net)| {
                let prss = &committee.prss[i];
                let columns = &dealt[i].columns;
                let mask = &mask_shares[i].columns[0];
                let plan = &plan;
                let b = behaviours[i];
                let known = convicted.clone();
                s.spawn(move || {
                    net.convicted.extend(known);
                    let mut ev = Evaluator::new(prss, job, net);
                    let r = ev
                        .evaluate(plan, columns)
                        .and_then(|a| mask_outputs(&a, mask))
                        .map(|mut y| {
                            if b == Behaviour::WrongOutputShare {
                                for v in y.iter_mut() {
                                    *v += F::ONE;
                                }
                            }
                            y
                        });
                    let mut net = ev.into_exchange();
                    (i + 1, r, std::mem::take(&mut net.evidence))
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                h.join().unwrap_or_else(|_| {
                    (
                        i + 1,
                        Err(EvalError::Exchange {
                            round: 0,
                            reason: "party thread panicked".into(),
                        }),
                        Vec::new(),
                    )
                })
            })
            .collect()
    });
    let mut outputs: Vec<(usize, Vec<F>)> = Vec::new();
    let mut abort: Option<String> = None;
    for (i, r, evs) in results {
        let b = behaviours[i - 1];
        for ev in evs {
            if convicted.insert(ev.sender() as usize) {
                equivocations.push(ev);
            }
        }
        match r {
            Ok(y) if b != Behaviour::Withhold => outputs.push((i, y)),
            Ok(_) => {}
            Err(e) => {
                if b == Behaviour::Honest && abort.is_none() {
                    abort = Some(e.to_string());
                }
            }
        }
    }
    if let Some(reason) = abort {
        return Ok(done(
            Status::Aborted(reason),
            convicted,
            equivocations,
            plan,
        ));
    }

    // Decode (the service).
    let vectors: Vec<(usize, &[F])> = outputs.iter().map(|(i, v)| (*i, &v[..])).collect();
    let decoded = match decode_vec(params, &vectors) {
        Ok(d) => d,
        Err(e) => {
            return Ok(done(
                Status::Aborted(e.to_string()),
                convicted,
                equivocations,
                plan,
            ))
        }
    };
    let (values, culprits) = match decoded {
        DecodeVec::Decoded { values, culprits } => (values, culprits),
        DecodeVec::Inconsistent { .. } => {
            return Ok(done(Status::Inconsistent, convicted, equivocations, plan))
        }
    };
    convicted.extend(culprits);
    let opened: Vec<BigInt> = values
        .iter()
        .zip(&masks)
        .map(|(y, m)| to_signed(*y - *m))
        .collect();
    let result = plan.finish(&opened)?;
    Ok(Outcome {
        status: Status::Delivered,
        result: Some(result),
        opened: Some(opened),
        culprits: convicted,
        equivocations,
        roster,
        plan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::evidence::{verify_equivocation, EvidenceError};
    use crate::mpc::field::Mersenne127;

    type F = Mersenne127;

    /// One store check on `committee`; returns the signed openings.
    fn store(committee: &Committee<F>, scenario: &Scenario, csv: &str, seed: u64) -> CheckRun {
        let data = Dataset::parse(csv).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let dealt = dealing::deal(committee.params, &data.to_field::<F>(), &mut rng);
        let context = digest_json(b"btcmpc/v1/dataset", &data.schema);
        let mut convicted = BTreeSet::new();
        let mut equivocations = Vec::new();
        let run = run_check(
            committee,
            scenario,
            check::STORE_CHECK_TAG,
            &context,
            STORE_CHECK_ROUND,
            &dealt,
            true,
            &mut convicted,
            &mut equivocations,
        )
        .unwrap();
        assert_eq!(run.resolution, Resolution::Accepted { liars: Vec::new() });
        assert!(convicted.is_empty());
        assert!(equivocations.is_empty());
        run
    }

    #[test]
    fn two_stores_on_one_roster_are_not_equivocation() {
        let scenario = Scenario::honest(4, 1);
        let committee = Committee::<F>::setup(&scenario).unwrap();
        let roster = committee.roster_keys();
        let a = store(&committee, &scenario, "x:int\n1\n2\n3\n", 7);
        let b = store(&committee, &scenario, "x:int\n10\n-4\n8\n5\n", 8);
        assert_eq!(a.headers.len(), 4);
        assert_eq!(b.headers.len(), 4);
        let mut differing = 0;
        for x in &a.headers {
            for y in b.headers.iter().filter(|y| y.sender == x.sender) {
                assert_ne!(x.job, y.job, "each store check signs for its own id");
                differing += usize::from(x.payload_hash != y.payload_hash);
                let ev = Equivocation {
                    first: x.clone(),
                    second: y.clone(),
                };
                assert_eq!(
                    verify_equivocation(&ev, &roster),
                    Err(EvidenceError::NoConflict("different (job, round, slot)")),
                    "party {}",
                    x.sender
                );
            }
        }
        // The two stores open different values: under one identifier they would convict.
        assert_eq!(differing, 4);
    }
}
