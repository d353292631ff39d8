//! The wallet's view (and the contract watcher's) follows the server's best chain down as well
//! as up: a reorg to a lower tip, to an equal height with a different block, and more than one
//! block deep.

use bitcoin::{Amount, FeeRate, Txid};
use btcmpc_regtest::harness::Restart;
use btcmpc_wallet::{RoleWallet, WatchEvent, Watcher};

mod support;
use support::{escrow, World, WAIT};

fn rate() -> FeeRate {
    FeeRate::from_sat_per_vb_u32(2)
}

fn height_of(wallet: &RoleWallet, txid: Txid) -> Option<Option<u32>> {
    wallet
        .history()
        .into_iter()
        .find(|h| h.txid == txid)
        .map(|h| h.height)
}

/// Alice pays Bob T = 70,000 sat; T confirms at `at`; both synced at `tip`.
fn paid(w: &World, at: u32, tip: u32) -> anyhow::Result<(RoleWallet, RoleWallet, Txid)> {
    let mut alice = w.wallet("alice", 1_000_000)?;
    let mut bob = w.wallet("bob", 0)?;
    w.mine_to_height(at - 1)?;
    let to = bob.next_address()?.to_string();
    let t = alice.send(&w.chain, &to, Some(Amount::from_sat(70_000)), rate())?;
    w.env.wait_for_tx(&t, WAIT)?;
    w.mine(1)?;
    w.mine_to_height(tip)?;
    alice.sync(&w.chain)?;
    bob.sync(&w.chain)?;
    assert_eq!(height_of(&alice, t), Some(Some(at)));
    assert_eq!(bob.balance(), (Amount::from_sat(70_000), Amount::ZERO));
    Ok((alice, bob, t))
}

/// Issue 11's case: tip 105, T confirmed at 103, `invalidateblock` of block 103 (tip 102, T
/// back in the mempool): balance and history show T unconfirmed. Then a node crash on top (T
/// lost with the mempool): Alice's next sync re-broadcasts T and both still show it; it
/// confirms again.
#[test]
fn a_reorg_to_a_lower_tip_unconfirms_and_a_crash_on_top_loses_nothing() -> anyhow::Result<()> {
    let mut w = World::new()?;
    let (mut alice, mut bob, t) = paid(&w, 103, 105)?;
    w.env.invalidate(&w.block_hash(103)?)?;
    assert_eq!(w.env.tip_height()?, 102);
    assert!(w.in_mempool(&t)?, "T is back in the node's mempool");
    alice.sync(&w.chain)?;
    bob.sync(&w.chain)?;
    assert_eq!(bob.balance(), (Amount::ZERO, Amount::from_sat(70_000)));
    assert_eq!(height_of(&bob, t), Some(None));
    assert_eq!(height_of(&alice, t), Some(None));
    assert_eq!(alice.synced_height(), 102);

    w.restart(Restart::Crash)?;
    assert!(!w.in_mempool(&t)?);
    assert!(alice.sync(&w.chain)?.rebroadcast >= 1);
    assert!(w.in_mempool(&t)?, "re-broadcast by the wallet that made it");
    bob.sync(&w.chain)?;
    assert_eq!(bob.balance(), (Amount::ZERO, Amount::from_sat(70_000)));
    assert_eq!(height_of(&alice, t), Some(None));
    w.mine(1)?;
    bob.sync(&w.chain)?;
    alice.sync(&w.chain)?;
    assert_eq!(height_of(&bob, t), Some(Some(103)));
    assert_eq!(bob.balance(), (Amount::from_sat(70_000), Amount::ZERO));
    Ok(())
}

/// The tip block replaced by another at the same height that does not hold T.
#[test]
fn a_reorg_to_an_equal_height_unconfirms() -> anyhow::Result<()> {
    let w = World::new()?;
    let (mut alice, mut bob, t) = paid(&w, 105, 105)?;
    let old = w.block_hash(105)?;
    w.env.invalidate(&old)?;
    w.mine_empty()?;
    assert_eq!(w.env.tip_height()?, 105);
    assert_ne!(w.block_hash(105)?, old);
    alice.sync(&w.chain)?;
    bob.sync(&w.chain)?;
    assert_eq!(height_of(&alice, t), Some(None));
    assert_eq!(bob.balance(), (Amount::ZERO, Amount::from_sat(70_000)));
    w.mine(1)?;
    bob.sync(&w.chain)?;
    assert_eq!(height_of(&bob, t), Some(Some(106)));
    Ok(())
}

/// Three blocks replaced by four without T (the server's tip ends higher than before).
#[test]
fn a_reorg_several_blocks_deep_unconfirms() -> anyhow::Result<()> {
    let w = World::new()?;
    let (mut alice, mut bob, t) = paid(&w, 103, 105)?;
    w.env.invalidate(&w.block_hash(103)?)?;
    for _ in 0..4 {
        w.mine_empty()?;
    }
    assert_eq!(w.env.tip_height()?, 106);
    alice.sync(&w.chain)?;
    bob.sync(&w.chain)?;
    assert_eq!(height_of(&alice, t), Some(None));
    assert_eq!(height_of(&bob, t), Some(None));
    assert_eq!(bob.balance(), (Amount::ZERO, Amount::from_sat(70_000)));
    Ok(())
}

/// The watcher follows a contract's funding down to 0 confirmations when its block is
/// invalidated at a lower tip, and up again.
#[test]
fn the_watcher_follows_a_reorg_to_a_lower_tip() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut service = w.wallet("service", 1_000_000)?;
    let mut party = w.wallet("party", 0)?;
    let file = escrow(
        &mut service,
        &mut party,
        &[3u8; 32],
        w.env.tip_height()? + 50,
    )?;
    let op = service.fund_contract_file(&w.chain, &file, Amount::from_sat(100_000), rate())?;
    w.mine(1)?;
    let at = w.env.tip_height()?;
    w.mine(2)?;
    let mut watcher = Watcher::from_wallet(&service)?;
    let name = btcmpc_wallet::contract_name(&file);
    let first = watcher.poll(&w.chain)?;
    assert!(first.contains(&WatchEvent::Funded {
        name: name.clone(),
        outpoint: op,
        confirmations: 3
    }));
    w.env.invalidate(&w.block_hash(at)?)?;
    w.env.wait_for_tx(&op.txid, WAIT)?;
    assert_eq!(
        watcher.poll(&w.chain)?,
        vec![WatchEvent::Confirmations {
            name: name.clone(),
            txid: op.txid,
            from: 3,
            to: 0
        }]
    );
    service.sync(&w.chain)?;
    assert_eq!(
        service
            .contract_status(&w.chain, &file)?
            .funding
            .map(|f| f.confirmations),
        Some(0)
    );
    w.mine(1)?;
    assert_eq!(
        watcher.poll(&w.chain)?,
        vec![WatchEvent::Confirmations {
            name,
            txid: op.txid,
            from: 0,
            to: 1
        }]
    );
    Ok(())
}
