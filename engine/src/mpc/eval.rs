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
//! Communication goes through the [`Exchange`] trait: the caller (the in-process
//! [`crate::mpc::committee`] or the party node) sends this party's degree-`2t` openings to every
//! party and returns what arrived. The party then adds the service's output mask
//! ([`mask_outputs`]) and hands the masked shares to the service.
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
use std::sync::Arc;

use crate::mpc::field::PrimeField;
use crate::mpc::mult::{self, MultError};
use crate::mpc::prss::Prss;
use crate::mpc::query::num::to_field;
use crate::mpc::query::{Node, Plan};

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
    /// The exchange failed (network, timeout, equivocation...).
    #[error("exchange in round {round} failed: {reason}")]
    Exchange {
        /// The round.
        round: u32,
        /// Why.
        reason: String,
    },
}

/// `(party index, its opening)` for every opening that arrived.
pub type Openings<F> = Vec<(usize, Arc<Vec<F>>)>;

/// Sends this party's degree-`2t` openings to every party, and returns `(party index,
/// opening)` for every party whose opening arrived and was accepted (this party's included).
pub trait Exchange<F> {
    /// One all-to-all round.
    ///
    /// # Errors
    /// [`EvalError::Exchange`] when the round cannot complete.
    fn exchange(&mut self, round: u32, mine: Vec<F>) -> Result<Openings<F>, EvalError>;
}

/// Per-party evaluation context.
#[derive(Debug)]
pub struct Evaluator<'a, F, X> {
    prss: &'a Prss<F>,
    job: [u8; 32],
    round: u32,
    net: X,
}

enum Vals<'a, F: Clone> {
    Const(F),
    Shares(Cow<'a, [F]>),
}

impl<'a, F: PrimeField, X: Exchange<F>> Evaluator<'a, F, X> {
    /// A context for job `job`; PRSS counters and round numbers start at 0.
    pub fn new(prss: &'a Prss<F>, job: [u8; 32], net: X) -> Self {
        Evaluator {
            prss,
            job,
            round: 0,
            net,
        }
    }

    /// The exchange (to inspect it after evaluation).
    pub fn into_exchange(self) -> X {
        self.net
    }

    /// Reduces degree-`2t` values to degree-`t` shares (one round, one message per party).
    ///
    /// # Errors
    /// [`EvalError::Exchange`], [`EvalError::Reduction`].
    pub fn reduce(&mut self, mut c2t: Vec<F>) -> Result<Vec<F>, EvalError> {
        let round = self.round;
        self.round += 1;
        let len = c2t.len();
        let (rt, r2t) = self.prss.double(&self.job, u64::from(round), len);
        let wrap = |source| EvalError::Reduction { round, source };
        mult::mask_for_opening(&mut c2t, &r2t).map_err(wrap)?;
        let got = self.net.exchange(round, c2t)?;
        let openings: Vec<(usize, &[F])> = got.iter().map(|(i, v)| (*i, &v[..])).collect();
        let d = mult::open_2t(self.prss.t(), &openings, len).map_err(wrap)?;
        mult::reshare(d, &rt).map_err(wrap)
    }

    /// This party's degree-`t` shares of every opened sum of `plan`, from its share columns
    /// (`columns[field column][row]`).
    ///
    /// # Errors
    /// [`EvalError::ColumnLength`] for a missing or short column; the errors of
    /// [`Evaluator::reduce`].
    pub fn evaluate(&mut self, plan: &Plan, columns: &[Vec<F>]) -> Result<Vec<F>, EvalError> {
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
            let reduced = self.reduce(c2t)?;
            for (k, v) in to_reduce.into_iter().zip(reduced) {
                out[k] = v;
            }
        }
        Ok(out)
    }

    /// The row sum of `node` (degree `2t` when a product sits at its top).
    fn aggregate(&mut self, node: &Node, columns: &[Vec<F>], rows: usize) -> Result<F, EvalError> {
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
            Node::Column(_) | Node::Const(_) => match self.rows(node, columns)? {
                Vals::Shares(v) => F::sum_slice(&v),
                Vals::Const(c) => c * F::from_u64(rows as u64),
            },
        })
    }

    /// The per-row values of `node` as degree-`t` shares.
    fn rows<'c>(&mut self, node: &Node, columns: &'c [Vec<F>]) -> Result<Vals<'c, F>, EvalError> {
        Ok(match node {
            Node::Column(c) => Vals::Shares(Cow::Borrowed(&columns[*c][..])),
            Node::Const(k) => Vals::Const(to_field(k)),
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
                        let round = self.round;
                        let c2t = mult::local_products(&v, &w)
                            .map_err(|source| EvalError::Reduction { round, source })?;
                        Vals::Shares(Cow::Owned(self.reduce(c2t)?))
                    }
                }
            }
        })
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

    type F = Mersenne127;

    struct NoNet;

    impl Exchange<F> for NoNet {
        fn exchange(&mut self, round: u32, _mine: Vec<F>) -> Result<Openings<F>, EvalError> {
            Err(EvalError::Exchange {
                round,
                reason: "offline".into(),
            })
        }
    }

    #[test]
    fn bad_shapes_are_typed_errors() {
        let d = Dataset::parse("x,y\n1,2\n3,4\n5,6\n").unwrap();
        let prss = agree::<F>(4, 1, 3);
        let linear = plan::<F>(&parse("sum(x + y)").unwrap(), &d.schema).unwrap();
        let cols: Vec<Vec<F>> = d.to_field();
        // Public values are a valid (degree-0) sharing: the sum comes out in the clear.
        let mut ev = Evaluator::new(&prss[0], [0u8; 32], NoNet);
        let s = ev.evaluate(&linear, &cols).unwrap();
        assert_eq!(s, [F::from_u64(21 << 16)]);
        let short = vec![cols[0].clone(), cols[1][..2].to_vec()];
        assert_eq!(
            ev.evaluate(&linear, &short),
            Err(EvalError::ColumnLength {
                column: 1,
                got: 2,
                expected: 3
            })
        );
        assert_eq!(
            ev.evaluate(&linear, &cols[..1]),
            Err(EvalError::ColumnLength {
                column: 1,
                got: 0,
                expected: 3
            })
        );
        // A product needs the network: the failure is reported, not hidden.
        let product = plan::<F>(&parse("dot(x, y)").unwrap(), &d.schema).unwrap();
        assert!(matches!(
            ev.evaluate(&product, &cols),
            Err(EvalError::Exchange { round: 0, .. })
        ));
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
    }
}
