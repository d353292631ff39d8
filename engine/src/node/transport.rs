//! Authenticated, encrypted channels carrying [`Frame`]s over TCP, and a manager keeping one
//! channel per peer.
//!
//! A [`Channel`] is a TCP stream after a Noise `XX` handshake ([`super::noise`]) whose remote
//! static key is in the caller's [`AllowedKeys`]. After the handshake the responder sends one
//! encrypted acknowledgement, so an initiator whose key the responder refused learns it from
//! [`connect`] instead of from its first send.
//!
//! Frames are encoded ([`super::frame`]) and the bytes cut into Noise transport messages of at
//! most [`MAX_PLAINTEXT`] plaintext bytes each; the receiver decrypts messages in order into a
//! buffer and runs the [`FrameCodec`] over it, which refuses a bad header before any payload is
//! buffered. Nonces are implicit counters (one per direction), so a replayed, reordered,
//! dropped or altered ciphertext fails authentication ([`TransportError::Decrypt`]) and the
//! channel is closed.
//!
//! Timeouts ([`ChannelConfig`]): the whole handshake, and each socket read or write (a peer that
//! makes no progress for that long is dropped). The [`Peers`] manager reconnects with bounded
//! exponential backoff ([`Backoff`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use snow::StatelessTransportState;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio_util::codec::Decoder;

use super::frame::{Frame, FrameCodec, FrameError, MessageType};
use super::noise::{
    self, AllowedKeys, Cipher, NoiseError, StaticKeypair, TransportKey, MAX_NOISE_MESSAGE,
    MAX_PLAINTEXT, TAG_LEN,
};

const ACK: &[u8] = b"btcmpc accepted";

/// Timeouts and the cipher of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Bound on the whole handshake, TCP connect included.
    pub handshake_timeout: Duration,
    /// Bound on each socket write: a peer that does not take our bytes for this long is dropped.
    pub write_timeout: Duration,
    /// Bound on waiting for the next bytes from the peer in [`Channel::recv`]: an idle peer is
    /// dropped after this long.
    pub idle_timeout: Duration,
    /// The AEAD; both ends must agree.
    pub cipher: Cipher,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            cipher: Cipher::default(),
        }
    }
}

/// Errors of channels.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The handshake failed or the remote key is refused.
    #[error(transparent)]
    Handshake(#[from] NoiseError),
    /// An operation did not finish in time.
    #[error("timed out after {after:?} while {during}")]
    Timeout {
        /// What we were doing.
        during: &'static str,
        /// The bound that fired.
        after: Duration,
    },
    /// A transport message failed authentication: tampered, replayed, reordered or from
    /// another session.
    #[error(
        "message {nonce} from peer {peer} failed authentication (tampered, replayed or reordered)"
    )]
    Decrypt {
        /// The peer.
        peer: TransportKey,
        /// The nonce we expected.
        nonce: u64,
    },
    /// The peer sent bytes that are not a valid frame.
    #[error("bad frame from peer {peer}: {source}")]
    Frame {
        /// The peer.
        peer: TransportKey,
        /// What was wrong.
        source: FrameError,
    },
    /// The peer closed the connection between frames.
    #[error("peer {peer} closed the connection")]
    Closed {
        /// The peer.
        peer: TransportKey,
    },
    /// A transport message too short to hold its tag.
    #[error(
        "noise message of {len} bytes from peer {peer} is shorter than its {TAG_LEN}-byte tag"
    )]
    ShortMessage {
        /// The peer.
        peer: TransportKey,
        /// Its length.
        len: usize,
    },
    /// The peer is not known to the [`Peers`] manager.
    #[error("no address known for peer {0}")]
    UnknownPeer(TransportKey),
    /// Every connection attempt of a backoff schedule failed.
    #[error("gave up on peer {peer} after {attempts} attempts: {last}")]
    GaveUp {
        /// The peer.
        peer: TransportKey,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: Box<TransportError>,
    },
    /// The nonce counter is exhausted (2^64 messages): the channel must be re-established.
    #[error("nonce counter exhausted on the channel to {0}")]
    NonceExhausted(TransportKey),
    /// The socket failed.
    #[error("socket error while {during}: {source}")]
    Io {
        /// What we were doing.
        during: &'static str,
        /// The error.
        source: std::io::Error,
    },
}

