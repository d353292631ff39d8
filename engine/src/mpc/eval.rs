//! Evaluation of a [`Plan`] on one party's shares.
//!
//! Each opened sum of the plan is computed as a share of degree `t`:
//!
//! - linear parts locally: sums of share vectors ([`PrimeField::sum_slice`]), public constants
//!   and scale lifts;
//! - a product at the top of an aggregate (`sum(a * b)`, `dot`, `var`, `cov`) as a local dot
//!   product of the two share vectors, a degree-`2t` value, reduced once per aggregate (all the
//!   aggregates of a query in one batch) with [`crate::mpc::mult`];
//! - a product inside a row expression (`sum(a * b * c)`) element-wise, reduced in one batch
//!   per product node before it is used.
//!
//! Evaluation is a round-based machine ([`EvalMachine`]) with no thread, queue or clock: when
//! the evaluation needs a degree reduction it masks this party's degree-`2t` values with a PRSS
//! double sharing ([`Prss::double`]) and yields them as a signed echo-broadcast
//! ([`crate::mpc::echo::Broadcast`]) of round `r`; the driver delivers the other parties'
//! messages; with the openings of round `r` the machine opens the masked values (checking that
//! the over-determined openings lie on one degree-`2t` polynomial), re-shares them and resumes.
//! Damgård-Nielsen, "Scalable and Unconditionally Secure Multiparty Computation", CRYPTO 2007,
//! with PRSS double sharings instead of dealt ones.
//!
//! Resuming re-runs the (deterministic) local part of the evaluation from the start with the
//! reduced values of the rounds already done: the machine's state is its inputs plus those
//! rounds, so a driver that persists the inputs and the messages delivered can re-create it
//! after a restart; it then re-emits byte-identical signed messages. A driver that re-creates
//! the machine for every event keeps the local passes in a [`LocalMemo`] so that each runs
//! once. The party finally adds the
//! service's output mask ([`mask_outputs`]) and hands the masked shares to the service.
//!
//! Re-randomization: outputs of aggregates with products are re-shared by the Damgård-Nielsen
//! step (their coefficients come from PRSS), so they carry no trace of the stored sharings.
//! A linear aggregate's output polynomial is the sum of the owner's dealing polynomials plus the
//! service's mask: its coefficients above the constant are linear in the owner's dealing
//! randomness, which is independent of the data, so they reveal nothing beyond the result even
//! to the service together with `t` parties (who, knowing `t` shares and the result, determine
//! the polynomial anyway). A PRSS zero sharing of degree `t` does not exist (see
//! [`crate::mpc::prss`]), and a re-sharing round would turn a cheater that is named at decoding
//! into an unattributed abort, so linear aggregates are not re-shared.

use std::borrow::Cow;
use std::collections::BTreeSet;

use k256::schnorr::{SigningKey, VerifyingKey};

use crate::mpc::echo::{Broadcast, Equivocation};
use crate::mpc::field::PrimeField;
use crate::mpc::mult::{self, MultError};
use crate::mpc::prss::Prss;
use crate::mpc::query::num::to_field;
use crate::mpc::query::{Node, Plan};
use crate::mpc::round::{Machine, Message, Outgoing, PartyId, RoundError, RoundId, Step};

/// Errors of evaluation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A share column is missing or has the wrong number of rows.
    #[error("share column {column} has {got} rows, the plan expects {expected}")]
    ColumnLength {
        /// Field column index.
        column: usize,
        /// Rows held (0 when missing).
        got: usize,
        /// Rows of the plan.
        expected: usize,
    },
    /// The mask vector has the wrong length.
    #[error("{got} output masks for {expected} opened sums")]
    MaskCount {
        /// Masks given.
        got: usize,
        /// Opened sums.
        expected: usize,
    },
    /// A degree reduction failed (inconsistent or missing openings): the step aborts.
    #[error("degree reduction in round {round}: {source}")]
    Reduction {
        /// The round.
        round: u32,
        /// What failed.
        #[source]
        source: MultError,
    },
    /// The plan uses an operation this evaluator does not run.
    #[error("the evaluator does not run {0}")]
    Unsupported(&'static str),
    /// The plan needs a degree reduction, which [`evaluate_local`] cannot do.
    #[error("the plan multiplies shares: round {round} needs the other parties")]
    NeedsRound {
        /// The round it reached.
        round: u32,
    },
}

