//! The wallet never forgets its own transactions: every kind it makes is kept and re-broadcast
//! until buried `REORG_SAFETY` deep or a conflicting transaction is, whatever the server forgets
//! (a node killed with its mempool, as `kill -9` leaves any node).

use bitcoin::{Amount, FeeRate, Network, Txid};
use btcmpc_contracts::{Bond, Contract, ContractFile, Height, InternalKey, SlashTerms};
use btcmpc_regtest::harness::Restart;
use btcmpc_wallet::{ClaimRules, EscrowPromise, RoleWallet, REORG_SAFETY};

mod support;
use support::{escrow, World, WAIT};

fn rate() -> FeeRate {
    FeeRate::from_sat_per_vb_u32(2)
}

/// The address of a wallet nobody syncs (a payee outside the test's wallets).
fn elsewhere(w: &World) -> anyhow::Result<String> {
    let (mut x, _) = RoleWallet::create(&w.dir.join("elsewhere"), Network::Regtest, None)?;
    Ok(x.next_address()?.to_string())
}

fn in_history(wallet: &RoleWallet, txid: Txid) -> Option<Option<u32>> {
    wallet
        .history()
        .into_iter()
        .find(|h| h.txid == txid)
        .map(|h| h.height)
}

/// Issue 11's case: `wallet send ADDR 10000sat --fee-rate 2`, the node restarted before a block
/// (its mempool lost), then `wallet sync`: the payment is re-broadcast, and balance and history
/// still show it; it confirms at the next block.
#[test]
fn a_payment_survives_a_node_crash() -> anyhow::Result<()> {
    let mut w = World::new()?;
    let mut alice = w.wallet("alice", 1_000_000)?;
    let to = elsewhere(&w)?;
    let txid = alice.send(&w.chain, &to, Some(Amount::from_sat(10_000)), rate())?;
    w.env.wait_for_tx(&txid, WAIT)?;
    let (confirmed, pending) = alice.balance();
    assert_eq!(confirmed, Amount::ZERO);
    let fee = Amount::from_sat(
        alice
            .history()
            .iter()
            .find(|h| h.txid == txid)
            .and_then(|h| h.fee.map(|f| f.to_sat()))
            .expect("the payment's fee is known"),
    );
    assert_eq!(pending, Amount::from_sat(1_000_000 - 10_000) - fee);

    w.restart(Restart::Crash)?;
    assert!(!w.in_mempool(&txid)?, "the crash lost the node's mempool");
    let report = alice.sync(&w.chain)?;
    assert_eq!(report.rebroadcast, 1);
    assert!(w.in_mempool(&txid)?, "re-broadcast");
    assert_eq!(alice.balance(), (Amount::ZERO, pending));
    assert_eq!(in_history(&alice, txid), Some(None), "shown as unconfirmed");
    assert_eq!(alice.pending_broadcasts()?.len(), 1);

    // Reopened (a new process), the record is still there.
    drop(alice);
    let mut alice = RoleWallet::open(&w.dir.join("alice"), Network::Regtest)?;
    assert_eq!(alice.balance(), (Amount::ZERO, pending));
    w.mine(1)?;
    alice.sync(&w.chain)?;
    assert_eq!(alice.balance(), (pending, Amount::ZERO));
    assert_eq!(in_history(&alice, txid), Some(Some(w.env.tip_height()?)));
    // Kept until buried REORG_SAFETY deep, then forgotten.
    w.mine(REORG_SAFETY - 2)?;
    alice.sync(&w.chain)?;
    assert_eq!(
        alice.pending_broadcasts()?.len(),
        1,
        "{} deep",
        REORG_SAFETY - 1
    );
    w.mine(1)?;
    alice.sync(&w.chain)?;
    assert!(alice.pending_broadcasts()?.is_empty(), "buried");
    Ok(())
}

fn bond(
    party: &mut RoleWallet,
    judges: &mut [RoleWallet],
    exit: u32,
) -> anyhow::Result<ContractFile> {
    let (_, p) = party.contract_key(None, "bond")?;
    let mut keys = Vec::new();
    for j in judges.iter_mut() {
        keys.push(j.contract_key(None, "judge")?.1);
    }
    Ok(ContractFile::new(
        Contract::Bond(Bond {
            party: p,
            judges: keys,
            k: 2,
            exit: Height::new(exit)?,
            internal_key: InternalKey::random_nums(&mut bitcoin::secp256k1::rand::thread_rng()),
        }),
        Network::Regtest,
    )?)
}

