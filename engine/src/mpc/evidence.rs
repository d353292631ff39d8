//! Evidence of misbehaviour that anyone can verify offline: the wrong-output-share rule of
//! PROTOCOL.md, equivocation, and a batch-check opening that disagrees with the signed receipt
//! ([`StoreCheckLie`]).
//!
//! **Delivery.** Party `i` of job `job_id` seals its masked output share vector `y_i` as
//! `c_i = ChaCha20-Poly1305(key, nonce = 0, y_i)` with
//! `key = HKDF-SHA256(ikm = k_i, salt = "btcmpc/v1/seal", info = job_id || u32_be(i))`
//! ([`seal`]), and signs `(job_id, i, H_i, SHA256(c_i))` ([`Delivery`]) where
//! `H_i = SHA256(k_i)`. A zero nonce is safe because every `k_i` is used for one plaintext. The
//! plaintext is `u32_be(len) || y_1 || ... || y_len`, each value canonical.
//!
//! **Wrong output share** ([`WrongOutputShare`]): the accused's signed delivery, `c_i` and the
//! key `k_i` revealed by a confirmed claim (`SHA256(k_i) = H_i`), where `c_i` fails to open or
//! yields `y_i`; and the same three items for at least `2t + 1` other parties whose `y_j` lie on
//! one polynomial `g` of degree at most `t` (in every position), with `y_i != g(i)` (in some
//! position). At most `t` of the others are corrupt, so `g` is the true output polynomial and an
//! honest party can never be convicted. Whether a claim is confirmed is a chain matter: the
//! verifier asks a [`ClaimOracle`] (the judge's node, or a closure in tests).
//!
//! **Equivocation** ([`Equivocation`], [`verify_equivocation`]): two echo-broadcast headers
//! ([`SignedHeader`]) signed by the same party for the same `(job, round, slot)` with different
//! payload hashes.
//!
//! Signatures are BIP340 Schnorr ([`crate::mpc::sig`]) over `SHA256(tag || canonical
//! encoding)`, with zero auxiliary randomness (deterministic, so fixtures are stable; BIP340
//! nonces stay secret as they are derived from the key and message).

use crate::mpc::sig::{SigningKey, VerifyingKey};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::check::{check_id, Challenge};
use super::dealing::{receipts_root, Hash32, PartyShares};
use super::echo::payload_hash;
pub use super::echo::{Equivocation, SignedHeader};
use super::field::{FieldError, PrimeField};
use super::round::PartyId;
use super::shamir::{Lagrange, Params, ShamirError};

/// Salt of the sealing key derivation.
pub const SEAL_SALT: &[u8] = b"btcmpc/v1/seal";
/// Tag of a receipt signature.
pub const RECEIPT_TAG: &[u8] = b"btcmpc/v1/receipt-signature";
/// Tag of a delivery signature.
pub const DELIVERY_TAG: &[u8] = b"btcmpc/v1/delivery";

