//! Noise handshakes with pinned static keys (the Noise Protocol Framework, revision 34,
//! <https://noiseprotocol.org/noise.html>, through the `snow` crate).
//!
//! Pattern `XX` with X25519 static keys, BLAKE2s, and an AEAD chosen by measurement
//! ([`Cipher`], `engine/benches/transport.rs`). Each side learns the other's static key during
//! the handshake and refuses it unless it is in the caller's [`AllowedKeys`] (taken from the
//! manifest): the initiator checks after message 2, the responder after message 3; a refusal
//! is [`NoiseError::UnknownPeer`] naming the key.
//!
//! Keys: the transport static key is an X25519 key pair ([`StaticKeypair`]); it is not the
//! party's signing key. The party's Schnorr signing key signs [`StaticKeypair::public`] in the
//! party's card, so the manifest pins transport keys that each party vouched for.
//!
//! On the wire every Noise message (handshake or transport) is a 2-byte big-endian length then
//! at most [`MAX_NOISE_MESSAGE`] bytes, as the Noise specification suggests (section 3).

use std::collections::HashSet;
use std::fmt;

use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::{Builder, HandshakeState, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Noise's limit on one message, in bytes (specification section 3).
pub const MAX_NOISE_MESSAGE: usize = 65535;
/// Bytes of the AEAD tag on every transport message.
pub const TAG_LEN: usize = 16;
/// Largest plaintext carried by one transport message.
pub const MAX_PLAINTEXT: usize = MAX_NOISE_MESSAGE - TAG_LEN;
/// Prologue mixed into every handshake: both sides must agree on it, so a handshake for
/// another protocol or version fails.
pub const PROLOGUE: &[u8] = b"btcmpc transport v1";

/// An X25519 transport public key (32 bytes), as pinned in a manifest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportKey(pub [u8; 32]);

impl TransportKey {
    /// Parses 32 bytes.
    ///
    /// # Errors
    /// [`NoiseError::BadKey`] if `bytes` is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, NoiseError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| NoiseError::BadKey { len: bytes.len() })
    }

    /// Lower-case hex.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for TransportKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransportKey({})", self.to_hex())
    }
}

/// A party's or client's X25519 transport key pair.
#[derive(Clone)]
pub struct StaticKeypair {
    secret: [u8; 32],
    public: TransportKey,
}

impl fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl StaticKeypair {
    /// A fresh key pair from the operating system's randomness.
    ///
    /// # Errors
    /// [`NoiseError::Noise`] if the resolver cannot produce a key (no randomness).
    pub fn generate() -> Result<Self, NoiseError> {
        let kp = Builder::new(params(Cipher::default()))
            .generate_keypair()
            .map_err(NoiseError::from)?;
        Self::from_secret(&kp.private)
    }

    /// The key pair of a stored 32-byte X25519 secret.
    ///
    /// # Errors
    /// [`NoiseError::BadKey`] if `secret` is not 32 bytes.
    pub fn from_secret(secret: &[u8]) -> Result<Self, NoiseError> {
        let secret: [u8; 32] = secret
            .try_into()
            .map_err(|_| NoiseError::BadKey { len: secret.len() })?;
        let mut dh = DefaultResolver
            .resolve_dh(&snow::params::DHChoice::Curve25519)
            .expect("the default resolver provides X25519");
        dh.set(&secret);
        let public = TransportKey::from_slice(dh.pubkey())?;
        Ok(Self { secret, public })
    }

    /// The public key: the bytes the party's card carries, signed by the party's signing key.
    #[must_use]
    pub fn public(&self) -> TransportKey {
        self.public
    }

    /// The 32-byte secret, for the caller to store (file mode 0600).
    #[must_use]
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret
    }
}

/// The set of remote static keys a node accepts (from the manifest), or any key (a party's
/// listener, which serves clients too: it authenticates every key and tells parties from
/// clients by the manifest afterwards).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedKeys {
    keys: HashSet<TransportKey>,
    any: bool,
}

impl AllowedKeys {
    /// The set of `keys`.
    pub fn new(keys: impl IntoIterator<Item = TransportKey>) -> Self {
        Self {
            keys: keys.into_iter().collect(),
            any: false,
        }
    }

