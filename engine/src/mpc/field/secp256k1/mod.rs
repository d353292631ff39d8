//! The secp256k1 scalar field (the group order `n` of secp256k1), backed by k256's `Scalar`.
//!
//! Multiplication and inversion are k256's; addition, subtraction and negation run on the
//! four 64-bit limbs here ([`add_limbs`], [`sub_limbs`]), inlined into the vector loops of the
//! engine (k256's own `add` is an out-of-line call through crypto-bigint's generic loops).
//! All of them are constant-time: no branch or index depends on a value. The inner product
//! ([`PrimeField::dot`]) runs with AVX-512 IFMA where the processor has it (`ifma`, five
//! 52-bit limbs), else on 64-bit limbs ([`Secp256k1Scalar::dot_scalar`]); both reduce once.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use k256::elliptic_curve::bigint::{Limb, U256, U512};
use k256::elliptic_curve::ff::PrimeField as _;
use k256::elliptic_curve::ops::Reduce;
use k256::elliptic_curve::scalar::FromUintUnchecked;
use k256::{FieldBytes, Scalar};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{serde_hex, FieldError, PrimeField};

#[cfg(target_arch = "x86_64")]
mod ifma;

/// An element of the secp256k1 scalar field.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Secp256k1Scalar(pub Scalar);

impl Secp256k1Scalar {
    /// The wrapped k256 scalar.
    #[inline]
    pub fn inner(&self) -> &Scalar {
        &self.0
    }

    /// The canonical integer as little-endian 64-bit limbs.
    #[inline(always)]
    fn limbs(&self) -> [u64; 4] {
        U256::from(&self.0).to_words()
    }

    /// The element whose canonical integer is `limbs` (little-endian), which must be below `n`.
    #[inline(always)]
    fn from_canonical(limbs: [u64; 4]) -> Self {
        Self(Scalar::from_uint_unchecked(U256::from_words(limbs)))
    }
}

/// The group order `n` as little-endian 64-bit limbs.
const N: [u64; 4] = <Secp256k1Scalar as PrimeField>::MODULUS;

/// 32 bytes as four little-endian 64-bit limbs.
#[inline(always)]
fn le_limbs(bytes: &[u8; 32]) -> [u64; 4] {
    let mut limbs = [0u64; 4];
    for (limb, b) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
        *limb = u64::from_le_bytes(b.try_into().expect("chunks of 8 bytes"));
    }
    limbs
}

/// `a + b` over four little-endian limbs, and the final carry (0 or 1).
#[inline(always)]
fn adc4(a: [u64; 4], b: [u64; 4]) -> ([u64; 4], u64) {
    let mut out = [0u64; 4];
    let mut carry = 0u64;
    for i in 0..4 {
        let (x, c1) = a[i].overflowing_add(b[i]);
        let (x, c2) = x.overflowing_add(carry);
        out[i] = x;
        carry = u64::from(c1 | c2);
    }
    (out, carry)
}

/// `a - b` over four little-endian limbs, and the final borrow (0 or 1).
#[inline(always)]
fn sbb4(a: [u64; 4], b: [u64; 4]) -> ([u64; 4], u64) {
    let mut out = [0u64; 4];
    let mut borrow = 0u64;
    for i in 0..4 {
        let (d, b1) = a[i].overflowing_sub(b[i]);
        let (d, b2) = d.overflowing_sub(borrow);
        out[i] = d;
        borrow = u64::from(b1 | b2);
    }
    (out, borrow)
}

/// `a + b mod n` for canonical `a, b < n`, in constant time: the sum (at most `2n - 2`, so
/// it may carry out of 256 bits) less `n` is kept unless that subtraction borrows without
/// the carry, selected by a mask rather than a branch.
#[inline(always)]
pub(crate) fn add_limbs(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    let (s, carry) = adc4(a, b);
    let (t, borrow) = sbb4(s, N);
    // Keep t = s - n when s >= n: the sum carried out, or the subtraction did not borrow.
    let keep_t = 0u64.wrapping_sub(carry | (borrow ^ 1));
    let mut out = [0u64; 4];
    for i in 0..4 {
        out[i] = (t[i] & keep_t) | (s[i] & !keep_t);
    }
    out
}

/// `a - b mod n` for canonical `a, b < n`, in constant time: `n` is added back (masked) when
/// the subtraction borrows.
#[inline(always)]
pub(crate) fn sub_limbs(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    let (d, borrow) = sbb4(a, b);
    let mask = 0u64.wrapping_sub(borrow);
    adc4(d, N.map(|limb| limb & mask)).0
}

impl fmt::Debug for Secp256k1Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secp256k1Scalar({})", self.to_hex())
    }
}

impl Hash for Secp256k1Scalar {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_bytes().hash(state);
    }
}

impl From<Scalar> for Secp256k1Scalar {
    fn from(s: Scalar) -> Self {
        Self(s)
    }
}

impl From<Secp256k1Scalar> for Scalar {
    fn from(s: Secp256k1Scalar) -> Self {
        s.0
    }
}