/// Connects to `addr`, runs the handshake as initiator and waits for the responder's
/// acknowledgement, all within `config.handshake_timeout`.
///
/// # Errors
/// [`TransportError::Timeout`], [`TransportError::Io`] if the TCP connect fails,
/// [`TransportError::Handshake`] (with [`NoiseError::UnknownPeer`] if the responder's key is not
/// in `allowed`, [`NoiseError::ClosedInHandshake`] if the responder refused ours).
pub async fn connect(
    addr: impl ToSocketAddrs,
    me: &StaticKeypair,
    allowed: &AllowedKeys,
    config: ChannelConfig,
) -> Result<Channel, TransportError> {
    let fut = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|source| TransportError::Io {
                during: "connecting",
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let est = noise::initiate(&mut stream, me, allowed, config.cipher).await?;
        let mut channel = Channel::new(stream, est, true, config);
        let ack = channel.receiver.read_ack().await.map_err(|e| match e {
            TransportError::Closed { .. } => NoiseError::ClosedInHandshake.into(),
            e => e,
        })?;
        if ack != ACK {
            return Err(NoiseError::Noise("bad acknowledgement".into()).into());
        }
        Ok::<_, TransportError>(channel)
    };
    match tokio::time::timeout(config.handshake_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(TransportError::Timeout {
            during: "connecting and handshaking",
            after: config.handshake_timeout,
        }),
    }
}

/// Runs the handshake as responder on an accepted stream and acknowledges it, within
/// `config.handshake_timeout`.
///
/// # Errors
/// [`TransportError::Timeout`], [`TransportError::Handshake`] (with
/// [`NoiseError::UnknownPeer`] naming the key if the initiator is not in `allowed`),
/// [`TransportError::Io`].
pub async fn accept(
    mut stream: TcpStream,
    me: &StaticKeypair,
    allowed: &AllowedKeys,
    config: ChannelConfig,
) -> Result<Channel, TransportError> {
    let fut = async {
        let _ = stream.set_nodelay(true);
        let est = noise::respond(&mut stream, me, allowed, config.cipher).await?;
        let mut channel = Channel::new(stream, est, false, config);
        channel.sender.write_plaintext(ACK).await?;
        Ok::<_, TransportError>(channel)
    };
    match tokio::time::timeout(config.handshake_timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(TransportError::Timeout {
            during: "handshaking",
            after: config.handshake_timeout,
        }),
    }
}

/// An authenticated encrypted channel to one peer.
#[derive(Debug)]
pub struct Channel {
    sender: ChannelSender,
    receiver: ChannelReceiver,
}

impl Channel {
    fn new(
        stream: TcpStream,
        est: noise::Established,
        initiator: bool,
        cfg: ChannelConfig,
    ) -> Self {
        let (r, w) = stream.into_split();
        let state = Arc::new(est.state);
        Self {
            sender: ChannelSender {
                writer: w,
                state: Arc::clone(&state),
                nonce: 0,
                remote: est.remote,
                initiator,
                timeout: cfg.write_timeout,
                wire: Vec::new(),
            },
            receiver: ChannelReceiver {
                reader: r,
                state,
                nonce: 0,
                remote: est.remote,
                timeout: cfg.idle_timeout,
                codec: FrameCodec::new(),
                buf: BytesMut::new(),
                wire: vec![0u8; MAX_NOISE_MESSAGE],
                failed: false,
            },
        }
    }

    /// The authenticated remote static key.
    #[must_use]
    pub fn remote(&self) -> TransportKey {
        self.sender.remote
    }

    /// Whether we dialled this channel.
    #[must_use]
    pub fn is_initiator(&self) -> bool {
        self.sender.initiator
    }

