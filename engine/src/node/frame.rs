//! Length-prefixed, versioned binary frames with a size cap per message type.
//!
//! Every message between parties, and between a party and a client, is one frame:
//!
//! ```text
//! offset  size  field
//! 0       1     magic      0xB7
//! 1       1     version    FRAME_VERSION (1)
//! 2       2     type       message type, u16 little-endian (see MESSAGE_TYPES)
//! 4       4     length     payload length in bytes, u32 little-endian
//! 8       len   payload
//! ```
//!
//! The decoder reads the 8-byte header first and refuses, before a single payload byte is
//! buffered, a wrong magic (garbage), a wrong version, an unknown type, or a length above the
//! cap of the declared type ([`MESSAGE_TYPES`]). So a peer can make us hold at most
//! `HEADER_LEN + cap(type)` bytes for one frame, and only after it has sent them.
//!
//! Field vectors inside payloads are contiguous little-endian fixed-width integers, one per
//! element, [`PrimeField::ENCODED_LEN`] bytes each (32 for secp256k1 scalars, 16 for 2^127-1),
//! always the canonical integer in `[0, p)` ([`encode_field_vec`], [`decode_field_vec`]).
//!
//! ```
//! use btcmpc_engine::node::frame::{decode_frame, Frame, MessageType};
//! let frame = Frame::new(MessageType::PING, b"hi".to_vec())?;
//! let bytes = frame.encode();
//! assert_eq!(decode_frame(&bytes)?, frame);
//! # Ok::<(), btcmpc_engine::node::frame::FrameError>(())
//! ```

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::mpc::field::PrimeField;

/// First byte of every frame.
pub const FRAME_MAGIC: u8 = 0xB7;
/// The frame format version this code speaks.
pub const FRAME_VERSION: u8 = 1;
/// Bytes of the frame header (magic, version, type, length).
pub const HEADER_LEN: usize = 8;

/// Cap for small control messages: 64 KiB.
pub const CONTROL_CAP: u32 = 64 * 1024;
/// Cap for batches of shares or openings: 64 MiB.
pub const BATCH_CAP: u32 = 64 * 1024 * 1024;

/// A message type: the `u16` in the frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageType(pub u16);

impl MessageType {
    /// Liveness probe; payload is echoed by [`MessageType::PONG`].
    pub const PING: Self = Self(0x0001);
    /// Answer to [`MessageType::PING`].
    pub const PONG: Self = Self(0x0002);
    /// Session hello: roles, network, protocol versions.
    pub const HELLO: Self = Self(0x0003);
    /// An error report from the peer (one line of text).
    pub const ERROR: Self = Self(0x0004);
    /// A party-to-party protocol message ([`super::peer`]): version, session, machine message.
    pub const SIGNED: Self = Self(0x0010);
    /// An echo of another party's signed message.
    pub const ECHO: Self = Self(0x0011);
    /// Dataset metadata sent by an owner before its share columns.
    pub const STORE_BEGIN: Self = Self(0x0020);
    /// One chunk of share columns (field vectors) from an owner.
    pub const SHARE_BATCH: Self = Self(0x0021);
    /// A party's signed receipt for the shares it holds.
    pub const RECEIPT: Self = Self(0x0022);
    /// A complaint or its resolution during the store check.
    pub const COMPLAINT: Self = Self(0x0023);
    /// The owner has sent every share batch of a store session.
    pub const STORE_END: Self = Self(0x0024);
    /// The owner hands every party all receipts: the store check starts.
    pub const STORE_CHECK: Self = Self(0x0025);
    /// A party reports how the store check ended.
    pub const STORE_DONE: Self = Self(0x0026);
    /// The owner binds a checked dataset to its published STORE record.
    pub const STORE_COMMIT: Self = Self(0x0027);
    /// A party's status, asked by its operator.
    pub const STATUS: Self = Self(0x0040);
    /// A service's query request.
    pub const JOB_REQUEST: Self = Self(0x0030);
    /// A batch of openings or product shares exchanged between parties during a job.
    pub const OPENING_BATCH: Self = Self(0x0031);
    /// A party's output share for a job.
    pub const RESULT: Self = Self(0x0032);
    /// A service's signed access question, and a party's answer.
    pub const ACCESS: Self = Self(0x0033);
    /// A party's signed quote for a job.
    pub const JOB_QUOTE: Self = Self(0x0034);
    /// The service starts the computation of a quoted job.
    pub const JOB_RUN: Self = Self(0x0035);
    /// The service's escrow funding of a job, and a party's answer.
    pub const JOB_PAID: Self = Self(0x0036);
    /// Evidence to a judge with the slash so far, and the judge's signed slash.
    pub const EVIDENCE: Self = Self(0x0037);
    /// The service withdraws a job it had quoted but not run, and a party's answer.
    pub const JOB_CANCEL: Self = Self(0x0038);

