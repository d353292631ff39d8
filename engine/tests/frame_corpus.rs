//! Runs every file of the fuzz corpus (`fuzz/corpus/frame/`) through the frame decoders, as the
//! fuzz target does, and pins the outcome of the named seed files.

use std::path::PathBuf;

use btcmpc_engine::mpc::field::{Mersenne127, Secp256k1Scalar};
use btcmpc_engine::mpc::round::Message;
use btcmpc_engine::node::frame::{
    check_decoders, decode_field_vec, decode_frame, FrameError, MessageType,
};
use btcmpc_engine::node::peer::{decode_message, PeerMessage};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/frame")
}

fn seed(name: &str) -> Vec<u8> {
    std::fs::read(corpus().join(name)).unwrap_or_else(|e| panic!("seed {name}: {e}"))
}

#[test]
fn every_corpus_file_passes_the_decoder_checks() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus()).expect("the corpus directory exists") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| check_decoders(&data));
        assert!(
            r.is_ok(),
            "corpus file {} fails the decoder checks",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 10, "the seed corpus has {n} files");
}

#[test]
fn seed_files_decode_as_named() {
    assert_eq!(
        decode_frame(&seed("ping")).unwrap().kind(),
        MessageType::PING
    );
    let batch = decode_frame(&seed("share-batch-secp256k1")).unwrap();
    assert_eq!(
        decode_field_vec::<Secp256k1Scalar>(batch.payload())
            .unwrap()
            .len(),
        4
    );
    let batch = decode_frame(&seed("share-batch-m127")).unwrap();
    assert_eq!(
        decode_field_vec::<Mersenne127>(batch.payload())
            .unwrap()
            .len(),
        4
    );
    assert!(matches!(
        decode_field_vec::<Secp256k1Scalar>(&seed("secp256k1-order")),
        Err(FrameError::NonCanonical { index: 0, .. })
    ));
    assert!(matches!(
        decode_field_vec::<Mersenne127>(&seed("m127-modulus")),
        Err(FrameError::NonCanonical { index: 0, .. })
    ));
    assert!(matches!(
        decode_frame(&seed("garbage")),
        Err(FrameError::BadMagic { got: b'G' })
    ));
    assert!(matches!(
        decode_frame(&seed("wrong-version")),
        Err(FrameError::WrongVersion { got: 2 })
    ));
    assert!(matches!(
        decode_frame(&seed("unknown-type")),
        Err(FrameError::UnknownType(0xEEEE))
    ));
    assert!(matches!(
        decode_frame(&seed("oversized-ping")),
        Err(FrameError::Oversized { .. })
    ));
    assert!(matches!(
        decode_frame(&seed("oversized-batch")),
        Err(FrameError::Oversized { .. })
    ));
    assert!(matches!(
        decode_frame(&seed("truncated-header")),
        Err(FrameError::Truncated { have: 5, need: 8 })
    ));
    assert!(matches!(
        decode_frame(&seed("truncated-payload")),
        Err(FrameError::Truncated { have: 10, need: 14 })
    ));
    assert!(matches!(
        decode_frame(&seed("trailing")),
        Err(FrameError::Trailing(1))
    ));
    assert!(matches!(
        decode_frame(&seed("two-frames")),
        Err(FrameError::Trailing(10))
    ));

    // Party-to-party messages in SIGNED frames.
    for (name, kind) in [
        ("signed-value", "value"),
        ("signed-echo", "echo"),
        ("signed-accusation", "accusation"),
    ] {
        let frame = decode_frame(&seed(name)).unwrap();
        assert_eq!(frame.kind(), MessageType::SIGNED, "{name}");
        let peer = PeerMessage::decode(frame.payload()).unwrap();
        assert_eq!(peer.session, [8; 32], "{name}");
        let m: Message<Mersenne127> = decode_message(&peer.message).unwrap();
        assert_eq!(m.kind(), kind, "{name}");
    }
}
