//! Transport over real loopback sockets: handshake and a 10 MB frame, pinned keys, bad
//! frames, replayed ciphertext, timeouts, the peer manager.

use std::time::Duration;

use btcmpc_engine::node::frame::{Frame, FrameError, MessageType, BATCH_CAP, FRAME_MAGIC};
use btcmpc_engine::node::noise::{self, AllowedKeys, NoiseError, StaticKeypair};
use btcmpc_engine::node::transport::{
    connect, Backoff, Channel, ChannelConfig, Listener, PeerEvent, Peers, TransportError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(20);

fn cfg() -> ChannelConfig {
    ChannelConfig {
        handshake_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(10),
        ..ChannelConfig::default()
    }
}

fn keys() -> (StaticKeypair, StaticKeypair) {
    (
        StaticKeypair::generate().unwrap(),
        StaticKeypair::generate().unwrap(),
    )
}

async fn listen(server: &StaticKeypair, allowed: &[&StaticKeypair], c: ChannelConfig) -> Listener {
    Listener::bind(
        "127.0.0.1:0",
        server.clone(),
        AllowedKeys::new(allowed.iter().map(|k| k.public())),
        c,
    )
    .await
    .unwrap()
}

async fn next_ok(l: &mut Listener) -> Channel {
    tokio::time::timeout(WAIT, l.next())
        .await
        .expect("listener answers in time")
        .expect("listener running")
        .expect("connection accepted")
}

async fn next_err(l: &mut Listener) -> TransportError {
    match tokio::time::timeout(WAIT, l.next())
        .await
        .expect("listener answers in time")
        .expect("listener running")
    {
        Ok(c) => panic!("connection from {} accepted", c.remote()),
        Err((_, e)) => e,
    }
}

async fn pair(c: ChannelConfig) -> (Channel, Channel, Listener) {
    let (a, b) = keys();
    let mut l = listen(&b, &[&a], c).await;
    let client = connect(l.local_addr(), &a, &AllowedKeys::new([b.public()]), c)
        .await
        .unwrap();
    let server = next_ok(&mut l).await;
    assert_eq!(client.remote(), b.public());
    assert_eq!(server.remote(), a.public());
    (client, server, l)
}

#[tokio::test]
async fn handshake_and_ten_megabyte_frame_both_ways() {
    let (mut client, mut server, _l) = pair(cfg()).await;
    let payload: Vec<u8> = (0..10_000_000u32)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect();
    let frame = Frame::new(MessageType::SHARE_BATCH, payload).unwrap();
    let f2 = frame.clone();
    let send = tokio::spawn(async move {
        client.send(&f2).await.unwrap();
        client
    });
    let got = tokio::time::timeout(WAIT, server.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, frame);
    let mut client = send.await.unwrap();
    let pong = Frame::new(MessageType::PONG, b"back".to_vec()).unwrap();
    server.send(&pong).await.unwrap();
    assert_eq!(client.recv().await.unwrap(), pong);
}

#[tokio::test]
async fn key_outside_the_allowed_set_is_refused_by_both_sides() {
    let (a, b) = keys();
    let stranger = StaticKeypair::generate().unwrap();
    let mut l = listen(&b, &[&a], cfg()).await;

    // The server refuses the stranger, naming its key; the stranger's connect fails.
    let r = connect(
        l.local_addr(),
        &stranger,
        &AllowedKeys::new([b.public()]),
        cfg(),
    )
    .await;
    assert!(
        matches!(
            r,
            Err(TransportError::Handshake(NoiseError::ClosedInHandshake))
        ),
        "{r:?}"
    );
    match next_err(&mut l).await {
        TransportError::Handshake(NoiseError::UnknownPeer { key }) => {
            assert_eq!(key, stranger.public());
        }
        e => panic!("unexpected {e}"),
    }

    // A client that does not pin the server's key refuses it, naming it.
    let r = connect(
        l.local_addr(),
        &a,
        &AllowedKeys::new([stranger.public()]),
        cfg(),
    )
    .await;
    match r {
        Err(TransportError::Handshake(NoiseError::UnknownPeer { key })) => {
            assert_eq!(key, b.public());
        }
        r => panic!("unexpected {r:?}"),
    }
    let _ = next_err(&mut l).await;

    // The listener still serves an allowed client.
    let c = connect(l.local_addr(), &a, &AllowedKeys::new([b.public()]), cfg())
        .await
        .unwrap();
    assert_eq!(next_ok(&mut l).await.remote(), a.public());
    drop(c);
}

/// Sends pre-encoded bytes over an authenticated channel and returns the server's error.
async fn server_error_for(
    bytes: Vec<u8>,
    close_after: bool,
) -> (TransportError, Listener, StaticKeypair, StaticKeypair) {
    let (a, b) = keys();
    let mut l = listen(&b, &[&a], cfg()).await;
    let client = connect(l.local_addr(), &a, &AllowedKeys::new([b.public()]), cfg())
        .await
        .unwrap();
    let mut server = next_ok(&mut l).await;
    let (mut tx, rx) = client.split();
    tx.send_encoded(&bytes).await.unwrap();
    if close_after {
        drop(tx);
        drop(rx);
    }
    let e = tokio::time::timeout(WAIT, server.recv())
        .await
        .expect("recv answers in time")
        .expect_err("bad frame refused");
    // The channel stays failed.
    assert!(server.recv().await.is_err());
    (e, l, a, b)
}

#[tokio::test]
async fn garbage_truncated_oversized_frames_are_typed_errors_and_the_listener_serves_on() {
    // Garbage: first byte not the magic.
    let (e, l, a, _) = server_error_for(b"GET / HTTP/1.1\r\n\r\n".to_vec(), false).await;
    assert!(
        matches!(&e, TransportError::Frame { source: FrameError::BadMagic { got: b'G' }, peer } if *peer == a.public()),
        "{e}"
    );
    drop(l);

    // Wrong version.
    let (e, _l, _, _) = server_error_for(vec![FRAME_MAGIC, 9, 1, 0, 0, 0, 0, 0], false).await;
    assert!(
        matches!(
            e,
            TransportError::Frame {
                source: FrameError::WrongVersion { got: 9 },
                ..
            }
        ),
        "{e}"
    );

    // Unknown type.
    let (e, _l, _, _) = server_error_for(vec![FRAME_MAGIC, 1, 0xEE, 0xEE, 0, 0, 0, 0], false).await;
    assert!(
        matches!(
            e,
            TransportError::Frame {
                source: FrameError::UnknownType(0xEEEE),
                ..
            }
        ),
        "{e}"
    );

    // Oversized: a ping declaring 1 MiB, refused from its header alone.
    let mut h = vec![FRAME_MAGIC, 1, 0x01, 0x00];
    h.extend_from_slice(&(1u32 << 20).to_le_bytes());
    let (e, _l, _, _) = server_error_for(h, false).await;
    assert!(
        matches!(
            e,
            TransportError::Frame {
                source: FrameError::Oversized {
                    len: 1_048_576,
                    cap: 1024,
                    ..
                },
                ..
            }
        ),
        "{e}"
    );
    // A share batch one byte over its cap.
    let mut h = vec![FRAME_MAGIC, 1, 0x21, 0x00];
    h.extend_from_slice(&(BATCH_CAP + 1).to_le_bytes());
    let (e, _l, _, _) = server_error_for(h, false).await;
    assert!(
        matches!(
            e,
            TransportError::Frame {
                source: FrameError::Oversized { .. },
                ..
            }
        ),
        "{e}"
    );

    // Truncated: header promises 100 bytes, 10 arrive, then the peer closes.
    let mut t = Frame::new(MessageType::HELLO, vec![1u8; 100])
        .unwrap()
        .encode();
    t.truncate(18);
    let (e, mut l, a, b) = server_error_for(t, true).await;
    assert!(
        matches!(
            e,
            TransportError::Frame {
                source: FrameError::Truncated {
                    have: 18,
                    need: 108
                },
                ..
            }
        ),
        "{e}"
    );

    // Raw garbage instead of a handshake: the listener reports it and serves the next client.
    let mut raw = TcpStream::connect(l.local_addr()).await.unwrap();
    raw.write_all(b"\x00\x05hello").await.unwrap();
    raw.shutdown().await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, raw.read_to_end(&mut sink)).await;
    let e = next_err(&mut l).await;
    assert!(matches!(e, TransportError::Handshake(_)), "{e}");
    let mut c = connect(l.local_addr(), &a, &AllowedKeys::new([b.public()]), cfg())
        .await
        .unwrap();
    let mut s = next_ok(&mut l).await;
    let f = Frame::new(MessageType::PING, b"still here".to_vec()).unwrap();
    c.send(&f).await.unwrap();
    assert_eq!(s.recv().await.unwrap(), f);
}