/// Errors of sealing, signing and evidence verification. Each names what made the evidence
/// invalid; a valid conviction is `Ok`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// A ciphertext does not open under its key.
    #[error("ciphertext of party {index} does not open under its revealed key")]
    Unopenable {
        /// The party (1-based, its evaluation point).
        index: PartyId,
    },
    /// A plaintext is not a well-formed share vector.
    #[error("plaintext of party {index} is malformed: {reason}")]
    Malformed {
        /// The party (1-based, its evaluation point).
        index: PartyId,
        /// What is wrong.
        reason: String,
    },
    /// A signature does not verify under the party's roster key.
    #[error("signature of party {index} does not verify")]
    BadSignature {
        /// The party (1-based, its evaluation point).
        index: PartyId,
    },
    /// A public key has a bad encoding (not the x coordinate of a curve point, or a compressed
    /// key's prefix is not 2 or 3). Malformed signature bytes are a [`Self::BadSignature`].
    #[error("bad key or signature encoding for party {index}")]
    BadEncoding {
        /// The party (1-based, its evaluation point).
        index: PartyId,
    },
    /// The revealed key does not hash to the signed `H_i`.
    #[error("revealed key of party {index} does not hash to its H_i")]
    KeyMismatch {
        /// The party (1-based, its evaluation point).
        index: PartyId,
    },
    /// No confirmed claim reveals this key.
    #[error("no confirmed claim of party {index} reveals its key")]
    ClaimNotConfirmed {
        /// The party (1-based, its evaluation point).
        index: PartyId,
    },
    /// Whether a claim reveals this key could not be found out (the chain could not be
    /// read): the evidence is neither accepted nor refused.
    #[error("cannot check the claim of party {index}: {reason}")]
    ClaimUnknown {
        /// The party (1-based, its evaluation point).
        index: PartyId,
        /// Why.
        reason: String,
    },
    /// Party index problems (range, duplicates, the accused among the others). The index is
    /// kept as given (it may be 0 or above `n`, so it is no [`PartyId`]; for a roster of the
    /// wrong size it is the roster's size).
    #[error("bad party index {index}: {reason}")]
    BadIndex {
        /// The index.
        index: usize,
        /// Why.
        reason: &'static str,
    },
    /// Fewer than `2t + 1` other parties.
    #[error("{got} other parties given, at least {need} needed")]
    TooFewOthers {
        /// Given.
        got: usize,
        /// `2t + 1`.
        need: usize,
    },
    /// The others' shares are not on one polynomial of degree at most `t`.
    #[error(
        "the other parties' shares are not on one polynomial of degree {t} (position {position})"
    )]
    OthersInconsistent {
        /// First offending position.
        position: usize,
        /// Degree.
        t: usize,
    },
    /// The accused's share is on the polynomial: not guilty.
    #[error("party {index}'s share lies on the others' polynomial: no fault")]
    NotGuilty {
        /// The accused (1-based).
        index: PartyId,
    },
    /// The evidence names other committee parameters than the manifest's.
    #[error("evidence is for n = {n}, t = {t}, not the committee's parameters")]
    WrongParams {
        /// `n` in the evidence.
        n: usize,
        /// `t` in the evidence.
        t: usize,
    },
    /// The two messages do not conflict.
    #[error("messages do not conflict: {0}")]
    NoConflict(&'static str),
    /// Bad committee parameters.
    #[error(transparent)]
    Params(#[from] ShamirError),
}

/// A 32-byte x-only BIP340 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartyKey(#[serde(with = "hex_array")] pub [u8; 32]);

impl PartyKey {
    /// The x-only key of a signing key.
    pub fn of(sk: &SigningKey) -> Self {
        PartyKey(sk.verifying_key().to_bytes())
    }

    /// The x-only form of `party`'s 33-byte compressed key (the parity byte is dropped).
    ///
    /// # Errors
    /// [`EvidenceError::BadEncoding`] naming `party` if the prefix is not 2 or 3.
    pub fn from_compressed(bytes: &[u8; 33], party: PartyId) -> Result<Self, EvidenceError> {
        if bytes[0] != 2 && bytes[0] != 3 {
            return Err(EvidenceError::BadEncoding { index: party });
        }
        let mut x = [0u8; 32];
        x.copy_from_slice(&bytes[1..]);
        Ok(PartyKey(x))
    }
}

/// A 64-byte BIP340 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sig(#[serde(with = "hex_array")] pub [u8; 64]);

/// Signs `SHA256(tag || encoding)` with BIP340 (zero auxiliary randomness).
pub fn sign_tagged(sk: &SigningKey, tag: &[u8], encoding: &[u8]) -> Sig {
    let digest = tagged(tag, encoding);
    Sig(sk.sign_digest(&digest))
}

/// Verifies a signature made by [`sign_tagged`] by party `index` (whose key is `key`; the
/// party is only named in the error).
///
/// # Errors
/// [`EvidenceError::BadEncoding`] naming `index` if `key` is not a curve point's x coordinate;
/// [`EvidenceError::BadSignature`] naming `index` if the signature does not verify, malformed
/// bytes (`r >= p`, `s >= n`) included.
pub fn verify_tagged(
    key: &PartyKey,
    tag: &[u8],
    encoding: &[u8],
    sig: &Sig,
    index: PartyId,
) -> Result<(), EvidenceError> {
    let vk = VerifyingKey::from_bytes(&key.0).map_err(|_| EvidenceError::BadEncoding { index })?;
    if vk.verify_digest(&tagged(tag, encoding), &sig.0) {
        Ok(())
    } else {
        Err(EvidenceError::BadSignature { index })
    }
}

fn tagged(tag: &[u8], encoding: &[u8]) -> Hash32 {
    Sha256::new()
        .chain_update(tag)
        .chain_update(encoding)
        .finalize()
        .into()
}

fn sha256(data: &[u8]) -> Hash32 {
    Sha256::digest(data).into()
}

/// The sealing key `HKDF-SHA256(ikm = k_i, salt = SEAL_SALT, info = job_id || u32_be(i))`.
pub fn seal_key(job_id: &Hash32, index: PartyId, k: &Hash32) -> [u8; 32] {
    let mut info = [0u8; 36];
    info[..32].copy_from_slice(job_id);
    info[32..].copy_from_slice(&index.get().to_be_bytes());
    let mut out = [0u8; 32];
    Hkdf::<Sha256>::new(Some(SEAL_SALT), k)
        .expand(&info, &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

/// Encrypts party `index`'s share vector for job `job_id` under `k`.
pub fn seal<F: PrimeField>(job_id: &Hash32, index: PartyId, k: &Hash32, values: &[F]) -> Vec<u8> {
    let mut plain = Vec::with_capacity(4 + values.len() * F::ENCODED_LEN);
    plain.extend_from_slice(&(values.len() as u32).to_be_bytes());
    for v in values {
        plain.extend_from_slice(v.to_repr().as_ref());
    }
    let key = seal_key(job_id, index, k);
    ChaCha20Poly1305::new(&Key::from(key))
        .encrypt(&Nonce::default(), plain.as_slice())
        .expect("ChaCha20-Poly1305 encryption of a bounded plaintext cannot fail")
}

/// Decrypts and parses a sealed share vector.
///
/// # Errors
/// [`EvidenceError::Unopenable`] if authentication fails; [`EvidenceError::Malformed`] if the
/// plaintext is not `u32_be(len) || len canonical values`.
pub fn open<F: PrimeField>(
    job_id: &Hash32,
    index: PartyId,
    k: &Hash32,
    ciphertext: &[u8],
) -> Result<Vec<F>, EvidenceError> {
    let key = seal_key(job_id, index, k);
    let plain = ChaCha20Poly1305::new(&Key::from(key))
        .decrypt(&Nonce::default(), ciphertext)
        .map_err(|_| EvidenceError::Unopenable { index })?;
    let malformed = |reason: String| EvidenceError::Malformed { index, reason };
    let (len, body) = plain
        .split_first_chunk::<4>()
        .ok_or_else(|| malformed("shorter than its length prefix".into()))?;
    let len = u32::from_be_bytes(*len) as usize;
    if body.len() != len.saturating_mul(F::ENCODED_LEN) {
        return Err(malformed(format!(
            "{} bytes for {len} values of {} bytes",
            body.len(),
            F::ENCODED_LEN
        )));
    }
    body.chunks_exact(F::ENCODED_LEN)
        .map(|c| F::from_bytes(c).map_err(|e: FieldError| malformed(e.to_string())))
        .collect()
}

/// What party `i` signs when it delivers `c_i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The job.
    #[serde(with = "hex_array")]
    pub job_id: Hash32,
    /// The party.
    pub index: PartyId,
    /// `H_i = SHA256(k_i)`.
    #[serde(with = "hex_array")]
    pub key_hash: Hash32,
    /// `SHA256(c_i)`.
    #[serde(with = "hex_array")]
    pub ciphertext_hash: Hash32,
}

impl Delivery {
    /// `job_id || u32_be(i) || H_i || SHA256(c_i)`.
    pub fn encoding(&self) -> [u8; 100] {
        let mut e = [0u8; 100];
        e[..32].copy_from_slice(&self.job_id);
        e[32..36].copy_from_slice(&self.index.get().to_be_bytes());
        e[36..68].copy_from_slice(&self.key_hash);
        e[68..].copy_from_slice(&self.ciphertext_hash);
        e
    }

    /// Party `i`'s signature on this delivery.
    pub fn sign(&self, sk: &SigningKey) -> Sig {
        sign_tagged(sk, DELIVERY_TAG, &self.encoding())
    }
}

/// The three items for one party: its signed delivery, `c_i` and the revealed `k_i`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryItem {
    /// The party.
    pub index: PartyId,
    /// `H_i`.
    #[serde(with = "hex_array")]
    pub key_hash: Hash32,
    /// `c_i`.
    #[serde(with = "hex_vec")]
    pub ciphertext: Vec<u8>,
    /// The party's signature on `(job_id, i, H_i, SHA256(c_i))`.
    pub signature: Sig,
    /// `k_i`, as revealed by the party's claim on chain.
    #[serde(with = "hex_array")]
    pub key: Hash32,
}

impl DeliveryItem {
    /// Builds the item of party `index` from its key, values and signing key (what an honest
    /// party produces, and what tests use).
    pub fn create<F: PrimeField>(
        job_id: &Hash32,
        index: PartyId,
        k: &Hash32,
        values: &[F],
        sk: &SigningKey,
    ) -> Self {
        let ciphertext = seal(job_id, index, k, values);
        let d = Delivery {
            job_id: *job_id,
            index,
            key_hash: sha256(k),
            ciphertext_hash: sha256(&ciphertext),
        };
        DeliveryItem {
            index,
            key_hash: d.key_hash,
            signature: d.sign(sk),
            ciphertext,
            key: *k,
        }
    }

    /// Checks signature, key hash and claim; then opens the ciphertext.
    fn authenticate(
        &self,
        job_id: &Hash32,
        roster: &[PartyKey],
        claims: &dyn ClaimOracle,
    ) -> Result<(), EvidenceError> {
        let key = roster
            .get(self.index.slot())
            .ok_or(EvidenceError::BadIndex {
                index: self.index.point(),
                reason: "not in the roster",
            })?;
        let d = Delivery {
            job_id: *job_id,
            index: self.index,
            key_hash: self.key_hash,
            ciphertext_hash: sha256(&self.ciphertext),
        };
        verify_tagged(
            key,
            DELIVERY_TAG,
            &d.encoding(),
            &self.signature,
            self.index,
        )?;
        if sha256(&self.key) != self.key_hash {
            return Err(EvidenceError::KeyMismatch { index: self.index });
        }
        match claims.claim_confirmed(job_id, self.index, &self.key) {
            Ok(true) => Ok(()),
            Ok(false) => Err(EvidenceError::ClaimNotConfirmed { index: self.index }),
            Err(reason) => Err(EvidenceError::ClaimUnknown {
                index: self.index,
                reason,
            }),
        }
    }
}

/// Whether a confirmed claim of party `index` in job `job_id` revealed `key` (the judge's view
/// of the chain).
pub trait ClaimOracle {
    /// True if such a claim is confirmed, false if none is.
    ///
    /// # Errors
    /// Why the answer is not known (the chain could not be read), in one line.
    fn claim_confirmed(
        &self,
        job_id: &Hash32,
        index: PartyId,
        key: &Hash32,
    ) -> Result<bool, String>;
}

/// A closure that always knows the answer (tests, a fixed set of claims).
impl<T: Fn(&Hash32, PartyId, &Hash32) -> bool> ClaimOracle for T {
    fn claim_confirmed(
        &self,
        job_id: &Hash32,
        index: PartyId,
        key: &Hash32,
    ) -> Result<bool, String> {
        Ok(self(job_id, index, key))
    }
}

/// Evidence that party `accused` delivered a wrong output share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrongOutputShare {
    /// Field of the job (`secp256k1` or `m127`).
    pub field: String,
    /// The job.
    #[serde(with = "hex_array")]
    pub job_id: Hash32,
    /// Committee parameters.
    pub params: Params,
    /// The accused's items.
    pub accused: DeliveryItem,
    /// At least `2t + 1` other parties' items.
    pub others: Vec<DeliveryItem>,
}

