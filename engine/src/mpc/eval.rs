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
//!   per product node before it is used;
//! - a comparison ([`Node::LessThanZero`], [`Node::EqualsZero`]) by Catrina and de Hoogh's LTZ
//!   and EQZ on every row at once ([`crate::mpc::compare`]): shared random bits, one masked
//!   opening to the committee, and a logarithmic tree of products;
//! - the disclosure gates of the plan ([`Plan::gates`]) last: every test's count on shares,
//!   its test bit (LTZ, EQZ), the AND of a gate's tests, and **one opened bit per gate**. An
//!   opened sum of a gate whose bit is 0 is withheld: replaced by 0 before the output mask, so
//!   nothing about it leaves the party ([`Evaluation`]).
//!
//! Evaluation is a round-based machine ([`EvalMachine`]) with no thread, queue or clock. A round
//! is a signed echo-broadcast ([`crate::mpc::echo::Broadcast`]) of one vector per party, sent in
//! chunks of at most [`CHUNK_VALUES`] values (one broadcast each), of one of two kinds:
//!
//! - a **degree reduction**: the machine masks this party's degree-`2t` values with a PRSS
//!   double sharing ([`Prss::double`]) and broadcasts them; with the openings of the round it
//!   checks that they lie on one degree-`2t` polynomial, opens the masked values and re-shares
//!   them. Damgård-Nielsen, "Scalable and Unconditionally Secure Multiparty Computation",
//!   CRYPTO 2007, with PRSS double sharings instead of dealt ones;
//! - an **opening to the committee** of degree-`t` shares (the `r^2` of random bits, the masked
//!   opening of a comparison, the gate bits): every party broadcasts its shares and decodes them
//!   with Berlekamp-Welch ([`crate::mpc::decode::decode_vec`]); with `n >= 3t + 1` a share off
//!   the polynomial is corrected and its author named ([`OpeningFault`], with the signed
//!   broadcasts as evidence); openings that determine no polynomial abort the step.
//!
//! Both are checked in the round they happen (see [`crate::mpc::compare`], "No selective
//! failure").
//!
//! Resuming re-runs the (deterministic) local part of the evaluation from the start with the
//! results of the rounds already done: the machine's state is its inputs plus those
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
//! into an unattributed abort, so linear aggregates are not re-shared. A comparison's output is
//! a linear function of PRSS-derived bit sharings and reduced products, so a sum over
//! comparisons carries no trace of the stored sharings either.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use crate::mpc::sig::{SigningKey, VerifyingKey};

use crate::mpc::compare::{self, CompareError, Rounds};
use crate::mpc::decode::{decode_vec, DecodeVec};
use crate::mpc::echo::{payload_hash, Broadcast, BroadcastOutput, Equivocation, SignedHeader};
use crate::mpc::field::PrimeField;
use crate::mpc::mult::{self, MultError};
use crate::mpc::prss::Prss;
use crate::mpc::query::num::to_field;
use crate::mpc::query::{Node, Plan};
use crate::mpc::round::{Machine, Message, Outgoing, PartyId, RoundError, RoundId, Step};
use crate::mpc::shamir::Params;

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
    /// An opening to the committee failed (the shares determine no polynomial, or too few
    /// arrived): the step aborts.
    #[error("opening in round {round}: {reason}")]
    Opening {
        /// The round.
        round: u32,
        /// What failed.
        reason: String,
    },
    /// A comparison is wider than the field allows (or 0 bits wide).
    #[error("comparison {node} has {bits} bits, this field compares 1 to {max} bits")]
    CompareBits {
        /// The comparison node (abbreviated).
        node: String,
        /// Its bits.
        bits: u32,
        /// [`compare::max_compare_bits`].
        max: u32,
    },
    /// A comparison step failed.
    #[error("comparison: {0}")]
    Comparison(#[from] CompareError),
    /// A gate names an opened sum the plan does not have.
    #[error("gate {gate} names opened sum {index}, the plan has {opened}")]
    BadGate {
        /// The gate.
        gate: usize,
        /// The index named.
        index: usize,
        /// Opened sums of the plan.
        opened: usize,
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
    /// Opens degree-`t` shares to the committee in one round, as a comparison opens its masked
    /// value: every party broadcasts its shares and decodes them with Berlekamp-Welch (a share
    /// off the polynomial is corrected and its author named, [`OpeningFault`]). The
    /// [`Evaluation`]'s values are the opened values, the same at every honest party.
    Open {
        /// This party's shares.
        shares: &'a [F],
    },
}

/// What an evaluation produced: this party's degree-`t` shares, and what the gates allow.
///
/// Every honest party holds the same `gates` and `disclosed` (the gate bits were opened to the
/// committee). A withheld sum's share is already 0 (a public sharing of 0), so once masked
/// ([`mask_outputs`]) it carries nothing but the mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation<F> {
    /// One share per opened sum of the plan (0 where withheld), or per product.
    pub values: Vec<F>,
    /// Per value: whether it is disclosed (every gate naming it passed). All `true` without
    /// gates.
    pub disclosed: Vec<bool>,
    /// The public bit of every gate of the plan, in order ([`Plan::gates`]).
    pub gates: Vec<bool>,
}

impl<F> Evaluation<F> {
    fn open(values: Vec<F>) -> Self {
        Evaluation {
            disclosed: vec![true; values.len()],
            values,
            gates: Vec::new(),
        }
    }
}

/// Test support: a deviation of this party inside an evaluation (the evil twins of the
/// comparison tests). The party signs one value per round, its own view included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper<F> {
    /// Adds `delta` to value `position` of what this party broadcasts in round `round` (a masked
    /// degree-`2t` value in a reduction, a share in an opening to the committee).
    Round {
        /// The round.
        round: u32,
        /// Position in the round's vector.
        position: usize,
        /// What is added.
        delta: F,
    },
    /// Adds `delta` to this party's share of random bit `position` of the first batch of random
    /// bits it makes.
    RandomBit {
        /// Position in the batch.
        position: usize,
        /// What is added.
        delta: F,
    },
    /// Adds `delta` to this party's share of random integer `position` (the high part `r''` of
    /// a comparison's mask) of the first batch of PRSS random integers it makes.
    RandomInt {
        /// Position in the batch.
        position: usize,
        /// What is added.
        delta: F,
    },
}

/// An input an [`EvalMachine`] borrows, or shares with an owning driver (which keeps the
/// machine across events instead of re-creating it: [`EvalMachine::new_shared`]).
enum Held<'a, T: ?Sized> {
    Borrowed(&'a T),
    Shared(Arc<T>),
}

impl<T: ?Sized> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Held::Borrowed(t) => t,
            Held::Shared(t) => t,
        }
    }
}

/// A [`Task`] whose inputs are borrowed or shared.
enum HeldTask<'a, F> {
    Plan {
        plan: Held<'a, Plan>,
        columns: Held<'a, [Vec<F>]>,
    },
    Products {
        a: Held<'a, [F]>,
        b: Held<'a, [F]>,
    },
    Open {
        shares: Held<'a, [F]>,
    },
}

impl<F> HeldTask<'_, F> {
    fn view(&self) -> Task<'_, F> {
        match self {
            HeldTask::Plan { plan, columns } => Task::Plan { plan, columns },
            HeldTask::Products { a, b } => Task::Products { a, b },
            HeldTask::Open { shares } => Task::Open { shares },
        }
    }
}

/// What the local part needs from the next round.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request<F> {
    /// Degree-`2t` values to reduce to degree `t`.
    Reduce(Vec<F>),
    /// Degree-`t` shares to open to the committee.
    Open(Vec<F>),
}

/// Why the local part of an evaluation stopped.
enum Stop<F> {
    /// It needs the next round.
    Need(Request<F>),
    /// It failed.
    Fail(EvalError),
}

impl<F> From<EvalError> for Stop<F> {
    fn from(e: EvalError) -> Self {
        Stop::Fail(e)
    }
}

impl<F> From<CompareError> for Stop<F> {
    fn from(e: CompareError) -> Self {
        Stop::Fail(EvalError::Comparison(e))
    }
}

/// What the replays of the local part keep of the random bits: the canonical inverse roots of
/// opened `r^2` values per round, and the bits made from the two rounds starting at a round
/// (each with the squares opened, which identify them; the PRSS draw is fixed by the replay).
///
/// And the per-row values of every interactive node (a comparison or a product of shares) the
/// replays computed, by the node and the round it started at: a replay that reaches the node at
/// that round again, with the node's last round done as it was, takes the values and the
/// counters after it instead of running the node's local part again, and marks the
/// interactive nodes computed inside it as computed in this pass (a later occurrence of one of
/// them must take no rounds, as in the pass that computed it). The rounds done only grow (a
/// round's result is final), so a pass costs the nodes whose rounds are new, not every node
/// since the start: the replays of a job with many comparisons stay linear in its rounds.
#[derive(Debug, Default)]
struct RootCache<F> {
    entries: BTreeMap<usize, (Vec<F>, Vec<Option<F>>)>,
    bits: BTreeMap<usize, (Vec<F>, Vec<F>)>,
    nodes: HashMap<(Node, usize), Segment<F>>,
    /// The local dot products of long share vectors at the top of an aggregate, by the node
    /// and the round its inputs were complete at: a replay after the aggregate's reduction
    /// takes the value instead of multiplying the columns again (the inputs depend only on
    /// rounds before that one, which are final).
    dots: HashMap<(Node, usize), F>,
    /// Dot products taken from `dots` (a replay's saving).
    dot_hits: usize,
}

/// Shortest share vectors whose dot product [`RootCache`] keeps.
const CACHED_DOT_LEN: usize = 1024;

