//! Contracts funded, claimed, refunded, exited and slashed on a regtest chain (the embedded
//! node, or a real bitcoind + electrs when `BITCOIND_EXE` and `ELECTRS_EXE` are set).

use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::rand::thread_rng;
use bitcoin::OutPoint;
use bitcoin::{Amount, FeeRate, Network};
use btcmpc_contracts::{
    Bond, ClaimOrRefund, Contract, ContractFile, Height, InternalKey, PathKind,
};
use btcmpc_contracts::{SlashTerms, SpendError, TxDifference};
use btcmpc_wallet::{
    contract_status, ChainClient, ClaimRules, EscrowPromise, Rejection, RoleWallet, WalletError,
    WatchEvent, Watcher, MAX_CLAIM_FEE_RATE,
};

mod support;
use support::{escrow, World, WAIT};

fn rate() -> FeeRate {
    FeeRate::from_sat_per_vb_u32(2)
}

/// Regtest's claim rule: 1 confirmation, 2 blocks before the timeout.
fn rules() -> ClaimRules {
    ClaimRules::for_network(Network::Regtest)
}

fn promise(outpoint: OutPoint, sats: u64) -> EscrowPromise {
    EscrowPromise {
        outpoint,
        amount: Amount::from_sat(sats),
    }
}

#[test]
fn claim_reveals_the_preimage_to_the_service() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut service = w.wallet("service", 1_000_000)?;
    let mut party = w.wallet("party", 0)?;
    let k = [7u8; 32];
    let file = escrow(&mut service, &mut party, &k, w.env.tip_height()? + 50)?;

    let op = service.fund_contract_file(&w.chain, &file, Amount::from_sat(100_000), rate())?;
    w.mine(1)?;
    let st = contract_status(&w.chain, file.compiled(), Some(op))?;
    assert_eq!(
        st.funding
            .as_ref()
            .map(|f| (f.outpoint, f.value, f.confirmations)),
        Some((op, Amount::from_sat(100_000), 1))
    );
    assert!(st.spend.is_none());

    // A wrong preimage is refused before anything is built.
    let err = party
        .claim(
            &w.chain,
            &file,
            &[8u8; 32],
            &promise(op, 100_000),
            &rules(),
            rate(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("preimage"), "{err}");
    // The service cannot claim: it does not hold the receiver's key.
    let err = service
        .claim(&w.chain, &file, &k, &promise(op, 100_000), &rules(), rate())
        .unwrap_err();
    assert!(err.to_string().contains("receiver key"), "{err}");

    let claim = party.claim(&w.chain, &file, &k, &promise(op, 100_000), &rules(), rate())?;
    w.env.wait_for_tx(&claim, WAIT)?;
    // The service sees the claim in the mempool already, with the preimage.
    let st = contract_status(&w.chain, file.compiled(), None)?;
    let spend = st.spend.as_ref().expect("the claim is seen");
    assert_eq!(
        (spend.txid, spend.path, spend.confirmations),
        (claim, Some(PathKind::Claim), 0)
    );
    assert_eq!(st.preimage(), Some(k));
    w.mine(1)?;
    party.sync(&w.chain)?;
    let got = party.balance().0;
    assert!(
        got > Amount::from_sat(99_000) && got < Amount::from_sat(100_000),
        "{got}"
    );

    // A reorg takes the claim out of the chain: confirmations go back down, then up again.
    let tip = w.env.tip_hash()?;
    w.env.invalidate(&tip)?;
    w.settle()?;
    let st = contract_status(&w.chain, file.compiled(), Some(op))?;
    assert_eq!(
        st.spend.as_ref().map(|s| s.confirmations),
        Some(0),
        "{st:?}"
    );
    assert_eq!(
        party.pending_broadcasts()?.len(),
        1,
        "the claim is still being watched"
    );
    let r = party.sync(&w.chain)?;
    assert!(
        r.rebroadcast >= 1,
        "the unconfirmed claim is broadcast again: {r:?}"
    );
    w.mine(1)?;
    let st = contract_status(&w.chain, file.compiled(), Some(op))?;
    assert_eq!(st.spend.as_ref().map(|s| s.confirmations), Some(1));
    // A spent contract cannot be claimed twice.
    let err = party
        .claim(&w.chain, &file, &k, &promise(op, 100_000), &rules(), rate())
        .unwrap_err();
    assert!(err.to_string().contains("already spent"), "{err}");
    Ok(())
}

