//! A party's signed card: who it is (party key), how to reach it (transport key, endpoint),
//! what it charges and how much work it takes on.
//!
//! The card is signed by the party key (a contract key of the party's wallet, 33-byte
//! compressed secp256k1) with a BIP340 Schnorr signature over the BIP340 tagged hash
//! (tag `btcmpc/v1/card`) of the card's canonical encoding ([`PartyCard::signed_bytes`]). The
//! signature binds the X25519 transport key to the party key, so pinning the party key pins the
//! transport key too.
//!
//! JSON shape (version 1), frozen by `tests/fixtures/node/card.json`:
//!
//! ```json
//! {"version": 1, "network": "regtest", "party_key": "02…", "transport_key": "…64 hex…",
//!  "endpoint": "127.0.0.1:7001", "fee_sat": 1000, "max_open_jobs": 4,
//!  "signature": "…128 hex…", "bond": null}
//! ```
//!
//! `bond` (`{"outpoint": "TXID:VOUT", "exit": HEIGHT}`) is written by `party bond` and is not
//! covered by the signature: the manifest check authenticates it on chain (the output must pay
//! exactly the bond contract of this party and roster, whose script commits to the exit height).

use std::path::Path;
use std::str::FromStr;

use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::secp256k1::{schnorr, Keypair, Message, PublicKey, Secp256k1};
use bitcoin::{Network, OutPoint};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The card format version this code writes and reads.
pub const CARD_VERSION: u64 = 1;

/// Largest endpoint string (`HOST:PORT`), in bytes.
pub const MAX_ENDPOINT_LEN: usize = 255;

/// Largest file this module reads (cards, rosters, manifests), in bytes.
pub const MAX_FILE_LEN: u64 = 1 << 20;

/// Everything that can be wrong with a card, roster or manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The JSON does not parse or has the wrong shape.
    #[error("{what}: {reason}")]
    Format {
        /// What was being read.
        what: String,
        /// Why it was refused.
        reason: String,
    },
    /// A version this code does not read.
    #[error("{what}: unsupported version {version} (this build reads {supported})")]
    Version {
        /// What was being read.
        what: &'static str,
        /// The version found.
        version: u64,
        /// The version supported.
        supported: u64,
    },
    /// A field holds an invalid value.
    #[error("invalid {field} {value:?}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A signature does not verify.
    #[error("{what}: signature of party key {key} does not verify")]
    BadSignature {
        /// Which object.
        what: String,
        /// The key it should verify under.
        key: String,
    },
    /// The roster lacks signatures.
    #[error("roster is not signed by parties {missing:?}")]
    Unsigned {
        /// The party indices (1-based) whose signature is missing.
        missing: Vec<usize>,
    },
    /// Two cards share a key.
    #[error("parties {first} and {second} share the {which} key {key}")]
    DuplicateKey {
        /// `party` or `transport`.
        which: &'static str,
        /// The key.
        key: String,
        /// The first index (1-based).
        first: usize,
        /// The second index (1-based).
        second: usize,
    },
    /// The committee size does not allow the threshold.
    #[error("n = {n}, t = {t}: {reason}")]
    Threshold {
        /// Committee size.
        n: usize,
        /// Threshold.
        t: usize,
        /// Why it is refused.
        reason: String,
    },
    /// Items are not in party order or are missing.
    #[error("{0}")]
    Indices(String),
    /// This wallet or datadir is not what the operation needs.
    #[error("{0}")]
    Wallet(String),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The system's reason.
        reason: String,
    },
}

/// BIP340's tagged hash: `sha256(sha256(tag) || sha256(tag) || msg)`.
pub fn tagged_hash(tag: &str, msg: &[u8]) -> [u8; 32] {
    let t = sha256::Hash::hash(tag.as_bytes());
    let mut e = sha256::Hash::engine();
    e.input(t.as_byte_array());
    e.input(t.as_byte_array());
    e.input(msg);
    sha256::Hash::from_engine(e).to_byte_array()
}

