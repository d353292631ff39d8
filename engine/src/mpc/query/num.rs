//! Exact integers and rationals for the planner and the service's finishing arithmetic.

use std::fmt;

use num_bigint::{BigInt, Sign};
use num_integer::Integer;
use num_traits::{One, Signed, Zero};

use crate::mpc::field::PrimeField;

/// The modulus of `F` as a big integer.
pub fn modulus<F: PrimeField>() -> BigInt {
    let mut bytes = Vec::with_capacity(32);
    for limb in F::MODULUS {
        bytes.extend_from_slice(&limb.to_le_bytes());
    }
    BigInt::from_bytes_le(Sign::Plus, &bytes)
}

/// The element `v mod p`.
pub fn to_field<F: PrimeField>(v: &BigInt) -> F {
    let p = modulus::<F>();
    let r = v.mod_floor(&p);
    let (_, le) = r.to_bytes_le();
    // Horner over 64-bit limbs, most significant first.
    let two64 = F::from_u128(1u128 << 64);
    le.chunks(8).rev().fold(F::ZERO, |acc, chunk| {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        acc * two64 + F::from_u64(u64::from_le_bytes(b))
    })
}

/// The signed integer in `(-p/2, p/2]` congruent to `x`.
pub fn to_signed<F: PrimeField>(x: F) -> BigInt {
    let mut bytes = Vec::with_capacity(32);
    for limb in x.to_limbs() {
        bytes.extend_from_slice(&limb.to_le_bytes());
    }
    let v = BigInt::from_bytes_le(Sign::Plus, &bytes);
    let p = modulus::<F>();
    if (&v << 1u32) > p {
        v - p
    } else {
        v
    }
}

/// An exact rational number in lowest terms with a positive denominator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rational {
    num: BigInt,
    den: BigInt,
}

impl Rational {
    /// `num / den`.
    ///
    /// # Panics
    /// Never for `den != 0`; callers pass non-zero denominators only (checked in debug builds).
    pub fn new(num: BigInt, den: BigInt) -> Self {
        debug_assert!(!den.is_zero(), "denominator must be non-zero");
        let g = num.gcd(&den);
        let g = if g.is_zero() { BigInt::one() } else { g };
        let (mut num, mut den) = (num / &g, den / &g);
        if den.is_negative() {
            num = -num;
            den = -den;
        }
        Rational { num, den }
    }

    /// The integer `v`.
    pub fn integer(v: BigInt) -> Self {
        Rational {
            num: v,
            den: BigInt::one(),
        }
    }

    /// Numerator (sign carried here).
    pub fn numer(&self) -> &BigInt {
        &self.num
    }

    /// Denominator (positive).
    pub fn denom(&self) -> &BigInt {
        &self.den
    }

    /// `self - other`.
    pub fn minus(&self, other: &Rational) -> Rational {
        Rational::new(
            &self.num * &other.den - &other.num * &self.den,
            &self.den * &other.den,
        )
    }

    /// `self * other`.
    pub fn times(&self, other: &Rational) -> Rational {
        Rational::new(&self.num * &other.num, &self.den * &other.den)
    }

    /// Whether the decimal expansion terminates (the denominator is `2^a 5^b`).
    pub fn is_terminating(&self) -> bool {
        let mut d = self.den.clone();
        for f in [2u32, 5] {
            let f = BigInt::from(f);
            while (&d % &f).is_zero() {
                d /= &f;
            }
        }
        d.is_one()
    }

    /// Decimal text: exact when the expansion terminates within `digits` fractional digits,
    /// otherwise rounded half away from zero to `digits` digits; trailing zeros are dropped.
    pub fn to_decimal(&self, digits: u32) -> String {
        let scale = BigInt::from(10u32).pow(digits);
        let scaled = super::super::csv::round_div(&(&self.num * &scale), &self.den);
        let neg = scaled.is_negative();
        let s = scaled.abs().to_string();
        let d = digits as usize;
        let (int, frac) = if s.len() > d {
            (s[..s.len() - d].to_owned(), s[s.len() - d..].to_owned())
        } else {
            ("0".to_owned(), format!("{}{s}", "0".repeat(d - s.len())))
        };
        let frac = frac.trim_end_matches('0');
        let sign = if neg { "-" } else { "" };
        if frac.is_empty() {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        }
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den.is_one() {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};

    fn round_trip<F: PrimeField>() {
        for v in [0i64, 1, -1, 65536, -123_456_789, i64::MIN, i64::MAX] {
            let b = BigInt::from(v);
            let x: F = to_field(&b);
            assert_eq!(x, F::from_i64(v));
            assert_eq!(to_signed(x), b);
        }
        let big = BigInt::from(1u8) << 120u32;
        assert_eq!(to_signed(to_field::<F>(&-&big)), -big);
        let p = modulus::<F>();
        assert_eq!(to_field::<F>(&(&p - 1u8)), -F::ONE);
        assert_eq!(to_field::<F>(&p), F::ZERO);
    }

    #[test]
    fn field_conversions() {
        round_trip::<Secp256k1Scalar>();
        round_trip::<Mersenne127>();
        assert_eq!(
            modulus::<Mersenne127>(),
            (BigInt::from(1u8) << 127u32) - 1u8
        );
    }

    #[test]
    fn decimals() {
        let r = Rational::new(BigInt::from(-7), BigInt::from(4));
        assert_eq!(r.to_decimal(18), "-1.75");
        assert!(r.is_terminating());
        let third = Rational::new(BigInt::from(2), BigInt::from(-6));
        assert_eq!(third.to_string(), "-1/3");
        assert_eq!(third.to_decimal(5), "-0.33333");
        assert!(!third.is_terminating());
        assert_eq!(
            Rational::new(BigInt::from(2), BigInt::from(3)).to_decimal(3),
            "0.667"
        );
        assert_eq!(Rational::integer(BigInt::from(0)).to_decimal(3), "0");
        assert_eq!(
            Rational::new(BigInt::from(1), BigInt::from(1000)).to_decimal(2),
            "0"
        );
    }
}
