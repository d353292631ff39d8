//! The binary encoding of party-to-party messages ([`Message`]), carried in `SIGNED` frames.
//!
//! ```text
//! SIGNED payload  = version (1 byte, 1) | session (32) | message
//! message         = kind (1 byte) | body
//! 0 value         = header | count (u32) | count field elements
//! 1 echo          = job (32) | round (u32) | count (u32) | count x (0 | 1 hash (32))
//! 2 forward       = job (32) | round (u32) | count (u32) | count x header
//! 3 contribution  = contribution
//! 4 confirmations = attempt (u32) | count (u32) | count x (set (u32) | hash (32))
//! 5 accusation    = attempt (u32) | count (u32) | count x contribution
//! header          = job (32) | round (u32) | slot (u32) | sender (u32) | payload hash (32)
//!                   | BIP340 signature (64)                                   (140 bytes)
//! contribution    = set (u32) | to (u32) | value (32) | header                 (180 bytes)
//! ```
//!
//! Integers are little-endian; field elements are contiguous little-endian canonical integers
//! ([`encode_field_vec`]), so a vector of a million values is one copy from the socket. The
//! decoder refuses an unknown version or kind, a count that the remaining bytes cannot hold
//! (checked before anything is allocated), a party index of 0, a non-canonical field element,
//! and trailing bytes: whatever decodes re-encodes to the same bytes, which keeps a persisted
//! message and its re-sent copy identical.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::frame::{decode_field_vec, encode_field_vec};
use crate::mpc::dealing::Hash32;
use crate::mpc::echo::SignedHeader;
use crate::mpc::field::PrimeField;
use crate::mpc::round::{Message, PartyId, RoundId, SignedContribution};

/// Version of the party-to-party encoding.
pub const PEER_VERSION: u8 = 1;
/// Bytes of a `SIGNED` payload before the message: version and session.
pub const PEER_HEADER: usize = 33;
/// Bytes of an encoded [`SignedHeader`].
pub const HEADER_LEN: usize = 140;
/// Bytes of an encoded [`SignedContribution`].
pub const CONTRIBUTION_LEN: usize = 180;

/// Why a peer message does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The payload ends before the named part.
    #[error("peer message truncated in its {0}")]
    Truncated(&'static str),
    /// An encoding version this party does not speak.
    #[error("peer message version {0}, this party speaks {PEER_VERSION}")]
    Version(u8),
    /// An unknown message kind.
    #[error("unknown peer message kind {0}")]
    Kind(u8),
    /// A count larger than the bytes that follow can hold.
    #[error("peer message announces {count} {what}, its {left} remaining bytes hold fewer")]
    Count {
        /// What is counted.
        what: &'static str,
        /// The announced count.
        count: u32,
        /// Bytes left.
        left: usize,
    },
    /// A party index of 0.
    #[error("party index 0 in a peer message")]
    Party,
    /// An option tag other than 0 or 1.
    #[error("bad option tag {0} in a peer message")]
    Tag(u8),
    /// A field element that is not canonical.
    #[error("bad field vector in a peer message: {0}")]
    Field(String),
    /// Bytes after the message.
    #[error("{0} bytes after the end of a peer message")]
    Trailing(usize),
}

/// A `SIGNED` payload: the session (store session or job) and the still-encoded message, which
/// the session decodes in its own field ([`decode_message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerMessage {
    /// The store session or job.
    pub session: Hash32,
    /// The encoded [`Message`] ([`encode_message`]).
    pub message: Vec<u8>,
}

impl PeerMessage {
    /// `version | session | message`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PEER_HEADER + self.message.len());
        out.push(PEER_VERSION);
        out.extend_from_slice(&self.session);
        out.extend_from_slice(&self.message);
        out
    }

    /// Splits a `SIGNED` payload (the message itself is decoded later, in its field).
    ///
    /// # Errors
    /// [`PeerError::Truncated`] or [`PeerError::Version`].
    pub fn decode(payload: &[u8]) -> Result<Self, PeerError> {
        let session = peek_session(payload)?;
        Ok(PeerMessage {
            session,
            message: payload[PEER_HEADER..].to_vec(),
        })
    }
}

/// The session of a `SIGNED` payload, without decoding the message.
///
/// # Errors
/// [`PeerError::Truncated`] or [`PeerError::Version`].
pub fn peek_session(payload: &[u8]) -> Result<Hash32, PeerError> {
    let Some(&version) = payload.first() else {
        return Err(PeerError::Truncated("version"));
    };
    if version != PEER_VERSION {
        return Err(PeerError::Version(version));
    }
    let mut session = [0u8; 32];
    session.copy_from_slice(
        payload
            .get(1..PEER_HEADER)
            .ok_or(PeerError::Truncated("session"))?,
    );
    Ok(session)
}