    /// Sends one frame. See [`ChannelSender::send`].
    ///
    /// # Errors
    /// As [`ChannelSender::send`].
    pub async fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        self.sender.send(frame).await
    }

    /// Receives one frame. See [`ChannelReceiver::recv`].
    ///
    /// # Errors
    /// As [`ChannelReceiver::recv`].
    pub async fn recv(&mut self) -> Result<Frame, TransportError> {
        self.receiver.recv().await
    }

    /// Waits for the next frame that is not a keepalive, sending an empty
    /// [`MessageType::PING`] every third of the idle timeout meanwhile: the way a client waits
    /// for an answer that takes longer than the idle timeout to compute (a job's evaluation),
    /// so that neither end drops the other as silent. Incoming PINGs are skipped.
    ///
    /// # Errors
    /// As [`ChannelReceiver::recv`] and [`ChannelSender::send`].
    pub async fn recv_keepalive(&mut self) -> Result<Frame, TransportError> {
        let period = keepalive_period(self.receiver.timeout);
        let ping =
            Frame::new(MessageType::PING, Vec::new()).expect("an empty ping is under its cap");
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let (sender, receiver) = (&mut self.sender, &mut self.receiver);
        loop {
            // The receive future lives across ticks (it is never dropped half-way through a
            // frame); a ping is sent beside it.
            let recv = receiver.recv();
            tokio::pin!(recv);
            let frame = loop {
                tokio::select! {
                    r = &mut recv => break r?,
                    _ = tick.tick() => sender.send(&ping).await?,
                }
            };
            if frame.kind() == MessageType::PING && frame.payload().is_empty() {
                continue;
            }
            return Ok(frame);
        }
    }

    /// Splits into halves that can be used from different tasks.
    #[must_use]
    pub fn split(self) -> (ChannelSender, ChannelReceiver) {
        (self.sender, self.receiver)
    }
}

/// The sending half of a [`Channel`].
pub struct ChannelSender {
    writer: OwnedWriteHalf,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    remote: TransportKey,
    initiator: bool,
    timeout: Duration,
    wire: Vec<u8>,
}

impl std::fmt::Debug for ChannelSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSender")
            .field("remote", &self.remote)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// Bytes of ciphertext gathered before one socket write.
const WRITE_BATCH: usize = 256 * 1024;

impl ChannelSender {
    /// The remote static key.
    #[must_use]
    pub fn remote(&self) -> TransportKey {
        self.remote
    }

    /// Encrypts and sends one frame, in as many Noise messages as it needs.
    ///
    /// # Errors
    /// [`TransportError::Timeout`] if the peer takes no bytes for `write_timeout`;
    /// [`TransportError::Io`]; [`TransportError::NonceExhausted`].
    pub async fn send(&mut self, frame: &Frame) -> Result<(), TransportError> {
        self.send_parts(&[&frame.header_bytes(), frame.payload()])
            .await
    }

    /// Sends bytes that already hold an encoded frame, unchanged: the way a party re-sends a
    /// stored outbox message byte for byte. The receiver checks them as any frame.
    ///
    /// # Errors
    /// As [`ChannelSender::send`].
    pub async fn send_encoded(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.send_parts(&[bytes]).await
    }

    /// Seals the concatenation of `parts` in messages of [`MAX_PLAINTEXT`] bytes (the last
    /// one shorter), copying only where a message spans two parts.
    async fn send_parts(&mut self, parts: &[&[u8]]) -> Result<(), TransportError> {
        let mut stage: Vec<u8> = Vec::new();
        for part in parts {
            let mut rest: &[u8] = part;
            while !rest.is_empty() {
                if stage.is_empty() && rest.len() >= MAX_PLAINTEXT {
                    let (chunk, tail) = rest.split_at(MAX_PLAINTEXT);
                    self.seal(chunk)?;
                    rest = tail;
                } else {
                    let take = (MAX_PLAINTEXT - stage.len()).min(rest.len());
                    stage.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if stage.len() == MAX_PLAINTEXT {
                        self.seal(&stage)?;
                        stage.clear();
                    }
                }
                if self.wire.len() >= WRITE_BATCH {
                    self.flush().await?;
                }
            }
        }
        if !stage.is_empty() {
            self.seal(&stage)?;
        }
        self.flush().await
    }

    async fn write_plaintext(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        self.seal(bytes)?;
        self.flush().await
    }

    fn seal(&mut self, chunk: &[u8]) -> Result<(), TransportError> {
        if self.nonce == u64::MAX {
            return Err(TransportError::NonceExhausted(self.remote));
        }
        let start = self.wire.len();
        self.wire.resize(start + 2 + chunk.len() + TAG_LEN, 0);
        let n = self
            .state
            .write_message(self.nonce, chunk, &mut self.wire[start + 2..])
            .map_err(|e| TransportError::Handshake(e.into()))?;
        self.nonce += 1;
        let len = u16::try_from(n).expect("chunks are at most MAX_PLAINTEXT bytes");
        self.wire[start..start + 2].copy_from_slice(&len.to_be_bytes());
        self.wire.truncate(start + 2 + n);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        let after = self.timeout;
        let r = tokio::time::timeout(after, self.writer.write_all(&self.wire)).await;
        self.wire.clear();
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(TransportError::Io {
                during: "sending",
                source,
            }),
            Err(_) => Err(TransportError::Timeout {
                during: "sending",
                after,
            }),
        }
    }
}