impl Add for Secp256k1Scalar {
    type Output = Self;
    #[inline(always)]
    fn add(self, rhs: Self) -> Self {
        Self::from_canonical(add_limbs(self.limbs(), rhs.limbs()))
    }
}

impl Sub for Secp256k1Scalar {
    type Output = Self;
    #[inline(always)]
    fn sub(self, rhs: Self) -> Self {
        Self::from_canonical(sub_limbs(self.limbs(), rhs.limbs()))
    }
}

impl Neg for Secp256k1Scalar {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Self::from_canonical(sub_limbs([0; 4], self.limbs()))
    }
}

impl Mul for Secp256k1Scalar {
    type Output = Self;
    #[inline(always)]
    fn mul(self, rhs: Self) -> Self {
        Self(self.0 * rhs.0)
    }
}

impl AddAssign for Secp256k1Scalar {
    #[inline(always)]
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl SubAssign for Secp256k1Scalar {
    #[inline(always)]
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}

impl MulAssign for Secp256k1Scalar {
    #[inline(always)]
    fn mul_assign(&mut self, rhs: Self) {
        self.0 *= rhs.0;
    }
}

impl Sum for Secp256k1Scalar {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self(Scalar::ZERO), |a, b| a + b)
    }
}

impl Serialize for Secp256k1Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_hex::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for Secp256k1Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_hex::deserialize(d)
    }
}

impl PrimeField for Secp256k1Scalar {
    const NAME: &'static str = "secp256k1";
    const ENCODED_LEN: usize = 32;
    const MODULUS_BITS: u32 = 256;
    const MAGNITUDE_LIMIT_BITS: u32 = 254;
    const MODULUS: [u64; 4] = [
        0xBFD2_5E8C_D036_4141,
        0xBAAE_DCE6_AF48_A03B,
        0xFFFF_FFFF_FFFF_FFFE,
        0xFFFF_FFFF_FFFF_FFFF,
    ];
    const ZERO: Self = Self(Scalar::ZERO);
    const ONE: Self = Self(Scalar::ONE);

    const UNIFORM_BYTES: usize = 48;

    type Repr = [u8; 32];

    #[inline]
    fn from_u64(v: u64) -> Self {
        Self(Scalar::from(v))
    }

    #[inline]
    fn from_u128(v: u128) -> Self {
        Self(Scalar::from(v))
    }

    #[inline]
    fn is_zero(&self) -> bool {
        // OR of the limbs, compared once (no early exit on a limb).
        self.limbs().iter().fold(0, |acc, limb| acc | limb) == 0
    }

    fn inverse(&self) -> Option<Self> {
        Option::from(self.0.invert()).map(Self)
    }

    #[inline]
    fn random<R: RngCore + ?Sized>(rng: &mut R) -> Self {
        // Rejection sampling on 256 bits (rejects with probability below 2^-127).
        loop {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            if let Some(s) = Self::from_limbs(le_limbs(&bytes)) {
                return s;
            }
        }
    }

    fn fill_random<R: RngCore + ?Sized>(rng: &mut R, out: &mut [Self]) {
        // 32 bytes per element, read as little-endian limbs; an integer at or above n
        // (probability below 2^-127) is redrawn alone.
        let mut buf = [0u8; 32 * 128];
        for chunk in out.chunks_mut(128) {
            let bytes = &mut buf[..32 * chunk.len()];
            rng.fill_bytes(bytes);
            for (v, b) in chunk.iter_mut().zip(bytes.chunks_exact(32)) {
                let b: &[u8; 32] = b.try_into().expect("chunks of 32 bytes");
                *v = Self::from_limbs(le_limbs(b)).unwrap_or_else(|| Self::random(rng));
            }
        }
    }

    fn from_uniform_bytes(bytes: &[u8; 64]) -> Self {
        Self(<Scalar as Reduce<U512>>::reduce(U512::from_be_slice(bytes)))
    }

