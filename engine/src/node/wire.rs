//! The payloads of the frames a party exchanges with owners and with other parties during a
//! store ([`super::frame::MessageType`]): what each carries, how it is encoded, and the bounds a
//! party checks before it believes a number in it.
//!
//! A store, as the owner drives it (PROTOCOL.md, "Secret sharing and computation"):
//!
//! ```text
//! owner -> party   STORE_BEGIN  {session, roster, name, field, schema, mask share}   JSON
//! owner -> party   SHARE_BATCH  session | holder | column | first row | field vector  binary
//! owner -> party   STORE_END    {session}                                              JSON
//! party -> owner   RECEIPT      {session, party, hash, signature}                      JSON
//! owner -> party   STORE_CHECK  {session, receipts of every party}                     JSON
//! party <-> party  SIGNED       version | session | machine message                    binary
//! party -> owner   COMPLAINT    {session, parties whose vectors must be revealed}      JSON
//! owner -> party   SHARE_BATCH  (holder = the accused party) ... COMPLAINT {masks}
//! party -> owner   STORE_DONE   {session, accepted or refused, liars}                  JSON
//! owner -> party   STORE_COMMIT {session, STORE outpoint, anchor key, dataset id}     JSON
//! ```
//!
//! Control payloads are JSON with unknown fields refused; share batches are binary
//! ([`ShareBatch`]), field elements in the canonical wire encoding of
//! [`super::frame::encode_field_vec`]; party-to-party protocol messages are binary
//! ([`super::peer`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::card::tagged_hash;
use super::frame::{decode_field_vec, encode_field_vec, Frame, FrameError, MessageType};
use crate::mpc::csv::Schema;
use crate::mpc::dealing::Hash32;
use crate::mpc::field::PrimeField;
use crate::mpc::round::PartyId;

/// Version of the store exchange.
pub const STORE_PROTOCOL_VERSION: u32 = 1;
/// Most field columns one dataset may have.
pub const MAX_FIELD_COLUMNS: usize = 4096;
/// Longest dataset name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Bytes before the field vector of a [`ShareBatch`]: session (32), holder (4), column (4),
/// first row (8).
pub const SHARE_BATCH_HEADER: usize = 48;

/// Errors of payloads.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A JSON payload does not parse as its type.
    #[error("bad {kind} payload: {reason}")]
    Json {
        /// The frame type's name.
        kind: &'static str,
        /// What serde said.
        reason: String,
    },
    /// A binary payload is too short or its vector does not decode.
    #[error("bad share batch: {0}")]
    Batch(String),
    /// A value is out of its bound.
    #[error("{0}")]
    Bound(String),
    /// The frame could not be built (payload over its cap).
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// 32 bytes as 64 lower-case hex digits.
pub mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as hex.
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    /// Deserialize from exactly 64 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|_| serde::de::Error::custom("expected 64 hex digits"))?;
        Ok(out)
    }
}

/// `Option<[u8; 32]>` as an optional hex string.
pub mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `Some` as 64 hex digits.
    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::hex32::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    /// Reads 64 hex digits (or null).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => {
                let mut out = [0u8; 32];
                hex::decode_to_slice(&t, &mut out).map_err(serde::de::Error::custom)?;
                Ok(Some(out))
            }
        }
    }
}

/// 64 bytes (a BIP340 signature) as hex.
pub mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize as hex.
    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    /// Deserialize from exactly 128 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 64];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|_| serde::de::Error::custom("expected 128 hex digits"))?;
        Ok(out)
    }
}

/// `STORE_BEGIN`: what the owner is about to send one party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreBegin {
    /// [`STORE_PROTOCOL_VERSION`].
    pub version: u32,
    /// The owner's random store session id.
    #[serde(with = "hex32")]
    pub session: Hash32,
    /// The roster the owner believes in ([`super::roster::Roster::id`]).
    #[serde(with = "hex32")]
    pub roster: Hash32,
    /// The dataset's name (1 to [`MAX_NAME_LEN`] bytes of `[A-Za-z0-9._-]`).
    pub name: String,
    /// The field ([`PrimeField::NAME`]).
    pub field: String,
    /// Columns, kinds, ranges, row count: public, covered by the receipts.
    pub schema: Schema,
    /// The party's share of the check mask, hex of the canonical big-endian encoding.
    pub mask: String,
    /// Set when a service deals the output masks of this job (PROTOCOL.md, job flow step 2):
    /// the sharing is checked under [`crate::mpc::check::mask_check_tag`] and never becomes a
    /// dataset; `None` for an owner's store.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex32")]
    pub job: Option<Hash32>,
}