#[tokio::test]
async fn replayed_noise_ciphertext_is_rejected() {
    // A man in the middle forwards everything and replays the client's first transport message
    // (the client sends handshake messages 1 and 3, then transport messages).
    let (a, b) = keys();
    let mut l = listen(&b, &[&a], cfg()).await;
    let server_addr = l.local_addr();
    let mitm = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mitm_addr = mitm.local_addr().unwrap();
    tokio::spawn(async move {
        let (client, _) = mitm.accept().await.unwrap();
        let server = TcpStream::connect(server_addr).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut sr, &mut cw).await;
        });
        let mut buf = vec![0u8; noise::MAX_NOISE_MESSAGE];
        let mut index = 0;
        while let Ok(Some(n)) = noise::read_message(&mut cr, &mut buf).await {
            noise::write_message(&mut sw, &buf[..n]).await.unwrap();
            if index == 2 {
                noise::write_message(&mut sw, &buf[..n]).await.unwrap();
            }
            index += 1;
        }
    });
    let mut client = connect(mitm_addr, &a, &AllowedKeys::new([b.public()]), cfg())
        .await
        .unwrap();
    let mut server = next_ok(&mut l).await;
    let f = Frame::new(MessageType::PING, b"once".to_vec()).unwrap();
    client.send(&f).await.unwrap();
    assert_eq!(server.recv().await.unwrap(), f, "the original is delivered");
    let e = tokio::time::timeout(WAIT, server.recv())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(e, TransportError::Decrypt { nonce: 1, peer } if peer == a.public()),
        "{e}"
    );
}

