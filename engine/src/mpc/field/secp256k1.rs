//! The secp256k1 scalar field (the group order `n` of secp256k1), backed by k256's `Scalar`.
//!
//! Arithmetic is k256's, constant-time.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use k256::elliptic_curve::bigint::{Limb, U256, U512};
use k256::elliptic_curve::ff::PrimeField as _;
use k256::elliptic_curve::ops::Reduce;
use k256::{FieldBytes, Scalar};
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{serde_hex, FieldError, PrimeField};

/// An element of the secp256k1 scalar field.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Secp256k1Scalar(pub Scalar);

impl Secp256k1Scalar {
    /// The wrapped k256 scalar.
    #[inline]
    pub fn inner(&self) -> &Scalar {
        &self.0
    }
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
        Self(self.0 + rhs.0)
    }
}

impl Sub for Secp256k1Scalar {
    type Output = Self;
    #[inline(always)]
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 - rhs.0)
    }
}

impl Neg for Secp256k1Scalar {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        Self(-self.0)
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
        self.0 += rhs.0;
    }
}

impl SubAssign for Secp256k1Scalar {
    #[inline(always)]
    fn sub_assign(&mut self, rhs: Self) {
        self.0 -= rhs.0;
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
        bool::from(self.0.is_zero())
    }

    fn inverse(&self) -> Option<Self> {
        Option::from(self.0.invert()).map(Self)
    }

    #[inline]
    fn random<R: RngCore + ?Sized>(rng: &mut R) -> Self {
        // Rejection sampling on 256 bits (rejects with probability below 2^-127).
        loop {
            let mut bytes = FieldBytes::default();
            rng.fill_bytes(&mut bytes);
            if let Some(s) = Option::<Scalar>::from(Scalar::from_repr(bytes)) {
                return Self(s);
            }
        }
    }

    fn fill_random<R: RngCore + ?Sized>(rng: &mut R, out: &mut [Self]) {
        let mut buf = [0u8; 32 * 128];
        for chunk in out.chunks_mut(128) {
            let bytes = &mut buf[..32 * chunk.len()];
            rng.fill_bytes(bytes);
            for (v, b) in chunk.iter_mut().zip(bytes.chunks_exact(32)) {
                let mut repr = FieldBytes::default();
                repr.copy_from_slice(b);
                // Above the order with probability below 2^-127; redraw it alone.
                *v = Option::<Scalar>::from(Scalar::from_repr(repr))
                    .map_or_else(|| Self::random(rng), Self);
            }
        }
    }

    fn from_uniform_bytes(bytes: &[u8; 64]) -> Self {
        Self(<Scalar as Reduce<U512>>::reduce(U512::from_be_slice(bytes)))
    }

    #[inline]
    fn to_repr(&self) -> [u8; 32] {
        self.0.to_bytes().into()
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

    fn to_limbs(&self) -> [u64; 4] {
        let b = self.0.to_bytes();
        let mut out = [0u64; 4];
        for (i, limb) in out.iter_mut().enumerate() {
            let start = 32 - 8 * (i + 1);
            *limb = u64::from_be_bytes(b[start..start + 8].try_into().expect("8 bytes"));
        }
        out
    }

    fn dot(a: &[Self], b: &[Self]) -> Self {
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

    #[inline]
    fn square(self) -> Self {
        Self(self.0.square())
    }
}
