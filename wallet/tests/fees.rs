//! A hostile Electrum server cannot make the wallet burn its coins in fees: a proxy in front of
//! the regtest node answers `blockchain.estimatefee` with 1 BTC/kvB and forwards the rest.
//! Payments and claims at that estimate are refused before signing and nothing is broadcast;
//! an explicit rate goes through; automatic claim bumps stop at the policy's bound.

use std::collections::HashMap;
use std::time::Duration;

use bitcoin::{Amount, FeeRate, Network};
use btcmpc_regtest::harness::ElectrumProxy;
use btcmpc_wallet::{
    ChainClient, ClaimRules, EscrowPromise, FeeChoice, WalletError, DEFAULT_FEE_POLICY,
    MAX_CLAIM_FEE_RATE,
};
use serde_json::json;

mod support;
use support::{escrow, World, WAIT};
const FLOOR: FeeRate = FeeRate::from_sat_per_kwu(250);

/// An Electrum proxy in front of the world's node that answers `blockchain.estimatefee` with
/// 1 BTC/kvB, and a client connected through it (the proxy lives as long as the pair).
fn liar(w: &World) -> anyhow::Result<(ElectrumProxy, ChainClient)> {
    let proxy = ElectrumProxy::start(
        &w.env.electrum_url(),
        HashMap::from([("blockchain.estimatefee".to_string(), json!(1.0))]),
    )?;
    let liar = ChainClient::connect(&proxy.url(), Duration::from_secs(10))?;
    Ok((proxy, liar))
}

#[test]
fn a_lying_fee_estimate_is_refused_for_sends_and_claims() -> anyhow::Result<()> {
    let w = World::new()?;
    let (_proxy, liar) = liar(&w)?;
    let mut service = w.wallet("service", 1_000_000)?;
    let mut party = w.wallet("party", 0)?;
    let to = party.next_address()?.to_string();

    // The server's 1 BTC/kvB comes back as an automatic rate of 100,000 sat/vB.
    let lie = liar.fee_rate(6, FLOOR)?;
    assert_eq!(
        lie,
        FeeChoice::Automatic(FeeRate::from_sat_per_kwu(25_000_000))
    );
    assert_eq!(w.chain.fee_rate(6, FLOOR)?, FeeChoice::Automatic(FLOOR));

    // A 100,000-sat payment at the lie: refused before signing, nothing broadcast.
    let err = service
        .send(&liar, &to, Some(Amount::from_sat(100_000)), lie)
        .unwrap_err();
    assert!(matches!(err, WalletError::FeeTooHigh { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("100000 sat/vB") && msg.contains("200 sat/vB"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(w.mempool()?.is_empty(), "nothing was broadcast");

    // A rate under the cap but a fee above 10% of a small payment: refused too.
    let err = service
        .send(
            &liar,
            &to,
            Some(Amount::from_sat(10_000)),
            FeeChoice::Automatic(FeeRate::from_sat_per_vb_u32(150)),
        )
        .unwrap_err();
    assert!(msg_has(&err, "10% of the 10000 sat moved"), "{err}");
    assert!(w.mempool()?.is_empty(), "nothing was broadcast");

    // The same payment with a rate the user chose goes through.
    let txid = service.send(
        &liar,
        &to,
        Some(Amount::from_sat(100_000)),
        FeeRate::from_sat_per_vb_u32(3),
    )?;
    w.env.wait_for_tx(&txid, WAIT)?;

    // A claim of 200,000 sat at the lie: refused, the preimage stays secret.
    let k = [5u8; 32];
    let file = escrow(&mut service, &mut party, &k, w.env.tip_height()? + 50)?;
    let outpoint = service.fund_contract_file(&w.chain, &file, Amount::from_sat(200_000), FLOOR)?;
    let promise = EscrowPromise {
        outpoint,
        amount: Amount::from_sat(200_000),
    };
    let rules = ClaimRules::for_network(Network::Regtest);
    w.env.mine(1)?;
    w.settle()?;
    party.sync(&w.chain)?;
    let err = party
        .claim(&liar, &file, &k, &promise, &rules, liar.fee_rate(2, FLOOR)?)
        .unwrap_err();
    assert!(matches!(err, WalletError::FeeTooHigh { .. }), "{err}");
    assert!(w.mempool()?.is_empty(), "no claim was broadcast");
    assert!(party.pending_broadcasts()?.is_empty());
    // With an explicit rate it is claimed.
    let claim = party.claim(
        &liar,
        &file,
        &k,
        &promise,
        &rules,
        FeeRate::from_sat_per_vb_u32(2),
    )?;
    w.env.wait_for_tx(&claim, WAIT)?;
    Ok(())
}

fn msg_has(e: &WalletError, s: &str) -> bool {
    e.to_string().contains(s)
}

#[test]
fn automatic_claim_bumps_stop_at_the_bound() -> anyhow::Result<()> {
    let w = World::new()?;
    let mut service = w.wallet("service", 1_000_000)?;
    let mut party = w.wallet("party", 0)?;
    let k = [6u8; 32];
    let file = escrow(&mut service, &mut party, &k, w.env.tip_height()? + 50)?;
    // 30,000 sat: the bound is 10%, 3,000 sat, about 20 sat/vB for a claim.
    let value = Amount::from_sat(30_000);
    let outpoint = service.fund_contract_file(&w.chain, &file, value, FLOOR)?;
    let promise = EscrowPromise {
        outpoint,
        amount: value,
    };
    let rules = ClaimRules::for_network(Network::Regtest);
    w.env.mine(1)?;
    w.settle()?;
    party.sync(&w.chain)?;
    let first = party.claim(
        &w.chain,
        &file,
        &k,
        &promise,
        &rules,
        FeeRate::from_sat_per_vb_u32(12),
    )?;
    w.env.wait_for_tx(&first, WAIT)?;
    let bound = DEFAULT_FEE_POLICY.max_fee(value);
    assert_eq!(bound, Amount::from_sat(3_000));

    // Blocks without the claim: each sync bumps it until the bound, then no more.
    let mut bumps = 0;
    let mut stopped = false;
    for _ in 0..10 {
        let addr = w.env.mine_address().to_string();
        w.env
            .rpc()
            .call("generateblock", &[json!(addr), json!([])])?;
        w.settle()?;
        party.sync(&w.chain)?;
        let bumped = party.bump_stuck_claims(&w.chain, MAX_CLAIM_FEE_RATE)?;
        let pending = party.pending_broadcasts()?;
        assert_eq!(pending.len(), 1);
        let fee = value - pending[0].tx.output[0].value;
        assert!(fee <= bound, "fee {fee} above the bound {bound}");
        if bumped.is_empty() {
            stopped = true;
            break;
        }
        bumps += 1;
    }
    assert!(bumps >= 1, "the claim was bumped at least once");
    assert!(stopped, "bumping stopped at the bound");
    Ok(())
}