#[test]
fn refund_is_non_final_one_block_early_and_valid_at_the_timeout() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut service = w.wallet("service", 1_000_000)?;
    let mut party = w.wallet("party", 0)?;
    let timeout = w.env.tip_height()? + 5;
    let file = escrow(&mut service, &mut party, &[1u8; 32], timeout)?;
    service.fund_contract_file(&w.chain, &file, Amount::from_sat(60_000), rate())?;
    w.mine(1)?;

    // Tip T-1: the next block is T, and a transaction locked at T is not final in it.
    w.mine_to_height(timeout - 1)?;
    let err = service.refund(&w.chain, &file, rate()).unwrap_err();
    match &err {
        WalletError::Broadcast {
            rejection, message, ..
        } => {
            assert_eq!(*rejection, Rejection::NonFinal, "{message}");
            assert!(message.contains("non-final"), "{message}");
        }
        other => panic!("expected a non-final refusal, got {other:?}"),
    }
    // Only the funding is kept (until buried): a refused spend is not.
    assert!(
        service
            .pending_broadcasts()?
            .iter()
            .all(|r| r.kind == btcmpc_wallet::BroadcastKind::Fund),
        "a refused spend is not kept"
    );
    // The party cannot refund: not its key.
    assert!(party.refund(&w.chain, &file, rate()).is_err());

    w.mine_to_height(timeout)?;
    let txid = service.refund(&w.chain, &file, rate())?;
    w.env.wait_for_tx(&txid, WAIT)?;
    w.mine(1)?;
    let st = contract_status(&w.chain, file.compiled(), None)?;
    assert_eq!(
        st.spend.map(|s| (s.txid, s.path)),
        Some((txid, Some(PathKind::Refund)))
    );
    Ok(())
}

fn bond(
    party: &mut RoleWallet,
    judges: &mut [RoleWallet],
    k: usize,
    exit: u32,
) -> anyhow::Result<ContractFile> {
    let (_, p) = party.contract_key(None, "bond")?;
    let mut keys = Vec::new();
    for j in judges.iter_mut() {
        keys.push(j.contract_key(None, "judge")?.1);
    }
    let c = Contract::Bond(Bond {
        party: p,
        judges: keys,
        k,
        exit: Height::new(exit)?,
        internal_key: InternalKey::random_nums(&mut thread_rng()),
    });
    Ok(ContractFile::new(c, Network::Regtest)?)
}

#[test]
fn bond_is_slashed_by_k_judges_and_not_by_fewer() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut party = w.wallet("party", 2_000_000)?;
    let mut judges = vec![w.wallet("j1", 0)?, w.wallet("j2", 0)?, w.wallet("j3", 0)?];
    let mut victim = w.wallet("victim", 0)?;
    let file = bond(&mut party, &mut judges, 2, w.env.tip_height()? + 100)?;
    party.fund_contract_file(&w.chain, &file, Amount::from_sat(1_000_000), rate())?;
    w.mine(1)?;

    let to = victim.next_address()?.script_pubkey();
    let penalty = Amount::from_sat(300_000);
    let terms = SlashTerms {
        victim: to,
        penalty: Some(penalty),
        fee_rate: rate(),
    };
    let (mut psbt, summary) = judges[0].slash_psbt(&w.chain, &file, &terms)?;
    assert_eq!(summary.paid, penalty);
    assert_eq!(
        judges[0].sign_slash(&w.chain, &file, &terms, &mut psbt)?.0,
        1
    );
    // One judge (k-1) is not enough: the finalizer refuses and nothing is broadcast.
    let err = judges[0]
        .broadcast_slash(&w.chain, &file, &terms, &psbt)
        .unwrap_err();
    assert!(matches!(err, WalletError::Spend(_)), "{err:?}");
    assert!(contract_status(&w.chain, file.compiled(), None)?
        .spend
        .is_none());
    // The party itself holds no judge key.
    assert!(party
        .sign_slash(&w.chain, &file, &terms, &mut psbt.clone())
        .is_err());

    // The PSBT goes to a second judge (as a file would), who signs and broadcasts.
    let mut passed = bitcoin::psbt::Psbt::deserialize(&psbt.serialize())?;
    judges[2].sign_slash(&w.chain, &file, &terms, &mut passed)?;
    let (txid, _) = judges[2].broadcast_slash(&w.chain, &file, &terms, &passed)?;
    w.env.wait_for_tx(&txid, WAIT)?;
    w.mine(1)?;
    victim.sync(&w.chain)?;
    assert_eq!(victim.balance().0, penalty);
    // The remainder went back to the same bond script: a later victim can still be paid.
    let tx = w.chain.transaction(&txid)?;
    assert_eq!(tx.output.len(), 2);
    assert_eq!(&tx.output[1].script_pubkey, file.compiled().script_pubkey());
    assert!(tx.output[1].value > Amount::from_sat(699_000));
    Ok(())
}

#[test]
fn bond_exit_waits_for_its_height() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut party = w.wallet("party", 2_000_000)?;
    let mut judges = vec![w.wallet("j1", 0)?, w.wallet("j2", 0)?];
    let exit = w.env.tip_height()? + 4;
    let file = bond(&mut party, &mut judges, 2, exit)?;
    party.fund_contract_file(&w.chain, &file, Amount::from_sat(500_000), rate())?;
    w.mine(1)?;
    w.mine_to_height(exit - 1)?;
    let err = party.exit_bond(&w.chain, &file, rate()).unwrap_err();
    assert!(err.to_string().contains("non-final"), "{err}");
    w.mine_to_height(exit)?;
    let txid = party.exit_bond(&w.chain, &file, rate())?;
    w.env.wait_for_tx(&txid, WAIT)?;
    w.mine(1)?;
    party.sync(&w.chain)?;
    let st = contract_status(&w.chain, file.compiled(), None)?;
    assert_eq!(st.spend.and_then(|s| s.path), Some(PathKind::Exit));
    Ok(())
}

