//! Robust decoding of opened sharings with Berlekamp-Welch, naming the parties whose shares are
//! wrong.
//!
//! The parties that answered give points `(x_i, y_i)`; the others are erasures. With `k`
//! answers, `s = n - k` erasures and `e` wrong answers, the degree-`t` polynomial is recovered
//! whenever `2e + s <= n - t - 1` (so `t` errors when `n >= 3t + 1` and nobody is missing), and
//! the culprits are exactly the parties whose points are off it.
//!
//! Blame is only ever given when it is certain under the committee assumption (at most `t`
//! corrupt parties): a culprit is named only if at least `2t + 1` answers lie on the decoded
//! polynomial, so at least `t + 1` honest parties vouch for it and it is the true one (the same
//! rule the judges apply to evidence). When the errors exceed the decoding radius, or the
//! agreeing set is too small, the result is [`Decode::Inconsistent`]: no value and no blame.
//! With `n >= 3t + 1` and withholding parties counted among the `t` faulty ones, the second
//! condition never rejects a decodable word (`k - e >= n - t >= 2t + 1`).
//!
//! Without any redundancy (`k = t + 1`) a wrong share cannot be detected; the decoder then
//! returns the interpolated value, as Shamir sharing allows nothing else.

use serde::{Deserialize, Serialize};

use super::field::PrimeField;
use super::mult::{Weight, BLOCK};
use super::round::PartyId;
use super::shamir::{Lagrange, Params, ShamirError};

/// Outcome of decoding one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decode<F> {
    /// The polynomial was recovered.
    Decoded {
        /// Its value at 0 (the secret).
        value: F,
        /// The answering parties whose points are off the polynomial, ascending (party `i`
        /// answered for `x = i`).
        culprits: Vec<PartyId>,
    },
    /// The answers do not determine the polynomial: no value, no blame.
    Inconsistent,
}

impl<F> Decode<F> {
    /// The value, if decoded.
    pub fn value(&self) -> Option<&F> {
        match self {
            Decode::Decoded { value, .. } => Some(value),
            Decode::Inconsistent => None,
        }
    }

    /// The culprits, ascending (empty when inconsistent).
    pub fn culprits(&self) -> &[PartyId] {
        match self {
            Decode::Decoded { culprits, .. } => culprits,
            Decode::Inconsistent => &[],
        }
    }
}

/// Outcome of decoding a vector of values position by position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecodeVec<F> {
    /// Every position was recovered.
    Decoded {
        /// The values at 0.
        values: Vec<F>,
        /// The answering parties whose vector is off in at least one position, ascending.
        culprits: Vec<PartyId>,
    },
    /// Some position does not determine its polynomial: no values, no blame.
    Inconsistent {
        /// The first such position.
        position: usize,
    },
}

/// Largest number of errors correctable from `answers` points with degree `t`.
pub fn max_errors(answers: usize, t: usize) -> usize {
    answers.saturating_sub(t + 1) / 2
}

/// Decodes one value from the answers `(party, y)`, party `i` giving the point `(i, y)`;
/// parties absent from `points` are erasures.
///
/// # Errors
/// [`ShamirError::BadIndex`] for a party above `n`, [`ShamirError::DuplicateIndex`] for a
/// party that answers twice; [`ShamirError::NotEnoughShares`] for fewer than `t + 1` answers.
pub fn decode<F: PrimeField>(
    params: Params,
    points: &[(PartyId, F)],
) -> Result<Decode<F>, ShamirError> {
    let plan = Decoder::new(params, &points.iter().map(|p| p.0).collect::<Vec<_>>())?;
    let ys: Vec<F> = points.iter().map(|p| p.1).collect();
    plan.decode(&ys)
}

