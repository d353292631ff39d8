//! Every printed witness size is checked against witnesses the Miniscript satisfier actually
//! builds: for each path of a compiled policy, every subset of its assets (keys that sign,
//! preimages known, timelocks reached) is handed to rust-miniscript's satisfier with
//! largest-size dummy signatures (72-byte ECDSA, 65-byte Schnorr, sighash byte included), and
//! the largest witness it builds must equal the size we print (it is the largest witness of
//! any satisfaction, so any spend fits the fee computed from it).

mod common;

use std::collections::BTreeSet;
use std::str::FromStr;

use bitcoin::hashes::{hash160, ripemd160, sha256, sha256d, Hash};
use bitcoin::secp256k1::{ecdsa, schnorr};
use bitcoin::taproot::TapLeafHash;
use bitcoin::{absolute, relative, PublicKey, Witness};
use btcmpc_contracts::{compile_policy, Target};
use miniscript::{hash256, Miniscript, MiniscriptKey, Preimage32, Satisfier, Segwitv0, Tap};

/// Hands out what `mask` selects from the assets of a script.
struct Subset<'a> {
    assets: &'a Assets,
    mask: u64,
}

#[derive(Default)]
struct Assets {
    keys: Vec<PublicKey>,
    sha256: Vec<sha256::Hash>,
    hash256: Vec<hash256::Hash>,
    ripemd160: Vec<ripemd160::Hash>,
    hash160: Vec<hash160::Hash>,
    after: Vec<absolute::LockTime>,
    older: Vec<relative::LockTime>,
}

impl Assets {
    fn of<Ctx: miniscript::ScriptContext>(ms: &Miniscript<PublicKey, Ctx>) -> Assets {
        use miniscript::Terminal as T;
        let mut a = Assets::default();
        let mut keys = BTreeSet::new();
        for node in ms.iter() {
            match &node.node {
                T::PkK(k) | T::PkH(k) => {
                    keys.insert(*k);
                }
                T::Multi(t) => keys.extend(t.iter().copied()),
                T::MultiA(t) => keys.extend(t.iter().copied()),
                T::Sha256(h) => a.sha256.push(*h),
                T::Hash256(h) => a.hash256.push(*h),
                T::Ripemd160(h) => a.ripemd160.push(*h),
                T::Hash160(h) => a.hash160.push(*h),
                T::After(t) => a.after.push(absolute::LockTime::from(*t)),
                T::Older(t) => a.older.push(relative::LockTime::from(*t)),
                _ => {}
            }
        }
        a.keys = keys.into_iter().collect();
        a
    }

    fn len(&self) -> usize {
        self.keys.len()
            + self.sha256.len()
            + self.hash256.len()
            + self.ripemd160.len()
            + self.hash160.len()
            + self.after.len()
            + self.older.len()
    }
}

impl Subset<'_> {
    /// Whether the `i`-th asset of the group starting at `base` is in the subset.
    fn has(&self, base: usize, i: usize) -> bool {
        self.mask & (1 << (base + i)) != 0
    }
    fn base(&self, group: usize) -> usize {
        let a = self.assets;
        [
            a.keys.len(),
            a.sha256.len(),
            a.hash256.len(),
            a.ripemd160.len(),
            a.hash160.len(),
            a.after.len(),
        ][..group]
            .iter()
            .sum()
    }
}

const PREIMAGE: Preimage32 = [7; 32];

fn dummy_ecdsa() -> bitcoin::ecdsa::Signature {
    // r with its top bit set (33 bytes in DER), a low s: 71 bytes of DER + the sighash byte,
    // the largest standard signature.
    let mut compact = [0x11u8; 64];
    compact[0] = 0x80;
    let sig = ecdsa::Signature::from_compact(&compact).expect("r and s below the order");
    let sig = bitcoin::ecdsa::Signature::sighash_all(sig);
    assert_eq!(sig.to_vec().len(), 72);
    sig
}