#[test]
fn sending_everything_leaves_contract_outputs_alone() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut service = w.wallet("service", 1_000_000)?;
    // The service is both sides here, so the escrow output is entirely its own keys'.
    let (_, s) = service.contract_key(None, "")?;
    let (_, r) = service.contract_key(None, "")?;
    let file = ContractFile::new(
        Contract::ClaimOrRefund(ClaimOrRefund {
            receiver: r,
            sender: s,
            hash: sha256::Hash::hash(&[9u8; 32]),
            timeout: Height::new(w.env.tip_height()? + 10)?,
            internal_key: InternalKey::Nums,
        }),
        Network::Regtest,
    )?;
    let op = service.fund_contract_file(&w.chain, &file, Amount::from_sat(200_000), rate())?;
    w.mine(1)?;
    service.sync(&w.chain)?;
    let sink = w.wallet("sink", 0)?.next_address()?;
    service.send(&w.chain, &sink.to_string(), None, rate())?;
    w.mine(1)?;
    service.sync(&w.chain)?;
    assert_eq!(service.balance(), (Amount::ZERO, Amount::ZERO));
    let st = contract_status(&w.chain, file.compiled(), Some(op))?;
    assert!(st.spend.is_none(), "the contract output is unspent: {st:?}");
    // And it is still claimable by its key.
    let claim = service.claim(
        &w.chain,
        &file,
        &[9u8; 32],
        &promise(op, 200_000),
        &rules(),
        rate(),
    )?;
    w.env.wait_for_tx(&claim, WAIT)?;
    Ok(())
}

#[test]
fn contract_file_for_another_network_is_refused() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut service = w.wallet("service", 500_000)?;
    let (_, s) = service.contract_key(None, "")?;
    let file = ContractFile::new(
        Contract::ClaimOrRefund(ClaimOrRefund {
            receiver: s,
            sender: s,
            hash: sha256::Hash::hash(&[9u8; 32]),
            timeout: Height::new(500)?,
            internal_key: InternalKey::Nums,
        }),
        Network::Signet,
    )?;
    let err = service
        .fund_contract_file(&w.chain, &file, Amount::from_sat(10_000), rate())
        .unwrap_err();
    assert!(err.to_string().contains("signet"), "{err}");
    service.sync(&w.chain)?;
    assert_eq!(
        service.balance(),
        (Amount::from_sat(500_000), Amount::ZERO),
        "nothing spent"
    );
    Ok(())
}

#[test]
fn unconfirmed_claims_are_bumped_every_block() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut service = w.wallet("service", 1_000_000)?;
    let mut party = w.wallet("party", 0)?;
    let k = [3u8; 32];
    let file = escrow(&mut service, &mut party, &k, w.env.tip_height()? + 50)?;
    let op = service.fund_contract_file(&w.chain, &file, Amount::from_sat(100_000), rate())?;
    w.mine(1)?;
    let first = party.claim(&w.chain, &file, &k, &promise(op, 100_000), &rules(), rate())?;
    w.env.wait_for_tx(&first, WAIT)?;

    // A block without the claim (a miner ignoring it): the next sync replaces it, paying more.
    let empty = |w: &World| -> anyhow::Result<()> {
        let addr = w.env.mine_address().to_string();
        w.env.rpc().call(
            "generateblock",
            &[serde_json::json!(addr), serde_json::json!([])],
        )?;
        w.settle()
    };
    empty(&w)?;
    // Syncing alone replaces nothing: bumping is the claimer's explicit call.
    party.sync(&w.chain)?;
    assert_eq!(party.pending_broadcasts()?[0].txid, first);
    let bumped = party.bump_stuck_claims(&w.chain, MAX_CLAIM_FEE_RATE)?;
    assert_eq!(bumped.len(), 1, "{bumped:?}");
    let pending = party.pending_broadcasts()?;
    assert_eq!(pending.len(), 1);
    let second = pending[0].txid;
    assert_ne!(second, first);
    assert!(pending[0].fee_rate_sat_kwu > rate().to_sat_per_kwu());
    w.env.wait_for_tx(&second, WAIT)?;
    let fee = |txid| -> anyhow::Result<u64> {
        let tx = w.chain.transaction(&txid)?;
        Ok(100_000 - tx.output[0].value.to_sat())
    };
    assert!(fee(second)? > fee(first)?);
    // The replaced claim is gone from the node: only the new one can confirm.
    w.mine(1)?;
    let st = contract_status(&w.chain, file.compiled(), None)?;
    assert_eq!(
        st.spend.map(|s| (s.txid, s.confirmations)),
        Some((second, 1))
    );
    // Confirmed claims are not bumped again.
    empty(&w)?;
    party.sync(&w.chain)?;
    assert!(party
        .bump_stuck_claims(&w.chain, MAX_CLAIM_FEE_RATE)?
        .is_empty());
    Ok(())
}