/// Why the accused is guilty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// `c_i` does not open, or opens to something that is not a share vector.
    Unopenable,
    /// `y_i` has a different number of values than the others'.
    WrongLength,
    /// `y_i != g(i)` at this position.
    OffPolynomial {
        /// The first position where it is off.
        position: usize,
    },
}

impl WrongOutputShare {
    /// Verifies the evidence in field `F` against the committee's parameters and roster keys
    /// (`roster[i - 1]` is party `i`'s key), both taken from the judge's own copy of the
    /// manifest (never from the evidence: a smaller `t` would need fewer honest witnesses), and
    /// the judge's view of claims. `Ok` convicts the accused.
    ///
    /// # Errors
    /// The first reason the evidence is invalid; [`EvidenceError::NotGuilty`] when it is
    /// well-formed but the accused's share is right.
    pub fn verify<F: PrimeField>(
        &self,
        params: Params,
        roster: &[PartyKey],
        claims: &dyn ClaimOracle,
    ) -> Result<Fault, EvidenceError> {
        if self.params != params {
            return Err(EvidenceError::WrongParams {
                n: self.params.n(),
                t: self.params.t(),
            });
        }
        let n = params.n();
        let t = params.t();
        if self.field != F::NAME {
            return Err(EvidenceError::Malformed {
                index: self.accused.index,
                reason: format!("evidence is for field {:?}, not {}", self.field, F::NAME),
            });
        }
        if roster.len() != n {
            return Err(EvidenceError::BadIndex {
                index: roster.len(),
                reason: "roster size differs from n",
            });
        }
        let mut seen = vec![false; n + 1];
        for item in std::iter::once(&self.accused).chain(&self.others) {
            if item.index.point() > n {
                return Err(EvidenceError::BadIndex {
                    index: item.index.point(),
                    reason: "outside 1..=n",
                });
            }
            if std::mem::replace(&mut seen[item.index.point()], true) {
                return Err(EvidenceError::BadIndex {
                    index: item.index.point(),
                    reason: "appears twice",
                });
            }
        }
        if self.others.len() < 2 * t + 1 {
            return Err(EvidenceError::TooFewOthers {
                got: self.others.len(),
                need: 2 * t + 1,
            });
        }
        for item in std::iter::once(&self.accused).chain(&self.others) {
            item.authenticate(&self.job_id, roster, claims)?;
        }
        let others: Vec<Vec<F>> = self
            .others
            .iter()
            .map(|o| open::<F>(&self.job_id, o.index, &o.key, &o.ciphertext))
            .collect::<Result<_, _>>()?;
        let len = others[0].len();
        if let Some(o) = self
            .others
            .iter()
            .zip(&others)
            .find(|(_, v)| v.len() != len)
        {
            return Err(EvidenceError::Malformed {
                index: o.0.index,
                reason: format!("{} values, others have {len}", o.1.len()),
            });
        }
        // g through the first t + 1 others; every other must lie on it.
        let base: Vec<usize> = self.others[..=t].iter().map(|o| o.index.point()).collect();
        let checks: Vec<Lagrange<F>> = self.others[t + 1..]
            .iter()
            .map(|o| Lagrange::new(&base, u64::from(o.index.get())))
            .collect::<Result<_, _>>()?;
        let at_accused = Lagrange::<F>::new(&base, u64::from(self.accused.index.get()))?;
        let mut column = vec![F::ZERO; t + 1];
        let mut first_off = None;
        let accused = open::<F>(
            &self.job_id,
            self.accused.index,
            &self.accused.key,
            &self.accused.ciphertext,
        );
        for pos in 0..len {
            for (c, o) in column.iter_mut().zip(&others) {
                *c = o[pos];
            }
            for (l, o) in checks.iter().zip(&others[t + 1..]) {
                if F::dot(l.weights(), &column) != o[pos] {
                    return Err(EvidenceError::OthersInconsistent { position: pos, t });
                }
            }
            if let Ok(y) = &accused {
                if first_off.is_none()
                    && y.len() == len
                    && F::dot(at_accused.weights(), &column) != y[pos]
                {
                    first_off = Some(pos);
                }
            }
        }
        match accused {
            Err(EvidenceError::Unopenable { .. } | EvidenceError::Malformed { .. }) => {
                Ok(Fault::Unopenable)
            }
            Err(e) => Err(e),
            Ok(y) if y.len() != len => Ok(Fault::WrongLength),
            Ok(_) => first_off
                .map(|position| Fault::OffPolynomial { position })
                .ok_or(EvidenceError::NotGuilty {
                    index: self.accused.index,
                }),
        }
    }
}

