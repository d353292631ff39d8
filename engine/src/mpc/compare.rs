//! Secure comparison on Shamir shares: shared random bits, LTZ, EQZ and BitLT.
//!
//! Every protocol here runs on degree-`t` Shamir shares over a prime field, with two
//! interactive steps provided by the evaluator (`Rounds`, implemented by
//! [`crate::mpc::eval`]'s machine): element-wise products (a Damgård-Nielsen degree reduction
//! with PRSS double sharings, one round for a whole batch) and **openings to the committee**
//! (every party echo-broadcasts its degree-`t` shares; each decodes them with the robust
//! decoder of [`crate::mpc::decode`], naming a party off the polynomial, and aborts when they
//! do not determine one). Everything is vectorised: one comparison per row, all rows in the
//! same rounds.
//!
//! # Shared random bits
//!
//! Damgård, Fitzi, Kiltz, Nielsen, Toft, "Unconditionally Secure Constant-Rounds Multi-Party
//! Computation for Equality, Comparison, Bits and Exponentiation", TCC 2006, section 4.1 (the
//! square-root trick), with no party choosing anything: a PRSS random sharing `[r]`
//! ([`crate::mpc::prss::Prss::random`], pseudo-random to any `t` parties), `[r^2]` by one
//! degree reduction, `r^2` opened to the committee (retried where it is 0, probability `1/p`),
//! `rho` = the canonical square root of `r^2` ([`canonical_sqrt`]: the root whose canonical
//! integer is even; public, so variable time is fine), and
//! `[b] = ([r] / rho + 1) / 2`, a uniform bit (`r = rho` or `r = -rho` with probability `1/2`
//! each, and the opening of `r^2` says nothing about which). All the bits of a comparison are
//! made in one batch: two rounds. `random_bits`.
//!
//! # LTZ (less than zero)
//!
//! Catrina and de Hoogh, "Improved Primitives for Secure Multiparty Integer Computation",
//! SCN 2010: protocol **LTZ** as `-Trunc([a], k, k - 1)`, with **Trunc** from **Mod2m**:
//! for a `k`-bit signed `a` and `m = k - 1`, with random bits `r'_0..r'_{m-1}` and a random
//! integer `r''` (`r = 2^m r'' + r'`), the committee opens the masked value
//! `c = 2^(k-1) + a + r` (the **masked opening**), computes `c' = c mod 2^m` in the clear, the
//! bit `u = BitLT(c', r')` on shares, and `a mod 2^m = c' - r' + 2^m u`; then
//! `LTZ(a) = (a mod 2^m - a) / 2^m`. `ltz`.
//!
//! **BitLT** (`c < r` for a public `c` and shared bits of `r`) is `1 - CarryOut(c, NOT r, 1)`:
//! the carry of `c + (2^m - 1 - r) + 1 = 2^m + c - r`. CarryOut combines per-bit
//! (propagate, generate) pairs with the carry operator
//! `(p2, g2) o (p1, g1) = (p2 p1, g2 + p2 g1)` in a balanced tree: `ceil(log2 m)` rounds, two
//! products per combination (one where the lower segment starts at bit 0). `bit_lt`.
//!
//! # EQZ (equal to zero)
//!
//! Catrina and de Hoogh (SCN 2010), protocol **EQZ**: open `c = 2^(k-1) + a + r` with
//! `r = 2^k r'' + r'` (`k` bits `r'`, `kappa` bits `r''`); `a = 0` exactly when the low `k`
//! bits of `c - 2^(k-1)` equal `r'` (`|a| < 2^k`), which is `1 - OR_i (c_i XOR r'_i)`, here the
//! AND of the `k` bits `1 - (c_i XOR r'_i)` by a tree of products (**KOr** with the
//! logarithmic prefix-OR circuit instead of their constant-round one): `ceil(log2 k)` rounds.
//! `eqz`.
//!
//! # The high part of the mask
//!
//! `r''` needs no bits, only a random integer that hides the high part of `a`: it is a PRSS
//! random integer, `r'' = sum_A r_A` over the `C(n, t)` PRSS sets with every `r_A` uniform in
//! `[0, 2^(kappa + 1))` for LTZ and `[0, 2^kappa)` for EQZ (Catrina and de Hoogh's
//! **PRandInt**, SCN 2010, section 2, after Cramer, Damgård and Ishai, TCC 2005;
//! [`crate::mpc::prss::Prss::random_int`]): no round, no square root, and no party chooses it.
//! The one term no coalition of `t` parties knows is uniform over `2^(kappa + 1)` (LTZ) or
//! `2^kappa` (EQZ) values and the high part of `2^(k-1) + a + r'` it hides is at most 2 (LTZ,
//! `< 2^(k+1)` over `2^m = 2^(k-1)`) or 1 (EQZ): statistical distance at most `2^-kappa`.
//! Only the `m` (LTZ) or `k` (EQZ) bits of `r'` come from the square-root trick: a 32-bit
//! comparison takes 31 random bits per row instead of 72.
//!
//! # Why the field has room
//!
//! The masked value `c = 2^(k-1) + a + r' + 2^m r''` is a non-negative integer below
//! `2^(k + kappa + SET_BITS + 1)`: `2^(k-1) + a < 2^k`, `r' < 2^m`, and `r'' < C(n, t) 2^(kappa
//! + 1) <= 2^(kappa + 1 + SET_BITS)` with `m = k - 1` (LTZ), or `r'' < 2^(kappa + SET_BITS)`
//! with `m = k` (EQZ) ([`SET_BITS`]: `C(n, t) < 2^8` for every committee the engine runs). It
//! must not wrap modulo `p` so that its low bits are those of the integer.
//! [`max_compare_bits`] is `MAGNITUDE_LIMIT_BITS - kappa - SET_BITS - 1` and
//! `MAGNITUDE_LIMIT_BITS <= log2(p) - 1` ([`PrimeField::MAGNITUDE_LIMIT_BITS`]), so
//! `k + kappa + SET_BITS + 1 <= MAGNITUDE_LIMIT_BITS < log2(p)`: no wrap. The opening `c` is
//! within statistical distance `2^-kappa` of a value independent of `a` (above).
//!
//! # No selective failure
//!
//! Whether a job aborts never depends on honest data. With `n >= 3t + 1`:
//!
//! - every interactive step is checked **at once**, in the round it happens, never later in a
//!   batch: a degree reduction's openings must lie on one degree-`2t` polynomial
//!   ([`crate::mpc::mult::open_2t`], `n - t >= 2t + 1` honest points determine it), and an
//!   opening to the committee is decoded at once with Berlekamp-Welch ([`crate::mpc::decode`]).
//!   No check is deferred, so there is no window in which a corrupt party's perturbation
//!   travels through later steps and is checked against data-dependent values;
//! - each check is a function of the **syndrome** of the received word only: the received
//!   vector is the honest codeword plus an error vector, the check (and the culprits decoding
//!   names) depends on the error vector and on which openings arrived (the erasures, a matter
//!   of the network and the corrupt parties, never of the data) alone, and the codeword
//!   (which carries the data) is in the kernel of the syndrome map. The error vector is the
//!   difference between what the corrupt parties sent and what the protocol told them to
//!   send, which they know (a party holding a wrong share of `x` that enters a product
//!   contributes the error `delta * y_i`, where `y_i` is its own share of the other factor,
//!   known to it);
//! - so the outcome (abort, named culprits, result) is a function of what the corrupt parties
//!   chose and already hold, and of public openings that are themselves statistically
//!   independent of the data (masked openings, `r^2`, and the gate bits that are the result).
//!
//! A wrong share in an opening to the committee is corrected and its author named; a wrong
//! contribution to a degree reduction aborts the step (detected, not attributable); a wrong
//! share of a random bit shows in the masked opening (named) and then in a BitLT product
//! (abort) or, where the public bit of the masked opening makes that product a constant, in the
//! party's output share (named by the service's decoding): never a silently wrong result.
//! With `n = 2t + 1` (unbonded test networks) neither check has redundancy and version 1's
//! caveat for products applies. The test
//! `outcome_of_a_perturbation_does_not_depend_on_the_secret` perturbs each kind of value on
//! data where the targeted secret is 0 and where it is 1 and compares the outcomes.