fn dummy_schnorr() -> bitcoin::taproot::Signature {
    let sig = bitcoin::taproot::Signature {
        signature: schnorr::Signature::from_slice(&[0x22; 64]).expect("64 bytes"),
        sighash_type: bitcoin::TapSighashType::All,
    };
    assert_eq!(sig.to_vec().len(), 65);
    sig
}

impl Satisfier<PublicKey> for Subset<'_> {
    fn lookup_ecdsa_sig(&self, pk: &PublicKey) -> Option<bitcoin::ecdsa::Signature> {
        let i = self.assets.keys.iter().position(|k| k == pk)?;
        self.has(0, i).then(dummy_ecdsa)
    }
    fn lookup_tap_leaf_script_sig(
        &self,
        pk: &PublicKey,
        _: &TapLeafHash,
    ) -> Option<bitcoin::taproot::Signature> {
        let i = self.assets.keys.iter().position(|k| k == pk)?;
        self.has(0, i).then(dummy_schnorr)
    }
    fn lookup_sha256(&self, h: &<PublicKey as MiniscriptKey>::Sha256) -> Option<Preimage32> {
        let i = self.assets.sha256.iter().position(|x| x == h)?;
        self.has(self.base(1), i).then_some(PREIMAGE)
    }
    fn lookup_hash256(&self, h: &<PublicKey as MiniscriptKey>::Hash256) -> Option<Preimage32> {
        let i = self.assets.hash256.iter().position(|x| x == h)?;
        self.has(self.base(2), i).then_some(PREIMAGE)
    }
    fn lookup_ripemd160(&self, h: &<PublicKey as MiniscriptKey>::Ripemd160) -> Option<Preimage32> {
        let i = self.assets.ripemd160.iter().position(|x| x == h)?;
        self.has(self.base(3), i).then_some(PREIMAGE)
    }
    fn lookup_hash160(&self, h: &<PublicKey as MiniscriptKey>::Hash160) -> Option<Preimage32> {
        let i = self.assets.hash160.iter().position(|x| x == h)?;
        self.has(self.base(4), i).then_some(PREIMAGE)
    }
    fn check_after(&self, t: absolute::LockTime) -> bool {
        self.assets
            .after
            .iter()
            .enumerate()
            .any(|(i, x)| *x == t && self.has(self.base(5), i))
    }
    fn check_older(&self, t: relative::LockTime) -> bool {
        self.assets
            .older
            .iter()
            .enumerate()
            .any(|(i, x)| *x == t && self.has(self.base(6), i))
    }
}

fn stack_size(stack: &[Vec<u8>]) -> usize {
    Witness::from_slice(stack).size()
}

/// The largest witness the satisfier builds for `ms` over every subset of its assets, with
/// `extra` elements (script, control block) appended; `None` if nothing satisfies it.
fn largest_satisfaction<Ctx: miniscript::ScriptContext>(
    ms: &Miniscript<PublicKey, Ctx>,
    extra: &[Vec<u8>],
) -> Option<usize> {
    let assets = Assets::of(ms);
    assert!(assets.len() <= 16, "too many assets to enumerate: {ms}");
    (0u64..1 << assets.len())
        .filter_map(|mask| {
            let mut stack = ms
                .satisfy(Subset {
                    assets: &assets,
                    mask,
                })
                .ok()?;
            stack.extend(extra.iter().cloned());
            Some(stack_size(&stack))
        })
        .max()
}

fn key(i: u8) -> String {
    common::keypair(i).public_key().to_string()
}

