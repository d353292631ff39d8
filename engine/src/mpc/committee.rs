//! An in-process committee: `n` parties in one process, each honest or an evil twin, running
//! setup -> store -> check -> query -> decode end to end. A test driver of the protocol
//! machines ([`crate::mpc::round`]), behind the `test-support` feature: the main test fixture of
//! the cryptography, and the engine of `btcmpc bench engine`'s product figures.
//!
//! The driver runs the `n` machines of each protocol in one process and delivers their
//! messages from one queue per party, in a loop. When every queue is empty the synchronous
//! network's deadline has passed: every machine still waiting is told so
//! ([`Machine::deadline`]), so a withholding party costs no wall-clock time and nothing waits on
//! a clock. Deliveries of one pass run on one scoped thread per party when the work is large
//! (evaluation), so the parties compute in parallel as separate processes would.
//!
//! Phases:
//!
//! 1. **Setup.** Signing keys; PRSS key agreement ([`Setup`]) with signed contributions, key
//!    confirmations and accusations; equivocators are named by two signed contributions
//!    ([`Equivocation`]) and excluded, and the agreement is re-run without them.
//! 2. **Store.** The owner deals the dataset plus a check mask ([`dealing::deal`]); every party
//!    hashes its shares into a receipt; the parties run the batch check ([`CheckMachine`]:
//!    echo-broadcast openings, BGW complaint resolution with the owner revealing the vectors of
//!    the parties off the polynomial): liars are named, an inconsistent owner gets the store
//!    refused.
//! 3. **Job.** The plan is made ([`crate::mpc::query::plan()`]); the service deals one mask per
//!    opened sum, checked like the store (an inconsistent service gets the job refused).
//! 4. **Compute.** Every party evaluates the plan on its shares ([`EvalMachine`]); degree-`2t`
//!    openings travel by signed echo-broadcast. Each party masks its aggregate shares.
//! 5. **Decode.** The service decodes the masked shares with Berlekamp-Welch
//!    ([`crate::mpc::decode`]), names the parties off the polynomial, removes the masks and
//!    finishes the query ([`Plan::finish`]).
//!
//! Evil twins ([`Behaviour`]) run the honest machine; the driver rewrites (and re-signs with
//! the party's key) the messages it sends, or drops them. A wrong product contribution, a wrong
//! share in an opening to the committee and a lying check opening lie inside the machine
//! ([`EvalMachine::lie_in_openings`], [`EvalMachine::lie_in_public_openings`],
//! [`CheckMachine::lie_in_opening`]): the party signs one value only, its own view included
//! (rewriting its messages would make it an equivocator). [`run_plan`] runs a hand-built plan
//! (comparisons, gates) and lets a test add any [`crate::mpc::eval::Tamper`].
//!
//! What version 1 guarantees, and what the tests assert: with `n >= 3t + 1` and at most `t`
//! faulty parties, linear aggregates (`sum`, `count`, `mean`, `hist`) are delivered correctly
//! and every wrong output share, lying check opening and equivocation is named; a party that
//! only withholds is not named (it is simply not paid). Aggregates with products stay private;
//! a wrong product contribution is detected by every honest party (the degree-`2t` openings
//! are over-determined) and the job aborts without blame. In a comparison or a gate, a wrong
//! share in an opening to the committee (`r^2`, the masked opening, a gate bit) is corrected by
//! Berlekamp-Welch and its author named, with the signed openings as evidence
//! ([`crate::mpc::eval::OpeningFault`]); the honest parties agree on every gate bit. With `n = 2t + 1` the same attack goes
//! undetected and shifts the result (an additive attack): version 1 is correct for products
//! only against a semi-honest minority, as PROTOCOL.md states.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use crate::mpc::sig::{SigningKey, VerifyingKey};
use num_bigint::BigInt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use crate::mpc::check::{
    self, CheckError, CheckInput, CheckMachine, Refusal, Resolution, MASK_CHECK_ROUND,
    STORE_CHECK_ROUND,
};
use crate::mpc::csv::Dataset;
use crate::mpc::dealing::{self, Hash32, PartyShares};
use crate::mpc::decode::{decode_vec, DecodeVec};
use crate::mpc::echo::{payload_hash, Equivocation, SignedHeader};
use crate::mpc::eval::{mask_outputs, EvalError, EvalMachine, Evaluation, Task};
use crate::mpc::evidence::PartyKey;
use crate::mpc::field::PrimeField;
use crate::mpc::prss::{Prss, PrssError};
use crate::mpc::query::num::to_signed;
use crate::mpc::query::{parse, plan::plan_text, OutputValue, Plan, QueryError};
use crate::mpc::round::{Machine, Message, Outgoing, PartyId, Recipient, RoundError};
use crate::mpc::setup::{contribution_hash, Setup, SETUP_ROUND};
use crate::mpc::shamir::{Params, ShamirError};

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
    /// Adds 1 to the first share of every opening to the committee it sends (the `r^2` of
    /// random bits, the masked opening of a comparison, the gate bits).
    WrongOpening,
}