use crate::mpc::field::{batch_invert, PrimeField};

/// The statistical security parameter `kappa`, in bits: a masked opening is within statistical
/// distance `2^-kappa` of uniform.
pub const STATISTICAL_SECURITY_BITS: u32 = 40;

/// Bits of the number of PRSS sets `C(n, t)` of any committee the engine runs (`n <= 10`,
/// `2t < n`: at most `C(10, 4) = 210 < 2^8`): a PRSS random integer of `b`-bit terms is below
/// `2^(b + SET_BITS)`.
pub const SET_BITS: u32 = 8;

/// The most bits (sign bit included) a compared value may have in field `F`:
/// `F::MAGNITUDE_LIMIT_BITS - kappa - SET_BITS - 1` (77 for 2^127-1, 205 for secp256k1's
/// order; see "Why the field has room").
pub fn max_compare_bits<F: PrimeField>() -> u32 {
    F::MAGNITUDE_LIMIT_BITS - STATISTICAL_SECURITY_BITS - SET_BITS - 1
}

/// How many times the random bits of a batch are redrawn where `r^2` opened to 0 (each time
/// with probability `1/p` per bit) before the step gives up.
const BIT_RETRIES: usize = 4;

/// Why a comparison step failed locally (the evaluator turns it into its error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompareError {
    /// `r^2` opened to a value that is not a square (only possible when more than `t` parties
    /// cheat or `n = 2t + 1` lets an additive attack through).
    #[error("the opening of r^2 at position {position} is not a square")]
    NotSquare {
        /// Position in the batch.
        position: usize,
    },
    /// `r^2` kept opening to 0.
    #[error("r^2 opened to 0 at position {position} {retries} times")]
    ZeroSquare {
        /// Position in the batch.
        position: usize,
        /// Draws made.
        retries: usize,
    },
    /// An opened gate bit is neither 0 nor 1.
    #[error("opened bit at position {position} is neither 0 nor 1")]
    NotABit {
        /// Position in the batch.
        position: usize,
    },
    /// The compared width is 0 or above [`max_compare_bits`].
    #[error("a comparison of {bits} bits, this field allows 1 to {max}")]
    Bits {
        /// Bits asked.
        bits: u32,
        /// The limit.
        max: u32,
    },
}