/// Every path of `policy` compiled to `target`: the printed size equals the largest witness
/// the satisfier builds. Returns the printed sizes.
fn check_policy(policy: &str, target: Target) -> Vec<u64> {
    let compiled = compile_policy(policy, target).unwrap_or_else(|e| panic!("{policy}: {e}"));
    let miniscript::Descriptor::Tr(tr) = &compiled.descriptor else {
        let p = &compiled.paths[0];
        let ms =
            Miniscript::<PublicKey, Segwitv0>::from_str(p.miniscript.as_deref().unwrap()).unwrap();
        let built = largest_satisfaction(&ms, &[ms.encode().into_bytes()]).unwrap();
        assert_eq!(
            p.witness_size.to_wu() as usize,
            built,
            "{policy} (wsh {ms}): printed {} but the largest satisfaction is {built}",
            p.witness_size.to_wu()
        );
        return vec![p.witness_size.to_wu()];
    };
    let spend_info = tr.spend_info();
    let mut leaves = compiled.paths.iter().filter(|p| p.name != "key");
    for (depth, ms) in tr.iter_scripts() {
        let p = leaves.next().expect("a path per leaf");
        assert_eq!(p.miniscript.as_deref(), Some(ms.to_string().as_str()));
        let script = ms.encode();
        let cb = spend_info
            .control_block(&(script.clone(), bitcoin::taproot::LeafVersion::TapScript))
            .unwrap();
        assert_eq!(cb.size(), 33 + 32 * usize::from(depth));
        let built =
            largest_satisfaction::<Tap>(ms, &[script.into_bytes(), cb.serialize()]).unwrap();
        assert_eq!(
            p.witness_size.to_wu() as usize,
            built,
            "{policy} (tr {} {ms}): printed {} but the largest satisfaction is {built}",
            p.name,
            p.witness_size.to_wu()
        );
    }
    if let Some(k) = compiled.paths.iter().find(|p| p.name == "key") {
        let built = stack_size(&[dummy_schnorr().to_vec()]);
        assert_eq!(k.witness_size.to_wu() as usize, built);
    }
    compiled
        .paths
        .iter()
        .map(|p| p.witness_size.to_wu())
        .collect()
}

#[test]
fn the_reported_threshold_cases_are_exact() {
    let (a, b, c) = (key(1), key(2), key(3));
    // The sizes from the report: 234, 272, 158 weight units (we printed 233, 343, 230).
    assert_eq!(
        check_policy(
            &format!("thresh(2,pk({a}),pk({b}),after(100))"),
            Target::Wsh
        ),
        vec![234]
    );
    assert_eq!(
        check_policy(
            &format!("thresh(2,pk({a}),pk({b}),pk({c}),after(100))"),
            Target::Wsh
        ),
        vec![272]
    );
    assert_eq!(
        check_policy(
            &format!("thresh(1,pk({a}),and(pk({b}),after(100)))"),
            Target::Wsh
        ),
        vec![158]
    );
    for p in [
        format!("thresh(2,pk({a}),pk({b}),after(100))"),
        format!("thresh(2,pk({a}),pk({b}),pk({c}),after(100))"),
        format!("thresh(1,pk({a}),and(pk({b}),after(100)))"),
    ] {
        check_policy(&p, Target::Tr);
    }
}