/// Decodes vectors: `vectors[k] = (party, that party's values)`, all of one length.
///
/// # Errors
/// As [`decode`], and [`ShamirError::LengthMismatch`] naming (by its evaluation point) a party
/// whose vector differs in length from the first one's.
pub fn decode_vec<F: PrimeField>(
    params: Params,
    vectors: &[(PartyId, &[F])],
) -> Result<DecodeVec<F>, ShamirError> {
    let idx: Vec<PartyId> = vectors.iter().map(|v| v.0).collect();
    let plan = Decoder::new(params, &idx)?;
    let m = vectors.first().map_or(0, |v| v.1.len());
    for (i, v) in vectors {
        if v.len() != m {
            return Err(ShamirError::LengthMismatch {
                index: i.point(),
                got: v.len(),
                expected: m,
            });
        }
    }
    // Block by block, the fast path of every position at once: the value at 0 through the
    // first t + 1 answers, and every further answer checked against that polynomial (small
    // Lagrange weights cost additions, see `mult::Weight`). The positions where a check fails
    // are then decoded one by one, in order, exactly as `Decoder::decode` does.
    let t = params.t();
    let base: Vec<&[F]> = vectors[..=t].iter().map(|v| v.1).collect();
    let zero: Vec<Weight<F>> = plan
        .at_zero
        .weights()
        .iter()
        .map(|w| Weight::new(*w))
        .collect();
    let checks: Vec<(Vec<Weight<F>>, &[F])> = plan
        .checks
        .iter()
        .zip(&vectors[t + 1..])
        .map(|(l, v)| (l.weights().iter().map(|w| Weight::new(*w)).collect(), v.1))
        .collect();
    let mut values = vec![F::ZERO; m];
    let mut slow: Vec<usize> = Vec::new();
    let mut acc = vec![F::ZERO; BLOCK.min(m)];
    for (start, o) in (0..m).step_by(BLOCK).zip(values.chunks_mut(BLOCK)) {
        let end = start + o.len();
        for (w, b) in zero.iter().zip(&base) {
            w.add_times(o, &b[start..end]);
        }
        let acc = &mut acc[..o.len()];
        for (l, v) in &checks {
            acc.copy_from_slice(&v[start..end]);
            for (w, b) in l.iter().zip(&base) {
                w.sub_times(acc, &b[start..end]);
            }
            slow.extend(
                acc.iter()
                    .enumerate()
                    .filter(|(_, a)| !a.is_zero())
                    .map(|(k, _)| start + k),
            );
        }
    }
    slow.sort_unstable();
    slow.dedup();
    let mut culprits: Vec<PartyId> = Vec::new();
    let mut ys = vec![F::ZERO; vectors.len()];
    for pos in slow {
        for (y, v) in ys.iter_mut().zip(vectors) {
            *y = v.1[pos];
        }
        match plan.decode_unchecked(&ys) {
            Decode::Decoded { value, culprits: c } => {
                values[pos] = value;
                culprits.extend(c);
            }
            Decode::Inconsistent => return Ok(DecodeVec::Inconsistent { position: pos }),
        }
    }
    culprits.sort_unstable();
    culprits.dedup();
    // A party off in one position but whose other positions vouched for different polynomials
    // is still off the recovered polynomials; every recovered polynomial had 2t + 1 agreeing
    // answers whenever it named anyone, so the union names only faulty parties.
    Ok(DecodeVec::Decoded { values, culprits })
}

/// A decoder for a fixed set of answering parties, with its interpolation weights precomputed
/// (the fast path when every answer is consistent).
#[derive(Debug, Clone)]
pub struct Decoder<F> {
    params: Params,
    /// The answering parties, in the order of the values (party `i` answers for `x = i`).
    parties: Vec<PartyId>,
    /// Weights at 0 from the first `t + 1` answers.
    at_zero: Lagrange<F>,
    /// For each further answer, the weights at its `x` from the first `t + 1` answers.
    checks: Vec<Lagrange<F>>,
}

impl<F: PrimeField> Decoder<F> {
    /// Prepares decoding of answers from `parties` (in the order values will be given; party
    /// `i` answers for `x = i`).
    ///
    /// # Errors
    /// [`ShamirError::BadIndex`] (a party above `n`), [`ShamirError::DuplicateIndex`],
    /// [`ShamirError::NotEnoughShares`] (fewer than `t + 1` answers).
    pub fn new(params: Params, parties: &[PartyId]) -> Result<Self, ShamirError> {
        let xs: Vec<usize> = parties.iter().map(|p| p.point()).collect();
        params.check_indices(xs.iter().copied())?;
        let t = params.t();
        if xs.len() < t + 1 {
            return Err(ShamirError::NotEnoughShares {
                got: xs.len(),
                need: t + 1,
            });
        }
        let base = &xs[..=t];
        let targets: Vec<u64> = std::iter::once(0)
            .chain(xs[t + 1..].iter().map(|&x| x as u64))
            .collect();
        let mut weights = Lagrange::many(base, &targets)?.into_iter();
        let at_zero = weights.next().expect("the target 0 is first");
        let checks = weights.collect();
        Ok(Self {
            params,
            parties: parties.to_vec(),
            at_zero,
            checks,
        })
    }

