//! A flood of bogus evidence to one party (from any client: no grant is needed to send it)
//! must not keep that party from claiming its escrow: judging is bounded per claimer round,
//! the queue refuses the excess "busy", and evidence that fails its chain-free checks costs no
//! chain lookup.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::secp256k1::{Keypair, Secp256k1};
use btcmpc_engine::mpc::evidence::{DeliveryItem, Sig, WrongOutputShare};
use btcmpc_engine::mpc::shamir::Params;
use btcmpc_engine::node::job::JobRequest;
use btcmpc_engine::node::judge::{EvidenceRule, JobEvidence, JudgeRequest};
use btcmpc_engine::node::manifest::Manifest;
use btcmpc_engine::node::noise::StaticKeypair;
use btcmpc_engine::node::service::Service;
use serde_json::Value;

mod support;
use support::net::Net;

/// Well-formed evidence whose signatures are all zero.
fn bogus(manifest: &Manifest, kp: &Keypair) -> JudgeRequest {
    let mut r = JobRequest {
        version: btcmpc_engine::node::job::JOB_PROTOCOL_VERSION,
        nonce: [5; 32],
        roster: manifest.roster.id(),
        dataset_id: "cd".repeat(32),
        query: "sum(a)".into(),
        service: kp.public_key().to_string(),
        fee_sat: 5000,
        timeout: 100_000,
        payout: "bcrt1p8wpt9v4frpf3tkn0srd97pksgsxc5hs52lafxwru9kgeephvs7rqjeprhg".into(),
        signature: String::new(),
    };
    r.sign(kp);
    let job = r.id();
    let item = |i: usize| DeliveryItem {
        index: btcmpc_engine::mpc::round::PartyId::from_wire(i as u32).expect("1-based"),
        key_hash: [1; 32],
        ciphertext: vec![0; 40],
        signature: Sig([0; 64]),
        key: [2; 32],
    };
    JudgeRequest {
        evidence: JobEvidence {
            version: 1,
            request: r,
            rule: EvidenceRule::WrongOutputShare(WrongOutputShare {
                field: "secp256k1".into(),
                job_id: job,
                params: Params::new(4, 1).unwrap(),
                accused: item(1),
                others: vec![item(3), item(4), item(2)],
            }),
        },
        psbt: None,
    }
}

#[test]
fn an_evidence_flood_does_not_keep_a_party_from_claiming() {
    let net = Net::new();
    let card = net.granted_dataset(200);
    let manifest = Manifest::load(std::path::Path::new(&net.manifest)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..4u8 {
        let (manifest, stop, sent, refused) = (
            manifest.clone(),
            stop.clone(),
            sent.clone(),
            refused.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let secp = Secp256k1::new();
            let kp = Keypair::from_seckey_slice(&secp, &[t + 7; 32]).unwrap();
            let service = Service::new(kp, StaticKeypair::generate().unwrap());
            let req = bogus(&manifest, &kp);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                let r = rt.block_on(service.judge(
                    &manifest,
                    2,
                    &req,
                    Default::default(),
                    Duration::from_secs(10),
                ));
                sent.fetch_add(1, Ordering::Relaxed);
                if r.is_err() {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    struct Stop(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
            for t in self.1.drain(..) {
                let _ = t.join();
            }
        }
    }
    let flood = Stop(stop, threads);
    std::thread::sleep(Duration::from_secs(2));
    let out = net.query_output(
        &card,
        "sum(income)",
        &["--fee", "1000sat", "--wait", "45", "--party-timeout", "30"],
        &[],
    );
    drop(flood);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Party 2, flooded the whole time, claimed like the others.
    let claimed: Vec<u64> = v["paid"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["claim_txid"].is_string())
        .map(|p| p["party"].as_u64().unwrap())
        .collect();
    assert_eq!(claimed, vec![1, 2, 3, 4], "{v}");
    let (sent, refused) = (
        sent.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    assert!(sent > 100, "the flood ran: {sent} pieces of evidence");
    assert_eq!(refused, sent, "no bogus evidence was signed");
}
