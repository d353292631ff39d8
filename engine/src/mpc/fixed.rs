//! Signed fixed point in a prime field, with exact scale tracking and range analysis.
//!
//! A real value `v` is encoded at scale `2^b` as the field element of the integer
//! `round(v * 2^b)` (half away from zero); negative integers map to `p - |x|`. Version 1 never
//! truncates inside MPC: a product of `d` encoded factors has scale `2^(16 d)` ([`Scale`]), sums
//! keep their scale, and a constant is encoded at the scale of the term it joins. The service
//! divides by the scale in the clear ([`decode_decimal`], exact).
//!
//! Correct decoding needs every intermediate value to stay below `p / 2` in magnitude. The
//! planner bounds each term from per-column `[min, max]` ([`Interval`]) and refuses a term whose
//! worst case needs [`PrimeField::MAGNITUDE_LIMIT_BITS`] bits or more ([`check_bits`]).
//!
//! Encoding error: at most `2^-(b+1)` per encoded value (`2^-17` at the default 16 bits); a
//! product of exact encodings is exact, so the error of `x * y` decoded at scale `2^32` is at
//! most `|x| 2^-17 + |y| 2^-17 + 2^-34`.

use std::cmp::Ordering;
use std::fmt;

use num_bigint::{BigInt, BigUint, Sign};
use num_integer::Integer;
use num_traits::{One, Signed, Zero};
use serde::{Deserialize, Serialize};

use super::field::PrimeField;

/// Fractional bits of one fixed-point factor.
pub const DEFAULT_FRAC_BITS: u32 = 16;

/// Longest decimal literal accepted (characters).
pub const MAX_DECIMAL_LEN: usize = 100;

/// Errors of fixed-point encoding and range checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FixedError {
    /// Not a decimal number.
    #[error("{input:?} is not a decimal number: {reason}")]
    BadDecimal {
        /// The input (truncated to 100 characters).
        input: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The encoded value does not fit the field's signed range.
    #[error("{input} at scale 2^{scale_bits} needs {bits} bits, the {field} field allows fewer than {limit}")]
    OutOfRange {
        /// The value.
        input: String,
        /// The scale's exponent.
        scale_bits: u32,
        /// Bits needed.
        bits: u64,
        /// [`PrimeField::MAGNITUDE_LIMIT_BITS`].
        limit: u32,
        /// Field name.
        field: &'static str,
    },
    /// A term's worst-case magnitude is too large for the field.
    #[error("term {term} can reach {bits} bits in the worst case, the {field} field allows fewer than {limit}")]
    Overflow {
        /// The term, as the user wrote it.
        term: String,
        /// Bits needed.
        bits: u64,
        /// [`PrimeField::MAGNITUDE_LIMIT_BITS`].
        limit: u32,
        /// Field name.
        field: &'static str,
    },
}

/// A fixed-point scale `2^bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scale {
    bits: u32,
}

impl Scale {
    /// Scale 1 (plain integers).
    pub const INTEGER: Scale = Scale { bits: 0 };
    /// Scale of one fixed-point factor, `2^16`.
    pub const UNIT: Scale = Scale {
        bits: DEFAULT_FRAC_BITS,
    };

    /// `2^(16 d)`, the scale of a product of `d` factors.
    pub const fn of_degree(d: u32) -> Self {
        Scale {
            bits: DEFAULT_FRAC_BITS * d,
        }
    }

    /// `2^bits`.
    pub const fn from_bits(bits: u32) -> Self {
        Scale { bits }
    }

    /// The exponent.
    pub const fn bits(self) -> u32 {
        self.bits
    }

    /// The scale of a product: exponents add.
    pub const fn mul(self, other: Scale) -> Scale {
        Scale {
            bits: self.bits + other.bits,
        }
    }

    /// `2^bits` as an integer.
    pub fn factor(self) -> BigUint {
        BigUint::one() << self.bits
    }

    /// `2^bits` in the field.
    pub fn to_field<F: PrimeField>(self) -> F {
        F::pow2(self.bits)
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "2^{}", self.bits)
    }
}

/// The modulus of `F`.
pub fn modulus<F: PrimeField>() -> BigUint {
    limbs_to_big(&F::MODULUS)
}

fn limbs_to_big(limbs: &[u64; 4]) -> BigUint {
    let mut bytes = [0u8; 32];
    for (i, l) in limbs.iter().enumerate() {
        bytes[8 * i..8 * i + 8].copy_from_slice(&l.to_le_bytes());
    }
    BigUint::from_bytes_le(&bytes)
}