/// What a computation needs: a plan over share columns, or element-wise products.
#[derive(Debug, Clone, Copy)]
pub enum Task<'a, F> {
    /// Every opened sum of `plan` over `columns[field column][row]`.
    Plan {
        /// The plan.
        plan: &'a Plan,
        /// This party's share columns.
        columns: &'a [Vec<F>],
    },
    /// `a[k] * b[k]` for every `k`, one reduction.
    Products {
        /// This party's shares of the left factors.
        a: &'a [F],
        /// Of the right factors (same length).
        b: &'a [F],
    },
}

/// Why the local part of an evaluation stopped.
enum Stop<F> {
    /// It needs the degree-`2t` values reduced in the next round.
    Need(Vec<F>),
    /// It failed.
    Fail(EvalError),
}

impl<F> From<EvalError> for Stop<F> {
    fn from(e: EvalError) -> Self {
        Stop::Fail(e)
    }
}

/// The local part of one evaluation, replayed over the rounds already reduced.
struct Run<'r, F> {
    reduced: &'r [Vec<F>],
    cursor: usize,
}

enum Vals<'a, F: Clone> {
    Const(F),
    Shares(Cow<'a, [F]>),
}

impl<'r, F: PrimeField> Run<'r, F> {
    /// The next round's reduced values, or a stop asking for it.
    fn reduce(
        &mut self,
        c2t: impl FnOnce() -> Result<Vec<F>, EvalError>,
    ) -> Result<Vec<F>, Stop<F>> {
        if let Some(v) = self.reduced.get(self.cursor) {
            self.cursor += 1;
            return Ok(v.clone());
        }
        Err(Stop::Need(c2t()?))
    }

    fn task(&mut self, task: Task<'_, F>) -> Result<Vec<F>, Stop<F>> {
        match task {
            Task::Plan { plan, columns } => self.evaluate(plan, columns),
            Task::Products { a, b } => {
                let round = self.cursor as u32;
                self.reduce(|| {
                    mult::local_products(a, b)
                        .map_err(|source| EvalError::Reduction { round, source })
                })
            }
        }
    }

    fn evaluate(&mut self, plan: &Plan, columns: &[Vec<F>]) -> Result<Vec<F>, Stop<F>> {
        if !plan.gates.is_empty() {
            return Err(EvalError::Unsupported("disclosure gates").into());
        }
        for o in &plan.opened {
            check_columns(&o.node, columns, plan.rows)?;
        }
        let mut out = Vec::with_capacity(plan.opened.len());
        let mut to_reduce = Vec::new();
        for (k, o) in plan.opened.iter().enumerate() {
            let v = self.aggregate(&o.node, columns, plan.rows)?;
            if o.degree >= 2 {
                to_reduce.push(k);
            }
            out.push(v);
        }
        if !to_reduce.is_empty() {
            let c2t: Vec<F> = to_reduce.iter().map(|k| out[*k]).collect();
            let reduced = self.reduce(|| Ok(c2t))?;
            for (k, v) in to_reduce.into_iter().zip(reduced) {
                out[k] = v;
            }
        }
        Ok(out)
    }

    /// The row sum of `node` (degree `2t` when a product sits at its top).
    fn aggregate(&mut self, node: &Node, columns: &[Vec<F>], rows: usize) -> Result<F, Stop<F>> {
        Ok(match node {
            Node::Add(a, b) => {
                self.aggregate(a, columns, rows)? + self.aggregate(b, columns, rows)?
            }
            Node::Sub(a, b) => {
                self.aggregate(a, columns, rows)? - self.aggregate(b, columns, rows)?
            }
            Node::Neg(a) => -self.aggregate(a, columns, rows)?,
            Node::Scale(a, k) => self.aggregate(a, columns, rows)? * to_field::<F>(k),
            Node::Mul(a, b) => {
                let x = self.rows(a, columns)?;
                let y = self.rows(b, columns)?;
                match (x, y) {
                    (Vals::Shares(x), Vals::Shares(y)) => F::dot(&x, &y),
                    (Vals::Const(c), Vals::Shares(v)) | (Vals::Shares(v), Vals::Const(c)) => {
                        F::sum_slice(&v) * c
                    }
                    (Vals::Const(c), Vals::Const(d)) => c * d * F::from_u64(rows as u64),
                }
            }
            Node::LessThanZero { .. } | Node::EqualsZero { .. } => {
                return Err(EvalError::Unsupported("comparisons").into())
            }
            Node::Column(_) | Node::Const(_) => match self.rows(node, columns)? {
                Vals::Shares(v) => F::sum_slice(&v),
                Vals::Const(c) => c * F::from_u64(rows as u64),
            },
        })
    }

