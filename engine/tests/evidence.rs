//! Wrong-output-share and equivocation evidence: a frozen JSON fixture, verification, and
//! rejection of every tampered field.

use btcmpc_engine::mpc::dealing::Hash32;
use btcmpc_engine::mpc::evidence::{
    seal, DeliveryItem, EvidenceError, Fault, PartyKey, WrongOutputShare,
};
use btcmpc_engine::mpc::field::{PrimeField, Secp256k1Scalar};
use btcmpc_engine::mpc::round::PartyId;
use btcmpc_engine::mpc::shamir::{Params, Poly};
use btcmpc_engine::mpc::sig::SigningKey;
use sha2::{Digest, Sha256};

type F = Secp256k1Scalar;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/wrong_output_share.json"
);
const JOB: Hash32 = [0xab; 32];

fn signing_key(i: usize) -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(format!("party {i}"))).expect("valid key")
}

/// Party `i` (1-based).
fn p(i: usize) -> PartyId {
    PartyId::from_wire(i as u32).expect("a 1-based index")
}

fn k(i: usize) -> Hash32 {
    Sha256::digest(format!("job key {i}")).into()
}

fn roster(n: usize) -> Vec<PartyKey> {
    (1..=n).map(|i| PartyKey::of(&signing_key(i))).collect()
}

/// Two output positions on fixed polynomials of degree t.
fn polys(t: usize) -> Vec<Poly<F>> {
    (0..2u64)
        .map(|p| Poly {
            coeffs: (0..=t as u64)
                .map(|c| F::from_u64(1000 * p + 17 * c + 5))
                .collect(),
        })
        .collect()
}

fn honest_values(i: usize, t: usize) -> Vec<F> {
    polys(t).iter().map(|g| g.eval_u64(i as u64)).collect()
}

fn item(i: usize, values: &[F]) -> DeliveryItem {
    DeliveryItem::create(&JOB, p(i), &k(i), values, &signing_key(i))
}

/// n = 4, t = 1: party 2 delivers a share off the polynomial in position 1.
fn fixture_evidence() -> WrongOutputShare {
    let mut wrong = honest_values(2, 1);
    wrong[1] += F::ONE;
    WrongOutputShare {
        field: F::NAME.into(),
        job_id: JOB,
        params: Params::new(4, 1).expect("valid"),
        accused: item(2, &wrong),
        others: [1, 3, 4]
            .iter()
            .map(|&i| item(i, &honest_values(i, 1)))
            .collect(),
    }
}

fn params() -> Params {
    Params::new(4, 1).expect("valid")
}

fn all_claims(_: &Hash32, _: PartyId, _: &Hash32) -> bool {
    true
}

fn verify(ev: &WrongOutputShare) -> Result<Fault, EvidenceError> {
    ev.verify::<F>(params(), &roster(4), &all_claims)
}

#[test]
fn fixture_is_frozen_and_convicts() {
    let ev = fixture_evidence();
    let json = serde_json::to_string_pretty(&ev).expect("serializable") + "\n";
    if std::env::var_os("BTCMPC_BLESS").is_some() {
        std::fs::write(FIXTURE, &json).expect("write fixture");
    }
    let frozen =
        std::fs::read_to_string(FIXTURE).expect("fixture exists (BTCMPC_BLESS=1 writes it)");
    assert_eq!(json, frozen, "the evidence encoding changed");
    let parsed: WrongOutputShare = serde_json::from_str(&frozen).expect("fixture parses");
    assert_eq!(parsed, ev);
    assert_eq!(verify(&parsed), Ok(Fault::OffPolynomial { position: 1 }));
}

