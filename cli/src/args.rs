//! Parsing of the values commands take: amounts, fee rates and block heights, as clap value
//! parsers (a bad value is refused by clap, naming the argument; see `main`, which prints it on
//! one line and exits 1 as for any refused value).

use std::fmt;
use std::str::FromStr;

use bitcoin::{Amount, Denomination, FeeRate};
use btcmpc_contracts::Height;

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
    let a = Amount::from_str_in(num, denom).map_err(|e| format!("invalid amount {s:?}: {e}"))?;
    if a > Amount::MAX_MONEY {
        return Err(format!(
            "amount {s:?} is above 21,000,000 BTC, all the bitcoin there is"
        ));
    }
    Ok(a)
}

/// A job fee per party: an amount as [`parse_amount`] takes it, at least 1 sat.
///
/// # Errors
/// As [`parse_amount`], or a zero amount.
pub fn parse_fee(s: &str) -> Result<Amount, String> {
    let a = parse_amount(s)?;
    if a == Amount::ZERO {
        return Err(format!("fee {s:?} is zero; a party takes at least 1 sat"));
    }
    Ok(a)
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

/// The most blocks a relative height `+N` may count from the tip: 52,560, about one year of
/// blocks (144 a day). A lock further away than that is given as an absolute height.
pub const MAX_AFTER_TIP: u32 = 52_560;

/// A block height as a command takes it: absolute (`850000`), or a number of blocks after the
/// chain tip (`+144`), resolved by [`HeightArg::resolve`] once the tip is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeightArg {
    /// This height (`1 <= h < 500,000,000`, see [`Height`]).
    Absolute(Height),
    /// The tip plus this many blocks, `0 <= N <= MAX_AFTER_TIP`.
    AfterTip(u32),
}

impl HeightArg {
    /// The absolute height: the one given, or `tip + N`.
    ///
    /// # Errors
    /// A message naming `flag` when `tip + N` is not a block height (`Height`'s range).
    pub fn resolve(self, flag: &str, tip: u32) -> anyhow::Result<Height> {
        match self {
            HeightArg::Absolute(h) => Ok(h),
            HeightArg::AfterTip(n) => {
                let sum = u64::from(tip) + u64::from(n);
                u32::try_from(sum)
                    .ok()
                    .and_then(|h| Height::new(h).ok())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "{flag}: tip {tip} + {n} = {sum} is not a block height in 1..500000000"
                        )
                    })
            }
        }
    }

    /// The absolute height, for commands that have no chain connection.
    ///
    /// # Errors
    /// [`btcmpc_contracts::Error::RelativeHeight`] (naming `flag`) for `+N`.
    pub fn absolute(self, flag: &str) -> Result<Height, btcmpc_contracts::Error> {
        match self {
            HeightArg::Absolute(h) => Ok(h),
            HeightArg::AfterTip(_) => Err(btcmpc_contracts::Error::RelativeHeight {
                field: flag.to_owned(),
                value: self.to_string(),
            }),
        }
    }
}

impl fmt::Display for HeightArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeightArg::Absolute(h) => write!(f, "{h}"),
            HeightArg::AfterTip(n) => write!(f, "+{n}"),
        }
    }
}

/// A height: `H` with `1 <= H < 500,000,000` (from 500,000,000 on, nLockTime and `after` count
/// Unix time), or `+N` blocks after the tip with `N <= MAX_AFTER_TIP`.
///
/// # Errors
/// A message for anything else (the value quoted).
pub fn parse_height(s: &str) -> Result<HeightArg, String> {
    let t = s.trim();
    if let Some(rel) = t.strip_prefix('+') {
        // Digits only: `u32::from_str` would also take a second sign (`++1`).
        let digits = !rel.is_empty() && rel.bytes().all(|b| b.is_ascii_digit());
        return match rel.parse::<u32>() {
            Ok(n) if digits && n <= MAX_AFTER_TIP => Ok(HeightArg::AfterTip(n)),
            _ => Err(format!(
                "relative height {t:?} is not +N blocks after the tip with N in 0..={MAX_AFTER_TIP}; give an absolute height for a later one"
            )),
        };
    }
    t.parse::<u32>()
        .ok()
        .and_then(|h| Height::new(h).ok())
        .map(HeightArg::Absolute)
        .ok_or_else(|| format!("height {t:?} is not an absolute block height in 1..500000000"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heights() {
        let h = |n| HeightArg::Absolute(Height::new(n).unwrap());
        assert_eq!(parse_height("850000").unwrap(), h(850_000));
        assert_eq!(parse_height(" 1 ").unwrap(), h(1));
        assert_eq!(parse_height("499999999").unwrap(), h(499_999_999));
        assert_eq!(parse_height("+0").unwrap(), HeightArg::AfterTip(0));
        assert_eq!(parse_height("+144").unwrap(), HeightArg::AfterTip(144));
        assert_eq!(
            parse_height("+52560").unwrap(),
            HeightArg::AfterTip(MAX_AFTER_TIP)
        );
        for bad in ["0", "500000000", "4294967296", "-1", "abc", "", "1e3"] {
            let e = parse_height(bad).unwrap_err();
            assert_eq!(
                e,
                format!("height {bad:?} is not an absolute block height in 1..500000000")
            );
        }
        for bad in ["+52561", "+4294967296", "+", "+-1", "++1", "+abc"] {
            let e = parse_height(bad).unwrap_err();
            assert!(e.starts_with(&format!("relative height {bad:?}")), "{e}");
        }
        // Resolution against the tip, at the top of the range.
        assert_eq!(
            h(7).resolve("--exit", 100).unwrap(),
            Height::new(7).unwrap()
        );
        assert_eq!(
            HeightArg::AfterTip(144).resolve("--exit", 100).unwrap(),
            Height::new(244).unwrap()
        );
        assert_eq!(
            HeightArg::AfterTip(1)
                .resolve("--exit", 499_999_998)
                .unwrap(),
            Height::MAX
        );
        let e = HeightArg::AfterTip(2)
            .resolve("--exit", 499_999_998)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--exit: tip 499999998 + 2 = 500000000 is not a block height in 1..500000000"
        );
        let e = HeightArg::AfterTip(0).resolve("--exit", 0).unwrap_err();
        assert!(e.to_string().starts_with("--exit: tip 0 + 0 = 0"), "{e}");
        assert!(HeightArg::AfterTip(MAX_AFTER_TIP)
            .resolve("--exit", u32::MAX)
            .is_err());
        let e = HeightArg::AfterTip(144).absolute("--timeout").unwrap_err();
        assert!(
            e.to_string().contains("\"+144\" needs a chain connection"),
            "{e}"
        );
        assert_eq!(h(9).absolute("--timeout").unwrap(), Height::new(9).unwrap());
    }

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
        // Nothing above all the bitcoin there is; a fee is at least 1 sat.
        assert!(parse_amount("21000000btc").is_ok());
        assert!(parse_amount("21000001btc")
            .unwrap_err()
            .contains("above 21,000,000 BTC"));
        assert!(parse_fee("0sat").unwrap_err().contains("zero"));
        assert_eq!(parse_fee("1sat").unwrap(), Amount::from_sat(1));
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
