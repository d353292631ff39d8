//! Products: Damgård-Nielsen degree reduction with PRSS double sharings.
//!
//! Damgård and Nielsen, "Scalable and Unconditionally Secure Multiparty Computation"
//! (CRYPTO 2007). The local product of two degree-`t` sharings is a degree-`2t` sharing `[c]_2t`.
//! With a double sharing `([r]_t, [r]_2t)` from [`crate::mpc::prss::Prss::double`]:
//!
//! 1. each party `i` sends `d_i = c_i - [r]_2t(i)` to **every** party (no single king);
//! 2. each party checks that the openings it received lie on one polynomial of degree `2t`
//!    ([`open_2t`]; it needs `2t + 1` of them and checks every further one) and aborts
//!    otherwise; it interpolates `d = c - r` at 0;
//! 3. its new share is `d + [r]_t(i)`, a degree-`t` sharing of `c` ([`reshare`]).
//!
//! `d` reveals nothing: `r` is uniform and unknown to any `t` parties, and the coefficients of
//! `[r]_2t` above `t` are pseudo-random, so the opened polynomial is a random degree-`2t`
//! polynomial with constant term `c - r`. The new sharing's coefficients are those of `[r]_t`:
//! re-sharing also re-randomizes.
//!
//! One reduction serves a whole aggregate: `sum_rows x * y` is a single degree-`2t` value (a dot
//! product of share vectors), reduced once; element-wise products are reduced in one batch (one
//! message per party per round carrying the whole vector).
//!
//! What the check buys. With `n >= 3t + 1` the `n - t >= 2t + 1` honest openings determine the
//! degree-`2t` polynomial, so any wrong opening from a corrupt party is detected by every
//! honest party (the step aborts; it is not attributed, as `n - 2t - 1` redundant points cannot
//! correct `t` errors). With `n = 2t + 1` (unbonded test networks) there is no redundancy and a
//! wrong opening shifts the product undetected: an additive attack.

use crate::mpc::field::PrimeField;
use crate::mpc::shamir::{Lagrange, ShamirError};

/// Errors of a degree reduction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MultError {
    /// Fewer than `2t + 1` openings arrived.
    #[error("{got} degree-2t openings received, {need} needed")]
    TooFewOpenings {
        /// Openings received.
        got: usize,
        /// `2t + 1`.
        need: usize,
    },
    /// The openings do not lie on one polynomial of degree `2t` (some party cheated).
    #[error("degree-2t openings are inconsistent at position {position}")]
    Inconsistent {
        /// First inconsistent position.
        position: usize,
    },
    /// A party's opening has the wrong length.
    #[error("party {party} opened {got} values, expected {expected}")]
    LengthMismatch {
        /// The party.
        party: usize,
        /// Its length.
        got: usize,
        /// The expected length.
        expected: usize,
    },
    /// Share vectors of different lengths were multiplied or combined.
    #[error("vectors of lengths {left} and {right} cannot be combined")]
    Lengths {
        /// First length.
        left: usize,
        /// Second length.
        right: usize,
    },
    /// Bad or duplicate party indices.
    #[error(transparent)]
    Shamir(#[from] ShamirError),
}

/// `c_i - [r]_2t(i)` in place: the value party `i` sends to every party.
///
/// # Errors
/// [`MultError::Lengths`] if the vectors differ in length.
pub fn mask_for_opening<F: PrimeField>(c2t: &mut [F], r2t: &[F]) -> Result<(), MultError> {
    if c2t.len() != r2t.len() {
        return Err(MultError::Lengths {
            left: c2t.len(),
            right: r2t.len(),
        });
    }
    for (c, r) in c2t.iter_mut().zip(r2t) {
        *c -= *r;
    }
    Ok(())
}

/// Elements per pass of [`open_2t`] (keeps the blocks of every opening in cache).
pub(crate) const BLOCK: usize = 1024;

/// A Lagrange weight, with the small integer it equals when there is one (for consecutive
/// party indices the weights are such integers): multiplying by `|k| <= 3` takes additions,
/// cheaper than a full multiplication in the 256-bit field. Same field value either way.
#[derive(Clone, Copy)]
pub(crate) struct Weight<F> {
    w: F,
    small: Option<i64>,
}

impl<F: PrimeField> Weight<F> {
    pub(crate) fn new(w: F) -> Self {
        let small = (-3i64..=3).find(|k| F::from_i64(*k) == w);
        Self { w, small }
    }