/// The interactive steps a comparison needs, provided by the evaluator (one party's view).
/// Each call is one round for a whole batch.
pub(crate) trait Rounds<F: PrimeField> {
    /// Why a step stopped: it needs the next round, or it failed.
    type Stop: From<CompareError>;

    /// `a[k] * b[k]` for every `k` (degree-`t` shares in and out): one degree reduction.
    fn multiply(&mut self, a: &[F], b: &[F]) -> Result<Vec<F>, Self::Stop>;

    /// Opens degree-`t` shares to the committee (robustly decoded): one round.
    fn open(&mut self, shares: Vec<F>) -> Result<Vec<F>, Self::Stop>;

    /// This party's shares of `len` fresh PRSS random sharings.
    fn random(&mut self, len: usize) -> Result<Vec<F>, Self::Stop>;

    /// This party's shares of `len` fresh PRSS random integers, each the sum of `C(n, t)`
    /// uniform `bits`-bit integers ([`crate::mpc::prss::Prss::random_int`]).
    fn random_int(&mut self, len: usize, bits: u32) -> Result<Vec<F>, Self::Stop>;

    /// The canonical inverse square roots `1 / rho` of the opened `r^2` of the round just
    /// done (an evaluator may keep them across replays); `None` where the value is 0.
    ///
    /// # Errors
    /// [`CompareError::NotSquare`].
    fn inverse_roots(&mut self, squares: &[F]) -> Result<Vec<Option<F>>, Self::Stop> {
        Ok(inverse_roots(squares)?)
    }

    /// Test support: a change applied to this party's shares of freshly made random bits.
    fn tamper_bits(&mut self, _bits: &mut [F]) {}

    /// The random bits made from the rounds starting here in an earlier replay of the same
    /// evaluation, if the evaluator kept them (it then moves past those rounds).
    fn cached_bits(&mut self, _len: usize) -> Option<Vec<F>> {
        None
    }

    /// The round the next step starts at.
    fn position(&self) -> usize {
        0
    }

    /// Offers the evaluator the bits made from the rounds starting at `start` (the squares
    /// opened there identify them).
    fn keep_bits(&mut self, _start: usize, _squares: &[F], _bits: &[F]) {}
}

// ---- Square roots --------------------------------------------------------------------------

fn limbs_sub_one(mut l: [u64; 4]) -> [u64; 4] {
    for x in l.iter_mut() {
        let (v, borrow) = x.overflowing_sub(1);
        *x = v;
        if !borrow {
            break;
        }
    }
    l
}

/// `(l + 1) / 2` for an odd `l` below `2^256 - 1`.
fn limbs_add_one_shr1(mut l: [u64; 4]) -> [u64; 4] {
    for x in l.iter_mut() {
        let (v, carry) = x.overflowing_add(1);
        *x = v;
        if !carry {
            break;
        }
    }
    limbs_shr(l, 1)
}

fn limbs_shr(l: [u64; 4], k: u32) -> [u64; 4] {
    let mut out = [0u64; 4];
    let words = (k / 64) as usize;
    let bits = k % 64;
    for (i, o) in out.iter_mut().enumerate() {
        let Some(&lo) = l.get(i + words) else { break };
        let hi = l.get(i + words + 1).copied().unwrap_or(0);
        *o = if bits == 0 {
            lo
        } else {
            (lo >> bits) | (hi << (64 - bits))
        };
    }
    out
}

fn limbs_trailing_zeros(l: &[u64; 4]) -> u32 {
    let mut z = 0;
    for x in l {
        if *x == 0 {
            z += 64;
        } else {
            return z + x.trailing_zeros();
        }
    }
    z
}

fn bit(l: &[u64; 4], i: u32) -> bool {
    l.get((i / 64) as usize)
        .is_some_and(|w| (w >> (i % 64)) & 1 == 1)
}

/// `x^e` for an exponent given as little-endian limbs, with a fixed 4-bit window (variable
/// time: public values only).
fn pow_limbs<F: PrimeField>(x: F, e: &[u64; 4]) -> F {
    Exponent::new(e).pow(x)
}

/// An exponent prepared once for many exponentiations: its bit length and its 4-bit windows,
/// most significant first, so that each exponentiation is squarings and table products only
/// (a square root is one exponentiation per random bit, tens of them per compared row).
#[derive(Debug, Clone)]
struct Exponent {
    /// Bit length (0 for the exponent 0).
    top: u32,
    /// A power of two: `x^e` is `top - 1` squarings of `x`.
    power_of_two: bool,
    /// The 4-bit windows, most significant first.
    digits: Vec<u8>,
}

impl Exponent {
    fn new(e: &[u64; 4]) -> Self {
        let top = (0..256u32).rev().find(|i| bit(e, *i)).map_or(0, |i| i + 1);
        let power_of_two = top >= 1 && (0..top - 1).all(|i| !bit(e, i));
        let digits = (0..top.div_ceil(4))
            .rev()
            .map(|w| (0..4).fold(0u8, |d, j| d | (u8::from(bit(e, 4 * w + j)) << j)))
            .collect();
        Exponent {
            top,
            power_of_two,
            digits,
        }
    }