#[test]
fn wallet_transactions_can_be_fee_bumped() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut a = w.wallet("a", 1_000_000)?;
    let to = w.wallet("b", 0)?.next_address()?;
    let first = a.send(
        &w.chain,
        &to.to_string(),
        Some(Amount::from_sat(100_000)),
        rate(),
    )?;
    w.env.wait_for_tx(&first, WAIT)?;
    let second = a.bump_wallet_tx(&w.chain, first, FeeRate::from_sat_per_vb_u32(10))?;
    assert_ne!(first, second);
    w.env.wait_for_tx(&second, WAIT)?;
    w.mine(1)?;
    a.sync(&w.chain)?;
    let h = a.history();
    assert!(
        h.iter().any(|i| i.txid == second && i.height.is_some()),
        "{h:?}"
    );
    assert!(
        !h.iter().any(|i| i.txid == first),
        "the replaced transaction is gone: {h:?}"
    );
    Ok(())
}

#[test]
fn watcher_reports_funding_claim_preimage_and_reorgs() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut service = w.wallet("service", 1_000_000)?;
    let mut party = w.wallet("party", 0)?;
    let k = [0x42u8; 32];
    let file = escrow(&mut service, &mut party, &k, w.env.tip_height()? + 50)?;
    let mut watcher = Watcher::new();
    watcher.watch("escrow", file.compiled().clone(), None);
    assert!(watcher.poll(&w.chain)?.is_empty(), "nothing happened yet");
    // A separate connection for notifications, as a daemon would keep one.
    let notes = ChainClient::connect(&w.env.electrum_url(), Duration::from_secs(10))?;
    assert!(
        !watcher.wait(&notes, Duration::from_millis(300))?,
        "no change, no wake-up"
    );

    let op = service.fund_contract_file(&w.chain, &file, Amount::from_sat(80_000), rate())?;
    assert!(watcher.wait(&notes, WAIT)?, "the funding wakes the watcher");
    let ev = watcher.poll(&w.chain)?;
    assert!(
        ev.contains(&WatchEvent::Funded {
            name: "escrow".into(),
            outpoint: op,
            confirmations: 0
        }),
        "{ev:?}"
    );
    w.mine(1)?;
    let ev = watcher.poll(&w.chain)?;
    assert!(
        ev.contains(&WatchEvent::Confirmations {
            name: "escrow".into(),
            txid: op.txid,
            from: 0,
            to: 1
        }),
        "{ev:?}"
    );

    let claim = party.claim(&w.chain, &file, &k, &promise(op, 80_000), &rules(), rate())?;
    assert!(watcher.wait(&notes, WAIT)?);
    w.env.wait_for_tx(&claim, WAIT)?;
    let ev = watcher.poll(&w.chain)?;
    assert!(
        ev.contains(&WatchEvent::Spent {
            name: "escrow".into(),
            txid: claim,
            path: Some(PathKind::Claim),
            preimage: Some(k)
        }),
        "{ev:?}"
    );
    w.mine(1)?;
    watcher.poll(&w.chain)?;
    // Reorg the claim's block away: its confirmations go back down.
    w.env.invalidate(&w.env.tip_hash()?)?;
    w.settle()?;
    let ev = watcher.poll(&w.chain)?;
    assert!(
        ev.contains(&WatchEvent::Confirmations {
            name: "escrow".into(),
            txid: claim,
            from: 1,
            to: 0
        }),
        "{ev:?}"
    );
    Ok(())
}

#[test]
fn restored_wallets_see_their_contracts_and_can_still_spend_them() -> anyhow::Result<()> {
    let w = World::new()?;
    let (mut service, service_words) =
        RoleWallet::create(&w.dir.join("service"), Network::Regtest, None)?;
    w.env
        .fund(&service.next_address()?, Amount::from_sat(1_000_000))?;
    w.settle()?;
    service.sync(&w.chain)?;
    let (mut party, party_words) =
        RoleWallet::create(&w.dir.join("party"), Network::Regtest, None)?;
    let k = [0x77u8; 32];
    let file = escrow(&mut service, &mut party, &k, w.env.tip_height()? + 3)?;
    let op = service.fund_contract_file(&w.chain, &file, Amount::from_sat(70_000), rate())?;
    w.mine(1)?;
    let backup = w.dir.join("service.backup");
    service.write_backup(&backup, Default::default())?;
    drop(service);

    // The service restores from its mnemonic and backup: same balance, same contract, and it
    // can refund the escrow at the timeout with a key found from the seed alone.
    let (mut restored, _) = RoleWallet::create(
        &w.dir.join("service2"),
        Network::Regtest,
        Some(service_words),
    )?;
    restored.restore_backup(&backup)?;
    restored.sync(&w.chain)?;
    let contracts = restored.contracts()?;
    assert_eq!(contracts.len(), 1);
    assert_eq!(contracts[0].funding, Some(op));
    assert_eq!(restored.known_funding(&file)?, Some(op));
    // The party restored from its mnemonic alone finds its receiver key by scanning.
    let (mut party2, _) =
        RoleWallet::create(&w.dir.join("party2"), Network::Regtest, Some(party_words))?;
    drop(party);
    let claim = party2.claim(&w.chain, &file, &k, &promise(op, 70_000), &rules(), rate())?;
    w.env.wait_for_tx(&claim, WAIT)?;
    w.mine(1)?;
    // The restored service reads the revealed key, and its refund is refused: already spent.
    let st = contract_status(&w.chain, file.compiled(), restored.known_funding(&file)?)?;
    assert_eq!(st.preimage(), Some(k));
    let err = restored.refund(&w.chain, &file, rate()).unwrap_err();
    assert!(err.to_string().contains("already spent"), "{err}");
    party2.sync(&w.chain)?;
    assert!(party2.balance().0 > Amount::from_sat(69_000));
    Ok(())
}