    #[inline]
    fn to_repr(&self) -> [u8; 32] {
        // Big-endian: the most significant limb first.
        let mut out = [0u8; 32];
        for (bytes, limb) in out.chunks_exact_mut(8).zip(self.limbs().iter().rev()) {
            bytes.copy_from_slice(&limb.to_be_bytes());
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, FieldError> {
        if bytes.len() != 32 {
            return Err(FieldError::BadLength {
                got: bytes.len(),
                expected: 32,
            });
        }
        let mut repr = FieldBytes::default();
        repr.copy_from_slice(bytes);
        Option::<Scalar>::from(Scalar::from_repr(repr))
            .map(Self)
            .ok_or_else(|| FieldError::NonCanonical {
                field: Self::NAME,
                hex: hex::encode(bytes),
            })
    }

    #[inline]
    fn to_limbs(&self) -> [u64; 4] {
        self.limbs()
    }

    #[inline]
    fn from_limbs(limbs: [u64; 4]) -> Option<Self> {
        // Canonical iff limbs - n borrows; decided without a branch on the value.
        let (_, borrow) = sbb4(limbs, N);
        (borrow == 1).then(|| Self::from_canonical(limbs))
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

    #[inline]
    fn square(self) -> Self {
        Self(self.0.square())
    }
}

impl Secp256k1Scalar {
    /// Whether [`PrimeField::dot`] runs the AVX-512 IFMA inner product on this processor
    /// (else [`Secp256k1Scalar::dot_scalar`]).
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
        // Lazy reduction: accumulate the 512-bit products (carries counted above 2^512) and
        // reduce once. Short inputs (interpolation weights) multiply directly.
        if a.len().min(b.len()) < 8 {
            return a
                .iter()
                .zip(b)
                .fold(Self::ZERO, |acc, (x, y)| acc + *x * *y);
        }
        let mut lo = U256::ZERO;
        let mut hi = U256::ZERO;
        let mut top: u64 = 0;
        for (x, y) in a.iter().zip(b) {
            let (plo, phi) = U256::from(&x.0).mul_wide(&U256::from(&y.0));
            let (l, c) = lo.adc(&plo, Limb::ZERO);
            let (h, c) = hi.adc(&phi, c);
            lo = l;
            hi = h;
            top += c.0;
        }
        let wide = <Scalar as Reduce<U512>>::reduce(hi.concat(&lo));
        if top == 0 {
            return Self(wide);
        }
        // 2^512 mod n, as the square of 2^256 mod n.
        let two256 = <Scalar as Reduce<U256>>::reduce(U256::MAX) + Scalar::ONE;
        Self(wide + Scalar::from(top) * two256.square())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: k256's own constant-time arithmetic on the wrapped scalars.
    fn k256_ops(a: Scalar, b: Scalar) -> (Scalar, Scalar, Scalar) {
        (a + b, a - b, -a)
    }

    fn ours(a: Scalar, b: Scalar) -> (Scalar, Scalar, Scalar) {
        let (x, y) = (Secp256k1Scalar(a), Secp256k1Scalar(b));
        let mut acc = x;
        acc += y;
        let mut dec = x;
        dec -= y;
        assert_eq!(acc, x + y);
        assert_eq!(dec, x - y);
        ((x + y).0, (x - y).0, (-x).0)
    }

    fn edges() -> Vec<Scalar> {
        let m1 = -Scalar::ONE;
        let half = Scalar::from_uint_unchecked(U256::from_words(N).shr_vartime(1));
        vec![
            Scalar::ZERO,
            Scalar::ONE,
            Scalar::from(2u64),
            m1,
            m1 - Scalar::ONE,
            half,
            half + Scalar::ONE,
            Scalar::from(u64::MAX),
            Scalar::from(u128::MAX),
            // 2^255 and 2^256 - n - 1 (sums that carry out of 256 bits, or just reach n).
            Scalar::from_uint_unchecked(U256::ONE.shl_vartime(255)),
            Scalar::from_uint_unchecked(U256::MAX.wrapping_sub(&U256::from_words(N))),
        ]
    }

    #[test]
    fn limb_arithmetic_matches_k256_at_the_edges() {
        for a in edges() {
            for b in edges() {
                assert_eq!(ours(a, b), k256_ops(a, b), "a = {a:?}, b = {b:?}");
            }
        }
    }

    #[test]
    fn from_limbs_takes_exactly_the_integers_below_n() {
        let n = N;
        assert_eq!(Secp256k1Scalar::from_limbs(n), None);
        assert_eq!(Secp256k1Scalar::from_limbs([u64::MAX; 4]), None);
        let mut n1 = n;
        n1[0] += 1;
        assert_eq!(Secp256k1Scalar::from_limbs(n1), None);
        let mut below = n;
        below[0] -= 1;
        assert_eq!(
            Secp256k1Scalar::from_limbs(below),
            Some(-Secp256k1Scalar::ONE)
        );
        for a in edges() {
            let x = Secp256k1Scalar(a);
            assert_eq!(Secp256k1Scalar::from_limbs(x.to_limbs()), Some(x));
            // The limbs are the canonical big-endian encoding read as an integer.
            let be = a.to_bytes();
            let mut want = [0u64; 4];
            for (i, w) in want.iter_mut().enumerate() {
                *w = u64::from_be_bytes(be[32 - 8 * (i + 1)..32 - 8 * i].try_into().unwrap());
            }
            assert_eq!(x.to_limbs(), want);
            assert_eq!(
                x.to_repr(),
                <[u8; 32]>::from(be),
                "to_repr is k256's encoding"
            );
        }
    }

    proptest! {
        #[test]
        fn limb_arithmetic_matches_k256(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let a = <Scalar as Reduce<U256>>::reduce(U256::from_be_slice(&a));
            let b = <Scalar as Reduce<U256>>::reduce(U256::from_be_slice(&b));
            prop_assert_eq!(ours(a, b), k256_ops(a, b));
        }
    }
}
