//! No coins without a spend path: for random keys, hashes, heights and amounts, every
//! contract has a spend for its rightful owner after its timeout that Core's interpreter
//! accepts, and its claim/slash paths work at any height.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, TxOut, Txid};
use btcmpc_contracts::{
    combine, sign_input, Anchor, Bond, ClaimOrRefund, CompiledContract, Contract, Height,
    InternalKey, PathKind, Utxo,
};
use proptest::prelude::*;

fn key(bytes: [u8; 32]) -> Option<Keypair> {
    SecretKey::from_slice(&bytes)
        .ok()
        .map(|sk| Keypair::from_secret_key(&Secp256k1::new(), &sk))
}

fn utxo(c: &CompiledContract, sats: u64) -> Utxo {
    Utxo {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([1; 32]),
            vout: 0,
        },
        txout: TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: c.script_pubkey().clone(),
        },
    }
}

fn dest(k: &Keypair) -> ScriptBuf {
    ScriptBuf::new_p2tr(&Secp256k1::new(), k.x_only_public_key().0, None)
}

fn distinct_keys(seeds: &[[u8; 32]]) -> Option<Vec<Keypair>> {
    let keys: Vec<Keypair> = seeds.iter().map(|s| key(*s)).collect::<Option<_>>()?;
    let mut xs: Vec<_> = keys.iter().map(|k| k.x_only_public_key().0).collect();
    xs.sort();
    xs.dedup();
    (xs.len() == keys.len()).then_some(keys)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn escrow_always_has_a_claim_and_a_refund(
        seeds in prop::array::uniform3(prop::array::uniform32(any::<u8>())),
        preimage in prop::array::uniform32(any::<u8>()),
        timeout in 1u32..500_000_000,
        sats in 5_000u64..2_100_000_000_000_000,
        fee in 1u64..50,
    ) {
        let Some(keys) = distinct_keys(&seeds) else { return Ok(()) };
        let Ok(r) = SecretKey::from_slice(&seeds[2]) else { return Ok(()) };
        let c = Contract::ClaimOrRefund(ClaimOrRefund {
            receiver: keys[0].public_key(),
            sender: keys[1].public_key(),
            hash: sha256::Hash::hash(&preimage),
            timeout: Height::new(timeout).unwrap(),
            internal_key: InternalKey::NumsTweaked { r },
        }).compile().unwrap();
        let u = utxo(&c, sats);
        let rate = FeeRate::from_sat_per_vb(fee).unwrap();

        let (mut claim, _) = c.build_claim(&u, &preimage, dest(&keys[0]), rate).unwrap();
        sign_input(&mut claim, 0, &keys[0]).unwrap();
        let tx = c.finalize_and_verify(claim).unwrap();
        prop_assert_eq!(c.path_of_witness(&tx.input[0].witness), Some(PathKind::Claim));

        let (mut refund, _) = c.build_refund(&u, dest(&keys[1]), rate).unwrap();
        prop_assert_eq!(refund.unsigned_tx.lock_time.to_consensus_u32(), timeout);
        sign_input(&mut refund, 0, &keys[1]).unwrap();
        let tx = c.finalize_and_verify(refund).unwrap();
        prop_assert_eq!(c.path_of_witness(&tx.input[0].witness), Some(PathKind::Refund));
    }

    #[test]
    fn bond_always_has_an_exit_and_a_slash(
        seeds in prop::collection::vec(prop::array::uniform32(any::<u8>()), 2..7),
        k_pick in any::<prop::sample::Index>(),
        exit in 1u32..500_000_000,
        sats in 20_000u64..2_100_000_000_000_000,
        penalty in 1_000u64..100_000_000,
        fee in 1u64..20,
    ) {
        let Some(keys) = distinct_keys(&seeds) else { return Ok(()) };
        let judges = &keys[1..];
        let k = k_pick.index(judges.len()) + 1;
        let c = Contract::Bond(Bond {
            party: keys[0].public_key(),
            judges: judges.iter().map(Keypair::public_key).collect(),
            k,
            exit: Height::new(exit).unwrap(),
            internal_key: InternalKey::Nums,
        }).compile().unwrap();
        let u = utxo(&c, sats);
        let rate = FeeRate::from_sat_per_vb(fee).unwrap();

        let (mut out, _) = c.build_exit(&u, dest(&keys[0]), rate).unwrap();
        sign_input(&mut out, 0, &keys[0]).unwrap();
        c.finalize_and_verify(out).unwrap();

        // The last k judges, each on its own copy, combined.
        let (mut slash, _) = c.build_slash(&u, dest(&keys[0]), Amount::from_sat(penalty), rate).unwrap();
        for j in &judges[judges.len() - k..] {
            let (mut copy, _) = c.build_slash(&u, dest(&keys[0]), Amount::from_sat(penalty), rate).unwrap();
            sign_input(&mut copy, 0, j).unwrap();
            combine(&mut slash, copy).unwrap();
        }
        let tx = c.finalize_and_verify(slash).unwrap();
        let paid: Amount = tx.output.iter().map(|o| o.value).sum();
        prop_assert!(paid <= Amount::from_sat(sats));
        // The victim gets the penalty, or everything after the fee when the bond is short.
        let victim = tx.output[0].value;
        prop_assert!(victim <= Amount::from_sat(penalty));
        if victim < Amount::from_sat(penalty) {
            prop_assert_eq!(tx.output.len(), 1);
        }
        if tx.output.len() == 2 {
            prop_assert_eq!(victim, Amount::from_sat(penalty));
            prop_assert_eq!(&tx.output[1].script_pubkey, c.script_pubkey());
        }
    }

    #[test]
    fn anchor_always_extends(
        seed in prop::array::uniform32(any::<u8>()),
        record in prop::collection::vec(any::<u8>(), 0..=80),
        sats in 2_000u64..1_000_000,
    ) {
        let Some(k) = key(seed) else { return Ok(()) };
        let c = Contract::Anchor(Anchor { key: k.public_key() }).compile().unwrap();
        let (mut psbt, _) = c
            .build_anchor_extend(&utxo(&c, sats), &record, FeeRate::from_sat_per_vb(1).unwrap(), None)
            .unwrap();
        sign_input(&mut psbt, 0, &k).unwrap();
        let tx = c.finalize_and_verify(psbt).unwrap();
        prop_assert_eq!(&tx.output[0].script_pubkey, c.script_pubkey());
    }
}
