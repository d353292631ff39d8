//! BIP340 Schnorr signatures of the engine's signed messages (echo-broadcast headers, delivery
//! and receipt statements, gate bits), computed by libsecp256k1 through rust-bitcoin's
//! `secp256k1` crate.
//!
//! libsecp256k1 is Bitcoin Core's own implementation, constant-time where the secret key is
//! involved, and here 4-5x faster than a pure-Rust one (signing 27-33 us against 137-158 us,
//! verifying 34-51 us against 85-129 us): every echo-broadcast round signs one header and
//! verifies `n - 1`, so on a short round (a dot product's reduction and opening) the
//! signatures were a fifth of a party's CPU.
//!
//! Signing uses the BIP340 default nonce with 32 zero bytes of auxiliary randomness: the nonce
//! is derived from the secret key and the message, so a signature is a function of both (the
//! same message signed twice gives the same bytes).
//!
//! Source: BIP340, "Schnorr Signatures for secp256k1"
//! (<https://github.com/bitcoin/bips/blob/master/bip-0340.mediawiki>).

use std::fmt;
use std::sync::LazyLock;

use bitcoin::secp256k1::{schnorr, All, Keypair, Message, Secp256k1, SecretKey, XOnlyPublicKey};
use rand::{CryptoRng, RngCore};

/// One context for all signing and verification (libsecp256k1's contexts are immutable after
/// creation and safe to share between threads).
static SECP: LazyLock<Secp256k1<All>> = LazyLock::new(Secp256k1::new);

/// The auxiliary randomness of every signature (see the module docs).
const ZERO_AUX: [u8; 32] = [0; 32];

/// A key's bytes are not a valid secret key or x-only public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(&'static str);

/// A BIP340 secret key, with its x-only public key.
#[derive(Clone)]
pub struct SigningKey {
    keypair: Keypair,
    verifying: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.verifying)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key with secret scalar `bytes` (32 bytes, big-endian, in `[1, n - 1]`).
    ///
    /// # Errors
    /// [`KeyError`] if `bytes` is not 32 bytes or not such a scalar.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let secret = SecretKey::from_slice(bytes)
            .map_err(|_| KeyError("a secret key is 32 bytes, a scalar in [1, n - 1]"))?;
        Ok(Self::from_secret(secret))
    }

    /// The key of a `secp256k1` secret key.
    pub fn from_secret(secret: SecretKey) -> Self {
        let keypair = Keypair::from_secret_key(&SECP, &secret);
        let verifying = VerifyingKey(keypair.x_only_public_key().0);
        SigningKey { keypair, verifying }
    }

    /// A uniformly random key: 32 bytes from `rng` until they are a valid scalar (the draw
    /// of `k256`'s `NonZeroScalar::random`, so a seeded generator gives the same public keys).
    pub fn random<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            if let Ok(secret) = SecretKey::from_slice(&bytes) {
                return Self::from_secret(secret);
            }
        }
    }

    /// The x-only public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The BIP340 signature (64 bytes) of the 32-byte message `digest`.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> [u8; 64] {
        let msg = Message::from_digest(*digest);
        SECP.sign_schnorr_with_aux_rand(&msg, &self.keypair, &ZERO_AUX)
            .serialize()
    }
}

/// A BIP340 x-only public key (32 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VerifyingKey(XOnlyPublicKey);

impl VerifyingKey {
    /// The key whose x coordinate is `bytes` (32 bytes, big-endian).
    ///
    /// # Errors
    /// [`KeyError`] if `bytes` is not 32 bytes or not the x coordinate of a curve point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        XOnlyPublicKey::from_slice(bytes)
            .map(VerifyingKey)
            .map_err(|_| KeyError("a public key is the 32-byte x coordinate of a curve point"))
    }

    /// The 32-byte x coordinate.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.serialize()
    }

    /// Whether `signature` (64 bytes) is this key's BIP340 signature of the 32-byte message
    /// `digest`. Malformed signature bytes (`r` not a field element, `s` not below the group
    /// order) do not verify.
    pub fn verify_digest(&self, digest: &[u8; 32], signature: &[u8; 64]) -> bool {
        let Ok(sig) = schnorr::Signature::from_slice(signature) else {
            return false;
        };
        SECP.verify_schnorr(&sig, &Message::from_digest(*digest), &self.0)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::schnorr::signature::hazmat::{PrehashSigner, PrehashVerifier};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// The signatures are BIP340's: byte for byte those of the pure-Rust implementation
    /// (`k256`, zero auxiliary randomness), and each library verifies the other's.
    #[test]
    fn same_signatures_as_k256() {
        let mut rng = StdRng::seed_from_u64(3);
        for i in 0..40u8 {
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            let ours = SigningKey::from_bytes(&secret).unwrap();
            let theirs = k256::schnorr::SigningKey::from_bytes(&secret).unwrap();
            assert_eq!(
                ours.verifying_key().to_bytes()[..],
                theirs.verifying_key().to_bytes()[..],
                "x-only keys"
            );
            let digest = [i; 32];
            let sig = ours.sign_digest(&digest);
            let k: k256::schnorr::Signature = theirs.sign_prehash(&digest).unwrap();
            assert_eq!(sig[..], k.to_bytes()[..], "signature {i}");
            assert!(theirs.verifying_key().verify_prehash(&digest, &k).is_ok());
            assert!(ours.verifying_key().verify_digest(&digest, &k.to_bytes()));
        }
    }

    /// A seeded generator draws the same keys as `k256`'s `SigningKey::random` (compared by
    /// their public keys: `k256` keeps the secret negated to an even-y point).
    #[test]
    fn random_keys_match_k256() {
        let (mut a, mut b) = (StdRng::seed_from_u64(9), StdRng::seed_from_u64(9));
        for _ in 0..8 {
            let ours = SigningKey::random(&mut a);
            let theirs = k256::schnorr::SigningKey::random(&mut b);
            assert_eq!(
                ours.verifying_key().to_bytes()[..],
                theirs.verifying_key().to_bytes()[..]
            );
        }
    }

    /// A flipped bit in the digest, the signature or the key fails; malformed bytes fail
    /// without a panic.
    #[test]
    fn tampering_fails() {
        let sk = SigningKey::from_bytes(&[7; 32]).unwrap();
        let other = SigningKey::from_bytes(&[8; 32]).unwrap();
        let digest = [1u8; 32];
        let sig = sk.sign_digest(&digest);
        let vk = sk.verifying_key();
        assert!(vk.verify_digest(&digest, &sig));
        for byte in [0, 31, 32, 63] {
            let mut bad = sig;
            bad[byte] ^= 1;
            assert!(!vk.verify_digest(&digest, &bad), "signature byte {byte}");
        }
        let mut d = digest;
        d[5] ^= 0x80;
        assert!(!vk.verify_digest(&d, &sig));
        assert!(!other.verifying_key().verify_digest(&digest, &sig));
        assert!(!vk.verify_digest(&digest, &[0xff; 64]));
        assert!(SigningKey::from_bytes(&[0; 32]).is_err());
        assert!(SigningKey::from_bytes(&[0xff; 32]).is_err());
        assert!(SigningKey::from_bytes(&[1; 31]).is_err());
        // p + 1 is not a field element; 31 bytes is not a key.
        assert!(VerifyingKey::from_bytes(&[0xff; 32]).is_err());
        assert!(VerifyingKey::from_bytes(&[1; 31]).is_err());
    }
}