    fn pow<F: PrimeField>(&self, x: F) -> F {
        if self.top == 0 {
            return F::ONE;
        }
        if self.power_of_two {
            let mut acc = x;
            for _ in 1..self.top {
                acc = acc.square();
            }
            return acc;
        }
        let mut table = [F::ONE; 16];
        for k in 1..16 {
            table[k] = table[k - 1] * x;
        }
        let mut acc = F::ONE;
        for (i, d) in self.digits.iter().enumerate() {
            if i > 0 {
                for _ in 0..4 {
                    acc = acc.square();
                }
            }
            if *d != 0 {
                acc *= table[usize::from(*d)];
            }
        }
        acc
    }
}

/// Independent exponentiations run in lockstep by [`Exponent::pow_lanes`]: a field
/// multiplication's latency is several times its throughput, and a square root is a chain of
/// dependent squarings, so interleaving chains lets the core overlap them.
const LANES: usize = 8;

impl Exponent {
    /// `x^e` for [`LANES`] values at once, each exactly as [`Exponent::pow`] computes it.
    fn pow_lanes<F: PrimeField>(&self, xs: &[F; LANES]) -> [F; LANES] {
        fn square_all<F: PrimeField>(acc: &mut [F; LANES]) {
            for a in acc.iter_mut() {
                *a = a.square();
            }
        }
        if self.top == 0 {
            return [F::ONE; LANES];
        }
        if self.power_of_two {
            let mut acc = *xs;
            for _ in 1..self.top {
                square_all(&mut acc);
            }
            return acc;
        }
        let mut table = [[F::ONE; LANES]; 16];
        for k in 1..16 {
            for l in 0..LANES {
                table[k][l] = table[k - 1][l] * xs[l];
            }
        }
        let mut acc = [F::ONE; LANES];
        for (i, d) in self.digits.iter().enumerate() {
            if i > 0 {
                for _ in 0..4 {
                    square_all(&mut acc);
                }
            }
            if *d != 0 {
                let row = &table[usize::from(*d)];
                for l in 0..LANES {
                    acc[l] *= row[l];
                }
            }
        }
        acc
    }
}

/// Tonelli-Shanks for the field `F`: `p - 1 = q 2^s` with `q` odd, and a non-residue's `z^q`.
struct Sqrt<F> {
    s: u32,
    /// `(q - 1) / 2`.
    half_q: Exponent,
    /// `z^q` for the least quadratic non-residue `z >= 2`.
    zq: F,
    /// `(p + 1) / 4` when `p = 3 mod 4`.
    quarter: Option<Exponent>,
}

impl<F: PrimeField> Sqrt<F> {
    fn new() -> Self {
        let p1 = limbs_sub_one(F::MODULUS);
        let s = limbs_trailing_zeros(&p1);
        let q = limbs_shr(p1, s);
        let half_q = limbs_shr(q, 1);
        let half_p1 = limbs_shr(p1, 1);
        let z = (2u64..)
            .map(F::from_u64)
            .find(|z| pow_limbs(*z, &half_p1) == -F::ONE)
            .expect("half of the field's elements are non-residues");
        // (p + 1) / 4 = ((p - 1) / 2 + 1) / 2 = (half_p1 + 1) / 2, and half_p1 is odd when s = 1.
        let quarter = (s == 1).then(|| Exponent::new(&limbs_add_one_shr1(half_p1)));
        Sqrt {
            s,
            half_q: Exponent::new(&half_q),
            zq: pow_limbs(z, &q),
            quarter,
        }
    }

    /// A square root of each of `xs` ([`Sqrt::root`] of each; `None` for a non-residue), the
    /// exponentiations [`LANES`] at a time.
    fn roots(&self, xs: &[F]) -> Vec<Option<F>> {
        let mut out = Vec::with_capacity(xs.len());
        for chunk in xs.chunks(LANES) {
            let mut lane = [F::ONE; LANES];
            lane[..chunk.len()].copy_from_slice(chunk);
            match &self.quarter {
                Some(e) => {
                    let r = e.pow_lanes(&lane);
                    out.extend(
                        chunk
                            .iter()
                            .zip(r)
                            .map(|(x, r)| (r.square() == *x).then_some(r)),
                    );
                }
                None => {
                    let w = self.half_q.pow_lanes(&lane);
                    out.extend(chunk.iter().zip(w).map(|(x, w)| self.finish(*x, w)));
                }
            }
        }
        out
    }

    /// The end of Tonelli-Shanks for `x` from `w = x^((q-1)/2)`.
    fn finish(&self, x: F, w: F) -> Option<F> {
        if x.is_zero() {
            return Some(F::ZERO);
        }
        // t = x^q = x w^2, r = x^((q+1)/2) = x w.
        let mut t = x * w.square();
        let mut r = x * w;
        let mut m = self.s;
        let mut c = self.zq;
        while t != F::ONE {
            let mut i = 0;
            let mut t2 = t;
            while t2 != F::ONE {
                t2 = t2.square();
                i += 1;
                if i == m {
                    return None;
                }
            }
            let mut b = c;
            for _ in 0..(m - i - 1) {
                b = b.square();
            }
            m = i;
            c = b.square();
            t *= c;
            r *= b;
        }
        Some(r)
    }