#[tokio::test]
async fn timeouts_fire() {
    let short = ChannelConfig {
        handshake_timeout: Duration::from_millis(200),
        write_timeout: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(200),
        ..ChannelConfig::default()
    };
    // Handshake: a server that accepts TCP and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (s, _) = silent.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(s);
    });
    let (a, b) = keys();
    let r = connect(addr, &a, &AllowedKeys::new([b.public()]), short).await;
    assert!(matches!(r, Err(TransportError::Timeout { .. })), "{r:?}");
    hold.abort();

    // Handshake on the listener side: a client that connects and says nothing.
    let mut l = listen(&b, &[&a], short).await;
    let _mute = TcpStream::connect(l.local_addr()).await.unwrap();
    assert!(matches!(
        next_err(&mut l).await,
        TransportError::Timeout { .. }
    ));

    // Idle: an authenticated peer that sends nothing.
    let idle = ChannelConfig {
        idle_timeout: Duration::from_millis(200),
        ..cfg()
    };
    let (_client, mut server, _l) = pair(idle).await;
    let e = server.recv().await.unwrap_err();
    assert!(matches!(e, TransportError::Timeout { .. }), "{e}");
}

#[tokio::test]
async fn peers_dial_with_backoff_deliver_and_reconnect() {
    let (a, b) = keys();
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_attempts: 3,
    };
    let (peers_a, _events_a) =
        Peers::new(a.clone(), AllowedKeys::new([b.public()]), cfg(), backoff);
    let (peers_b, mut events_b) =
        Peers::new(b.clone(), AllowedKeys::new([a.public()]), cfg(), backoff);
    let mut l = listen(&b, &[&a], cfg()).await;

    // Unknown peer, then an address where nobody listens: gives up after 3 attempts.
    let f = Frame::new(MessageType::PING, b"1".to_vec()).unwrap();
    assert!(matches!(
        peers_a.send(b.public(), &f).await,
        Err(TransportError::UnknownPeer(_))
    ));
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    peers_a.add(b.public(), dead_addr);
    match peers_a.send(b.public(), &f).await {
        Err(TransportError::GaveUp { attempts: 3, .. }) => {}
        r => panic!("unexpected {r:?}"),
    }

    // The right address: dials, B adopts the incoming channel and sees the frame.
    peers_a.add(b.public(), l.local_addr());
    peers_a.send(b.public(), &f).await.unwrap();
    peers_b.adopt(next_ok(&mut l).await).unwrap();
    match tokio::time::timeout(WAIT, events_b.recv())
        .await
        .unwrap()
        .unwrap()
    {
        PeerEvent::Frame { peer, frame } => {
            assert_eq!(peer, a.public());
            assert_eq!(frame, f);
        }
        e => panic!("unexpected {e:?}"),
    }
    assert_eq!(peers_a.connected(), vec![b.public()]);
    assert_eq!(peers_b.connected(), vec![a.public()]);

    // B drops its side; A's next send fails or is lost, A reconnects on the send after.
    drop(peers_b);
    let (peers_b, mut events_b) =
        Peers::new(b.clone(), AllowedKeys::new([a.public()]), cfg(), backoff);
    let f2 = Frame::new(MessageType::PING, b"2".to_vec()).unwrap();
    let mut delivered = false;
    for _ in 0..5 {
        if peers_a.send(b.public(), &f2).await.is_err() {
            continue;
        }
        if let Ok(Some(Ok(ch))) = tokio::time::timeout(Duration::from_millis(500), l.next()).await {
            peers_b.adopt(ch).unwrap();
        }
        if let Ok(Some(PeerEvent::Frame { frame, .. })) =
            tokio::time::timeout(Duration::from_millis(500), events_b.recv()).await
        {
            assert_eq!(frame, f2);
            delivered = true;
            break;
        }
    }
    assert!(delivered, "a reconnected channel delivered the frame");
}

