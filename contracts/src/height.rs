//! Absolute block heights, the only timelocks our contracts use.

use std::fmt;

use bitcoin::absolute::LockTime;

use crate::Error;

/// An absolute block height `1 <= h < 500_000_000`, usable in `after(h)` and as an nLockTime.
///
/// Heights at or above 500,000,000 are Unix times to the consensus rules, and 0 disables the
/// timelock, so neither is a valid contract timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Height(u32);

impl Height {
    /// The smallest valid height.
    pub const MIN: Height = Height(1);
    /// The largest valid height.
    pub const MAX: Height = Height(499_999_999);

    /// A height, if `1 <= h < 500_000_000`.
    ///
    /// # Errors
    /// [`Error::InvalidHeight`] (field `height`) when `h` is out of range.
    pub fn new(h: u32) -> Result<Height, Error> {
        if (Self::MIN.0..=Self::MAX.0).contains(&h) {
            Ok(Height(h))
        } else {
            Err(Error::InvalidHeight {
                field: "height".to_owned(),
                value: h.to_string(),
            })
        }
    }

    /// Parse an absolute height from text, naming `field` in the error.
    ///
    /// # Errors
    /// [`Error::RelativeHeight`] for `+N` (it needs the chain tip), [`Error::InvalidHeight`]
    /// for anything that is not a decimal in range.
    pub fn parse_field(field: &str, text: &str) -> Result<Height, Error> {
        let text = text.trim();
        if text.starts_with('+') {
            return Err(Error::RelativeHeight {
                field: field.to_owned(),
                value: text.to_owned(),
            });
        }
        let bad = || Error::InvalidHeight {
            field: field.to_owned(),
            value: text.to_owned(),
        };
        let h: u32 = text.parse().map_err(|_| bad())?;
        Height::new(h).map_err(|_| bad())
    }

    /// The height as a number.
    pub fn to_u32(self) -> u32 {
        self.0
    }

    /// The nLockTime that makes a transaction valid from this height on.
    pub fn lock_time(self) -> LockTime {
        LockTime::from_height(self.0).expect("a Height is always below the height/time threshold")
    }

    /// The height one block earlier, if any.
    pub fn prev(self) -> Option<Height> {
        Height::new(self.0 - 1).ok()
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Height {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Height::parse_field("height", s)
    }
}

impl TryFrom<u32> for Height {
    type Error = Error;
    fn try_from(h: u32) -> Result<Self, Self::Error> {
        Height::new(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_boundaries() {
        assert!(Height::new(0).is_err());
        assert_eq!(Height::new(1).unwrap().to_u32(), 1);
        assert_eq!(Height::new(499_999_999).unwrap().to_u32(), 499_999_999);
        assert!(Height::new(500_000_000).is_err());
        assert!(matches!(
            Height::parse_field("timeout", "+10"),
            Err(Error::RelativeHeight { .. })
        ));
        let err = Height::parse_field("timeout", "abc")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("timeout:"), "{err}");
        assert!(Height::new(1).unwrap().prev().is_none());
        assert!(Height::new(500).unwrap().lock_time().is_block_height());
    }
}