    /// The per-row values of `node` as degree-`t` shares.
    fn rows<'c>(&mut self, node: &Node, columns: &'c [Vec<F>]) -> Result<Vals<'c, F>, Stop<F>> {
        Ok(match node {
            Node::Column(c) => Vals::Shares(Cow::Borrowed(&columns[*c][..])),
            Node::Const(k) => Vals::Const(to_field(k)),
            Node::LessThanZero { .. } | Node::EqualsZero { .. } => {
                return Err(EvalError::Unsupported("comparisons").into())
            }
            Node::Neg(a) => match self.rows(a, columns)? {
                Vals::Const(c) => Vals::Const(-c),
                Vals::Shares(v) => Vals::Shares(Cow::Owned(v.iter().map(|x| -*x).collect())),
            },
            Node::Scale(a, k) => {
                let k = to_field::<F>(k);
                match self.rows(a, columns)? {
                    Vals::Const(c) => Vals::Const(c * k),
                    Vals::Shares(v) => {
                        let mut v = v.into_owned();
                        for x in v.iter_mut() {
                            *x *= k;
                        }
                        Vals::Shares(Cow::Owned(v))
                    }
                }
            }
            Node::Add(a, b) | Node::Sub(a, b) => {
                let sub = matches!(node, Node::Sub(..));
                let x = self.rows(a, columns)?;
                let y = self.rows(b, columns)?;
                match (x, y) {
                    (Vals::Const(c), Vals::Const(d)) => {
                        Vals::Const(if sub { c - d } else { c + d })
                    }
                    (Vals::Shares(v), Vals::Const(d)) => {
                        let mut v = v.into_owned();
                        let d = if sub { -d } else { d };
                        for x in v.iter_mut() {
                            *x += d;
                        }
                        Vals::Shares(Cow::Owned(v))
                    }
                    (Vals::Const(c), Vals::Shares(v)) => Vals::Shares(Cow::Owned(
                        v.iter()
                            .map(|x| if sub { c - *x } else { c + *x })
                            .collect(),
                    )),
                    (Vals::Shares(v), Vals::Shares(w)) => {
                        let mut v = v.into_owned();
                        for (x, y) in v.iter_mut().zip(w.iter()) {
                            if sub {
                                *x -= *y;
                            } else {
                                *x += *y;
                            }
                        }
                        Vals::Shares(Cow::Owned(v))
                    }
                }
            }
            Node::Mul(a, b) => {
                let x = self.rows(a, columns)?;
                let y = self.rows(b, columns)?;
                match (x, y) {
                    (Vals::Const(c), Vals::Const(d)) => Vals::Const(c * d),
                    (Vals::Const(c), Vals::Shares(v)) | (Vals::Shares(v), Vals::Const(c)) => {
                        Vals::Shares(Cow::Owned(v.iter().map(|x| *x * c).collect()))
                    }
                    (Vals::Shares(v), Vals::Shares(w)) => {
                        let round = self.cursor as u32;
                        Vals::Shares(Cow::Owned(self.reduce(|| {
                            mult::local_products(&v, &w)
                                .map_err(|source| EvalError::Reduction { round, source })
                        })?))
                    }
                }
            }
        })
    }
}

/// Every opened sum of a plan that multiplies no shares, computed locally.
///
/// # Errors
/// [`EvalError::ColumnLength`]; [`EvalError::NeedsRound`] if the plan needs a degree
/// reduction (run an [`EvalMachine`]).
pub fn evaluate_local<F: PrimeField>(plan: &Plan, columns: &[Vec<F>]) -> Result<Vec<F>, EvalError> {
    match (Run {
        reduced: &[],
        cursor: 0,
    })
    .evaluate(plan, columns)
    {
        Ok(v) => Ok(v),
        Err(Stop::Fail(e)) => Err(e),
        Err(Stop::Need(_)) => Err(EvalError::NeedsRound { round: 0 }),
    }
}