impl<F> RootCache<F> {
    fn new() -> Self {
        RootCache {
            entries: BTreeMap::new(),
            bits: BTreeMap::new(),
            nodes: HashMap::new(),
            dots: HashMap::new(),
            dot_hits: 0,
        }
    }
}

/// An interactive node's values and what its evaluation consumed (see [`RootCache`]).
#[derive(Debug, Clone)]
struct Segment<F> {
    /// The round after the node's last round.
    end: usize,
    /// That last round's result, as the node used it.
    last: Vec<F>,
    /// PRSS draws, random-bit batches and random-integer batches the node took.
    draws: u64,
    batches: usize,
    ints: usize,
    /// The node's per-row values.
    values: Vec<F>,
    /// The interactive nodes computed inside it (nested ones included), with their values.
    inner: Vec<(Node, Vec<F>)>,
}

/// The local part of one evaluation, replayed over the rounds already done.
struct Run<'r, F> {
    /// The result of every round done: re-shared products, or opened values.
    done: &'r [Vec<F>],
    cursor: usize,
    prss: Option<&'r Prss<F>>,
    job: [u8; 32],
    draws: u64,
    bit_batches: usize,
    tamper_bit: Option<(usize, F)>,
    tamper_int: Option<(usize, F)>,
    int_batches: usize,
    roots: Option<&'r mut RootCache<F>>,
    /// The interactive nodes computed in this pass: a node that occurs again (a filter's
    /// comparison in a gate test) is computed once.
    seen: HashMap<Node, Vec<F>>,
    /// The keys of `seen` in the order they were added.
    seen_order: Vec<Node>,
}

enum Vals<'a, F: Clone> {
    Const(F),
    Shares(Cow<'a, [F]>),
}

/// PRSS counters of the random sharings of comparisons (apart from the rounds' counters).
const RANDOM_COUNTER_BASE: u64 = 1 << 40;

impl<F: PrimeField> Rounds<F> for Run<'_, F> {
    type Stop = Stop<F>;

    fn multiply(&mut self, a: &[F], b: &[F]) -> Result<Vec<F>, Stop<F>> {
        let round = self.cursor as u32;
        self.round(|| {
            mult::local_products(a, b)
                .map(Request::Reduce)
                .map_err(|source| EvalError::Reduction { round, source })
        })
    }

    fn open(&mut self, shares: Vec<F>) -> Result<Vec<F>, Stop<F>> {
        self.round(|| Ok(Request::Open(shares)))
    }

    fn random(&mut self, len: usize) -> Result<Vec<F>, Stop<F>> {
        let (prss, counter) = self.draw()?;
        Ok(prss.random(&self.job, counter, len))
    }

    fn random_int(&mut self, len: usize, bits: u32) -> Result<Vec<F>, Stop<F>> {
        let (prss, counter) = self.draw()?;
        let mut out = prss.random_int(&self.job, counter, len, bits);
        if self.int_batches == 0 {
            if let Some((p, d)) = self.tamper_int {
                if let Some(v) = out.get_mut(p) {
                    *v += d;
                }
            }
        }
        self.int_batches += 1;
        Ok(out)
    }

    fn inverse_roots(&mut self, squares: &[F]) -> Result<Vec<Option<F>>, Stop<F>> {
        let key = self.cursor;
        if let Some(cache) = self.roots.as_deref_mut() {
            if let Some((sq, roots)) = cache.entries.get(&key) {
                if sq == squares {
                    return Ok(roots.clone());
                }
            }
            let roots = compare::inverse_roots(squares)?;
            cache.entries.insert(key, (squares.to_vec(), roots.clone()));
            return Ok(roots);
        }
        Ok(compare::inverse_roots(squares)?)
    }

    fn cached_bits(&mut self, len: usize) -> Option<Vec<F>> {
        let c = self.cursor;
        let cache = self.roots.as_deref()?;
        let (squares, bits) = cache.bits.get(&c)?;
        if bits.len() != len || self.done.get(c + 1) != Some(squares) {
            return None;
        }
        let bits = bits.clone();
        self.cursor += 2;
        self.draws += 1;
        Some(bits)
    }

    fn position(&self) -> usize {
        self.cursor
    }

    fn keep_bits(&mut self, start: usize, squares: &[F], bits: &[F]) {
        if let Some(cache) = self.roots.as_deref_mut() {
            cache.bits.insert(start, (squares.to_vec(), bits.to_vec()));
            // Later passes take the bits: the roots of the batch's squares (opened in the
            // round after `start`, looked up at `start + 2`) are not asked for again.
            cache.entries.remove(&(start + 2));
        }
    }

    fn tamper_bits(&mut self, bits: &mut [F]) {
        if self.bit_batches == 0 {
            if let Some((p, d)) = self.tamper_bit {
                if let Some(b) = bits.get_mut(p) {
                    *b += d;
                }
            }
        }
        self.bit_batches += 1;
    }
}

impl<'r, F: PrimeField> Run<'r, F> {
    fn new(done: &'r [Vec<F>]) -> Self {
        Run {
            done,
            cursor: 0,
            prss: None,
            job: [0; 32],
            draws: 0,
            bit_batches: 0,
            tamper_bit: None,
            tamper_int: None,
            int_batches: 0,
            roots: None,
            seen: HashMap::new(),
            seen_order: Vec::new(),
        }
    }

    /// The PRSS and the counter of the next draw of random sharings (counted across replays
    /// in the same order, so a replay draws the same values).
    fn draw(&mut self) -> Result<(&'r Prss<F>, u64), Stop<F>> {
        let Some(prss) = self.prss else {
            return Err(EvalError::NeedsRound {
                round: self.cursor as u32,
            }
            .into());
        };
        let counter = RANDOM_COUNTER_BASE + self.draws;
        self.draws += 1;
        Ok((prss, counter))
    }

    /// The next round's result, or a stop asking for it.
    fn round(
        &mut self,
        request: impl FnOnce() -> Result<Request<F>, EvalError>,
    ) -> Result<Vec<F>, Stop<F>> {
        if let Some(v) = self.done.get(self.cursor) {
            self.cursor += 1;
            return Ok(v.clone());
        }
        Err(Stop::Need(request()?))
    }

    fn task(&mut self, task: Task<'_, F>) -> Result<Evaluation<F>, Stop<F>> {
        match task {
            Task::Plan { plan, columns } => self.evaluate(plan, columns),
            Task::Products { a, b } => Ok(Evaluation::open(self.multiply(a, b)?)),
            // The copy is made only when the round is still to do.
            Task::Open { shares } => Ok(Evaluation::open(
                self.round(|| Ok(Request::Open(shares.to_vec())))?,
            )),
        }
    }

    fn evaluate(&mut self, plan: &Plan, columns: &[Vec<F>]) -> Result<Evaluation<F>, Stop<F>> {
        for o in &plan.opened {
            check_node(&o.node, columns, plan.rows)?;
        }
        for (g, gate) in plan.gates.iter().enumerate() {
            for test in &gate.tests {
                check_node(test.rows(), columns, plan.rows)?;
            }
            if let Some(index) = gate.opened.iter().find(|i| **i >= plan.opened.len()) {
                return Err(EvalError::BadGate {
                    gate: g,
                    index: *index,
                    opened: plan.opened.len(),
                }
                .into());
            }
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
            let reduced = self.round(|| Ok(Request::Reduce(c2t)))?;
            for (k, v) in to_reduce.into_iter().zip(reduced) {
                out[k] = v;
            }
        }
        let mut result = Evaluation::open(out);
        if plan.gates.is_empty() {
            return Ok(result);
        }
        let bits = self.gates(plan, columns)?;
        for (gate, pass) in plan.gates.iter().zip(&bits) {
            if !*pass {
                for i in &gate.opened {
                    result.disclosed[*i] = false;
                    result.values[*i] = F::ZERO;
                }
            }
        }
        result.gates = bits;
        Ok(result)
    }