impl StoreBegin {
    /// Checks the name, the field and the sizes against `max_values` (the most shared values a
    /// party takes in one store).
    ///
    /// # Errors
    /// [`WireError::Bound`] naming what is out of bounds.
    pub fn check(&self, max_values: u64) -> Result<(), WireError> {
        if self.version != STORE_PROTOCOL_VERSION {
            return Err(WireError::Bound(format!(
                "store protocol version {} is not {STORE_PROTOCOL_VERSION}",
                self.version
            )));
        }
        check_name(&self.name)?;
        let fields = self.schema.fields.len();
        if fields == 0 || fields > MAX_FIELD_COLUMNS {
            return Err(WireError::Bound(format!(
                "dataset has {fields} shared columns, 1 to {MAX_FIELD_COLUMNS} allowed"
            )));
        }
        let values = (self.schema.rows as u64).saturating_mul(fields as u64);
        if self.schema.rows == 0 || values > max_values {
            return Err(WireError::Bound(format!(
                "dataset of {} rows x {fields} columns = {values} values; this party takes 1 to {max_values}",
                self.schema.rows
            )));
        }
        Ok(())
    }

    /// Shared values declared: rows x shared columns.
    pub fn values(&self) -> u64 {
        (self.schema.rows as u64).saturating_mul(self.schema.fields.len() as u64)
    }

    /// The receipt context: the digest every party's receipt hash is bound to (roster, session,
    /// name, field and schema).
    pub fn context(&self) -> Hash32 {
        let schema = serde_json::to_vec(&self.schema).unwrap_or_default();
        Sha256::new()
            .chain_update(b"btcmpc/v1/store-context")
            .chain_update(self.roster)
            .chain_update(self.session)
            .chain_update((self.name.len() as u32).to_be_bytes())
            .chain_update(self.name.as_bytes())
            .chain_update((self.field.len() as u32).to_be_bytes())
            .chain_update(self.field.as_bytes())
            .chain_update((schema.len() as u64).to_be_bytes())
            .chain_update(&schema)
            .chain_update(
                self.job
                    .map(|j| [&b"job"[..], &j[..]].concat())
                    .unwrap_or_default(),
            )
            .finalize()
            .into()
    }
}

/// A dataset name: 1 to [`MAX_NAME_LEN`] bytes of `[A-Za-z0-9._-]`, not starting with `.`.
///
/// # Errors
/// [`WireError::Bound`].
pub fn check_name(name: &str) -> Result<(), WireError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(WireError::Bound(format!(
            "dataset name {name:?} must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -"
        )))
    }
}

/// `STORE_END`, `STORE_CHECK`'s session, and other messages naming only a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionOnly {
    /// The store session.
    #[serde(with = "hex32")]
    pub session: Hash32,
}

/// `RECEIPT`: party `party` holds share vectors hashing to `hash`
/// ([`crate::mpc::dealing::PartyShares::receipt_hash`] under [`StoreBegin::context`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The store session.
    #[serde(with = "hex32")]
    pub session: Hash32,
    /// The party (1-based).
    pub party: u32,
    /// The receipt hash.
    #[serde(with = "hex32")]
    pub hash: Hash32,
    /// BIP340 signature by the party key over [`receipt_digest`].
    #[serde(with = "hex64")]
    pub signature: [u8; 64],
}

