//! Prime fields the engine computes in.
//!
//! Everything in [`crate::mpc`] is generic over [`PrimeField`], the way FROST's core is generic
//! over ciphersuites. Two fields are provided:
//!
//! - [`Secp256k1Scalar`]: the scalar field of secp256k1 (k256's `Scalar`), the default. Its
//!   arithmetic is constant-time (inherited from k256).
//! - [`Mersenne127`]: the Mersenne prime `p = 2^127 - 1`, plain `u128` arithmetic with the fast
//!   reduction `2^127 = 1 (mod p)`. It is **not** constant-time (branches on values); it is meant
//!   for datasets that choose speed, where the shares themselves are uniformly random.
//!
//! Besides the field operations the module gives batch inversion ([`batch_invert`]), hashing to
//! field elements ([`expand`], rejection-free wide reduction of a domain-separated ChaCha20
//! stream keyed by SHA-256) and canonical byte encodings that refuse non-canonical values.

use std::fmt::Debug;
use std::hash::Hash;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

#[cfg(target_arch = "x86_64")]
mod ifma;
mod m127;
mod secp256k1;

pub use m127::Mersenne127;
pub use secp256k1::Secp256k1Scalar;

/// Errors of field encodings and inversions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// An encoding had the wrong number of bytes.
    #[error("field element encoding has {got} bytes, expected {expected}")]
    BadLength {
        /// Bytes given.
        got: usize,
        /// Bytes expected ([`PrimeField::ENCODED_LEN`]).
        expected: usize,
    },
    /// An encoding was not the canonical one (the integer is not below the modulus).
    #[error("non-canonical field element encoding {hex} (not below the modulus of {field})")]
    NonCanonical {
        /// The field's name.
        field: &'static str,
        /// The offending bytes, hex.
        hex: String,
    },
    /// An encoding was not valid hexadecimal.
    #[error("field element is not valid hex: {0:?}")]
    BadHex(String),
    /// Zero has no inverse.
    #[error("element at index {index} is zero and has no inverse")]
    ZeroInverse {
        /// Position of the zero in the input.
        index: usize,
    },
}