/// The receiving half of a [`Channel`].
pub struct ChannelReceiver {
    reader: OwnedReadHalf,
    state: Arc<StatelessTransportState>,
    nonce: u64,
    remote: TransportKey,
    timeout: Duration,
    codec: FrameCodec,
    buf: BytesMut,
    wire: Vec<u8>,
    failed: bool,
}

impl std::fmt::Debug for ChannelReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelReceiver")
            .field("remote", &self.remote)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl ChannelReceiver {
    /// The remote static key.
    #[must_use]
    pub fn remote(&self) -> TransportKey {
        self.remote
    }

    /// Receives the next frame.
    ///
    /// # Errors
    /// [`TransportError::Timeout`] if no bytes arrive for `idle_timeout`;
    /// [`TransportError::Decrypt`] for a tampered, replayed or reordered message;
    /// [`TransportError::Frame`] for garbage, oversized, unknown-type or wrong-version frames,
    /// and a truncated one when the peer closes inside it; [`TransportError::Closed`] when the
    /// peer closes between frames. After any error the channel is failed and must be dropped.
    pub async fn recv(&mut self) -> Result<Frame, TransportError> {
        if self.failed {
            return Err(TransportError::Closed { peer: self.remote });
        }
        let r = self.recv_inner().await;
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    async fn recv_inner(&mut self) -> Result<Frame, TransportError> {
        let peer = self.remote;
        let frame_err = |source| TransportError::Frame { peer, source };
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).map_err(frame_err)? {
                return Ok(frame);
            }
            match self.read_plaintext_into_buf().await {
                Ok(()) => {}
                Err(TransportError::Closed { peer }) => {
                    return match self.codec.decode_eof(&mut self.buf) {
                        Ok(Some(frame)) => Ok(frame),
                        Ok(None) => Err(TransportError::Closed { peer }),
                        Err(e) => Err(frame_err(e)),
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and decrypts one Noise message, appending its plaintext to `buf`.
    async fn read_plaintext_into_buf(&mut self) -> Result<(), TransportError> {
        let peer = self.remote;
        let after = self.timeout;
        let n = match tokio::time::timeout(
            after,
            noise::read_message(&mut self.reader, &mut self.wire),
        )
        .await
        {
            Err(_) => {
                return Err(TransportError::Timeout {
                    during: "waiting for the peer",
                    after,
                })
            }
            Ok(Ok(Some(n))) => n,
            Ok(Ok(None)) => return Err(TransportError::Closed { peer }),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(TransportError::Frame {
                    peer,
                    source: FrameError::Truncated {
                        have: self.buf.len(),
                        need: self.buf.len() + 1,
                    },
                })
            }
            Ok(Err(source)) => {
                return Err(TransportError::Io {
                    during: "receiving",
                    source,
                })
            }
        };
        if n < TAG_LEN {
            return Err(TransportError::ShortMessage { peer, len: n });
        }
        // Decrypt straight into the frame buffer.
        let old = self.buf.len();
        self.buf.resize(old + n, 0); // room for the tag: ring decrypts in place
        match self
            .state
            .read_message(self.nonce, &self.wire[..n], &mut self.buf[old..])
        {
            Ok(m) => {
                self.buf.truncate(old + m);
                self.nonce += 1;
                Ok(())
            }
            Err(_) => {
                self.buf.truncate(old);
                Err(TransportError::Decrypt {
                    peer,
                    nonce: self.nonce,
                })
            }
        }
    }
}

impl ChannelReceiver {
    // The handshake acknowledgement is one raw transport message, not a frame.
    async fn read_ack(&mut self) -> Result<Vec<u8>, TransportError> {
        self.read_plaintext_into_buf().await?;
        Ok(self.buf.split().to_vec())
    }
}

/// How often a live channel sends an empty [`MessageType::PING`]: a third of the idle
/// timeout `idle` (at least 10 ms), so a peer's idle timeout only fires on a dead or silent end.
#[must_use]
pub fn keepalive_period(idle: Duration) -> Duration {
    (idle / 3).max(Duration::from_millis(10))
}

/// Most handshakes a [`Listener`] runs at once; a further connection evicts the oldest pending
/// one (each is bounded by the handshake timeout).
pub const MAX_PENDING_HANDSHAKES: usize = 64;

/// Most handshakes a [`Listener`] runs at once for one remote address, so one host that opens
/// silent connections cannot take every slot; a further one from it evicts its oldest.
pub const MAX_PENDING_PER_ADDRESS: usize = 8;

/// The handshakes a [`Listener`] runs, oldest first, each with the sender that evicts it.
#[derive(Debug, Default)]
struct PendingHandshakes {
    next: u64,
    queue: std::collections::VecDeque<(u64, std::net::IpAddr, oneshot::Sender<()>)>,
}

impl PendingHandshakes {
    /// Registers a handshake from `ip`, evicting the oldest one of `ip` if it has
    /// [`MAX_PENDING_PER_ADDRESS`], then the oldest of all if there are
    /// [`MAX_PENDING_HANDSHAKES`]. Returns its number and the receiver that says it is evicted.
    fn admit(&mut self, ip: std::net::IpAddr) -> (u64, oneshot::Receiver<()>) {
        if self.queue.iter().filter(|e| e.1 == ip).count() >= MAX_PENDING_PER_ADDRESS {
            if let Some(i) = self.queue.iter().position(|e| e.1 == ip) {
                self.evict(i);
            }
        }
        if self.queue.len() >= MAX_PENDING_HANDSHAKES {
            self.evict(0);
        }
        let (tx, rx) = oneshot::channel();
        let seq = self.next;
        self.next += 1;
        self.queue.push_back((seq, ip, tx));
        (seq, rx)
    }

    fn evict(&mut self, i: usize) {
        if let Some((_, ip, stop)) = self.queue.remove(i) {
            tracing::warn!(target: "btcmpc_engine::node::transport", %ip, "evicted the oldest pending handshake to make room");
            let _ = stop.send(());
        }
    }

    /// Forgets handshake `seq` (finished, failed or evicted).
    fn done(&mut self, seq: u64) {
        if let Some(i) = self.queue.iter().position(|e| e.0 == seq) {
            self.queue.remove(i);
        }
    }
}

/// A TCP listener that handshakes every incoming connection in its own task and yields the
/// authenticated channels; a connection that fails (garbage, a refused key, a timeout) is
/// reported and dropped while the others go on. At most [`MAX_PENDING_HANDSHAKES`] handshakes
/// run at once ([`MAX_PENDING_PER_ADDRESS`] per remote address), so a flood of idle connections
/// costs bounded memory; a new connection evicts the oldest pending handshake, so the flood
/// does not lock honest clients out either.
#[derive(Debug)]
pub struct Listener {
    local_addr: SocketAddr,
    incoming: mpsc::Receiver<Result<Channel, (SocketAddr, TransportError)>>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` and starts accepting.
    ///
    /// # Errors
    /// [`TransportError::Io`] if the address cannot be bound.
    pub async fn bind(
        addr: impl ToSocketAddrs,
        me: StaticKeypair,
        allowed: AllowedKeys,
        config: ChannelConfig,
    ) -> Result<Self, TransportError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TransportError::Io {
                during: "binding",
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| TransportError::Io {
            during: "binding",
            source,
        })?;
        let (tx, rx) = mpsc::channel(64);
        let me = Arc::new(me);
        let allowed = Arc::new(allowed);
        let pending: Arc<std::sync::Mutex<PendingHandshakes>> = Arc::default();
        let task = tokio::spawn(async move {
            loop {
                let (stream, from) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(target: "btcmpc_engine::node::transport", "accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Room is made by evicting the oldest pending handshake (of this address when
                // it has MAX_PENDING_PER_ADDRESS, else of all): an honest handshake takes
                // milliseconds, so silent connections are the ones evicted and a flood of them
                // cannot lock clients out for a whole handshake timeout.
                let (seq, evicted) = pending
                    .lock()
                    .expect("pending handshake table lock is never poisoned")
                    .admit(from.ip());
                let (me, allowed, tx) = (Arc::clone(&me), Arc::clone(&allowed), tx.clone());
                let pending = Arc::clone(&pending);
                tokio::spawn(async move {
                    let r = tokio::select! {
                        r = accept(stream, &me, &allowed, config) => r,
                        _ = evicted => Err(TransportError::Timeout {
                            during: "handshaking (evicted for a newer connection)",
                            after: config.handshake_timeout,
                        }),
                    };
                    pending
                        .lock()
                        .expect("pending handshake table lock is never poisoned")
                        .done(seq);
                    if let Err(e) = &r {
                        tracing::info!(target: "btcmpc_engine::node::transport", %from, "refused connection: {e}");
                    }
                    let _ = tx.send(r.map_err(|e| (from, e))).await;
                });
            }
        });
        Ok(Self {
            local_addr,
            incoming: rx,
            task,
        })
    }

    /// The bound address (useful with port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next authenticated channel, or the error of a connection that failed (with the
    /// remote address); `None` once the listener has stopped.
    pub async fn next(&mut self) -> Option<Result<Channel, (SocketAddr, TransportError)>> {
        self.incoming.recv().await
    }

    /// Stops accepting and returns once the socket is closed, so that the address can be
    /// bound again at once (dropping a listener closes it a moment later, on the runtime).
    pub async fn close(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A bounded exponential backoff: attempt `i` (from 0) waits `min(initial * 2^i, max_delay)`
/// before it starts (attempt 0 starts at once); at most `max_attempts` attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the second attempt.
    pub initial: Duration,
    /// Largest delay between attempts.
    pub max_delay: Duration,
    /// Attempts before giving up (at least 1).
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            max_attempts: 8,
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt` (0-based).
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }
}

/// What the [`Peers`] manager reports from its channels.
#[derive(Debug)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A frame from an authenticated peer.
    Frame {
        /// The peer.
        peer: TransportKey,
        /// The frame.
        frame: Frame,
    },
    /// A peer's channel failed or closed; the manager reconnects on the next send.
    Disconnected {
        /// The peer.
        peer: TransportKey,
        /// Why.
        error: TransportError,
    },
}

#[derive(Default)]
struct Slot {
    addr: Option<SocketAddr>,
    sender: Option<Arc<Mutex<ChannelSender>>>,
    dialer: Option<TransportKey>,
    generation: u64,
    reader: Option<JoinHandle<()>>,
    /// Readers of channels this side no longer sends on (a replaced channel, or the one that
    /// lost a simultaneous dial): they hand on what the peer already wrote into them until the
    /// peer closes them or they fall idle.
    draining: Vec<JoinHandle<()>>,
}

/// Spare channels of one peer read at once (see [`Peers::adopt`]): a peer dialling again and
/// again while its channels lose makes this side drop the oldest.
pub const MAX_SPARE_CHANNELS: usize = 4;

/// Keeps at most one channel per peer: dials on demand with [`Backoff`], adopts incoming
/// channels from a [`Listener`], and forwards every received frame as a [`PeerEvent`]
/// (except the empty keepalive [`MessageType::PING`]s managers send each other every third of the idle timeout; a
/// peer silent for the whole idle timeout is dropped and reported).
///
/// When both sides dial at once, both keep the channel dialled by the lower key, so they agree
/// on one. Frames the peer already wrote into the other channel are not lost: that channel is
/// read until the peer closes it (or it falls silent for the idle timeout).
pub struct Peers {
    me: Arc<StaticKeypair>,
    allowed: Arc<AllowedKeys>,
    config: ChannelConfig,
    backoff: Backoff,
    slots: Arc<std::sync::Mutex<HashMap<TransportKey, Slot>>>,
    events: mpsc::Sender<PeerEvent>,
    next_generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("me", &self.me.public())
            .field("connected", &self.connected())
            .finish_non_exhaustive()
    }
}