/// What a party signs for a receipt: `tagged_hash("btcmpc/v1/receipt-sig", roster || session
/// || u32_be(party) || hash)`.
pub fn receipt_digest(roster: &Hash32, session: &Hash32, party: u32, hash: &Hash32) -> Hash32 {
    let mut m = Vec::with_capacity(100);
    m.extend_from_slice(roster);
    m.extend_from_slice(session);
    m.extend_from_slice(&party.to_be_bytes());
    m.extend_from_slice(hash);
    tagged_hash("btcmpc/v1/receipt-sig", &m)
}

/// `STORE_CHECK`: the receipts of every party, in party order; the check may start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreCheck {
    /// The store session.
    #[serde(with = "hex32")]
    pub session: Hash32,
    /// `receipts[i - 1]` is party `i`'s.
    pub receipts: Vec<Receipt>,
}

/// `COMPLAINT` from a party: the owner must reveal these parties' vectors. From the owner:
/// their masks, after the revealed vectors went out as [`ShareBatch`]es.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Complaint {
    /// The store session.
    #[serde(with = "hex32")]
    pub session: Hash32,
    /// The accused parties (from a party), or the parties revealed (from the owner).
    pub parties: Vec<u32>,
    /// From the owner: the mask share of each revealed party (hex), in the order of `parties`.
    #[serde(default)]
    pub masks: Vec<String>,
}

/// `STORE_DONE`: how the check ended at one party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreDone {
    /// The store session.
    #[serde(with = "hex32")]
    pub session: Hash32,
    /// The party reporting.
    pub party: u32,
    /// Whether the dealing was accepted.
    pub accepted: bool,
    /// Why it was refused, if it was.
    #[serde(default)]
    pub reason: Option<String>,
    /// Parties named as liars by the check.
    #[serde(default)]
    pub liars: Vec<PartyId>,
    /// Equivocation evidence the check gathered: two conflicting messages one party signed
    /// for one slot (self-authenticating; the dealer may take it to the judges).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<crate::mpc::echo::Equivocation>,
}

/// `STORE_COMMIT`: the STORE record is published; the party binds the dataset to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreCommit {
    /// The store session.
    #[serde(with = "hex32")]
    pub session: Hash32,
    /// The STORE transaction's first anchor output, `TXID:VOUT`.
    pub store_outpoint: String,
    /// The anchor key (33-byte compressed, hex).
    pub anchor_key: String,
    /// `sha256(outpoint || anchor key)`, hex.
    pub dataset_id: String,
}

/// `STATUS` answer of a party daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// This party's index.
    pub party: u32,
    /// Committee size.
    pub n: u32,
    /// The roster id, hex.
    pub roster: String,
    /// Parties connected now (indices).
    pub peers_connected: Vec<u32>,
    /// Datasets held: name, rows, shared columns, committed (bound to a STORE record).
    pub datasets: Vec<DatasetStatus>,
    /// Store sessions and jobs under way (ids, hex).
    pub open_jobs: Vec<String>,
    /// Jobs counted against `max_open_jobs`: quoted (their `T` not passed) or running, not
    /// yet delivered or failed, exactly as a new job request counts them.
    pub jobs_counted: u32,
    /// The most jobs this party takes at once.
    pub max_open_jobs: u32,
    /// The bond recorded in the manifest: `TXID:VOUT` and exit height.
    pub bond: Option<(String, u32)>,
    /// The bond as the party's chain view sees it (`ok at tip H`, or why it fails).
    pub bond_state: Option<String>,
    /// Store sessions for which this party keeps equivocation evidence.
    pub evidence: Vec<String>,
    /// The fault this process was told to commit (tests only).
    pub fault: Option<String>,
}

/// One dataset in a [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetStatus {
    /// The owner's name.
    pub name: String,
    /// Its store session, hex.
    pub session: String,
    /// Rows.
    pub rows: u64,
    /// Shared columns.
    pub columns: u32,
    /// `checked` (the store check passed) or `committed` (bound to its STORE record).
    pub state: String,
    /// The dataset id once committed.
    pub dataset_id: Option<String>,
}

/// A chunk of one share vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareBatch<F> {
    /// The store session.
    pub session: Hash32,
    /// Whose shares these are: 0 for the receiving party's own, `k` for party `k`'s vectors
    /// revealed by the owner after a complaint.
    pub holder: u32,
    /// The field column.
    pub column: u32,
    /// The row of the first value.
    pub first_row: u64,
    /// The values.
    pub values: Vec<F>,
}