/// A prime field usable by the MPC engine.
///
/// Elements are small `Copy` values. The canonical encoding ([`PrimeField::to_repr`]) is the
/// big-endian integer in `[0, p)` on [`PrimeField::ENCODED_LEN`] bytes; [`PrimeField::from_bytes`]
/// refuses anything else. Serde uses the same encoding as a lower-case hex string.
pub trait PrimeField:
    Copy
    + Clone
    + Debug
    + Default
    + PartialEq
    + Eq
    + Hash
    + Send
    + Sync
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + Serialize
    + DeserializeOwned
{
    /// Short name used in configuration, messages and reports (`secp256k1`, `m127`).
    const NAME: &'static str;
    /// Length of the canonical encoding in bytes.
    const ENCODED_LEN: usize;
    /// Bit length of the modulus.
    const MODULUS_BITS: u32;
    /// Range limit for signed fixed-point values: a worst-case magnitude needing this many bits
    /// or more is refused by the planner (254 for secp256k1, 126 for 2^127-1; that is
    /// log2(p) - 1 rounded down to the value fixed by PROTOCOL.md). Any magnitude below
    /// `2^(MAGNITUDE_LIMIT_BITS - 1)` is far below `p / 2`, so signs decode without ambiguity.
    const MAGNITUDE_LIMIT_BITS: u32;
    /// The modulus as little-endian 64-bit limbs.
    const MODULUS: [u64; 4];
    /// The additive identity.
    const ZERO: Self;
    /// The multiplicative identity.
    const ONE: Self;

    /// Canonical encoding type (a byte array of [`PrimeField::ENCODED_LEN`] bytes).
    type Repr: AsRef<[u8]> + AsMut<[u8]> + Default + Copy + Debug + Send + Sync;

    /// The element `v mod p`.
    fn from_u64(v: u64) -> Self;
    /// The element `v mod p`.
    fn from_u128(v: u128) -> Self;
    /// Whether this is zero.
    fn is_zero(&self) -> bool;
    /// The multiplicative inverse, `None` for zero.
    fn inverse(&self) -> Option<Self>;
    /// A uniformly random element.
    fn random<R: RngCore + ?Sized>(rng: &mut R) -> Self;
    /// Fills `out` with independent uniformly random elements (implementations draw the
    /// randomness in bulk).
    fn fill_random<R: RngCore + ?Sized>(rng: &mut R, out: &mut [Self]) {
        for v in out {
            *v = Self::random(rng);
        }
    }
    /// Bytes of uniform randomness whose reduction modulo `p` is within statistical distance
    /// `2^-128` of uniform (`log2(p) + 128` bits, rounded up to whole bytes): 48 for
    /// secp256k1, 32 for 2^127-1.
    const UNIFORM_BYTES: usize;
    /// Reduces 64 bytes (a big-endian integer) modulo `p`. With the last
    /// [`PrimeField::UNIFORM_BYTES`] bytes uniformly random and the others zero, the result is
    /// within statistical distance `2^-128` of uniform. Never rejects.
    fn from_uniform_bytes(bytes: &[u8; 64]) -> Self;
    /// The canonical encoding.
    fn to_repr(&self) -> Self::Repr;
    /// Parses a canonical encoding.
    ///
    /// # Errors
    /// [`FieldError::BadLength`] unless exactly [`PrimeField::ENCODED_LEN`] bytes are given;
    /// [`FieldError::NonCanonical`] if the integer is not below `p`.
    fn from_bytes(bytes: &[u8]) -> Result<Self, FieldError>;
    /// The canonical integer in `[0, p)` as little-endian 64-bit limbs.
    fn to_limbs(&self) -> [u64; 4];
    /// The element whose canonical integer has the little-endian 64-bit `limbs` (the inverse
    /// of [`PrimeField::to_limbs`]); `None` unless the integer is below `p`.
    fn from_limbs(limbs: [u64; 4]) -> Option<Self>;

    /// `self * k` for a small integer `k`.
    #[inline]
    fn mul_u64(self, k: u64) -> Self {
        self * Self::from_u64(k)
    }

    /// `self + self`.
    #[inline]
    fn double(self) -> Self {
        self + self
    }

    /// `self^2`.
    #[inline]
    fn square(self) -> Self {
        self * self
    }

    /// `self^e`.
    fn pow_u64(self, mut e: u64) -> Self {
        let mut base = self;
        let mut acc = Self::ONE;
        while e > 0 {
            if e & 1 == 1 {
                acc *= base;
            }
            base = base.square();
            e >>= 1;
        }
        acc
    }

    /// `2^k`.
    fn pow2(k: u32) -> Self {
        Self::from_u64(2).pow_u64(u64::from(k))
    }

    /// The element `v mod p` for a signed `v`.
    #[inline]
    fn from_i64(v: i64) -> Self {
        let m = Self::from_u64(v.unsigned_abs());
        if v < 0 {
            -m
        } else {
            m
        }
    }

    /// The element `v mod p` for a signed `v`.
    #[inline]
    fn from_i128(v: i128) -> Self {
        let m = Self::from_u128(v.unsigned_abs());
        if v < 0 {
            -m
        } else {
            m
        }
    }

    /// Sum of a slice (implementations may reduce lazily).
    fn sum_slice(values: &[Self]) -> Self {
        values.iter().copied().sum()
    }

    /// Inner product `sum a[i] * b[i]` over the common prefix of the two slices
    /// (implementations may reduce lazily).
    fn dot(a: &[Self], b: &[Self]) -> Self {
        a.iter()
            .zip(b)
            .fold(Self::ZERO, |acc, (x, y)| acc + *x * *y)
    }

    /// Lower-case hex of the canonical encoding.
    fn to_hex(&self) -> String {
        hex::encode(self.to_repr())
    }

    /// Parses lower- or upper-case hex of the canonical encoding.
    ///
    /// # Errors
    /// [`FieldError::BadHex`], or the errors of [`PrimeField::from_bytes`].
    fn from_hex(s: &str) -> Result<Self, FieldError> {
        let bytes = hex::decode(s).map_err(|_| FieldError::BadHex(s.to_owned()))?;
        Self::from_bytes(&bytes)
    }
}

