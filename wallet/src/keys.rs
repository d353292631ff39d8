//! Keys derived from the wallet's mnemonic.
//!
//! Spending keys follow BIP86 (`m/86'/coin'/0'/{0,1}/*`). Contract keys (escrow, bond, anchor,
//! service and party keys) live on their own hardened path, `m/4743'/coin'/0'/index'`, which no
//! standard wallet derives: ordinary wallet transactions can never spend a contract output by
//! accident, and every contract key is recoverable from the mnemonic alone.

use bdk_wallet::keys::bip39::{Language, Mnemonic};
use bdk_wallet::template::{Bip86, DescriptorTemplate};
use bdk_wallet::KeychainKind;
use bitcoin::bip32::{ChildNumber, DerivationPath, Xpriv};
use bitcoin::secp256k1::{All, Keypair, PublicKey, Secp256k1};
use bitcoin::{Network, NetworkKind};

use crate::WalletError;

/// The BIP32 purpose of contract keys (`m/4743'/coin'/0'/index'`).
pub const CONTRACT_PURPOSE: u32 = 4743;

/// Parse a BIP39 English mnemonic, tolerating extra white space.
///
/// # Errors
/// [`WalletError::Mnemonic`] naming what is wrong (word count, unknown word, checksum).
pub fn parse_mnemonic(text: &str) -> Result<Mnemonic, WalletError> {
    let words: Vec<&str> = text.split_whitespace().collect();
    Mnemonic::parse_in(Language::English, words.join(" ")).map_err(WalletError::Mnemonic)
}

/// A fresh 12-word mnemonic from the operating system's randomness.
pub fn generate_mnemonic() -> Mnemonic {
    use rand::RngCore;
    let mut entropy = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut entropy);
    Mnemonic::from_entropy_in(Language::English, &entropy)
        .expect("16 bytes of entropy always make a valid 12-word mnemonic")
}

/// The wallet's root keys.
#[derive(Clone)]
pub struct Seed {
    master: Xpriv,
    network: Network,
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seed")
            .field(
                "fingerprint",
                &self.master.fingerprint(&Secp256k1::signing_only()),
            )
            .field("network", &self.network)
            .finish()
    }
}

impl Seed {
    /// Derive the master key from a mnemonic (empty passphrase).
    ///
    /// # Errors
    /// [`WalletError::MasterKey`], never in practice: BIP32 master derivation can fail only
    /// with negligible probability.
    pub fn from_mnemonic(mnemonic: &Mnemonic, network: Network) -> Result<Self, WalletError> {
        let seed = mnemonic.to_seed("");
        let master =
            Xpriv::new_master(NetworkKind::from(network), &seed).map_err(WalletError::MasterKey)?;
        Ok(Seed { master, network })
    }

    /// The network the keys are for.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The master extended private key.
    pub fn master(&self) -> &Xpriv {
        &self.master
    }

    /// BIP86 descriptors for the external and internal keychains, with private keys.
    pub fn descriptors(&self) -> (String, String) {
        let ext = Bip86(self.master, KeychainKind::External)
            .build(NetworkKind::from(self.network))
            .expect("BIP86 template on a master key always builds");
        let int = Bip86(self.master, KeychainKind::Internal)
            .build(NetworkKind::from(self.network))
            .expect("BIP86 template on a master key always builds");
        (
            ext.0.to_string_with_secret(&ext.1),
            int.0.to_string_with_secret(&int.1),
        )
    }

    fn coin_type(&self) -> u32 {
        if self.network == Network::Bitcoin {
            0
        } else {
            1
        }
    }

    /// The derivation path of contract key `index`.
    pub fn contract_path(&self, index: u32) -> DerivationPath {
        let hardened = |i: u32| ChildNumber::from_hardened_idx(i).expect("indices below 2^31");
        DerivationPath::from(vec![
            hardened(CONTRACT_PURPOSE),
            hardened(self.coin_type()),
            hardened(0),
            hardened(index & 0x7fff_ffff),
        ])
    }

    /// Contract key pair `index`.
    pub fn contract_keypair(&self, secp: &Secp256k1<All>, index: u32) -> Keypair {
        let xprv = self
            .master
            .derive_priv(secp, &self.contract_path(index))
            .expect("hardened derivation from a valid key cannot fail");
        Keypair::from_secret_key(secp, &xprv.private_key)
    }

    /// Contract public key `index` (33-byte compressed).
    pub fn contract_pubkey(&self, secp: &Secp256k1<All>, index: u32) -> PublicKey {
        self.contract_keypair(secp, index).public_key()
    }

    /// A 32-byte key for a purpose, derived from the seed (for example the backup key or the
    /// job key from which hashlock secrets are derived).
    pub fn derive_secret(&self, purpose: &str) -> [u8; 32] {
        use hkdf::Hkdf;
        use sha2::Sha256;
        let hk = Hkdf::<Sha256>::new(
            Some(b"btcmpc/v1/seed"),
            &self.master.private_key.secret_bytes(),
        );
        let mut out = [0u8; 32];
        hk.expand(purpose.as_bytes(), &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    #[test]
    fn bip86_vector_first_address() {
        // BIP86 test vector: first receiving address of the "abandon ... about" mnemonic.
        let m = parse_mnemonic(WORDS).unwrap();
        let seed = Seed::from_mnemonic(&m, Network::Bitcoin).unwrap();
        let (ext, _) = seed.descriptors();
        let secp = Secp256k1::new();
        let (desc, _keys) = miniscript::Descriptor::parse_descriptor(&secp, &ext).unwrap();
        let addr = desc
            .at_derivation_index(0)
            .unwrap()
            .address(Network::Bitcoin)
            .unwrap();
        assert_eq!(
            addr.to_string(),
            "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
        );
    }

    #[test]
    fn contract_keys_are_hardened_and_distinct() {
        let secp = Secp256k1::new();
        let seed = Seed::from_mnemonic(&parse_mnemonic(WORDS).unwrap(), Network::Regtest).unwrap();
        assert_eq!(seed.contract_path(7).to_string(), "4743'/1'/0'/7'");
        let a = seed.contract_pubkey(&secp, 0);
        let b = seed.contract_pubkey(&secp, 1);
        assert_ne!(a, b);
        // Deterministic: the same mnemonic gives the same key.
        let again = Seed::from_mnemonic(&parse_mnemonic(WORDS).unwrap(), Network::Regtest).unwrap();
        assert_eq!(again.contract_pubkey(&secp, 0), a);
    }

    #[test]
    fn bad_mnemonic_is_named() {
        let err = parse_mnemonic("abandon abandon").unwrap_err();
        assert!(err.to_string().starts_with("invalid mnemonic"), "{err}");
        let err = parse_mnemonic(&WORDS.replace("about", "abandon")).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }
}
