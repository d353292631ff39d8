//! Shamir secret sharing of degree `t` at the evaluation points `1..=n`.
//!
//! A secret `s` is the constant term of a random polynomial `f` of degree at most `t`; party `i`
//! (1-based) holds `f(i)`. Any `t` shares are independent of `s`; any `t + 1` determine it by
//! Lagrange interpolation at 0. Version 1 publishes no commitments to the polynomial.
//!
//! [`deal_vec`] shares a whole vector: one fresh polynomial per value, shares laid out as one
//! vector per party, evaluated at all `n` points by Horner's rule with small-integer
//! multiplications (for `t = 1` only additions), with no allocation per value.
//!
//! ```
//! use btcmpc_engine::mpc::field::{PrimeField, Secp256k1Scalar};
//! use btcmpc_engine::mpc::shamir::{self, Params};
//!
//! let params = Params::new(4, 1)?;
//! let mut rng = shamir::dealer_rng();
//! let shares = shamir::share(Secp256k1Scalar::from_u64(42), params, &mut rng);
//! let back = shamir::reconstruct(params, &[(2, shares[1]), (4, shares[3])])?;
//! assert_eq!(back, Secp256k1Scalar::from_u64(42));
//! # Ok::<(), shamir::ShamirError>(())
//! ```

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::field::{batch_invert, PrimeField};

/// Largest committee the engine accepts (PRSS keys make more than a few dozen impractical
/// anyway; the bound keeps every index in a `u16` and every table small).
pub const MAX_PARTIES: usize = 255;

/// Errors of sharing parameters, indices and share vectors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShamirError {
    /// `t` must be below `n`.
    #[error("threshold t = {t} must be below the number of parties n = {n}")]
    ThresholdTooLarge {
        /// The threshold given.
        t: usize,
        /// The number of parties given.
        n: usize,
    },
    /// `n` must be between 1 and [`MAX_PARTIES`].
    #[error("number of parties n = {n} must be between 1 and {max}")]
    BadPartyCount {
        /// The number of parties given.
        n: usize,
        /// [`MAX_PARTIES`].
        max: usize,
    },
    /// A party index outside `1..=n`.
    #[error("party index {index} is outside 1..={n}")]
    BadIndex {
        /// The index given.
        index: usize,
        /// The number of parties.
        n: usize,
    },
    /// The same party index appears twice.
    #[error("party index {index} appears more than once")]
    DuplicateIndex {
        /// The repeated index.
        index: usize,
    },
    /// Fewer shares than the degree requires.
    #[error("{got} shares given, at least {need} needed")]
    NotEnoughShares {
        /// Shares given.
        got: usize,
        /// Shares needed.
        need: usize,
    },
    /// Share vectors of different lengths.
    #[error("share vector of party {index} has {got} values, expected {expected}")]
    LengthMismatch {
        /// The party whose vector is off.
        index: usize,
        /// Its length.
        got: usize,
        /// The length of the others.
        expected: usize,
    },
}

/// Committee parameters: `n` parties, degree (threshold) `t < n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawParams", into = "RawParams")]
pub struct Params {
    n: usize,
    t: usize,
}

#[derive(Serialize, Deserialize)]
struct RawParams {
    n: usize,
    t: usize,
}

impl TryFrom<RawParams> for Params {
    type Error = ShamirError;
    fn try_from(r: RawParams) -> Result<Self, ShamirError> {
        Params::new(r.n, r.t)
    }
}

impl From<Params> for RawParams {
    fn from(p: Params) -> Self {
        RawParams { n: p.n, t: p.t }
    }
}

impl Params {
    /// Checked parameters.
    ///
    /// # Errors
    /// [`ShamirError::BadPartyCount`] unless `1 <= n <= MAX_PARTIES`;
    /// [`ShamirError::ThresholdTooLarge`] unless `t < n`.
    pub fn new(n: usize, t: usize) -> Result<Self, ShamirError> {
        if n == 0 || n > MAX_PARTIES {
            return Err(ShamirError::BadPartyCount {
                n,
                max: MAX_PARTIES,
            });
        }
        if t >= n {
            return Err(ShamirError::ThresholdTooLarge { t, n });
        }
        Ok(Self { n, t })
    }