/// What party `i` signs for the shares it received: `(context, i, H_i)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The dataset (or job) context of [`PartyShares::receipt_hash`].
    #[serde(with = "hex_array")]
    pub context: Hash32,
    /// The party.
    pub index: PartyId,
    /// `H_i`, the hash of the party's shares.
    #[serde(with = "hex_array")]
    pub hash: Hash32,
}

impl Receipt {
    /// `context || u32_be(i) || H_i`.
    pub fn encoding(&self) -> [u8; 68] {
        let mut e = [0u8; 68];
        e[..32].copy_from_slice(&self.context);
        e[32..36].copy_from_slice(&self.index.get().to_be_bytes());
        e[36..].copy_from_slice(&self.hash);
        e
    }

    /// Party `i`'s signature on its receipt.
    pub fn sign(&self, sk: &SigningKey) -> Sig {
        sign_tagged(sk, RECEIPT_TAG, &self.encoding())
    }

    /// Verifies party `i`'s signature.
    ///
    /// # Errors
    /// [`EvidenceError::BadEncoding`] or [`EvidenceError::BadSignature`].
    pub fn verify(&self, key: &PartyKey, sig: &Sig) -> Result<(), EvidenceError> {
        verify_tagged(key, RECEIPT_TAG, &self.encoding(), sig, self.index)
    }
}