impl Peers {
    /// A manager for `me` accepting `allowed`; returns it with the stream of events
    /// (bounded: a slow consumer slows the readers down).
    #[must_use]
    pub fn new(
        me: StaticKeypair,
        allowed: AllowedKeys,
        config: ChannelConfig,
        backoff: Backoff,
    ) -> (Self, mpsc::Receiver<PeerEvent>) {
        let (tx, rx) = mpsc::channel(256);
        (
            Self {
                me: Arc::new(me),
                allowed: Arc::new(allowed),
                config,
                backoff,
                slots: Arc::default(),
                events: tx,
                next_generation: std::sync::atomic::AtomicU64::new(1),
            },
            rx,
        )
    }

    /// Records the address of `peer`.
    pub fn add(&self, peer: TransportKey, addr: SocketAddr) {
        let mut slots = self
            .slots
            .lock()
            .expect("peer table lock is never poisoned");
        slots.entry(peer).or_default().addr = Some(addr);
    }

    /// The peers with a live channel.
    #[must_use]
    pub fn connected(&self) -> Vec<TransportKey> {
        let slots = self
            .slots
            .lock()
            .expect("peer table lock is never poisoned");
        let mut v: Vec<_> = slots
            .iter()
            .filter(|(_, s)| s.sender.is_some())
            .map(|(k, _)| *k)
            .collect();
        v.sort();
        v
    }

