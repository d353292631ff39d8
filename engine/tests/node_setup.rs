//! Committee setup and access control on a regtest chain (the embedded node, or a real
//! bitcoind + electrs when `BITCOIND_EXE` and `ELECTRS_EXE` are set): four parties bond
//! against a roster and the manifest verifies; each kind of bad bond is refused naming its
//! party; an owner grants and revokes a service on chain, a forged GRANT is ignored, and an
//! offline follower catches up.

use std::time::Duration;

use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use bitcoin::{Amount, FeeRate, Network, OutPoint};
use btcmpc_contracts::{
    sign_input, Anchor, Bond, Contract, ContractFile, Height, InternalKey, Utxo,
};
use btcmpc_engine::node::acl::{self, anchor_address, Access, Record, Scope};
use btcmpc_engine::node::acl_ops::{extend_anchor, fund_bond, store_dataset};
use btcmpc_engine::node::card::{BondRef, PartyCard, SetupError, TransportSecret};
use btcmpc_engine::node::chain::{ChainView, ElectrumView};
use btcmpc_engine::node::manifest::{verify_manifest, BondFailure, Manifest};
use btcmpc_engine::node::roster::{Roster, RosterParams};
use btcmpc_regtest::harness::TestEnv;
use btcmpc_wallet::{ChainClient, RoleWallet};

const WAIT: Duration = Duration::from_secs(30);
const MIN_BOND: u64 = 100_000;

fn rate() -> FeeRate {
    FeeRate::from_sat_per_vb_u32(2)
}

struct World {
    env: TestEnv,
    chain: ChainClient,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> anyhow::Result<World> {
        let env = TestEnv::new()?;
        let chain = ChainClient::connect(&env.electrum_url(), Duration::from_secs(10))?;
        Ok(World {
            env,
            chain,
            dir: tempfile::tempdir()?,
        })
    }

    fn wallet(&self, name: &str, sats: u64) -> anyhow::Result<RoleWallet> {
        let (mut w, _) = RoleWallet::create(&self.dir.path().join(name), Network::Regtest, None)?;
        if sats > 0 {
            self.env.fund(&w.next_address()?, Amount::from_sat(sats))?;
            self.settle()?;
        }
        w.sync(&self.chain)?;
        Ok(w)
    }

    fn settle(&self) -> anyhow::Result<()> {
        self.env.wait_for_height(self.env.tip_height()?, WAIT)?;
        Ok(())
    }

    fn mine(&self, n: u32) -> anyhow::Result<()> {
        self.env.mine(n)?;
        self.settle()
    }

    fn tip(&self) -> anyhow::Result<u32> {
        Ok(ElectrumView::new(&self.chain).tip()?)
    }
}

struct Party {
    wallet: RoleWallet,
    card: PartyCard,
}

fn party(w: &World, i: usize) -> anyhow::Result<Party> {
    let mut wallet = w.wallet(&format!("party{i}"), 1_000_000)?;
    let (_, key) = wallet.contract_key(None, "party key")?;
    let kp = wallet.contract_keypair_for(&key)?.expect("own key");
    let transport = TransportSecret::generate();
    let card = PartyCard::new(
        Network::Regtest,
        &kp,
        transport.public(),
        &format!("127.0.0.1:{}", 7000 + i),
        1_000,
        4,
    )?;
    Ok(Party { wallet, card })
}