    /// A square root of `x` (any of the two), `None` for a non-residue.
    fn root(&self, x: F) -> Option<F> {
        if x.is_zero() {
            return Some(F::ZERO);
        }
        if let Some(e) = &self.quarter {
            // p = 3 mod 4: x^((p+1)/4) (for 2^127 - 1, 125 squarings).
            let r = e.pow(x);
            return (r.square() == x).then_some(r);
        }
        // w = x^((q-1)/2).
        self.finish(x, self.half_q.pow(x))
    }
}

/// The canonical square root of `x`: of the two roots, the one whose canonical integer is even
/// (`Some(0)` for 0, `None` for a non-residue). Tonelli-Shanks (works for `p = 1 mod 4`, as
/// secp256k1's order; for `2^127 - 1`, `p = 3 mod 4`, it is one exponentiation). Variable time:
/// for public values only.
pub fn canonical_sqrt<F: PrimeField>(x: F) -> Option<F> {
    Sqrt::new().root(x).map(canonical)
}

fn canonical<F: PrimeField>(r: F) -> F {
    if r.to_limbs()[0] & 1 == 1 {
        -r
    } else {
        r
    }
}

/// `1 / rho` for the canonical root `rho` of every value (`None` where it is 0).
///
/// # Errors
/// [`CompareError::NotSquare`] naming the first non-residue.
pub fn inverse_roots<F: PrimeField>(squares: &[F]) -> Result<Vec<Option<F>>, CompareError> {
    let mut roots = Vec::with_capacity(squares.len());
    for (position, r) in Sqrt::<F>::new().roots(squares).into_iter().enumerate() {
        roots.push(canonical(r.ok_or(CompareError::NotSquare { position })?));
    }
    let zero: Vec<bool> = roots.iter().map(PrimeField::is_zero).collect();
    for r in roots.iter_mut().filter(|r| r.is_zero()) {
        *r = F::ONE;
    }
    batch_invert(&mut roots).expect("zeros replaced above");
    Ok(roots
        .into_iter()
        .zip(zero)
        .map(|(r, z)| (!z).then_some(r))
        .collect())
}

// ---- Random bits ---------------------------------------------------------------------------

/// This party's shares of `len` shared random bits (see the module docs): two rounds (a
/// degree reduction of `r * r` and the opening of `r^2`), more only where `r^2` was 0.
///
/// # Errors
/// The rounds' stops; [`CompareError::NotSquare`], [`CompareError::ZeroSquare`].
pub(crate) fn random_bits<F: PrimeField, R: Rounds<F>>(
    rounds: &mut R,
    len: usize,
) -> Result<Vec<F>, R::Stop> {
    if let Some(mut bits) = rounds.cached_bits(len) {
        rounds.tamper_bits(&mut bits);
        return Ok(bits);
    }
    let start = rounds.position();
    let half = F::from_u64(2).inverse().expect("p is odd");
    let mut out = vec![F::ZERO; len];
    let mut pending: Vec<usize> = (0..len).collect();
    let mut first: Option<Vec<F>> = None;
    for _ in 0..BIT_RETRIES {
        if pending.is_empty() {
            break;
        }
        let r = rounds.random(pending.len())?;
        let r2 = rounds.multiply(&r, &r)?;
        let squares = rounds.open(r2)?;
        let inv = rounds.inverse_roots(&squares)?;
        if first.is_none() {
            first = Some(squares);
        }
        let mut again = Vec::new();
        for ((pos, r), inv) in pending.iter().zip(&r).zip(inv) {
            match inv {
                Some(inv) => out[*pos] = (*r * inv + F::ONE) * half,
                None => again.push(*pos),
            }
        }
        pending = again;
    }
    if let Some(position) = pending.first() {
        return Err(CompareError::ZeroSquare {
            position: *position,
            retries: BIT_RETRIES,
        }
        .into());
    }
    if let (Some(squares), true) = (first, rounds.position() == start + 2) {
        rounds.keep_bits(start, &squares, &out);
    }
    rounds.tamper_bits(&mut out);
    Ok(out)
}

// ---- Bit circuits --------------------------------------------------------------------------

/// The AND of every group of `width` consecutive shared bits of `bits` (one result per group),
/// by a balanced tree of products: `ceil(log2 width)` rounds for all groups together.
pub(crate) fn and_groups<F: PrimeField, R: Rounds<F>>(
    rounds: &mut R,
    bits: Vec<F>,
    width: usize,
) -> Result<Vec<F>, R::Stop> {
    if width == 0 {
        return Ok(Vec::new());
    }
    let groups = bits.len() / width;
    let mut cur = bits;
    let mut w = width;
    while w > 1 {
        let pairs = w / 2;
        let mut a = Vec::with_capacity(groups * pairs);
        let mut b = Vec::with_capacity(groups * pairs);
        for g in cur.chunks_exact(w) {
            for j in 0..pairs {
                a.push(g[2 * j]);
                b.push(g[2 * j + 1]);
            }
        }
        let prod = rounds.multiply(&a, &b)?;
        let nw = w.div_ceil(2);
        let mut next = Vec::with_capacity(groups * nw);
        for (g, p) in cur.chunks_exact(w).zip(prod.chunks_exact(pairs)) {
            next.extend_from_slice(p);
            if w % 2 == 1 {
                next.push(g[w - 1]);
            }
        }
        cur = next;
        w = nw;
    }
    Ok(cur)
}