/// Appends the encoding of `msg`.
pub fn encode_message<F: PrimeField>(msg: &Message<F>, out: &mut Vec<u8>) {
    match msg {
        Message::Value { header, payload } => {
            out.reserve(1 + HEADER_LEN + 4 + payload.len() * F::ENCODED_LEN);
            out.push(0);
            put_header(header, out);
            put_len(payload.len(), out);
            encode_field_vec(payload, out);
        }
        Message::Echo { job, round, hashes } => {
            out.push(1);
            out.extend_from_slice(job);
            out.extend_from_slice(&round.to_le_bytes());
            put_len(hashes.len(), out);
            for h in hashes {
                match h {
                    None => out.push(0),
                    Some(h) => {
                        out.push(1);
                        out.extend_from_slice(h);
                    }
                }
            }
        }
        Message::Forward {
            job,
            round,
            headers,
        } => {
            out.push(2);
            out.extend_from_slice(job);
            out.extend_from_slice(&round.to_le_bytes());
            put_len(headers.len(), out);
            for h in headers {
                put_header(h, out);
            }
        }
        Message::Contribution(c) => {
            out.push(3);
            put_contribution(c, out);
        }
        Message::Confirmations { attempt, keys } => {
            out.push(4);
            out.extend_from_slice(&attempt.to_le_bytes());
            put_len(keys.len(), out);
            for (set, hash) in keys {
                out.extend_from_slice(&set.to_le_bytes());
                out.extend_from_slice(hash);
            }
        }
        Message::Accusation {
            attempt,
            contributions,
        } => {
            out.push(5);
            out.extend_from_slice(&attempt.to_le_bytes());
            put_len(contributions.len(), out);
            for c in contributions {
                put_contribution(c, out);
            }
        }
    }
}

/// The encoding of `msg` as a fresh vector.
pub fn message_bytes<F: PrimeField>(msg: &Message<F>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(msg, &mut out);
    out
}

/// Decodes a message written by [`encode_message`], all of `bytes`.
///
/// # Errors
/// A [`PeerError`] naming what is wrong; nothing is allocated for a count the bytes cannot
/// hold.
pub fn decode_message<F: PrimeField>(bytes: &[u8]) -> Result<Message<F>, PeerError> {
    let mut r = Reader { bytes, at: 0 };
    let kind = r.u8("kind")?;
    let msg = match kind {
        0 => {
            let header = r.header()?;
            let count = r.count("field elements", F::ENCODED_LEN)?;
            let raw = r.take(count * F::ENCODED_LEN, "field vector")?;
            let payload =
                decode_field_vec::<F>(raw).map_err(|e| PeerError::Field(e.to_string()))?;
            Message::Value {
                header,
                payload: Arc::new(payload),
            }
        }
        1 => {
            let job = r.hash("job")?;
            let round = r.u32("round")?;
            let count = r.count("echo entries", 1)?;
            let mut hashes = Vec::with_capacity(count);
            for _ in 0..count {
                hashes.push(match r.u8("echo entry")? {
                    0 => None,
                    1 => Some(r.hash("echo hash")?),
                    t => return Err(PeerError::Tag(t)),
                });
            }
            Message::Echo { job, round, hashes }
        }
        2 => {
            let job = r.hash("job")?;
            let round = r.u32("round")?;
            let count = r.count("headers", HEADER_LEN)?;
            let mut headers = Vec::with_capacity(count);
            for _ in 0..count {
                headers.push(r.header()?);
            }
            Message::Forward {
                job,
                round,
                headers,
            }
        }
        3 => Message::Contribution(r.contribution()?),
        4 => {
            let attempt = r.u32("attempt")?;
            let count = r.count("key hashes", 36)?;
            let mut keys = Vec::with_capacity(count);
            for _ in 0..count {
                keys.push((r.u32("set")?, r.hash("key hash")?));
            }
            Message::Confirmations { attempt, keys }
        }
        5 => {
            let attempt = r.u32("attempt")?;
            let count = r.count("contributions", CONTRIBUTION_LEN)?;
            let mut contributions = Vec::with_capacity(count);
            for _ in 0..count {
                contributions.push(r.contribution()?);
            }
            Message::Accusation {
                attempt,
                contributions,
            }
        }
        k => return Err(PeerError::Kind(k)),
    };
    let left = bytes.len() - r.at;
    if left != 0 {
        return Err(PeerError::Trailing(left));
    }
    Ok(msg)
}

/// One event of a machine's journal, as a party persists it (JSON: `[from, "hex"]`): a message
/// from party `from` (1-based) in the encoding of [`encode_message`], or (`from` = 0) a
/// deadline in the encoding of [`encode_round`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry(pub u32, #[serde(with = "hex_bytes")] pub Vec<u8>);