    /// Adopts an authenticated channel (from [`Listener::next`] or [`connect`]). If a live
    /// channel to the same peer exists, the one dialled by the lower key is kept; the other is
    /// still read (never sent on) until the peer closes it, so that no frame the peer sent on
    /// it before it learnt of the choice is lost.
    ///
    /// # Errors
    /// [`NoiseError::UnknownPeer`] if the channel's remote key is not in this manager's
    /// allowed set (the channel is dropped).
    pub fn adopt(&self, channel: Channel) -> Result<(), TransportError> {
        let peer = channel.remote();
        if !self.allowed.contains(&peer) {
            return Err(NoiseError::UnknownPeer { key: peer }.into());
        }
        let dialer = if channel.is_initiator() {
            self.me.public()
        } else {
            peer
        };
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut slots = self
            .slots
            .lock()
            .expect("peer table lock is never poisoned");
        let slot = slots.entry(peer).or_default();
        slot.draining.retain(|r| !r.is_finished());
        // A peer that keeps dialling while its channels lose holds at most MAX_SPARE_CHANNELS
        // of them here: the oldest is dropped (only that peer's own frames in it are lost).
        while slot.draining.len() >= MAX_SPARE_CHANNELS {
            slot.draining.remove(0).abort();
        }
        let (tx, rx) = channel.split();
        if let (Some(_), Some(old)) = (&slot.sender, slot.dialer) {
            if old < dialer {
                tracing::debug!(target: "btcmpc_engine::node::transport", %peer, "keeping the existing channel dialled by the lower key");
                // Its sending half stays open beside the reader: closing it would look like a
                // disconnection to a peer that still sends on it.
                let reader = self.spawn_reader(peer, rx, generation, Some(tx));
                slot.draining.push(reader);
                return Ok(());
            }
        }
        if let Some(r) = slot.reader.take() {
            slot.draining.push(r);
        }
        // The peer dialled again while a channel it dialled was live here: it lost that one (a
        // restart, a failed send), so frames sent on it may never have been read. Reported as
        // a disconnection, so that the owner re-sends what the peer may have missed.
        if slot.sender.is_some() && slot.dialer == Some(peer) && dialer == peer {
            let (events, error) = (self.events.clone(), TransportError::Closed { peer });
            tokio::spawn(async move {
                let _ = events.send(PeerEvent::Disconnected { peer, error }).await;
            });
        }
        let sender = Arc::new(Mutex::new(tx));
        self.spawn_keepalive(peer, Arc::downgrade(&sender));
        slot.sender = Some(sender);
        slot.dialer = Some(dialer);
        slot.generation = generation;
        slot.reader = Some(self.spawn_reader(peer, rx, generation, None));
        Ok(())
    }

