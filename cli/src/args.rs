//! Parsing of the values commands take: amounts, fee rates, heights.

use std::str::FromStr;

use anyhow::{anyhow, Context as _};
use bitcoin::{Amount, Denomination, FeeRate};

/// `50000sat`, `0.0005btc`, `0.0005 BTC`, `1000 sats`.
pub fn parse_amount(s: &str) -> anyhow::Result<Amount> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| anyhow!("amount {s:?} needs a unit, e.g. `50000sat` or `0.0005btc`"))?;
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let denom = match unit.as_str() {
        "sat" | "sats" | "satoshi" | "satoshis" => Denomination::Satoshi,
        "btc" => Denomination::Bitcoin,
        other => Denomination::from_str(other)
            .map_err(|_| anyhow!("unknown unit {other:?} in amount {s:?}"))?,
    };
    Amount::from_str_in(num, denom).with_context(|| format!("invalid amount {s:?}"))
}

/// A fee rate in sat/vB: `2`, `2.5`, `2sat/vb`.
pub fn parse_fee_rate(s: &str) -> anyhow::Result<FeeRate> {
    let t = s.trim().to_ascii_lowercase();
    let num = t.strip_suffix("sat/vb").unwrap_or(&t).trim();
    let v: f64 = num
        .parse()
        .map_err(|_| anyhow!("invalid fee rate {s:?}: expected sat/vB, e.g. `2` or `2.5sat/vB`"))?;
    if !(v.is_finite() && v > 0.0 && v <= 100_000.0) {
        return Err(anyhow!(
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
    }
}