#[tokio::test]
async fn frames_at_noise_message_boundaries_round_trip_in_order() {
    let (mut client, mut server, _l) = pair(cfg()).await;
    let m = noise::MAX_PLAINTEXT;
    let sizes = [0, 1, m - 9, m - 8, m - 7, m, 2 * m - 8, 2 * m, 3 * m + 5];
    let frames: Vec<Frame> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| Frame::new(MessageType::SHARE_BATCH, vec![i as u8; n]).unwrap())
        .collect();
    let to_send = frames.clone();
    let sender = tokio::spawn(async move {
        for f in &to_send {
            client.send(f).await.unwrap();
        }
        client
    });
    for f in &frames {
        let got = tokio::time::timeout(WAIT, server.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, f, "frame of {} bytes", f.payload().len());
    }
    drop(sender.await.unwrap());
    // The peer closed between frames: a clean close, not a truncation.
    let e = tokio::time::timeout(WAIT, server.recv())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, TransportError::Closed { .. }), "{e}");
}

#[tokio::test]
async fn peers_keep_an_idle_channel_alive_with_pings() {
    let (a, b) = keys();
    let c = ChannelConfig {
        idle_timeout: Duration::from_secs(1),
        ..cfg()
    };
    let (peers_a, _events_a) = Peers::new(
        a.clone(),
        AllowedKeys::new([b.public()]),
        c,
        Backoff::default(),
    );
    let (peers_b, mut events_b) = Peers::new(
        b.clone(),
        AllowedKeys::new([a.public()]),
        c,
        Backoff::default(),
    );
    let mut l = listen(&b, &[&a], c).await;
    peers_a.add(b.public(), l.local_addr());
    let f = Frame::new(MessageType::HELLO, b"1".to_vec()).unwrap();
    peers_a.send(b.public(), &f).await.unwrap();
    peers_b.adopt(next_ok(&mut l).await).unwrap();
    assert!(matches!(
        events_b.recv().await,
        Some(PeerEvent::Frame { .. })
    ));

    // Two and a half idle timeouts without application traffic.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        events_b.try_recv().is_err(),
        "no disconnection and no ping reported"
    );
    assert_eq!(peers_a.connected(), vec![b.public()]);
    assert_eq!(peers_b.connected(), vec![a.public()]);
    let f2 = Frame::new(MessageType::HELLO, b"2".to_vec()).unwrap();
    peers_a.send(b.public(), &f2).await.unwrap();
    match tokio::time::timeout(WAIT, events_b.recv()).await.unwrap() {
        Some(PeerEvent::Frame { frame, .. }) => assert_eq!(frame, f2),
        e => panic!("unexpected {e:?}"),
    }
}