/// Payment, fee bump, contract funding, claim, refund, exit and slash, all unconfirmed when
/// the node is killed: each wallet's next sync re-broadcasts its own, `contract status` shows
/// the forgotten funding meanwhile, and every one confirms.
#[test]
fn every_kind_of_transaction_survives_a_node_crash() -> anyhow::Result<()> {
    every_kind_survives(|w| w.restart(Restart::Crash))
}

/// The same when the node evicts them while running (Core's mempool expiry: entries older
/// than 336 hours go when the next transaction is accepted; the node's clock is moved on).
#[test]
fn every_kind_of_transaction_survives_an_eviction() -> anyhow::Result<()> {
    every_kind_survives(|w| {
        let now: u64 = w
            .env
            .rpc()
            .call_as("getblockchaininfo", &[])
            .map(|v: serde_json::Value| v["time"].as_u64().unwrap_or(0))?;
        w.env.set_mocktime(now + 336 * 3600 + 3_600)?;
        // The next acceptance (a faucet payment, mined) expires every older entry.
        let (mut x, _) = RoleWallet::create(&w.dir.join("trigger"), Network::Regtest, None)?;
        w.env.fund(&x.next_address()?, Amount::from_sat(10_000))?;
        w.settle()
    })
}

fn every_kind_survives(forget: fn(&mut World) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut w = World::new()?;
    let mut service = w.wallet("service", 3_000_000)?;
    let mut party = w.wallet("party", 3_000_000)?;
    let mut judges = vec![w.wallet("j1", 0)?, w.wallet("j2", 0)?];
    let to = elsewhere(&w)?;
    let tip = w.env.tip_height()?;
    let short = tip + 4;
    let k = [9u8; 32];
    let claimed = escrow(&mut service, &mut party, &k, tip + 100)?;
    let refunded = escrow(&mut service, &mut party, &[8u8; 32], short)?;
    let exited = bond(&mut party, &mut judges, short)?;
    let slashed = bond(&mut party, &mut judges, tip + 100)?;
    let claim_op =
        service.fund_contract_file(&w.chain, &claimed, Amount::from_sat(100_000), rate())?;
    service.fund_contract_file(&w.chain, &refunded, Amount::from_sat(100_000), rate())?;
    party.fund_contract_file(&w.chain, &exited, Amount::from_sat(200_000), rate())?;
    party.fund_contract_file(&w.chain, &slashed, Amount::from_sat(200_000), rate())?;
    w.mine(1)?;
    w.mine_to_height(short)?;
    for x in [&mut service, &mut party] {
        x.sync(&w.chain)?;
    }

    // The spends, each by the wallet whose key it needs.
    let claim = party.claim(
        &w.chain,
        &claimed,
        &k,
        &EscrowPromise {
            outpoint: claim_op,
            amount: Amount::from_sat(100_000),
        },
        &ClaimRules::for_network(Network::Regtest),
        rate(),
    )?;
    let refund = service.refund(&w.chain, &refunded, rate())?;
    let exit = party.exit_bond(&w.chain, &exited, rate())?;
    let terms = SlashTerms {
        victim: service.parse_address(&to)?.script_pubkey(),
        penalty: Some(Amount::from_sat(50_000)),
        fee_rate: rate(),
    };
    let (mut psbt, _) = judges[0].slash_psbt(&w.chain, &slashed, &terms)?;
    judges[0].sign_checked_slash(&slashed, &mut psbt)?;
    judges[1].sign_slash(&w.chain, &slashed, &terms, &mut psbt)?;
    let (slash, _) = judges[1].broadcast_slash(&w.chain, &slashed, &terms, &psbt)?;
    // A payment, a payment bumped, and a funding left unconfirmed.
    let pay = service.send(&w.chain, &to, Some(Amount::from_sat(10_000)), rate())?;
    let first = party.send(&w.chain, &to, Some(Amount::from_sat(20_000)), rate())?;
    let bump = party.bump_fee(&w.chain, first, FeeRate::from_sat_per_vb_u32(5))?;
    let late = escrow(&mut service, &mut party, &[7u8; 32], tip + 100)?;
    let fund = service.fund_contract_file(&w.chain, &late, Amount::from_sat(30_000), rate())?;
    let all = [claim, refund, exit, slash, pay, bump, fund.txid];
    for t in &all {
        w.env.wait_for_tx(t, WAIT)?;
    }
    assert!(!w.in_mempool(&first)?, "replaced by its bump");
    let service_before = service.balance();

    forget(&mut w)?;
    for t in &all {
        assert!(!w.in_mempool(t)?, "the node forgot {t}");
    }
    // Before any sync, `contract status` from the funder's wallet still shows the funding.
    let st = service.contract_status(&w.chain, &late)?;
    let f = st.funding.expect("the forgotten funding is shown");
    assert_eq!((f.outpoint, f.confirmations), (fund, 0));

    let r = service.sync(&w.chain)?;
    assert!(r.rebroadcast >= 3, "refund, payment, funding: {r:?}");
    assert_eq!(service.balance(), service_before, "nothing forgotten");
    assert!(party.sync(&w.chain)?.rebroadcast >= 3, "claim, exit, bump");
    assert!(judges[1].sync(&w.chain)?.rebroadcast >= 1, "slash");
    // A claim still unconfirmed a block after its broadcast may be fee-bumped by the sync (the
    // eviction's block): the claim kept is then its replacement, spending the same output.
    let kept_claim = party
        .pending_broadcasts()?
        .into_iter()
        .find(|r| r.kind == btcmpc_wallet::BroadcastKind::Claim)
        .expect("the claim is kept");
    assert_eq!(kept_claim.tx.input[0].previous_output, claim_op);
    let mut all = all;
    all[0] = kept_claim.txid;
    let names = [
        "claim", "refund", "exit", "slash", "payment", "bump", "funding",
    ];
    for (t, name) in all.iter().zip(names) {
        assert!(w.in_mempool(t)?, "the {name} {t} is re-broadcast");
    }
    assert!(!w.in_mempool(&first)?, "the bumped original stays replaced");
    assert_eq!(in_history(&party, bump), Some(None));
    assert_eq!(in_history(&party, first), None, "the original is not shown");
    w.mine(1)?;
    for t in &all {
        assert_eq!(w.confirmations(t)?, 1, "{t} confirmed");
    }
    service.sync(&w.chain)?;
    let st = service.contract_status(&w.chain, &late)?;
    assert_eq!(st.funding.map(|f| f.confirmations), Some(1));
    Ok(())
}