/// Evidence that a party opened, in a batch check, a value that disagrees with the share
/// vector it signed a receipt for (PROTOCOL.md: slashed to the owner).
///
/// Holds the party's signed receipt, the vectors' receipt hashes of all parties (whose root
/// the judge checks against the STORE record, or the job's mask record), the vector the owner
/// revealed (hashing to the party's receipt) and the party's signed opening: an echo-broadcast
/// header whose job identifier is [`crate::mpc::check::check_id`] of the check and whose
/// payload is the one opened value. The judge recomputes the challenge and the opening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "F: PrimeField")]
pub struct StoreCheckLie<F> {
    /// Field name.
    pub field: String,
    /// The check's tag ([`crate::mpc::check::STORE_CHECK_TAG`] or a mask-check tag).
    #[serde(with = "hex_vec")]
    pub tag: Vec<u8>,
    /// Every party's receipt hash, in party order.
    pub receipts: Vec<ReceiptHash>,
    /// The accused's receipt.
    pub receipt: Receipt,
    /// The accused's signature on it.
    pub receipt_signature: Sig,
    /// The vector the owner revealed.
    pub revealed: PartyShares<F>,
    /// The accused's signed opening header.
    pub opening: SignedHeader,
    /// The value the accused opened (hashes to the header's payload hash).
    pub opened: F,
}