    /// The largest `t` with `n >= 3t + 1`, the bonded-network setting.
    ///
    /// # Errors
    /// As [`Params::new`].
    pub fn byzantine(n: usize) -> Result<Self, ShamirError> {
        Self::new(n, n.saturating_sub(1) / 3)
    }

    /// Number of parties.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Degree of the sharings (threshold).
    pub fn t(&self) -> usize {
        self.t
    }

    /// Checks that `index` is a party index `1..=n`.
    ///
    /// # Errors
    /// [`ShamirError::BadIndex`].
    pub fn check_index(&self, index: usize) -> Result<(), ShamirError> {
        if index == 0 || index > self.n {
            Err(ShamirError::BadIndex { index, n: self.n })
        } else {
            Ok(())
        }
    }

    /// Checks a list of party indices: each in `1..=n`, none repeated.
    ///
    /// # Errors
    /// [`ShamirError::BadIndex`] or [`ShamirError::DuplicateIndex`].
    pub fn check_indices(
        &self,
        indices: impl IntoIterator<Item = usize>,
    ) -> Result<(), ShamirError> {
        let mut seen = [false; MAX_PARTIES + 1];
        for i in indices {
            self.check_index(i)?;
            if std::mem::replace(&mut seen[i], true) {
                return Err(ShamirError::DuplicateIndex { index: i });
            }
        }
        Ok(())
    }
}

/// A CSPRNG for dealing: ChaCha20 seeded from the operating system.
pub fn dealer_rng() -> ChaCha20Rng {
    ChaCha20Rng::from_rng(rand::rngs::OsRng).expect("the operating system RNG is available")
}

/// A polynomial over `F`, coefficients from the constant term up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poly<F> {
    /// Coefficients, `coeffs[k]` of `x^k`.
    pub coeffs: Vec<F>,
}

impl<F: PrimeField> Poly<F> {
    /// A random polynomial of degree at most `degree` with constant term `constant`.
    pub fn random<R: RngCore + ?Sized>(constant: F, degree: usize, rng: &mut R) -> Self {
        let mut coeffs = Vec::with_capacity(degree + 1);
        coeffs.push(constant);
        coeffs.extend((0..degree).map(|_| F::random(rng)));
        Self { coeffs }
    }

    /// `f(x)` by Horner's rule.
    pub fn eval(&self, x: F) -> F {
        self.coeffs
            .iter()
            .rev()
            .fold(F::ZERO, |acc, c| acc * x + *c)
    }

    /// `f(x)` for a small integer `x`.
    pub fn eval_u64(&self, x: u64) -> F {
        self.coeffs
            .iter()
            .rev()
            .fold(F::ZERO, |acc, c| acc.mul_u64(x) + *c)
    }

    /// Degree (`None` for the zero polynomial).
    pub fn degree(&self) -> Option<usize> {
        self.coeffs.iter().rposition(|c| !c.is_zero())
    }
}

/// Shares of `secret` for parties `1..=n` (entry `i - 1` belongs to party `i`).
pub fn share<F: PrimeField, R: RngCore + ?Sized>(secret: F, params: Params, rng: &mut R) -> Vec<F> {
    let poly = Poly::random(secret, params.t, rng);
    (1..=params.n as u64).map(|x| poly.eval_u64(x)).collect()
}

/// Shares every value of `secrets`: the result holds one vector per party (`out[i - 1]` for
/// party `i`), each as long as `secrets`, from independent random polynomials.
pub fn deal_vec<F: PrimeField, R: RngCore + ?Sized>(
    secrets: &[F],
    params: Params,
    rng: &mut R,
) -> Vec<Vec<F>> {
    let mut out: Vec<Vec<F>> = (0..params.n)
        .map(|_| Vec::with_capacity(secrets.len()))
        .collect();
    deal_vec_into(secrets, params, rng, &mut out);
    out
}