/// BitLT for every row: `[c_row < r_row]` where `c_row` is public (its `m` low bits given by
/// `c_bits(row, i)`) and `r_row`'s bits are shared (`r_bits[row * stride + i]`, `i < m`).
/// `1 - CarryOut(c, NOT r, 1)` by a tree of the carry operator (see the module docs).
pub(crate) fn bit_lt<F: PrimeField, R: Rounds<F>>(
    rounds: &mut R,
    c_bits: &dyn Fn(usize, usize) -> bool,
    r_bits: &[F],
    stride: usize,
    rows: usize,
    m: usize,
) -> Result<Vec<F>, R::Stop> {
    if m == 0 {
        return Ok(vec![F::ZERO; rows]);
    }
    // Segments (p, g), low bit first; segment 0 carries the carry-in and needs no p.
    let mut p = Vec::with_capacity(rows * m);
    let mut g = Vec::with_capacity(rows * m);
    for row in 0..rows {
        for i in 0..m {
            let b = r_bits[row * stride + i];
            let y = F::ONE - b; // NOT r_i
            let c = c_bits(row, i);
            // g = c AND y, p = c XOR y; with the carry-in, g_0 = c_0 OR y_0.
            let (pi, gi) = match (c, i == 0) {
                (true, false) => (b, y),
                (false, false) => (y, F::ZERO),
                (true, true) => (F::ZERO, F::ONE),
                (false, true) => (F::ZERO, y),
            };
            p.push(pi);
            g.push(gi);
        }
    }
    let mut w = m;
    while w > 1 {
        let pairs = w / 2;
        // Products: p_hi * g_lo for every pair, p_hi * p_lo unless the low segment is 0.
        let mut a = Vec::new();
        let mut b = Vec::new();
        for row in 0..rows {
            let (ps, gs) = (&p[row * w..(row + 1) * w], &g[row * w..(row + 1) * w]);
            for j in 0..pairs {
                a.push(ps[2 * j + 1]);
                b.push(gs[2 * j]);
                if j > 0 {
                    a.push(ps[2 * j + 1]);
                    b.push(ps[2 * j]);
                }
            }
        }
        let prod = rounds.multiply(&a, &b)?;
        let nw = w.div_ceil(2);
        let mut np = Vec::with_capacity(rows * nw);
        let mut ng = Vec::with_capacity(rows * nw);
        let per_row = 2 * pairs - 1;
        for row in 0..rows {
            let (ps, gs) = (&p[row * w..(row + 1) * w], &g[row * w..(row + 1) * w]);
            let pr = &prod[row * per_row..(row + 1) * per_row];
            let mut k = 0;
            for j in 0..pairs {
                ng.push(gs[2 * j + 1] + pr[k]);
                k += 1;
                if j > 0 {
                    np.push(pr[k]);
                    k += 1;
                } else {
                    np.push(F::ZERO);
                }
            }
            if w % 2 == 1 {
                np.push(ps[w - 1]);
                ng.push(gs[w - 1]);
            }
        }
        p = np;
        g = ng;
        w = nw;
    }
    Ok(g.into_iter().map(|carry| F::ONE - carry).collect())
}

/// The field element of the integer `l mod 2^m` (`l` little-endian limbs, `m <= 256`).
fn low_bits<F: PrimeField>(l: &[u64; 4], m: usize) -> F {
    let two_64 = F::from_u128(1 << 64);
    let mut acc = F::ZERO;
    for w in (0..4).rev() {
        let lo = w * 64;
        if lo >= m {
            continue;
        }
        let take = (m - lo).min(64);
        let word = if take == 64 {
            l[w]
        } else {
            l[w] & ((1u64 << take) - 1)
        };
        acc = acc * two_64 + F::from_u64(word);
    }
    acc
}

fn check_bits<F: PrimeField>(bits: u32) -> Result<(), CompareError> {
    let max = max_compare_bits::<F>();
    if bits == 0 || bits > max {
        return Err(CompareError::Bits { bits, max });
    }
    Ok(())
}

/// `sum_i 2^i bits[i]` for one row's bits.
fn compose<F: PrimeField>(bits: &[F]) -> F {
    let mut acc = F::ZERO;
    for b in bits.iter().rev() {
        acc = acc.double() + *b;
    }
    acc
}