/// Inverts every element in place with one field inversion (Montgomery's trick).
///
/// # Errors
/// [`FieldError::ZeroInverse`] naming the first zero; the slice is then left unchanged.
pub fn batch_invert<F: PrimeField>(values: &mut [F]) -> Result<(), FieldError> {
    if let Some(index) = values.iter().position(PrimeField::is_zero) {
        return Err(FieldError::ZeroInverse { index });
    }
    let mut prefix = Vec::with_capacity(values.len());
    let mut acc = F::ONE;
    for v in values.iter() {
        prefix.push(acc);
        acc *= *v;
    }
    let mut inv = acc
        .inverse()
        .expect("a product of non-zero elements of a field is non-zero");
    for (v, before) in values.iter_mut().zip(prefix).rev() {
        let next = inv * *v;
        *v = inv * before;
        inv = next;
    }
    Ok(())
}

/// Domain tag that keys every [`expand`] stream.
pub const EXPAND_TAG: &[u8] = b"btcmpc/v1/expand";

/// A deterministic stream of field elements derived from a 32-byte seed and a domain tag.
///
/// The ChaCha20 key is `SHA256(EXPAND_TAG || u64_be(len(domain)) || domain || seed)`; each
/// element is the wide reduction ([`PrimeField::from_uniform_bytes`]) of the next
/// [`PrimeField::UNIFORM_BYTES`] bytes of the ChaCha20 keystream (a big-endian integer), so no
/// value is rejected and every party derives the same sequence.
#[derive(Debug, Clone)]
pub struct Expander {
    rng: ChaCha20Rng,
}

impl Expander {
    /// Starts the stream for `(domain, seed)`.
    pub fn new(domain: &[u8], seed: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(EXPAND_TAG);
        h.update((domain.len() as u64).to_be_bytes());
        h.update(domain);
        h.update(seed);
        let key: [u8; 32] = h.finalize().into();
        Self {
            rng: ChaCha20Rng::from_seed(key),
        }
    }

    /// The next element of the stream.
    #[inline]
    pub fn next_element<F: PrimeField>(&mut self) -> F {
        let mut buf = [0u8; 64];
        self.rng.fill_bytes(&mut buf[64 - F::UNIFORM_BYTES..]);
        F::from_uniform_bytes(&buf)
    }
}

/// The first `count` elements of the stream of [`Expander::new`]`(domain, seed)`.
pub fn expand<F: PrimeField>(domain: &[u8], seed: &[u8; 32], count: usize) -> Vec<F> {
    let mut e = Expander::new(domain, seed);
    (0..count).map(|_| e.next_element()).collect()
}

/// Serde helpers shared by the field implementations (hex strings of the canonical encoding).
pub(crate) mod serde_hex {
    use super::PrimeField;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<F: PrimeField, S: Serializer>(v: &F, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_hex())
    }

    pub(crate) fn deserialize<'de, F: PrimeField, D: Deserializer<'de>>(
        d: D,
    ) -> Result<F, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        F::from_hex(&s).map_err(D::Error::custom)
    }
}

/// The checks both vectorized inner products run against the textbook one (one reduced
/// product and one reduced sum per pair), shared by `m127::ifma` and `secp256k1::ifma`.
#[cfg(test)]
pub(crate) mod dot_checks {
    use super::PrimeField;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The textbook inner product over the common prefix.
    pub(crate) fn naive<F: PrimeField>(a: &[F], b: &[F]) -> F {
        a.iter().zip(b).fold(F::ZERO, |s, (x, y)| s + *x * *y)
    }

