//! Lock values (`after(n)`, `older(n)`) checked against Bitcoin Core's rules before anything
//! is compiled, written or funded.
//!
//! Bitcoin Core's Miniscript parser (src/script/miniscript.h, `Parse`) accepts `after(n)` and
//! `older(n)` only for `1 <= n < 2^31`; rust-miniscript 12 also accepts `after(2147483648)`
//! (its `MAX_ABSOLUTE_LOCKTIME` is inclusive), which compiles to a path Core refuses to parse
//! and no transaction can satisfy. The consensus meaning is:
//! - `after(n)` (`OP_CHECKLOCKTIMEVERIFY`, BIP65): `n < 500,000,000` is a block height, from
//!   500,000,000 on a Unix time.
//! - `older(n)` (`OP_CHECKSEQUENCEVERIFY`, BIP112 with BIP68's encoding): bit 31 is the disable
//!   flag (refused by the `n < 2^31` bound), bit 22 the type flag (set: units of 512 seconds,
//!   clear: blocks), bits 0-15 the count. Consensus ignores every other bit, so `older(65536)`
//!   means a lock of 0 blocks. Core's parser accepts such values; we refuse them (and a count of
//!   0), since the path they make is not the lock the number reads as: every value we accept is
//!   one Core accepts, with the meaning it reads as.

use std::fmt;

use crate::Error;

/// Below this an absolute lock is a block height, from it on a Unix time (BIP65, nLockTime).
pub const LOCKTIME_THRESHOLD: u32 = 500_000_000;

/// The largest lock value Bitcoin Core's Miniscript accepts, `2^31 - 1`.
pub const MAX_MINISCRIPT_LOCK: u32 = 0x7fff_ffff;

/// BIP68's type flag: the relative lock counts 512-second units, not blocks.
pub const SEQUENCE_TYPE_FLAG: u32 = 1 << 22;

/// BIP68's mask of the count.
pub const SEQUENCE_COUNT_MASK: u32 = 0xffff;

/// What an `after(n)` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbsoluteLock {
    /// Spendable from this block height on (`1 <= n < 500,000,000`).
    Height(u32),
    /// Spendable once the median time past reaches this Unix time
    /// (`500,000,000 <= n < 2^31`).
    Time(u32),
}

/// What an `older(n)` means (BIP68).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelativeLock {
    /// Spendable this many blocks after the output confirmed (1..=65535).
    Blocks(u16),
    /// Spendable this many 512-second units after the output confirmed (1..=65535).
    Time512(u16),
}

impl fmt::Display for AbsoluteLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbsoluteLock::Height(h) => write!(f, "from block height {h}"),
            AbsoluteLock::Time(t) => write!(f, "from Unix time {t} (median time past)"),
        }
    }
}

impl fmt::Display for RelativeLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelativeLock::Blocks(n) => write!(f, "{n} blocks after confirmation"),
            RelativeLock::Time512(n) => {
                write!(
                    f,
                    "{n} x 512 s ({} s) after confirmation",
                    u32::from(*n) * 512
                )
            }
        }
    }
}

const AFTER_RULE: &str = "Bitcoin Core's Miniscript accepts after(n) for 1 <= n < 2147483648 (2^31) only; n < 500000000 is a block height, from 500000000 on a Unix time";
const OLDER_RULE: &str = "Bitcoin Core's Miniscript accepts older(n) for 1 <= n < 2147483648 (2^31) only; bit 31 is BIP68's disable flag";
const OLDER_BITS_RULE: &str = "BIP68 reads only bits 0-15 (the count) and bit 22 (the type flag, 512-second units) of older(n); other bits are ignored by consensus, so the lock is not the one the number reads as";
const OLDER_ZERO_RULE: &str =
    "BIP68 reads bits 0-15 of older(n) as the count, and a count of 0 is no lock at all";

fn refused(fragment: &str, text: &str, rule: &'static str) -> Error {
    Error::InvalidLock {
        lock: format!("{fragment}({text})"),
        rule,
    }
}

fn parse_decimal(fragment: &str, text: &str, rule: &'static str) -> Result<u32, Error> {
    // Core's ToIntegral: an optional sign and decimal digits, nothing else.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refused(fragment, text, rule));
    }
    let n: u64 = text.parse().map_err(|_| refused(fragment, text, rule))?;
    if n == 0 || n > u64::from(MAX_MINISCRIPT_LOCK) {
        return Err(refused(fragment, text, rule));
    }
    Ok(n as u32)
}

/// Check the argument of `after(n)`.
///
/// # Errors
/// [`Error::InvalidLock`] unless `n` is a decimal with `1 <= n < 2^31`.
pub fn check_after(text: &str) -> Result<AbsoluteLock, Error> {
    let n = parse_decimal("after", text, AFTER_RULE)?;
    Ok(if n < LOCKTIME_THRESHOLD {
        AbsoluteLock::Height(n)
    } else {
        AbsoluteLock::Time(n)
    })
}