impl Behaviour {
    /// Every behaviour, honest first.
    pub const ALL: [Behaviour; 8] = [
        Behaviour::Honest,
        Behaviour::WrongOutputShare,
        Behaviour::WrongProductContribution,
        Behaviour::WrongCheckOpening,
        Behaviour::BadRandomnessContribution,
        Behaviour::Withhold,
        Behaviour::Equivocate,
        Behaviour::WrongOpening,
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
    /// The opened sums (signed integers at their scales), when delivered; a withheld sum
    /// opens to 0 (its masked share was the mask alone).
    pub opened: Option<Vec<BigInt>>,
    /// Per opened sum, whether the gates disclose it, when delivered (all `true` without
    /// gates). `result` marks the outputs of undisclosed sums withheld
    /// ([`OutputValue::withheld`]).
    pub disclosed: Option<Vec<bool>>,
    /// The public gate bits every honest party opened, when the evaluation finished.
    pub gates: Option<Vec<bool>>,
    /// Every party named: equivocation, lying check opening, wrong output share, wrong share in
    /// an opening to the committee.
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
    /// A protocol machine failed.
    #[error(transparent)]
    Round(RoundError),
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

impl From<RoundError> for CommitteeError {
    fn from(e: RoundError) -> Self {
        match e {
            RoundError::Prss(e) => CommitteeError::Prss(e),
            RoundError::Check(e) => CommitteeError::Check(e),
            e => CommitteeError::Round(e),
        }
    }
}

/// A signing key that never prints.
#[derive(Clone)]
struct Key(SigningKey);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// Which protocol the driver runs (the evil twins misbehave per protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Setup,
    StoreCheck,
    MaskCheck,
    Compute,
}

/// The in-process network: one queue per party, and the evil twins on the sending side.
struct Net<'k, F> {
    n: usize,
    signing: &'k [Key],
    behaviours: Vec<Behaviour>,
    phase: Phase,
    queues: Vec<VecDeque<(PartyId, Message<F>)>>,
    /// Every distinct signed value header sent (what any receiver could keep as evidence).
    signed: Vec<SignedHeader>,
}

impl<'k, F: PrimeField> Net<'k, F> {
    fn new(n: usize, signing: &'k [Key], behaviours: Vec<Behaviour>, phase: Phase) -> Self {
        Net {
            n,
            signing,
            behaviours,
            phase,
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            signed: Vec::new(),
        }
    }

    fn post(&mut self, from: PartyId, out: Vec<Outgoing<F>>) {
        for o in out {
            let to: Vec<PartyId> = match o.to {
                Recipient::All => PartyId::all(self.n).filter(|p| *p != from).collect(),
                Recipient::One(p) if p.point() <= self.n => vec![p],
                Recipient::One(_) => Vec::new(),
            };
            for p in to {
                if let Some(m) = self.twin(from, p, &o.msg) {
                    if let Message::Value { header, .. } = &m {
                        if !self.signed.contains(header) {
                            self.signed.push(header.clone());
                        }
                    }
                    self.queues[p.slot()].push_back((from, m));
                }
            }
        }
    }