    /// `out[i] += w * x[i]`, choosing the multiplication once for the slice.
    pub(crate) fn add_times(&self, out: &mut [F], x: &[F]) {
        let pairs = out.iter_mut().zip(x);
        match self.small {
            Some(0) => {}
            Some(1) => pairs.for_each(|(o, v)| *o += *v),
            Some(-1) => pairs.for_each(|(o, v)| *o -= *v),
            Some(k @ (-3 | -2 | 2 | 3)) => pairs.for_each(|(o, v)| *o += self.small_times(k, *v)),
            _ => pairs.for_each(|(o, v)| *o += *v * self.w),
        }
    }

    /// `out[i] -= w * x[i]`, choosing the multiplication once for the slice.
    pub(crate) fn sub_times(&self, out: &mut [F], x: &[F]) {
        let pairs = out.iter_mut().zip(x);
        match self.small {
            Some(0) => {}
            Some(1) => pairs.for_each(|(o, v)| *o -= *v),
            Some(-1) => pairs.for_each(|(o, v)| *o += *v),
            Some(k @ (-3 | -2 | 2 | 3)) => pairs.for_each(|(o, v)| *o -= self.small_times(k, *v)),
            _ => pairs.for_each(|(o, v)| *o -= *v * self.w),
        }
    }

    #[inline(always)]
    fn small_times(&self, k: i64, x: F) -> F {
        match k {
            2 => x.double(),
            -2 => -x.double(),
            3 => x.double() + x,
            _ => -(x.double() + x),
        }
    }

    #[cfg(test)]
    fn times(&self, x: F) -> F {
        match self.small {
            Some(0) => F::ZERO,
            Some(1) => x,
            Some(-1) => -x,
            Some(2) => x.double(),
            Some(-2) => -x.double(),
            Some(3) => x.double() + x,
            Some(-3) => -(x.double() + x),
            _ => x * self.w,
        }
    }
}

/// Checks the degree-`2t` openings and interpolates them at 0.
///
/// `openings` holds `(party index, its vector)` for the parties whose opening arrived (in any
/// order; at least `2t + 1`); every vector must have `len` values. Every opening beyond the
/// first `2t + 1` is checked against the polynomial through them.
///
/// # Errors
/// [`MultError::TooFewOpenings`], [`MultError::LengthMismatch`],
/// [`MultError::Inconsistent`], [`MultError::Shamir`] for bad or duplicate indices.
pub fn open_2t<F: PrimeField>(
    t: usize,
    openings: &[(usize, &[F])],
    len: usize,
) -> Result<Vec<F>, MultError> {
    let need = 2 * t + 1;
    if openings.len() < need {
        return Err(MultError::TooFewOpenings {
            got: openings.len(),
            need,
        });
    }
    for (p, v) in openings {
        if v.len() != len {
            return Err(MultError::LengthMismatch {
                party: *p,
                got: v.len(),
                expected: len,
            });
        }
    }
    let mut sorted: Vec<(usize, &[F])> = openings.to_vec();
    sorted.sort_by_key(|o| o.0);
    if sorted.iter().map(|o| o.0).eq(1..=sorted.len()) {
        if let Some(out) = open_consecutive(t, &sorted, len) {
            return Ok(out);
        }
        // An opening is off: the weighted pass names the position.
    }
    open_weighted(t, &sorted, len)
}

/// [`open_2t`] with Lagrange weights, for any set of points: `sorted` holds at least `2t + 1`
/// openings of `len` values each, by ascending party index.
fn open_weighted<F: PrimeField>(
    t: usize,
    sorted: &[(usize, &[F])],
    len: usize,
) -> Result<Vec<F>, MultError> {
    let need = 2 * t + 1;
    let points: Vec<usize> = sorted.iter().map(|o| o.0).collect();
    let base = &points[..need];
    let zero = Lagrange::<F>::at_zero(base)?;
    // Validates every index (duplicates included), not only the base.
    Lagrange::<F>::at_zero(&points)?;
    let vectors: Vec<&[F]> = sorted[..need].iter().map(|o| o.1).collect();
    let zero_w: Vec<Weight<F>> = zero.weights().iter().map(|w| Weight::new(*w)).collect();
    let extras: Vec<(Vec<Weight<F>>, &[F])> = sorted[need..]
        .iter()
        .map(|(x, v)| {
            let l = Lagrange::<F>::new(base, *x as u64)?;
            Ok((l.weights().iter().map(|w| Weight::new(*w)).collect(), *v))
        })
        .collect::<Result<_, ShamirError>>()?;
    // One pass over the elements: interpolate at 0 and check every further opening against
    // the polynomial through the base (first failure per further opening is kept, so the
    // error is the same as checking the openings one after the other).
    let mut out = vec![F::ZERO; len];
    let mut failed: Vec<Option<usize>> = vec![None; extras.len()];
    let mut acc = vec![F::ZERO; BLOCK.min(len)];
    for (start, o) in (0..len).step_by(BLOCK).zip(out.chunks_mut(BLOCK)) {
        let end = start + o.len();
        for (w, b) in zero_w.iter().zip(&vectors) {
            w.add_times(o, &b[start..end]);
        }
        let acc = &mut acc[..o.len()];
        for ((l, v), f) in extras.iter().zip(failed.iter_mut()) {
            if f.is_some() {
                continue;
            }
            acc.copy_from_slice(&v[start..end]);
            for (w, b) in l.iter().zip(&vectors) {
                w.sub_times(acc, &b[start..end]);
            }
            *f = acc.iter().position(|a| !a.is_zero()).map(|p| start + p);
        }
    }
    if let Some(position) = failed.into_iter().flatten().next() {
        return Err(MultError::Inconsistent { position });
    }
    Ok(out)
}