/// The masked opening of every row: `c = 2^(k-1) + a + r' + 2^m r''` with
/// `r' = sum_i 2^i bits[row * m + i]` (`m` shared bits per row) and `r'' = high[row]`.
fn masked_opening<F: PrimeField, R: Rounds<F>>(
    rounds: &mut R,
    a: &[F],
    bits: &[F],
    high: &[F],
    m: usize,
    k: u32,
) -> Result<Vec<F>, R::Stop> {
    let shift = F::pow2(k - 1);
    let two_m = F::pow2(m as u32);
    let c: Vec<F> = (0..a.len())
        .map(|row| a[row] + shift + compose(&bits[row * m..(row + 1) * m]) + two_m * high[row])
        .collect();
    rounds.open(c)
}

/// The mask of every row (`m` random bits `r'`, then a PRSS random integer `r''` of
/// `high_bits`-bit terms) and the masked opening of `a` with it ([`masked_opening`]): the bits
/// (`m` per row) and the opened values.
fn mask_and_open<F: PrimeField, R: Rounds<F>>(
    rounds: &mut R,
    a: &[F],
    m: usize,
    k: u32,
    high_bits: u32,
) -> Result<(Vec<F>, Vec<F>), R::Stop> {
    let bits = random_bits(rounds, a.len() * m)?;
    let high = rounds.random_int(a.len(), high_bits)?;
    let c = masked_opening(rounds, a, &bits, &high, m, k)?;
    Ok((bits, c))
}

/// LTZ for every row: shares of `1` where `a < 0`, else `0`, for `a` a signed integer of at
/// most `k` bits (sign included). Catrina-de Hoogh LTZ via Mod2m (see the module docs):
/// `2 + 1 + ceil(log2 (k - 1))` rounds.
///
/// # Errors
/// [`CompareError::Bits`] outside `1..=max_compare_bits`; the rounds' stops.
pub(crate) fn ltz<F: PrimeField, R: Rounds<F>>(
    rounds: &mut R,
    a: &[F],
    k: u32,
) -> Result<Vec<F>, R::Stop> {
    check_bits::<F>(k)?;
    let rows = a.len();
    if rows == 0 {
        return Ok(Vec::new());
    }
    let m = (k - 1) as usize;
    let (bits, c) = mask_and_open(rounds, a, m, k, STATISTICAL_SECURITY_BITS + 1)?;
    // The public openings' integers, once (a secp256k1 scalar leaves Montgomery form here).
    let c_limbs: Vec<[u64; 4]> = c.iter().map(PrimeField::to_limbs).collect();
    let u = bit_lt(
        rounds,
        &|row, i| bit(&c_limbs[row], i as u32),
        &bits,
        m,
        rows,
        m,
    )?;
    let two_m = F::pow2(m as u32);
    let inv = two_m.inverse().expect("2^m is not 0");
    Ok((0..rows)
        .map(|row| {
            let c_low = low_bits::<F>(&c_limbs[row], m);
            let r_low = compose(&bits[row * m..(row + 1) * m]);
            let a_mod = c_low - r_low + two_m * u[row];
            (a_mod - a[row]) * inv
        })
        .collect())
}

/// EQZ for every row: shares of `1` where `a = 0`, else `0`, for `a` a signed integer of at
/// most `k` bits. Catrina-de Hoogh EQZ (see the module docs): `2 + 1 + ceil(log2 k)` rounds.
///
/// # Errors
/// [`CompareError::Bits`] outside `1..=max_compare_bits`; the rounds' stops.
pub(crate) fn eqz<F: PrimeField, R: Rounds<F>>(
    rounds: &mut R,
    a: &[F],
    k: u32,
) -> Result<Vec<F>, R::Stop> {
    check_bits::<F>(k)?;
    let rows = a.len();
    if rows == 0 {
        return Ok(Vec::new());
    }
    let (bits, c) = mask_and_open(rounds, a, k as usize, k, STATISTICAL_SECURITY_BITS)?;
    let k = k as usize;
    // Low k bits of c - 2^(k-1) (mod 2^k): those of c with bit k - 1 flipped.
    let mut eq = Vec::with_capacity(rows * k);
    for (row, c) in c.iter().enumerate() {
        let c = c.to_limbs();
        for i in 0..k {
            let w = bit(&c, i as u32) ^ (i == k - 1);
            let b = bits[row * k + i];
            // 1 - (w XOR b)
            eq.push(if w { b } else { F::ONE - b });
        }
    }
    and_groups(rounds, eq, k)
}