    /// For each pair of vectors (each at least `3 * block + 17` long) and every length around
    /// the vector width (8) and the lane-emptying `block`: [`PrimeField::dot`] and `scalar`
    /// equal the naive inner product, and `vector` (the vector loop alone) equals it over the
    /// first `8 * floor(len / 8)` pairs. Then slices of different lengths (the common prefix)
    /// and offset starts, on the first pair.
    pub(crate) fn lengths<F: PrimeField>(
        block: usize,
        pairs: &[(&[F], &[F])],
        vector: impl Fn(&[F], &[F]) -> Option<F>,
        scalar: impl Fn(&[F], &[F]) -> F,
    ) {
        let len = 3 * block + 17;
        for n in [
            0,
            1,
            7,
            8,
            9,
            15,
            16,
            block - 8,
            block - 1,
            block,
            block + 1,
            block + 8,
            2 * block,
            len,
        ] {
            for (x, y) in pairs {
                let want = naive(&x[..n], &y[..n]);
                assert_eq!(F::dot(&x[..n], &y[..n]), want, "dot, length {n}");
                assert_eq!(scalar(&x[..n], &y[..n]), want, "scalar, length {n}");
                let head = n / 8 * 8;
                assert_eq!(
                    vector(&x[..n], &y[..n]),
                    Some(naive(&x[..head], &y[..head])),
                    "vector part, length {n}"
                );
            }
        }
        let (a, b) = pairs[0];
        assert_eq!(F::dot(&a[..100], &b[..37]), naive(&a[..37], &b[..37]));
        assert_eq!(
            F::dot(&a[3..1003], &b[5..1005]),
            naive(&a[3..1003], &b[5..1005])
        );
    }

    /// `len` copies of `x` dotted with themselves equal `x^2 len`. With `x` the value whose
    /// limb products all lie within `2^27` of `2^52` (every 52-bit limb `2^52 - 2^26 + 1`),
    /// each column of the vector loop fills as fast as it can, so a lane-emptying interval
    /// longer than the lanes can hold overflows and this fails (the interval's bound is
    /// tested here, not derived from the constant).
    pub(crate) fn worst_case<F: PrimeField>(x: F, len: usize) {
        let v = vec![x; len];
        assert_eq!(
            F::dot(&v, &v),
            x * x * F::from_u64(len as u64),
            "length {len}"
        );
    }

    /// The 52-bit limb whose products with itself have both halves within `2^27` of `2^52`.
    pub(crate) const FULL_LIMB: u64 = (1 << 52) - (1 << 26) + 1;