    /// The cap on payload bytes of this type, `None` if the type is unknown.
    #[must_use]
    pub fn cap(self) -> Option<u32> {
        MESSAGE_TYPES
            .iter()
            .find(|(t, _, _)| *t == self)
            .map(|(_, _, cap)| *cap)
    }

    /// The type's name, `None` if the type is unknown.
    #[must_use]
    pub fn name(self) -> Option<&'static str> {
        MESSAGE_TYPES
            .iter()
            .find(|(t, _, _)| *t == self)
            .map(|(_, name, _)| *name)
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} (0x{:04x})", self.0),
            None => write!(f, "0x{:04x}", self.0),
        }
    }
}

/// Every known message type with its name and payload cap in bytes.
pub const MESSAGE_TYPES: &[(MessageType, &str, u32)] = &[
    (MessageType::PING, "ping", 1024),
    (MessageType::PONG, "pong", 1024),
    (MessageType::HELLO, "hello", CONTROL_CAP),
    (MessageType::ERROR, "error", CONTROL_CAP),
    (MessageType::SIGNED, "signed", BATCH_CAP),
    (MessageType::ECHO, "echo", CONTROL_CAP),
    (MessageType::STORE_BEGIN, "store-begin", CONTROL_CAP),
    (MessageType::SHARE_BATCH, "share-batch", BATCH_CAP),
    (MessageType::RECEIPT, "receipt", CONTROL_CAP),
    (MessageType::COMPLAINT, "complaint", 1024 * 1024),
    (MessageType::STORE_END, "store-end", CONTROL_CAP),
    (MessageType::STORE_CHECK, "store-check", CONTROL_CAP),
    (MessageType::STORE_DONE, "store-done", CONTROL_CAP),
    (MessageType::STORE_COMMIT, "store-commit", CONTROL_CAP),
    (MessageType::STATUS, "status", 1024 * 1024),
    (MessageType::JOB_REQUEST, "job-request", CONTROL_CAP),
    (MessageType::OPENING_BATCH, "opening-batch", BATCH_CAP),
    (MessageType::RESULT, "result", 1024 * 1024),
    (MessageType::ACCESS, "access", CONTROL_CAP),
    (MessageType::JOB_QUOTE, "job-quote", CONTROL_CAP),
    (MessageType::JOB_RUN, "job-run", CONTROL_CAP),
    (MessageType::JOB_PAID, "job-paid", CONTROL_CAP),
    (MessageType::EVIDENCE, "evidence", 4 * 1024 * 1024),
    (MessageType::JOB_CANCEL, "job-cancel", CONTROL_CAP),
];

/// The largest cap of any type: no frame is ever longer than `HEADER_LEN` plus this.
#[must_use]
pub fn max_cap() -> u32 {
    MESSAGE_TYPES.iter().map(|(_, _, c)| *c).max().unwrap_or(0)
}

