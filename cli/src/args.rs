//! Parsing of the values commands take: amounts and fee rates, as clap value parsers (a bad
//! value is refused by clap, naming the argument; see `main`, which prints it on one line and
//! exits 1 as for any refused value).

use std::str::FromStr;

use bitcoin::{Amount, Denomination, FeeRate};

/// The highest fee rate accepted, sat/vB.
pub const MAX_FEE_RATE_SAT_VB: f64 = 100_000.0;

/// An amount with its unit: `50000sat`, `0.0005btc`, `0.0005 BTC`, `1000 sats`.
///
/// # Errors
/// A message for a missing or unknown unit, or a number the unit cannot hold.
pub fn parse_amount(s: &str) -> Result<Amount, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("amount {s:?} needs a unit, e.g. `50000sat` or `0.0005btc`"))?;
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let denom = match unit.as_str() {
        "sat" | "sats" | "satoshi" | "satoshis" => Denomination::Satoshi,
        "btc" => Denomination::Bitcoin,
        other => Denomination::from_str(other)
            .map_err(|_| format!("unknown unit {other:?} in amount {s:?}"))?,
    };
    Amount::from_str_in(num, denom).map_err(|e| format!("invalid amount {s:?}: {e}"))
}

/// What `wallet send` pays: an amount, or `all` (the whole balance less the fee).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountOrAll {
    /// The whole balance less the fee.
    All,
    /// This amount.
    Exact(Amount),
}

impl AmountOrAll {
    /// The amount, `None` for `all`.
    pub fn amount(self) -> Option<Amount> {
        match self {
            AmountOrAll::All => None,
            AmountOrAll::Exact(a) => Some(a),
        }
    }
}

/// `all` (any case) or an amount as [`parse_amount`] takes it.
///
/// # Errors
/// As [`parse_amount`].
pub fn parse_amount_or_all(s: &str) -> Result<AmountOrAll, String> {
    if s.trim().eq_ignore_ascii_case("all") {
        Ok(AmountOrAll::All)
    } else {
        parse_amount(s).map(AmountOrAll::Exact)
    }
}

/// A fee rate in sat/vB: `2`, `2.5`, `2sat/vb`; `0 < rate <= 100000`, rounded up to whole
/// sat/kwu.
///
/// # Errors
/// A message for a value that is not a number or out of range.
pub fn parse_fee_rate(s: &str) -> Result<FeeRate, String> {
    let t = s.trim().to_ascii_lowercase();
    let num = t.strip_suffix("sat/vb").unwrap_or(&t).trim();
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid fee rate {s:?}: expected sat/vB, e.g. `2` or `2.5sat/vB`"))?;
    if !(v.is_finite() && v > 0.0 && v <= MAX_FEE_RATE_SAT_VB) {
        return Err(format!(
            "fee rate {s:?} out of range (0 < rate <= 100000 sat/vB)"
        ));
    }
    // sat/vB -> sat/kwu: x * 1000 / 4.
    Ok(FeeRate::from_sat_per_kwu((v * 250.0).ceil() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("50000sat").unwrap(), Amount::from_sat(50_000));
        assert_eq!(parse_amount("0.0005btc").unwrap(), Amount::from_sat(50_000));
        assert_eq!(
            parse_amount("0.0005 BTC").unwrap(),
            Amount::from_sat(50_000)
        );
        assert!(parse_amount("50000")
            .unwrap_err()
            .to_string()
            .contains("needs a unit"));
        assert!(parse_amount("5xyz")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_amount("0.000000001btc").is_err());
        assert!(parse_amount("1.5sat").is_err());
        assert!(parse_amount("12 apples").is_err());
    }

    #[test]
    fn fee_rates() {
        assert_eq!(
            parse_fee_rate("2").unwrap(),
            FeeRate::from_sat_per_vb_u32(2)
        );
        assert_eq!(
            parse_fee_rate("2sat/vB").unwrap(),
            FeeRate::from_sat_per_vb_u32(2)
        );
        assert_eq!(
            parse_fee_rate("0.1").unwrap(),
            FeeRate::from_sat_per_kwu(25)
        );
        assert!(parse_fee_rate("-1").is_err());
        assert!(parse_fee_rate("abc").is_err());
        assert!(parse_fee_rate("0")
            .unwrap_err()
            .contains("fee rate \"0\" out of range"));
        assert!(parse_fee_rate("100001").is_err());
    }

    #[test]
    fn amount_or_all() {
        assert_eq!(parse_amount_or_all(" ALL ").unwrap(), AmountOrAll::All);
        assert_eq!(
            parse_amount_or_all("1000sat").unwrap().amount(),
            Some(Amount::from_sat(1000))
        );
        assert!(parse_amount_or_all("1000")
            .unwrap_err()
            .contains("needs a unit"));
    }
}