/// The integer in `(-p/2, p/2)` congruent to `x`.
pub fn to_signed<F: PrimeField>(x: F) -> BigInt {
    let v = limbs_to_big(&x.to_limbs());
    let p = modulus::<F>();
    if &v << 1u32 > p {
        BigInt::from_biguint(Sign::Minus, p - v)
    } else {
        BigInt::from_biguint(Sign::Plus, v)
    }
}

/// The field element `v mod p`.
pub fn from_signed<F: PrimeField>(v: &BigInt) -> F {
    let p = BigInt::from_biguint(Sign::Plus, modulus::<F>());
    let r = v.mod_floor(&p);
    let (_, digits) = r.to_u64_digits();
    let two64 = F::from_u128(1u128 << 64);
    digits
        .iter()
        .rev()
        .fold(F::ZERO, |acc, d| acc * two64 + F::from_u64(*d))
}

/// A decimal literal parsed exactly: `mantissa / 10^decimals`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    /// Signed digits without the point.
    pub mantissa: BigInt,
    /// Digits after the point.
    pub decimals: u32,
}

impl Decimal {
    /// Parses `[-+]?digits[.digits]` (at least one digit, at most [`MAX_DECIMAL_LEN`] chars).
    ///
    /// # Errors
    /// [`FixedError::BadDecimal`] naming the input.
    pub fn parse(input: &str) -> Result<Self, FixedError> {
        let bad = |reason| FixedError::BadDecimal {
            input: input.chars().take(100).collect(),
            reason,
        };
        if input.len() > MAX_DECIMAL_LEN {
            return Err(bad("too long"));
        }
        let (neg, body) = match input.as_bytes().first() {
            Some(b'-') => (true, &input[1..]),
            Some(b'+') => (false, &input[1..]),
            _ => (false, input),
        };
        let (int, frac) = match body.split_once('.') {
            Some((i, f)) => (i, f),
            None => (body, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad("no digits"));
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad("only digits, one '.' and a leading sign are allowed"));
        }
        let digits = format!("{int}{frac}");
        let m = BigInt::parse_bytes(digits.as_bytes(), 10).ok_or_else(|| bad("no digits"))?;
        Ok(Decimal {
            mantissa: if neg { -m } else { m },
            decimals: frac.len() as u32,
        })
    }

    /// Parses a decimal literal with an optional exponent, `[-+]?digits[.digits][(e|E)[-+]?digits]`
    /// (`1.5e-3`, `2E4`), as spreadsheets and data frames write small and large numbers. The
    /// exponent is bounded by [`MAX_EXPONENT`] in magnitude.
    ///
    /// # Errors
    /// [`FixedError::BadDecimal`] naming the input.
    pub fn parse_scientific(input: &str) -> Result<Self, FixedError> {
        let Some(at) = input.find(['e', 'E']) else {
            return Self::parse(input);
        };
        let bad = |reason| FixedError::BadDecimal {
            input: input.chars().take(100).collect(),
            reason,
        };
        let (base, exp) = (&input[..at], &input[at + 1..]);
        let digits = exp.strip_prefix(['-', '+']).unwrap_or(exp);
        if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the exponent must be digits with an optional sign"));
        }
        let e: i64 = exp.parse().map_err(|_| bad("bad exponent"))?;
        if e.unsigned_abs() > u64::from(MAX_EXPONENT) {
            return Err(bad("the exponent is too large"));
        }
        let d = Self::parse(base)?;
        let e = i64::from(d.decimals) - e;
        Ok(if e >= 0 {
            Decimal {
                mantissa: d.mantissa,
                decimals: u32::try_from(e).map_err(|_| bad("the exponent is too large"))?,
            }
        } else {
            let k = u32::try_from(-e).map_err(|_| bad("the exponent is too large"))?;
            Decimal {
                mantissa: d.mantissa * BigInt::from(10u32).pow(k),
                decimals: 0,
            }
        })
    }

    /// The integer `v`.
    pub fn integer(v: BigInt) -> Self {
        Decimal {
            mantissa: v,
            decimals: 0,
        }
    }

    /// `round(self * 2^bits)`, half away from zero.
    pub fn scaled(&self, scale: Scale) -> BigInt {
        round_div(
            &(&self.mantissa << scale.bits),
            &BigInt::from(10u32).pow(self.decimals),
        )
    }

    /// The value as an integer, if it is one (`2.0` is, `2.5` is not).
    pub fn as_integer(&self) -> Option<BigInt> {
        let (q, r) = self
            .mantissa
            .div_rem(&BigInt::from(10u32).pow(self.decimals));
        r.is_zero().then_some(q)
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa.is_zero()
    }

    /// `-self`.
    pub fn neg(&self) -> Decimal {
        Decimal {
            mantissa: -&self.mantissa,
            decimals: self.decimals,
        }
    }

    /// `self + other`, exactly.
    pub fn add(&self, other: &Decimal) -> Decimal {
        let e = self.decimals.max(other.decimals);
        let a = &self.mantissa * BigInt::from(10u32).pow(e - self.decimals);
        let b = &other.mantissa * BigInt::from(10u32).pow(e - other.decimals);
        Decimal {
            mantissa: a + b,
            decimals: e,
        }
    }

    /// `self * other`, exactly.
    pub fn mul(&self, other: &Decimal) -> Decimal {
        Decimal {
            mantissa: &self.mantissa * &other.mantissa,
            decimals: self.decimals + other.decimals,
        }
    }
}