impl<F: PrimeField> ShareBatch<F> {
    /// The `SHARE_BATCH` frame.
    ///
    /// # Errors
    /// [`WireError::Frame`] if the batch exceeds the type's cap.
    pub fn to_frame(&self) -> Result<Frame, WireError> {
        let mut out = Vec::with_capacity(SHARE_BATCH_HEADER + self.values.len() * F::ENCODED_LEN);
        out.extend_from_slice(&self.session);
        out.extend_from_slice(&self.holder.to_le_bytes());
        out.extend_from_slice(&self.column.to_le_bytes());
        out.extend_from_slice(&self.first_row.to_le_bytes());
        encode_field_vec(&self.values, &mut out);
        Ok(Frame::new(MessageType::SHARE_BATCH, out)?)
    }

    /// Parses a `SHARE_BATCH` payload.
    ///
    /// # Errors
    /// [`WireError::Batch`]: too short, or a vector that is not whole canonical elements.
    pub fn parse(payload: &[u8]) -> Result<Self, WireError> {
        if payload.len() < SHARE_BATCH_HEADER {
            return Err(WireError::Batch(format!(
                "{} bytes, the header alone is {SHARE_BATCH_HEADER}",
                payload.len()
            )));
        }
        let mut session = [0u8; 32];
        session.copy_from_slice(&payload[..32]);
        let u32_at =
            |at: usize| u32::from_le_bytes(payload[at..at + 4].try_into().unwrap_or([0; 4]));
        let holder = u32_at(32);
        let column = u32_at(36);
        let first_row = u64::from_le_bytes(payload[40..48].try_into().unwrap_or([0; 8]));
        let values = decode_field_vec::<F>(&payload[SHARE_BATCH_HEADER..])
            .map_err(|e| WireError::Batch(e.to_string()))?;
        Ok(ShareBatch {
            session,
            holder,
            column,
            first_row,
            values,
        })
    }
}

/// A JSON control frame of `kind`.
///
/// # Errors
/// [`WireError::Frame`] if the payload exceeds the type's cap.
pub fn json_frame<T: Serialize>(kind: MessageType, value: &T) -> Result<Frame, WireError> {
    let bytes = serde_json::to_vec(value).map_err(|e| WireError::Json {
        kind: kind.name().unwrap_or("unknown"),
        reason: e.to_string(),
    })?;
    Ok(Frame::new(kind, bytes)?)
}

/// Parses the JSON payload of `frame` as `T`.
///
/// # Errors
/// [`WireError::Json`] naming the frame type.
pub fn parse_json<T: for<'de> Deserialize<'de>>(frame: &Frame) -> Result<T, WireError> {
    serde_json::from_slice(frame.payload()).map_err(|e| WireError::Json {
        kind: frame.kind().name().unwrap_or("unknown"),
        reason: e.to_string(),
    })
}

/// A field element from the hex of its canonical big-endian encoding.
///
/// # Errors
/// [`WireError::Bound`] for bad hex, a wrong length or a value not below the modulus.
pub fn field_from_hex<F: PrimeField>(text: &str) -> Result<F, WireError> {
    let bytes = hex::decode(text)
        .map_err(|_| WireError::Bound(format!("field element {text:?} is not hex")))?;
    let mut le: Vec<u8> = bytes.iter().rev().copied().collect();
    if le.len() != F::ENCODED_LEN {
        return Err(WireError::Bound(format!(
            "field element of {} bytes, {} expected",
            bytes.len(),
            F::ENCODED_LEN
        )));
    }
    let mut wire = Vec::new();
    wire.append(&mut le);
    decode_field_vec::<F>(&wire)
        .ok()
        .and_then(|v| v.first().copied())
        .ok_or_else(|| WireError::Bound(format!("field element {text} is not below the modulus")))
}

/// The hex of a field element's canonical big-endian encoding.
pub fn field_to_hex<F: PrimeField>(v: &F) -> String {
    hex::encode(v.to_repr())
}