/// As [`deal_vec`], appending to existing per-party vectors (`out.len()` must be `n`).
///
/// # Panics
/// If `out.len() != params.n()` (a programming error, not an input error).
pub fn deal_vec_into<F: PrimeField, R: RngCore + ?Sized>(
    secrets: &[F],
    params: Params,
    rng: &mut R,
    out: &mut [Vec<F>],
) {
    assert_eq!(out.len(), params.n, "one output vector per party");
    let t = params.t;
    for v in out.iter_mut() {
        v.reserve(secrets.len());
    }
    if t == 0 {
        for v in out.iter_mut() {
            v.extend_from_slice(secrets);
        }
        return;
    }
    // Newton basis: f(x) = s + sum_k d_k C(x, k) with d_1..d_t uniform is a uniform polynomial
    // of degree <= t with f(0) = s (the change of basis is triangular with diagonal 1/k!,
    // invertible since p > t). Its values at 1, 2, ..., n follow from the forward-difference
    // table with t additions per point and no multiplication.
    const CHUNK: usize = 256;
    let mut diffs = vec![F::ZERO; CHUNK * t];
    let mut table = vec![F::ZERO; t + 1];
    for chunk in secrets.chunks(CHUNK) {
        let d = &mut diffs[..chunk.len() * t];
        F::fill_random(rng, d);
        for (&s, ds) in chunk.iter().zip(d.chunks_exact(t)) {
            if t == 1 {
                let a = ds[0];
                let mut y = s;
                for v in out.iter_mut() {
                    y += a;
                    v.push(y);
                }
                continue;
            }
            table[0] = s;
            table[1..].copy_from_slice(ds);
            for v in out.iter_mut() {
                for k in 0..t {
                    let next = table[k + 1];
                    table[k] += next;
                }
                v.push(table[0]);
            }
        }
    }
}

/// Lagrange weights for interpolating at a fixed target from values at fixed points.
///
/// `value(target) = sum w_k * y_k` for any polynomial of degree below `points.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lagrange<F> {
    points: Vec<usize>,
    weights: Vec<F>,
}

impl<F: PrimeField> Lagrange<F> {
    /// Weights for evaluating at `target` from the distinct non-zero `points`.
    ///
    /// # Errors
    /// [`ShamirError::DuplicateIndex`], [`ShamirError::BadIndex`] (index 0 or above
    /// [`MAX_PARTIES`]), [`ShamirError::NotEnoughShares`] for an empty list.
    pub fn new(points: &[usize], target: u64) -> Result<Self, ShamirError> {
        let mut one = Self::many(points, &[target])?;
        Ok(one.pop().expect("one target gives one set of weights"))
    }

    /// Weights for each of `targets` from the same points, with a single field inversion.
    ///
    /// # Errors
    /// As [`Lagrange::new`].
    pub fn many(points: &[usize], targets: &[u64]) -> Result<Vec<Self>, ShamirError> {
        if points.is_empty() {
            return Err(ShamirError::NotEnoughShares { got: 0, need: 1 });
        }
        Params::new(MAX_PARTIES, 0)?.check_indices(points.iter().copied())?;
        let xs: Vec<F> = points.iter().map(|&p| F::from_u64(p as u64)).collect();
        let mut dens: Vec<F> = xs
            .iter()
            .enumerate()
            .map(|(k, &xk)| {
                xs.iter()
                    .enumerate()
                    .filter(|(j, _)| *j != k)
                    .fold(F::ONE, |d, (_, &xj)| d * (xk - xj))
            })
            .collect();
        batch_invert(&mut dens).expect("distinct points give non-zero denominators");
        Ok(targets
            .iter()
            .map(|&target| {
                let tx = F::from_u64(target);
                let weights = dens
                    .iter()
                    .enumerate()
                    .map(|(k, &inv)| {
                        xs.iter()
                            .enumerate()
                            .filter(|(j, _)| *j != k)
                            .fold(inv, |w, (_, &xj)| w * (tx - xj))
                    })
                    .collect();
                Self {
                    points: points.to_vec(),
                    weights,
                }
            })
            .collect())
    }

    /// Weights for the value at 0 (the secret).
    ///
    /// # Errors
    /// As [`Lagrange::new`].
    pub fn at_zero(points: &[usize]) -> Result<Self, ShamirError> {
        Self::new(points, 0)
    }

    /// The points, in the order the values must be given.
    pub fn points(&self) -> &[usize] {
        &self.points
    }

    /// The weights, in the order of [`Lagrange::points`].
    pub fn weights(&self) -> &[F] {
        &self.weights
    }