/// A round as 5 bytes: `round` (u32 little-endian) and `sub`.
pub fn encode_round(r: RoundId) -> Vec<u8> {
    let mut out = r.round.to_le_bytes().to_vec();
    out.push(r.sub);
    out
}

/// Reads [`encode_round`]'s 5 bytes; `None` for any other length.
pub fn decode_round(bytes: &[u8]) -> Option<RoundId> {
    let b: [u8; 5] = bytes.try_into().ok()?;
    Some(RoundId {
        round: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        sub: b[4],
    })
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(|_| serde::de::Error::custom("expected hex"))
    }
}

fn put_len(len: usize, out: &mut Vec<u8>) {
    // Vectors of a message are far below 2^32 entries (frames are capped at 64 MiB).
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn put_header(h: &SignedHeader, out: &mut Vec<u8>) {
    out.extend_from_slice(&h.job);
    out.extend_from_slice(&h.round.to_le_bytes());
    out.extend_from_slice(&h.slot.to_le_bytes());
    out.extend_from_slice(&h.sender.to_le_bytes());
    out.extend_from_slice(&h.payload_hash);
    out.extend_from_slice(&h.signature);
}

fn put_contribution(c: &SignedContribution, out: &mut Vec<u8>) {
    out.extend_from_slice(&c.set.to_le_bytes());
    out.extend_from_slice(&c.to.get().to_le_bytes());
    out.extend_from_slice(&c.value);
    put_header(&c.header, out);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], PeerError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(PeerError::Truncated(what))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, PeerError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, PeerError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(b))
    }

    fn hash(&mut self, what: &'static str) -> Result<Hash32, PeerError> {
        let mut b = [0u8; 32];
        b.copy_from_slice(self.take(32, what)?);
        Ok(b)
    }

    /// A count of items of at least `min_len` bytes each, checked against the bytes left.
    fn count(&mut self, what: &'static str, min_len: usize) -> Result<usize, PeerError> {
        let count = self.u32(what)?;
        let left = self.bytes.len() - self.at;
        if (count as usize).saturating_mul(min_len) > left {
            return Err(PeerError::Count { what, count, left });
        }
        Ok(count as usize)
    }

    fn header(&mut self) -> Result<SignedHeader, PeerError> {
        let job = self.hash("header job")?;
        let round = self.u32("header round")?;
        let slot = self.u32("header slot")?;
        let sender = self.u32("header sender")?;
        let payload_hash = self.hash("header payload hash")?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.take(64, "header signature")?);
        Ok(SignedHeader {
            job,
            round,
            slot,
            sender,
            payload_hash,
            signature,
        })
    }

    fn contribution(&mut self) -> Result<SignedContribution, PeerError> {
        let set = self.u32("contribution set")?;
        let to = PartyId::from_wire(self.u32("contribution recipient")?).ok_or(PeerError::Party)?;
        let value = self.hash("contribution value")?;
        let header = self.header()?;
        Ok(SignedContribution {
            set,
            to,
            value,
            header,
        })
    }
}