/// A receipt hash, hex in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptHash(#[serde(with = "hex_array")] pub Hash32);

impl<F: PrimeField> StoreCheckLie<F> {
    /// The receipts root the judge must find on chain for this evidence to count.
    pub fn receipts_root(&self) -> Hash32 {
        receipts_root(&self.receipts.iter().map(|r| r.0).collect::<Vec<_>>())
    }

    /// Verifies the evidence against the committee's parameters and roster (the judge's
    /// own) and `root_confirmed`, the judge's check that the receipts root is the one recorded
    /// on chain for the store (or job). `Ok` names the lying party.
    ///
    /// # Errors
    /// The first reason the evidence is invalid; [`EvidenceError::NotGuilty`] if the opening
    /// agrees with the revealed vector.
    pub fn verify(
        &self,
        params: Params,
        roster: &[PartyKey],
        root_confirmed: &dyn Fn(&Hash32) -> bool,
    ) -> Result<PartyId, EvidenceError> {
        let party = self.receipt.index;
        let i = party.point();
        let malformed = |reason: &str| EvidenceError::Malformed {
            index: party,
            reason: reason.to_owned(),
        };
        if self.field != F::NAME {
            return Err(malformed("evidence is for another field"));
        }
        if roster.len() != params.n() || self.receipts.len() != params.n() {
            return Err(malformed("roster or receipts do not match n"));
        }
        params.check_index(i)?;
        if self.revealed.index != party || self.opening.sender != party.get() {
            return Err(EvidenceError::BadIndex {
                index: i,
                reason: "receipt, revealed vector and opening name different parties",
            });
        }
        if self.receipts[i - 1].0 != self.receipt.hash {
            return Err(malformed(
                "receipt is not the party's entry in the receipts",
            ));
        }
        let root = self.receipts_root();
        if !root_confirmed(&root) {
            return Err(malformed("receipts root is not recorded on chain"));
        }
        let key = &roster[i - 1];
        self.receipt.verify(key, &self.receipt_signature)?;
        if self.revealed.receipt_hash(&self.receipt.context) != self.receipt.hash {
            return Err(malformed("revealed vector does not hash to the receipt"));
        }
        if self.opening.job != check_id(&self.tag, &root) {
            return Err(malformed("opening is not bound to this check"));
        }
        let vk = VerifyingKey::from_bytes(&key.0)
            .map_err(|_| EvidenceError::BadEncoding { index: party })?;
        self.opening
            .verify(&vk)
            .map_err(|_| EvidenceError::BadSignature { index: party })?;
        if payload_hash(&[self.opened]) != self.opening.payload_hash {
            return Err(malformed(
                "opened value does not match the signed payload hash",
            ));
        }
        let challenge = Challenge::<F>::new(&self.tag, &root, self.revealed.len());
        let recomputed = challenge
            .opening(&self.revealed)
            .map_err(|e| malformed(&e.to_string()))?;
        if recomputed == self.opened {
            Err(EvidenceError::NotGuilty { index: party })
        } else {
            Ok(party)
        }
    }
}

