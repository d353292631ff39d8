//! Throughput of sealed frames over loopback TCP, per Noise cipher: what
//! `noise::Cipher::default()` was chosen by; and 1 MiB frames with the default cipher.
//!
//! `cargo bench -p btcmpc-engine --bench transport`
//!
//! Measured 2026-11-30 on 2 shared x86-64 cores with AES-NI (load average 12, so absolute
//! figures are low; the order held in every run): ring AES-GCM 288 MiB/s, ring
//! ChaCha20-Poly1305 126 MiB/s, RustCrypto ChaCha20-Poly1305 92 MiB/s, RustCrypto AES-GCM
//! 81 MiB/s.

// criterion_group! defines a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use std::time::Duration;

use btcmpc_engine::node::frame::{Frame, MessageType};
use btcmpc_engine::node::noise::{AllowedKeys, Cipher, StaticKeypair};
use btcmpc_engine::node::transport::{connect, ChannelConfig, Listener};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const FRAME_BYTES: usize = 8 * 1024 * 1024;
const SMALL_FRAME_BYTES: usize = 1024 * 1024;

fn sealed_frames(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut group = c.benchmark_group("transport");
    group.throughput(Throughput::Bytes(FRAME_BYTES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let frame =
        Frame::new(MessageType::SHARE_BATCH, vec![0x5Au8; FRAME_BYTES]).expect("under the cap");
    let small =
        Frame::new(MessageType::SIGNED, vec![0xA5u8; SMALL_FRAME_BYTES]).expect("under the cap");
    for cipher in Cipher::ALL {
        let config = ChannelConfig {
            cipher,
            ..ChannelConfig::default()
        };
        let (mut client, mut server) = rt.block_on(async {
            let a = StaticKeypair::generate().expect("randomness");
            let b = StaticKeypair::generate().expect("randomness");
            let mut l = Listener::bind(
                "127.0.0.1:0",
                b.clone(),
                AllowedKeys::new([a.public()]),
                config,
            )
            .await
            .expect("bind loopback");
            let client = connect(l.local_addr(), &a, &AllowedKeys::new([b.public()]), config)
                .await
                .expect("handshake");
            let server = l.next().await.expect("listener").expect("accepted");
            (client, server)
        });
        group.throughput(Throughput::Bytes(FRAME_BYTES as u64));
        group.bench_function(format!("{cipher:?} 8 MiB frame"), |bench| {
            bench.iter(|| {
                rt.block_on(async {
                    let (sent, got) = tokio::join!(client.send(&frame), server.recv());
                    sent.expect("sent");
                    assert_eq!(got.expect("received").payload().len(), FRAME_BYTES);
                });
            });
        });
        if cipher == Cipher::default() {
            // The size of the committee's messages per party and round at 32 K products.
            group.throughput(Throughput::Bytes(SMALL_FRAME_BYTES as u64));
            group.bench_function(format!("{cipher:?} 1 MiB frame"), |bench| {
                bench.iter(|| {
                    rt.block_on(async {
                        let (sent, got) = tokio::join!(client.send(&small), server.recv());
                        sent.expect("sent");
                        assert_eq!(got.expect("received").payload().len(), SMALL_FRAME_BYTES);
                    });
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, sealed_frames);
criterion_main!(benches);