    /// The public bit of every gate: counts, LTZ and EQZ of all tests in one batch, the AND of
    /// each gate's tests, one opening of all the gates' bits.
    fn gates(&mut self, plan: &Plan, columns: &[Vec<F>]) -> Result<Vec<bool>, Stop<F>> {
        use crate::mpc::query::plan::GateTest;
        // (gate, zero passes too, min_rows, count share) of every test that can fail.
        let mut tests: Vec<(usize, bool, u64, F)> = Vec::new();
        for (g, gate) in plan.gates.iter().enumerate() {
            for test in &gate.tests {
                let (min, zero_ok) = match test {
                    GateTest::AtLeast { min_rows, .. } => (*min_rows, false),
                    GateTest::ZeroOrAtLeast { min_rows, .. } => (*min_rows, true),
                };
                if min == 0 {
                    continue; // every count passes
                }
                let count = match self.rows(test.rows(), columns)? {
                    Vals::Shares(v) => F::sum_slice(&v),
                    Vals::Const(c) => c * F::from_u64(plan.rows as u64),
                };
                tests.push((g, zero_ok, min, count));
            }
        }
        if tests.is_empty() {
            return Ok(vec![true; plan.gates.len()]);
        }
        // count - min_rows is in [-min_rows, rows]: one sign bit more than the larger.
        let largest = tests
            .iter()
            .map(|t| t.2)
            .chain(std::iter::once(plan.rows as u64))
            .max()
            .unwrap_or(0);
        let k = 65 - largest.leading_zeros();
        let diff: Vec<F> = tests.iter().map(|t| t.3 - F::from_u64(t.2)).collect();
        let lt = compare::ltz(self, &diff, k)?;
        let zeros: Vec<F> = tests.iter().filter(|t| t.1).map(|t| t.3).collect();
        let eq = if zeros.is_empty() {
            Vec::new()
        } else {
            compare::eqz(self, &zeros, k)?
        };
        // count >= min_rows, or (ZeroOrAtLeast) count == 0: exclusive as min_rows >= 1.
        let mut eq = eq.into_iter();
        let mut per_gate: Vec<Vec<F>> = vec![Vec::new(); plan.gates.len()];
        for (t, lt) in tests.iter().zip(lt) {
            let mut pass = F::ONE - lt;
            if t.1 {
                pass += eq.next().unwrap_or(F::ZERO);
            }
            per_gate[t.0].push(pass);
        }
        let width = per_gate.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut flat = Vec::with_capacity(width * per_gate.len());
        for bits in per_gate {
            let pad = width - bits.len();
            flat.extend(bits);
            flat.extend(std::iter::repeat_n(F::ONE, pad));
        }
        let anded = compare::and_groups(self, flat, width)?;
        compare::open_bits(self, anded)
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
                    (Vals::Shares(x), Vals::Shares(y)) if x.len() >= CACHED_DOT_LEN => {
                        let key = (node.clone(), self.cursor);
                        match self.roots.as_deref_mut().and_then(|r| {
                            let v = r.dots.get(&key).copied()?;
                            r.dot_hits += 1;
                            Some(v)
                        }) {
                            Some(v) => v,
                            None => {
                                let v = F::dot(&x, &y);
                                if let Some(r) = self.roots.as_deref_mut() {
                                    r.dots.insert(key, v);
                                }
                                v
                            }
                        }
                    }
                    (Vals::Shares(x), Vals::Shares(y)) => F::dot(&x, &y),
                    (Vals::Const(c), Vals::Shares(v)) | (Vals::Shares(v), Vals::Const(c)) => {
                        F::sum_slice(&v) * c
                    }
                    (Vals::Const(c), Vals::Const(d)) => c * d * F::from_u64(rows as u64),
                }
            }
            Node::Column(_)
            | Node::Const(_)
            | Node::LessThanZero { .. }
            | Node::EqualsZero { .. } => match self.rows(node, columns)? {
                Vals::Shares(v) => F::sum_slice(&v),
                Vals::Const(c) => c * F::from_u64(rows as u64),
            },
        })
    }

    /// The per-row values of `node` as degree-`t` shares; an interactive node (a comparison
    /// or a product of shares) once per pass: a node that occurs again (a filter's comparison
    /// in a gate test) takes no more rounds. Every pass meets the nodes in the same order, so
    /// the rounds line up across the replays of the local part; a node whose rounds a former
    /// replay completed is taken from the replays' cache ([`RootCache`]).
    fn rows<'c>(&mut self, node: &Node, columns: &'c [Vec<F>]) -> Result<Vals<'c, F>, Stop<F>> {
        if !matches!(
            node,
            Node::LessThanZero { .. } | Node::EqualsZero { .. } | Node::Mul(..)
        ) {
            return self.rows_once(node, columns);
        }
        if let Some(v) = self.seen.get(node) {
            return Ok(Vals::Shares(Cow::Owned(v.clone())));
        }
        let (cursor, draws, batches, ints) =
            (self.cursor, self.draws, self.bit_batches, self.int_batches);
        let hit = self.roots.as_deref().and_then(|c| {
            let seg = c.nodes.get(&(node.clone(), cursor))?;
            (seg.end > cursor && self.done.get(seg.end - 1) == Some(&seg.last)).then(|| seg.clone())
        });
        if let Some(seg) = hit {
            self.cursor = seg.end;
            self.draws = draws + seg.draws;
            self.bit_batches = batches + seg.batches;
            self.int_batches = ints + seg.ints;
            for (n, v) in seg.inner {
                self.mark_seen(n, v);
            }
            self.mark_seen(node.clone(), seg.values.clone());
            return Ok(Vals::Shares(Cow::Owned(seg.values)));
        }
        let first_inner = self.seen_order.len();
        let out = self.rows_once(node, columns)?;
        if let Vals::Shares(v) = &out {
            if self.cursor > cursor {
                let inner = self.seen_order[first_inner..]
                    .iter()
                    .filter_map(|n| Some((n.clone(), self.seen.get(n)?.clone())))
                    .collect();
                let seg = Segment {
                    end: self.cursor,
                    last: self.done[self.cursor - 1].clone(),
                    draws: self.draws - draws,
                    batches: self.bit_batches - batches,
                    ints: self.int_batches - ints,
                    values: v.to_vec(),
                    inner,
                };
                if let Some(c) = self.roots.as_deref_mut() {
                    c.nodes.insert((node.clone(), cursor), seg);
                }
                self.mark_seen(node.clone(), v.to_vec());
            }
        }
        Ok(out)
    }

    /// Records `node` as computed in this pass, with its per-row values.
    fn mark_seen(&mut self, node: Node, values: Vec<F>) {
        if self.seen.insert(node.clone(), values).is_none() {
            self.seen_order.push(node);
        }
    }

    /// [`Run::rows`] without the caches.
    fn rows_once<'c>(
        &mut self,
        node: &Node,
        columns: &'c [Vec<F>],
    ) -> Result<Vals<'c, F>, Stop<F>> {
        Ok(match node {
            Node::Column(c) => Vals::Shares(Cow::Borrowed(&columns[*c][..])),
            Node::Const(k) => Vals::Const(to_field(k)),
            Node::LessThanZero { value, bits } | Node::EqualsZero { value, bits } => {
                let less = matches!(node, Node::LessThanZero { .. });
                match self.rows(value, columns)? {
                    Vals::Const(c) => {
                        let v = crate::mpc::query::num::to_signed(c);
                        let b = if less {
                            v < num_bigint::BigInt::from(0)
                        } else {
                            v == num_bigint::BigInt::from(0)
                        };
                        Vals::Const(F::from_u64(u64::from(b)))
                    }
                    Vals::Shares(v) => Vals::Shares(Cow::Owned(if less {
                        compare::ltz(self, &v, *bits)?
                    } else {
                        compare::eqz(self, &v, *bits)?
                    })),
                }
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
                        Vals::Shares(Cow::Owned(self.multiply(&v, &w)?))
                    }
                }
            }
        })
    }
}

/// Every opened sum of a plan that needs no round (no product of shares, no comparison),
/// computed locally; gates are not evaluated (a plan with gates needs rounds).
///
/// # Errors
/// [`EvalError::ColumnLength`], [`EvalError::CompareBits`]; [`EvalError::NeedsRound`] if the
/// plan needs a round (run an [`EvalMachine`]).
pub fn evaluate_local<F: PrimeField>(plan: &Plan, columns: &[Vec<F>]) -> Result<Vec<F>, EvalError> {
    match Run::new(&[]).evaluate(plan, columns) {
        Ok(v) => Ok(v.values),
        Err(Stop::Fail(e)) => Err(e),
        Err(Stop::Need(_)) => Err(EvalError::NeedsRound { round: 0 }),
    }
}

/// One run of the local part of an evaluation over the rounds done so far: it finished, or
/// it needs the next round.
#[derive(Debug, Clone)]
enum Pass<F> {
    Done(Evaluation<F>),
    Need(Request<F>),
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
    roots: RootCache<F>,
}