    /// Forwards the frames of one channel as [`PeerEvent::Frame`]s until it fails or closes;
    /// then, if it is still the peer's live channel (`generation`), clears it and reports
    /// [`PeerEvent::Disconnected`]. A channel no longer sent on reports it too when it ends in
    /// a socket error rather than a clean close or an idle timeout: a reset means the peer
    /// closed it with bytes of ours unread, so frames sent on it may be lost. `keep` holds a
    /// sending half open for the reader's life.
    fn spawn_reader(
        &self,
        peer: TransportKey,
        mut rx: ChannelReceiver,
        generation: u64,
        keep: Option<ChannelSender>,
    ) -> JoinHandle<()> {
        let events = self.events.clone();
        let table = Arc::clone(&self.slots);
        tokio::spawn(async move {
            let _keep = keep;
            loop {
                match rx.recv().await {
                    Ok(frame)
                        if frame.kind() == MessageType::PING && frame.payload().is_empty() =>
                    {
                        tracing::trace!(target: "btcmpc_engine::node::transport", %peer, "keepalive");
                    }
                    Ok(frame) => {
                        if events.send(PeerEvent::Frame { peer, frame }).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let live = table
                            .lock()
                            .expect("peer table lock is never poisoned")
                            .get_mut(&peer)
                            .filter(|s| s.generation == generation && s.sender.is_some())
                            .map(|s| {
                                s.sender = None;
                                s.dialer = None;
                            })
                            .is_some();
                        let unclean = !matches!(
                            error,
                            TransportError::Closed { .. } | TransportError::Timeout { .. }
                        );
                        if live || unclean {
                            let _ = events.send(PeerEvent::Disconnected { peer, error }).await;
                        } else {
                            tracing::debug!(target: "btcmpc_engine::node::transport", %peer, "a channel no longer used closed: {error}");
                        }
                        return;
                    }
                }
            }
        })
    }

