//! Fee policy: which fees the wallet pays without asking.
//!
//! An Electrum server answers `blockchain.estimatefee` with whatever it likes; a hostile one
//! answering 1 BTC/kvB would make a 100,000-sat payment pay 154,000 sat in fees. So every fee
//! rate is tagged with where it came from ([`FeeChoice`]), and a rate that did not come from
//! the user (a server estimate, or an automatic fee bump) is refused when
//!
//! - it is above [`FeePolicy::max_auto_rate`] (an absolute cap), or
//! - the fee it makes is above [`FeePolicy::max_fee_percent`] of the amount the transaction
//!   moves (the payment, the contract funding, the contract output claimed, refunded or exited),
//!   except that fees up to [`FeePolicy::free_fee`] are always accepted (a small payment at an
//!   ordinary rate).
//!
//! A rate the user gave explicitly ([`FeeChoice::Explicit`], `--fee-rate` in the CLI) is paid as
//! given. The check runs on the built transaction, before it is signed, so a refused fee never
//! leaves the wallet.

use bitcoin::{Amount, FeeRate};

use crate::error::FeeBound;
use crate::WalletError;

/// A fee rate and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeChoice {
    /// Given by the user: paid as given.
    Explicit(FeeRate),
    /// Taken from a server's estimate or chosen by an automatic fee bump: bounded by the
    /// [`FeePolicy`].
    Automatic(FeeRate),
}

impl FeeChoice {
    /// The rate.
    pub fn rate(self) -> FeeRate {
        match self {
            FeeChoice::Explicit(r) | FeeChoice::Automatic(r) => r,
        }
    }

    /// Whether the user gave it.
    pub fn is_explicit(self) -> bool {
        matches!(self, FeeChoice::Explicit(_))
    }
}

/// A rate the caller chose itself is explicit.
impl From<FeeRate> for FeeChoice {
    fn from(rate: FeeRate) -> Self {
        FeeChoice::Explicit(rate)
    }
}

/// The bounds on fees the user did not choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeePolicy {
    /// The highest automatic rate (sat/kwu inside [`FeeRate`]).
    pub max_auto_rate: FeeRate,
    /// The highest automatic fee as a percentage of the amount moved.
    pub max_fee_percent: u64,
    /// Automatic fees up to this are accepted whatever the amount.
    pub free_fee: Amount,
}

/// The fee rate used when the server has no estimate (regtest has none): 1 sat/vB.
pub const FEE_FLOOR: FeeRate = FeeRate::from_sat_per_kwu(250);

/// Confirmation target (blocks) of contract transactions: escrow fundings and spends, ACL
/// records, bonds and their slashes (their deadlines are counted in blocks).
pub const CONTRACT_TARGET: usize = 2;

/// Confirmation target (blocks) of plain payments out of the wallet.
pub const PAYMENT_TARGET: usize = 6;

/// The wallet's policy: at most 200 sat/vB and at most 10% of the amount moved (fees up to
/// 2,000 sat always accepted). 200 sat/vB is above every next-block estimate of 2023-2024
/// except the halving block's; above it the user decides with an explicit rate.
pub const DEFAULT_FEE_POLICY: FeePolicy = FeePolicy {
    max_auto_rate: FeeRate::from_sat_per_kwu(50_000),
    max_fee_percent: 10,
    free_fee: Amount::from_sat(2_000),
};

impl Default for FeePolicy {
    fn default() -> Self {
        DEFAULT_FEE_POLICY
    }
}

/// A rate in sat/vB for messages (`12.5`).
pub(crate) fn sat_per_vb(rate: FeeRate) -> String {
    let kwu = rate.to_sat_per_kwu();
    if kwu.is_multiple_of(250) {
        format!("{}", kwu / 250)
    } else {
        format!("{:.2}", kwu as f64 / 250.0)
    }
}

impl FeePolicy {
    /// The highest fee accepted for an automatic rate on a transaction moving `amount`.
    pub fn max_fee(&self, amount: Amount) -> Amount {
        let relative = amount.to_sat().saturating_mul(self.max_fee_percent) / 100;
        Amount::from_sat(relative.max(self.free_fee.to_sat()))
    }

    /// The highest automatic rate for a transaction of `vsize` vbytes moving `amount`: the
    /// smaller of the absolute cap and the rate whose fee is [`FeePolicy::max_fee`].
    pub fn max_rate_for(&self, amount: Amount, vsize: u64) -> FeeRate {
        let by_amount = self
            .max_fee(amount)
            .to_sat()
            .saturating_mul(250)
            .checked_div(vsize.max(1))
            .unwrap_or(0);
        FeeRate::from_sat_per_kwu(by_amount.min(self.max_auto_rate.to_sat_per_kwu()))
    }

