//! The Mersenne prime field `p = 2^127 - 1` on `u128`.
//!
//! Reduction uses `2^127 = 1 (mod p)`: a product of two canonical elements is below `2^254`, so
//! its high and low 127-bit halves add up to less than `2^128` and one conditional subtraction
//! finishes. Not constant-time.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{serde_hex, FieldError, PrimeField};

#[cfg(target_arch = "x86_64")]
mod ifma;

/// An element of the field of integers modulo `2^127 - 1`, always canonical (`< p`).
/// `repr(transparent)`: a slice of elements is a slice of `u128` (the AVX-512 inner product
/// loads it so).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Mersenne127(u128);

impl Mersenne127 {
    /// The modulus `2^127 - 1`.
    pub const P: u128 = (1u128 << 127) - 1;

    /// The canonical integer in `[0, p)`.
    #[inline]
    pub const fn value(self) -> u128 {
        self.0
    }

    /// The element `v mod p` (const-friendly form of [`PrimeField::from_u128`]).
    #[inline]
    pub const fn new(v: u128) -> Self {
        Self(reduce_once(v))
    }
}

/// `x mod p` for any `x < 2^128`.
#[inline(always)]
const fn reduce_once(x: u128) -> u128 {
    let r = (x & Mersenne127::P) + (x >> 127);
    if r >= Mersenne127::P {
        r - Mersenne127::P
    } else {
        r
    }
}

/// `a * b` folded to a value below `2^128` congruent to the product (not yet canonical).
/// Requires `a, b < 2^127`.
#[inline(always)]
fn mul_fold(a: u128, b: u128) -> u128 {
    let a0 = a as u64 as u128;
    let a1 = a >> 64;
    let b0 = b as u64 as u128;
    let b1 = b >> 64;
    // No product overflows (a0, b0 < 2^64; a1, b1 < 2^63): `wrapping_mul` says so to the
    // compiler, so builds with overflow checks do not call the checked 128-bit multiplication
    // (a library call, ten times the cost of the product) on this hot path.
    let p00 = a0.wrapping_mul(b0);
    let mid = a0.wrapping_mul(b1) + a1.wrapping_mul(b0); // each term < 2^127
    let p11 = a1.wrapping_mul(b1);
    let (lo, carry) = p00.overflowing_add(mid << 64);
    let hi = p11 + (mid >> 64) + u128::from(carry);
    // x = hi * 2^128 + lo < 2^254; x >> 127 and x & p are each below 2^127.
    ((hi << 1) | (lo >> 127)) + (lo & Mersenne127::P)
}

/// `a^2` folded like [`mul_fold`], with three partial products instead of four (the middle
/// term `2 a0 a1` is below `2^128` as `a1 < 2^63`). Requires `a < 2^127`.
#[inline(always)]
fn square_fold(a: u128) -> u128 {
    let a0 = a as u64 as u128;
    let a1 = a >> 64;
    let p00 = a0.wrapping_mul(a0);
    let mid = a0.wrapping_mul(a1) << 1;
    let p11 = a1.wrapping_mul(a1);
    let (lo, carry) = p00.overflowing_add(mid << 64);
    let hi = p11 + (mid >> 64) + u128::from(carry);
    ((hi << 1) | (lo >> 127)) + (lo & Mersenne127::P)
}

impl fmt::Debug for Mersenne127 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mersenne127({:#x})", self.0)
    }
}

impl fmt::Display for Mersenne127 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Add for Mersenne127 {
    type Output = Self;
    #[inline(always)]
    fn add(self, rhs: Self) -> Self {
        let s = self.0 + rhs.0;
        Self(if s >= Self::P { s - Self::P } else { s })
    }
}

impl Sub for Mersenne127 {
    type Output = Self;
    #[inline(always)]
    fn sub(self, rhs: Self) -> Self {
        let (d, borrow) = self.0.overflowing_sub(rhs.0);
        Self(if borrow { d.wrapping_add(Self::P) } else { d })
    }
}

impl Neg for Mersenne127 {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Self(if self.0 == 0 { 0 } else { Self::P - self.0 })
    }
}

impl Mul for Mersenne127 {
    type Output = Self;
    #[inline(always)]
    fn mul(self, rhs: Self) -> Self {
        Self(reduce_once(mul_fold(self.0, rhs.0)))
    }
}