#[test]
fn committee_bonds_verify_and_each_bad_bond_names_its_party() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut parties: Vec<Party> = (1..=4).map(|i| party(&w, i)).collect::<Result<_, _>>()?;
    let cards: Vec<PartyCard> = parties.iter().map(|p| p.card.clone()).collect();
    let mut roster = Roster::new(Network::Regtest, RosterParams::new(1, MIN_BOND), cards)?;

    // Bonding against a roster that not everyone signed is refused.
    let first = roster.sign(
        &parties[0]
            .wallet
            .contract_keypair_for(&parties[0].card.party_key)?
            .unwrap(),
    )?;
    assert_eq!(first, 1);
    let exit = w.tip()? + 400;
    let err = fund_bond(
        &mut parties[0].wallet,
        &w.chain,
        &roster,
        1,
        Amount::from_sat(MIN_BOND),
        exit,
        rate(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not signed by parties [2, 3, 4]"),
        "{err}"
    );
    for p in &parties[1..] {
        let kp = p.wallet.contract_keypair_for(&p.card.party_key)?.unwrap();
        roster.sign(&kp)?;
    }
    // Every party reads the roster back from its JSON, as it would from a file.
    let roster = Roster::from_json(&roster.to_json())?;
    roster.verify()?;

    // A tampered roster is refused.
    let mut tampered = roster.to_value();
    tampered["min_bond_sat"] = 1.into();
    assert!(matches!(
        Roster::from_value(tampered),
        Err(SetupError::BadSignature { .. })
    ));

    // Each party funds its bond and records it in its card.
    let mut cards = Vec::new();
    for (i, p) in parties.iter_mut().enumerate() {
        let (op, file) = fund_bond(
            &mut p.wallet,
            &w.chain,
            &roster,
            i + 1,
            Amount::from_sat(MIN_BOND + 1_000 * i as u64),
            exit,
            rate(),
        )?;
        assert_eq!(
            file.compiled().script_pubkey(),
            &roster.bond_script(i + 1, exit)?
        );
        let mut c = p.card.clone();
        c.bond = Some(BondRef { outpoint: op, exit });
        cards.push(PartyCard::from_json(&c.to_json())?);
    }
    let manifest = Manifest::new(roster.clone(), &cards)?;
    let view = ElectrumView::new(&w.chain);

    // In the mempool: every bond is unconfirmed.
    let report = verify_manifest(&manifest, &view)?;
    assert!(matches!(
        report.ok().unwrap_err().reason,
        BondFailure::Unconfirmed {
            confirmations: 0,
            ..
        }
    ));
    w.mine(1)?;
    let report = verify_manifest(&manifest, &view)?;
    report.ok()?;
    assert!(report
        .rows
        .iter()
        .all(|r| r.status.is_ok() && r.confirmations == Some(1)));

    // Too small: party 2 points at a bond below the minimum (funded outside `fund_bond`,
    // which refuses it).
    let small_file = ContractFile::new(roster.bond_contract(2, exit)?, Network::Regtest)?;
    let small = parties[1].wallet.fund_contract_file(
        &w.chain,
        &small_file,
        Amount::from_sat(MIN_BOND - 1),
        rate(),
    )?;
    // Wrong script: party 3's "bond" lets any one judge slash (k = 1).
    let Contract::Bond(mut weak) = roster.bond_contract(3, exit)? else {
        unreachable!()
    };
    weak.k = 1;
    let weak_file = ContractFile::new(Contract::Bond(weak), Network::Regtest)?;
    let wrong = parties[2].wallet.fund_contract_file(
        &w.chain,
        &weak_file,
        Amount::from_sat(MIN_BOND),
        rate(),
    )?;
    // Exit too close: party 4's bond exits before tip + horizon + window.
    let close_exit = w.tip()? + 5;
    let close_file = ContractFile::new(roster.bond_contract(4, close_exit)?, Network::Regtest)?;
    let close = parties[3].wallet.fund_contract_file(
        &w.chain,
        &close_file,
        Amount::from_sat(MIN_BOND),
        rate(),
    )?;
    // Spent: party 1's second bond with a near exit, withdrawn after it.
    let spent_file = ContractFile::new(roster.bond_contract(1, close_exit)?, Network::Regtest)?;
    let spent = parties[0].wallet.fund_contract_file(
        &w.chain,
        &spent_file,
        Amount::from_sat(MIN_BOND),
        rate(),
    )?;
    w.mine(6)?;
    parties[0].wallet.sync(&w.chain)?;
    let exit_tx = parties[0].wallet.exit_bond(&w.chain, &spent_file, rate())?;
    w.env.wait_for_tx(&exit_tx, WAIT)?;

    let cases: [(usize, OutPoint, u32, &str); 4] = [
        (2, small, exit, "below the minimum bond"),
        (3, wrong, exit, "is not the bond contract"),
        (4, close, close_exit, "exit height"),
        (1, spent, close_exit, "spent by"),
    ];
    for (party, outpoint, bond_exit, needle) in cases {
        let mut m = manifest.clone();
        m.bonds[party - 1] = BondRef {
            outpoint,
            exit: bond_exit,
        };
        let report = verify_manifest(&m, &view)?;
        let err = report.ok().unwrap_err();
        assert_eq!(err.party, party, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        assert!(
            err.to_string().starts_with(&format!("party {party} bond")),
            "{err}"
        );
        // The other parties' rows stay ok.
        assert_eq!(report.rows.iter().filter(|r| r.status.is_err()).count(), 1);
        // The table names the same reason in JSON.
        let v = report.to_value();
        assert_eq!(v["ok"], false);
        assert_eq!(v["bonds"][party - 1]["ok"], false);
    }
    // The intact manifest still verifies, and an unsigned roster makes no manifest.
    verify_manifest(&manifest, &view)?.ok()?;
    let mut unsigned = roster.clone();
    unsigned.signatures[3] = None;
    assert!(matches!(
        Manifest::new(unsigned, &cards),
        Err(SetupError::Unsigned { .. })
    ));
    Ok(())
}

/// A key the test controls, with a P2TR output of it funded by the faucet.
fn forger(w: &World) -> anyhow::Result<(Keypair, Utxo, Contract)> {
    let secp = Secp256k1::new();
    let kp = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[0x42; 32])?);
    let contract = Contract::Anchor(Anchor {
        key: kp.public_key(),
    });
    let addr = contract.address(Network::Regtest)?;
    let txid = w.env.fund(&addr, Amount::from_sat(50_000))?;
    w.settle()?;
    let tx = w.chain.transaction(&txid)?;
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == addr.script_pubkey())
        .expect("paid") as u32;
    Ok((
        kp,
        Utxo {
            outpoint: OutPoint { txid, vout },
            txout: tx.output[vout as usize].clone(),
        },
        contract,
    ))
}