#[test]
fn user_policies_print_the_largest_witness_of_every_path() {
    let k: Vec<String> = (1..=6).map(key).collect();
    let h = "ab".repeat(32);
    let h20 = "cd".repeat(20);
    let policies = [
        format!("pk({})", k[0]),
        format!("or(pk({}),pk({}))", k[0], k[1]),
        format!("and(pk({}),pk({}))", k[0], k[1]),
        format!("or(pk({}),and(pk({}),after(1000)))", k[0], k[1]),
        format!("or(9@pk({}),1@and(pk({}),older(144)))", k[0], k[1]),
        format!(
            "or(and(pk({}),sha256({h})),and(pk({}),after(800)))",
            k[0], k[1]
        ),
        format!(
            "or(and(pk({}),hash160({h20})),and(pk({}),older(4194320)))",
            k[0], k[1]
        ),
        format!("thresh(2,pk({}),pk({}),pk({}))", k[0], k[1], k[2]),
        format!(
            "thresh(3,pk({}),pk({}),pk({}),pk({}),pk({}))",
            k[0], k[1], k[2], k[3], k[4]
        ),
        format!("thresh(2,pk({}),pk({}),older(52560))", k[0], k[1]),
        format!(
            "thresh(3,pk({}),pk({}),pk({}),after(500000001))",
            k[0], k[1], k[2]
        ),
        format!(
            "thresh(2,pk({}),and(pk({}),sha256({h})),and(pk({}),after(700)))",
            k[0], k[1], k[2]
        ),
        format!(
            "or(thresh(2,pk({}),pk({}),pk({})),and(pk({}),older(1000)))",
            k[0], k[1], k[2], k[3]
        ),
        format!(
            "and(thresh(1,pk({}),pk({})),or(pk({}),and(pk({}),after(2147483647))))",
            k[0], k[1], k[2], k[3]
        ),
        format!(
            "or(and(pk({}),pk({})),and(thresh(2,pk({}),pk({}),pk({})),older(65535)))",
            k[0], k[1], k[2], k[3], k[4]
        ),
        format!(
            "thresh(1,pk({}),and(pk({}),after(100)),and(pk({}),older(10)))",
            k[0], k[1], k[2]
        ),
    ];
    for p in &policies {
        for target in [Target::Wsh, Target::Tr] {
            check_policy(p, target);
        }
    }
}

#[test]
fn ripemd_and_hash256_paths_are_sized_too() {
    let (a, b) = (key(1), key(2));
    let h20 = "ef".repeat(20);
    let h32 = "12".repeat(32);
    for p in [
        format!("and(pk({a}),ripemd160({h20}))"),
        format!("or(and(pk({a}),hash256({h32})),pk({b}))"),
    ] {
        for target in [Target::Wsh, Target::Tr] {
            check_policy(&p, target);
        }
    }
    // Keep the hash types in use.
    let _ = (sha256d::Hash::all_zeros(), hash256::Hash::all_zeros());
}