impl AddAssign for Mersenne127 {
    #[inline(always)]
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl SubAssign for Mersenne127 {
    #[inline(always)]
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}

impl MulAssign for Mersenne127 {
    #[inline(always)]
    fn mul_assign(&mut self, rhs: Self) {
        *self = *self * rhs;
    }
}

impl Sum for Mersenne127 {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self(0), |a, b| a + b)
    }
}

impl Serialize for Mersenne127 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_hex::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for Mersenne127 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_hex::deserialize(d)
    }
}

/// Accumulator for lazily reduced sums: value = `hi * 2^128 + lo`.
#[derive(Default)]
struct Wide {
    lo: u128,
    hi: u64,
}

impl Wide {
    #[inline(always)]
    fn add(&mut self, x: u128) {
        let (lo, c) = self.lo.overflowing_add(x);
        self.lo = lo;
        self.hi += u64::from(c);
    }

    fn finish(self) -> Mersenne127 {
        // 2^128 = 2 (mod p).
        Mersenne127::new(self.lo) + Mersenne127::new(u128::from(self.hi) << 1)
    }
}

impl PrimeField for Mersenne127 {
    const NAME: &'static str = "m127";
    const ENCODED_LEN: usize = 16;
    const MODULUS_BITS: u32 = 127;
    const MAGNITUDE_LIMIT_BITS: u32 = 126;
    const MODULUS: [u64; 4] = [u64::MAX, (1u64 << 63) - 1, 0, 0];
    const ZERO: Self = Self(0);
    const ONE: Self = Self(1);

    const UNIFORM_BYTES: usize = 32;

    type Repr = [u8; 16];

    #[inline]
    fn from_u64(v: u64) -> Self {
        Self(u128::from(v))
    }

    #[inline]
    fn from_u128(v: u128) -> Self {
        Self::new(v)
    }

    #[inline]
    fn is_zero(&self) -> bool {
        self.0 == 0
    }

    fn inverse(&self) -> Option<Self> {
        if self.0 == 0 {
            return None;
        }
        // Fermat: a^(p-2).
        let mut base = *self;
        let mut acc = Self::ONE;
        let mut e = Self::P - 2;
        while e > 0 {
            if e & 1 == 1 {
                acc *= base;
            }
            base *= base;
            e >>= 1;
        }
        Some(acc)
    }

    #[inline]
    fn random<R: RngCore + ?Sized>(rng: &mut R) -> Self {
        // Rejection sampling on 127 bits: accepts unless the draw equals p (probability 2^-127).
        loop {
            let v = (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) & Self::P;
            if v != Self::P {
                return Self(v);
            }
        }
    }

    fn fill_random<R: RngCore + ?Sized>(rng: &mut R, out: &mut [Self]) {
        let mut buf = [0u8; 16 * 256];
        for chunk in out.chunks_mut(256) {
            let bytes = &mut buf[..16 * chunk.len()];
            rng.fill_bytes(bytes);
            for (v, b) in chunk.iter_mut().zip(bytes.chunks_exact(16)) {
                let x = u128::from_le_bytes(b.try_into().expect("16 bytes")) & Self::P;
                // x = p has probability 2^-127; redraw it alone.
                *v = if x == Self::P {
                    Self::random(rng)
                } else {
                    Self(x)
                };
            }
        }
    }

    fn from_uniform_bytes(bytes: &[u8; 64]) -> Self {
        // Big-endian 512-bit integer = sum L_k 2^(128 k); 2^128 = 2 (mod p).
        let mut acc = Self(0);
        for chunk in bytes.chunks_exact(16) {
            let limb = u128::from_be_bytes(chunk.try_into().expect("chunks of 16 bytes"));
            acc = acc.double() + Self::new(limb);
        }
        acc
    }