/// Runs `data` through the peer decoders and panics if a decoded message does not re-encode to
/// its bytes (the body of the fuzz target's peer part). Never panics if the decoder is correct.
#[doc(hidden)]
pub fn check_peer_decoders(data: &[u8]) {
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};
    if let Ok(m) = PeerMessage::decode(data) {
        assert_eq!(m.encode(), data, "peer payload re-encodes to its bytes");
    }
    if let Ok(m) = decode_message::<Secp256k1Scalar>(data) {
        assert_eq!(message_bytes(&m), data, "message re-encodes to its bytes");
    }
    if let Ok(m) = decode_message::<Mersenne127>(data) {
        assert_eq!(message_bytes(&m), data, "message re-encodes to its bytes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};
    use proptest::prelude::*;

    fn header(seed: u8) -> SignedHeader {
        SignedHeader {
            job: [seed; 32],
            round: u32::from(seed) * 3,
            slot: 2,
            sender: 4,
            payload_hash: [seed ^ 0x55; 32],
            signature: [seed.wrapping_add(1); 64],
        }
    }

    fn contribution(seed: u8) -> SignedContribution {
        SignedContribution {
            set: u32::from(seed),
            to: PartyId::from_wire(3).unwrap(),
            value: [seed; 32],
            header: header(seed),
        }
    }

    fn every_kind<F: PrimeField>() -> Vec<Message<F>> {
        vec![
            Message::Value {
                header: header(1),
                payload: Arc::new((0..50u64).map(F::from_u64).map(|x| -x).collect()),
            },
            Message::Value {
                header: header(2),
                payload: Arc::new(Vec::new()),
            },
            Message::Echo {
                job: [7; 32],
                round: 9,
                hashes: vec![Some([1; 32]), None, Some([2; 32])],
            },
            Message::Forward {
                job: [8; 32],
                round: 1,
                headers: vec![header(3), header(4)],
            },
            Message::Contribution(contribution(5)),
            Message::Confirmations {
                attempt: 1,
                keys: vec![(0, [3; 32]), (5, [4; 32])],
            },
            Message::Accusation {
                attempt: 0,
                contributions: vec![contribution(6)],
            },
        ]
    }

    fn round_trips<F: PrimeField>() {
        for m in every_kind::<F>() {
            let bytes = message_bytes(&m);
            assert_eq!(decode_message::<F>(&bytes).unwrap(), m, "{}", m.kind());
            // Every strict prefix is refused, never a panic or a shorter message.
            for cut in 0..bytes.len() {
                assert!(
                    decode_message::<F>(&bytes[..cut]).is_err(),
                    "{} cut at {cut}",
                    m.kind()
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode_message::<F>(&longer), Err(PeerError::Trailing(1)));
        }
    }

    #[test]
    fn every_kind_round_trips_in_both_fields() {
        round_trips::<Secp256k1Scalar>();
        round_trips::<Mersenne127>();
    }

    #[test]
    fn hostile_counts_and_tags_are_refused_before_allocation() {
        // An echo announcing 2^32 - 1 entries in 5 bytes.
        let mut b = vec![1u8];
        b.extend_from_slice(&[0; 32]);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.push(0);
        assert!(matches!(
            decode_message::<Mersenne127>(&b),
            Err(PeerError::Count {
                count: u32::MAX,
                ..
            })
        ));
        // A value vector announcing more elements than follow.
        let mut v = message_bytes(&Message::<Mersenne127>::Value {
            header: header(1),
            payload: Arc::new(vec![Mersenne127::from_u64(1)]),
        });
        let at = 1 + HEADER_LEN;
        v[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            decode_message::<Mersenne127>(&v),
            Err(PeerError::Count { .. })
        ));
        // An option tag of 2.
        let mut e = message_bytes(&Message::<Mersenne127>::Echo {
            job: [0; 32],
            round: 0,
            hashes: vec![None],
        });
        *e.last_mut().unwrap() = 2;
        assert_eq!(decode_message::<Mersenne127>(&e), Err(PeerError::Tag(2)));
        // Party 0 as a contribution's recipient.
        let mut c = message_bytes(&Message::<Mersenne127>::Contribution(contribution(1)));
        c[5..9].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode_message::<Mersenne127>(&c), Err(PeerError::Party));
        // A non-canonical element (all ones is above 2^127 - 1).
        let mut f = message_bytes(&Message::<Mersenne127>::Value {
            header: header(1),
            payload: Arc::new(vec![Mersenne127::from_u64(1)]),
        });
        let len = f.len();
        f[len - 16..].copy_from_slice(&[0xff; 16]);
        assert!(matches!(
            decode_message::<Mersenne127>(&f),
            Err(PeerError::Field(_))
        ));
        assert_eq!(decode_message::<Mersenne127>(&[9]), Err(PeerError::Kind(9)));
        assert_eq!(PeerMessage::decode(&[2; 40]), Err(PeerError::Version(2)));
        assert_eq!(
            PeerMessage::decode(&[PEER_VERSION; 10]),
            Err(PeerError::Truncated("session"))
        );
    }

    #[test]
    fn a_million_values_cost_their_width_plus_a_fixed_header() {
        let m = Message::<Mersenne127>::Value {
            header: header(1),
            payload: Arc::new(vec![Mersenne127::from_u64(5); 1 << 20]),
        };
        assert_eq!(message_bytes(&m).len(), 1 + HEADER_LEN + 4 + (1 << 20) * 16);
    }

    #[test]
    fn journal_entries_and_rounds_round_trip() {
        let r = RoundId {
            round: 70_000,
            sub: 2,
        };
        assert_eq!(decode_round(&encode_round(r)), Some(r));
        assert_eq!(decode_round(&[1, 2, 3]), None);
        let e = LogEntry(3, vec![0, 1, 0xab]);
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"[3,"0001ab"]"#);
        assert_eq!(serde_json::from_str::<LogEntry>(&json).unwrap(), e);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_decoded_messages_re_encode(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            check_peer_decoders(&data);
        }

        #[test]
        fn values_round_trip(xs in proptest::collection::vec(any::<u64>(), 0..64), round in any::<u32>()) {
            let mut h = header(3);
            h.round = round;
            let m = Message::<Secp256k1Scalar>::Value { header: h, payload: Arc::new(xs.into_iter().map(Secp256k1Scalar::from_u64).collect()) };
            let b = message_bytes(&m);
            prop_assert_eq!(decode_message::<Secp256k1Scalar>(&b).unwrap(), m);
        }
    }
}