#[test]
fn every_tampered_field_is_rejected() {
    let ev = fixture_evidence();
    let bad_sig = |index| Err(EvidenceError::BadSignature { index: p(index) });
    let bad_index = |index, reason| Err(EvidenceError::BadIndex { index, reason });
    let mut cases: Vec<(&str, WrongOutputShare, Result<Fault, EvidenceError>)> = Vec::new();
    let mut e = ev.clone();
    e.field = "m127".into();
    let field_err = Err(EvidenceError::Malformed {
        index: p(2),
        reason: format!("evidence is for field \"m127\", not {}", F::NAME),
    });
    cases.push(("field", e, field_err));
    let mut e = ev.clone();
    e.job_id[0] ^= 1;
    cases.push(("job_id", e, bad_sig(2)));
    let mut e = ev.clone();
    e.params = Params::new(5, 1).expect("valid");
    cases.push(("params", e, Err(EvidenceError::WrongParams { n: 5, t: 1 })));
    let mut e = ev.clone();
    e.accused.index = p(3);
    cases.push((
        "accused index (duplicate)",
        e,
        bad_index(3, "appears twice"),
    ));
    let mut e = ev.clone();
    e.accused.index = p(9);
    cases.push(("accused index (range)", e, bad_index(9, "outside 1..=n")));
    let mut e = ev.clone();
    e.accused.key_hash[5] ^= 1;
    cases.push(("accused H_i", e, bad_sig(2)));
    let mut e = ev.clone();
    e.accused.ciphertext[3] ^= 1;
    cases.push(("accused c_i", e, bad_sig(2)));
    let mut e = ev.clone();
    e.accused.signature.0[10] ^= 1;
    cases.push(("accused signature", e, bad_sig(2)));
    let mut e = ev.clone();
    e.accused.key[0] ^= 1;
    cases.push((
        "accused k_i",
        e,
        Err(EvidenceError::KeyMismatch { index: p(2) }),
    ));
    let mut e = ev.clone();
    e.others.pop();
    cases.push((
        "too few others",
        e,
        Err(EvidenceError::TooFewOthers { got: 2, need: 3 }),
    ));
    let mut e = ev.clone();
    e.others[1] = e.others[0].clone();
    cases.push(("duplicate other", e, bad_index(1, "appears twice")));
    let mut e = ev.clone();
    e.others[2].ciphertext[0] ^= 1;
    cases.push(("other c_i", e, bad_sig(4)));
    let mut e = ev.clone();
    e.others[0].key[31] ^= 1;
    cases.push((
        "other k_i",
        e,
        Err(EvidenceError::KeyMismatch { index: p(1) }),
    ));
    let mut e = ev.clone();
    e.others[0].signature = e.others[1].signature;
    cases.push(("other signature", e, bad_sig(1)));
    // An other re-sealed (and re-signed) with a wrong value: the others are inconsistent.
    let mut e = ev.clone();
    let mut v = honest_values(4, 1);
    v[0] += F::ONE;
    e.others[2] = item(4, &v);
    cases.push((
        "other value",
        e,
        Err(EvidenceError::OthersInconsistent { position: 0, t: 1 }),
    ));
    for (what, e, want) in &cases {
        assert_eq!(&verify(e), want, "tampered {what}");
    }
    // Claims not confirmed on the judge's chain.
    for who in [1usize, 2, 3, 4] {
        let oracle = move |_: &Hash32, i: PartyId, _: &Hash32| i != p(who);
        assert_eq!(
            ev.verify::<F>(params(), &roster(4), &oracle),
            Err(EvidenceError::ClaimNotConfirmed { index: p(who) })
        );
    }
    // A roster with another key for the accused.
    let mut r = roster(4);
    r[1] = PartyKey::of(&signing_key(99));
    assert_eq!(
        ev.verify::<F>(params(), &r, &all_claims),
        Err(EvidenceError::BadSignature { index: p(2) })
    );
    assert_eq!(
        ev.verify::<F>(params(), &roster(3), &all_claims),
        Err(EvidenceError::BadIndex {
            index: 3,
            reason: "roster size differs from n"
        })
    );
    // The judge's parameters, not the evidence's, decide how many witnesses are needed.
    assert_eq!(
        ev.verify::<F>(Params::new(4, 0).expect("valid"), &roster(4), &all_claims),
        Err(EvidenceError::WrongParams { n: 4, t: 1 })
    );
}