#[tokio::test]
async fn a_flood_of_silent_connections_is_bounded_and_clients_are_still_served() {
    use btcmpc_engine::node::transport::{MAX_PENDING_HANDSHAKES, MAX_PENDING_PER_ADDRESS};
    let (a, b) = keys();
    let slow = ChannelConfig {
        handshake_timeout: Duration::from_secs(30),
        ..cfg()
    };
    let l = listen(&b, &[&a], slow).await;
    let mut mutes = Vec::new();
    for _ in 0..MAX_PENDING_HANDSHAKES {
        mutes.push(TcpStream::connect(l.local_addr()).await.unwrap());
    }
    // Every slot of this address is taken by a silent connection, for far longer than the
    // test: a client is still served at once, by evicting the oldest pending handshake.
    for _ in 0..3 {
        let r = tokio::time::timeout(
            WAIT,
            connect(l.local_addr(), &a, &AllowedKeys::new([b.public()]), cfg()),
        )
        .await
        .expect("connects in time");
        assert!(r.is_ok(), "a client is served during the flood: {r:?}");
    }
    // Bounded: at most MAX_PENDING_PER_ADDRESS of the silent connections are still held (all
    // come from 127.0.0.1); every other one was closed by the listener.
    let mut open = 0;
    for m in &mut mutes {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), m.read(&mut byte)).await {
            Err(_) => open += 1,         // still pending: nothing to read
            Ok(Ok(0)) | Ok(Err(_)) => {} // closed by the listener
            Ok(Ok(_)) => panic!("a silent connection was sent bytes"),
        }
    }
    assert!(
        open <= MAX_PENDING_PER_ADDRESS,
        "{open} silent connections still held"
    );
    drop(mutes);
}

/// A client waiting for an answer that takes three idle timeouts to compute gets it: its
/// `recv_keepalive` pings the server, and the server's writer pings back while it computes.
/// The same wait with plain `recv` and a server that sends nothing times out.
#[tokio::test]
async fn a_slow_answer_arrives_through_keepalives_on_both_ends() {
    let idle = ChannelConfig {
        idle_timeout: Duration::from_millis(300),
        ..cfg()
    };
    let slow = Duration::from_millis(900);
    let answer = Frame::new(MessageType::ERROR, b"the answer".to_vec()).unwrap();

    let (mut client, server, _l) = pair(idle).await;
    let (mut tx, mut rx) = server.split();
    let reply = answer.clone();
    let server_task = tokio::spawn(async move {
        // The server "computes" for `slow`, pinging like a party's writer, and reads the
        // client's pings meanwhile (its own idle timeout must not fire either).
        let ping = Frame::new(MessageType::PING, Vec::new()).unwrap();
        let period = btcmpc_engine::node::transport::keepalive_period(idle.idle_timeout);
        let reader = tokio::spawn(async move {
            let mut pings = 0u32;
            loop {
                match rx.recv().await {
                    Ok(f) if f.kind() == MessageType::PING => pings += 1,
                    Ok(f) => panic!("unexpected {}", f.kind()),
                    Err(e) => return (pings, e.to_string()),
                }
            }
        });
        let until = tokio::time::Instant::now() + slow;
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(period).await;
            tx.send(&ping).await.unwrap();
        }
        tx.send(&reply).await.unwrap();
        (tx, reader)
    });
    let got = tokio::time::timeout(WAIT, client.recv_keepalive())
        .await
        .expect("answer in time")
        .expect("the channel stays up through the slow answer");
    assert_eq!(got, answer);
    let (_tx, reader) = server_task.await.unwrap();
    drop(client);
    let (pings, _) = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert!(
        pings >= 2,
        "the waiting client pinged the server ({pings} pings)"
    );

    // Without keepalives the same wait is cut by the idle timeout.
    let (mut client, _server, _l) = pair(idle).await;
    let e = tokio::time::timeout(WAIT, client.recv())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, TransportError::Timeout { .. }), "{e}");
}