/// Check the argument of `older(n)`.
///
/// # Errors
/// [`Error::InvalidLock`] unless `n` is a decimal with `1 <= n < 2^31`, no bits set besides
/// 0-15 and 22, and a nonzero count in bits 0-15.
pub fn check_older(text: &str) -> Result<RelativeLock, Error> {
    let n = parse_decimal("older", text, OLDER_RULE)?;
    if n & !(SEQUENCE_TYPE_FLAG | SEQUENCE_COUNT_MASK) != 0 {
        return Err(refused("older", text, OLDER_BITS_RULE));
    }
    let count = (n & SEQUENCE_COUNT_MASK) as u16;
    if count == 0 {
        return Err(refused("older", text, OLDER_ZERO_RULE));
    }
    Ok(if n & SEQUENCE_TYPE_FLAG != 0 {
        RelativeLock::Time512(count)
    } else {
        RelativeLock::Blocks(count)
    })
}

/// A lock found in a policy or descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// `after(n)`.
    After(AbsoluteLock),
    /// `older(n)`.
    Older(RelativeLock),
}

impl fmt::Display for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lock::After(a) => a.fmt(f),
            Lock::Older(r) => r.fmt(f),
        }
    }
}

/// Find every `after(...)` and `older(...)` in a policy, Miniscript or descriptor text and
/// check its argument, in order of appearance. Keys and hashes are hex, so the two names
/// cannot occur inside them.
///
/// # Errors
/// The first [`Error::InvalidLock`].
pub fn check_locks_in(text: &str) -> Result<Vec<(String, Lock)>, Error> {
    let mut found = Vec::new();
    for (name, is_after) in [("after(", true), ("older(", false)] {
        let mut rest = text;
        let mut offset = 0;
        while let Some(i) = rest.find(name) {
            let start = i + name.len();
            let arg_len = rest[start..].find(')').unwrap_or(rest.len() - start);
            let arg = &rest[start..start + arg_len];
            let lock = if is_after {
                Lock::After(check_after(arg)?)
            } else {
                Lock::Older(check_older(arg)?)
            };
            found.push((offset + i, format!("{}{arg})", name), lock));
            offset += start;
            rest = &rest[start..];
        }
    }
    found.sort_by_key(|(at, _, _)| *at);
    Ok(found.into_iter().map(|(_, s, l)| (s, l)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_boundaries() {
        assert_eq!(check_after("1").unwrap(), AbsoluteLock::Height(1));
        assert_eq!(
            check_after("499999999").unwrap(),
            AbsoluteLock::Height(499_999_999)
        );
        assert_eq!(
            check_after("500000000").unwrap(),
            AbsoluteLock::Time(500_000_000)
        );
        assert_eq!(
            check_after("2147483647").unwrap(),
            AbsoluteLock::Time(2_147_483_647)
        );
        for bad in [
            "0",
            "2147483648",
            "4294967295",
            "4294967296",
            "-1",
            "+5",
            "1e3",
            "",
        ] {
            let e = check_after(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("after({bad})")), "{e}");
            assert!(e.contains("1 <= n < 2147483648"), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn older_boundaries() {
        assert_eq!(check_older("1").unwrap(), RelativeLock::Blocks(1));
        assert_eq!(check_older("65535").unwrap(), RelativeLock::Blocks(65535));
        assert_eq!(check_older("4194305").unwrap(), RelativeLock::Time512(1));
        assert_eq!(
            check_older("4259839").unwrap(),
            RelativeLock::Time512(65535)
        );
        // 65536: bit 16, ignored by consensus (a lock of 0 blocks).
        let e = check_older("65536").unwrap_err().to_string();
        assert!(e.contains("older(65536)") && e.contains("bits 0-15"), "{e}");
        // The type flag with a count of 0.
        let e = check_older("4194304").unwrap_err().to_string();
        assert!(
            e.contains("older(4194304)") && e.contains("count of 0"),
            "{e}"
        );
        // 2^31 - 1 sets ignored bits; 2^31 is the disable flag.
        assert!(check_older("2147483647").is_err());
        let e = check_older("2147483648").unwrap_err().to_string();
        assert!(
            e.contains("older(2147483648)") && e.contains("disable flag"),
            "{e}"
        );
        assert!(check_older("0").is_err());
    }

    #[test]
    fn scans_policies() {
        let locks = check_locks_in("or(pk(A),and(older(144),after(500000001)))").unwrap();
        assert_eq!(
            locks,
            vec![
                (
                    "older(144)".to_owned(),
                    Lock::Older(RelativeLock::Blocks(144))
                ),
                (
                    "after(500000001)".to_owned(),
                    Lock::After(AbsoluteLock::Time(500_000_001))
                ),
            ]
        );
        let e = check_locks_in("thresh(2,pk(A),pk(B),after(2147483648))")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("policy: after(2147483648) "), "{e}");
    }
}