impl<F> Default for LocalMemo<F> {
    fn default() -> Self {
        LocalMemo {
            reduced: Vec::new(),
            passes: Vec::new(),
            runs: 0,
            roots: RootCache::new(),
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
            // A dot product whose inputs read a round from `common` on may differ too.
            self.roots.dots.retain(|(_, round), _| *round <= common);
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

/// A party named at an opening to the committee: its share is off the polynomial the others'
/// determine. The evidence is every signed opening of the round (headers and payloads): a judge
/// re-decodes them ([`OpeningFault::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpeningFault<F> {
    /// The round.
    pub round: u32,
    /// The parties named, ascending.
    pub culprits: Vec<PartyId>,
    /// Every opening used: the signed header and the payload it signs.
    pub openings: Vec<(SignedHeader, Arc<Vec<F>>)>,
}

impl<F: PrimeField> OpeningFault<F> {
    /// Checks the evidence against the committee's keys (`keys[i - 1]` for party `i`) and
    /// threshold `t`: every header verifies, signs its payload, is for `(job, round)`; the
    /// openings decode with exactly these culprits (each named only when at least `2t + 1`
    /// openings agree on the polynomial, so never an honest party).
    ///
    /// # Errors
    /// A one-line reason when the evidence does not convict.
    pub fn verify(&self, job: &[u8; 32], keys: &[VerifyingKey], t: usize) -> Result<(), String> {
        let params = Params::new(keys.len(), t).map_err(|e| e.to_string())?;
        let mut vectors = Vec::new();
        for (h, payload) in &self.openings {
            let not_member = || format!("sender {} is not in the committee", h.sender);
            let party = PartyId::from_wire(h.sender).ok_or_else(not_member)?;
            let key = keys.get(party.slot()).ok_or_else(not_member)?;
            h.verify(key)
                .map_err(|e| format!("opening of party {}: {e}", h.sender))?;
            if h.job != *job || h.round != self.round || h.slot != h.sender {
                return Err(format!("opening of party {} is for another slot", h.sender));
            }
            if h.payload_hash != payload_hash(payload) {
                return Err(format!(
                    "payload of party {} is not the one signed",
                    h.sender
                ));
            }
            vectors.push((party, &payload[..]));
        }
        match decode_vec(params, &vectors).map_err(|e| e.to_string())? {
            DecodeVec::Decoded { culprits, .. }
                if culprits == self.culprits && !culprits.is_empty() =>
            {
                Ok(())
            }
            DecodeVec::Decoded { culprits, .. } => Err(format!(
                "the openings name {culprits:?}, not {:?}",
                self.culprits
            )),
            DecodeVec::Inconsistent { position } => Err(format!(
                "the openings are inconsistent at position {position}"
            )),
        }
    }
}

/// Values per broadcast: a round of more values is sent as consecutive broadcasts (chunks)
/// of at most this many, chunk `k` holding positions `[k * CHUNK_VALUES, (k + 1) *
/// CHUNK_VALUES)`. Each party holds a chunk's openings (and the raw frames they came in) only
/// while the chunk is in flight, so a party's memory in a reduction of `L` values is its
/// `L`-long inputs and result plus [`WINDOW`] chunks, not four more `L`-long vectors.
/// 65,536 values: 2 MiB a broadcast in secp256k1, 1 MiB in 2^127-1.
pub const CHUNK_VALUES: usize = 1 << 16;

/// Chunks of one round in flight at once (started, not yet finished): this party computes and
/// sends chunk `k + 1` while the messages of chunk `k` cross the network.
pub const WINDOW: usize = 2;

/// What a round does with the openings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoundKind {
    /// A degree reduction.
    Reduce,
    /// An opening to the committee.
    Open,
}

/// The kind of a chunk in flight.
#[derive(Debug)]
enum Kind<F> {
    /// A degree reduction: the degree-`t` half of its double sharing (the chunk's length).
    Reduce { rt: Vec<F> },
    /// An opening to the committee.
    Open,
}

/// A chunk in flight: its broadcast, what it is, and where its values sit in the round.
#[derive(Debug)]
struct Current<F> {
    broadcast: Broadcast<F>,
    kind: Kind<F>,
    len: usize,
    offset: usize,
}

/// The round in progress: this party's whole vector, sent chunk by chunk, and the result so
/// far.
#[derive(Debug)]
struct Pending<F> {
    kind: RoundKind,
    /// The round's index: its result becomes `reduced[round]`.
    round: u32,
    /// This party's values for the round (a reduction's degree-`2t` values unmasked: each
    /// chunk is masked with its own double sharing when it starts). A finished chunk's result
    /// is written over its values, which its start consumed, so the round needs no second
    /// vector of its length: once every chunk is finished this is the round's result.
    values: Vec<F>,
    /// Broadcast round of chunk 0; chunk `k` is broadcast round `first + k`.
    first: u32,
    /// Chunks in the round: `ceil(len / CHUNK_VALUES)`, at least 1.
    chunks: usize,
    /// Chunks started so far.
    started: usize,
    /// Parties whose value did not arrive in a finished chunk, or convicted of equivocation:
    /// the round's later chunks do not wait for them (a silent party costs one deadline per
    /// sub-round per round, not per chunk). A value that arrived but was dropped for an echo
    /// conflict does not make its sender absent.
    absent: BTreeSet<PartyId>,
}

/// One party's evaluation of a [`Task`] as a round-based machine (see the module docs).
///
/// Round `r` (from 0) sends this party's masked degree-`2t` values (a reduction) or its
/// degree-`t` shares (an opening to the committee) in chunks of at most [`CHUNK_VALUES`]
/// values, each chunk one echo-broadcast of job `job` with its own broadcast round number:
/// the broadcasts are numbered from 0 across the rounds, chunk by chunk, so every party
/// numbers them alike. A reduction's chunk in broadcast round `b` is masked with the PRSS
/// double sharing of counter `b`; its openings are checked, opened and re-shared on their own;
/// an opening fault is judged on one chunk's signed openings. Up to [`WINDOW`] chunks are in
/// flight at once. Messages of a broadcast not started yet are kept when an honest peer could
/// have sent them (at most `2 * WINDOW - 1` broadcasts ahead, no larger than an honest one:
/// [`RoundError::Malformed`] otherwise); older broadcasts are refused
/// ([`RoundError::PastRound`]). A party whose value did not arrive in a finished chunk (or
/// convicted of equivocation) is not waited for in the round's later chunks.
///
/// What a driver persists to resume: the PRSS keys, the job, the task's inputs (plan and share
/// columns), the parties ignored, the signing key, and the messages delivered.
pub struct EvalMachine<'a, F> {
    prss: Held<'a, Prss<F>>,
    job: [u8; 32],
    task: HeldTask<'a, F>,
    me: PartyId,
    keys: Vec<VerifyingKey>,
    signer: SigningKey,
    ignored: BTreeSet<PartyId>,
    reduced: Vec<Vec<F>>,
    pending: Option<Pending<F>>,
    inflight: VecDeque<Current<F>>,
    next_broadcast: u32,
    early: Vec<(PartyId, Message<F>)>,
    evidence: Vec<Equivocation>,
    faults: Vec<OpeningFault<F>>,
    lie: Option<F>,
    lie_open: Option<F>,
    tampers: Vec<Tamper<F>>,
    roots: RootCache<F>,
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
        let task = match task {
            Task::Plan { plan, columns } => HeldTask::Plan {
                plan: Held::Borrowed(plan),
                columns: Held::Borrowed(columns),
            },
            Task::Products { a, b } => HeldTask::Products {
                a: Held::Borrowed(a),
                b: Held::Borrowed(b),
            },
            Task::Open { shares } => HeldTask::Open {
                shares: Held::Borrowed(shares),
            },
        };
        Self::with(Held::Borrowed(prss), job, task, keys, signer, ignored)
    }

    fn with(
        prss: Held<'a, Prss<F>>,
        job: [u8; 32],
        task: HeldTask<'a, F>,
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
            pending: None,
            inflight: VecDeque::new(),
            next_broadcast: 0,
            early: Vec::new(),
            evidence: Vec::new(),
            faults: Vec::new(),
            lie: None,
            lie_open: None,
            tampers: Vec::new(),
            roots: RootCache::new(),
            done: false,
            memo: None,
        })
    }

    /// The evaluation of `plan` over `columns` as [`EvalMachine::new`], owning shares of its
    /// inputs: a driver keeps this machine across events (each message is handled once, the
    /// rounds' local part runs once per round) instead of re-creating it from its log for
    /// every event, which costs every logged message again per event.
    ///
    /// # Errors
    /// As [`EvalMachine::new`].
    pub fn new_shared(
        prss: Arc<Prss<F>>,
        job: [u8; 32],
        plan: Arc<Plan>,
        columns: Arc<[Vec<F>]>,
        keys: Vec<VerifyingKey>,
        signer: SigningKey,
        ignored: BTreeSet<PartyId>,
    ) -> Result<EvalMachine<'static, F>, RoundError> {
        EvalMachine::with(
            Held::Shared(prss),
            job,
            HeldTask::Plan {
                plan: Held::Shared(plan),
                columns: Held::Shared(columns),
            },
            keys,
            signer,
            ignored,
        )
    }

    /// Keeps the local passes in `memo` and looks them up there (see [`LocalMemo`]): for a
    /// driver that rebuilds this machine for every event. `memo` must be this task's.
    pub fn use_memo(&mut self, memo: &'a mut LocalMemo<F>) {
        self.memo = Some(memo);
    }

    /// The local part over the rounds done so far, from the memo when it has it.
    fn local_pass(&mut self) -> Result<Pass<F>, RoundError> {
        if let Some(pass) = self.memo.as_ref().and_then(|m| m.get(&self.reduced)) {
            return Ok(pass.clone());
        }
        let tamper_bit = self.tampers.iter().find_map(|t| match t {
            Tamper::RandomBit { position, delta } => Some((*position, *delta)),
            _ => None,
        });
        let tamper_int = self.tampers.iter().find_map(|t| match t {
            Tamper::RandomInt { position, delta } => Some((*position, *delta)),
            _ => None,
        });
        let roots = match self.memo.as_mut() {
            Some(m) => &mut m.roots,
            None => &mut self.roots,
        };
        let mut run = Run {
            done: &self.reduced,
            cursor: 0,
            prss: Some(&*self.prss),
            job: self.job,
            draws: 0,
            bit_batches: 0,
            tamper_bit,
            tamper_int,
            int_batches: 0,
            roots: Some(roots),
            seen: HashMap::new(),
            seen_order: Vec::new(),
        };
        let pass = match run.task(self.task.view()) {
            Ok(out) => Pass::Done(out),
            Err(Stop::Need(req)) => Pass::Need(req),
            Err(Stop::Fail(e)) => return Err(e.into()),
        };
        if let Some(m) = self.memo.as_mut() {
            m.put(&self.reduced, pass.clone());
        }
        Ok(pass)
    }

    /// Test support: adds `delta` to the first masked degree-`2t` value of every reduction
    /// round before it is signed, this party's own view included (a wrong product contribution,
    /// the evil twin of the in-process committee and of the fault switchboard, which only
    /// regtest allows).
    pub fn lie_in_openings(&mut self, delta: F) {
        self.lie = Some(delta);
    }

    /// Test support: adds `delta` to the first share of every opening to the committee before
    /// it is signed, this party's own view included (a wrong share in a masked opening, an
    /// `r^2` opening or a gate bit).
    pub fn lie_in_public_openings(&mut self, delta: F) {
        self.lie_open = Some(delta);
    }

    /// Test support: one more deviation of this party ([`Tamper`]).
    pub fn tamper(&mut self, t: Tamper<F>) {
        self.tampers.push(t);
    }

    /// Equivocation evidence gathered in the rounds so far.
    pub fn evidence(&self) -> &[Equivocation] {
        &self.evidence
    }

    /// Parties named at openings to the committee so far, with the evidence.
    pub fn opening_faults(&self) -> &[OpeningFault<F>] {
        &self.faults
    }

    /// Runs the local part as far as it goes: the output, or the next messages to send.
    fn progress(&mut self) -> Result<Step<F, Evaluation<F>>, RoundError> {
        let mut send = Vec::new();
        loop {
            if self.pending.is_none() {
                // A one-round task's output is its round's result, moved out: no replay and
                // no second copy of a vector as long as the task's inputs.
                if let (HeldTask::Products { .. } | HeldTask::Open { .. }, 1) =
                    (&self.task, self.reduced.len())
                {
                    let values = self.reduced.pop().expect("one round done");
                    self.done = true;
                    return Ok(Step {
                        send,
                        output: Some(Evaluation::open(values)),
                    });
                }
                let req = match self.local_pass()? {
                    Pass::Done(out) => {
                        self.done = true;
                        return Ok(Step {
                            send,
                            output: Some(out),
                        });
                    }
                    Pass::Need(req) => req,
                };
                let round = self.reduced.len() as u32;
                let (kind, values) = match req {
                    Request::Reduce(v) => (RoundKind::Reduce, v),
                    Request::Open(v) => (RoundKind::Open, v),
                };
                let chunks = values.len().div_ceil(CHUNK_VALUES).max(1);
                let first = self.next_broadcast;
                self.next_broadcast = u32::try_from(chunks)
                    .ok()
                    .and_then(|c| first.checked_add(c))
                    .ok_or_else(|| EvalError::Opening {
                        round,
                        reason: "more broadcasts than a round number can name".into(),
                    })?;
                self.pending = Some(Pending {
                    kind,
                    round,
                    values,
                    first,
                    chunks,
                    started: 0,
                    absent: BTreeSet::new(),
                });
            }
            if !self.pump(&mut send)? {
                return Ok(Step::send(send));
            }
        }
    }

    /// Starts chunks while the window has room and finishes the chunks at its front that are
    /// over, in order; returns whether the round in progress is complete (its result recorded).
    fn pump(&mut self, send: &mut Vec<Outgoing<F>>) -> Result<bool, RoundError> {
        loop {
            let Some(p) = self.pending.as_ref() else {
                return Ok(false);
            };
            if p.started == p.chunks && self.inflight.is_empty() {
                let p = self.pending.take().expect("checked above");
                self.reduced.push(p.values);
                return Ok(true);
            }
            if p.started < p.chunks && self.inflight.len() < WINDOW {
                self.start_chunk(send)?;
                continue;
            }
            let Some(out) = self.inflight.front().and_then(|c| c.broadcast.output()) else {
                return Ok(false);
            };
            let cur = self.inflight.pop_front().expect("checked above");
            self.finish_chunk(cur, out, send)?;
        }
    }

    /// Masks (a reduction), signs and sends the round's next chunk.
    fn start_chunk(&mut self, send: &mut Vec<Outgoing<F>>) -> Result<(), RoundError> {
        let p = self
            .pending
            .as_mut()
            .expect("a chunk starts only in a round");
        let k = p.started;
        let offset = k * CHUNK_VALUES;
        let end = (offset + CHUNK_VALUES).min(p.values.len());
        let round = p.first + k as u32;
        let mut payload = p.values[offset..end].to_vec();
        let kind = match p.kind {
            RoundKind::Reduce => {
                let (rt, r2t) = self.prss.double(&self.job, u64::from(round), payload.len());
                mult::mask_for_opening(&mut payload, &r2t).map_err(|source| {
                    EvalError::Reduction {
                        round: p.round,
                        source,
                    }
                })?;
                if let (Some(d), Some(x), 0) = (self.lie, payload.first_mut(), k) {
                    *x += d;
                }
                Kind::Reduce { rt }
            }
            RoundKind::Open => {
                if let (Some(d), Some(x), 0) = (self.lie_open, payload.first_mut(), k) {
                    *x += d;
                }
                Kind::Open
            }
        };
        for t in &self.tampers {
            if let Tamper::Round {
                round: r,
                position,
                delta,
            } = t
            {
                if *r == p.round && (offset..end).contains(position) {
                    payload[position - offset] += *delta;
                }
            }
        }
        p.started += 1;
        let len = payload.len();
        let mut ignored = self.ignored.clone();
        ignored.extend(
            self.evidence
                .iter()
                .filter_map(|e| PartyId::new(e.sender() as usize, self.keys.len()).ok()),
        );
        ignored.extend(p.absent.iter().copied());
        let mut broadcast = Broadcast::new(self.me, self.job, round, self.keys.clone(), ignored);
        send.extend(broadcast.start(&self.signer, payload));
        // Messages of this chunk that arrived early.
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
        self.inflight.push_back(Current {
            broadcast,
            kind,
            len,
            offset,
        });
        Ok(())
    }

    /// Opens (and re-shares) a finished chunk into the round's result; the parties missing
    /// from it are no longer waited for in the round's later chunks.
    fn finish_chunk(
        &mut self,
        cur: Current<F>,
        out: BroadcastOutput<F>,
        send: &mut Vec<Outgoing<F>>,
    ) -> Result<(), RoundError> {
        let p = self
            .pending
            .as_mut()
            .expect("a chunk finishes only in a round");
        let round = p.round;
        for ev in out.evidence {
            if !self.evidence.iter().any(|e| e.sender() == ev.sender()) {
                self.evidence.push(ev);
            }
        }
        let convicted: BTreeSet<u32> = self.evidence.iter().map(Equivocation::sender).collect();
        let values: Vec<&(PartyId, Arc<Vec<F>>)> = out
            .values
            .iter()
            .filter(|(p, _)| !convicted.contains(&p.get()))
            .collect();
        // A value dropped for an echo conflict did arrive: one lying echo must not stop the
        // round's later chunks from waiting for its (maybe honest) sender, or they run on
        // without it further than it keeps messages for.
        let missing: Vec<PartyId> = PartyId::all(self.keys.len())
            .filter(|q| *q != self.me && !self.ignored.contains(q))
            .filter(|q| convicted.contains(&q.get()) || !cur.broadcast.received(*q))
            .filter(|q| p.absent.insert(*q))
            .collect();
        for q in missing {
            for c in &mut self.inflight {
                send.extend(c.broadcast.ignore(q));
            }
        }
        match cur.kind {
            Kind::Reduce { rt } => {
                let openings: Vec<(usize, &[F])> =
                    values.iter().map(|(p, v)| (p.point(), &v[..])).collect();
                let wrap = |source| {
                    let source = match source {
                        MultError::Inconsistent { position } => MultError::Inconsistent {
                            position: position + cur.offset,
                        },
                        e => e,
                    };
                    EvalError::Reduction { round, source }
                };
                let d = mult::open_2t(self.prss.t(), &openings, cur.len).map_err(wrap)?;
                let d = mult::reshare(d, &rt).map_err(wrap)?;
                put(&mut p.values, cur.offset, &d).map_err(wrap)?;
            }
            Kind::Open => {
                let fail = |reason: String| EvalError::Opening { round, reason };
                // A vector of the wrong length is an erasure; its signer is named with the
                // others off the polynomial.
                let (good, short): (Vec<_>, Vec<_>) = values
                    .iter()
                    .copied()
                    .partition(|(_, v)| v.len() == cur.len);
                let openings: Vec<(PartyId, &[F])> =
                    good.iter().map(|(p, v)| (*p, &v[..])).collect();
                let params =
                    Params::new(self.keys.len(), self.prss.t()).map_err(|e| fail(e.to_string()))?;
                match decode_vec(params, &openings).map_err(|e| fail(e.to_string()))? {
                    DecodeVec::Decoded {
                        values: v,
                        culprits,
                    } => {
                        let mut named: Vec<PartyId> = culprits;
                        named.extend(short.iter().map(|(p, _)| *p));
                        named.sort_unstable();
                        if !named.is_empty() {
                            let openings = values
                                .iter()
                                .filter_map(|(p, v)| {
                                    Some((cur.broadcast.header(*p)?.clone(), v.clone()))
                                })
                                .collect();
                            self.faults.push(OpeningFault {
                                round: cur.broadcast.round(),
                                culprits: named,
                                openings,
                            });
                        }
                        put(&mut p.values, cur.offset, &v).map_err(|e| fail(e.to_string()))?;
                    }
                    DecodeVec::Inconsistent { position } => {
                        return Err(fail(format!(
                            "the shares are inconsistent at position {}",
                            position + cur.offset
                        ))
                        .into())
                    }
                }
            }
        }
        Ok(())
    }

    fn after(&mut self, mut send: Vec<Outgoing<F>>) -> Result<Step<F, Evaluation<F>>, RoundError> {
        if !self.pump(&mut send)? {
            return Ok(Step::send(send));
        }
        let mut step = self.progress()?;
        send.append(&mut step.send);
        step.send = send;
        Ok(step)
    }

    /// The first broadcast round not finished: the front of the window, or the next one to
    /// start.
    fn front(&self) -> u32 {
        self.inflight
            .front()
            .map_or(self.next_broadcast, |c| c.broadcast.round())
    }
}