/// One run of the local part of an evaluation over the rounds reduced so far: it finished, or
/// it needs the next round's degree-`2t` values reduced.
#[derive(Debug, Clone)]
enum Pass<F> {
    Done(Vec<F>),
    Need(Vec<F>),
}

/// The local passes of one evaluation, kept across rebuilds of its [`EvalMachine`]
/// ([`EvalMachine::use_memo`]) by a driver that re-creates the machine from its log for every
/// event, as the party daemon does. The local part is deterministic in the task and the rounds
/// already reduced, and every rebuild replays the passes of all the rounds before: with a memo
/// each pass over the share columns runs once per job instead of once per event.
///
/// A pass is kept with the reduced rounds it ran on (one copy of them, besides the machine's)
/// and used only for those same rounds, compared value by value; one memo serves one task (one
/// plan over one set of columns, one PRSS): a driver keeps one per job.
#[derive(Debug)]
pub struct LocalMemo<F> {
    /// The reduced rounds the passes ran on (`passes[k]` on `reduced[..k]`).
    reduced: Vec<Vec<F>>,
    passes: Vec<Option<Pass<F>>>,
    runs: usize,
}

impl<F> Default for LocalMemo<F> {
    fn default() -> Self {
        LocalMemo {
            reduced: Vec::new(),
            passes: Vec::new(),
            runs: 0,
        }
    }
}

impl<F: PrimeField> LocalMemo<F> {
    /// How many passes over the share columns ran with this memo (the others were looked up).
    pub fn runs(&self) -> usize {
        self.runs
    }

    fn get(&self, reduced: &[Vec<F>]) -> Option<&Pass<F>> {
        let k = reduced.len();
        let pass = self.passes.get(k)?.as_ref()?;
        (self.reduced.get(..k)? == reduced).then_some(pass)
    }

    fn put(&mut self, reduced: &[Vec<F>], pass: Pass<F>) {
        let common = self
            .reduced
            .iter()
            .zip(reduced)
            .take_while(|(a, b)| a == b)
            .count();
        if common < self.reduced.len().min(reduced.len()) {
            // Other reduced values from round `common` on: the passes after it are stale.
            self.reduced.truncate(common);
            self.passes.truncate(common + 1);
        }
        if reduced.len() > self.reduced.len() {
            self.reduced
                .extend_from_slice(&reduced[self.reduced.len()..]);
        }
        let k = reduced.len();
        if self.passes.len() <= k {
            self.passes.resize(k + 1, None);
        }
        self.passes[k] = Some(pass);
        self.runs += 1;
    }
}

/// The round in progress: its broadcast and the degree-`t` half of its double sharing.
#[derive(Debug)]
struct Current<F> {
    broadcast: Broadcast<F>,
    rt: Vec<F>,
    len: usize,
}

/// One party's evaluation of a [`Task`] as a round-based machine (see the module docs).
///
/// Round `r` (from 0) is an echo-broadcast of job `job`, round `r`, of this party's masked
/// degree-`2t` values; PRSS counter `r`. Messages of round `r + 1` that arrive while this party
/// is still in round `r` are kept; older rounds are refused ([`RoundError::PastRound`]).
///
/// What a driver persists to resume: the PRSS keys, the job, the task's inputs (plan and share
/// columns), the parties ignored, the signing key, and the messages delivered.
pub struct EvalMachine<'a, F> {
    prss: &'a Prss<F>,
    job: [u8; 32],
    task: Task<'a, F>,
    me: PartyId,
    keys: Vec<VerifyingKey>,
    signer: SigningKey,
    ignored: BTreeSet<PartyId>,
    reduced: Vec<Vec<F>>,
    current: Option<Current<F>>,
    early: Vec<(PartyId, Message<F>)>,
    evidence: Vec<Equivocation>,
    lie: Option<F>,
    done: bool,
    memo: Option<&'a mut LocalMemo<F>>,
}