/// Why bytes are not a frame, or a payload not a field vector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The first byte is not [`FRAME_MAGIC`]: the peer is not speaking this protocol.
    #[error("garbage frame: first byte 0x{got:02x}, expected magic 0x{FRAME_MAGIC:02x}")]
    BadMagic {
        /// The byte received.
        got: u8,
    },
    /// The frame is from another version of the format.
    #[error("frame version {got} is not supported (this node speaks version {FRAME_VERSION})")]
    WrongVersion {
        /// The version byte received.
        got: u8,
    },
    /// The message type is not in [`MESSAGE_TYPES`].
    #[error("unknown message type 0x{0:04x}")]
    UnknownType(u16),
    /// The declared payload length is above the cap for its type.
    #[error("oversized frame: {kind} declares {len} payload bytes, cap is {cap}")]
    Oversized {
        /// The message type.
        kind: MessageType,
        /// The declared payload length.
        len: u32,
        /// The cap for that type.
        cap: u32,
    },
    /// The bytes ended inside a frame.
    #[error("truncated frame: have {have} of {need} bytes")]
    Truncated {
        /// Bytes received.
        have: usize,
        /// Bytes the header promised (or the header length).
        need: usize,
    },
    /// Bytes remained after one complete frame where exactly one was expected.
    #[error("{0} trailing bytes after the frame")]
    Trailing(usize),
    /// A field vector's byte length is not a multiple of the element width.
    #[error("field vector of {len} bytes is not a whole number of {width}-byte {field} elements")]
    FieldLength {
        /// The field's name.
        field: &'static str,
        /// Bytes given.
        len: usize,
        /// Bytes per element.
        width: usize,
    },
    /// A field element was not below the modulus.
    #[error("field vector element {index} is not a canonical {field} element (not below p)")]
    NonCanonical {
        /// The field's name.
        field: &'static str,
        /// Position of the element in the vector.
        index: usize,
    },
    /// The byte stream under a [`FrameCodec`] failed (required by `tokio_util`'s codec traits).
    #[error("stream error under the frame codec: {0}")]
    Io(String),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}

/// One frame: a message type and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    kind: MessageType,
    payload: Bytes,
}

impl Frame {
    /// A frame of type `kind` with `payload`.
    ///
    /// # Errors
    /// [`FrameError::UnknownType`] or [`FrameError::Oversized`] if `kind` is unknown or the
    /// payload is above its cap: we never send what a peer must refuse.
    pub fn new(kind: MessageType, payload: impl Into<Bytes>) -> Result<Self, FrameError> {
        let payload = payload.into();
        let cap = kind.cap().ok_or(FrameError::UnknownType(kind.0))?;
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        if len > cap {
            return Err(FrameError::Oversized { kind, len, cap });
        }
        Ok(Self { kind, payload })
    }

    /// The message type.
    #[must_use]
    pub fn kind(&self) -> MessageType {
        self.kind
    }

    /// The payload bytes.
    #[must_use]
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Consumes the frame, returning its payload.
    #[must_use]
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// Encoded length: header plus payload, in bytes.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// The 8-byte header of this frame (the encoding is this header then the payload).
    #[must_use]
    pub fn header_bytes(&self) -> [u8; HEADER_LEN] {
        header(self.kind, self.payload.len())
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&header(self.kind, self.payload.len()));
        out.extend_from_slice(&self.payload);
    }

    /// The encoding: header then payload.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }
}

fn header(kind: MessageType, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).expect("Frame::new keeps payloads below a u32 cap");
    let mut h = [0u8; HEADER_LEN];
    h[0] = FRAME_MAGIC;
    h[1] = FRAME_VERSION;
    h[2..4].copy_from_slice(&kind.0.to_le_bytes());
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h
}

/// A checked header: the type is known and the length within its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message type.
    pub kind: MessageType,
    /// The payload length in bytes (at most the type's cap).
    pub len: u32,
}

/// Parses and checks the first [`HEADER_LEN`] bytes of a frame. Checks the bytes that are
/// present even when fewer than 8 are given, so garbage is refused at its first byte.
///
/// # Errors
/// [`FrameError::BadMagic`], [`FrameError::WrongVersion`], [`FrameError::UnknownType`],
/// [`FrameError::Oversized`], or [`FrameError::Truncated`] if fewer than 8 bytes are given
/// and those present are valid.
pub fn decode_header(bytes: &[u8]) -> Result<Header, FrameError> {
    if let Some(&m) = bytes.first() {
        if m != FRAME_MAGIC {
            return Err(FrameError::BadMagic { got: m });
        }
    }
    if let Some(&v) = bytes.get(1) {
        if v != FRAME_VERSION {
            return Err(FrameError::WrongVersion { got: v });
        }
    }
    let mut kind = None;
    if bytes.len() >= 4 {
        let k = MessageType(u16::from_le_bytes([bytes[2], bytes[3]]));
        if k.cap().is_none() {
            return Err(FrameError::UnknownType(k.0));
        }
        kind = Some(k);
    }
    let (Some(kind), true) = (kind, bytes.len() >= HEADER_LEN) else {
        return Err(FrameError::Truncated {
            have: bytes.len(),
            need: HEADER_LEN,
        });
    };
    let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let cap = kind.cap().expect("checked above");
    if len > cap {
        return Err(FrameError::Oversized { kind, len, cap });
    }
    Ok(Header { kind, len })
}