/// Sign `digest` with BIP340 (no auxiliary randomness: the signature is deterministic, so the
/// same card or roster always serializes to the same bytes).
pub fn schnorr_sign(keypair: &Keypair, digest: [u8; 32]) -> [u8; 64] {
    let secp = Secp256k1::signing_only();
    secp.sign_schnorr_no_aux_rand(&Message::from_digest(digest), keypair)
        .serialize()
}

/// Verify a BIP340 signature on `digest` by `key` (its x-only form).
pub fn schnorr_verify(key: &PublicKey, digest: [u8; 32], sig: &[u8; 64]) -> bool {
    let secp = Secp256k1::verification_only();
    let Ok(sig) = schnorr::Signature::from_slice(sig) else {
        return false;
    };
    secp.verify_schnorr(
        &sig,
        &Message::from_digest(digest),
        &key.x_only_public_key().0,
    )
    .is_ok()
}

pub(crate) fn network_name(n: Network) -> &'static str {
    match n {
        Network::Bitcoin => "bitcoin",
        Network::Testnet => "testnet",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        _ => "regtest",
    }
}

pub(crate) fn parse_network(text: &str) -> Result<Network, SetupError> {
    match text {
        "bitcoin" => Ok(Network::Bitcoin),
        "testnet" => Ok(Network::Testnet),
        "testnet4" => Ok(Network::Testnet4),
        "signet" => Ok(Network::Signet),
        "regtest" => Ok(Network::Regtest),
        _ => Err(field(
            "network",
            text,
            "expected bitcoin, testnet4, signet or regtest",
        )),
    }
}

pub(crate) fn field(name: &'static str, value: &str, reason: impl Into<String>) -> SetupError {
    SetupError::Field {
        field: name,
        value: value.chars().take(200).collect(),
        reason: reason.into(),
    }
}

pub(crate) fn parse_pubkey(name: &'static str, text: &str) -> Result<PublicKey, SetupError> {
    if text.len() != 66 {
        return Err(field(
            name,
            text,
            "expected a 33-byte compressed key (66 hex)",
        ));
    }
    PublicKey::from_str(text).map_err(|e| field(name, text, e.to_string()))
}

pub(crate) fn parse_hex_array<const N: usize>(
    name: &'static str,
    text: &str,
) -> Result<[u8; N], SetupError> {
    let bytes = hex::decode(text).map_err(|e| field(name, text, e.to_string()))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| field(name, text, format!("expected {N} bytes, got {}", b.len())))
}

pub(crate) fn parse_outpoint(name: &'static str, text: &str) -> Result<OutPoint, SetupError> {
    OutPoint::from_str(text).map_err(|e| field(name, text, format!("expected TXID:VOUT ({e})")))
}

/// Check an endpoint `HOST:PORT`: non-empty printable ASCII host (brackets for IPv6), port
/// 1 to 65535, at most [`MAX_ENDPOINT_LEN`] bytes.
///
/// # Errors
/// [`SetupError::Field`] naming the endpoint.
pub fn check_endpoint(text: &str) -> Result<(), SetupError> {
    let bad = |r: &str| field("endpoint", text, r.to_string());
    if text.len() > MAX_ENDPOINT_LEN {
        return Err(bad("longer than 255 bytes"));
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| bad("expected HOST:PORT"))?;
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("the host must be non-empty printable ASCII"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && !port.starts_with('0') => Ok(()),
        _ => Err(bad("the port must be 1 to 65535")),
    }
}

/// Where a party's bond lives, as its card records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BondRef {
    /// The bond output.
    pub outpoint: OutPoint,
    /// The exit height the bond script commits to (blocks).
    pub exit: u32,
}