impl<F> std::fmt::Debug for EvalMachine<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalMachine")
            .field("me", &self.me)
            .field("rounds_done", &self.reduced.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<'a, F: PrimeField> EvalMachine<'a, F> {
    /// The evaluation of `task` by the holder of `prss` (whose index is this party) in job
    /// `job`; `keys[i - 1]` is party `i`'s key; parties in `ignored` (excluded or convicted)
    /// are neither waited for nor heard.
    ///
    /// # Errors
    /// [`RoundError::BadParty`] if the PRSS index is outside the committee of `keys`.
    pub fn new(
        prss: &'a Prss<F>,
        job: [u8; 32],
        task: Task<'a, F>,
        keys: Vec<VerifyingKey>,
        signer: SigningKey,
        ignored: BTreeSet<PartyId>,
    ) -> Result<Self, RoundError> {
        let me = PartyId::new(prss.me() as usize, keys.len())?;
        Ok(EvalMachine {
            prss,
            job,
            task,
            me,
            keys,
            signer,
            ignored,
            reduced: Vec::new(),
            current: None,
            early: Vec::new(),
            evidence: Vec::new(),
            lie: None,
            done: false,
            memo: None,
        })
    }

    /// Keeps the local passes in `memo` and looks them up there (see [`LocalMemo`]): for a
    /// driver that rebuilds this machine for every event. `memo` must be this task's.
    pub fn use_memo(&mut self, memo: &'a mut LocalMemo<F>) {
        self.memo = Some(memo);
    }

    /// The local part over the rounds reduced so far, from the memo when it has it.
    fn local_pass(&mut self) -> Result<Pass<F>, RoundError> {
        if let Some(pass) = self.memo.as_ref().and_then(|m| m.get(&self.reduced)) {
            return Ok(pass.clone());
        }
        let mut run = Run {
            reduced: &self.reduced,
            cursor: 0,
        };
        let pass = match run.task(self.task) {
            Ok(out) => Pass::Done(out),
            Err(Stop::Need(c2t)) => Pass::Need(c2t),
            Err(Stop::Fail(e)) => return Err(e.into()),
        };
        if let Some(m) = self.memo.as_mut() {
            m.put(&self.reduced, pass.clone());
        }
        Ok(pass)
    }

    /// Test support: adds `delta` to the first masked degree-`2t` value of every round before
    /// it is signed, this party's own view included (a wrong product contribution, the evil
    /// twin of the in-process committee and of the fault switchboard, which only regtest
    /// allows).
    pub fn lie_in_openings(&mut self, delta: F) {
        self.lie = Some(delta);
    }

    /// Equivocation evidence gathered in the rounds so far.
    pub fn evidence(&self) -> &[Equivocation] {
        &self.evidence
    }

    /// Runs the local part as far as it goes: the output, or the next round's messages.
    fn progress(&mut self) -> Result<Step<F, Vec<F>>, RoundError> {
        let mut send = Vec::new();
        loop {
            let c2t = match self.local_pass()? {
                Pass::Done(out) => {
                    self.done = true;
                    return Ok(Step {
                        send,
                        output: Some(out),
                    });
                }
                Pass::Need(c2t) => c2t,
            };
            let round = self.reduced.len() as u32;
            let mut c2t = c2t;
            let len = c2t.len();
            let (rt, r2t) = self.prss.double(&self.job, u64::from(round), len);
            mult::mask_for_opening(&mut c2t, &r2t)
                .map_err(|source| EvalError::Reduction { round, source })?;
            if let (Some(d), Some(x)) = (self.lie, c2t.first_mut()) {
                *x += d;
            }
            let mut ignored = self.ignored.clone();
            ignored.extend(
                self.evidence
                    .iter()
                    .filter_map(|e| PartyId::new(e.sender() as usize, self.keys.len()).ok()),
            );
            let mut broadcast =
                Broadcast::new(self.me, self.job, round, self.keys.clone(), ignored);
            send.extend(broadcast.start(&self.signer, c2t));
            // Messages of this round that arrived early.
            for (from, m) in std::mem::take(&mut self.early) {
                if Broadcast::<F>::slot_of(&m).map(|s| s.1) == Some(round) {
                    match broadcast.handle(from, m) {
                        Ok(out) => send.extend(out),
                        Err(e) => tracing::debug!(%from, error = %e, "kept message refused"),
                    }
                } else {
                    self.early.push((from, m));
                }
            }
            self.current = Some(Current { broadcast, rt, len });
            if !self.finish_round()? {
                return Ok(Step::send(send));
            }
        }
    }

    /// If the current round's broadcast is over: opens, re-shares and records the round;
    /// returns whether it did.
    fn finish_round(&mut self) -> Result<bool, RoundError> {
        let Some(cur) = self.current.as_ref() else {
            return Ok(false);
        };
        let Some(out) = cur.broadcast.output() else {
            return Ok(false);
        };
        let cur = self.current.take().expect("checked above");
        let round = cur.broadcast.round();
        for ev in out.evidence {
            if !self.evidence.iter().any(|e| e.sender() == ev.sender()) {
                self.evidence.push(ev);
            }
        }
        let convicted: BTreeSet<u32> = self.evidence.iter().map(Equivocation::sender).collect();
        let openings: Vec<(usize, &[F])> = out
            .values
            .iter()
            .filter(|(p, _)| !convicted.contains(&p.get()))
            .map(|(p, v)| (p.point(), &v[..]))
            .collect();
        let wrap = |source| EvalError::Reduction { round, source };
        let d = mult::open_2t(self.prss.t(), &openings, cur.len).map_err(wrap)?;
        self.reduced.push(mult::reshare(d, &cur.rt).map_err(wrap)?);
        Ok(true)
    }

    fn after(&mut self, send: Vec<Outgoing<F>>) -> Result<Step<F, Vec<F>>, RoundError> {
        if !self.finish_round()? {
            return Ok(Step::send(send));
        }
        let mut step = self.progress()?;
        let mut all = send;
        all.append(&mut step.send);
        step.send = all;
        Ok(step)
    }
}

impl<F: PrimeField> Machine<F> for EvalMachine<'_, F> {
    type Output = Vec<F>;

    fn start(&mut self) -> Result<Step<F, Vec<F>>, RoundError> {
        if self.done || self.current.is_some() || !self.reduced.is_empty() {
            return Ok(Step::none());
        }
        self.progress()
    }

    fn handle(&mut self, from: PartyId, msg: Message<F>) -> Result<Step<F, Vec<F>>, RoundError> {
        let kind = msg.kind();
        if from == self.me || from.point() > self.keys.len() || self.ignored.contains(&from) {
            return Err(RoundError::NotParticipant { from });
        }
        let (job, round, sub) =
            Broadcast::<F>::slot_of(&msg).ok_or(RoundError::Foreign { from, kind })?;
        if job != self.job {
            return Err(RoundError::Foreign { from, kind });
        }
        if self.done {
            return Err(RoundError::Finished { from, kind });
        }
        let now = self.reduced.len() as u32;
        if round < now {
            return Err(RoundError::PastRound {
                from,
                kind,
                round,
                sub,
            });
        }
        if round > now + 1 || (round == now + 1 && self.early.len() >= 3 * self.keys.len()) {
            return Err(RoundError::TooEarly { from, kind, round });
        }
        let Some(cur) = self.current.as_mut().filter(|_| round == now) else {
            if self
                .early
                .iter()
                .any(|(f, m)| *f == from && Broadcast::<F>::slot_of(m) == Some((job, round, sub)))
            {
                return Err(RoundError::Duplicate {
                    from,
                    kind,
                    round,
                    sub,
                });
            }
            self.early.push((from, msg));
            return Ok(Step::none());
        };
        let send = cur.broadcast.handle(from, msg)?;
        self.after(send)
    }

    fn deadline(&mut self, round: RoundId) -> Result<Step<F, Vec<F>>, RoundError> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(Step::none());
        };
        let send = cur.broadcast.deadline(round);
        self.after(send)
    }

    fn waiting(&self) -> Option<RoundId> {
        if self.done {
            return None;
        }
        self.current.as_ref().and_then(|c| c.broadcast.waiting())
    }
}