impl<F: PrimeField> Machine<F> for EvalMachine<'_, F> {
    type Output = Evaluation<F>;

    fn start(&mut self) -> Result<Step<F, Evaluation<F>>, RoundError> {
        if self.done || self.pending.is_some() || !self.reduced.is_empty() {
            return Ok(Step::none());
        }
        self.progress()
    }

    fn handle(
        &mut self,
        from: PartyId,
        msg: Message<F>,
    ) -> Result<Step<F, Evaluation<F>>, RoundError> {
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
        let front = self.front();
        if round < front {
            return Err(RoundError::PastRound {
                from,
                kind,
                round,
                sub,
            });
        }
        if let Some(cur) = self
            .inflight
            .iter_mut()
            .find(|c| c.broadcast.round() == round)
        {
            let send = cur.broadcast.handle(from, msg)?;
            return self.after(send);
        }
        // A peer finishes a chunk only after this party's last message of it, so an honest
        // peer is at most `2 * WINDOW - 1` broadcasts ahead of this party's front.
        let ahead = (round - front) as usize;
        if ahead >= 2 * WINDOW || self.early.len() >= 3 * self.keys.len() * 2 * WINDOW {
            return Err(RoundError::TooEarly { from, kind, round });
        }
        // A kept message is no larger than an honest one (a chunk's values, one hash or header
        // per party): the count bound above is then a bound on bytes too.
        let n = self.keys.len();
        let oversized = match &msg {
            Message::Value { payload, .. } if payload.len() > CHUNK_VALUES => Some(format!(
                "{} values, a chunk holds at most {CHUNK_VALUES}",
                payload.len()
            )),
            Message::Echo { hashes, .. } if hashes.len() != n => {
                Some(format!("{} hashes for {n} parties", hashes.len()))
            }
            Message::Forward { headers, .. } if headers.len() > n => {
                Some(format!("{} headers for {n} parties", headers.len()))
            }
            _ => None,
        };
        if let Some(reason) = oversized {
            return Err(RoundError::Malformed { from, kind, reason });
        }
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
        Ok(Step::none())
    }

    fn deadline(&mut self, round: RoundId) -> Result<Step<F, Evaluation<F>>, RoundError> {
        let Some(cur) = self
            .inflight
            .iter_mut()
            .find(|c| c.broadcast.waiting() == Some(round))
        else {
            return Ok(Step::none());
        };
        let send = cur.broadcast.deadline(round);
        self.after(send)
    }

    fn waiting(&self) -> Option<RoundId> {
        if self.done {
            return None;
        }
        self.inflight.front().and_then(|c| c.broadcast.waiting())
    }
}

