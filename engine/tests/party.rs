//! The party daemon and the owner's client as a library, in one process: four daemons on
//! loopback (an unbonded test committee, so no chain is needed), a store through
//! [`Owner::store_shares`], and bad input from a client that is refused with a one-line error
//! while the daemons keep serving.

use std::time::Duration;

use bitcoin::secp256k1::{Keypair, Secp256k1};
use bitcoin::Network;
use btcmpc_engine::mpc::csv::Dataset;
use btcmpc_engine::mpc::field::{Mersenne127, Secp256k1Scalar};
use btcmpc_engine::node::card::PartyCard;
use btcmpc_engine::node::frame::{Frame, MessageType};
use btcmpc_engine::node::manifest::Manifest;
use btcmpc_engine::node::noise::{AllowedKeys, StaticKeypair, TransportKey};
use btcmpc_engine::node::owner::{Owner, OwnerError, StoreOptions};
use btcmpc_engine::node::party::{Party, PartyConfig};
use btcmpc_engine::node::roster::{Roster, RosterParams};
use btcmpc_engine::node::transport::{connect, ChannelConfig};
use btcmpc_regtest::ports::PortLease;

struct Committee {
    manifest: Manifest,
    parties: Vec<Party>,
    /// Each party's Noise key (to play a party that misbehaves on the wire).
    transports: Vec<StaticKeypair>,
    _dir: tempfile::TempDir,
    /// The parties' endpoints, held until the parties are gone.
    _ports: Vec<PortLease>,
}

/// A loopback port held until the lease is dropped ([`btcmpc_regtest::ports`]).
fn lease_port() -> PortLease {
    PortLease::new().expect("a loopback port to lease")
}

async fn committee(n: usize) -> Committee {
    let secp = Secp256k1::new();
    let dir = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    let mut cards = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..n {
        let kp = Keypair::new(&secp, &mut rand::thread_rng());
        let tk = StaticKeypair::generate().unwrap();
        let lease = lease_port();
        let endpoint = format!("127.0.0.1:{}", lease.port());
        ports.push(lease);
        cards.push(
            PartyCard::new(Network::Regtest, &kp, tk.public().0, &endpoint, 1000, 4).unwrap(),
        );
        keys.push((kp, tk));
    }
    let mut params = RosterParams::new(1, 0);
    params.unbonded = true;
    let mut roster = Roster::new(Network::Regtest, params, cards.clone()).unwrap();
    for (kp, _) in &keys {
        roster.sign(kp).unwrap();
    }
    let manifest = Manifest::new(roster, &cards).unwrap();
    let mut parties = Vec::new();
    let transports: Vec<StaticKeypair> = keys.iter().map(|(_, tk)| tk.clone()).collect();
    for (i, (kp, tk)) in keys.into_iter().enumerate() {
        let listen = manifest.roster.cards[i].endpoint.parse().unwrap();
        parties.push(
            Party::start(PartyConfig {
                manifest: manifest.clone(),
                party_key: kp,
                transport: tk,
                listen,
                store_path: dir.path().join(format!("p{}.sqlite", i + 1)),
                round_timeout: Duration::from_secs(5),
                max_store_values: 1_000_000,
                fault: None,
                idle_session: Duration::from_secs(1),
                channel: ChannelConfig::default(),
                chain: None,
                wallet: None,
                min_fee_sat: 1000,
                claim_fee_rate: 2,
                max_open_jobs: 8,
            })
            .await
            .unwrap(),
        );
    }
    Committee {
        manifest,
        parties,
        transports,
        _dir: dir,
        _ports: ports,
    }
}