/// Two managers whose channels to each other are `(lo dialled, hi dialled)`, `lo` holding the
/// lower key; each side's half of each channel is returned unadopted.
struct Crossed {
    lo: StaticKeypair,
    hi: StaticKeypair,
    /// `lo`'s side of the channel `lo` dialled, and `hi`'s side of it.
    lo_dialled: (Channel, Channel),
    /// `hi`'s side of the channel `hi` dialled, and `lo`'s side of it.
    hi_dialled: (Channel, Channel),
}

async fn crossed() -> Crossed {
    let (lo, hi) = ordered_keys();
    let mut l_lo = listen(&lo, &[&hi], cfg()).await;
    let mut l_hi = listen(&hi, &[&lo], cfg()).await;
    let lo_dialled = dial(&mut l_hi, &lo, &hi).await;
    let hi_dialled = dial(&mut l_lo, &hi, &lo).await;
    Crossed {
        lo,
        hi,
        lo_dialled,
        hi_dialled,
    }
}

/// Two keys, the lower first.
fn ordered_keys() -> (StaticKeypair, StaticKeypair) {
    let (a, b) = keys();
    if a.public() < b.public() {
        (a, b)
    } else {
        (b, a)
    }
}

/// `me` dials `to`'s listener `l`: `me`'s side of the channel and `to`'s side of it.
async fn dial(l: &mut Listener, me: &StaticKeypair, to: &StaticKeypair) -> (Channel, Channel) {
    let out = connect(l.local_addr(), me, &AllowedKeys::new([to.public()]), cfg())
        .await
        .unwrap();
    (out, next_ok(l).await)
}

/// The payloads of the frames `events` yields within `wait`; panics on a disconnection.
async fn frames_within(
    events: &mut tokio::sync::mpsc::Receiver<PeerEvent>,
    wait: Duration,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(wait, events.recv()).await {
        match ev {
            PeerEvent::Frame { frame, .. } => got.push(frame.payload().to_vec()),
            e => panic!("no channel in use failed, yet: {e:?}"),
        }
    }
    got
}

/// Both sides dial at once and each sends on its own channel before it learns of the other's:
/// both settle on the channel the lower key dialled, and every frame arrives, whichever order
/// the channels are adopted in. (Before the losing channel was read to its end, a frame sent on
/// it was lost: a party's store check then missed an opening.)
#[tokio::test]
async fn a_simultaneous_dial_loses_no_frame_in_either_adoption_order() {
    let backoff = Backoff::default();
    let frame = |s: &str| Frame::new(MessageType::PING, s.as_bytes().to_vec()).unwrap();
    for lo_adopts_its_own_first in [true, false] {
        let c = crossed().await;
        let (p_lo, mut ev_lo) = Peers::new(
            c.lo.clone(),
            AllowedKeys::new([c.hi.public()]),
            cfg(),
            backoff,
        );
        let (p_hi, mut ev_hi) = Peers::new(
            c.hi.clone(),
            AllowedKeys::new([c.lo.public()]),
            cfg(),
            backoff,
        );
        let (lo_out, hi_in) = c.lo_dialled;
        let (hi_out, lo_in) = c.hi_dialled;

        // Each side adopts its own dial and sends on it.
        p_hi.adopt(hi_out).unwrap();
        p_hi.send(c.lo.public(), &frame("hi-1")).await.unwrap();
        if lo_adopts_its_own_first {
            p_lo.adopt(lo_out).unwrap();
            p_lo.send(c.hi.public(), &frame("lo-1")).await.unwrap();
            // The channel hi dialled loses at lo: what hi sent on it is still read.
            p_lo.adopt(lo_in).unwrap();
        } else {
            // lo takes hi's channel first, then replaces it with its own before its reader
            // ever ran: the replaced channel is still read.
            p_lo.adopt(lo_in).unwrap();
            p_lo.adopt(lo_out).unwrap();
            p_lo.send(c.hi.public(), &frame("lo-1")).await.unwrap();
        }
        // hi learns of lo's channel and switches to it.
        p_hi.adopt(hi_in).unwrap();
        p_hi.send(c.lo.public(), &frame("hi-2")).await.unwrap();
        p_lo.send(c.hi.public(), &frame("lo-2")).await.unwrap();

        let mut at_lo = frames_within(&mut ev_lo, Duration::from_secs(2)).await;
        let at_hi = frames_within(&mut ev_hi, Duration::from_secs(2)).await;
        at_lo.sort();
        assert_eq!(
            at_lo,
            vec![b"hi-1".to_vec(), b"hi-2".to_vec()],
            "lo adopts its own first: {lo_adopts_its_own_first}"
        );
        assert_eq!(at_hi, vec![b"lo-1".to_vec(), b"lo-2".to_vec()]);
        assert_eq!(p_lo.connected(), vec![c.hi.public()]);
        assert_eq!(p_hi.connected(), vec![c.lo.public()]);
    }
}