fn check_columns<F>(node: &Node, columns: &[Vec<F>], rows: usize) -> Result<(), EvalError> {
    match node {
        Node::Column(c) => {
            let got = columns.get(*c).map_or(0, Vec::len);
            if got != rows || *c >= columns.len() {
                return Err(EvalError::ColumnLength {
                    column: *c,
                    got,
                    expected: rows,
                });
            }
            Ok(())
        }
        Node::Const(_) => Ok(()),
        Node::Neg(a) | Node::Scale(a, _) => check_columns(a, columns, rows),
        Node::Add(a, b) | Node::Sub(a, b) | Node::Mul(a, b) => {
            check_columns(a, columns, rows)?;
            check_columns(b, columns, rows)
        }
        Node::LessThanZero { .. } | Node::EqualsZero { .. } => {
            Err(EvalError::Unsupported("comparisons"))
        }
    }
}

/// `aggregate_i + mask_i` for every opened sum: the shares that leave the party.
///
/// # Errors
/// [`EvalError::MaskCount`] if the lengths differ.
pub fn mask_outputs<F: PrimeField>(aggregates: &[F], masks: &[F]) -> Result<Vec<F>, EvalError> {
    if aggregates.len() != masks.len() {
        return Err(EvalError::MaskCount {
            got: masks.len(),
            expected: aggregates.len(),
        });
    }
    Ok(aggregates.iter().zip(masks).map(|(a, m)| *a + *m).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::csv::Dataset;
    use crate::mpc::field::Mersenne127;
    use crate::mpc::prss::tests::agree;
    use crate::mpc::query::{parse, plan};
    use crate::mpc::round::Recipient;

    type F = Mersenne127;

    #[test]
    fn bad_shapes_are_typed_errors() {
        let d = Dataset::parse("x,y\n1,2\n3,4\n5,6\n").unwrap();
        let linear = plan::<F>(&parse("sum(x + y)").unwrap(), &d.schema).unwrap();
        let cols: Vec<Vec<F>> = d.to_field();
        // Public values are a valid (degree-0) sharing: the sum comes out in the clear.
        let s = evaluate_local(&linear, &cols).unwrap();
        assert_eq!(s, [F::from_u64(21 << 16)]);
        let short = vec![cols[0].clone(), cols[1][..2].to_vec()];
        assert_eq!(
            evaluate_local(&linear, &short),
            Err(EvalError::ColumnLength {
                column: 1,
                got: 2,
                expected: 3
            })
        );
        assert_eq!(
            evaluate_local(&linear, &cols[..1]),
            Err(EvalError::ColumnLength {
                column: 1,
                got: 0,
                expected: 3
            })
        );
        // A product needs the network: the failure is reported, not hidden.
        let product = plan::<F>(&parse("dot(x, y)").unwrap(), &d.schema).unwrap();
        assert_eq!(
            evaluate_local(&product, &cols),
            Err(EvalError::NeedsRound { round: 0 })
        );
        assert_eq!(
            mask_outputs(&[F::ONE, F::ONE], &[F::ONE]),
            Err(EvalError::MaskCount {
                got: 1,
                expected: 2
            })
        );
        assert_eq!(
            mask_outputs(&[F::ONE], &[F::ONE]).unwrap(),
            [F::from_u64(2)]
        );
        // The machine of a linear plan finishes at once, with nothing to send.
        let prss = agree::<F>(4, 1, 3);
        let keys: Vec<VerifyingKey> = (0..4)
            .map(|i| {
                *SigningKey::from_bytes(&[i as u8 + 1; 32])
                    .unwrap()
                    .verifying_key()
            })
            .collect();
        let signer = SigningKey::from_bytes(&[1; 32]).unwrap();
        let mut m = EvalMachine::new(
            &prss[0],
            [0u8; 32],
            Task::Plan {
                plan: &linear,
                columns: &cols,
            },
            keys,
            signer,
            BTreeSet::new(),
        )
        .unwrap();
        let step = m.start().unwrap();
        assert!(step.send.is_empty());
        assert_eq!(step.output, Some(vec![F::from_u64(21 << 16)]));
        assert_eq!(m.waiting(), None);
    }

    /// What four parties did in one evaluation: each one's output and the messages it sent
    /// (in order), and the local passes its memo ran (0 without one).
    type Outcome = (Vec<Vec<F>>, Vec<Vec<Outgoing<F>>>, Vec<usize>);

    /// A message handed to a party: its sender and the message.
    type Delivered = (PartyId, Message<F>);

    /// Evaluates `plan` among four parties whose driver re-creates each machine from the
    /// messages it was handed for every new message (as the party daemon does), with a memo
    /// per party or without.
    fn rebuilt_per_event(plan: &Plan, cols: &[Vec<Vec<F>>], memo: bool) -> Outcome {
        let n = 4;
        let prss = agree::<F>(n, 1, 5);
        let signers: Vec<SigningKey> = (0..n)
            .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]).unwrap())
            .collect();
        let keys: Vec<VerifyingKey> = signers.iter().map(|k| *k.verifying_key()).collect();
        let id = |i: usize| PartyId::new(i + 1, n).unwrap();
        let mut memos: Vec<LocalMemo<F>> = (0..n).map(|_| LocalMemo::default()).collect();
        let mut logs: Vec<Vec<(PartyId, Message<F>)>> = vec![Vec::new(); n];
        let mut outputs: Vec<Option<Vec<F>>> = vec![None; n];
        let mut sent: Vec<Vec<Outgoing<F>>> = vec![Vec::new(); n];
        // (recipient, None: its start, or a message from a party)
        let mut queue: std::collections::VecDeque<(usize, Option<Delivered>)> =
            std::collections::VecDeque::new();
        for i in 0..n {
            queue.push_back((i, None));
        }
        while let Some((i, event)) = queue.pop_front() {
            if outputs[i].is_some() {
                continue;
            }
            let mut m = EvalMachine::new(
                &prss[i],
                [7; 32],
                Task::Plan {
                    plan,
                    columns: &cols[i],
                },
                keys.clone(),
                signers[i].clone(),
                BTreeSet::new(),
            )
            .unwrap();
            if memo {
                m.use_memo(&mut memos[i]);
            }
            let mut step = m.start().unwrap();
            for (from, msg) in &logs[i] {
                step = m
                    .handle(*from, msg.clone())
                    .unwrap_or_else(|_| Step::none());
            }
            if let Some((from, msg)) = event {
                logs[i].push((from, msg.clone()));
                step = m.handle(from, msg).unwrap_or_else(|_| Step::none());
            } else if !logs[i].is_empty() {
                continue;
            }
            outputs[i] = step.output;
            for o in step.send {
                for to in 0..n {
                    let to_it = match o.to {
                        Recipient::All => to != i,
                        Recipient::One(p) => p == id(to),
                    };
                    if to_it {
                        queue.push_back((to, Some((id(i), o.msg.clone()))));
                    }
                }
                sent[i].push(o);
            }
        }
        let outputs = outputs
            .into_iter()
            .map(|o| o.expect("every party finished"))
            .collect();
        (outputs, sent, memos.iter().map(LocalMemo::runs).collect())
    }

    #[test]
    fn a_memo_runs_each_local_pass_once_and_changes_nothing_sent() {
        use crate::mpc::shamir::{deal_vec, reconstruct, Params};
        use rand::SeedableRng;
        let mut csv = String::from("x,y\n");
        for r in 0..40 {
            csv.push_str(&format!("{},{}\n", r % 9, 20 - r % 13));
        }
        let d = Dataset::parse(&csv).unwrap();
        // Two rounds: the element-wise x * y, then the top product of each aggregate.
        let q = "sum(x), var(y), sum(x * y * x)";
        let plan = plan::<F>(&parse(q).unwrap(), &d.schema).unwrap();
        let params = Params::new(4, 1).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut cols: Vec<Vec<Vec<F>>> = vec![Vec::new(); 4];
        for column in d.to_field::<F>() {
            for (i, shares) in deal_vec(&column, params, &mut rng).into_iter().enumerate() {
                cols[i].push(shares);
            }
        }
        let (plain_out, plain_sent, plain_runs) = rebuilt_per_event(&plan, &cols, false);
        let (memo_out, memo_sent, memo_runs) = rebuilt_per_event(&plan, &cols, true);
        assert_eq!(plain_runs, [0; 4]);
        // One pass per round reduced plus the last: 3, however many messages arrived.
        assert_eq!(memo_runs, [3; 4]);
        assert_eq!(memo_out, plain_out);
        assert_eq!(memo_sent, plain_sent, "byte-identical messages");
        // And the outputs are right: sum(x) opens to its clear value at scale 2^16.
        let shares: Vec<(usize, F)> = (0..4).map(|i| (i + 1, memo_out[i][0])).collect();
        let sum_x: u64 = (0..40).map(|r| r % 9).sum();
        assert_eq!(
            reconstruct(params, &shares).unwrap(),
            F::from_u64(sum_x << 16)
        );
    }
}