/// Decodes exactly one frame from `bytes`.
///
/// # Errors
/// The errors of [`decode_header`]; [`FrameError::Truncated`] if the payload is short;
/// [`FrameError::Trailing`] if bytes remain after the frame.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, FrameError> {
    let h = decode_header(bytes)?;
    let need = HEADER_LEN + h.len as usize;
    if bytes.len() < need {
        return Err(FrameError::Truncated {
            have: bytes.len(),
            need,
        });
    }
    if bytes.len() > need {
        return Err(FrameError::Trailing(bytes.len() - need));
    }
    Ok(Frame {
        kind: h.kind,
        payload: Bytes::copy_from_slice(&bytes[HEADER_LEN..]),
    })
}

/// Most bytes the codec reserves ahead of their arrival.
const RESERVE_STEP: usize = 1024 * 1024;

/// A [`tokio_util::codec`] codec for frames.
///
/// Decoding checks the header as soon as its bytes arrive and reserves buffer space only for
/// a payload within the cap of its declared type, so a peer cannot make us allocate more than
/// `HEADER_LEN + cap(type)` for one frame, nor more than 1 MiB beyond what it has actually
/// sent. After an error the codec stays failed: the stream is out of sync and must be
/// dropped.
#[derive(Debug, Default)]
pub struct FrameCodec {
    pending: Option<Header>,
    failed: Option<FrameError>,
}