#[test]
fn honest_party_is_never_convicted() {
    for n in 4..=7 {
        let t = (n - 1) / 3;
        let params = Params::new(n, t).expect("valid");
        let check = |ev: &WrongOutputShare| ev.verify::<F>(params, &roster(n), &all_claims);
        for accused in 1..=n {
            let others: Vec<usize> = (1..=n).filter(|&i| i != accused).collect();
            // Correct share, honest others.
            let ev = WrongOutputShare {
                field: F::NAME.into(),
                job_id: JOB,
                params,
                accused: item(accused, &honest_values(accused, t)),
                others: others
                    .iter()
                    .map(|&i| item(i, &honest_values(i, t)))
                    .collect(),
            };
            assert_eq!(
                check(&ev),
                Err(EvidenceError::NotGuilty { index: p(accused) })
            );
            // Up to t corrupt others collude on another polynomial through the accused's
            // point: with 2t + 1 others at least t + 1 are honest, so they cannot agree.
            let fake: Vec<Poly<F>> = polys(t)
                .into_iter()
                .map(|mut g| {
                    g.coeffs[0] += F::from_u64(99);
                    g
                })
                .collect();
            for chosen in [others[..2 * t + 1].to_vec(), others.clone()] {
                let items: Vec<DeliveryItem> = chosen
                    .iter()
                    .enumerate()
                    .map(|(k, &i)| {
                        let v: Vec<F> = if k < t {
                            fake.iter().map(|g| g.eval_u64(i as u64)).collect()
                        } else {
                            honest_values(i, t)
                        };
                        item(i, &v)
                    })
                    .collect();
                let ev = WrongOutputShare {
                    field: F::NAME.into(),
                    job_id: JOB,
                    params,
                    accused: item(accused, &honest_values(accused, t)),
                    others: items,
                };
                assert!(check(&ev).is_err(), "n={n} honest {accused} convicted");
            }
        }
    }
}

#[test]
fn unopenable_or_malformed_delivery_convicts() {
    let mut ev = fixture_evidence();
    // The accused signs a ciphertext that does not open under its own key.
    let garbage = seal(&JOB, p(2), &[0u8; 32], &honest_values(2, 1));
    let d = btcmpc_engine::mpc::evidence::Delivery {
        job_id: JOB,
        index: p(2),
        key_hash: Sha256::digest(k(2)).into(),
        ciphertext_hash: Sha256::digest(&garbage).into(),
    };
    ev.accused.signature = d.sign(&signing_key(2));
    ev.accused.ciphertext = garbage;
    assert_eq!(verify(&ev), Ok(Fault::Unopenable));
    // Wrong number of values.
    let mut ev = fixture_evidence();
    ev.accused = item(2, &honest_values(2, 1)[..1]);
    assert_eq!(verify(&ev), Ok(Fault::WrongLength));
}

#[test]
fn equivocation_fixture_is_frozen_and_convicts() {
    use btcmpc_engine::mpc::evidence::{verify_equivocation, Equivocation, SignedHeader};
    const EQUIVOCATION: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/equivocation.json");
    let sk = signing_key(3);
    let ev = Equivocation {
        first: SignedHeader::sign(&sk, JOB, 5, 3, 3, Sha256::digest(b"yes").into()),
        second: SignedHeader::sign(&sk, JOB, 5, 3, 3, Sha256::digest(b"no").into()),
    };
    let json = serde_json::to_string_pretty(&ev).expect("serializable") + "\n";
    if std::env::var_os("BTCMPC_BLESS").is_some() {
        std::fs::write(EQUIVOCATION, &json).expect("write fixture");
    }
    let frozen =
        std::fs::read_to_string(EQUIVOCATION).expect("fixture exists (BTCMPC_BLESS=1 writes it)");
    assert_eq!(json, frozen, "the equivocation encoding changed");
    let parsed: Equivocation = serde_json::from_str(&frozen).expect("fixture parses");
    assert_eq!(verify_equivocation(&parsed, &roster(4)), Ok(p(3)));
    // Against another party's key it proves nothing.
    let mut r = roster(4);
    r.swap(1, 2);
    assert_eq!(
        verify_equivocation(&parsed, &r),
        Err(EvidenceError::BadSignature { index: p(3) })
    );
}