#[test]
fn grant_revoke_forged_grant_and_offline_follower() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut owner = w.wallet("owner", 2_000_000)?;
    let owner_dir = w.dir.path().join("owner-data");
    let service =
        Keypair::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[7; 32])?).public_key();
    let intruder =
        Keypair::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[8; 32])?).public_key();
    let d = store_dataset(
        &mut owner,
        &w.chain,
        &owner_dir,
        "health",
        &["age".into(), "income".into()],
        [9; 32],
        rate(),
    )?;
    w.mine(1)?;
    let view = ElectrumView::new(&w.chain);
    let anchor_key = d.anchor_key()?;
    let store = d.store_outpoint()?;
    assert_eq!(
        hex::encode(acl::dataset_id(&store, &anchor_key)),
        d.dataset_id
    );

    // Two followers: one follows every step, the other is offline until the end.
    let mut online = acl::start(&view, store, anchor_key, 2)?;
    let mut offline = acl::start(&view, store, anchor_key, 2)?;
    assert_eq!(online.receipts_root, [9; 32]);
    assert_eq!(online.access(&service, w.tip()?), Access::NotGranted);

    // A forged GRANT: an output merely paid to the anchor address, with a GRANT record for the
    // intruder, spending someone else's coins.
    let (fk, futxo, fcontract) = forger(&w)?;
    let fcompiled = fcontract.compile()?;
    let grant_intruder = Record::Grant {
        service: intruder,
        scope: Scope::all(),
    };
    let (mut psbt, _) =
        fcompiled.build_anchor_extend(&futxo, &grant_intruder.encode()?, rate(), None)?;
    psbt.unsigned_tx.output[0].script_pubkey =
        anchor_address(&anchor_key, Network::Regtest).script_pubkey();
    sign_input(&mut psbt, 0, &fk)?;
    let forged = btcmpc_contracts::finalize_and_verify(psbt, &[(0, &fcompiled)])?;
    w.chain.broadcast(&forged)?;
    w.mine(3)?;
    assert_eq!(
        acl::follow(&mut online, &view, 100)?,
        0,
        "the forged GRANT is not a spend of the anchor"
    );
    assert_eq!(online.access(&intruder, w.tip()?), Access::NotGranted);
    assert!(view
        .history(online.anchor_script())?
        .iter()
        .any(|h| h.txid == forged.compute_txid()));

    // GRANT: pending in the mempool, pending at 1 confirmation, granted at 2 (acl_min_conf).
    let scope = Scope {
        expiry: Some(w.tip()? + 50),
        max_degree: 1,
        columns: Some([0].into()),
    };
    let grant = Record::Grant {
        service,
        scope: scope.clone(),
    };
    let current = online.current().unwrap();
    assert_eq!(current, store);
    let g = extend_anchor(&mut owner, &w.chain, &anchor_key, current, &grant, rate())?;
    w.env.wait_for_tx(&g, WAIT)?;
    assert_eq!(acl::follow(&mut online, &view, 100)?, 1);
    assert_eq!(online.access(&service, w.tip()?), Access::Pending(0));
    w.mine(1)?;
    acl::follow(&mut online, &view, 100)?;
    assert_eq!(online.access(&service, w.tip()?), Access::Pending(1));
    w.mine(1)?;
    acl::follow(&mut online, &view, 100)?;
    assert_eq!(
        online.access(&service, w.tip()?),
        Access::Granted(scope.clone())
    );
    assert!(online.access(&service, w.tip()?).is_granted());
    assert_eq!(online.access(&intruder, w.tip()?), Access::NotGranted);

    // REVOKE: effective as soon as it is in the mempool.
    let revoke = Record::Revoke { service };
    let r = extend_anchor(
        &mut owner,
        &w.chain,
        &anchor_key,
        online.current().unwrap(),
        &revoke,
        rate(),
    )?;
    w.env.wait_for_tx(&r, WAIT)?;
    acl::follow(&mut online, &view, 100)?;
    assert_eq!(online.access(&service, w.tip()?), Access::Revoked(r));
    w.mine(1)?;

    // The offline follower catches up in bounded steps and agrees.
    assert_eq!(acl::follow(&mut offline, &view, 1)?, 1);
    assert_eq!(offline.entries.len(), 1);
    assert_eq!(acl::follow(&mut offline, &view, 100)?, 1);
    acl::follow(&mut online, &view, 100)?;
    assert_eq!(offline, online);
    assert_eq!(offline.access(&service, w.tip()?), Access::Revoked(r));
    assert_eq!(
        offline.entries.iter().map(|e| e.txid).collect::<Vec<_>>(),
        vec![g, r]
    );

    // A GRANT on a stale anchor is refused by the wallet (the output is spent, so the node
    // refuses the double spend) and changes nothing.
    assert!(extend_anchor(&mut owner, &w.chain, &anchor_key, store, &grant, rate()).is_err());
    acl::follow(&mut online, &view, 100)?;
    assert_eq!(online.entries.len(), 2);
    Ok(())
}