    /// Decodes the values `ys` (in the order of the parties given to [`Decoder::new`]).
    ///
    /// # Errors
    /// [`ShamirError::NotEnoughShares`] unless there is exactly one value per party.
    pub fn decode(&self, ys: &[F]) -> Result<Decode<F>, ShamirError> {
        if ys.len() != self.parties.len() {
            return Err(ShamirError::NotEnoughShares {
                got: ys.len(),
                need: self.parties.len(),
            });
        }
        Ok(self.decode_unchecked(ys))
    }

    fn decode_unchecked(&self, ys: &[F]) -> Decode<F> {
        let t = self.params.t();
        let base = &ys[..=t];
        let consistent = self
            .checks
            .iter()
            .zip(&ys[t + 1..])
            .all(|(l, y)| F::dot(l.weights(), base) == *y);
        if consistent {
            return Decode::Decoded {
                value: F::dot(self.at_zero.weights(), base),
                culprits: Vec::new(),
            };
        }
        self.berlekamp_welch(ys)
    }

    fn berlekamp_welch(&self, ys: &[F]) -> Decode<F> {
        let t = self.params.t();
        let k = ys.len();
        let e = max_errors(k, t);
        if e == 0 {
            return Decode::Inconsistent;
        }
        let Some(f) = bw_solve(&self.parties, ys, t, e) else {
            return Decode::Inconsistent;
        };
        let mut culprits: Vec<PartyId> = self
            .parties
            .iter()
            .zip(ys)
            .filter(|(p, &y)| eval_u64(&f, u64::from(p.get())) != y)
            .map(|(&p, _)| p)
            .collect();
        if culprits.len() > e || k - culprits.len() < 2 * t + 1 {
            return Decode::Inconsistent;
        }
        culprits.sort_unstable();
        Decode::Decoded {
            value: f.first().copied().unwrap_or(F::ZERO),
            culprits,
        }
    }
}

fn eval_u64<F: PrimeField>(coeffs: &[F], x: u64) -> F {
    coeffs
        .iter()
        .rev()
        .fold(F::ZERO, |acc, c| acc.mul_u64(x) + *c)
}

/// Solves `Q(x_i) = y_i E(x_i)` with `E` monic of degree `e`, `deg Q <= t + e`, and returns
/// `Q / E` if the division is exact and of degree at most `t` (`x_i` is the point of party
/// `xs[i]`).
fn bw_solve<F: PrimeField>(xs: &[PartyId], ys: &[F], t: usize, e: usize) -> Option<Vec<F>> {
    let nq = t + e + 1;
    let cols = nq + e;
    // Rows: [x^0 .. x^(t+e) | -y x^0 .. -y x^(e-1) | y x^e].
    let mut m: Vec<Vec<F>> = xs
        .iter()
        .zip(ys)
        .map(|(x, &y)| {
            let xf = F::from_u64(u64::from(x.get()));
            let mut row = Vec::with_capacity(cols + 1);
            let mut p = F::ONE;
            for _ in 0..nq {
                row.push(p);
                p *= xf;
            }
            let mut p = F::ONE;
            for _ in 0..e {
                row.push(-(y * p));
                p *= xf;
            }
            row.push(y * p);
            row
        })
        .collect();
    let sol = solve(&mut m, cols)?;
    let q = &sol[..nq];
    let mut ecoef: Vec<F> = sol[nq..].to_vec();
    ecoef.push(F::ONE);
    // Long division q / ecoef (monic divisor).
    let mut rem = q.to_vec();
    let mut quot = vec![F::ZERO; nq - e];
    for d in (0..quot.len()).rev() {
        let c = rem[d + e];
        quot[d] = c;
        for (j, ec) in ecoef.iter().enumerate() {
            rem[d + j] -= c * *ec;
        }
    }
    if rem.iter().any(|r| !r.is_zero()) {
        return None;
    }
    debug_assert!(quot.len() == t + 1);
    Some(quot)
}