/// A manager `lo` (the lower key) holding the channel it dialled to `hi`, a listener of `lo`
/// that `hi` dials, and `hi`'s raw end of `lo`'s channel.
struct LoHolds {
    lo: StaticKeypair,
    hi: StaticKeypair,
    p_lo: Peers,
    ev_lo: tokio::sync::mpsc::Receiver<PeerEvent>,
    l_lo: Listener,
    hi_end: Channel,
}

async fn lo_holds() -> LoHolds {
    let (lo, hi) = ordered_keys();
    let l_lo = listen(&lo, &[&hi], cfg()).await;
    let mut l_hi = listen(&hi, &[&lo], cfg()).await;
    let (lo_out, hi_end) = dial(&mut l_hi, &lo, &hi).await;
    let (p_lo, ev_lo) = Peers::new(
        lo.clone(),
        AllowedKeys::new([hi.public()]),
        cfg(),
        Backoff::default(),
    );
    p_lo.adopt(lo_out).unwrap();
    LoHolds {
        lo,
        hi,
        p_lo,
        ev_lo,
        l_lo,
        hi_end,
    }
}

/// Three channels of one pair adopted in a row (hi dials, lo dials, hi dials again), each
/// written into right after its adoption: every frame arrives once, the channel lo dialled
/// stays the live one, and when hi's end of it closes, lo reports exactly one disconnection
/// (the spare channels closing report none).
#[tokio::test]
async fn three_channels_lose_no_frame_and_one_disconnection_is_reported() {
    let mut h = lo_holds().await;
    let (p_lo, mut ev_lo) = (h.p_lo, h.ev_lo);
    // lo already holds its own channel; hi dials twice more and writes into each.
    let mut spare = Vec::new();
    for i in 0..2 {
        let (mut ch, accepted) = dial(&mut h.l_lo, &h.hi, &h.lo).await;
        ch.send(&Frame::new(MessageType::PING, format!("spare-{i}").into_bytes()).unwrap())
            .await
            .unwrap();
        p_lo.adopt(accepted).unwrap();
        spare.push(ch);
    }
    h.hi_end
        .send(&Frame::new(MessageType::PING, b"live".to_vec()).unwrap())
        .await
        .unwrap();
    p_lo.send(
        h.hi.public(),
        &Frame::new(MessageType::PING, b"to-hi".to_vec()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        h.hi_end.recv().await.unwrap().payload().to_vec(),
        b"to-hi".to_vec()
    );
    let mut got = frames_within(&mut ev_lo, Duration::from_secs(2)).await;
    got.sort();
    assert_eq!(
        got,
        vec![b"live".to_vec(), b"spare-0".to_vec(), b"spare-1".to_vec()]
    );
    // hi closes the spares: no event. Then the live one: one Disconnected.
    drop(spare);
    let quiet = tokio::time::timeout(Duration::from_secs(1), ev_lo.recv()).await;
    assert!(quiet.is_err(), "a spare channel closing reported {quiet:?}");
    drop(h.hi_end);
    let ev = tokio::time::timeout(WAIT, ev_lo.recv())
        .await
        .expect("the live channel's end is reported")
        .unwrap();
    assert!(matches!(ev, PeerEvent::Disconnected { .. }), "{ev:?}");
    let again = tokio::time::timeout(Duration::from_secs(1), ev_lo.recv()).await;
    assert!(again.is_err(), "a second event: {again:?}");
    assert!(p_lo.connected().is_empty());
}

/// A peer that keeps dialling while this side holds the channel the lower key dialled: each
/// of its channels loses and is kept to be read. A peer that keeps them alive (an empty ping
/// now and then resets the idle timeout) must not make this side hold one socket and one task
/// per dial without bound: at most a few spare channels per peer are read.
#[tokio::test]
async fn a_peer_dialling_again_and_again_holds_a_bounded_number_of_spare_channels() {
    const DIALS: usize = 40;
    let mut h = lo_holds().await;
    let mut spares = Vec::new();
    for _ in 0..DIALS {
        let (ch, accepted) = dial(&mut h.l_lo, &h.hi, &h.lo).await;
        h.p_lo.adopt(accepted).unwrap();
        spares.push(ch);
    }
    assert_eq!(h.p_lo.connected(), vec![h.hi.public()]);
    // Past the idle timeout (10 s), kept alive by empty pings every 3 s.
    let ping = Frame::new(MessageType::PING, Vec::new()).unwrap();
    for _ in 0..4 {
        h.hi_end.send(&ping).await.unwrap();
        for ch in &mut spares {
            let _ = ch.send(&ping).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    for (i, ch) in spares.iter_mut().enumerate() {
        let f = Frame::new(MessageType::PING, format!("spare-{i}").into_bytes()).unwrap();
        let _ = ch.send(&f).await;
    }
    let still_read = frames_within(&mut h.ev_lo, Duration::from_secs(2))
        .await
        .len();
    drop(h.hi_end);
    assert!(
        still_read <= 8,
        "{still_read} of {DIALS} spare channels of one peer are still held and read after 12 s"
    );
}

/// The live channel is one the peer dialled; the peer closes it (it crashed, or gave up on it
/// after a failed send) with a frame of ours unread, and its new channel is adopted before the
/// old one's end is read here. The frame is lost, so this side must learn of it (a
/// disconnection: the party re-sends its outbox when the peer is back).
#[tokio::test]
async fn a_replaced_channel_closed_with_a_frame_unread_is_reported() {
    let (lo, hi) = keys();
    let mut l_lo = listen(&lo, &[&hi], cfg()).await;
    let (p_lo, mut ev_lo) = Peers::new(
        lo.clone(),
        AllowedKeys::new([hi.public()]),
        cfg(),
        Backoff::default(),
    );
    let allowed = AllowedKeys::new([lo.public()]);
    let old = connect(l_lo.local_addr(), &hi, &allowed, cfg())
        .await
        .unwrap();
    p_lo.adopt(next_ok(&mut l_lo).await).unwrap();
    let new = connect(l_lo.local_addr(), &hi, &allowed, cfg())
        .await
        .unwrap();
    let new_at_lo = next_ok(&mut l_lo).await;
    p_lo.send(
        hi.public(),
        &Frame::new(MessageType::PING, b"lost".to_vec()).unwrap(),
    )
    .await
    .unwrap();
    // The peer drops the old channel unread, and its new one is adopted at once.
    drop(old);
    p_lo.adopt(new_at_lo).unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), ev_lo.recv()).await;
    drop(new);
    assert!(
        matches!(ev, Ok(Some(PeerEvent::Disconnected { .. }))),
        "a frame sent on the replaced channel was never read, yet: {ev:?}"
    );
}