/// [`open_2t`] for openings from parties `1..=m` (`sorted[j]` is party `j + 1`'s), by
/// finite differences: the `m` values lie on one polynomial of degree at most `2t` exactly
/// when their forward differences of orders `2t + 1 ..= m - 1` at `x = 1` vanish, and
/// Newton's forward formula from `x = 1` gives `p(0) = sum_k (-1)^k Δ^k p(1)` for `k <= 2t`.
/// That is `m (m - 1) / 2 + 2t` additions per element, and no multiplication for any `n`
/// (the Lagrange weights are small integers only for `n <= 4`). `None` as soon as an element
/// fails the check (the caller names the position).
fn open_consecutive<F: PrimeField>(
    t: usize,
    sorted: &[(usize, &[F])],
    len: usize,
) -> Option<Vec<F>> {
    let m = sorted.len();
    let degree = 2 * t;
    let mut out = Vec::with_capacity(len);
    let mut d = vec![F::ZERO; m];
    for i in 0..len {
        for (dj, (_, v)) in d.iter_mut().zip(sorted) {
            *dj = v[i];
        }
        // In place: after level k, d[k] = Δ^k p(1) (and d[j] = Δ^k p(j - k + 1) for j > k).
        for k in 1..m {
            for j in (k..m).rev() {
                let prev = d[j - 1];
                d[j] -= prev;
            }
        }
        if d[degree + 1..].iter().any(|x| !x.is_zero()) {
            return None;
        }
        let mut acc = d[degree];
        for k in (0..degree).rev() {
            acc = d[k] - acc;
        }
        out.push(acc);
    }
    Some(out)
}

/// `d + [r]_t(i)`: this party's degree-`t` share of the product.
///
/// # Errors
/// [`MultError::Lengths`] if the vectors differ in length.
pub fn reshare<F: PrimeField>(mut d: Vec<F>, rt: &[F]) -> Result<Vec<F>, MultError> {
    if d.len() != rt.len() {
        return Err(MultError::Lengths {
            left: d.len(),
            right: rt.len(),
        });
    }
    for (a, r) in d.iter_mut().zip(rt) {
        *a += *r;
    }
    Ok(d)
}

