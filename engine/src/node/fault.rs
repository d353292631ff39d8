//! The fault switchboard: one named way for a party process to misbehave at one named step,
//! for tests and demos on regtest only.
//!
//! A party daemon takes a [`Fault`] only through an option whose name says it is for testing
//! (`btcmpc party run --testing-fault NAME`, or the variable `BTCMPC_TESTING_FAULT`), and only on
//! regtest ([`Fault::allowed_on`]). The behaviours are those of the in-process committee's evil
//! twins ([`crate::mpc::check::CheckMachine::lie_in_opening`] and friends), reachable across
//! processes.

use std::fmt;
use std::str::FromStr;

use bitcoin::Network;

/// A step of the store at which a crash can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultStep {
    /// Committing the received shares and sending the signed receipt.
    Receipt,
    /// Sending a signed message of the store check (after it is persisted in the outbox: a
    /// crash *before* this step is the crash between signing and sending).
    CheckSend,
    /// Recording the owner's STORE_COMMIT.
    Commit,
    /// Persisting a job's signed quote (after: persisted, not sent).
    Quote,
    /// Sealing and persisting a job's delivery (after: persisted, not sent).
    Deliver,
    /// Recording the service's escrow funding (after: recorded, not answered).
    Paid,
    /// Broadcasting the claim (after: broadcast and kept by the wallet, not recorded).
    Claim,
}

impl FaultStep {
    fn name(self) -> &'static str {
        match self {
            FaultStep::Receipt => "receipt",
            FaultStep::CheckSend => "check-send",
            FaultStep::Commit => "commit",
            FaultStep::Quote => "quote",
            FaultStep::Deliver => "deliver",
            FaultStep::Paid => "paid",
            FaultStep::Claim => "claim",
        }
    }
}

/// One way to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Takes the shares and signs the receipt, then sends nothing in the store check.
    Withhold,
    /// Adds one to its store-check opening before signing it (a lying check opening).
    WrongOpening,
    /// Signs two different store-check openings and sends one to the lower half of the
    /// committee, the other to the upper half.
    Equivocate,
    /// Signs a receipt for a hash that is not the hash of what it received.
    BadReceipt,
    /// Adds one to every value of its masked output share before sealing it (a wrong output
    /// share: the service's decoding names it, and the evidence convicts it).
    WrongOutputShare,
    /// Adds one to its masked degree-`2t` values in every degree reduction of a job (a wrong
    /// product contribution: the additive attack version 1 does not detect).
    WrongProduct,
    /// Computes and delivers like an honest party, but its claimer never claims a paid
    /// escrow output, so `k_i` is never revealed: the service decodes from the others and is
    /// refunded that output after `T` (PROTOCOL.md, job flow, step 7).
    WithholdKey,
    /// Computes like an honest party but delivers the first gate bit of the job's plan
    /// flipped (signed): the service takes the bit `2t + 1` parties agree on and names it.
    WrongGateBit,
    /// Drops every message to this party (1-based index).
    DropTo(u32),
    /// Dies (abort, like `kill -9`) just before the step.
    CrashBefore(FaultStep),
    /// Dies (abort, like `kill -9`) just after the step.
    CrashAfter(FaultStep),
}

impl Fault {
    /// Whether a fault may be configured on `network`: regtest only.
    pub fn allowed_on(network: Network) -> bool {
        network == Network::Regtest
    }

    /// Every accepted spelling, for help texts and errors.
    pub const NAMES: &'static str = "withhold, wrong-opening, equivocate, bad-receipt, \
         wrong-output-share, wrong-product, withhold-key, wrong-gate-bit, drop-to:K, \
         crash-before:STEP, crash-after:STEP (STEP: receipt, check-send, commit, quote, \
         deliver, paid, claim)";
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Withhold => write!(f, "withhold"),
            Fault::WrongOpening => write!(f, "wrong-opening"),
            Fault::Equivocate => write!(f, "equivocate"),
            Fault::BadReceipt => write!(f, "bad-receipt"),
            Fault::WrongOutputShare => write!(f, "wrong-output-share"),
            Fault::WrongProduct => write!(f, "wrong-product"),
            Fault::WithholdKey => write!(f, "withhold-key"),
            Fault::WrongGateBit => write!(f, "wrong-gate-bit"),
            Fault::DropTo(k) => write!(f, "drop-to:{k}"),
            Fault::CrashBefore(s) => write!(f, "crash-before:{}", s.name()),
            Fault::CrashAfter(s) => write!(f, "crash-after:{}", s.name()),
        }
    }
}

/// An unknown fault name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown testing fault {0:?}: expected one of {names}", names = Fault::NAMES)]
pub struct UnknownFault(pub String);

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnknownFault(s.to_string());
        let step = |name: &str| match name {
            "receipt" => Ok(FaultStep::Receipt),
            "check-send" => Ok(FaultStep::CheckSend),
            "commit" => Ok(FaultStep::Commit),
            "quote" => Ok(FaultStep::Quote),
            "deliver" => Ok(FaultStep::Deliver),
            "paid" => Ok(FaultStep::Paid),
            "claim" => Ok(FaultStep::Claim),
            _ => Err(bad()),
        };
        Ok(match s.split_once(':') {
            None => match s {
                "withhold" => Fault::Withhold,
                "wrong-opening" => Fault::WrongOpening,
                "equivocate" => Fault::Equivocate,
                "bad-receipt" => Fault::BadReceipt,
                "wrong-output-share" => Fault::WrongOutputShare,
                "wrong-product" => Fault::WrongProduct,
                "withhold-key" => Fault::WithholdKey,
                "wrong-gate-bit" => Fault::WrongGateBit,
                _ => return Err(bad()),
            },
            Some(("drop-to", k)) => {
                Fault::DropTo(k.parse().ok().filter(|k| *k >= 1).ok_or_else(bad)?)
            }
            Some(("crash-before", st)) => Fault::CrashBefore(step(st)?),
            Some(("crash-after", st)) => Fault::CrashAfter(step(st)?),
            _ => return Err(bad()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_round_trips_and_typos_are_named() {
        for name in [
            "withhold",
            "wrong-opening",
            "equivocate",
            "bad-receipt",
            "wrong-output-share",
            "wrong-product",
            "withhold-key",
            "wrong-gate-bit",
            "drop-to:3",
            "crash-before:receipt",
            "crash-after:check-send",
            "crash-before:commit",
            "crash-after:quote",
            "crash-before:deliver",
            "crash-after:paid",
            "crash-after:claim",
        ] {
            let f: Fault = name.parse().unwrap();
            assert_eq!(f.to_string(), name);
        }
        for bad in [
            "",
            "drop-to:0",
            "drop-to:x",
            "crash-before:lunch",
            "withold",
        ] {
            let e = bad.parse::<Fault>().unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
        assert!(Fault::allowed_on(Network::Regtest));
        assert!(!Fault::allowed_on(Network::Signet));
        assert!(!Fault::allowed_on(Network::Bitcoin));
    }
}