    /// What party `from` really sends `to` in place of the honest `msg` (`None`: nothing).
    fn twin(&self, from: PartyId, to: PartyId, msg: &Message<F>) -> Option<Message<F>> {
        let b = self.behaviours[from.slot()];
        let key = &self.signing[from.slot()].0;
        let job = self.phase != Phase::Setup;
        match (b, msg) {
            (Behaviour::Withhold, _) if job => None,
            (Behaviour::BadRandomnessContribution, Message::Contribution(c))
                if self.phase == Phase::Setup
                    && c.header.round.saturating_sub(SETUP_ROUND) >> 12 == 0 =>
            {
                let mut c = c.clone();
                c.value[0] ^= to.get() as u8;
                let h = &c.header;
                c.header = SignedHeader::sign(
                    key,
                    h.job,
                    h.round,
                    h.slot,
                    h.sender,
                    contribution_hash(&c.value),
                );
                Some(Message::Contribution(c))
            }
            (Behaviour::Equivocate, Message::Value { header, payload })
                if job && to.get().is_multiple_of(2) && !payload.is_empty() =>
            {
                Some(bump(key, header, payload))
            }
            _ => Some(msg.clone()),
        }
    }

    fn idle(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }
}

/// `header`'s value with 1 added to its first element, signed again.
fn bump<F: PrimeField>(key: &SigningKey, header: &SignedHeader, payload: &[F]) -> Message<F> {
    let mut p = payload.to_vec();
    if let Some(x) = p.first_mut() {
        *x += F::ONE;
    }
    let header = SignedHeader::sign(
        key,
        header.job,
        header.round,
        header.slot,
        header.sender,
        payload_hash(&p),
    );
    Message::Value {
        header,
        payload: Arc::new(p),
    }
}

/// One party's machine in the driver, and how it ended.
struct Slot<M, O> {
    machine: M,
    output: Option<Result<O, RoundError>>,
}

impl<M, O> Slot<M, O> {
    fn record<F>(
        &mut self,
        r: Result<crate::mpc::round::Step<F, O>, RoundError>,
    ) -> Vec<Outgoing<F>> {
        match r {
            Ok(step) => {
                if let Some(o) = step.output {
                    self.output = Some(Ok(o));
                }
                step.send
            }
            Err(e) if e.is_refusal() => {
                tracing::debug!(error = %e, "message refused");
                Vec::new()
            }
            Err(e) => {
                self.output = Some(Err(e));
                Vec::new()
            }
        }
    }
}

/// What the driver offers an idle machine: the dealer's reveal in a check.
type Hook<'h, M, O> = dyn Fn(PartyId, &mut M) -> Option<Result<O, RoundError>> + 'h;