/// Element-wise products of two share vectors (a degree-`2t` sharing of each product).
///
/// # Errors
/// [`MultError::Lengths`] if the vectors differ in length.
pub fn local_products<F: PrimeField>(a: &[F], b: &[F]) -> Result<Vec<F>, MultError> {
    if a.len() != b.len() {
        return Err(MultError::Lengths {
            left: a.len(),
            right: b.len(),
        });
    }
    Ok(a.iter().zip(b).map(|(x, y)| *x * *y).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, PrimeField};
    use crate::mpc::prss::tests::agree;
    use crate::mpc::shamir::{deal_vec, reconstruct, Params};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    type F = Mersenne127;

    /// Runs one reduction among all parties honestly, with `tamper` applied to party 1's
    /// opening; returns the new shares or the first error.
    fn reduce(
        n: usize,
        t: usize,
        a: &[Vec<F>],
        b: &[Vec<F>],
        tamper: F,
    ) -> Vec<Result<Vec<F>, MultError>> {
        let prss = agree::<F>(n, t, 11);
        let job = [9u8; 32];
        let len = a[0].len();
        let mut sent = Vec::new();
        let mut rts = Vec::new();
        for i in 0..n {
            let mut c = local_products(&a[i], &b[i]).unwrap();
            let (rt, r2t) = prss[i].double(&job, 0, len);
            mask_for_opening(&mut c, &r2t).unwrap();
            if i == 0 {
                c[0] += tamper;
            }
            sent.push(c);
            rts.push(rt);
        }
        (0..n)
            .map(|i| {
                let d = open_2t(t, &by_party(&sent), len)?;
                reshare(d, &rts[i])
            })
            .collect()
    }

    fn deal(values: &[F], n: usize, t: usize, seed: u64) -> Vec<Vec<F>> {
        let mut rng = StdRng::seed_from_u64(seed);
        deal_vec(values, Params::new(n, t).unwrap(), &mut rng)
    }

    fn open(shares: &[Vec<F>], t: usize, k: usize) -> F {
        let pts: Vec<(usize, F)> = shares
            .iter()
            .enumerate()
            .map(|(i, s)| (i + 1, s[k]))
            .collect();
        let params = Params::new(shares.len(), t).unwrap();
        assert!(crate::mpc::shamir::on_one_polynomial(&pts, t).unwrap());
        reconstruct(params, &pts).unwrap()
    }

    #[test]
    fn honest_products_are_degree_t_sharings_of_the_product() {
        for (n, t) in [(3, 1), (4, 1), (7, 2)] {
            let x: Vec<F> = (0..10).map(|i| F::from_i64(i - 3)).collect();
            let y: Vec<F> = (0..10).map(|i| F::from_i64(7 * i + 1)).collect();
            let a = deal(&x, n, t, 1);
            let b = deal(&y, n, t, 2);
            let out: Vec<Vec<F>> = reduce(n, t, &a, &b, F::ZERO)
                .into_iter()
                .map(Result::unwrap)
                .collect();
            for k in 0..10 {
                assert_eq!(open(&out, t, k), x[k] * y[k]);
            }
        }
    }

    /// Openings at `x = 1..=n` of `len` random polynomials of degree `2t` (party `j`'s at
    /// index `j - 1`), and the polynomials' values at 0.
    fn openings_2t<G: PrimeField>(
        n: usize,
        t: usize,
        len: usize,
        seed: u64,
    ) -> (Vec<Vec<G>>, Vec<G>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sent = vec![Vec::with_capacity(len); n];
        let mut secrets = Vec::with_capacity(len);
        for _ in 0..len {
            let coeffs: Vec<G> = (0..=2 * t).map(|_| G::random(&mut rng)).collect();
            secrets.push(coeffs[0]);
            for (j, v) in sent.iter_mut().enumerate() {
                let x = G::from_u64(j as u64 + 1);
                v.push(coeffs.iter().rev().fold(G::ZERO, |acc, c| acc * x + *c));
            }
        }
        (sent, secrets)
    }

    /// `(party index, its opening)` for openings at `x = 1..=n`.
    fn by_party<G>(sent: &[Vec<G>]) -> Vec<(usize, &[G])> {
        sent.iter()
            .enumerate()
            .map(|(j, v)| (j + 1, &v[..]))
            .collect()
    }

    fn differences_match_weights<G: PrimeField>() {
        for (n, t) in [(3, 1), (4, 1), (5, 1), (7, 2), (10, 3)] {
            let len = 300;
            let (mut sent, secrets) = openings_2t::<G>(n, t, len, n as u64);
            let sorted = by_party(&sent);
            let fast = open_consecutive(t, &sorted, len).expect("on one polynomial");
            assert_eq!(fast, secrets, "n = {n}, t = {t}");
            assert_eq!(open_weighted(t, &sorted, len).unwrap(), fast);
            // Parties 1..=m for fewer than n openings take the same path; other subsets the
            // weighted one; all agree.
            let skip_first: Vec<(usize, &[G])> = sorted[1..].to_vec();
            let first_ones: Vec<(usize, &[G])> = sorted[..2 * t + 1].to_vec();
            if n > 2 * t + 1 {
                assert_eq!(open_2t(t, &skip_first, len).unwrap(), secrets);
            }
            assert_eq!(open_2t(t, &first_ones, len).unwrap(), secrets);
            // One value off (when there is a further opening to catch it): both refuse, and
            // open_2t names the position as the weighted pass does.
            if n > 2 * t + 1 {
                for party in [0, n / 2, n - 1] {
                    sent[party][137] += G::ONE;
                    let sorted = by_party(&sent);
                    assert_eq!(open_consecutive(t, &sorted, len), None);
                    let want = Err(MultError::Inconsistent { position: 137 });
                    assert_eq!(open_weighted(t, &sorted, len), want);
                    assert_eq!(open_2t(t, &sorted, len), want);
                    sent[party][137] -= G::ONE;
                }
            }
        }
    }

    #[test]
    fn finite_differences_match_lagrange_weights_in_both_fields() {
        differences_match_weights::<Mersenne127>();
        differences_match_weights::<crate::mpc::field::Secp256k1Scalar>();
    }

    #[test]
    fn a_wrong_opening_is_detected_with_3t_plus_1() {
        let x = vec![F::from_u64(5); 4];
        let (n, t) = (4, 1);
        let out = reduce(n, t, &deal(&x, n, t, 3), &deal(&x, n, t, 4), F::ONE);
        for r in out {
            assert_eq!(r, Err(MultError::Inconsistent { position: 0 }));
        }
    }

    #[test]
    fn a_wrong_opening_is_detected_with_several_further_openings() {
        let x = vec![F::from_u64(6); 5];
        let (n, t) = (7, 2);
        let out = reduce(n, t, &deal(&x, n, t, 7), &deal(&x, n, t, 8), F::ONE);
        for r in out {
            assert_eq!(r, Err(MultError::Inconsistent { position: 0 }));
        }
    }

    #[test]
    fn a_wrong_opening_past_the_first_block_is_found_at_its_position() {
        // Openings of degree-2 polynomials c_k + k x + 3 x^2 at x = 1..=4 (n = 4, t = 1).
        let len = 2 * BLOCK + 100;
        let mut sent: Vec<Vec<F>> = (1..=4u64)
            .map(|x| {
                (0..len as u64)
                    .map(|k| F::from_u64(k * k + 1) + F::from_u64(k * x) + F::from_u64(3 * x * x))
                    .collect()
            })
            .collect();
        let openings = |sent: &[Vec<F>]| open_2t(1, &by_party(sent), len);
        let d = openings(&sent).unwrap();
        for (k, v) in d.iter().enumerate() {
            assert_eq!(*v, F::from_u64(k as u64 * k as u64 + 1));
        }
        sent[3][BLOCK + 7] += F::ONE;
        sent[3][2 * BLOCK + 50] += F::ONE;
        assert_eq!(
            openings(&sent),
            Err(MultError::Inconsistent {
                position: BLOCK + 7
            })
        );
    }

    #[test]
    fn small_weights_multiply_like_field_elements() {
        let x = F::from_u64(0x1234_5678_9abc_def0) * F::from_i64(-77);
        for w in (-5i64..=5).map(F::from_i64).chain([x.double()]) {
            assert_eq!(Weight::new(w).times(x), w * x);
        }
        let s = crate::mpc::field::Secp256k1Scalar::from_i64(-3);
        let y = crate::mpc::field::Secp256k1Scalar::from_u64(987_654_321);
        assert_eq!(Weight::new(s).times(y), s * y);
    }

    #[test]
    fn with_2t_plus_1_an_additive_attack_goes_undetected() {
        // n = 2t + 1: no redundancy, so a shifted opening from party 1 is accepted and the
        // product is off by delta * lambda_1 (lambda_1 = 3 for points 1, 2, 3).
        let x = vec![F::from_u64(5); 2];
        let (n, t) = (3, 1);
        let delta = F::from_u64(10);
        let out: Vec<Vec<F>> = reduce(n, t, &deal(&x, n, t, 5), &deal(&x, n, t, 6), delta)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(open(&out, t, 0), F::from_u64(25) + delta * F::from_u64(3));
        assert_eq!(open(&out, t, 1), F::from_u64(25));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let v = vec![F::ONE; 3];
        let w = vec![F::ONE; 2];
        assert_eq!(
            open_2t::<F>(1, &[(1, &v), (2, &v)], 3),
            Err(MultError::TooFewOpenings { got: 2, need: 3 })
        );
        assert_eq!(
            open_2t::<F>(1, &[(1, &v), (2, &w), (3, &v)], 3),
            Err(MultError::LengthMismatch {
                party: 2,
                got: 2,
                expected: 3
            })
        );
        assert!(matches!(
            open_2t::<F>(1, &[(1, &v), (1, &v), (3, &v)], 3),
            Err(MultError::Shamir(ShamirError::DuplicateIndex { .. }))
        ));
        assert!(matches!(
            open_2t::<F>(1, &[(0, &v), (2, &v), (3, &v)], 3),
            Err(MultError::Shamir(_))
        ));
        assert!(matches!(
            local_products(&v, &w),
            Err(MultError::Lengths { left: 3, right: 2 })
        ));
        let mut c = v.clone();
        assert!(mask_for_opening(&mut c, &w).is_err());
        assert!(reshare(v, &w).is_err());
    }
}