    /// The rate of `choice` when the amount moved is not known yet (a PSBT others will sign):
    /// an automatic rate must be under the absolute cap.
    ///
    /// # Errors
    /// [`WalletError::FeeTooHigh`] when an automatic rate is above [`FeePolicy::max_auto_rate`]
    /// (`vsize` vbytes give the fee named in the message).
    pub fn check_rate(&self, choice: FeeChoice, vsize: u64) -> Result<FeeRate, WalletError> {
        match choice {
            FeeChoice::Automatic(rate) if rate > self.max_auto_rate => {
                Err(WalletError::FeeTooHigh {
                    rate,
                    // Overflow only at absurd rates: name the largest amount there is.
                    fee: rate.fee_vb(vsize).unwrap_or(Amount::MAX_MONEY),
                    bound: FeeBound::Cap(self.max_auto_rate),
                })
            }
            c => Ok(c.rate()),
        }
    }

    /// Check a built transaction's `fee` at `choice` moving `amount`.
    ///
    /// # Errors
    /// [`WalletError::FeeTooHigh`] when an automatic rate is above the cap or its fee above the
    /// bound relative to `amount`; explicit rates always pass.
    pub fn check(&self, choice: FeeChoice, fee: Amount, amount: Amount) -> Result<(), WalletError> {
        let FeeChoice::Automatic(rate) = choice else {
            return Ok(());
        };
        let bound = if rate > self.max_auto_rate {
            FeeBound::Cap(self.max_auto_rate)
        } else if fee > self.max_fee(amount) {
            FeeBound::Relative {
                percent: self.max_fee_percent,
                moved: amount,
                max: self.max_fee(amount),
            }
        } else {
            return Ok(());
        };
        Err(WalletError::FeeTooHigh { rate, fee, bound })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: FeePolicy = DEFAULT_FEE_POLICY;

    #[test]
    fn automatic_fees_are_bounded_explicit_ones_are_not() {
        let amount = Amount::from_sat(100_000);
        // The hostile case: 1 BTC/kvB = 100,000 sat/vB.
        let hostile = FeeRate::from_sat_per_vb_u32(100_000);
        let e = P
            .check(
                FeeChoice::Automatic(hostile),
                Amount::from_sat(154_250),
                amount,
            )
            .unwrap_err()
            .to_string();
        assert!(e.contains("100000 sat/vB"), "{e}");
        assert!(e.contains("154250 sat"), "{e}");
        assert!(e.contains("200 sat/vB"), "{e}");
        assert!(P
            .check(
                FeeChoice::Explicit(hostile),
                Amount::from_sat(154_250),
                amount
            )
            .is_ok());
        // Under the cap, but 15% of the amount.
        let r = FeeRate::from_sat_per_vb_u32(100);
        let e = P
            .check(FeeChoice::Automatic(r), Amount::from_sat(15_000), amount)
            .unwrap_err()
            .to_string();
        assert!(e.contains("10% of the 100000 sat moved (10000 sat)"), "{e}");
        // Exactly at the bound passes; one sat more does not.
        assert!(P
            .check(FeeChoice::Automatic(r), Amount::from_sat(10_000), amount)
            .is_ok());
        assert!(P
            .check(FeeChoice::Automatic(r), Amount::from_sat(10_001), amount)
            .is_err());
        // Small payments at ordinary rates pass.
        assert!(P
            .check(
                FeeChoice::Automatic(FeeRate::from_sat_per_vb_u32(5)),
                Amount::from_sat(800),
                Amount::from_sat(1_000)
            )
            .is_ok());
        assert_eq!(
            FeeChoice::from(r),
            FeeChoice::Explicit(r),
            "a caller's own rate is explicit"
        );
    }

    #[test]
    fn max_rate_for_is_the_tighter_bound() {
        // 10% of 20,000 sat over 150 vB = 13.3 sat/vB.
        let r = P.max_rate_for(Amount::from_sat(20_000), 150);
        assert_eq!(r.to_sat_per_kwu(), 2_000 * 250 / 150);
        // A big amount: the absolute cap.
        assert_eq!(
            P.max_rate_for(Amount::from_sat(1_000_000_000), 150),
            P.max_auto_rate
        );
    }
}