    /// Sends an empty [`MessageType::PING`] every third of the idle timeout while the channel
    /// lives, so that the peer's idle timeout only fires on a dead or silent peer.
    fn spawn_keepalive(&self, peer: TransportKey, sender: std::sync::Weak<Mutex<ChannelSender>>) {
        let period = keepalive_period(self.config.idle_timeout);
        let ping =
            Frame::new(MessageType::PING, Vec::new()).expect("an empty ping is under its cap");
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(sender) = sender.upgrade() else {
                    return;
                };
                let r = sender.lock().await.send(&ping).await;
                if let Err(e) = r {
                    tracing::debug!(target: "btcmpc_engine::node::transport", %peer, "keepalive failed: {e}");
                    return;
                }
            }
        });
    }

    /// Sends `frame` to `peer`, dialling first (with backoff) if no channel is live. A failed
    /// send drops the channel; the next send dials again.
    ///
    /// # Errors
    /// [`TransportError::UnknownPeer`] if neither an address nor a channel is known;
    /// [`TransportError::GaveUp`] when every dial failed; the send's own errors.
    pub async fn send(&self, peer: TransportKey, frame: &Frame) -> Result<(), TransportError> {
        let sender = self.channel_to(peer).await?;
        let mut guard = sender.lock().await;
        let r = guard.send(frame).await;
        drop(guard);
        if r.is_err() {
            let was_live = {
                let mut slots = self
                    .slots
                    .lock()
                    .expect("peer table lock is never poisoned");
                match slots.get_mut(&peer) {
                    Some(s) if s.sender.as_ref().is_some_and(|x| Arc::ptr_eq(x, &sender)) => {
                        s.sender = None;
                        s.dialer = None;
                        if let Some(r) = s.reader.take() {
                            r.abort();
                        }
                        true
                    }
                    _ => false,
                }
            };
            if was_live {
                // Reported as the reader would: the owner of this manager learns that frames
                // may have been lost both ways.
                let error = TransportError::Closed { peer };
                let _ = self
                    .events
                    .send(PeerEvent::Disconnected { peer, error })
                    .await;
            }
        }
        r
    }

    async fn channel_to(
        &self,
        peer: TransportKey,
    ) -> Result<Arc<Mutex<ChannelSender>>, TransportError> {
        let addr = {
            let slots = self
                .slots
                .lock()
                .expect("peer table lock is never poisoned");
            match slots.get(&peer) {
                Some(Slot {
                    sender: Some(s), ..
                }) => return Ok(Arc::clone(s)),
                Some(Slot { addr: Some(a), .. }) => *a,
                _ => return Err(TransportError::UnknownPeer(peer)),
            }
        };
        if !self.allowed.contains(&peer) {
            return Err(NoiseError::UnknownPeer { key: peer }.into());
        }
        let only = AllowedKeys::new([peer]);
        let mut last = None;
        let attempts = self.backoff.max_attempts.max(1);
        for attempt in 0..attempts {
            tokio::time::sleep(self.backoff.delay(attempt)).await;
            match connect(addr, &self.me, &only, self.config).await {
                Ok(ch) => {
                    self.adopt(ch)?;
                    let slots = self
                        .slots
                        .lock()
                        .expect("peer table lock is never poisoned");
                    if let Some(s) = slots.get(&peer).and_then(|s| s.sender.as_ref()) {
                        return Ok(Arc::clone(s));
                    }
                }
                Err(e) => {
                    tracing::debug!(target: "btcmpc_engine::node::transport", %peer, attempt, "dial failed: {e}");
                    last = Some(e);
                }
            }
        }
        Err(TransportError::GaveUp {
            peer,
            attempts,
            last: Box::new(last.unwrap_or(TransportError::Closed { peer })),
        })
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.slots.lock() {
            for s in slots.values_mut() {
                if let Some(r) = s.reader.take() {
                    r.abort();
                }
                for r in s.draining.drain(..) {
                    r.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_attempts: 40,
        };
        let d: Vec<_> = (0..6).map(|i| b.delay(i).as_millis()).collect();
        assert_eq!(d, vec![0, 100, 200, 400, 800, 1000]);
        assert_eq!(b.delay(39), Duration::from_secs(1));
    }
}