    #[inline]
    fn to_repr(&self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, FieldError> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| FieldError::BadLength {
            got: bytes.len(),
            expected: 16,
        })?;
        let v = u128::from_be_bytes(arr);
        if v >= Self::P {
            return Err(FieldError::NonCanonical {
                field: Self::NAME,
                hex: hex::encode(bytes),
            });
        }
        Ok(Self(v))
    }

    #[inline]
    fn to_limbs(&self) -> [u64; 4] {
        [self.0 as u64, (self.0 >> 64) as u64, 0, 0]
    }

    #[inline]
    fn from_limbs(limbs: [u64; 4]) -> Option<Self> {
        let v = u128::from(limbs[0]) | (u128::from(limbs[1]) << 64);
        (limbs[2] == 0 && limbs[3] == 0 && v < Self::P).then_some(Self(v))
    }

    #[inline]
    fn square(self) -> Self {
        Self(reduce_once(square_fold(self.0)))
    }

    #[inline]
    fn mul_u64(self, k: u64) -> Self {
        // self < 2^127, k < 2^64: the product is below 2^191; fold twice.
        // No overflow (see `mul_fold` for why the products are wrapping).
        let lo = (self.0 as u64 as u128).wrapping_mul(u128::from(k));
        let hi = (self.0 >> 64).wrapping_mul(u128::from(k)); // < 2^127
                                                             // x = hi * 2^64 + lo.
        let (low, c) = lo.overflowing_add(hi << 64);
        let high = (hi >> 64) + u128::from(c); // x = high * 2^128 + low, high < 2^63
        let r = ((high << 1) | (low >> 127)) + (low & Self::P);
        Self(reduce_once(r))
    }

    fn sum_slice(values: &[Self]) -> Self {
        let mut acc = Wide::default();
        for v in values {
            acc.add(v.0);
        }
        acc.finish()
    }

    fn dot(a: &[Self], b: &[Self]) -> Self {
        let n = a.len().min(b.len());
        #[cfg(target_arch = "x86_64")]
        if n >= 8 {
            if let Some(head) = ifma::dot(&a[..n], &b[..n]) {
                let done = n / 8 * 8;
                return head + Self::dot_scalar(&a[done..n], &b[done..n]);
            }
        }
        Self::dot_scalar(&a[..n], &b[..n])
    }
}

impl Mersenne127 {
    /// Whether [`PrimeField::dot`] runs the AVX-512 IFMA inner product on this processor
    /// (else [`Mersenne127::dot_scalar`]).
    pub fn dot_is_vectorized() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            ifma::available()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// The portable inner product `sum a[i] * b[i]` over the common prefix of the slices
    /// (64-bit limbs, lazy reduction): what [`PrimeField::dot`] runs without AVX-512 IFMA.
    pub fn dot_scalar(a: &[Self], b: &[Self]) -> Self {
        // Lazy reduction: with x = x1 2^64 + x0, sum the partial products x0 y0, x0 y1 + x1 y0
        // and x1 y1 in three 128-bit accumulators (carries counted) and fold once at the end.
        let (mut s0, mut s1, mut s2) = (Wide::default(), Wide::default(), Wide::default());
        for (x, y) in a.iter().zip(b) {
            let (x0, x1) = (x.0 as u64 as u128, x.0 >> 64);
            let (y0, y1) = (y.0 as u64 as u128, y.0 >> 64);
            // No overflow (x1, y1 < 2^63); wrapping as in `mul_fold`.
            s0.add(x0.wrapping_mul(y0));
            s1.add(x0.wrapping_mul(y1) + x1.wrapping_mul(y0));
            s2.add(x1.wrapping_mul(y1));
        }
        // total = s0 + s1 2^64 + s2 2^128, and 2^128 = 2 (mod p).
        s0.finish() + s1.finish().mul_u64(1 << 32).mul_u64(1 << 32) + s2.finish().double()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_values() {
        let m1 = Mersenne127::new(Mersenne127::P - 1);
        assert_eq!(m1 * m1, Mersenne127::ONE);
        assert_eq!(m1 + Mersenne127::ONE, Mersenne127::ZERO);
        assert_eq!(Mersenne127::new(Mersenne127::P), Mersenne127::ZERO);
        assert_eq!(Mersenne127::new(u128::MAX), Mersenne127::ONE);
        assert_eq!(m1.mul_u64(u64::MAX), -Mersenne127::from_u64(u64::MAX));
        assert_eq!(
            Mersenne127::from_uniform_bytes(&[0xff; 64]),
            // 2^512 - 1 = (2^127)^4 * 2^4 - 1 = 16 - 1 (mod p)
            Mersenne127::from_u64(15)
        );
    }
}