/// A bond of 1,000,000 sat with judges j1, j2, j3 (k = 2), funded and confirmed.
struct Bonded {
    party: RoleWallet,
    judges: Vec<RoleWallet>,
    file: ContractFile,
    funding: OutPoint,
}

fn bonded(w: &World, exit: u32) -> anyhow::Result<Bonded> {
    let mut party = w.wallet("party", 2_000_000)?;
    let mut judges = vec![w.wallet("j1", 0)?, w.wallet("j2", 0)?, w.wallet("j3", 0)?];
    let file = bond(&mut party, &mut judges, 2, exit)?;
    let funding = party.fund_contract_file(&w.chain, &file, Amount::from_sat(1_000_000), rate())?;
    w.mine(1)?;
    Ok(Bonded {
        party,
        judges,
        file,
        funding,
    })
}

/// One change to a slash PSBT.
type Edit = Box<dyn Fn(&mut bitcoin::psbt::Psbt)>;

fn not_canonical(err: &WalletError) -> Option<&TxDifference> {
    match err {
        WalletError::Spend(SpendError::NotCanonical(d)) => Some(d),
        _ => None,
    }
}

#[test]
fn judges_refuse_a_slash_the_accused_party_wrote_for_itself() -> anyhow::Result<()> {
    let w = World::new()?;
    let Bonded {
        mut party,
        mut judges,
        file,
        ..
    } = bonded(&w, w.env.tip_height()? + 100)?;
    let mut victim = w.wallet("victim", 0)?;
    // The accused party (not a judge) builds a slash of its whole bond paying itself.
    let own = party.next_address()?.script_pubkey();
    let evil_terms = SlashTerms {
        victim: own,
        penalty: None,
        fee_rate: rate(),
    };
    let (evil, _) = party.slash_psbt(&w.chain, &file, &evil_terms)?;
    // Each judge checks it against its own terms: the victim and penalty of the evidence.
    let terms = SlashTerms {
        victim: victim.next_address()?.script_pubkey(),
        penalty: Some(Amount::from_sat(300_000)),
        fee_rate: rate(),
    };
    for j in &judges[..2] {
        let mut p = evil.clone();
        let err = j.sign_slash(&w.chain, &file, &terms, &mut p).unwrap_err();
        assert!(
            matches!(
                not_canonical(&err),
                Some(TxDifference::OutputCount {
                    expected: 2,
                    got: 1
                })
            ),
            "{err}"
        );
        assert_eq!(p, evil, "nothing was signed");
    }
    // With whole-bond terms the one difference left is the destination.
    let whole = SlashTerms {
        penalty: None,
        ..terms.clone()
    };
    let err = judges[0]
        .sign_slash(&w.chain, &file, &whole, &mut evil.clone())
        .unwrap_err();
    assert!(
        matches!(
            not_canonical(&err),
            Some(TxDifference::OutputScript { index: 0, .. })
        ),
        "{err}"
    );
    // Signed by two judges who did not check (signing blindly), broadcast-psbt still refuses.
    let mut signed = evil.clone();
    judges[0].sign_checked_slash(&file, &mut signed)?;
    judges[1].sign_checked_slash(&file, &mut signed)?;
    let err = judges[2]
        .broadcast_slash(&w.chain, &file, &terms, &signed)
        .unwrap_err();
    assert!(not_canonical(&err).is_some(), "{err}");
    let st = contract_status(&w.chain, file.compiled(), None)?;
    assert!(st.outputs.iter().all(|o| o.spend.is_none()), "{st:?}");
    Ok(())
}

/// An outsider pays a small, unconfirmed output to the bond script and builds a slash of it:
/// the judges refuse it (only the live, confirmed bond output is slashed), and the canonical
/// slash of the real bond is still what they sign.
#[test]
fn judges_refuse_a_slash_of_a_decoy_output_paying_the_bond_script() -> anyhow::Result<()> {
    let w = World::new()?;
    let Bonded { judges, file, .. } = bonded(&w, w.env.tip_height()? + 100)?;
    let mut victim = w.wallet("victim", 0)?;
    let mut outsider = w.wallet("outsider", 100_000)?;
    let decoy = outsider.fund_contract_file(&w.chain, &file, Amount::from_sat(2_000), rate())?;
    w.settle()?;
    let terms = SlashTerms {
        victim: victim.next_address()?.script_pubkey(),
        penalty: Some(Amount::from_sat(300_000)),
        fee_rate: rate(),
    };
    // The outsider knows the decoy as its own funding: its slash spends the decoy.
    let (evil, _) = outsider.slash_psbt(&w.chain, &file, &terms)?;
    assert_eq!(evil.unsigned_tx.input[0].previous_output, decoy);
    for j in &judges[..2] {
        let mut p = evil.clone();
        assert!(j.sign_slash(&w.chain, &file, &terms, &mut p).is_err());
        assert_eq!(p, evil, "nothing was signed");
    }
    // Confirmed, the decoy is still not the bond's live output.
    w.env.mine(1)?;
    w.settle()?;
    let mut p = evil.clone();
    assert!(judges[0]
        .sign_slash(&w.chain, &file, &terms, &mut p)
        .is_err());
    // The judges' own canonical slash spends the real bond, not the decoy.
    let (canonical, _) = judges[0].slash_psbt(&w.chain, &file, &terms)?;
    assert_ne!(canonical.unsigned_tx.input[0].previous_output, decoy);
    Ok(())
}

