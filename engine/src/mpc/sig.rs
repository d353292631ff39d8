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

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        hex::decode_to_slice(s, &mut out).unwrap();
        out
    }

    /// BIP340's test vectors 0-14 with 32-byte messages (bip-0340/test-vectors.csv): the
    /// valid ones verify, vector 0 (zero auxiliary randomness) signs to its bytes, and every
    /// invalid one (key off the curve or above p, R with odd y, negated message or s,
    /// sG - eP at infinity, r off the curve, r = p, s = n) fails, whether the key is refused
    /// at parsing or the signature at verification.
    #[test]
    fn bip340_test_vectors() {
        const M: &str = "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89";
        const P1: &str = "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659";
        let vectors: [(&str, &str, &str, bool); 15] = [
            ("F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9", "0000000000000000000000000000000000000000000000000000000000000000", "E907831F80848D1069A5371B402410364BDF1C5F8307B0084C55F1CE2DCA821525F66A4A85EA8B71E482A74F382D2CE5EBEEE8FDB2172F477DF4900D310536C0", true),
            (P1, M, "6896BD60EEAE296DB48A229FF71DFE071BDE413E6D43F917DC8DCF8C78DE33418906D11AC976ABCCB20B091292BFF4EA897EFCB639EA871CFA95F6DE339E4B0A", true),
            ("DD308AFEC5777E13121FA72B9CC1B7CC0139715309B086C960E18FD969774EB8", "7E2D58D8B3BCDF1ABADEC7829054F90DDA9805AAB56C77333024B9D0A508B75C", "5831AAEED7B44BB74E5EAB94BA9D4294C49BCF2A60728D8B4C200F50DD313C1BAB745879A5AD954A72C45A91C3A51D3C7ADEA98D82F8481E0E1E03674A6F3FB7", true),
            ("25D1DFF95105F5253C4022F628A996AD3A0D95FBF21D468A1B33F8C160D8F517", "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", "7EB0509757E246F19449885651611CB965ECC1A187DD51B64FDA1EDC9637D5EC97582B9CB13DB3933705B32BA982AF5AF25FD78881EBB32771FC5922EFC66EA3", true),
            ("D69C3509BB99E412E68B0FE8544E72837DFA30746D8BE2AA65975F29D22DC7B9", "4DF3C3F68FCC83B27E9D42C90431A72499F17875C81A599B566C9889B9696703", "00000000000000000000003B78CE563F89A0ED9414F5AA28AD0D96D6795F9C6376AFB1548AF603B3EB45C9F8207DEE1060CB71C04E80F593060B07D28308D7F4", true),
            ("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34", M, "6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E17776969E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B", false),
            (P1, M, "FFF97BD5755EEEA420453A14355235D382F6472F8568A18B2F057A14602975563CC27944640AC607CD107AE10923D9EF7A73C643E166BE5EBEAFA34B1AC553E2", false),
            (P1, M, "1FA62E331EDBC21C394792D2AB1100A7B432B013DF3F6FF4F99FCB33E0E1515F28890B3EDB6E7189B630448B515CE4F8622A954CFE545735AAEA5134FCCDB2BD", false),
            (P1, M, "6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E177769961764B3AA9B2FFCB6EF947B6887A226E8D7C93E00C5ED0C1834FF0D0C2E6DA6", false),
            (P1, M, "0000000000000000000000000000000000000000000000000000000000000000123DDA8328AF9C23A94C1FEECFD123BA4FB73476F0D594DCB65C6425BD186051", false),
            (P1, M, "00000000000000000000000000000000000000000000000000000000000000017615FBAF5AE28864013C099742DEADB4DBA87F11AC6754F93780D5A1837CF197", false),
            (P1, M, "4A298DACAE57395A15D0795DDBFD1DCB564DA82B0F269BC70A74F8220429BA1D69E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B", false),
            (P1, M, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F69E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B", false),
            (P1, M, "6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E177769FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", false),
            ("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC30", M, "6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E17776969E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B", false),
        ];
        for (i, (key, msg, sig, valid)) in vectors.iter().enumerate() {
            let (key, msg, sig) = (unhex::<32>(key), unhex::<32>(msg), unhex::<64>(sig));
            let ours = VerifyingKey::from_bytes(&key).is_ok_and(|vk| vk.verify_digest(&msg, &sig));
            assert_eq!(ours, *valid, "vector {i}");
            assert_eq!(ours, k256_verifies(&key, &msg, &sig), "vector {i}: as k256");
        }
        let sk = SigningKey::from_bytes(&unhex::<32>(
            "0000000000000000000000000000000000000000000000000000000000000003",
        ))
        .unwrap();
        assert_eq!(
            sk.sign_digest(&[0; 32]),
            unhex::<64>(vectors[0].2),
            "vector 0 signs to its bytes"
        );
    }

    /// What `k256` said of a (key, digest, signature): the verifier this module replaced.
    fn k256_verifies(key: &[u8; 32], digest: &[u8; 32], sig: &[u8; 64]) -> bool {
        let Ok(vk) = k256::schnorr::VerifyingKey::from_bytes(key) else {
            return false;
        };
        let Ok(sig) = k256::schnorr::Signature::try_from(&sig[..]) else {
            return false;
        };
        vk.verify_prehash(digest, &sig).is_ok()
    }

    /// Keys and signatures as they may come from a file, a peer or the chain: every crafted
    /// or random public key is accepted exactly when `k256` accepted it, every malformed
    /// signature (r or s zero, r = p, r = p - 1, r above p, s = n, s above n, n - s, all zeros,
    /// all ones, halves swapped, any one bit flipped) fails as it failed under `k256`, and
    /// secret keys of every length or value out of [1, n - 1] are refused, all without a panic.
    #[test]
    fn malformed_keys_and_signatures_are_refused_as_k256_refused_them() {
        const P: &str = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F";
        const N: &str = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141";
        let p = unhex::<32>(P);
        let n = unhex::<32>(N);
        // Functions, not closures: rustc 1.95.0 at -O miscompiles a closure that mutates an
        // array it takes by value (the caller's copy is written through).
        fn add1(mut x: [u8; 32]) -> [u8; 32] {
            for b in x.iter_mut().rev() {
                let (v, carry) = b.overflowing_add(1);
                *b = v;
                if !carry {
                    break;
                }
            }
            x
        }
        fn sub1(mut x: [u8; 32]) -> [u8; 32] {
            for b in x.iter_mut().rev() {
                let (v, borrow) = b.overflowing_sub(1);
                *b = v;
                if !borrow {
                    break;
                }
            }
            x
        }
        let small = |v: u8| {
            let mut x = [0u8; 32];
            x[31] = v;
            x
        };
        // Public keys: crafted x coordinates and random ones.
        let mut rng = StdRng::seed_from_u64(11);
        let mut keys: Vec<[u8; 32]> = vec![[0; 32], [0xff; 32], p, add1(p), sub1(p), n, add1(n)];
        keys.extend((0..=9).map(small));
        for _ in 0..500 {
            let mut x = [0u8; 32];
            rng.fill_bytes(&mut x);
            keys.push(x);
        }
        let mut accepted = 0;
        for key in &keys {
            let ours = VerifyingKey::from_bytes(key);
            let theirs = k256::schnorr::VerifyingKey::from_bytes(key);
            assert_eq!(ours.is_ok(), theirs.is_ok(), "key {}", hex::encode(key));
            if let Ok(vk) = ours {
                assert_eq!(vk.to_bytes(), *key);
                accepted += 1;
            }
        }
        assert!(accepted > 200 && accepted < keys.len() - 200, "{accepted}");
        for len in [0, 1, 31, 33, 64] {
            assert!(
                VerifyingKey::from_bytes(&vec![2u8; len]).is_err(),
                "length {len}"
            );
            assert!(
                SigningKey::from_bytes(&vec![2u8; len]).is_err(),
                "length {len}"
            );
        }
        for secret in [[0; 32], [0xff; 32], n, add1(n), p] {
            assert!(SigningKey::from_bytes(&secret).is_err());
            assert!(k256::schnorr::SigningKey::from_bytes(&secret).is_err());
        }
        assert!(SigningKey::from_bytes(&sub1(n)).is_ok());
        assert!(SigningKey::from_bytes(&small(1)).is_ok());

        // Signatures: malformed variants of valid ones.
        for k in 0..6u8 {
            let sk = SigningKey::random(&mut rng);
            let key = sk.verifying_key().to_bytes();
            let digest = [k.wrapping_mul(37); 32];
            let sig = sk.sign_digest(&digest);
            assert!(k256_verifies(&key, &digest, &sig));
            let (r, s): ([u8; 32], [u8; 32]) =
                (sig[..32].try_into().unwrap(), sig[32..].try_into().unwrap());
            let join = |r: [u8; 32], s: [u8; 32]| {
                let mut out = [0u8; 64];
                out[..32].copy_from_slice(&r);
                out[32..].copy_from_slice(&s);
                out
            };
            // n - s, by schoolbook subtraction.
            let mut neg_s = [0u8; 32];
            let mut borrow = 0i16;
            for i in (0..32).rev() {
                let d = i16::from(n[i]) - i16::from(s[i]) - borrow;
                neg_s[i] = d.rem_euclid(256) as u8;
                borrow = i16::from(d < 0);
            }
            let mut bad = vec![
                join([0; 32], s),
                join(p, s),
                join(sub1(p), s),
                join(add1(p), s),
                join([0xff; 32], s),
                join(r, [0; 32]),
                join(r, n),
                join(r, add1(n)),
                join(r, [0xff; 32]),
                join(r, neg_s),
                join(s, r),
                [0; 64],
                [0xff; 64],
            ];
            for bit in 0..512 {
                let mut flipped = sig;
                flipped[bit / 8] ^= 1 << (bit % 8);
                bad.push(flipped);
            }
            let vk = sk.verifying_key();
            for b in &bad {
                assert!(!vk.verify_digest(&digest, b), "key {k}: {}", hex::encode(b));
                assert!(
                    !k256_verifies(&key, &digest, b),
                    "key {k}: {}",
                    hex::encode(b)
                );
            }
        }
    }
}
