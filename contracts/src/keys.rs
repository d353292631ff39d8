//! Keys as the toolkit reads and prints them, and the taproot internal key of our contracts.

use std::sync::OnceLock;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{All, PublicKey, Scalar, Secp256k1, SecretKey, XOnlyPublicKey};

use crate::Error;

/// BIP341's NUMS point `H` (lift_x of the SHA256 of the uncompressed generator), even y.
pub const NUMS_H: &str = "0250929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0";

/// The process-wide signing and verification context (building one costs far more than a
/// signature, so it is built once).
pub(crate) fn secp() -> &'static Secp256k1<All> {
    static CTX: OnceLock<Secp256k1<All>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::new)
}

/// BIP341's NUMS point `H` as a full public key.
pub fn nums_h() -> PublicKey {
    static H: OnceLock<PublicKey> = OnceLock::new();
    *H.get_or_init(|| NUMS_H.parse().expect("NUMS_H is a valid point"))
}

/// Parse a 33-byte compressed public key (66 hex), naming `field` in the error.
///
/// # Errors
/// [`Error::InvalidKey`] for anything else (x-only or uncompressed keys included).
pub fn parse_key(field: &str, text: &str) -> Result<PublicKey, Error> {
    let text = text.trim();
    let bad = || Error::InvalidKey {
        field: field.to_owned(),
        value: text.to_owned(),
    };
    if text.len() != 66 {
        return Err(bad());
    }
    text.parse::<PublicKey>().map_err(|_| bad())
}

/// Parse a sha256 hash (64 hex), naming `field` in the error.
///
/// # Errors
/// [`Error::InvalidHash`] when it is not exactly 32 bytes of hex.
pub fn parse_hash(field: &str, text: &str) -> Result<sha256::Hash, Error> {
    let text = text.trim();
    let bytes = decode_hex(text).map_err(|reason| Error::InvalidHash {
        field: field.to_owned(),
        value: text.to_owned(),
        reason,
    })?;
    sha256::Hash::from_slice(&bytes).map_err(|_| Error::InvalidHash {
        field: field.to_owned(),
        value: text.to_owned(),
        reason: format!("got {} bytes", bytes.len()),
    })
}

/// Parse a 32-byte scalar (64 hex), naming `field` in the error.
///
/// # Errors
/// [`Error::InvalidScalar`] when it is not a valid nonzero scalar.
pub fn parse_scalar(field: &str, text: &str) -> Result<SecretKey, Error> {
    let text = text.trim();
    let bad = || Error::InvalidScalar {
        field: field.to_owned(),
        value: text.to_owned(),
    };
    let bytes = decode_hex(text).map_err(|_| bad())?;
    SecretKey::from_slice(&bytes).map_err(|_| bad())
}

pub(crate) fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    use bitcoin::hex::FromHex;
    Vec::<u8>::from_hex(text).map_err(|e| e.to_string())
}

pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    use bitcoin::hex::DisplayHex;
    bytes.to_lower_hex_string()
}

/// The taproot internal key of an escrow or bond.
///
/// Our contracts have no key path unless the parties agree a cooperative key, so the internal
/// key must be one nobody can sign for. We use `H + rG` (BIP341's suggestion), with `r` a fresh
/// random scalar kept in the contract file, rather than `H` itself: with plain `H` every
/// observer of a script-path spend sees the same internal key and can tell "this is a
/// btcmpc-style contract"; with `H + rG` the key looks like any other, while anyone holding the
/// contract file can check that it is `H + rG` and therefore unspendable. Plain `H` is kept
/// for previews that write no file (`contract compile`), so the same policy always prints the
/// same address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalKey {
    /// BIP341's NUMS point `H`.
    Nums,
    /// `H + rG`: unspendable, and unlinkable to `H` without `r`.
    NumsTweaked {
        /// The blinding scalar `r`.
        r: SecretKey,
    },
    /// A key the parties can sign for together (a key-path spend).
    Cooperative(PublicKey),
}

impl InternalKey {
    /// A fresh `H + rG` with `r` drawn from `rng`.
    pub fn random_nums<R: bitcoin::secp256k1::rand::Rng + ?Sized>(rng: &mut R) -> InternalKey {
        InternalKey::NumsTweaked {
            r: SecretKey::new(rng),
        }
    }

    /// The internal key as a full point.
    pub fn public_key(&self) -> PublicKey {
        match self {
            InternalKey::Nums => nums_h(),
            InternalKey::NumsTweaked { r } => nums_h()
                .add_exp_tweak(secp(), &Scalar::from(*r))
                .expect("H + rG is never the point at infinity: the discrete log of H is unknown"),
            InternalKey::Cooperative(pk) => *pk,
        }
    }

    /// The x-only form used in the output key.
    pub fn x_only(&self) -> XOnlyPublicKey {
        self.public_key().x_only_public_key().0
    }

    /// `nums`, `nums-tweaked` or `cooperative`, as written in contract files.
    pub fn kind(&self) -> &'static str {
        match self {
            InternalKey::Nums => "nums",
            InternalKey::NumsTweaked { .. } => "nums-tweaked",
            InternalKey::Cooperative(_) => "cooperative",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nums_h_is_bip341s() {
        // BIP341: H = lift_x(SHA256(uncompressed G)).
        let g = "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798\
                 483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8";
        let digest = sha256::Hash::hash(&decode_hex(g).unwrap());
        assert_eq!(encode_hex(digest.as_byte_array()), &NUMS_H[2..]);
    }

    #[test]
    fn tweaked_nums_differs_and_is_reproducible() {
        let r = SecretKey::from_slice(&[7u8; 32]).unwrap();
        let a = InternalKey::NumsTweaked { r }.public_key();
        let b = InternalKey::NumsTweaked { r }.public_key();
        assert_eq!(a, b);
        assert_ne!(a, nums_h());
        let rg = PublicKey::from_secret_key(secp(), &r);
        assert_eq!(a, nums_h().combine(&rg).unwrap());
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = parse_key("receiver", "02abcd").unwrap_err().to_string();
        assert!(e.starts_with("receiver:"), "{e}");
        let e = parse_hash("hash", &"ab".repeat(31))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("hash:") && e.contains("31 bytes"), "{e}");
        assert!(parse_hash("hash", &"ab".repeat(32)).is_ok());
        assert!(parse_scalar("r", &"00".repeat(32)).is_err());
    }
}