/// Runs the machines (`None`: a party that takes no part) to the end; `hook` is offered every
/// machine without output whenever the network is idle (the dealer's reveal). Returns each
/// machine and its output.
fn drive<F, M>(
    net: &mut Net<'_, F>,
    machines: Vec<Option<M>>,
    parallel: bool,
    hook: &Hook<'_, M, M::Output>,
) -> Vec<Option<Slot<M, M::Output>>>
where
    F: PrimeField,
    M: Machine<F> + Send,
    M::Output: Send,
{
    let n = net.n;
    let mut slots: Vec<Option<Slot<M, M::Output>>> = machines
        .into_iter()
        .map(|m| {
            m.map(|machine| Slot {
                machine,
                output: None,
            })
        })
        .collect();
    let ids: Vec<PartyId> = PartyId::all(n).collect();
    // Every party's start, then deliveries until the network is idle, then the deadline.
    let work = |slot: &mut Option<Slot<M, M::Output>>,
                inbox: Vec<(PartyId, Message<F>)>,
                start: bool|
     -> Vec<Outgoing<F>> {
        let Some(s) = slot.as_mut() else {
            return Vec::new();
        };
        if s.output.is_some() {
            return Vec::new();
        }
        let mut send = Vec::new();
        if start {
            let r = s.machine.start();
            send.extend(s.record(r));
        }
        for (from, m) in inbox {
            if s.output.is_some() {
                break;
            }
            let r = s.machine.handle(from, m);
            send.extend(s.record(r));
        }
        send
    };
    let mut start = true;
    loop {
        if !start && net.idle() {
            let mut progressed = false;
            for (s, id) in slots.iter_mut().zip(&ids) {
                let Some(s) = s.as_mut().filter(|s| s.output.is_none()) else {
                    continue;
                };
                if let Some(o) = hook(*id, &mut s.machine) {
                    s.output = Some(o);
                    progressed = true;
                }
            }
            let mut out = Vec::new();
            for (s, id) in slots.iter_mut().zip(&ids) {
                let Some(s) = s.as_mut().filter(|s| s.output.is_none()) else {
                    continue;
                };
                if let Some(round) = s.machine.waiting() {
                    let r = s.machine.deadline(round);
                    progressed |= r.as_ref().map_or(true, |st| st.output.is_some())
                        || s.machine.waiting() != Some(round);
                    out.push((*id, s.record(r)));
                }
            }
            for (id, o) in out {
                progressed |= !o.is_empty();
                net.post(id, o);
            }
            if !progressed {
                break;
            }
            continue;
        }
        let inboxes: Vec<Vec<(PartyId, Message<F>)>> = net
            .queues
            .iter_mut()
            .map(|q| q.drain(..).collect())
            .collect();
        let sends: Vec<Vec<Outgoing<F>>> = if parallel {
            std::thread::scope(|scope| {
                let handles: Vec<_> = slots
                    .iter_mut()
                    .zip(inboxes)
                    .map(|(slot, inbox)| {
                        let work = &work;
                        scope.spawn(move || work(slot, inbox, start))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_default())
                    .collect()
            })
        } else {
            slots
                .iter_mut()
                .zip(inboxes)
                .map(|(slot, inbox)| work(slot, inbox, start))
                .collect()
        };
        start = false;
        for (id, send) in ids.iter().zip(sends) {
            net.post(*id, send);
        }
    }
    slots
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
        crate::mpc::prss::key_sets(n, t)?;
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
        let machines = PartyId::all(n)
            .map(|me| {
                let mut seed = [0u8; 32];
                rng.fill(&mut seed);
                Setup::<F>::new(
                    me,
                    t,
                    roster,
                    verifying.clone(),
                    signing[me.slot()].0.clone(),
                    seed,
                )
                .map(Some)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut net = Net::new(n, &signing, scenario.behaviours.clone(), Phase::Setup);
        let slots = drive(&mut net, machines, false, &|_, _| None);
        let mut outputs = Vec::with_capacity(n);
        for (i, s) in slots.into_iter().enumerate() {
            let out = s.and_then(|s| s.output);
            match out {
                Some(Ok(o)) => outputs.push(Some(o)),
                Some(Err(e)) if scenario.behaviour(i + 1) == Behaviour::Honest => {
                    return Err(e.into())
                }
                _ => outputs.push(None),
            }
        }
        let first = outputs
            .iter()
            .enumerate()
            .find(|(i, o)| o.is_some() && scenario.behaviour(i + 1) == Behaviour::Honest)
            .and_then(|(_, o)| o.clone())
            .ok_or_else(|| CommitteeError::Diverged("no honest party finished setup".into()))?;
        for (i, o) in outputs.iter().enumerate() {
            if scenario.behaviour(i + 1) != Behaviour::Honest {
                continue;
            }
            match o {
                Some(o) if o.excluded == first.excluded => {}
                _ => {
                    return Err(CommitteeError::Diverged(format!(
                        "party {} ended setup with another exclusion set",
                        i + 1
                    )))
                }
            }
        }
        let excluded: BTreeSet<usize> = first.excluded.iter().map(|p| p.point()).collect();
        let prss = outputs
            .into_iter()
            .enumerate()
            .map(|(i, o)| match o.and_then(|o| o.prss) {
                Some(p) if !excluded.contains(&(i + 1)) => Ok(p),
                // An excluded party gets a placeholder it never uses.
                _ => Prss::new(n, t, i as u32 + 1, placeholder_keys(n, t, i + 1)?),
            })
            .collect::<Result<Vec<_>, PrssError>>()?;
        Ok(Committee {
            params,
            signing,
            verifying,
            prss,
            excluded,
            equivocations: first.evidence,
        })
    }

    /// Parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// Party `p`'s PRSS generator.
    pub fn prss(&self, p: PartyId) -> Option<&Prss<F>> {
        self.prss.get(p.slot())
    }

    /// Parties excluded at setup.
    pub fn excluded(&self) -> &BTreeSet<usize> {
        &self.excluded
    }

    /// The parties' public keys, `[i - 1]` for party `i`.
    pub fn roster_keys(&self) -> Vec<PartyKey> {
        self.verifying
            .iter()
            .map(|v| PartyKey(v.to_bytes()))
            .collect()
    }

    fn ignored(&self, convicted: &BTreeSet<usize>) -> BTreeSet<PartyId> {
        self.excluded
            .iter()
            .chain(convicted)
            .filter_map(|i| PartyId::new(*i, self.params.n()).ok())
            .collect()
    }

    /// Multiplies share vectors element-wise through the committee (one degree reduction of
    /// the whole batch, the parties in parallel): `a[i - 1]`, `b[i - 1]` are party `i`'s shares;
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
        let tasks = (0..self.params.n())
            .map(|i| Task::Products { a: &a[i], b: &b[i] })
            .collect();
        Ok(self
            .tasks(job, tasks, true)?
            .into_iter()
            .map(|e| e.values)
            .collect())
    }

    /// Opens degree-`t` share vectors to the committee (one signed echo-broadcast, decoded
    /// with Berlekamp-Welch by every party): `shares[i - 1]` is party `i`'s vector; returns what
    /// every party opened. All parties honest.
    ///
    /// # Errors
    /// [`EvalError`] from the opening.
    pub fn open(&self, job: Hash32, shares: &[Vec<F>]) -> Result<Vec<Vec<F>>, EvalError> {
        let tasks = (0..self.params.n())
            .map(|i| Task::Open { shares: &shares[i] })
            .collect();
        Ok(self
            .tasks(job, tasks, true)?
            .into_iter()
            .map(|e| e.values)
            .collect())
    }

    /// Evaluates `plan` through the committee, all parties honest: `columns[i - 1]` are party
    /// `i`'s share columns; returns every party's [`Evaluation`] (unmasked shares).
    ///
    /// # Errors
    /// [`EvalError`] from any round.
    pub fn evaluate(
        &self,
        job: Hash32,
        plan: &Plan,
        columns: &[Vec<Vec<F>>],
    ) -> Result<Vec<Evaluation<F>>, EvalError> {
        let tasks = (0..self.params.n())
            .map(|i| Task::Plan {
                plan,
                columns: &columns[i],
            })
            .collect();
        self.tasks(job, tasks, plan.rows >= 1_000)
    }

    fn tasks(
        &self,
        job: Hash32,
        tasks: Vec<Task<'_, F>>,
        parallel: bool,
    ) -> Result<Vec<Evaluation<F>>, EvalError> {
        let n = self.params.n();
        let machines = tasks
            .into_iter()
            .enumerate()
            .map(|(i, task)| {
                EvalMachine::new(
                    &self.prss[i],
                    job,
                    task,
                    self.verifying.clone(),
                    self.signing[i].0.clone(),
                    self.ignored(&BTreeSet::new()),
                )
                .ok()
            })
            .collect();
        let mut net = Net::new(n, &self.signing, vec![Behaviour::Honest; n], Phase::Compute);
        let slots = drive(&mut net, machines, parallel, &|_, _| None);
        slots
            .into_iter()
            .map(|s| match s.and_then(|s| s.output) {
                Some(Ok(v)) => Ok(v),
                Some(Err(RoundError::Eval(e))) => Err(e),
                other => Err(EvalError::Reduction {
                    round: 0,
                    source: crate::mpc::mult::MultError::TooFewOpenings {
                        got: usize::from(other.is_some()),
                        need: 2 * self.params.t() + 1,
                    },
                }),
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

/// A batch check that ran: its resolution and every signed opening header.
struct CheckRun {
    resolution: Resolution,
    /// Read by the tests, which pair the openings of different checks.
    #[cfg_attr(not(test), allow(dead_code))]
    headers: Vec<SignedHeader>,
}

/// The batch check of a dealing among the committee (store or mask) with complaint
/// resolution, every party a [`CheckMachine`] and the dealer revealing the vectors complained
/// about; returns the resolution and the signed openings, and adds the equivocators convicted
/// on the way. Honest parties must agree.
///
/// Openings are signed for the check's own identifier ([`check::check_id`] of `tag` and the
/// receipts root), never the roster alone: two checks on one roster open different values,
/// which must not read as equivocation.
#[allow(clippy::too_many_arguments)]
fn run_check<F: PrimeField>(
    committee: &Committee<F>,
    scenario: &Scenario,
    phase: Phase,
    tag: &[u8],
    context: &Hash32,
    dealt: &[PartyShares<F>],
    convicted: &mut BTreeSet<usize>,
    equivocations: &mut Vec<Equivocation>,
) -> Result<CheckRun, CommitteeError> {
    let n = committee.params.n();
    let receipts: Vec<Hash32> = dealt.iter().map(|p| p.receipt_hash(context)).collect();
    let ignored = committee.ignored(convicted);
    let round = if phase == Phase::StoreCheck {
        STORE_CHECK_ROUND
    } else {
        MASK_CHECK_ROUND
    };
    let machines = PartyId::all(n)
        .map(|me| {
            if ignored.contains(&me) {
                return Ok(None);
            }
            let input = CheckInput {
                params: committee.params,
                me,
                tag: tag.to_vec(),
                round,
                context: *context,
                receipts: receipts.clone(),
                shares: dealt[me.slot()].clone(),
                keys: committee.verifying.clone(),
                ignored: ignored.clone(),
            };
            let mut m = CheckMachine::new(input, committee.signing[me.slot()].0.clone())?;
            if phase == Phase::StoreCheck
                && scenario.behaviour(me.point()) == Behaviour::WrongCheckOpening
            {
                m.lie_in_opening(F::ONE);
            }
            Ok(Some(m))
        })
        .collect::<Result<Vec<_>, RoundError>>()?;
    let mut net = Net::new(n, &committee.signing, scenario.behaviours.clone(), phase);
    // The dealer reveals the vectors it dealt to the parties whose openings are off.
    let reveal = |_: PartyId, m: &mut CheckMachine<F>| {
        let off: Vec<PartyShares<F>> = m
            .complaint()?
            .iter()
            .map(|p| dealt[p.slot()].clone())
            .collect();
        Some(m.reveal(&off))
    };
    let slots = drive(&mut net, machines, false, &reveal);
    let mut views = Vec::new();
    for (i, s) in slots.into_iter().enumerate() {
        let me = i + 1;
        if scenario.behaviour(me) != Behaviour::Honest || ignored.contains(&PartyId::new(me, n)?) {
            continue;
        }
        match s.and_then(|s| s.output) {
            Some(Ok(o)) => views.push(o),
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(CommitteeError::Diverged(format!(
                    "party {me} did not finish the check"
                )))
            }
        }
    }
    let senders = |o: &check::CheckOutput<F>| {
        o.evidence
            .iter()
            .map(Equivocation::sender)
            .collect::<BTreeSet<_>>()
    };
    let mut views = views.into_iter();
    let first = views
        .next()
        .ok_or_else(|| CommitteeError::Diverged("no honest party".into()))?;
    for v in views {
        if v.resolution != first.resolution
            || v.openings != first.openings
            || senders(&v) != senders(&first)
        {
            return Err(CommitteeError::Diverged(format!(
                "honest views of check round {round} differ"
            )));
        }
    }
    for ev in first.evidence {
        if convicted.insert(ev.sender() as usize) {
            equivocations.push(ev);
        }
    }
    Ok(CheckRun {
        resolution: first.resolution,
        headers: net.signed,
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
    run_plan::<F>(scenario, data, plan, &parsed.to_string(), &|_, _| {})
}

/// What a test may do to party `i`'s evaluation machine before it starts (deviations beyond
/// the [`Behaviour`]s, e.g. [`EvalMachine::tamper`]).
pub type Prepare<F> = dyn for<'m> Fn(usize, &mut EvalMachine<'m, F>);

/// Runs a plan (built by hand or by the planner; `label` is the query text the job signs)
/// over the CSV `data` through the committee of `scenario`, end to end; `prepare` is offered
/// every party's evaluation machine before it starts.
///
/// # Errors
/// As [`run`].
pub fn run_plan<F: PrimeField>(
    scenario: &Scenario,
    data: &Dataset,
    plan: Plan,
    label: &str,
    prepare: &Prepare<F>,
) -> Result<Outcome, CommitteeError> {
    let committee = Committee::<F>::setup(scenario)?;
    let params = committee.params;
    let n = params.n();
    let mut convicted: BTreeSet<usize> = committee.excluded.clone();
    let mut equivocations = committee.equivocations.clone();
    let mut rng = ChaCha20Rng::seed_from_u64(scenario.seed ^ 0x5eed);
    let roster = committee.roster_keys();
    let done = |status, convicted: BTreeSet<usize>, equivocations, plan: Plan| Outcome {
        status,
        result: None,
        opened: None,
        disclosed: None,
        gates: None,
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
        Phase::StoreCheck,
        check::STORE_CHECK_TAG,
        &context,
        &dealt,
        &mut convicted,
        &mut equivocations,
    )?
    .resolution
    {
        Resolution::Accepted { liars } => convicted.extend(liars.iter().map(|p| p.point())),
        Resolution::Refused { reason, liars } => {
            convicted.extend(liars.iter().map(|p| p.point()));
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
    let job_context = digest_json(b"btcmpc/v1/job", &(hex::encode(job), label));
    match run_check(
        &committee,
        scenario,
        Phase::MaskCheck,
        &check::mask_check_tag(&job),
        &job_context,
        &mask_shares,
        &mut convicted,
        &mut equivocations,
    )?
    .resolution
    {
        Resolution::Accepted { liars } => convicted.extend(liars.iter().map(|p| p.point())),
        Resolution::Refused { reason, liars } => {
            convicted.extend(liars.iter().map(|p| p.point()));
            return Ok(done(
                Status::JobRefused(reason),
                convicted,
                equivocations,
                plan,
            ));
        }
    }

    // Compute: the parties not convicted, in parallel.
    let ignored = committee.ignored(&convicted);
    let machines = (0..n)
        .map(|i| {
            let me = PartyId::new(i + 1, n)?;
            if ignored.contains(&me) {
                return Ok(None);
            }
            let task = Task::Plan {
                plan: &plan,
                columns: &dealt[i].columns,
            };
            let mut m = EvalMachine::new(
                &committee.prss[i],
                job,
                task,
                committee.verifying.clone(),
                committee.signing[i].0.clone(),
                ignored.clone(),
            )?;
            match scenario.behaviour(i + 1) {
                Behaviour::WrongProductContribution => m.lie_in_openings(F::ONE),
                Behaviour::WrongOpening => m.lie_in_public_openings(F::ONE),
                _ => {}
            }
            prepare(i + 1, &mut m);
            Ok(Some(m))
        })
        .collect::<Result<Vec<_>, RoundError>>()?;
    let mut net = Net::new(
        n,
        &committee.signing,
        scenario.behaviours.clone(),
        Phase::Compute,
    );
    // Parties compute in parallel when there is enough to compute.
    let parallel = plan.rows >= 10_000;
    let slots = drive(&mut net, machines, parallel, &|_, _| None);
    let mut outputs: Vec<(PartyId, Vec<F>)> = Vec::new();
    let mut abort: Option<String> = None;
    // What the honest parties agree on: gate bits and disclosure.
    let mut public: Option<(Vec<bool>, Vec<bool>)> = None;
    for (i, s) in slots.into_iter().enumerate() {
        let Some(s) = s else { continue };
        let b = scenario.behaviour(i + 1);
        for ev in s.machine.evidence() {
            if convicted.insert(ev.sender() as usize) {
                equivocations.push(ev.clone());
            }
        }
        if b == Behaviour::Honest {
            for f in s.machine.opening_faults() {
                if let Err(e) = f.verify(&job, &committee.verifying, params.t()) {
                    return Err(CommitteeError::Diverged(format!(
                        "party {} named {:?} on evidence that does not verify: {e}",
                        i + 1,
                        f.culprits
                    )));
                }
                convicted.extend(f.culprits.iter().map(|c| c.point()));
            }
            if let Some(Ok(e)) = &s.output {
                let mine = (e.gates.clone(), e.disclosed.clone());
                match &public {
                    Some(p) if *p != mine => {
                        return Err(CommitteeError::Diverged(format!(
                            "party {} opened gates {:?}, another {:?}",
                            i + 1,
                            mine.0,
                            p.0
                        )))
                    }
                    _ => public = Some(mine),
                }
            }
        }
        let r = match s.output {
            Some(Ok(a)) => {
                mask_outputs(&a.values, &mask_shares[i].columns[0]).map_err(RoundError::from)
            }
            Some(Err(e)) => Err(e),
            None => Err(RoundError::Stalled("the evaluation did not finish".into())),
        };
        match r {
            Ok(mut y) if b != Behaviour::Withhold => {
                if b == Behaviour::WrongOutputShare {
                    for v in y.iter_mut() {
                        *v += F::ONE;
                    }
                }
                outputs.push((PartyId::new(i + 1, n)?, y));
            }
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
    let vectors: Vec<(PartyId, &[F])> = outputs.iter().map(|(i, v)| (*i, &v[..])).collect();
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
    convicted.extend(culprits.iter().map(|p| p.point()));
    let opened: Vec<BigInt> = values
        .iter()
        .zip(&masks)
        .map(|(y, m)| to_signed(*y - *m))
        .collect();
    let (gates, disclosed) = public.unwrap_or_else(|| (Vec::new(), vec![true; opened.len()]));
    // An output reading a sum of a closed gate is finished as withheld.
    let result = Some(plan.finish_gated(&opened, &gates)?);
    Ok(Outcome {
        status: Status::Delivered,
        result,
        opened: Some(opened),
        disclosed: Some(disclosed),
        gates: Some(gates),
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
            Phase::StoreCheck,
            check::STORE_CHECK_TAG,
            &context,
            &dealt,
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
    fn products_then_an_opening_give_every_party_the_products() {
        let committee = Committee::<F>::setup(&Scenario::honest(4, 1)).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let x: Vec<F> = (0..50).map(|i| F::from_i64(i * 7 - 100)).collect();
        let y: Vec<F> = (0..50).map(|i| F::from_i64(i * i + 1)).collect();
        let a = crate::mpc::shamir::deal_vec(&x, committee.params, &mut rng);
        let b = crate::mpc::shamir::deal_vec(&y, committee.params, &mut rng);
        let c = committee.multiply([1; 32], &a, &b).unwrap();
        let opened = committee.open([2; 32], &c).unwrap();
        let want: Vec<F> = x.iter().zip(&y).map(|(p, q)| *p * *q).collect();
        assert_eq!(opened.len(), 4);
        for o in &opened {
            assert_eq!(o, &want);
        }
        // The opening reveals the values, not the shares: one party's shares are not them.
        assert_ne!(c[0], want);
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