/// A party's card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyCard {
    /// The network the party operates on.
    pub network: Network,
    /// The party key (33-byte compressed, from the wallet's contract path).
    pub party_key: PublicKey,
    /// The X25519 public key of the party's Noise static key (32 bytes).
    pub transport_key: [u8; 32],
    /// `HOST:PORT` where the party listens.
    pub endpoint: String,
    /// The party's fee per job, in sats.
    pub fee_sat: u64,
    /// How many jobs the party takes on at once.
    pub max_open_jobs: u32,
    /// BIP340 signature by the party key over [`PartyCard::digest`].
    pub signature: [u8; 64],
    /// The party's bond, once funded (not signed; checked on chain).
    pub bond: Option<BondRef>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CardJson {
    version: u64,
    network: String,
    party_key: String,
    transport_key: String,
    endpoint: String,
    fee_sat: u64,
    max_open_jobs: u32,
    signature: String,
    bond: Option<BondJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BondJson {
    outpoint: String,
    exit: u32,
}

impl PartyCard {
    /// Build and sign a card with `keypair` (the party key).
    ///
    /// # Errors
    /// [`SetupError::Field`] for a bad endpoint or zero `max_open_jobs`.
    pub fn new(
        network: Network,
        keypair: &Keypair,
        transport_key: [u8; 32],
        endpoint: &str,
        fee_sat: u64,
        max_open_jobs: u32,
    ) -> Result<PartyCard, SetupError> {
        check_endpoint(endpoint)?;
        if max_open_jobs == 0 {
            return Err(field("max_open_jobs", "0", "must be at least 1"));
        }
        let mut card = PartyCard {
            network,
            party_key: keypair.public_key(),
            transport_key,
            endpoint: endpoint.to_string(),
            fee_sat,
            max_open_jobs,
            signature: [0; 64],
            bond: None,
        };
        card.signature = schnorr_sign(keypair, card.digest());
        Ok(card)
    }

    /// The canonical encoding the signature covers:
    /// `version (1) | len(network) (1) | network | party_key (33) | transport_key (32) |
    /// len(endpoint) (2, BE) | endpoint | fee_sat (8, BE) | max_open_jobs (4, BE)`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let net = network_name(self.network).as_bytes();
        let mut b = Vec::with_capacity(128);
        b.push(CARD_VERSION as u8);
        b.push(net.len() as u8);
        b.extend_from_slice(net);
        b.extend_from_slice(&self.party_key.serialize());
        b.extend_from_slice(&self.transport_key);
        b.extend_from_slice(&(self.endpoint.len() as u16).to_be_bytes());
        b.extend_from_slice(self.endpoint.as_bytes());
        b.extend_from_slice(&self.fee_sat.to_be_bytes());
        b.extend_from_slice(&self.max_open_jobs.to_be_bytes());
        b
    }

    /// The tagged hash (`btcmpc/v1/card`) of [`PartyCard::signed_bytes`].
    pub fn digest(&self) -> [u8; 32] {
        tagged_hash("btcmpc/v1/card", &self.signed_bytes())
    }

    /// Check the endpoint and the signature.
    ///
    /// # Errors
    /// [`SetupError::BadSignature`], [`SetupError::Field`].
    pub fn verify(&self) -> Result<(), SetupError> {
        check_endpoint(&self.endpoint)?;
        if self.max_open_jobs == 0 {
            return Err(field("max_open_jobs", "0", "must be at least 1"));
        }
        if !schnorr_verify(&self.party_key, self.digest(), &self.signature) {
            return Err(SetupError::BadSignature {
                what: format!("card of {}", self.endpoint),
                key: self.party_key.to_string(),
            });
        }
        Ok(())
    }

    /// The card as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(CardJson {
            version: CARD_VERSION,
            network: network_name(self.network).into(),
            party_key: self.party_key.to_string(),
            transport_key: hex::encode(self.transport_key),
            endpoint: self.endpoint.clone(),
            fee_sat: self.fee_sat,
            max_open_jobs: self.max_open_jobs,
            signature: hex::encode(self.signature),
            bond: self.bond.map(|b| BondJson {
                outpoint: b.outpoint.to_string(),
                exit: b.exit,
            }),
        })
        .expect("a card always serializes")
    }

    /// The card as pretty JSON.
    pub fn to_json(&self) -> String {
        pretty(&self.to_value())
    }

    /// Read a card from a JSON value and verify its signature.
    ///
    /// # Errors
    /// [`SetupError::Format`], [`SetupError::Version`], [`SetupError::Field`],
    /// [`SetupError::BadSignature`].
    pub fn from_value(v: Value) -> Result<PartyCard, SetupError> {
        if let Some(version) = v.get("version").and_then(Value::as_u64) {
            if version != CARD_VERSION {
                return Err(SetupError::Version {
                    what: "card",
                    version,
                    supported: CARD_VERSION,
                });
            }
        }
        let j: CardJson = serde_json::from_value(v).map_err(|e| SetupError::Format {
            what: "card".into(),
            reason: e.to_string(),
        })?;
        let bond = match j.bond {
            None => None,
            Some(b) => Some(BondRef {
                outpoint: parse_outpoint("bond outpoint", &b.outpoint)?,
                exit: b.exit,
            }),
        };
        let card = PartyCard {
            network: parse_network(&j.network)?,
            party_key: parse_pubkey("party_key", &j.party_key)?,
            transport_key: parse_hex_array("transport_key", &j.transport_key)?,
            endpoint: j.endpoint,
            fee_sat: j.fee_sat,
            max_open_jobs: j.max_open_jobs,
            signature: parse_hex_array("signature", &j.signature)?,
            bond,
        };
        card.verify()?;
        Ok(card)
    }

    /// Parse and verify a card from JSON text.
    ///
    /// # Errors
    /// As [`PartyCard::from_value`].
    pub fn from_json(text: &str) -> Result<PartyCard, SetupError> {
        PartyCard::from_value(parse_json("card", text)?)
    }

    /// Read and verify a card file.
    ///
    /// # Errors
    /// [`SetupError::Io`] and as [`PartyCard::from_json`].
    pub fn load(path: &Path) -> Result<PartyCard, SetupError> {
        PartyCard::from_json(&read_bounded(path)?).map_err(|e| in_file(path, e))
    }
}