impl FrameCodec {
    /// A fresh codec.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a frame has been started but not finished (bytes are buffered).
    #[must_use]
    pub fn in_frame(&self) -> bool {
        self.pending.is_some()
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let header = match self.pending {
            Some(h) => h,
            None => {
                if src.is_empty() {
                    return Ok(None);
                }
                match decode_header(&src[..src.len().min(HEADER_LEN)]) {
                    Ok(h) => {
                        src.advance(HEADER_LEN);
                        self.pending = Some(h);
                        h
                    }
                    Err(FrameError::Truncated { .. }) => return Ok(None),
                    Err(e) => {
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                }
            }
        };
        let len = header.len as usize;
        if src.len() < len {
            // Grow towards what the (capped) header promised, a bounded step at a time, so
            // a peer that declares a large frame and stalls costs us little.
            src.reserve((len - src.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        self.pending = None;
        let payload = src.split_to(len).freeze();
        Ok(Some(Frame {
            kind: header.kind,
            payload,
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && self.pending.is_none() => Ok(None),
            None => {
                let (have, need) = match self.pending {
                    Some(h) => (HEADER_LEN + src.len(), HEADER_LEN + h.len as usize),
                    None => (src.len(), HEADER_LEN),
                };
                let e = FrameError::Truncated { have, need };
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        dst.reserve(frame.encoded_len());
        dst.extend_from_slice(&header(frame.kind, frame.payload.len()));
        dst.extend_from_slice(&frame.payload);
        Ok(())
    }
}

/// Appends `values` as contiguous little-endian integers, [`PrimeField::ENCODED_LEN`] bytes
/// each (the canonical integer in `[0, p)`).
pub fn encode_field_vec<F: PrimeField>(values: &[F], out: &mut Vec<u8>) {
    let width = F::ENCODED_LEN;
    out.reserve(values.len() * width);
    for v in values {
        let limbs = v.to_limbs();
        let mut le = [0u8; 32];
        for (chunk, limb) in le.chunks_exact_mut(8).zip(limbs) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out.extend_from_slice(&le[..width]);
    }
}

/// Decodes contiguous little-endian elements written by [`encode_field_vec`] into a vector of
/// exactly `bytes.len() / ENCODED_LEN` elements (one allocation, no intermediate copies).
///
/// # Errors
/// [`FrameError::FieldLength`] if the length is not a multiple of the width;
/// [`FrameError::NonCanonical`] naming the first element that is not below `p`.
pub fn decode_field_vec<F: PrimeField>(bytes: &[u8]) -> Result<Vec<F>, FrameError> {
    let width = F::ENCODED_LEN;
    if !bytes.len().is_multiple_of(width) {
        return Err(FrameError::FieldLength {
            field: F::NAME,
            len: bytes.len(),
            width,
        });
    }
    let mut out = Vec::with_capacity(bytes.len() / width);
    for (index, chunk) in bytes.chunks_exact(width).enumerate() {
        // Little-endian limbs straight from the wire (a short last limb is zero-padded).
        let mut limbs = [0u64; 4];
        for (limb, b) in limbs.iter_mut().zip(chunk.chunks(8)) {
            let mut le = [0u8; 8];
            le[..b.len()].copy_from_slice(b);
            *limb = u64::from_le_bytes(le);
        }
        let v = F::from_limbs(limbs).ok_or(FrameError::NonCanonical {
            field: F::NAME,
            index,
        })?;
        out.push(v);
    }
    Ok(out)
}

/// Runs `data` through every decoder of this module and panics if they disagree with each
/// other or with the encoders: the body of the `cargo fuzz` target `frame` and of the corpus
/// regression test. Never panics for any input if the decoders are correct.
#[doc(hidden)]
pub fn check_decoders(data: &[u8]) {
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};

    // One-shot decoding: whatever decodes re-encodes to the same bytes.
    if let Ok(frame) = decode_frame(data) {
        assert_eq!(frame.encode(), data, "frame re-encodes to its bytes");
    }

    // Streaming: all at once and in pieces give the same frames and the same final error.
    let whole = stream(data, data.len().max(1));
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let pieces = stream(data, step);
    assert_eq!(whole, pieces, "split points do not change the decoding");
    let mut consumed = Vec::new();
    for f in &whole.0 {
        f.encode_into(&mut consumed);
    }
    assert!(
        data.starts_with(&consumed),
        "decoded frames are a prefix of the input"
    );

    // Field vectors: whatever decodes re-encodes to the same bytes.
    if let Ok(v) = decode_field_vec::<Secp256k1Scalar>(data) {
        let mut out = Vec::new();
        encode_field_vec(&v, &mut out);
        assert_eq!(out, data);
    }
    if let Ok(v) = decode_field_vec::<Mersenne127>(data) {
        let mut out = Vec::new();
        encode_field_vec(&v, &mut out);
        assert_eq!(out, data);
    }

    // Party-to-party messages ([`super::peer`]), alone and as a frame's payload.
    super::peer::check_peer_decoders(data);
    if let Ok(frame) = decode_frame(data) {
        super::peer::check_peer_decoders(frame.payload());
    }
}

fn stream(data: &[u8], step: usize) -> (Vec<Frame>, Option<FrameError>) {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in data.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127 as M127, Secp256k1Scalar};

    #[test]
    fn header_layout_is_frozen() {
        let f = Frame::new(MessageType::SHARE_BATCH, vec![0xAA; 3]).unwrap();
        assert_eq!(
            f.encode(),
            [0xB7, 0x01, 0x21, 0x00, 0x03, 0x00, 0x00, 0x00, 0xAA, 0xAA, 0xAA]
        );
    }

    #[test]
    fn field_vectors_are_little_endian_fixed_width() {
        let mut out = Vec::new();
        encode_field_vec(&[Secp256k1Scalar::from_u64(0x0102)], &mut out);
        let mut want = [0u8; 32];
        want[0] = 0x02;
        want[1] = 0x01;
        assert_eq!(out, want);
        out.clear();
        encode_field_vec(&[M127::from_u64(5), M127::from_u64(7)], &mut out);
        assert_eq!(out.len(), 32);
        assert_eq!(out[0], 5);
        assert_eq!(out[16], 7);
        let back: Vec<M127> = decode_field_vec(&out).unwrap();
        assert_eq!(back, vec![M127::from_u64(5), M127::from_u64(7)]);
    }

    #[test]
    fn modulus_is_refused() {
        // 2^127 - 1 itself, little-endian.
        let mut p = [0xFFu8; 16];
        p[15] = 0x7F;
        let mut bytes = vec![0u8; 16];
        bytes.extend_from_slice(&p);
        assert_eq!(
            decode_field_vec::<M127>(&bytes),
            Err(FrameError::NonCanonical {
                field: "m127",
                index: 1
            })
        );
        let mut q = [0u8; 32];
        for (chunk, limb) in q.chunks_exact_mut(8).zip(Secp256k1Scalar::MODULUS) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        assert!(matches!(
            decode_field_vec::<Secp256k1Scalar>(&q),
            Err(FrameError::NonCanonical { index: 0, .. })
        ));
        assert!(matches!(
            decode_field_vec::<Secp256k1Scalar>(&q[..31]),
            Err(FrameError::FieldLength { len: 31, .. })
        ));
    }
}