/// Opens shared bits to the committee and checks each is 0 or 1.
///
/// # Errors
/// [`CompareError::NotABit`]; the rounds' stops.
pub(crate) fn open_bits<F: PrimeField, R: Rounds<F>>(
    rounds: &mut R,
    bits: Vec<F>,
) -> Result<Vec<bool>, R::Stop> {
    let opened = rounds.open(bits)?;
    opened
        .iter()
        .enumerate()
        .map(|(position, b)| {
            if *b == F::ONE {
                Ok(true)
            } else if b.is_zero() {
                Ok(false)
            } else {
                Err(CompareError::NotABit { position }.into())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};

    fn roots<F: PrimeField>() {
        let sq = Sqrt::<F>::new();
        for v in 1u64..200 {
            let x = F::from_u64(v);
            let r = canonical_sqrt(x.square()).expect("a square has a root");
            assert_eq!(r.square(), x.square());
            assert_eq!(r.to_limbs()[0] & 1, 0, "the canonical root is even");
            assert!(r == x || r == -x);
            // Exactly one of x, -x is reported as the root of x^2 by both paths.
            assert_eq!(sq.root(x.square()).map(canonical), Some(r));
        }
        assert_eq!(canonical_sqrt(F::ZERO), Some(F::ZERO));
        // Half of the non-zero elements are non-residues.
        let non = (1u64..100)
            .filter(|v| canonical_sqrt(F::from_u64(*v)).is_none())
            .count();
        assert!(non > 20 && non < 80, "{non} non-residues below 100");
        assert!(matches!(
            inverse_roots(&[F::from_u64(4), F::ZERO]).unwrap()[..],
            [Some(_), None]
        ));
        // The lockstep exponentiations give each value's own root, whatever its lane: squares,
        // non-residues and 0 mixed, a length that is no multiple of the lanes.
        let mixed: Vec<F> = (0u64..203)
            .map(|v| match v % 3 {
                0 => F::from_u64(v * 7919 + 3).square(),
                1 => F::from_u64(v),
                _ => F::ZERO,
            })
            .collect();
        let one_by_one: Vec<Option<F>> = mixed.iter().map(|x| sq.root(*x)).collect();
        assert_eq!(sq.roots(&mixed), one_by_one);
        assert!(one_by_one.iter().any(Option::is_none));
        let squares: Vec<F> = mixed.iter().map(|x| x.square()).collect();
        let inv = inverse_roots(&squares).unwrap();
        for (x, i) in mixed.iter().zip(inv) {
            match i {
                None => assert!(x.is_zero()),
                Some(i) => assert_eq!(i.inverse().map(canonical), Some(canonical(*x))),
            }
        }
    }

    #[test]
    fn windowed_powers_match_square_and_multiply() {
        type F = Secp256k1Scalar;
        let x = F::from_u64(123_456_789);
        for e in [0u64, 1, 2, 15, 16, 255, 256, 0xdead_beef, u64::MAX] {
            assert_eq!(pow_limbs(x, &[e, 0, 0, 0]), x.pow_u64(e), "{e}");
        }
        // x^(2^64 + 3) = (x^(2^32))^(2^32) * x^3.
        let big = pow_limbs(x, &[3, 1, 0, 0]);
        assert_eq!(big, x.pow_u64(1 << 32).pow_u64(1 << 32) * x.pow_u64(3));
        // Fermat: x^(p - 1) = 1.
        assert_eq!(pow_limbs(x, &limbs_sub_one(F::MODULUS)), F::ONE);
        let y = Mersenne127::from_u64(77);
        assert_eq!(
            pow_limbs(y, &limbs_sub_one(Mersenne127::MODULUS)),
            Mersenne127::ONE
        );
    }

    #[test]
    fn low_bits_match_the_bits_one_by_one() {
        fn naive<F: PrimeField>(l: &[u64; 4], m: usize) -> F {
            (0..m).rev().fold(F::ZERO, |acc, i| {
                acc.double() + F::from_u64(u64::from(bit(l, i as u32)))
            })
        }
        let l = [0x8000_0000_0000_0001, u64::MAX, 0x1234_5678_9abc_def0, 7];
        for m in [0, 1, 2, 31, 63, 64, 65, 100, 127, 128, 129, 200, 255] {
            assert_eq!(
                low_bits::<Mersenne127>(&l, m.min(126)),
                naive::<Mersenne127>(&l, m.min(126)),
                "{m}"
            );
            assert_eq!(
                low_bits::<Secp256k1Scalar>(&l, m),
                naive::<Secp256k1Scalar>(&l, m),
                "{m}"
            );
        }
    }

    #[test]
    fn canonical_roots_in_both_fields() {
        roots::<Mersenne127>();
        roots::<Secp256k1Scalar>();
    }

    #[test]
    fn compare_bits_leave_room_for_the_mask() {
        assert_eq!(max_compare_bits::<Mersenne127>(), 77);
        assert_eq!(max_compare_bits::<Secp256k1Scalar>(), 205);
        // k + kappa + SET_BITS + 1 bits stay below log2(p).
        assert!(max_compare_bits::<Mersenne127>() + STATISTICAL_SECURITY_BITS + SET_BITS + 1 < 127);
        assert!(
            max_compare_bits::<Secp256k1Scalar>() + STATISTICAL_SECURITY_BITS + SET_BITS + 1 < 256
        );
        // Every committee the engine runs has fewer than 2^SET_BITS PRSS sets.
        for n in 3..=crate::mpc::prss::MAX_PARTIES {
            for t in 1..n.div_ceil(2) {
                let sets = crate::mpc::prss::key_sets(n, t).unwrap().len();
                assert!(sets < 1 << SET_BITS, "n {n} t {t}: {sets} sets");
            }
        }
        assert_eq!(
            check_bits::<Mersenne127>(0),
            Err(CompareError::Bits { bits: 0, max: 77 })
        );
        assert_eq!(
            check_bits::<Mersenne127>(78),
            Err(CompareError::Bits { bits: 78, max: 77 })
        );
        assert_eq!(check_bits::<Mersenne127>(77), Ok(()));
    }
}