/// Largest exponent magnitude [`Decimal::parse_scientific`] accepts.
pub const MAX_EXPONENT: u32 = 60;

/// `round(num / den)` for `den > 0`, half away from zero.
pub fn round_div(num: &BigInt, den: &BigInt) -> BigInt {
    let (q, r) = num.abs().div_rem(den);
    let q = if (r << 1u32) >= *den { q + 1 } else { q };
    if num.is_negative() {
        -q
    } else {
        q
    }
}

/// Bits of `|v|` (0 for 0).
pub fn bits_of(v: &BigInt) -> u64 {
    v.magnitude().bits()
}

/// Encodes a decimal literal at `scale`.
///
/// # Errors
/// [`FixedError::BadDecimal`]; [`FixedError::OutOfRange`] if the scaled value needs
/// [`PrimeField::MAGNITUDE_LIMIT_BITS`] bits or more.
pub fn encode_decimal<F: PrimeField>(input: &str, scale: Scale) -> Result<F, FixedError> {
    let scaled = Decimal::parse(input)?.scaled(scale);
    encode_scaled::<F>(&scaled, input, scale)
}

/// Encodes an integer at `scale`.
///
/// # Errors
/// [`FixedError::OutOfRange`] as [`encode_decimal`].
pub fn encode_int<F: PrimeField>(v: i128, scale: Scale) -> Result<F, FixedError> {
    let scaled = BigInt::from(v) << scale.bits;
    encode_scaled::<F>(&scaled, &v.to_string(), scale)
}

/// Encodes a finite `f64` at `scale` (its shortest round-trip decimal, rounded at the scale).
///
/// # Errors
/// [`FixedError::BadDecimal`] for NaN or infinities; [`FixedError::OutOfRange`].
pub fn encode_f64<F: PrimeField>(v: f64, scale: Scale) -> Result<F, FixedError> {
    if !v.is_finite() {
        return Err(FixedError::BadDecimal {
            input: v.to_string(),
            reason: "not a finite number",
        });
    }
    // Rust prints the shortest decimal that round-trips to `v` (never in exponent form).
    encode_decimal::<F>(&format!("{v}"), scale)
}

fn encode_scaled<F: PrimeField>(
    scaled: &BigInt,
    input: &str,
    scale: Scale,
) -> Result<F, FixedError> {
    let bits = bits_of(scaled);
    if bits >= u64::from(F::MAGNITUDE_LIMIT_BITS) {
        return Err(FixedError::OutOfRange {
            input: input.chars().take(100).collect(),
            scale_bits: scale.bits,
            bits,
            limit: F::MAGNITUDE_LIMIT_BITS,
            field: F::NAME,
        });
    }
    Ok(from_signed(scaled))
}

/// The exact decimal string of `x / 2^bits` (as signed), without trailing zeros.
pub fn decode_decimal<F: PrimeField>(x: F, scale: Scale) -> String {
    scaled_to_decimal(&to_signed(x), scale)
}