#[test]
fn bond_contract_matches_the_toolkit_bond() -> anyhow::Result<()> {
    // The roster's bond is the toolkit's bond contract with the other members as judges.
    let secp = Secp256k1::new();
    let kps: Vec<Keypair> = (1..=4u8)
        .map(|s| Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[s; 32]).unwrap()))
        .collect();
    let cards: Vec<PartyCard> = kps
        .iter()
        .enumerate()
        .map(|(i, k)| PartyCard::new(Network::Regtest, k, [i as u8; 32], "h:1", 1, 1))
        .collect::<Result<_, _>>()?;
    let roster = Roster::new(Network::Regtest, RosterParams::new(1, 1), cards)?;
    let expected = Contract::Bond(Bond {
        party: kps[0].public_key(),
        judges: kps[1..].iter().map(Keypair::public_key).collect(),
        k: 2,
        exit: Height::new(900)?,
        internal_key: InternalKey::Nums,
    });
    assert_eq!(roster.bond_contract(1, 900)?, expected);
    Ok(())
}

/// A STORE and a GRANT (anchor extension) survive a node crash that loses them with the
/// mempool: the owner's next sync re-broadcasts each (the wallet keeps every transaction it
/// makes until it is buried), and each confirms.
#[test]
fn store_and_anchor_extension_survive_a_node_crash() -> anyhow::Result<()> {
    use btcmpc_regtest::harness::Restart;
    let mut w = World::new()?;
    let mut owner = w.wallet("owner", 2_000_000)?;
    let owner_dir = w.dir.path().join("owner-data");
    let service =
        Keypair::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[7; 32])?).public_key();
    let in_mempool = |w: &World, txid: &bitcoin::Txid| -> anyhow::Result<bool> {
        let v = w.env.rpc().call("getrawmempool", &[])?;
        Ok(v.as_array()
            .is_some_and(|a| a.iter().any(|t| t.as_str() == Some(&txid.to_string()))))
    };
    let crash = |w: &mut World| -> anyhow::Result<()> {
        w.env.restart(Restart::Crash)?;
        w.chain = ChainClient::connect(&w.env.electrum_url(), Duration::from_secs(10))?;
        Ok(())
    };

    let d = store_dataset(
        &mut owner,
        &w.chain,
        &owner_dir,
        "health",
        &["age".into()],
        [9; 32],
        rate(),
    )?;
    let store = d.store_outpoint()?;
    w.env.wait_for_tx(&store.txid, WAIT)?;
    crash(&mut w)?;
    assert!(!in_mempool(&w, &store.txid)?, "the crash lost the STORE");
    assert!(owner.sync(&w.chain)?.rebroadcast >= 1);
    assert!(in_mempool(&w, &store.txid)?, "the STORE is re-broadcast");
    w.mine(1)?;

    let grant = Record::Grant {
        service,
        scope: Scope::all(),
    };
    let g = extend_anchor(
        &mut owner,
        &w.chain,
        &d.anchor_key()?,
        store,
        &grant,
        rate(),
    )?;
    w.env.wait_for_tx(&g, WAIT)?;
    crash(&mut w)?;
    assert!(!in_mempool(&w, &g)?, "the crash lost the GRANT");
    assert!(owner.sync(&w.chain)?.rebroadcast >= 1);
    assert!(in_mempool(&w, &g)?, "the GRANT is re-broadcast");
    w.mine(1)?;
    assert!(ElectrumView::new(&w.chain)
        .history(&anchor_address(&d.anchor_key()?, Network::Regtest).script_pubkey())?
        .iter()
        .any(|h| h.txid == g && h.height.is_some()));
    Ok(())
}