/// Writes a finished chunk's result `d` over positions `offset..offset + d.len()` of the
/// round's vector.
///
/// # Errors
/// [`MultError::Lengths`] if the chunk does not fit (never for the machine's own chunks).
fn put<F: Copy>(values: &mut [F], offset: usize, d: &[F]) -> Result<(), MultError> {
    let room = values.len().saturating_sub(offset);
    let slot = values
        .get_mut(offset..offset + d.len())
        .ok_or(MultError::Lengths {
            left: room,
            right: d.len(),
        })?;
    slot.copy_from_slice(d);
    Ok(())
}

/// Checks the columns a node reads and the width of its comparisons.
fn check_node<F: PrimeField>(
    node: &Node,
    columns: &[Vec<F>],
    rows: usize,
) -> Result<(), EvalError> {
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
        Node::Neg(a) | Node::Scale(a, _) => check_node(a, columns, rows),
        Node::Add(a, b) | Node::Sub(a, b) | Node::Mul(a, b) => {
            check_node(a, columns, rows)?;
            check_node(b, columns, rows)
        }
        Node::LessThanZero { value, bits } | Node::EqualsZero { value, bits } => {
            let max = compare::max_compare_bits::<F>();
            if *bits == 0 || *bits > max {
                let mut name = format!("{node:?}");
                if name.len() > 120 {
                    let cut = (0..=117)
                        .rev()
                        .find(|i| name.is_char_boundary(*i))
                        .unwrap_or(0);
                    name.truncate(cut);
                    name.push_str("...");
                }
                return Err(EvalError::CompareBits {
                    node: name,
                    bits: *bits,
                    max,
                });
            }
            check_node(value, columns, rows)
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

    /// The four parties' signing keys (party `i` has `[i; 32]`) and their verifying keys.
    fn keys4() -> (Vec<SigningKey>, Vec<VerifyingKey>) {
        let signers: Vec<SigningKey> = (0..4)
            .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]).unwrap())
            .collect();
        let keys = signers.iter().map(|k| *k.verifying_key()).collect();
        (signers, keys)
    }

    /// Each of four parties' products task over its shares `a[i]`, `b[i]`.
    fn products4<'s>(a: &'s [Vec<F>], b: &'s [Vec<F>]) -> Vec<Task<'s, F>> {
        a.iter()
            .zip(b)
            .map(|(a, b)| Task::Products { a, b })
            .collect()
    }

    /// Each of four parties' task opening its shares `s[i]`.
    fn opens4(s: &[Vec<F>]) -> Vec<Task<'_, F>> {
        s.iter().map(|shares| Task::Open { shares }).collect()
    }

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
        let (_, keys) = keys4();
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
        assert_eq!(
            step.output.map(|e| e.values),
            Some(vec![F::from_u64(21 << 16)])
        );
        assert_eq!(m.waiting(), None);
    }

    /// What four parties did in one evaluation: each one's output and the messages it sent
    /// (in order), and the local passes its memo ran (0 without one).
    type Outcome = (
        Vec<Vec<F>>,
        Vec<Vec<Outgoing<F>>>,
        Vec<usize>,
        Vec<Vec<Delivered>>,
    );

    /// A message handed to a party: its sender and the message.
    type Delivered = (PartyId, Message<F>);

    /// Evaluates `plan` among four parties whose driver re-creates each machine from the
    /// messages it was handed for every new message (as the party daemon does), with a memo
    /// per party or without.
    fn rebuilt_per_event(plan: &Plan, cols: &[Vec<Vec<F>>], memo: bool) -> Outcome {
        let n = 4;
        let prss = agree::<F>(n, 1, 5);
        let (signers, keys) = keys4();
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
            outputs[i] = step.output.map(|e| e.values);
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
        (
            outputs,
            sent,
            memos.iter().map(LocalMemo::runs).collect(),
            logs,
        )
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
        let (plain_out, plain_sent, plain_runs, _) = rebuilt_per_event(&plan, &cols, false);
        let (memo_out, memo_sent, memo_runs, _) = rebuilt_per_event(&plan, &cols, true);
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

    #[test]
    fn comparisons_and_gates_replay_byte_identically_with_one_pass_per_round() {
        use crate::mpc::query::{Gate, GateTest, Opened};
        use crate::mpc::shamir::{deal_vec, reconstruct, Params};
        use rand::SeedableRng;
        let x: Vec<i128> = vec![1, 0, -1];
        let y: Vec<i128> = vec![1, -1, -2];
        // Few rounds (the driver below replays every log for every event): a 2-bit LTZ has no
        // BitLT round.
        let below = Node::LessThanZero {
            value: Box::new(Node::Sub(
                Box::new(Node::Column(1)),
                Box::new(Node::Column(0)),
            )),
            bits: 2,
        };
        let nodes = [
            Node::Mul(Box::new(below.clone()), Box::new(Node::Column(0))),
            Node::Column(1),
        ];
        let plan = Plan {
            field: F::NAME,
            rows: x.len(),
            opened: nodes
                .into_iter()
                .map(|node| Opened {
                    label: String::new(),
                    degree: node.degree(),
                    scale: 0,
                    bits: 0,
                    node,
                })
                .collect(),
            outputs: Vec::new(),
            degree: 2,
            gates: vec![Gate {
                tests: vec![GateTest::AtLeast {
                    rows: below,
                    min_rows: 2,
                }],
                opened: vec![0],
            }],
            min_rows: Some(2),
            supports: Vec::new(),
        };
        let params = Params::new(4, 1).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let values = vec![x, y];
        let mut cols: Vec<Vec<Vec<F>>> = vec![Vec::new(); 4];
        for column in &values {
            let secrets: Vec<F> = column.iter().map(|v| F::from_i128(*v)).collect();
            for (i, shares) in deal_vec(&secrets, params, &mut rng).into_iter().enumerate() {
                cols[i].push(shares);
            }
        }
        // Every party's machine is re-created for every event, with a memo.
        let (memo_out, memo_sent, memo_runs, logs) = rebuilt_per_event(&plan, &cols, true);
        // A restart without the memo: party 1's machine re-created once and re-fed its log
        // re-emits byte-identical messages and the same output.
        let prss = agree::<F>(4, 1, 5);
        let (signers, keys) = keys4();
        let mut again = EvalMachine::new(
            &prss[0],
            [7; 32],
            Task::Plan {
                plan: &plan,
                columns: &cols[0],
            },
            keys,
            signers[0].clone(),
            BTreeSet::new(),
        )
        .unwrap();
        let mut step = again.start().unwrap();
        let mut resent = std::mem::take(&mut step.send);
        let mut out = None;
        for (from, msg) in &logs[0] {
            if let Ok(mut s) = again.handle(*from, msg.clone()) {
                resent.append(&mut s.send);
                out = out.or(s.output);
            }
        }
        assert_eq!(
            resent, memo_sent[0],
            "byte-identical messages after a restart"
        );
        assert_eq!(out.map(|e| e.values), Some(memo_out[0].clone()));
        // Every batch of random bits is kept as bits; the roots of its squares are dropped.
        assert!(!again.roots.bits.is_empty());
        assert!(
            again.roots.entries.is_empty(),
            "roots kept beside their bits"
        );
        for (sent, runs) in memo_sent.iter().zip(&memo_runs) {
            let rounds = sent
                .iter()
                .filter(|o| matches!(o.msg, Message::Value { .. }))
                .count();
            // The row comparison (its repeat in the gate test is computed once), the gate's
            // count comparison and the gate bit's opening.
            assert!(rounds >= 6, "comparisons take rounds: {rounds}");
            assert_eq!(*runs, rounds + 1, "one local pass per round and the last");
        }
        // y < x on two rows (-1 < 0 and -2 < -1; not 1 < 1): the gate passes
        // and sum 0 opens.
        let want = plan.eval_clear(&values);
        for (k, w) in want.iter().enumerate() {
            let shares: Vec<(usize, F)> = (0..4).map(|i| (i + 1, memo_out[i][k])).collect();
            let got = crate::mpc::query::num::to_signed(reconstruct(params, &shares).unwrap());
            assert_eq!(got, *w, "sum {k}");
        }
    }

    #[test]
    fn opening_fault_evidence_convicts_only_the_party_off_the_polynomial() {
        let (signers, keys) = keys4();
        let job = [3u8; 32];
        // Shares of 5 + 2x and of 1 + 7x; party 3 is off in the second position.
        let shares = |i: u64| vec![F::from_u64(5 + 2 * i), F::from_u64(1 + 7 * i)];
        let signed = |i: usize, v: Vec<F>| {
            let h = SignedHeader::sign(
                &signers[i - 1],
                job,
                4,
                i as u32,
                i as u32,
                payload_hash(&v),
            );
            (h, Arc::new(v))
        };
        let mut openings: Vec<(SignedHeader, Arc<Vec<F>>)> =
            (1..=4).map(|i| signed(i, shares(i as u64))).collect();
        let mut bad = shares(3);
        bad[1] += F::ONE;
        openings[2] = signed(3, bad);
        let fault = OpeningFault {
            round: 4,
            culprits: vec![PartyId::from_wire(3).unwrap()],
            openings: openings.clone(),
        };
        assert_eq!(fault.verify(&job, &keys, 1), Ok(()));
        // Blaming another party, another round or job, or a payload not signed: refused.
        let other = OpeningFault {
            culprits: vec![PartyId::from_wire(2).unwrap()],
            ..fault.clone()
        };
        assert!(other.verify(&job, &keys, 1).is_err());
        let late = OpeningFault {
            round: 5,
            ..fault.clone()
        };
        assert!(late.verify(&job, &keys, 1).is_err());
        assert!(fault.verify(&[0; 32], &keys, 1).is_err());
        let mut forged = fault.clone();
        forged.openings[2].1 = Arc::new(shares(3));
        assert!(forged.verify(&job, &keys, 1).is_err());
        // Consistent openings convict nobody.
        let clean = OpeningFault {
            round: 4,
            culprits: vec![PartyId::from_wire(3).unwrap()],
            openings: (1..=4).map(|i| signed(i, shares(i as u64))).collect(),
        };
        assert!(clean.verify(&job, &keys, 1).is_err());
    }

    /// What four parties did in one run of a task: each party's output (`None` when silent),
    /// the messages each sent, how many times the network went idle with a party still
    /// waiting (each time, every waiting party is handed its deadline), and each party's
    /// opening faults.
    struct Run4 {
        outputs: Vec<Option<Result<Vec<F>, RoundError>>>,
        sent: Vec<Vec<Outgoing<F>>>,
        idle: usize,
        faults: Vec<Vec<OpeningFault<F>>>,
        /// Each party's dot products taken from its replays' cache.
        dot_hits: Vec<usize>,
    }

    /// Runs `tasks[i - 1]` at party `i` of four (t = 1), messages delivered in the order sent;
    /// party `silent` never starts; `tamper` deviates one party.
    fn run4(
        tasks: Vec<Task<'_, F>>,
        silent: Option<usize>,
        tamper: Option<(usize, Tamper<F>)>,
    ) -> Run4 {
        run4_with(tasks, silent, tamper, None, &|_, _, m| Some(m.clone()))
    }

    /// What party `from` really sends party `to` (both 1-based) in place of `msg` (`None`:
    /// nothing).
    type Twin<'t> = dyn Fn(usize, usize, &Message<F>) -> Option<Message<F>> + 't;

    /// [`run4`] with every message passed through `twin` on its way (a malicious sender's
    /// deviations); `deaf: (i, j)` builds party `i`'s machine ignoring party `j`.
    fn run4_with(
        tasks: Vec<Task<'_, F>>,
        silent: Option<usize>,
        tamper: Option<(usize, Tamper<F>)>,
        deaf: Option<(usize, usize)>,
        twin: &Twin<'_>,
    ) -> Run4 {
        let n = 4;
        let prss = agree::<F>(n, 1, 11);
        let (signers, keys) = keys4();
        let id = |i: usize| PartyId::new(i + 1, n).unwrap();
        let mut machines: Vec<EvalMachine<'_, F>> = tasks
            .into_iter()
            .enumerate()
            .map(|(i, task)| {
                let ignored = match deaf {
                    Some((a, b)) if a == i + 1 => BTreeSet::from([id(b - 1)]),
                    _ => BTreeSet::new(),
                };
                EvalMachine::new(
                    &prss[i],
                    [9; 32],
                    task,
                    keys.clone(),
                    signers[i].clone(),
                    ignored,
                )
                .unwrap()
            })
            .collect();
        if let Some((i, t)) = tamper {
            machines[i - 1].tamper(t);
        }
        let mut outputs: Vec<Option<Result<Vec<F>, RoundError>>> = vec![None; n];
        let mut sent: Vec<Vec<Outgoing<F>>> = vec![Vec::new(); n];
        let mut queue: VecDeque<(usize, Delivered)> = VecDeque::new();
        let mut idle = 0;
        let mut post = |i: usize,
                        r: Result<Step<F, Evaluation<F>>, RoundError>,
                        outputs: &mut Vec<Option<Result<Vec<F>, RoundError>>>,
                        queue: &mut VecDeque<(usize, Delivered)>| {
            let step = match r {
                Ok(s) => s,
                Err(e) if e.is_refusal() => return,
                Err(e) => {
                    outputs[i] = Some(Err(e));
                    return;
                }
            };
            for o in step.send {
                for to in (0..n).filter(|to| *to != i) {
                    if matches!(o.to, Recipient::All) || o.to == Recipient::One(id(to)) {
                        if let Some(m) = twin(i + 1, to + 1, &o.msg) {
                            queue.push_back((to, (id(i), m)));
                        }
                    }
                }
                sent[i].push(o);
            }
            if let Some(out) = step.output {
                outputs[i] = Some(Ok(out.values));
            }
        };
        for (i, m) in machines.iter_mut().enumerate() {
            if silent != Some(i + 1) {
                post(i, m.start(), &mut outputs, &mut queue);
            }
        }
        loop {
            while let Some((to, (from, msg))) = queue.pop_front() {
                if silent == Some(to + 1) || outputs[to].is_some() {
                    continue;
                }
                let r = machines[to].handle(from, msg);
                post(to, r, &mut outputs, &mut queue);
            }
            let waiting: Vec<(usize, RoundId)> = (0..n)
                .filter(|i| silent != Some(i + 1) && outputs[*i].is_none())
                .filter_map(|i| Some((i, machines[i].waiting()?)))
                .collect();
            if waiting.is_empty() {
                break;
            }
            idle += 1;
            assert!(idle < 100, "the parties never finish");
            for (i, round) in waiting {
                let r = machines[i].deadline(round);
                post(i, r, &mut outputs, &mut queue);
            }
        }
        Run4 {
            outputs,
            faults: machines
                .iter()
                .map(|m| m.opening_faults().to_vec())
                .collect(),
            dot_hits: machines.iter().map(|m| m.roots.dot_hits).collect(),
            sent,
            idle,
        }
    }

    /// Broadcast rounds of the values a party sent, with their lengths.
    fn value_rounds(sent: &[Outgoing<F>]) -> Vec<(u32, usize)> {
        sent.iter()
            .filter_map(|o| match &o.msg {
                Message::Value { header, payload } => Some((header.round, payload.len())),
                _ => None,
            })
            .collect()
    }

    /// Party `i`'s shares of `values` (t = 1, four parties), from a seeded dealing.
    fn dealt(values: &[F], seed: u64) -> Vec<Vec<F>> {
        use crate::mpc::shamir::{deal_vec, Params};
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        deal_vec(values, Params::new(4, 1).unwrap(), &mut rng)
    }

    /// The naive opening of one position: Lagrange interpolation at 0 of the first two
    /// parties' shares.
    fn naive_open(shares: &[Vec<F>], k: usize) -> F {
        use crate::mpc::shamir::{reconstruct, Params};
        reconstruct(
            Params::new(4, 1).unwrap(),
            &[(1, shares[0][k]), (2, shares[1][k])],
        )
        .unwrap()
    }

    #[test]
    fn a_round_of_several_chunks_multiplies_and_opens_like_the_clear_values() {
        let len = 2 * CHUNK_VALUES + 123;
        let a: Vec<F> = (0..len as u64).map(|k| F::from_u64(k * 7 + 1)).collect();
        let b: Vec<F> = (0..len as u64).map(|k| F::from_u64(k ^ 0x5555)).collect();
        let (sa, sb) = (dealt(&a, 1), dealt(&b, 2));
        let run = run4(products4(&sa, &sb), None, None);
        assert_eq!(run.idle, 0, "no deadline is needed among honest parties");
        // Three broadcasts of at most CHUNK_VALUES values, numbered 0, 1, 2.
        for sent in &run.sent {
            assert_eq!(
                value_rounds(sent),
                [(0, CHUNK_VALUES), (1, CHUNK_VALUES), (2, 123)]
            );
        }
        let c: Vec<Vec<F>> = run
            .outputs
            .into_iter()
            .map(|o| o.unwrap().unwrap())
            .collect();
        // The naive check at the chunks' edges.
        for k in [0, CHUNK_VALUES - 1, CHUNK_VALUES, 2 * CHUNK_VALUES, len - 1] {
            assert_eq!(naive_open(&c, k), a[k] * b[k], "product {k}");
        }
        // And all of them, opened to the committee in chunks too.
        let opened = run4(opens4(&c), None, None);
        let want: Vec<F> = a.iter().zip(&b).map(|(x, y)| *x * *y).collect();
        for (sent, out) in opened.sent.iter().zip(opened.outputs) {
            assert_eq!(value_rounds(sent).len(), 3);
            assert!(out.unwrap().unwrap() == want);
        }
    }

    #[test]
    fn a_silent_party_costs_each_round_three_deadlines_not_three_per_chunk() {
        // Five chunks; party 4 never speaks.
        let len = 4 * CHUNK_VALUES + 1;
        let a: Vec<F> = (0..len as u64).map(|k| F::from_u64(k + 3)).collect();
        let (sa, sb) = (dealt(&a, 3), dealt(&a, 4));
        let run = run4(products4(&sa, &sb), Some(4), None);
        // One deadline per sub-round (values, echoes, forwards) of the first chunk; the later
        // chunks do not wait for party 4.
        assert_eq!(run.idle, 3);
        let c: Vec<Vec<F>> = run.outputs[..3]
            .iter()
            .map(|o| o.clone().unwrap().unwrap())
            .collect();
        for k in [0, CHUNK_VALUES, len - 1] {
            assert_eq!(naive_open(&c, k), a[k] * a[k], "product {k}");
        }
    }

    #[test]
    fn a_wrong_share_in_a_later_chunk_is_named_on_that_chunks_openings_alone() {
        let len = 2 * CHUNK_VALUES + 10;
        let x: Vec<F> = (0..len as u64).map(|k| F::from_u64(k * k)).collect();
        let s = dealt(&x, 5);
        let position = CHUNK_VALUES + 5;
        let lie = Tamper::Round {
            round: 0,
            position,
            delta: F::ONE,
        };
        let run = run4(opens4(&s), None, Some((2, lie)));
        let (_, keys) = keys4();
        for i in [0, 2, 3] {
            // Corrected, and party 2 named in broadcast round 1 (the second chunk) with that
            // chunk's four signed openings as the evidence.
            assert!(run.outputs[i].clone().unwrap().unwrap() == x);
            let [fault] = &run.faults[i][..] else {
                panic!("one fault at party {}: {:?}", i + 1, run.faults[i].len());
            };
            assert_eq!(fault.round, 1);
            assert_eq!(fault.culprits, [PartyId::new(2, 4).unwrap()]);
            assert_eq!(fault.openings.len(), 4);
            assert!(fault.openings.iter().all(|(_, v)| v.len() == CHUNK_VALUES));
            fault.verify(&[9; 32], &keys, 1).unwrap();
        }
        // The same lie in a reduction is caught at its position in the round.
        let y: Vec<F> = vec![F::from_u64(3); len];
        let sy = dealt(&y, 6);
        let lie = Tamper::Round {
            round: 0,
            position: 2 * CHUNK_VALUES + 7,
            delta: F::ONE,
        };
        let run = run4(products4(&s, &sy), None, Some((3, lie)));
        for i in [0, 1, 3] {
            match run.outputs[i].clone().unwrap() {
                Err(RoundError::Eval(EvalError::Reduction {
                    round: 0,
                    source: MultError::Inconsistent { position },
                })) => assert_eq!(position, 2 * CHUNK_VALUES + 7),
                other => panic!("party {}: {other:?}", i + 1),
            }
        }
    }

    #[test]
    fn messages_are_kept_up_to_two_windows_ahead_and_refused_beyond() {
        let len = 2 * WINDOW * CHUNK_VALUES + 1;
        let x: Vec<F> = vec![F::ONE; len];
        let s = dealt(&x, 7);
        // What party 2 sends when the others answer: a value for every chunk.
        let run = run4(opens4(&s), None, None);
        let values: Vec<Message<F>> = run.sent[1]
            .iter()
            .filter(|o| matches!(o.msg, Message::Value { .. }))
            .map(|o| o.msg.clone())
            .collect();
        assert_eq!(values.len(), 2 * WINDOW + 1);
        // A fresh party 1, in broadcast 0: broadcasts up to 2 * WINDOW - 1 are kept, the next
        // is too early.
        let prss = agree::<F>(4, 1, 11);
        let (_, keys) = keys4();
        let mut m = EvalMachine::new(
            &prss[0],
            [9; 32],
            Task::Open { shares: &s[0] },
            keys,
            SigningKey::from_bytes(&[1; 32]).unwrap(),
            BTreeSet::new(),
        )
        .unwrap();
        m.start().unwrap();
        let two = PartyId::new(2, 4).unwrap();
        for v in &values[WINDOW..2 * WINDOW] {
            assert!(m.handle(two, v.clone()).unwrap().send.is_empty());
        }
        assert!(matches!(
            m.handle(two, values[2 * WINDOW].clone()),
            Err(RoundError::TooEarly { round, .. }) if round as usize == 2 * WINDOW
        ));
        // A second copy of a kept message is a duplicate.
        assert!(matches!(
            m.handle(two, values[WINDOW].clone()),
            Err(RoundError::Duplicate { .. })
        ));
    }

    #[test]
    fn a_replay_takes_a_long_dot_product_from_the_cache_and_opens_it_right() {
        let rows = 3 * CACHED_DOT_LEN + 1;
        let mut csv = String::from("x,y\n");
        for r in 0..rows {
            csv.push_str(&format!("{},{}\n", r % 17, 5 + r % 3));
        }
        let d = Dataset::parse(&csv).unwrap();
        let plan = plan::<F>(&parse("sum(x * y), dot(x, x), sum(x)").unwrap(), &d.schema).unwrap();
        let mut cols: Vec<Vec<Vec<F>>> = vec![Vec::new(); 4];
        for (c, column) in d.to_field::<F>().into_iter().enumerate() {
            for (i, shares) in dealt(&column, 20 + c as u64).into_iter().enumerate() {
                cols[i].push(shares);
            }
        }
        let run = run4(
            (0..4)
                .map(|i| Task::Plan {
                    plan: &plan,
                    columns: &cols[i],
                })
                .collect(),
            None,
            None,
        );
        // Two long dot products, each computed once: the pass after the reduction takes both.
        assert_eq!(run.dot_hits, [2; 4]);
        let out: Vec<Vec<F>> = run
            .outputs
            .into_iter()
            .map(|o| o.unwrap().unwrap())
            .collect();
        let (mut xy, mut xx, mut x) = (0u64, 0u64, 0u64);
        for r in 0..rows as u64 {
            let (a, b) = (r % 17, 5 + r % 3);
            xy += a * b;
            xx += a * a;
            x += a;
        }
        // Fixed point: values at scale 2^16, the products' sums at 2^32.
        let want = [
            F::from_u64(xy) * F::from_u64(1 << 32),
            F::from_u64(xx) * F::from_u64(1 << 32),
            F::from_u64(x) * F::from_u64(1 << 16),
        ];
        for (k, w) in want.iter().enumerate() {
            assert_eq!(naive_open(&out, k), *w, "aggregate {k}");
        }
    }

    #[test]
    fn a_party_put_in_conflict_by_a_lying_echo_is_still_waited_for_in_later_chunks() {
        // Party 4 runs without party 3 (sends it nothing, does not wait for it) and tells
        // parties 1 and 2 in its echo of broadcast 0 that party 3 sent another value: they drop
        // party 3's value of chunk 0 (an echo conflict, no equivocation). Party 3's value did arrive: parties 1 and 2 must go on
        // waiting for it, or they run the round's later chunks without it, faster than it can
        // follow (it waits on its deadlines for party 4), and it refuses their messages as too
        // early, then misses them.
        let len = 2 * WINDOW * CHUNK_VALUES + 1;
        let x: Vec<F> = (0..len as u64).map(|k| F::from_u64(k + 1)).collect();
        let s = dealt(&x, 8);
        let twin = |from: usize, to: usize, m: &Message<F>| -> Option<Message<F>> {
            if from != 4 {
                return Some(m.clone());
            }
            match m {
                _ if to == 3 => None,
                Message::Echo { job, round, hashes } if *round == 0 => {
                    let mut hashes = hashes.clone();
                    hashes[2] = Some([0xAB; 32]);
                    Some(Message::Echo {
                        job: *job,
                        round: *round,
                        hashes,
                    })
                }
                _ => Some(m.clone()),
            }
        };
        let run = run4_with(opens4(&s), None, None, Some((4, 3)), &twin);
        for i in 0..3 {
            match &run.outputs[i] {
                Some(Ok(v)) => assert!(*v == x, "party {} opened other values", i + 1),
                other => panic!(
                    "party {}: {:?}",
                    i + 1,
                    other.as_ref().map(|r| r.as_ref().err())
                ),
            }
        }
    }

    #[test]
    fn a_message_kept_for_a_later_broadcast_is_no_larger_than_an_honest_one() {
        let len = 2 * WINDOW * CHUNK_VALUES;
        let x: Vec<F> = vec![F::ONE; len];
        let s = dealt(&x, 9);
        let prss = agree::<F>(4, 1, 11);
        let (signers, keys) = keys4();
        let mut m = EvalMachine::new(
            &prss[0],
            [9; 32],
            Task::Open { shares: &s[0] },
            keys,
            signers[0].clone(),
            BTreeSet::new(),
        )
        .unwrap();
        m.start().unwrap();
        let two = PartyId::new(2, 4).unwrap();
        let round = WINDOW as u32;
        // A signed value longer than any chunk, for a broadcast not started yet.
        let big = vec![F::ONE; CHUNK_VALUES + 1];
        let header = SignedHeader::sign(&signers[1], [9; 32], round, 2, 2, payload_hash(&big));
        let value = Message::Value {
            header,
            payload: Arc::new(big),
        };
        assert!(matches!(
            m.handle(two, value),
            Err(RoundError::Malformed { .. })
        ));
        // An echo or a forward with more entries than parties.
        let echo = |parties: usize| Message::Echo {
            job: [9; 32],
            round,
            hashes: vec![None; parties],
        };
        assert!(matches!(
            m.handle(two, echo(1000)),
            Err(RoundError::Malformed { .. })
        ));
        let forward = Message::Forward {
            job: [9; 32],
            round,
            headers: vec![SignedHeader::sign(&signers[1], [9; 32], round, 2, 2, [0; 32]); 5],
        };
        assert!(matches!(
            m.handle(two, forward),
            Err(RoundError::Malformed { .. })
        ));
        // Honest-sized messages are still kept.
        assert!(m.handle(two, echo(4)).unwrap().send.is_empty());
    }
}