    /// Every key (still authenticated by the handshake: the remote proves it holds its key).
    #[must_use]
    pub fn any() -> Self {
        Self {
            keys: HashSet::new(),
            any: true,
        }
    }

    /// Whether `key` is allowed.
    #[must_use]
    pub fn contains(&self, key: &TransportKey) -> bool {
        self.any || self.keys.contains(key)
    }

    /// Number of keys named (0 for [`AllowedKeys::any`]).
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is allowed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.any && self.keys.is_empty()
    }
}

/// The AEAD and its implementation. Both ends must use the same; the handshake fails otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cipher {
    /// AES-256-GCM from `ring` (AES-NI and CLMUL assembly).
    RingAesGcm,
    /// ChaCha20-Poly1305 from `ring`.
    RingChaChaPoly,
    /// AES-256-GCM from the pure-Rust `aes-gcm` crate.
    RustAesGcm,
    /// ChaCha20-Poly1305 from the pure-Rust `chacha20poly1305` crate.
    RustChaChaPoly,
}

impl Default for Cipher {
    /// The fastest on our machines (x86-64 with AES-NI and CLMUL), by
    /// `engine/benches/transport.rs` (8 MiB frames over loopback, 2 shared cores): ring
    /// AES-GCM 288 MiB/s, ring ChaCha20-Poly1305 126 MiB/s, pure-Rust ChaCha20-Poly1305
    /// 92 MiB/s, pure-Rust AES-GCM 81 MiB/s.
    fn default() -> Self {
        Self::RingAesGcm
    }
}

impl Cipher {
    /// Every choice, for benchmarks.
    pub const ALL: [Cipher; 4] = [
        Self::RingAesGcm,
        Self::RingChaChaPoly,
        Self::RustAesGcm,
        Self::RustChaChaPoly,
    ];

    /// The Noise protocol name.
    #[must_use]
    pub fn protocol_name(self) -> &'static str {
        match self {
            Self::RingAesGcm | Self::RustAesGcm => "Noise_XX_25519_AESGCM_BLAKE2s",
            Self::RingChaChaPoly | Self::RustChaChaPoly => "Noise_XX_25519_ChaChaPoly_BLAKE2s",
        }
    }

    fn builder<'a>(self) -> Builder<'a> {
        let p = params(self);
        match self {
            Self::RingAesGcm | Self::RingChaChaPoly => Builder::with_resolver(
                p,
                Box::new(snow::resolvers::FallbackResolver::new(
                    Box::new(RingResolver),
                    Box::new(DefaultResolver),
                )),
            ),
            Self::RustAesGcm | Self::RustChaChaPoly => {
                Builder::with_resolver(p, Box::new(DefaultResolver))
            }
        }
    }
}

fn params(cipher: Cipher) -> snow::params::NoiseParams {
    cipher
        .protocol_name()
        .parse()
        .expect("the protocol names above are valid Noise names")
}

/// Errors of the handshake and of Noise messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoiseError {
    /// The remote static key is not in the allowed set.
    #[error("peer transport key {key} is not in the allowed set")]
    UnknownPeer {
        /// The refused key.
        key: TransportKey,
    },
    /// A key had the wrong length.
    #[error("transport key has {len} bytes, expected 32")]
    BadKey {
        /// Bytes given.
        len: usize,
    },
    /// The handshake failed cryptographically or by protocol.
    #[error("noise handshake failed: {0}")]
    Noise(String),
    /// A Noise message on the wire declared a length of zero.
    #[error("empty noise message")]
    Empty,
    /// The peer closed the connection during the handshake (it may have refused our key).
    #[error("peer closed the connection during the handshake (is our key in its manifest?)")]
    ClosedInHandshake,
    /// The socket failed.
    #[error("socket error during the handshake: {0}")]
    Io(#[from] std::io::Error),
}

impl From<snow::Error> for NoiseError {
    fn from(e: snow::Error) -> Self {
        Self::Noise(e.to_string())
    }
}

/// Writes one Noise message: 2-byte big-endian length, then the bytes.
///
/// # Errors
/// The socket's error.
pub async fn write_message<W: AsyncWrite + Unpin>(w: &mut W, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).expect("noise messages are at most 65535 bytes");
    let mut buf = Vec::with_capacity(2 + msg.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(msg);
    w.write_all(&buf).await
}