/// A transaction whose input another transaction spent: kept (not shown) while that
/// transaction is confirmed but shallow, dropped once it is buried.
#[test]
fn a_transaction_is_dropped_once_its_conflict_is_buried() -> anyhow::Result<()> {
    let mut w = World::new()?;
    let mut alice = w.wallet("alice", 1_000_000)?;
    let to = elsewhere(&w)?;
    let txid = alice.send(&w.chain, &to, Some(Amount::from_sat(10_000)), rate())?;
    w.env.wait_for_tx(&txid, WAIT)?;
    // The node forgets it; a copy of the wallet elsewhere (same words) spends the same coin.
    w.restart(Restart::Crash)?;
    let words = std::fs::read_to_string(w.dir.join("alice").join("mnemonic.txt"))?;
    let words = btcmpc_wallet::keys::parse_mnemonic(&words)?;
    let (mut twin, _) = RoleWallet::create(&w.dir.join("twin"), Network::Regtest, Some(words))?;
    twin.sync(&w.chain)?;
    let other = twin.send(&w.chain, &to, Some(Amount::from_sat(50_000)), rate())?;
    w.mine(1)?;
    assert_eq!(w.confirmations(&other)?, 1);

    alice.sync(&w.chain)?;
    assert!(
        !w.in_mempool(&txid)?,
        "a double spend of a confirmed coin is refused"
    );
    assert_eq!(
        alice.pending_broadcasts()?.len(),
        1,
        "kept while the conflict is shallow"
    );
    assert_eq!(in_history(&alice, txid), None, "not shown");
    assert_eq!(in_history(&alice, other), Some(Some(w.env.tip_height()?)));
    w.mine(REORG_SAFETY - 1)?;
    alice.sync(&w.chain)?;
    assert!(
        alice.pending_broadcasts()?.is_empty(),
        "dropped: the conflict is buried"
    );
    let (confirmed, pending) = alice.balance();
    assert_eq!(pending, Amount::ZERO);
    assert_eq!(confirmed, twin.balance().0 + twin.balance().1);
    Ok(())
}