/// Verifies equivocation evidence for a judge: two headers signed by the same party for the
/// same `(job, round, slot)` with different payload hashes ([`SignedHeader`] is the signed
/// format of every echo-broadcast message). `Ok` names the equivocating party.
///
/// # Errors
/// [`EvidenceError::NoConflict`] if the headers are for different slots or senders or carry
/// the same payload hash; [`EvidenceError::BadIndex`] for a sender outside the roster;
/// [`EvidenceError::BadEncoding`] or [`EvidenceError::BadSignature`].
pub fn verify_equivocation(
    ev: &Equivocation,
    roster: &[PartyKey],
) -> Result<PartyId, EvidenceError> {
    let (a, b) = (&ev.first, &ev.second);
    if a.job != b.job || a.round != b.round || a.slot != b.slot {
        return Err(EvidenceError::NoConflict("different (job, round, slot)"));
    }
    if a.sender != b.sender {
        return Err(EvidenceError::NoConflict("different senders"));
    }
    if a.payload_hash == b.payload_hash {
        return Err(EvidenceError::NoConflict("same payload"));
    }
    let not_in_roster = EvidenceError::BadIndex {
        index: a.sender as usize,
        reason: "not in the roster",
    };
    let index = PartyId::from_wire(a.sender).ok_or(not_in_roster.clone())?;
    let key = roster.get(index.slot()).ok_or(not_in_roster)?;
    let vk = VerifyingKey::from_bytes(&key.0).map_err(|_| EvidenceError::BadEncoding { index })?;
    for h in [a, b] {
        h.verify(&vk)
            .map_err(|_| EvidenceError::BadSignature { index })?;
    }
    Ok(index)
}

/// Serde of byte vectors as lower-case hex strings.
mod hex_vec {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(s.as_ref()).map_err(D::Error::custom)
    }
}

/// Serde of byte arrays as lower-case hex strings.
mod hex_array {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        v: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(s.as_ref(), &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};

    #[test]
    fn seal_round_trip_and_tamper() {
        let job = [3u8; 32];
        let k = [4u8; 32];
        let y = vec![Secp256k1Scalar::from_u64(1), -Secp256k1Scalar::ONE];
        let c = seal(&job, PartyId::from_wire(2).unwrap(), &k, &y);
        assert_eq!(
            open::<Secp256k1Scalar>(&job, PartyId::from_wire(2).unwrap(), &k, &c).unwrap(),
            y
        );
        assert_eq!(
            open::<Secp256k1Scalar>(&job, PartyId::from_wire(3).unwrap(), &k, &c),
            Err(EvidenceError::Unopenable {
                index: PartyId::from_wire(3).unwrap()
            })
        );
        let mut bad = c.clone();
        bad[0] ^= 1;
        assert!(open::<Secp256k1Scalar>(&job, PartyId::from_wire(2).unwrap(), &k, &bad).is_err());
        // A 32-byte value is not a m127 value vector.
        assert!(matches!(
            open::<Mersenne127>(&job, PartyId::from_wire(2).unwrap(), &k, &c),
            Err(EvidenceError::Malformed { index, .. }) if index.get() == 2
        ));
    }