/// Reads one Noise message into `buf` (at least [`MAX_NOISE_MESSAGE`] bytes long); returns its
/// length, or `None` on a clean end of stream before the first length byte.
///
/// # Errors
/// The socket's error; `UnexpectedEof` if the stream ends inside a message.
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
) -> std::io::Result<Option<usize>> {
    let mut len = [0u8; 2];
    let n = r.read(&mut len[..1]).await?;
    if n == 0 {
        return Ok(None);
    }
    r.read_exact(&mut len[1..]).await?;
    let len = usize::from(u16::from_be_bytes(len));
    r.read_exact(&mut buf[..len]).await?;
    Ok(Some(len))
}

async fn read_hs<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<usize, NoiseError> {
    match read_message(r, buf).await {
        Ok(Some(0)) => Err(NoiseError::Empty),
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(NoiseError::ClosedInHandshake),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(NoiseError::ClosedInHandshake)
        }
        Err(e) => Err(e.into()),
    }
}

fn check_remote(hs: &HandshakeState, allowed: &AllowedKeys) -> Result<TransportKey, NoiseError> {
    let key = TransportKey::from_slice(
        hs.get_remote_static()
            .ok_or_else(|| NoiseError::Noise("no remote static key after XX".into()))?,
    )?;
    if !allowed.contains(&key) {
        return Err(NoiseError::UnknownPeer { key });
    }
    Ok(key)
}

/// The result of a handshake: the transport state and the authenticated remote key.
#[derive(Debug)]
pub struct Established {
    /// Transport state with explicit nonces (one counter per direction kept by the caller).
    pub state: StatelessTransportState,
    /// The remote static key, checked against the allowed set.
    pub remote: TransportKey,
}

/// Runs the XX handshake as initiator over `io`.
///
/// # Errors
/// [`NoiseError::UnknownPeer`] if the responder's key is not allowed; the other variants for
/// socket failures and bad handshake messages.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    me: &StaticKeypair,
    allowed: &AllowedKeys,
    cipher: Cipher,
) -> Result<Established, NoiseError> {
    let mut hs = cipher
        .builder()
        .local_private_key(&me.secret)
        .prologue(PROLOGUE)
        .build_initiator()?;
    let mut out = vec![0u8; MAX_NOISE_MESSAGE];
    let mut inp = vec![0u8; MAX_NOISE_MESSAGE];
    let mut scratch = vec![0u8; MAX_NOISE_MESSAGE];
    let n = hs.write_message(&[], &mut out)?; // -> e
    write_message(io, &out[..n]).await?;
    let n = read_hs(io, &mut inp).await?; // <- e, ee, s, es
    hs.read_message(&inp[..n], &mut scratch)?;
    let remote = check_remote(&hs, allowed)?;
    let n = hs.write_message(&[], &mut out)?; // -> s, se
    write_message(io, &out[..n]).await?;
    Ok(Established {
        state: hs.into_stateless_transport_mode()?,
        remote,
    })
}

/// Runs the XX handshake as responder over `io`.
///
/// # Errors
/// [`NoiseError::UnknownPeer`] if the initiator's key is not allowed; the other variants for
/// socket failures and bad handshake messages.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    me: &StaticKeypair,
    allowed: &AllowedKeys,
    cipher: Cipher,
) -> Result<Established, NoiseError> {
    let mut hs = cipher
        .builder()
        .local_private_key(&me.secret)
        .prologue(PROLOGUE)
        .build_responder()?;
    let mut out = vec![0u8; MAX_NOISE_MESSAGE];
    let mut inp = vec![0u8; MAX_NOISE_MESSAGE];
    let mut scratch = vec![0u8; MAX_NOISE_MESSAGE];
    let n = read_hs(io, &mut inp).await?; // <- e
    hs.read_message(&inp[..n], &mut scratch)?;
    let n = hs.write_message(&[], &mut out)?; // -> e, ee, s, es
    write_message(io, &out[..n]).await?;
    let n = read_hs(io, &mut inp).await?; // <- s, se
    hs.read_message(&inp[..n], &mut scratch)?;
    let remote = check_remote(&hs, allowed)?;
    Ok(Established {
        state: hs.into_stateless_transport_mode()?,
        remote,
    })
}