    /// `seeds` seeds of vectors drawn by `edgy`: every length 0..=40 and around two blocks
    /// and one random length, offsets in both slices, a longer second slice, both orders; then
    /// slices of `top` (whose square is 1) up to ten blocks long sum to their length.
    pub(crate) fn random_seeds<F: PrimeField>(
        block: usize,
        seeds: u64,
        edgy: impl Fn(&mut StdRng) -> F,
        top: F,
    ) {
        assert_eq!(top * top, F::ONE, "top squares to 1");
        let mut rng = StdRng::seed_from_u64(99);
        let len = 2 * block + 64;
        for seed in 0..seeds {
            let mut r = StdRng::seed_from_u64(seed);
            let a: Vec<F> = (0..len).map(|_| edgy(&mut r)).collect();
            let b: Vec<F> = (0..len).map(|_| edgy(&mut r)).collect();
            let mut lengths: Vec<usize> = (0..=40).collect();
            lengths.extend([block - 9, block - 7, block + 7, block + 9, 2 * block - 1]);
            lengths.push(rng.gen_range(0..len - 8));
            for n in lengths {
                let (oa, ob) = (rng.gen_range(0..8), rng.gen_range(0..8));
                let extra = rng.gen_range(0..8);
                let x = &a[oa..oa + n];
                let y = &b[ob..ob + n + extra];
                let want = naive(x, &y[..n]);
                assert_eq!(F::dot(x, y), want, "seed {seed} length {n}");
                assert_eq!(F::dot(y, x), want, "seed {seed} length {n}, swapped");
            }
        }
        let top = vec![top; 10 * block + 11];
        for n in [block, 3 * block, 10 * block + 11] {
            assert_eq!(F::dot(&top[..n], &top[..n]), F::from_u64(n as u64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;

    fn laws<F: PrimeField>(seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..200 {
            let a = F::random(&mut rng);
            let b = F::random(&mut rng);
            let c = F::random(&mut rng);
            assert_eq!(a + b, b + a);
            assert_eq!(a * b, b * a);
            assert_eq!((a + b) * c, a * c + b * c);
            assert_eq!((a * b) * c, a * (b * c));
            assert_eq!(a + b - b, a);
            assert_eq!(a + (-a), F::ZERO);
            assert_eq!(a.mul_u64(5), a * F::from_u64(5));
            assert_eq!(a.double(), a + a);
            if !a.is_zero() {
                assert_eq!(a * a.inverse().unwrap(), F::ONE);
            }
            let bytes = a.to_repr();
            assert_eq!(F::from_bytes(bytes.as_ref()).unwrap(), a);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<F>(&json).unwrap(), a);
        }
        assert!(F::ZERO.inverse().is_none());
        assert_eq!(F::from_i64(-3) + F::from_u64(3), F::ZERO);
        assert_eq!(F::from_i128(-(1 << 100)), -F::pow2(100));
        assert_eq!(F::pow2(70), F::from_u128(1 << 70));
        assert_eq!(F::from_u64(7).pow_u64(3), F::from_u64(343));
    }

    fn refuses_non_canonical<F: PrimeField>() {
        // p itself, big-endian.
        let mut bytes = vec![0u8; F::ENCODED_LEN];
        for (i, limb) in F::MODULUS.iter().enumerate() {
            for k in 0..8 {
                let pos = i * 8 + k;
                if pos < F::ENCODED_LEN {
                    bytes[F::ENCODED_LEN - 1 - pos] = (limb >> (8 * k)) as u8;
                }
            }
        }
        assert!(matches!(
            F::from_bytes(&bytes),
            Err(FieldError::NonCanonical { .. })
        ));
        // p - 1 is canonical and equals -1.
        let mut pm1 = bytes.clone();
        pm1[F::ENCODED_LEN - 1] -= 1;
        assert_eq!(F::from_bytes(&pm1).unwrap(), -F::ONE);
        assert!(matches!(
            F::from_bytes(&[0xff; 64]),
            Err(FieldError::BadLength { got: 64, .. })
        ));
        assert!(F::from_hex("zz").is_err());
        let all_ff = "ff".repeat(F::ENCODED_LEN);
        assert!(serde_json::from_str::<F>(&format!("\"{all_ff}\"")).is_err());
    }

    fn limbs_match<F: PrimeField>() {
        let x = F::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        assert_eq!(
            x.to_limbs(),
            [0x0011_2233_4455_6677, 0x0123_4567_89ab_cdef, 0, 0]
        );
        let m1 = (-F::ONE).to_limbs();
        let mut p = F::MODULUS;
        p[0] -= 1;
        assert_eq!(m1, p);
    }

    fn batch<F: PrimeField>() {
        let mut rng = StdRng::seed_from_u64(9);
        let vals: Vec<F> = (0..37).map(|_| F::random(&mut rng)).collect();
        let mut inv = vals.clone();
        batch_invert(&mut inv).unwrap();
        for (v, i) in vals.iter().zip(&inv) {
            assert_eq!(*v * *i, F::ONE);
        }
        let mut with_zero = vals.clone();
        with_zero[5] = F::ZERO;
        assert_eq!(
            batch_invert(&mut with_zero),
            Err(FieldError::ZeroInverse { index: 5 })
        );
        let a: Vec<F> = (0..1000).map(|_| F::random(&mut rng)).collect();
        let b: Vec<F> = (0..1000).map(|_| F::random(&mut rng)).collect();
        let naive = a.iter().zip(&b).fold(F::ZERO, |s, (x, y)| s + *x * *y);
        assert_eq!(F::dot(&a, &b), naive);
        let naive_sum = a.iter().fold(F::ZERO, |s, x| s + *x);
        assert_eq!(F::sum_slice(&a), naive_sum);
        let minus_ones = vec![-F::ONE; 5000];
        assert_eq!(F::sum_slice(&minus_ones), F::from_i64(-5000));
        assert_eq!(F::dot(&minus_ones, &minus_ones), F::from_u64(5000));
        let short = a[..3]
            .iter()
            .zip(&b[..3])
            .fold(F::ZERO, |s, (x, y)| s + *x * *y);
        assert_eq!(F::dot(&a[..3], &b[..3]), short);
        let small: Vec<F> = (1..=20).map(F::from_u64).collect();
        assert_eq!(F::dot(&small, &small), F::from_u64(2870));
        // Every length around the direct path's bound, and long vectors of the largest
        // element (every limb product at its maximum: the column sums' carries).
        for len in 6..40 {
            let short = a[..len]
                .iter()
                .zip(&b[..len])
                .fold(F::ZERO, |s, (x, y)| s + *x * *y);
            assert_eq!(F::dot(&a[..len], &b[..len]), short, "length {len}");
        }
        let long = vec![-F::ONE; 300_007];
        assert_eq!(F::dot(&long, &long), F::from_u64(300_007));
        let mixed: Vec<F> = long
            .iter()
            .zip(a.iter().cycle())
            .map(|(m, x)| *m + *x)
            .collect();
        let naive = mixed
            .iter()
            .zip(&long)
            .fold(F::ZERO, |s, (x, y)| s + *x * *y);
        assert_eq!(F::dot(&mixed, &long), naive);
    }

    fn expand_is_deterministic<F: PrimeField>() {
        let s = [7u8; 32];
        let a: Vec<F> = expand(b"test", &s, 10);
        let b: Vec<F> = expand(b"test", &s, 10);
        let c: Vec<F> = expand(b"other", &s, 10);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a[0], a[1]);
    }

    #[test]
    fn secp256k1_field() {
        laws::<Secp256k1Scalar>(1);
        refuses_non_canonical::<Secp256k1Scalar>();
        limbs_match::<Secp256k1Scalar>();
        batch::<Secp256k1Scalar>();
        expand_is_deterministic::<Secp256k1Scalar>();
    }

    #[test]
    fn m127_field() {
        laws::<Mersenne127>(2);
        refuses_non_canonical::<Mersenne127>();
        limbs_match::<Mersenne127>();
        batch::<Mersenne127>();
        expand_is_deterministic::<Mersenne127>();
    }

    #[test]
    fn expand_frozen_vector() {
        // Frozen: a change of the derivation changes every challenge of every store check.
        let v: Vec<Secp256k1Scalar> = expand(b"btcmpc/v1/store-check", &[0u8; 32], 1);
        let w: Vec<Mersenne127> = expand(b"btcmpc/v1/store-check", &[0u8; 32], 1);
        assert_eq!(v[0].to_hex(), EXPECT_SECP);
        assert_eq!(w[0].to_hex(), EXPECT_M127);
    }
    // Computed independently (Python: hashlib + the `cryptography` package's ChaCha20).
    const EXPECT_SECP: &str = "9421bd8d755ade894da22090db0fd3bf28baf9053a74d97f8edb97a0aadb119a";
    const EXPECT_M127: &str = "0d215445c2f01ee5c48de94c26ca126a";

    proptest! {
        #[test]
        fn m127_matches_big_integer(a in 0u128..Mersenne127::P, b in 0u128..Mersenne127::P) {
            // Oracle: schoolbook with 64-bit halves via the secp256k1-independent path of
            // repeated doubling.
            let x = Mersenne127::from_u128(a);
            let y = Mersenne127::from_u128(b);
            let mut acc = 0u128;
            let mut base = a;
            let mut e = b;
            while e > 0 {
                if e & 1 == 1 {
                    acc = (acc + base) % Mersenne127::P;
                }
                base = (base + base) % Mersenne127::P;
                e >>= 1;
            }
            prop_assert_eq!((x * y).value(), acc);
            prop_assert_eq!((x + y).value(), (a + b) % Mersenne127::P);
            prop_assert_eq!((x - y).value(), (a + Mersenne127::P - b) % Mersenne127::P);
            // The dedicated squaring against the product.
            prop_assert_eq!(x.square(), x * x);
            prop_assert_eq!(y.square(), y * y);
        }

        #[test]
        fn uniform_bytes_reduce_like_integers(hi in any::<u128>(), lo in any::<u128>()) {
            // A 64-byte input whose top 32 bytes are zero is the 256-bit integer hi*2^128+lo.
            let mut buf = [0u8; 64];
            buf[32..48].copy_from_slice(&hi.to_be_bytes());
            buf[48..].copy_from_slice(&lo.to_be_bytes());
            let m = Mersenne127::from_uniform_bytes(&buf);
            let expect = Mersenne127::from_u128(hi) * Mersenne127::pow2(128) + Mersenne127::from_u128(lo);
            prop_assert_eq!(m, expect);
            let s = Secp256k1Scalar::from_uniform_bytes(&buf);
            let expect = Secp256k1Scalar::from_u128(hi) * Secp256k1Scalar::pow2(128) + Secp256k1Scalar::from_u128(lo);
            prop_assert_eq!(s, expect);
        }
    }
}