fn csv(rows: usize) -> Dataset {
    let mut s = String::from("x,y\n");
    for r in 0..rows {
        if r % 5 == 0 {
            s.push_str(&format!("{r},\n"));
        } else {
            s.push_str(&format!("{r},{}.5\n", r % 9));
        }
    }
    Dataset::parse(&s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_stores_with_four_daemons_in_both_fields() {
    let c = committee(4).await;
    let owner = Owner::new(c.manifest.clone(), StaticKeypair::generate().unwrap());
    let d = csv(3_000);
    let r = owner
        .store_shares::<Secp256k1Scalar>(&d, &StoreOptions::new("a"), None)
        .await
        .unwrap();
    assert_eq!(r.holders, vec![1, 2, 3, 4]);
    assert_eq!((r.rows, r.columns), (3_000, 3)); // x, y, present(y)
    assert_eq!(r.bytes_sent, 3_000 * 3 * 4 * 32);
    let r2 = owner
        .store_shares::<Mersenne127>(&d, &StoreOptions::new("b"), None)
        .await
        .unwrap();
    assert_eq!(r2.holders, vec![1, 2, 3, 4]);
    assert_eq!(r2.bytes_sent, 3_000 * 3 * 4 * 16);
    assert_ne!(r.receipts_root, r2.receipts_root);
    // A stopped daemon's address is free at once: a daemon restarted in the same process (the
    // library's users do) binds it again without waiting.
    for p in c.parties {
        let addr = p.local_addr();
        p.shutdown().await.unwrap();
        std::net::TcpListener::bind(addr)
            .unwrap_or_else(|e| panic!("{addr} still bound after shutdown: {e}"));
    }
}

/// Sends one frame as a client with a fresh key and returns the daemon's answer.
async fn ask(endpoint: &str, party: TransportKey, frame: Frame) -> Frame {
    let me = StaticKeypair::generate().unwrap();
    let mut ch = connect(
        endpoint,
        &me,
        &AllowedKeys::new([party]),
        ChannelConfig::default(),
    )
    .await
    .unwrap();
    ch.send(&frame).await.unwrap();
    loop {
        let f = tokio::time::timeout(Duration::from_secs(10), ch.recv())
            .await
            .expect("the daemon answers")
            .unwrap();
        if f.kind() != MessageType::PING {
            return f;
        }
    }
}

fn error_text(f: &Frame) -> String {
    assert_eq!(f.kind(), MessageType::ERROR, "{f:?}");
    let t = String::from_utf8(f.payload().to_vec()).unwrap();
    assert_eq!(t.lines().count(), 1, "{t}");
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_input_is_refused_in_one_line_and_the_daemon_keeps_serving() {
    let c = committee(4).await;
    let card = &c.manifest.roster.cards[0];
    let (ep, key) = (card.endpoint.as_str(), TransportKey(card.transport_key));
    // A key not in the manifest may not speak as a party.
    let f = ask(
        ep,
        key,
        Frame::new(MessageType::SIGNED, b"{}".to_vec()).unwrap(),
    )
    .await;
    assert!(
        error_text(&f).contains("a client may not send signed"),
        "{f:?}"
    );
    // Garbage where JSON is expected.
    let f = ask(
        ep,
        key,
        Frame::new(MessageType::STORE_BEGIN, b"\x00garbage".to_vec()).unwrap(),
    )
    .await;
    assert!(error_text(&f).contains("bad store-begin payload"));
    // A share batch for a session nobody began.
    let f = ask(
        ep,
        key,
        Frame::new(MessageType::SHARE_BATCH, vec![7u8; 48]).unwrap(),
    )
    .await;
    assert!(error_text(&f).contains("no store session"));
    // Status is for the party's operator only.
    let f = ask(
        ep,
        key,
        Frame::new(MessageType::STATUS, Vec::new()).unwrap(),
    )
    .await;
    assert!(error_text(&f).contains("operator only"));
    // A store larger than the party takes, and one for another roster.
    let owner = Owner::new(c.manifest.clone(), StaticKeypair::generate().unwrap());
    let mut opts = StoreOptions::new("big");
    opts.party_timeout = Duration::from_secs(5);
    let big = csv(400_000); // 1.2 M values > 1 M
    match owner.store_shares::<Mersenne127>(&big, &opts, None).await {
        Err(OwnerError::Incomplete { held, reasons }) => {
            assert!(held.is_empty());
            assert!(
                reasons[0].contains("this party takes 1 to 1000000"),
                "{reasons:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let mut opts = StoreOptions::new("../etc");
    opts.party_timeout = Duration::from_secs(5);
    let err = owner
        .store_shares::<Mersenne127>(&csv(10), &opts, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dataset name"), "{err}");
    // Shares held in memory are bounded across sessions: a second half-sent store that would
    // pass the party's bound is refused while the first is under way.
    let mut schema = csv(10).schema;
    schema.rows = 200_000; // x 3 shared columns = 600,000 values
    let begin = |session: u8| btcmpc_engine::node::wire::StoreBegin {
        version: btcmpc_engine::node::wire::STORE_PROTOCOL_VERSION,
        session: [session; 32],
        roster: c.manifest.roster.id(),
        name: format!("half{session}"),
        field: "m127".into(),
        schema: schema.clone(),
        mask: "00".repeat(16),
        job: None,
    };
    let me = StaticKeypair::generate().unwrap();
    let mut first = connect(ep, &me, &AllowedKeys::new([key]), ChannelConfig::default())
        .await
        .unwrap();
    let f = btcmpc_engine::node::wire::json_frame(MessageType::STORE_BEGIN, &begin(1)).unwrap();
    first.send(&f).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let f = btcmpc_engine::node::wire::json_frame(MessageType::STORE_BEGIN, &begin(2)).unwrap();
    let answer = ask(ep, key, f).await;
    assert!(
        error_text(&answer).contains("stores under way hold 600000 values"),
        "{answer:?}"
    );
    drop(first); // the half-sent session goes with its connection
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The daemons still serve an honest store.
    let r = owner
        .store_shares::<Mersenne127>(&csv(100), &StoreOptions::new("ok"), None)
        .await
        .unwrap();
    assert_eq!(r.holders, vec![1, 2, 3, 4]);
    for p in c.parties {
        p.shutdown().await.unwrap();
    }
}

/// Opens a Noise channel to `endpoint` as a client with key `me`.
async fn client(
    endpoint: &str,
    party: TransportKey,
    me: &StaticKeypair,
) -> btcmpc_engine::node::transport::Channel {
    connect(
        endpoint,
        me,
        &AllowedKeys::new([party]),
        ChannelConfig::default(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_commits_and_a_committed_dataset_is_never_rebound() {
    use btcmpc_engine::node::wire::{json_frame, StoreCommit};
    let c = committee(4).await;
    let owner_key = StaticKeypair::generate().unwrap();
    let owner = Owner::new(c.manifest.clone(), owner_key.clone());
    let r = owner
        .store_shares::<Mersenne127>(&csv(50), &StoreOptions::new("d"), None)
        .await
        .unwrap();
    let mut session = [0u8; 32];
    hex::decode_to_slice(&r.session, &mut session).unwrap();
    let key = Keypair::new(&Secp256k1::new(), &mut rand::thread_rng()).public_key();
    let commit = |txid_byte: u8| {
        let op = bitcoin::OutPoint {
            txid: bitcoin::Txid::from_raw_hash(bitcoin::hashes::Hash::from_byte_array(
                [txid_byte; 32],
            )),
            vout: 0,
        };
        StoreCommit {
            session,
            store_outpoint: op.to_string(),
            anchor_key: key.to_string(),
            dataset_id: hex::encode(btcmpc_engine::node::acl::dataset_id(&op, &key)),
        }
    };
    let card = &c.manifest.roster.cards[0];
    let (ep, pk) = (card.endpoint.as_str(), TransportKey(card.transport_key));
    // Another key (any client, or another party) cannot commit the owner's session.
    let f = ask(
        ep,
        pk,
        json_frame(MessageType::STORE_COMMIT, &commit(0xee)).unwrap(),
    )
    .await;
    assert!(error_text(&f).contains("belongs to another owner"));
    // The owner commits once; the same commit again is confirmed, another one refused.
    let ok = owner
        .commit(
            &[1],
            &commit(0xaa),
            ChannelConfig::default(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(ok, vec![1]);
    owner
        .commit(
            &[1],
            &commit(0xaa),
            ChannelConfig::default(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let mut ch = client(ep, pk, &owner_key).await;
    ch.send(&json_frame(MessageType::STORE_COMMIT, &commit(0xbb)).unwrap())
        .await
        .unwrap();
    let f = loop {
        let f = ch.recv().await.unwrap();
        if f.kind() != MessageType::PING {
            break f;
        }
    };
    assert!(error_text(&f).contains("already bound to STORE"), "{f:?}");
    for p in c.parties {
        p.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_sessions_and_silent_sockets_do_not_lock_owners_out() {
    use btcmpc_engine::node::wire::{json_frame, StoreBegin, STORE_PROTOCOL_VERSION};
    let c = committee(4).await;
    let card = &c.manifest.roster.cards[0];
    let ep = card.endpoint.as_str();
    // Four clients begin a store at every party and stall.
    let mut stalled = Vec::new();
    for k in 0..4u8 {
        for card in &c.manifest.roster.cards {
            let me = StaticKeypair::generate().unwrap();
            let mut ch = client(&card.endpoint, TransportKey(card.transport_key), &me).await;
            let begin = StoreBegin {
                version: STORE_PROTOCOL_VERSION,
                session: [k + 1; 32],
                roster: c.manifest.roster.id(),
                name: format!("stall{k}"),
                field: "m127".into(),
                schema: csv(10).schema,
                mask: "00".repeat(16),
                job: None,
            };
            ch.send(&json_frame(MessageType::STORE_BEGIN, &begin).unwrap())
                .await
                .unwrap();
            stalled.push(ch);
        }
    }
    // Once they are idle (1 s here), an honest owner's store gets through.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let owner = Owner::new(c.manifest.clone(), StaticKeypair::generate().unwrap());
    let r = owner
        .store_shares::<Mersenne127>(&csv(20), &StoreOptions::new("honest"), None)
        .await
        .unwrap();
    assert_eq!(r.holders, vec![1, 2, 3, 4]);
    drop(stalled);
    // Silent TCP connections from one address hold at most 8 handshake slots: the ninth
    // evicts the oldest, which the party closes, and an owner is still served meanwhile.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(ep).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ninth = tokio::net::TcpStream::connect(ep).await.unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(&mut silent[0], &mut buf),
    )
    .await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let r = owner
        .store_shares::<Mersenne127>(&csv(20), &StoreOptions::new("during"), None)
        .await
        .unwrap();
    assert_eq!(r.holders, vec![1, 2, 3, 4]);
    drop(silent);
    // Shutting a party down closes its listener: the port can be bound again.
    let addr = c.parties[0].local_addr();
    for p in c.parties {
        p.shutdown().await.unwrap();
    }
    tokio::net::TcpListener::bind(addr).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_flooding_early_messages_does_not_stop_a_store() {
    let c = committee(4).await;
    let card = &c.manifest.roster.cards[0];
    // Party 2's key floods party 1 with 300 signed frames of ~60 KB for 60 made-up sessions.
    let mut ch = client(
        &card.endpoint,
        TransportKey(card.transport_key),
        &c.transports[1],
    )
    .await;
    let junk = format!("[{}]", vec!["0"; 30_000].join(","));
    for k in 0..300u32 {
        let session = format!("{:064x}", k % 60 + 1);
        let payload = format!("{{\"session\":\"{session}\",\"message\":{junk}}}");
        ch.send(&Frame::new(MessageType::SIGNED, payload.into_bytes()).unwrap())
            .await
            .unwrap();
    }
    drop(ch);
    // The committee still stores: early messages of the real check are not crowded out.
    let owner = Owner::new(c.manifest.clone(), StaticKeypair::generate().unwrap());
    let r = owner
        .store_shares::<Mersenne127>(&csv(20), &StoreOptions::new("after-flood"), None)
        .await
        .unwrap();
    assert_eq!(r.holders, vec![1, 2, 3, 4]);
    for p in c.parties {
        p.shutdown().await.unwrap();
    }
}