#[test]
fn judges_refuse_rewritten_slashes_and_sign_the_canonical_one() -> anyhow::Result<()> {
    let w = World::new()?;
    let Bonded {
        mut judges,
        file,
        funding,
        ..
    } = bonded(&w, w.env.tip_height()? + 100)?;
    let mut victim = w.wallet("victim", 0)?;
    let terms = SlashTerms {
        victim: victim.next_address()?.script_pubkey(),
        penalty: Some(Amount::from_sat(300_000)),
        fee_rate: rate(),
    };
    let (honest, summary) = judges[0].slash_psbt(&w.chain, &file, &terms)?;
    assert_eq!(summary.outpoint, funding);

    // A corrupt judge rewrites the outputs: 1,000 sat to the victim, the rest to itself, and
    // signs its rewrite.
    let corrupt = judges[0].next_address()?.script_pubkey();
    let mut rewritten = honest.clone();
    let out = &mut rewritten.unsigned_tx.output;
    let total = out[0].value + out[1].value;
    out[0].value = Amount::from_sat(1_000);
    out[1] = bitcoin::TxOut {
        value: total - Amount::from_sat(1_000),
        script_pubkey: corrupt,
    };
    judges[0].sign_checked_slash(&file, &mut rewritten)?;
    let err = judges[1]
        .sign_slash(&w.chain, &file, &terms, &mut rewritten.clone())
        .unwrap_err();
    assert!(
        matches!(
            not_canonical(&err),
            Some(TxDifference::OutputValue {
                index: 0,
                expected: 300_000,
                got: 1_000
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("output 0 pays 1000 sat"), "{err}");

    // Locktime, sequence, fee and outpoint, each changed alone: refused.
    let tip = w.env.tip_height()?;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "nLockTime",
            Box::new(move |p| {
                p.unsigned_tx.lock_time = bitcoin::absolute::LockTime::from_height(tip).unwrap()
            }),
        ),
        (
            "nSequence",
            Box::new(|p| p.unsigned_tx.input[0].sequence = bitcoin::Sequence::MAX),
        ),
        (
            "output 1 pays",
            Box::new(|p| p.unsigned_tx.output[1].value -= Amount::from_sat(20_000)),
        ),
        (
            "not an unspent output of this bond",
            Box::new(move |p| {
                p.unsigned_tx.input[0].previous_output = OutPoint {
                    txid: funding.txid,
                    vout: 1 - funding.vout.min(1),
                }
            }),
        ),
    ];
    for (want, edit) in &edits {
        let mut p = honest.clone();
        edit(&mut p);
        let err = judges[1]
            .sign_slash(&w.chain, &file, &terms, &mut p)
            .unwrap_err();
        assert!(err.to_string().contains(want), "{want}: {err}");
    }
    // A judge whose own fee rate differs refuses too.
    let other_rate = SlashTerms {
        fee_rate: FeeRate::from_sat_per_vb_u32(3),
        ..terms.clone()
    };
    assert!(judges[1]
        .sign_slash(&w.chain, &file, &other_rate, &mut honest.clone())
        .is_err());

    // The honest canonical slash, signed by k = 2 judges, confirms.
    let mut p = honest.clone();
    judges[1].sign_slash(&w.chain, &file, &terms, &mut p)?;
    judges[2].sign_slash(&w.chain, &file, &terms, &mut p)?;
    let (txid, _) = judges[0].broadcast_slash(&w.chain, &file, &terms, &p)?;
    w.env.wait_for_tx(&txid, WAIT)?;
    w.mine(1)?;
    victim.sync(&w.chain)?;
    assert_eq!(victim.balance().0, Amount::from_sat(300_000));
    Ok(())
}

/// Judge 0 builds and signs the slash of the bond's live output, judge 1 checks and signs,
/// judge 2 checks and broadcasts; mined.
fn slash_by_k(
    w: &World,
    judges: &mut [RoleWallet],
    file: &ContractFile,
    victim: &mut RoleWallet,
    sats: u64,
) -> anyhow::Result<bitcoin::Txid> {
    let terms = SlashTerms {
        victim: victim.next_address()?.script_pubkey(),
        penalty: Some(Amount::from_sat(sats)),
        fee_rate: rate(),
    };
    let (mut p, _) = judges[0].slash_psbt(&w.chain, file, &terms)?;
    judges[0].sign_checked_slash(file, &mut p)?;
    judges[1].sign_slash(&w.chain, file, &terms, &mut p)?;
    let (txid, _) = judges[2].broadcast_slash(&w.chain, file, &terms, &p)?;
    w.env.wait_for_tx(&txid, WAIT)?;
    w.mine(1)?;
    Ok(txid)
}

#[test]
fn the_remainder_of_a_partial_slash_is_slashed_again_then_exited() -> anyhow::Result<()> {
    let w = World::new()?;
    let exit = w.env.tip_height()? + 12;
    let Bonded {
        mut party,
        mut judges,
        file,
        funding,
    } = bonded(&w, exit)?;
    let mut victims = vec![w.wallet("v1", 0)?, w.wallet("v2", 0)?];
    let first = slash_by_k(&w, &mut judges, &file, &mut victims[0], 300_000)?;
    let st = contract_status(&w.chain, file.compiled(), Some(funding))?;
    assert_eq!(st.outputs.len(), 2, "{st:?}");
    let remainder = OutPoint {
        txid: first,
        vout: 1,
    };
    assert_eq!(st.live().map(|o| o.outpoint), Some(remainder));
    assert_eq!(
        st.unspent().map(|o| o.outpoint).collect::<Vec<_>>(),
        [remainder]
    );

    // A slash of the spent original output is refused: not live in the judge's chain view.
    let terms = SlashTerms {
        victim: victims[1].next_address()?.script_pubkey(),
        penalty: Some(Amount::from_sat(200_000)),
        fee_rate: rate(),
    };
    let original = btcmpc_contracts::Utxo {
        outpoint: funding,
        txout: bitcoin::TxOut {
            value: Amount::from_sat(1_000_000),
            script_pubkey: file.compiled().script_pubkey().clone(),
        },
    };
    let (stale, _) = file.compiled().expected_slash(&original, &terms)?;
    let err = judges[1]
        .sign_slash(&w.chain, &file, &terms, &mut stale.clone())
        .unwrap_err();
    assert!(
        matches!(err, WalletError::Spend(SpendError::NotLiveOutput { .. })),
        "{err}"
    );

    // The second slash takes the remainder and confirms.
    let second = slash_by_k(&w, &mut judges, &file, &mut victims[1], 200_000)?;
    let tx = w.chain.transaction(&second)?;
    assert_eq!(tx.input[0].previous_output, remainder);
    for v in &mut victims {
        v.sync(&w.chain)?;
    }
    assert_eq!(victims[0].balance().0, Amount::from_sat(300_000));
    assert_eq!(victims[1].balance().0, Amount::from_sat(200_000));
    let st = contract_status(&w.chain, file.compiled(), Some(funding))?;
    assert_eq!(st.outputs.len(), 3);
    let left = st.live().expect("a second remainder").clone();
    assert_eq!(left.outpoint.txid, second);

    // The party exits with what is left: one block early refused, at the exit height valid.
    w.mine_to_height(exit - 1)?;
    let err = party.exit_bond(&w.chain, &file, rate()).unwrap_err();
    assert!(err.to_string().contains("non-final"), "{err}");
    w.mine_to_height(exit)?;
    let before = {
        party.sync(&w.chain)?;
        party.balance().0
    };
    let txid = party.exit_bond(&w.chain, &file, rate())?;
    w.env.wait_for_tx(&txid, WAIT)?;
    w.mine(1)?;
    assert_eq!(
        w.chain.transaction(&txid)?.input[0].previous_output,
        left.outpoint
    );
    party.sync(&w.chain)?;
    let gained = party.balance().0 - before;
    assert!(gained > left.value - Amount::from_sat(1_000), "{gained}");
    let st = contract_status(&w.chain, file.compiled(), Some(funding))?;
    assert_eq!(st.unspent().count(), 0);
    let err = party.exit_bond(&w.chain, &file, rate()).unwrap_err();
    assert!(err.to_string().contains("already spent"), "{err}");
    Ok(())
}

#[test]
fn a_claim_takes_only_the_promised_output() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut service = w.wallet("service", 1_000_000)?;
    let mut party = w.wallet("party", 0)?;
    let k = [0x21u8; 32];
    let file = escrow(&mut service, &mut party, &k, w.env.tip_height()? + 50)?;
    let small = service.fund_contract_file(&w.chain, &file, Amount::from_sat(2_000), rate())?;
    w.mine(1)?;
    service.sync(&w.chain)?;
    let big = service.fund_contract_file(&w.chain, &file, Amount::from_sat(50_000), rate())?;
    let spk = file.compiled().script_pubkey().clone();
    let history = |w: &World| w.chain.history(&spk).map(|h| h.len());

    // Not yet confirmed: refused, and the preimage never leaves.
    let err = party
        .claim(&w.chain, &file, &k, &promise(big, 50_000), &rules(), rate())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("0 confirmation(s), a claim needs 1"),
        "{err}"
    );
    assert_eq!(history(&w)?, 2, "only the two fundings");
    w.mine(1)?;
    // The small output promised as 50,000 sat, or the big one as more than it holds: refused.
    for p in [promise(small, 50_000), promise(big, 60_000)] {
        let err = party
            .claim(&w.chain, &file, &k, &p, &rules(), rate())
            .unwrap_err();
        assert!(err.to_string().contains("less than the promised"), "{err}");
    }
    assert_eq!(history(&w)?, 2);

    let claim = party.claim(&w.chain, &file, &k, &promise(big, 50_000), &rules(), rate())?;
    w.env.wait_for_tx(&claim, WAIT)?;
    w.mine(1)?;
    let tx = w.chain.transaction(&claim)?;
    assert_eq!(tx.input.len(), 1);
    assert_eq!(tx.input[0].previous_output, big);
    // Status lists both outputs: the 2,000-sat one is still unspent.
    let st = contract_status(&w.chain, file.compiled(), None)?;
    let listed: Vec<_> = st
        .outputs
        .iter()
        .map(|o| {
            (
                o.outpoint,
                o.value.to_sat(),
                o.spend.as_ref().map(|s| s.txid),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [(small, 2_000, None), (big, 50_000, Some(claim))],
        "{st:?}"
    );
    Ok(())
}

#[test]
fn a_claim_past_timeout_minus_margin_is_refused_and_reveals_nothing() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut service = w.wallet("service", 1_000_000)?;
    let mut party = w.wallet("party", 0)?;
    let margin = rules().margin;
    // The claims are made two blocks from now.
    let at = w.env.tip_height()? + 2;
    let (k_late, k_edge) = ([0x31u8; 32], [0x32u8; 32]);
    let late = escrow(&mut service, &mut party, &k_late, at + margin - 1)?;
    let edge = escrow(&mut service, &mut party, &k_edge, at + margin)?;
    let op_late = service.fund_contract_file(&w.chain, &late, Amount::from_sat(40_000), rate())?;
    w.mine(1)?;
    service.sync(&w.chain)?;
    let op_edge = service.fund_contract_file(&w.chain, &edge, Amount::from_sat(40_000), rate())?;
    w.mine(1)?;
    assert_eq!(w.env.tip_height()?, at);

    // tip + margin = T + 1: refused, nothing broadcast.
    let err = party
        .claim(
            &w.chain,
            &late,
            &k_late,
            &promise(op_late, 40_000),
            &rules(),
            rate(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("claim margin"), "{err}");
    assert_eq!(w.chain.history(late.compiled().script_pubkey())?.len(), 1);
    assert!(party.pending_broadcasts()?.is_empty());
    // tip + margin = T: the claim goes out.
    let claim = party.claim(
        &w.chain,
        &edge,
        &k_edge,
        &promise(op_edge, 40_000),
        &rules(),
        rate(),
    )?;
    w.env.wait_for_tx(&claim, WAIT)?;
    // The margin is the caller's to set (regtest): with 0 the late escrow can be claimed.
    let zero = ClaimRules {
        margin: 0,
        ..rules()
    };
    party.claim(
        &w.chain,
        &late,
        &k_late,
        &promise(op_late, 40_000),
        &zero,
        rate(),
    )?;
    Ok(())
}

/// Why the claim margin exists: a claim broadcast at the last allowed height that no miner
/// takes is still in the mempool when the tip reaches T, and from then on the service's
/// refund (valid at T) can replace it by paying more: the party revealed its key and is not
/// paid. Shown on the chain the tests run against (BIP125 replacement, as Core does).
#[test]
fn a_refund_replaces_a_stuck_claim_once_the_tip_reaches_t() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut service = w.wallet("service", 1_000_000)?;
    let mut party = w.wallet("party", 0)?;
    let k = [0x41u8; 32];
    // Funded and confirmed in the next block, claimed at tip T - margin.
    let t = w.env.tip_height()? + 1 + rules().margin;
    let file = escrow(&mut service, &mut party, &k, t)?;
    let op = service.fund_contract_file(&w.chain, &file, Amount::from_sat(60_000), rate())?;
    w.mine(1)?;
    // tip + margin = T: the last height a claim is allowed.
    assert_eq!(w.env.tip_height()? + rules().margin, t);
    let claim = party.claim(&w.chain, &file, &k, &promise(op, 60_000), &rules(), rate())?;
    w.env.wait_for_tx(&claim, WAIT)?;
    // Miners ignore it until the tip reaches T.
    let addr = w.env.mine_address().to_string();
    while w.env.tip_height()? < t {
        w.env.rpc().call(
            "generateblock",
            &[serde_json::json!(addr), serde_json::json!([])],
        )?;
    }
    w.settle()?;
    // Before T the refund was non-final; at T it is valid and replaces the claim (higher fee).
    service.sync(&w.chain)?;
    let refund = service.refund(&w.chain, &file, FeeRate::from_sat_per_vb_u32(20))?;
    w.env.wait_for_tx(&refund, WAIT)?;
    w.mine(1)?;
    let st = contract_status(&w.chain, file.compiled(), Some(op))?;
    let spend = st.spend.expect("the escrow output is spent");
    assert_eq!(spend.txid, refund, "the refund won");
    assert_eq!(spend.path, Some(PathKind::Refund));
    assert_eq!(spend.confirmations, 1);
    assert!(
        w.chain.transaction(&claim).is_err() || {
            let h = w.chain.history(file.compiled().script_pubkey())?;
            !h.iter().any(|e| e.txid == claim)
        },
        "the claim is gone"
    );
    Ok(())
}