/// Gaussian elimination on an augmented matrix with `cols` unknowns; free variables are set to
/// zero. `None` if the system has no solution.
fn solve<F: PrimeField>(m: &mut [Vec<F>], cols: usize) -> Option<Vec<F>> {
    let rows = m.len();
    let mut pivots = Vec::with_capacity(cols);
    let mut r = 0;
    for c in 0..cols {
        let Some(p) = (r..rows).find(|&i| !m[i][c].is_zero()) else {
            continue;
        };
        m.swap(r, p);
        let inv = m[r][c].inverse().expect("pivot is non-zero");
        for v in m[r][c..].iter_mut() {
            *v *= inv;
        }
        let pivot_row = m[r].clone();
        for (i, row) in m.iter_mut().enumerate() {
            if i != r && !row[c].is_zero() {
                let f = row[c];
                for (v, pv) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                    *v -= f * *pv;
                }
            }
        }
        pivots.push((r, c));
        r += 1;
        if r == rows {
            break;
        }
    }
    if m[r..].iter().any(|row| !row[cols].is_zero()) {
        return None;
    }
    let mut sol = vec![F::ZERO; cols];
    for (row, c) in pivots {
        sol[c] = m[row][cols];
    }
    Some(sol)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};
    use crate::mpc::shamir::{reconstruct, Poly};
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn p(i: u32) -> PartyId {
        PartyId::from_wire(i).expect("test parties are 1-based")
    }

    /// The naive decoder: try every `t + 1` subset, keep a polynomial agreeing with at least
    /// `k - e_max` answers, apply the same `2t + 1` rule for blame.
    fn oracle<F: PrimeField>(params: Params, pts: &[(PartyId, F)]) -> Decode<F> {
        let t = params.t();
        let k = pts.len();
        let e = max_errors(k, t);
        let mut found: Option<(F, Vec<PartyId>)> = None;
        for mask in 0u32..(1 << k) {
            if mask.count_ones() as usize != t + 1 {
                continue;
            }
            let sub: Vec<(usize, F)> = (0..k)
                .filter(|b| mask & (1 << b) != 0)
                .map(|b| (pts[b].0.point(), pts[b].1))
                .collect();
            let xs: Vec<usize> = sub.iter().map(|p| p.0).collect();
            let ys: Vec<F> = sub.iter().map(|p| p.1).collect();
            let mut off = Vec::new();
            for &(x, y) in pts {
                let l = Lagrange::new(&xs, u64::from(x.get())).unwrap();
                if l.interpolate(&ys).unwrap() != y {
                    off.push(x);
                }
            }
            if off.len() <= e {
                let value = reconstruct(params, &sub).unwrap();
                if let Some((v, _)) = &found {
                    assert_eq!(*v, value, "two codewords within the radius");
                }
                off.sort_unstable();
                found = Some((value, off));
            }
        }
        match found {
            Some((value, culprits)) if culprits.is_empty() || k - culprits.len() > 2 * t => {
                Decode::Decoded { value, culprits }
            }
            _ => Decode::Inconsistent,
        }
    }

    fn scenario<F: PrimeField>(n: usize, t: usize, seed: u64, colluding: bool) {
        let params = Params::new(n, t).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let secret = F::random(&mut rng);
        let poly = Poly::random(secret, t, &mut rng);
        let mut parties: Vec<PartyId> = PartyId::all(n).collect();
        // Random erasures and errors.
        let s = rng.gen_range(0..=n - t - 1);
        for _ in 0..s {
            let k = rng.gen_range(0..parties.len());
            parties.remove(k);
        }
        let k = parties.len();
        let nerr = rng.gen_range(0..=k - t.min(k));
        let mut bad: Vec<PartyId> = Vec::new();
        while bad.len() < nerr {
            let p = parties[rng.gen_range(0..k)];
            if !bad.contains(&p) {
                bad.push(p);
            }
        }
        bad.sort_unstable();
        // Colluding errors lie on one other polynomial (the hardest case for the decoder).
        let other = Poly::random(F::random(&mut rng), t, &mut rng);
        let pts: Vec<(PartyId, F)> = parties
            .iter()
            .map(|&x| {
                let honest = poly.eval_u64(u64::from(x.get()));
                let y = if bad.contains(&x) {
                    if colluding {
                        other.eval_u64(u64::from(x.get()))
                    } else {
                        honest + F::random(&mut rng) + F::ONE
                    }
                } else {
                    honest
                };
                (x, y)
            })
            .collect();
        let got = decode(params, &pts).unwrap();
        // A wrong value equal to the honest one is possible only with negligible probability.
        let real_bad: Vec<PartyId> = pts
            .iter()
            .filter(|(x, y)| *y != poly.eval_u64(u64::from(x.get())))
            .map(|p| p.0)
            .collect();
        assert_eq!(got, oracle(params, &pts), "n={n} t={t} pts={pts:?}");
        let within = 2 * real_bad.len() + (n - k) < n - t;
        if within && (real_bad.is_empty() || k - real_bad.len() > 2 * t) {
            assert_eq!(
                got,
                Decode::Decoded {
                    value: secret,
                    culprits: real_bad.clone()
                }
            );
        }
        // Never blame an honest party while at most t parties are faulty in all.
        if real_bad.len() + (n - k) <= t {
            for c in got.culprits() {
                assert!(real_bad.contains(c), "honest party {c} blamed");
            }
            if n > 3 * t {
                assert_eq!(got.value(), Some(&secret));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn decoder_matches_naive_oracle(n in 1usize..9, tf in 0usize..100, seed in any::<u64>(), colluding in any::<bool>()) {
            let t = tf % n;
            scenario::<Mersenne127>(n, t, seed, colluding);
            scenario::<Secp256k1Scalar>(n, t, seed, colluding);
        }
    }

    #[test]
    fn corrects_t_errors_with_n_3t_plus_1() {
        for n in 4..=10 {
            let params = Params::byzantine(n).unwrap();
            let t = params.t();
            let mut rng = StdRng::seed_from_u64(n as u64);
            let secret = Mersenne127::random(&mut rng);
            let poly = Poly::random(secret, t, &mut rng);
            let mut pts: Vec<(PartyId, Mersenne127)> = PartyId::all(n)
                .map(|x| (x, poly.eval_u64(u64::from(x.get()))))
                .collect();
            let bad: Vec<PartyId> = (1..=t)
                .map(|k| PartyId::new((k * 3) % n + 1, n).unwrap())
                .collect();
            for &b in &bad {
                pts[b.slot()].1 += Mersenne127::from_u64(7);
            }
            let mut expect = bad.clone();
            expect.sort_unstable();
            assert_eq!(
                decode(params, &pts).unwrap(),
                Decode::Decoded {
                    value: secret,
                    culprits: expect
                }
            );
            // One more error than the radius: no value, no blame.
            if t > 0 && n == 3 * t + 1 {
                let extra = PartyId::all(n).find(|x| !bad.contains(x)).unwrap();
                pts[extra.slot()].1 += Mersenne127::ONE;
                let got = decode(params, &pts).unwrap();
                for c in got.culprits() {
                    assert!(bad.contains(c) || *c == extra);
                }
            }
        }
    }

    #[test]
    fn vectors_and_errors() {
        let params = Params::new(4, 1).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let secrets: Vec<Secp256k1Scalar> =
            (0..5).map(|_| Secp256k1Scalar::random(&mut rng)).collect();
        let mut shares = crate::mpc::shamir::deal_vec(&secrets, params, &mut rng);
        shares[2][3] += Secp256k1Scalar::ONE;
        let v: Vec<(PartyId, &[Secp256k1Scalar])> = PartyId::all(4)
            .zip(&shares)
            .map(|(i, s)| (i, s.as_slice()))
            .collect();
        assert_eq!(
            decode_vec(params, &v).unwrap(),
            DecodeVec::Decoded {
                values: secrets.clone(),
                culprits: vec![p(3)]
            }
        );
        // Withheld party 3 and an error at party 1: 2e + s = 3 > n - t - 1 = 2.
        shares[0][1] += Secp256k1Scalar::ONE;
        let v: Vec<(PartyId, &[Secp256k1Scalar])> =
            vec![(p(1), &shares[0]), (p(2), &shares[1]), (p(4), &shares[3])];
        assert_eq!(
            decode_vec(params, &v).unwrap(),
            DecodeVec::Inconsistent { position: 1 }
        );
        let short = &shares[3][..4];
        let v: Vec<(PartyId, &[Secp256k1Scalar])> =
            vec![(p(1), &shares[0]), (p(2), &shares[1]), (p(4), short)];
        assert_eq!(
            decode_vec(params, &v),
            Err(ShamirError::LengthMismatch {
                index: 4,
                got: 4,
                expected: 5
            })
        );
        let one = Secp256k1Scalar::ONE;
        assert_eq!(
            decode(params, &[(p(1), one), (p(1), one), (p(2), one)]),
            Err(ShamirError::DuplicateIndex { index: 1 })
        );
        assert_eq!(
            decode(params, &[(p(5), one), (p(1), one)]),
            Err(ShamirError::BadIndex { index: 5, n: 4 })
        );
        assert_eq!(
            decode(params, &[(p(1), one)]),
            Err(ShamirError::NotEnoughShares { got: 1, need: 2 })
        );
        let d = Decoder::<Secp256k1Scalar>::new(params, &[p(1), p(2), p(3)]).unwrap();
        assert_eq!(
            d.decode(&[one, one]),
            Err(ShamirError::NotEnoughShares { got: 2, need: 3 })
        );
    }

    /// The culprits are the parties that answered wrong, named by party (not by their position
    /// among the answers, nor by a 0-based slot), whatever the order of the answers and with
    /// parties missing.
    #[test]
    fn culprits_are_the_parties_that_lied() {
        let n = 10;
        let params = Params::byzantine(n).unwrap();
        let t = params.t();
        let mut rng = StdRng::seed_from_u64(42);
        let secret = Mersenne127::random(&mut rng);
        let poly = Poly::random(secret, t, &mut rng);
        // Party 3 withheld; the others answer out of order.
        let order = [p(7), p(2), p(10), p(5), p(1), p(9), p(4), p(6), p(8)];
        let liars = [p(9), p(4)];
        let pts: Vec<(PartyId, Mersenne127)> = order
            .iter()
            .map(|&x| {
                let y = poly.eval_u64(u64::from(x.get()));
                let lie = if liars.contains(&x) {
                    Mersenne127::ONE
                } else {
                    Mersenne127::ZERO
                };
                (x, y + lie)
            })
            .collect();
        let got = decode(params, &pts).unwrap();
        assert_eq!(got.value(), Some(&secret));
        assert_eq!(got.culprits(), [p(4), p(9)]);
        let ys: Vec<&[Mersenne127]> = pts.iter().map(|q| std::slice::from_ref(&q.1)).collect();
        let vectors: Vec<(PartyId, &[Mersenne127])> =
            order.iter().copied().zip(ys.iter().copied()).collect();
        assert_eq!(
            decode_vec(params, &vectors).unwrap(),
            DecodeVec::Decoded {
                values: vec![secret],
                culprits: vec![p(4), p(9)]
            }
        );
    }

    #[test]
    fn vectors_decode_as_one_position_at_a_time_across_blocks() {
        // n = 7, t = 2, parties given out of order; errors past the first block, in the base
        // (the first t + 1 answers) and in the checked answers, and one position with more
        // errors than the radius: the vector decoder agrees with `decode` position by position.
        let params = Params::new(7, 2).unwrap();
        let mut rng = StdRng::seed_from_u64(8);
        let len = 2 * crate::mpc::mult::BLOCK + 77;
        let secrets: Vec<Mersenne127> = (0..len).map(|_| Mersenne127::random(&mut rng)).collect();
        let mut shares = crate::mpc::shamir::deal_vec(&secrets, params, &mut rng);
        shares[4][5] += Mersenne127::ONE;
        shares[0][1500] += Mersenne127::ONE;
        shares[6][len - 1] += Mersenne127::ONE;
        shares[1][len - 1] += Mersenne127::ONE;
        let order = [5u32, 1, 7, 3, 2, 6, 4];
        let v: Vec<(PartyId, &[Mersenne127])> = order
            .iter()
            .map(|&i| (p(i), &shares[i as usize - 1][..]))
            .collect();
        let mut culprits = Vec::new();
        for (k, s) in secrets.iter().enumerate() {
            let pts: Vec<(PartyId, Mersenne127)> = v.iter().map(|(q, x)| (*q, x[k])).collect();
            match decode(params, &pts).unwrap() {
                Decode::Decoded { value, culprits: c } => {
                    assert_eq!(value, *s);
                    culprits.extend(c);
                }
                Decode::Inconsistent => panic!("position {k} decodes"),
            }
        }
        culprits.sort_unstable();
        culprits.dedup();
        assert_eq!(culprits, [p(1), p(2), p(5), p(7)]);
        assert_eq!(
            decode_vec(params, &v).unwrap(),
            DecodeVec::Decoded {
                values: secrets.clone(),
                culprits,
            }
        );
        // Three wrong answers at one position (radius 2): inconsistent there, first such.
        shares[2][2110] += Mersenne127::ONE;
        shares[3][2110] += Mersenne127::ONE;
        shares[4][2110] += Mersenne127::ONE;
        shares[2][2100] += Mersenne127::ONE;
        shares[3][2100] += Mersenne127::ONE;
        shares[5][2100] += Mersenne127::ONE;
        let v: Vec<(PartyId, &[Mersenne127])> = order
            .iter()
            .map(|&i| (p(i), &shares[i as usize - 1][..]))
            .collect();
        assert_eq!(
            decode_vec(params, &v).unwrap(),
            DecodeVec::Inconsistent { position: 2100 }
        );
    }
}