/// The exact decimal string of `v / 2^bits`.
pub fn scaled_to_decimal(v: &BigInt, scale: Scale) -> String {
    let b = scale.bits;
    // v / 2^b = v * 5^b / 10^b.
    let digits = (v.abs() * BigInt::from(5u32).pow(b)).to_string();
    let b = b as usize;
    let (int, frac) = if digits.len() > b {
        let (i, f) = digits.split_at(digits.len() - b);
        (i.to_owned(), f.to_owned())
    } else {
        (
            "0".to_owned(),
            format!("{}{digits}", "0".repeat(b - digits.len())),
        )
    };
    let frac = frac.trim_end_matches('0');
    let sign = if v.is_negative() { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// `x / 2^bits` as the nearest `f64`.
pub fn decode_f64<F: PrimeField>(x: F, scale: Scale) -> f64 {
    decode_decimal(x, scale).parse().unwrap_or(f64::NAN)
}

/// A closed interval of scaled integers, for worst-case range analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    /// Lower end.
    pub lo: BigInt,
    /// Upper end.
    pub hi: BigInt,
}

impl Interval {
    /// `[lo, hi]` (the ends are swapped if given in the wrong order).
    pub fn new(lo: BigInt, hi: BigInt) -> Self {
        if lo <= hi {
            Interval { lo, hi }
        } else {
            Interval { lo: hi, hi: lo }
        }
    }

    /// The single point `v`.
    pub fn point(v: BigInt) -> Self {
        Interval {
            lo: v.clone(),
            hi: v,
        }
    }

    /// A column's `[min, max]` (decimal literals) at `scale`.
    ///
    /// # Errors
    /// [`FixedError::BadDecimal`].
    pub fn of_column(min: &str, max: &str, scale: Scale) -> Result<Self, FixedError> {
        Ok(Self::new(
            Decimal::parse(min)?.scaled(scale),
            Decimal::parse(max)?.scaled(scale),
        ))
    }

    /// `self + other`.
    pub fn add(&self, other: &Interval) -> Interval {
        Interval::new(&self.lo + &other.lo, &self.hi + &other.hi)
    }

    /// `self - other`.
    pub fn sub(&self, other: &Interval) -> Interval {
        Interval::new(&self.lo - &other.hi, &self.hi - &other.lo)
    }

    /// `-self`.
    pub fn neg(&self) -> Interval {
        Interval::new(-&self.hi, -&self.lo)
    }

    /// `self * other` (the hull of the four end products).
    pub fn mul(&self, other: &Interval) -> Interval {
        let c = [
            &self.lo * &other.lo,
            &self.lo * &other.hi,
            &self.hi * &other.lo,
            &self.hi * &other.hi,
        ];
        let lo = c.iter().min().cloned().unwrap_or_default();
        let hi = c.iter().max().cloned().unwrap_or_default();
        Interval { lo, hi }
    }

    /// The smallest interval containing `self` and 0 (a nullable column holds 0 where NULL).
    pub fn with_zero(&self) -> Interval {
        Interval::new(
            self.lo.clone().min(BigInt::zero()),
            self.hi.clone().max(BigInt::zero()),
        )
    }

    /// Rescales by `2^bits` (a term joining one of a higher scale).
    pub fn shift(&self, bits: u32) -> Interval {
        Interval::new(&self.lo << bits, &self.hi << bits)
    }

    /// The range of a sum of `rows` values each in `self`, widened to contain every partial
    /// sum as well (and 0): a sum of `k <= rows` values lies in `[k lo, k hi]`.
    pub fn sum_rows(&self, rows: u64) -> Interval {
        let r = BigInt::from(rows);
        let lo = (&self.lo * &r).min(BigInt::zero());
        let hi = (&self.hi * &r).max(BigInt::zero());
        Interval::new(lo, hi)
    }

    /// The worst-case magnitude `max(|lo|, |hi|)`.
    pub fn magnitude(&self) -> BigUint {
        match self.lo.magnitude().cmp(self.hi.magnitude()) {
            Ordering::Greater => self.lo.magnitude().clone(),
            _ => self.hi.magnitude().clone(),
        }
    }

    /// Bits of the worst-case magnitude.
    pub fn bits(&self) -> u64 {
        self.magnitude().bits()
    }
}

/// Checks a term's worst-case range against the field: returns the bits needed, counting a
/// sign bit (one more than [`Interval::bits`], so the check keeps a bit of margin below `p/2`).
///
/// # Errors
/// [`FixedError::Overflow`] naming `term` when the bits needed reach
/// [`PrimeField::MAGNITUDE_LIMIT_BITS`].
pub fn check_bits<F: PrimeField>(term: &str, range: &Interval) -> Result<u64, FixedError> {
    let bits = range.bits() + 1;
    if bits >= u64::from(F::MAGNITUDE_LIMIT_BITS) {
        return Err(FixedError::Overflow {
            term: term.to_owned(),
            bits,
            limit: F::MAGNITUDE_LIMIT_BITS,
            field: F::NAME,
        });
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};
    use proptest::prelude::*;

    #[test]
    fn exact_round_trips() {
        type F = Secp256k1Scalar;
        let s = Scale::UNIT;
        assert_eq!(
            decode_decimal(encode_decimal::<F>("1.5", s).unwrap(), s),
            "1.5"
        );
        assert_eq!(
            decode_decimal(encode_decimal::<F>("-0.25", s).unwrap(), s),
            "-0.25"
        );
        assert_eq!(
            decode_decimal(encode_decimal::<F>("-7", s).unwrap(), s),
            "-7"
        );
        assert_eq!(
            decode_decimal(encode_decimal::<F>("+.5", s).unwrap(), s),
            "0.5"
        );
        assert_eq!(decode_decimal(encode_decimal::<F>("0", s).unwrap(), s), "0");
        // 0.1 is not dyadic: rounded to the nearest 2^-16.
        assert_eq!(
            decode_decimal(encode_decimal::<F>("0.1", s).unwrap(), s),
            "0.100006103515625"
        );
        // Half away from zero: 2^-17 rounds to 2^-16, and -2^-17 to -2^-16.
        assert_eq!(
            decode_decimal(encode_decimal::<F>("0.00000762939453125", s).unwrap(), s),
            "0.0000152587890625"
        );
        assert_eq!(
            decode_decimal(encode_decimal::<F>("-0.00000762939453125", s).unwrap(), s),
            "-0.0000152587890625"
        );
        // Products: scales add, no truncation.
        let x = encode_decimal::<F>("-1.5", s).unwrap();
        let y = encode_decimal::<F>("2.25", s).unwrap();
        assert_eq!(decode_decimal(x * y, s.mul(s)), "-3.375");
        assert_eq!(Scale::of_degree(2), s.mul(s));
        assert_eq!(
            decode_decimal(
                encode_int::<Mersenne127>(-42, Scale::INTEGER).unwrap(),
                Scale::INTEGER
            ),
            "-42"
        );
    }

    #[test]
    fn errors_name_the_value() {
        type F = Mersenne127;
        for bad in ["", "-", ".", "1.2.3", "1e5", "0x10", " 1", "1,5"] {
            assert!(
                matches!(
                    encode_decimal::<F>(bad, Scale::UNIT),
                    Err(FixedError::BadDecimal { .. })
                ),
                "{bad:?} accepted"
            );
        }
        let big = format!("1{}", "0".repeat(40));
        let e = encode_decimal::<F>(&big, Scale::UNIT).unwrap_err();
        assert!(
            matches!(e, FixedError::OutOfRange { limit: 126, .. }),
            "{e}"
        );
        assert!(e.to_string().contains(&big));
        // The same value fits the 256-bit field.
        assert!(encode_decimal::<Secp256k1Scalar>(&big, Scale::UNIT).is_ok());
        // 2^125 - 1 fits m127 (125 bits), 2^125 does not.
        assert!(encode_int::<F>((1i128 << 125) - 1, Scale::INTEGER).is_ok());
        assert!(encode_int::<F>(1i128 << 125, Scale::INTEGER).is_err());
        assert!(encode_f64::<F>(f64::NAN, Scale::UNIT).is_err());
    }

    #[test]
    fn decimal_arithmetic_and_exponents() {
        let d = |s: &str| Decimal::parse_scientific(s).unwrap();
        assert_eq!(d("1.5e-3"), Decimal::parse("0.0015").unwrap().add(&d("0")));
        assert_eq!(d("1.5e-3").scaled(Scale::from_bits(0)), BigInt::from(0));
        assert_eq!(d("2E4").as_integer(), Some(BigInt::from(20_000)));
        assert_eq!(d("-2.5e+1").as_integer(), Some(BigInt::from(-25)));
        assert_eq!(d(".25").scaled(Scale::UNIT), BigInt::from(16_384));
        assert_eq!(d("2.5").as_integer(), None);
        assert!(d("0.000").is_zero());
        assert_eq!(
            d("1.25").add(&d("-0.5")).mul(&d("4")).as_integer(),
            Some(BigInt::from(3))
        );
        assert_eq!(d("7").neg().as_integer(), Some(BigInt::from(-7)));
        for bad in [
            "1e", "e5", "1e+", "1e1.5", "1e99999", "1e61", "--1e2", "1ee2",
        ] {
            assert!(Decimal::parse_scientific(bad).is_err(), "{bad:?} accepted");
        }
        // round_div: half away from zero, both signs.
        let r = |n: i64, d: i64| round_div(&BigInt::from(n), &BigInt::from(d));
        assert_eq!(
            [r(5, 2), r(-5, 2), r(4, 3), r(-4, 3), r(0, 7)],
            [3, -3, 1, -1, 0].map(BigInt::from)
        );
        let i = Interval::new(BigInt::from(5), BigInt::from(7));
        assert_eq!(
            i.with_zero(),
            Interval::new(BigInt::zero(), BigInt::from(7))
        );
        let n = Interval::new(BigInt::from(-3), BigInt::from(4));
        assert_eq!(n.with_zero(), n);
    }

    #[test]
    fn range_analysis() {
        let s = Scale::UNIT;
        let x = Interval::of_column("-3", "2", s).unwrap();
        let y = Interval::of_column("1", "4", s).unwrap();
        let xy = x.mul(&y);
        assert_eq!(
            xy,
            Interval::new(BigInt::from(-12) << 32, BigInt::from(8) << 32)
        );
        assert_eq!(
            x.sub(&y),
            Interval::new(BigInt::from(-7) << 16, BigInt::from(1) << 16)
        );
        assert_eq!(
            x.neg(),
            Interval::new(BigInt::from(-2) << 16, BigInt::from(3) << 16)
        );
        let total = xy.sum_rows(1_000_000);
        assert_eq!(total.magnitude(), BigUint::from(12_000_000u64) << 32);
        assert_eq!(check_bits::<Mersenne127>("x*y", &total).unwrap(), 57);
        // A degree-8 product of 2^20-sized values over a million rows overflows m127 only.
        let mut p = Interval::of_column("0", "1048576", s).unwrap();
        let base = p.clone();
        for _ in 0..7 {
            p = p.mul(&base);
        }
        let sum = p.sum_rows(1 << 20);
        let e = check_bits::<Mersenne127>("x*x*x*x*x*x*x*x", &sum).unwrap_err();
        assert_eq!(
            e,
            FixedError::Overflow {
                term: "x*x*x*x*x*x*x*x".into(),
                bits: 310,
                limit: 126,
                field: "m127"
            }
        );
        assert!(check_bits::<Secp256k1Scalar>("t", &sum).is_err());
        assert!(check_bits::<Secp256k1Scalar>("t", &p.shift(0).sum_rows(1)).is_err());
        let ok = Interval::of_column("0", "1000", s)
            .unwrap()
            .sum_rows(1 << 20);
        assert_eq!(check_bits::<Secp256k1Scalar>("t", &ok).unwrap(), 47);
    }

    proptest! {
        #[test]
        fn encoding_matches_f64(a in -1.0e9f64..1.0e9, b in -1.0e3f64..1.0e3) {
            type F = Mersenne127;
            let s = Scale::UNIT;
            let ea = encode_f64::<F>(a, s).unwrap();
            let eb = encode_f64::<F>(b, s).unwrap();
            let step = 2f64.powi(-17);
            prop_assert!((decode_f64(ea, s) - a).abs() <= step * (1.0 + 1e-9) + a.abs() * 1e-15);
            let sum = decode_f64(ea + eb, s);
            prop_assert!((sum - (a + b)).abs() <= 2.0 * step + (a.abs() + b.abs()) * 1e-15);
            let prod = decode_f64(ea * eb, s.mul(s));
            let bound = (a.abs() + b.abs()) * step + step * step + (a * b).abs() * 1e-15;
            prop_assert!((prod - a * b).abs() <= bound, "{prod} vs {}", a * b);
        }

        #[test]
        fn signed_lift_round_trips(v in any::<i128>()) {
            let b = BigInt::from(v);
            prop_assert_eq!(to_signed(from_signed::<Secp256k1Scalar>(&b)), b.clone());
            prop_assert_eq!(from_signed::<Mersenne127>(&b), Mersenne127::from_i128(v));
            if bits_of(&b) < 126 {
                prop_assert_eq!(to_signed(from_signed::<Mersenne127>(&b)), b);
            }
        }
    }
}