    /// `sum w_k * y_k`; `values` in the order of [`Lagrange::points`].
    ///
    /// # Errors
    /// [`ShamirError::NotEnoughShares`] if `values` has a different length than the points.
    pub fn interpolate(&self, values: &[F]) -> Result<F, ShamirError> {
        if values.len() != self.weights.len() {
            return Err(ShamirError::NotEnoughShares {
                got: values.len(),
                need: self.weights.len(),
            });
        }
        Ok(F::dot(&self.weights, values))
    }

    /// Interpolates position by position: `vectors[k]` holds the values at `points[k]`.
    ///
    /// # Errors
    /// [`ShamirError::LengthMismatch`] naming the first party whose vector is shorter or longer
    /// than the first; [`ShamirError::NotEnoughShares`] for the wrong number of vectors.
    pub fn interpolate_vec(&self, vectors: &[&[F]]) -> Result<Vec<F>, ShamirError> {
        if vectors.len() != self.weights.len() {
            return Err(ShamirError::NotEnoughShares {
                got: vectors.len(),
                need: self.weights.len(),
            });
        }
        let m = vectors[0].len();
        for (k, v) in vectors.iter().enumerate() {
            if v.len() != m {
                return Err(ShamirError::LengthMismatch {
                    index: self.points[k],
                    got: v.len(),
                    expected: m,
                });
            }
        }
        let mut out = vec![F::ZERO; m];
        for (w, v) in self.weights.iter().zip(vectors) {
            for (o, y) in out.iter_mut().zip(v.iter()) {
                *o += *w * *y;
            }
        }
        Ok(out)
    }
}

/// The secret from at least `t + 1` shares `(party index, share)`; the first `t + 1` are used.
///
/// # Errors
/// [`ShamirError::NotEnoughShares`], [`ShamirError::BadIndex`],
/// [`ShamirError::DuplicateIndex`] (all indices are checked, not only the ones used).
pub fn reconstruct<F: PrimeField>(params: Params, shares: &[(usize, F)]) -> Result<F, ShamirError> {
    params.check_indices(shares.iter().map(|s| s.0))?;
    let need = params.t + 1;
    if shares.len() < need {
        return Err(ShamirError::NotEnoughShares {
            got: shares.len(),
            need,
        });
    }
    let used = &shares[..need];
    let points: Vec<usize> = used.iter().map(|s| s.0).collect();
    let values: Vec<F> = used.iter().map(|s| s.1).collect();
    Lagrange::at_zero(&points)?.interpolate(&values)
}

/// Whether the points `(x, y)` lie on one polynomial of degree at most `degree`.
///
/// With `degree + 1` points or fewer this is always true.
///
/// # Errors
/// [`ShamirError::BadIndex`] or [`ShamirError::DuplicateIndex`] for bad `x`.
pub fn on_one_polynomial<F: PrimeField>(
    points: &[(usize, F)],
    degree: usize,
) -> Result<bool, ShamirError> {
    Ok(off_polynomial(points, degree)?.is_empty())
}