pub(crate) fn in_file(path: &Path, e: SetupError) -> SetupError {
    match e {
        SetupError::Format { what, reason } => SetupError::Format {
            what: format!("{what} {}", path.display()),
            reason,
        },
        other => other,
    }
}

pub(crate) fn parse_json(what: &str, text: &str) -> Result<Value, SetupError> {
    serde_json::from_str(text).map_err(|e| SetupError::Format {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("a JSON value always serializes");
    s.push('\n');
    s
}

/// Read a file of at most [`MAX_FILE_LEN`] bytes as UTF-8.
///
/// # Errors
/// [`SetupError::Io`] when it cannot be read or is too large.
pub fn read_bounded(path: &Path) -> Result<String, SetupError> {
    let io = |reason: String| SetupError::Io {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| io(e.to_string()))?;
    if meta.len() > MAX_FILE_LEN {
        return Err(io(format!(
            "{} bytes, more than the {MAX_FILE_LEN} allowed",
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| io(e.to_string()))
}

/// Write `bytes` to `path` atomically and durably with Unix permissions `mode`
/// ([`btcmpc_wallet::fs::write_atomic`]: temporary file, fsync, rename, directory fsync).
///
/// # Errors
/// [`SetupError::Io`].
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SetupError> {
    btcmpc_wallet::fs::write_atomic(path, bytes, mode).map_err(|e| SetupError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The party's X25519 transport secret (its Noise static key), stored as 64 hex in a 0600 file.
pub struct TransportSecret(x25519_dalek::StaticSecret);

impl std::fmt::Debug for TransportSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransportSecret({})", hex::encode(self.public()))
    }
}

impl TransportSecret {
    /// A fresh secret from the operating system's generator.
    pub fn generate() -> TransportSecret {
        TransportSecret(x25519_dalek::StaticSecret::random_from_rng(
            rand::rngs::OsRng,
        ))
    }

    /// The 32-byte secret (for the Noise handshake).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The 32-byte public key that goes in the card.
    pub fn public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.0).to_bytes()
    }

    /// Write the secret to `path` (mode 0600), refusing to overwrite an existing file.
    ///
    /// # Errors
    /// [`SetupError::Io`], also when the file exists.
    pub fn save_new(&self, path: &Path) -> Result<(), SetupError> {
        if path.exists() {
            return Err(SetupError::Io {
                path: path.display().to_string(),
                reason: "already exists; refusing to replace a transport key".into(),
            });
        }
        write_atomic(
            path,
            format!("{}\n", hex::encode(self.0.to_bytes())).as_bytes(),
            0o600,
        )
    }

    /// Read a secret written by [`TransportSecret::save_new`].
    ///
    /// # Errors
    /// [`SetupError::Io`], [`SetupError::Field`] for anything but 64 hex.
    pub fn load(path: &Path) -> Result<TransportSecret, SetupError> {
        let text = read_bounded(path)?;
        let bytes: [u8; 32] = parse_hex_array("transport secret", text.trim()).map_err(|_| {
            field(
                "transport secret",
                &path.display().to_string(),
                "expected 64 hex",
            )
        })?;
        Ok(TransportSecret(x25519_dalek::StaticSecret::from(bytes)))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bitcoin::secp256k1::SecretKey;

    pub(crate) fn keypair(seed: u8) -> Keypair {
        Keypair::from_secret_key(
            &Secp256k1::new(),
            &SecretKey::from_slice(&[seed; 32]).unwrap(),
        )
    }

    pub(crate) fn card(seed: u8) -> PartyCard {
        PartyCard::new(
            Network::Regtest,
            &keypair(seed),
            [seed; 32],
            &format!("127.0.0.1:{}", 7000 + u32::from(seed)),
            1000,
            4,
        )
        .unwrap()
    }

    #[test]
    fn card_round_trips_and_verifies() {
        let c = card(1);
        let back = PartyCard::from_json(&c.to_json()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn tampered_card_is_refused() {
        for edit in [
            ("endpoint", Value::from("127.0.0.1:9999")),
            ("fee_sat", Value::from(1)),
            ("max_open_jobs", Value::from(5)),
            ("transport_key", Value::from(hex::encode([9u8; 32]))),
            ("network", Value::from("signet")),
        ] {
            let mut v = card(1).to_value();
            v[edit.0] = edit.1;
            let err = PartyCard::from_value(v).unwrap_err();
            assert!(
                matches!(err, SetupError::BadSignature { .. }),
                "{}: {err}",
                edit.0
            );
        }
        // Another party's key over this card's content.
        let mut v = card(1).to_value();
        v["party_key"] = Value::from(keypair(2).public_key().to_string());
        assert!(matches!(
            PartyCard::from_value(v),
            Err(SetupError::BadSignature { .. })
        ));
    }

    #[test]
    fn bad_fields_are_named() {
        for (f, val, needle) in [
            ("endpoint", Value::from("nohost"), "endpoint"),
            ("endpoint", Value::from("h:0"), "endpoint"),
            ("endpoint", Value::from(":80"), "endpoint"),
            ("party_key", Value::from("02ab"), "party_key"),
            ("transport_key", Value::from("00"), "transport_key"),
            ("signature", Value::from("zz"), "signature"),
            ("version", Value::from(2), "version 2"),
            ("extra", Value::from(1), "unknown field"),
        ] {
            let mut v = card(1).to_value();
            v[f] = val;
            let err = PartyCard::from_value(v).unwrap_err().to_string();
            assert!(err.contains(needle), "{f}: {err}");
        }
    }

    #[test]
    fn card_format_is_frozen() {
        let mut c = card(1);
        c.bond = Some(BondRef {
            outpoint: OutPoint::from_str(
                "1111111111111111111111111111111111111111111111111111111111111111:2",
            )
            .unwrap(),
            exit: 500,
        });
        let fixture = include_str!("../../tests/fixtures/node/card.json");
        if std::env::var_os("BTCMPC_WRITE_FIXTURES").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/node/card.json"),
                c.to_json(),
            )
            .unwrap();
        }
        assert_eq!(c.to_json(), fixture);
        assert_eq!(PartyCard::from_json(fixture).unwrap(), c);
    }

    #[test]
    fn transport_secret_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("transport.key");
        let s = TransportSecret::generate();
        s.save_new(&p).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert_eq!(TransportSecret::load(&p).unwrap().public(), s.public());
        assert!(TransportSecret::generate().save_new(&p).is_err());
    }
}