/// Every path of every contract, spent with real signatures and finalized: the witness is
/// exactly the size the fee was computed from, and the transaction exactly the weight.
#[test]
fn every_contract_path_is_exact_with_real_signatures() {
    use bitcoin::hashes::Hash as _;
    use btcmpc_contracts::{
        combine, sign_input, Bond, ClaimOrRefund, CompiledContract, Contract, Height, InternalKey,
        PathKind,
    };
    use common::{fee_rate, keypair, p2tr_of, utxo_of, PREIMAGE};

    fn check(c: &CompiledContract, kind: PathKind, tx: &bitcoin::Transaction, weight: u64) {
        let path = c.path(kind).unwrap();
        assert_eq!(c.path_of_witness(&tx.input[0].witness), Some(kind));
        assert_eq!(
            tx.input[0].witness.size() as u64,
            path.witness_weight.to_wu(),
            "{} {kind}: witness {} but we computed {}",
            c.contract().kind(),
            tx.input[0].witness.size(),
            path.witness_weight
        );
        assert_eq!(
            tx.weight().to_wu(),
            weight,
            "{} {kind}",
            c.contract().kind()
        );
    }

    let escrow = common::escrow();
    let utxo = utxo_of(&escrow, 50_000, 1);
    let (mut psbt, s) = escrow
        .build_claim(&utxo, &PREIMAGE, p2tr_of(1), fee_rate())
        .unwrap();
    sign_input(&mut psbt, 0, &keypair(1)).unwrap();
    check(
        &escrow,
        PathKind::Claim,
        &escrow.finalize_and_verify(psbt).unwrap(),
        s.weight.to_wu(),
    );
    let (mut psbt, s) = escrow.build_refund(&utxo, p2tr_of(2), fee_rate()).unwrap();
    sign_input(&mut psbt, 0, &keypair(2)).unwrap();
    check(
        &escrow,
        PathKind::Refund,
        &escrow.finalize_and_verify(psbt).unwrap(),
        s.weight.to_wu(),
    );

    // Bonds of every k of 1..=4 judges: the slash leaf holds k signatures and m - k empty
    // elements.
    for m in 1..=4u8 {
        for k in 1..=usize::from(m) {
            let bond = Contract::Bond(Bond {
                party: keypair(10).public_key(),
                judges: (0..m).map(|j| keypair(11 + j).public_key()).collect(),
                k,
                exit: Height::new(common::EXIT).unwrap(),
                internal_key: InternalKey::NumsTweaked { r: common::r() },
            })
            .compile()
            .unwrap();
            let utxo = utxo_of(&bond, 1_000_000, 3);
            let (mut psbt, s) = bond.build_exit(&utxo, p2tr_of(10), fee_rate()).unwrap();
            sign_input(&mut psbt, 0, &keypair(10)).unwrap();
            check(
                &bond,
                PathKind::Exit,
                &bond.finalize_and_verify(psbt).unwrap(),
                s.weight.to_wu(),
            );
            let build = || {
                bond.build_slash(
                    &utxo,
                    p2tr_of(2),
                    bitcoin::Amount::from_sat(300_000),
                    fee_rate(),
                )
                .unwrap()
            };
            let (mut psbt, s) = build();
            // The last k judges sign, each on a copy.
            sign_input(&mut psbt, 0, &keypair(11 + m - 1)).unwrap();
            for j in (m - k as u8)..(m - 1) {
                let (mut other, _) = build();
                sign_input(&mut other, 0, &keypair(11 + j)).unwrap();
                combine(&mut psbt, other).unwrap();
            }
            check(
                &bond,
                PathKind::Slash,
                &bond.finalize_and_verify(psbt).unwrap(),
                s.weight.to_wu(),
            );
        }
    }

    let anchor = common::anchor();
    let utxo = utxo_of(&anchor, 10_000, 6);
    let (mut psbt, s) = anchor
        .build_anchor_extend(&utxo, b"record", fee_rate(), None)
        .unwrap();
    sign_input(&mut psbt, 0, &keypair(20)).unwrap();
    check(
        &anchor,
        PathKind::KeyPath,
        &anchor.finalize_and_verify(psbt).unwrap(),
        s.weight.to_wu(),
    );

    // A cooperative escrow's key path.
    let coop = keypair(40);
    let c = Contract::ClaimOrRefund(ClaimOrRefund {
        receiver: keypair(1).public_key(),
        sender: keypair(2).public_key(),
        hash: bitcoin::hashes::sha256::Hash::hash(&PREIMAGE),
        timeout: Height::new(common::TIMEOUT).unwrap(),
        internal_key: InternalKey::Cooperative(coop.public_key()),
    })
    .compile()
    .unwrap();
    let utxo = utxo_of(&c, 50_000, 1);
    let (mut psbt, _) = c
        .build_claim(&utxo, &PREIMAGE, p2tr_of(1), fee_rate())
        .unwrap();
    sign_input(&mut psbt, 0, &coop).unwrap();
    let tx = c.finalize_and_verify(psbt).unwrap();
    assert_eq!(
        tx.input[0].witness.size() as u64,
        c.path(PathKind::KeyPath).unwrap().witness_weight.to_wu()
    );
}

/// The key-path witness weight fee inputs and key paths are priced with: the count (1), the
/// signature's length (1) and the signature (64 bytes with `SIGHASH_DEFAULT`, 65 with a sighash
/// byte).
#[test]
fn key_path_witness_weights() {
    use btcmpc_contracts::{key_path_witness_weight, SigSizes};
    assert_eq!(
        key_path_witness_weight(SigSizes::SIGHASH_DEFAULT).to_wu(),
        66
    );
    assert_eq!(key_path_witness_weight(SigSizes::ANY_SIGHASH).to_wu(), 67);
}