/// The positions (into `points`) of the points that disagree with the polynomial of degree at
/// most `degree` through the first `degree + 1` points. Empty when all points lie on one
/// polynomial. This says nothing about who is at fault (the first points may be the wrong
/// ones); use [`crate::mpc::decode`] to attribute errors.
///
/// # Errors
/// [`ShamirError::BadIndex`] or [`ShamirError::DuplicateIndex`] for bad `x`.
pub fn off_polynomial<F: PrimeField>(
    points: &[(usize, F)],
    degree: usize,
) -> Result<Vec<usize>, ShamirError> {
    Params::new(MAX_PARTIES, 0)?.check_indices(points.iter().map(|p| p.0))?;
    if points.len() <= degree + 1 {
        return Ok(Vec::new());
    }
    let base: Vec<usize> = points[..=degree].iter().map(|p| p.0).collect();
    let vals: Vec<F> = points[..=degree].iter().map(|p| p.1).collect();
    let mut off = Vec::new();
    for (k, &(x, y)) in points.iter().enumerate().skip(degree + 1) {
        let l = Lagrange::new(&base, x as u64)?;
        if l.interpolate(&vals)? != y {
            off.push(k);
        }
    }
    Ok(off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};
    use proptest::prelude::*;
    use rand::rngs::StdRng;

    fn round_trip<F: PrimeField>(n: usize, t: usize, seed: u64) {
        let params = Params::new(n, t).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let secrets: Vec<F> = (0..20).map(|_| F::random(&mut rng)).collect();
        let shares = deal_vec(&secrets, params, &mut rng);
        assert_eq!(shares.len(), n);
        // A rotating subset of t+1 parties.
        let subset: Vec<usize> = (0..=t).map(|k| (k + seed as usize) % n + 1).collect();
        let l = Lagrange::at_zero(&subset).unwrap();
        let vecs: Vec<&[F]> = subset.iter().map(|&i| shares[i - 1].as_slice()).collect();
        assert_eq!(l.interpolate_vec(&vecs).unwrap(), secrets);
        for (j, s) in secrets.iter().enumerate() {
            let pts: Vec<(usize, F)> = (1..=n).map(|i| (i, shares[i - 1][j])).collect();
            assert!(on_one_polynomial(&pts, t).unwrap());
            let mut rev = pts.clone();
            rev.reverse();
            assert_eq!(reconstruct(params, &rev).unwrap(), *s);
            let single = share(*s, params, &mut rng);
            let pts: Vec<(usize, F)> = (1..=n).map(|i| (i, single[i - 1])).collect();
            assert_eq!(reconstruct(params, &pts[n - t - 1..]).unwrap(), *s);
        }
        if t + 2 <= n {
            let mut pts: Vec<(usize, F)> = (1..=n).map(|i| (i, shares[i - 1][0])).collect();
            let pos = (seed as usize) % n;
            pts[pos].1 += F::ONE;
            assert!(!on_one_polynomial(&pts, t).unwrap());
        }
    }

    proptest! {
        #[test]
        fn share_reconstruct_round_trip(n in 1usize..12, t_frac in 0usize..100, seed in any::<u64>()) {
            let t = t_frac % n;
            round_trip::<Secp256k1Scalar>(n, t, seed);
            round_trip::<Mersenne127>(n, t, seed);
        }
    }

    #[test]
    fn t_shares_reveal_nothing_structurally() {
        // With t = 1, party 1's share is s + a for uniform a: two secrets give the same share
        // for the matching coefficient. Check the dealing uses fresh coefficients per value.
        let params = Params::new(4, 1).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let s = vec![Mersenne127::from_u64(5); 100];
        let shares = deal_vec(&s, params, &mut rng);
        let distinct: std::collections::HashSet<_> = shares[0].iter().collect();
        assert_eq!(distinct.len(), 100);
    }

    #[test]
    fn bad_parameters_and_indices() {
        assert_eq!(
            Params::new(3, 3),
            Err(ShamirError::ThresholdTooLarge { t: 3, n: 3 })
        );
        assert!(matches!(
            Params::new(0, 0),
            Err(ShamirError::BadPartyCount { .. })
        ));
        assert!(matches!(
            Params::new(256, 1),
            Err(ShamirError::BadPartyCount { .. })
        ));
        assert_eq!(Params::byzantine(7).unwrap().t(), 2);
        let p = Params::new(4, 1).unwrap();
        let one = Secp256k1Scalar::ONE;
        assert_eq!(
            reconstruct(p, &[(0, one), (1, one)]),
            Err(ShamirError::BadIndex { index: 0, n: 4 })
        );
        assert_eq!(
            reconstruct(p, &[(5, one), (1, one)]),
            Err(ShamirError::BadIndex { index: 5, n: 4 })
        );
        assert_eq!(
            reconstruct(p, &[(2, one), (2, one)]),
            Err(ShamirError::DuplicateIndex { index: 2 })
        );
        assert_eq!(
            reconstruct(p, &[(2, one)]),
            Err(ShamirError::NotEnoughShares { got: 1, need: 2 })
        );
        let l = Lagrange::<Secp256k1Scalar>::at_zero(&[1, 2]).unwrap();
        let a = [one; 3];
        let b = [one; 2];
        assert_eq!(
            l.interpolate_vec(&[&a, &b]),
            Err(ShamirError::LengthMismatch {
                index: 2,
                got: 2,
                expected: 3
            })
        );
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"n":4,"t":1}"#);
        assert!(serde_json::from_str::<Params>(r#"{"n":4,"t":4}"#).is_err());
    }
}