#[test]
fn store_check_lie_convicts_only_the_liar() {
    use btcmpc_engine::mpc::check::{check_id, Challenge, STORE_CHECK_TAG};
    use btcmpc_engine::mpc::dealing::{deal, receipts_root};
    use btcmpc_engine::mpc::echo::payload_hash;
    use btcmpc_engine::mpc::evidence::{Receipt, ReceiptHash, SignedHeader, StoreCheckLie};
    use rand::SeedableRng;

    let ps = params();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
    let column: Vec<F> = (0..20).map(F::from_u64).collect();
    let parties = deal(ps, &[column], &mut rng);
    let context: Hash32 = [0x11; 32];
    let hashes: Vec<Hash32> = parties.iter().map(|s| s.receipt_hash(&context)).collect();
    let root = receipts_root(&hashes);
    let challenge = Challenge::<F>::new(STORE_CHECK_TAG, &root, 20);
    let make = |i: usize, opened: F| {
        let receipt = Receipt {
            context,
            index: p(i),
            hash: hashes[i - 1],
        };
        StoreCheckLie {
            field: F::NAME.into(),
            tag: STORE_CHECK_TAG.to_vec(),
            receipts: hashes.iter().map(|h| ReceiptHash(*h)).collect(),
            receipt,
            receipt_signature: receipt.sign(&signing_key(i)),
            revealed: parties[i - 1].clone(),
            opening: SignedHeader::sign(
                &signing_key(i),
                check_id(STORE_CHECK_TAG, &root),
                0,
                i as u32,
                i as u32,
                payload_hash(&[opened]),
            ),
            opened,
        }
    };
    let on_chain = |r: &Hash32| *r == root;
    let truth = challenge.opening(&parties[1]).expect("shape");
    let lie = make(2, truth + F::ONE);
    assert_eq!(lie.verify(ps, &roster(4), &on_chain), Ok(p(2)));
    let json = serde_json::to_string(&lie).expect("serializable");
    let back: StoreCheckLie<F> = serde_json::from_str(&json).expect("parses");
    assert_eq!(back, lie);
    // An honest opening is never a lie.
    for i in 1..=4 {
        let honest = make(i, challenge.opening(&parties[i - 1]).expect("shape"));
        assert_eq!(
            honest.verify(ps, &roster(4), &on_chain),
            Err(EvidenceError::NotGuilty { index: p(i) })
        );
    }
    // Tampering: each field is bound by its own check.
    let malformed = |reason: &str| {
        Err(EvidenceError::Malformed {
            index: p(2),
            reason: reason.to_owned(),
        })
    };
    assert_eq!(
        lie.verify(ps, &roster(4), &|_: &Hash32| false),
        malformed("receipts root is not recorded on chain"),
        "root not on chain"
    );
    let mut e = lie.clone();
    e.revealed.columns[0][3] += F::ONE;
    assert_eq!(
        e.verify(ps, &roster(4), &on_chain),
        malformed("revealed vector does not hash to the receipt"),
        "forged vector"
    );
    let mut e = lie.clone();
    e.opened = truth;
    assert_eq!(
        e.verify(ps, &roster(4), &on_chain),
        malformed("opened value does not match the signed payload hash"),
        "opened value swapped"
    );
    let mut e = lie.clone();
    e.opening = SignedHeader::sign(
        &signing_key(2),
        [0; 32],
        0,
        2,
        2,
        payload_hash(&[truth + F::ONE]),
    );
    assert_eq!(
        e.verify(ps, &roster(4), &on_chain),
        malformed("opening is not bound to this check"),
        "opening of another job"
    );
    let mut e = lie.clone();
    e.opening = SignedHeader::sign(
        &signing_key(3),
        check_id(STORE_CHECK_TAG, &root),
        0,
        2,
        2,
        payload_hash(&[truth + F::ONE]),
    );
    assert_eq!(
        e.verify(ps, &roster(4), &on_chain),
        Err(EvidenceError::BadSignature { index: p(2) }),
        "opening signed by another party"
    );
    let mut e = lie.clone();
    e.receipt_signature = make(3, truth).receipt_signature;
    assert_eq!(
        e.verify(ps, &roster(4), &on_chain),
        Err(EvidenceError::BadSignature { index: p(2) }),
        "receipt signature"
    );
    let mut e = lie.clone();
    e.receipts.swap(0, 1);
    assert_eq!(
        e.verify(ps, &roster(4), &on_chain),
        malformed("receipt is not the party's entry in the receipts"),
        "receipts reordered"
    );
    assert_eq!(
        lie.verify(Params::new(5, 1).expect("valid"), &roster(5), &on_chain),
        malformed("roster or receipts do not match n"),
        "other parameters"
    );
}