    /// A key off the curve is a bad encoding; a signature that does not verify, malformed
    /// bytes included (r = p, s = n, all ones), is a bad signature; neither panics.
    #[test]
    fn malformed_keys_and_signatures_are_refused() {
        let sk = SigningKey::from_bytes(&[7u8; 32]).unwrap();
        let key = PartyKey::of(&sk);
        let p = PartyId::from_wire(1).unwrap();
        let sig = sign_tagged(&sk, RECEIPT_TAG, b"x");
        assert_eq!(verify_tagged(&key, RECEIPT_TAG, b"x", &sig, p), Ok(()));
        let p_bytes: [u8; 32] =
            hex::decode("fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f")
                .unwrap()
                .try_into()
                .unwrap();
        // x = 0 and x = 5 are not on the curve; p and 2^256 - 1 are no field elements.
        let mut five = [0u8; 32];
        five[31] = 5;
        for off_curve in [[0u8; 32], five, p_bytes, [0xff; 32]] {
            assert_eq!(
                verify_tagged(&PartyKey(off_curve), RECEIPT_TAG, b"x", &sig, p),
                Err(EvidenceError::BadEncoding { index: p })
            );
        }
        let mut field_size = sig;
        field_size.0[..32].copy_from_slice(&p_bytes);
        let mut order = sig;
        order.0[32..].copy_from_slice(
            &hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
                .unwrap(),
        );
        for bad in [Sig([0; 64]), Sig([0xff; 64]), field_size, order] {
            assert_eq!(
                verify_tagged(&key, RECEIPT_TAG, b"x", &bad, p),
                Err(EvidenceError::BadSignature { index: p })
            );
        }
    }

    #[test]
    fn equivocation() {
        let sk = SigningKey::from_bytes(&[7u8; 32]).unwrap();
        let other = SigningKey::from_bytes(&[8u8; 32]).unwrap();
        let roster = [PartyKey::of(&other), PartyKey::of(&sk)];
        let a = SignedHeader::sign(&sk, [1; 32], 2, 3, 2, [10; 32]);
        let b = SignedHeader::sign(&sk, [1; 32], 2, 3, 2, [11; 32]);
        let ev = Equivocation {
            first: a.clone(),
            second: b.clone(),
        };
        assert_eq!(
            verify_equivocation(&ev, &roster),
            Ok(PartyId::from_wire(2).unwrap())
        );
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(serde_json::from_str::<Equivocation>(&json).unwrap(), ev);
        let same = Equivocation {
            first: a.clone(),
            second: a.clone(),
        };
        assert!(matches!(
            verify_equivocation(&same, &roster),
            Err(EvidenceError::NoConflict(_))
        ));
        let other_slot = SignedHeader::sign(&sk, [1; 32], 2, 4, 2, [11; 32]);
        let ev2 = Equivocation {
            first: a.clone(),
            second: other_slot,
        };
        assert!(matches!(
            verify_equivocation(&ev2, &roster),
            Err(EvidenceError::NoConflict(_))
        ));
        // A header not signed by the sender does not count.
        let forged = SignedHeader::sign(&other, [1; 32], 2, 3, 2, [11; 32]);
        let ev3 = Equivocation {
            first: a.clone(),
            second: forged,
        };
        assert_eq!(
            verify_equivocation(&ev3, &roster),
            Err(EvidenceError::BadSignature {
                index: PartyId::from_wire(2).unwrap()
            })
        );
        let mut tampered = b.clone();
        tampered.payload_hash = [12; 32];
        let ev4 = Equivocation {
            first: a.clone(),
            second: tampered,
        };
        assert_eq!(
            verify_equivocation(&ev4, &roster),
            Err(EvidenceError::BadSignature {
                index: PartyId::from_wire(2).unwrap()
            })
        );
        // A sender outside the roster, or 0, is a bad index, reported as given.
        for sender in [3, 0] {
            let mut first = a.clone();
            first.sender = sender;
            let mut second = b.clone();
            second.sender = sender;
            assert_eq!(
                verify_equivocation(&Equivocation { first, second }, &roster),
                Err(EvidenceError::BadIndex {
                    index: sender as usize,
                    reason: "not in the roster"
                })
            );
        }
        assert_eq!(
            EvidenceError::BadSignature {
                index: PartyId::from_wire(2).unwrap()
            }
            .to_string(),
            "signature of party 2 does not verify"
        );
    }
}
