//! Exact rationals for the service's finishing arithmetic (field conversions and rounding come
//! from [`crate::mpc::fixed`], the one fixed-point implementation).

use std::fmt;

use num_bigint::BigInt;
use num_integer::Integer;
use num_traits::{One, Signed, Zero};

// The conversions between field elements and signed integers live with the fixed-point code;
// re-exported here for the evaluator and the committee.
pub use crate::mpc::fixed::{from_signed as to_field, to_signed};

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
        let scaled = crate::mpc::fixed::round_div(&(&self.num * &scale), &self.den);
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
    use crate::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
    use crate::mpc::fixed::modulus;

    fn round_trip<F: PrimeField>() {
        for v in [0i64, 1, -1, 65536, -123_456_789, i64::MIN, i64::MAX] {
            let b = BigInt::from(v);
            let x: F = to_field(&b);
            assert_eq!(x, F::from_i64(v));
            assert_eq!(to_signed(x), b);
        }
        let big = BigInt::from(1u8) << 120u32;
        assert_eq!(to_signed(to_field::<F>(&-&big)), -big);
        let p = BigInt::from(modulus::<F>());
        assert_eq!(to_field::<F>(&(&p - 1u8)), -F::ONE);
        assert_eq!(to_field::<F>(&p), F::ZERO);
    }

    #[test]
    fn field_conversions() {
        round_trip::<Secp256k1Scalar>();
        round_trip::<Mersenne127>();
        assert_eq!(
            BigInt::from(modulus::<Mersenne127>()),
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
