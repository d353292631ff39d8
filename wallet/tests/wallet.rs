//! The wallet against a regtest chain: the embedded node, or a real bitcoind + electrs when
//! `BITCOIND_EXE` and `ELECTRS_EXE` are set.

use std::time::Duration;

use bitcoin::{Amount, FeeRate, Network};
use btcmpc_regtest::harness::TestEnv;
use btcmpc_wallet::{keys, ChainClient, RoleWallet, WalletError};

const WAIT: Duration = Duration::from_secs(30);

fn connect(env: &TestEnv) -> ChainClient {
    ChainClient::connect(&env.electrum_url(), Duration::from_secs(10)).expect("electrum answers")
}

fn rate() -> FeeRate {
    FeeRate::from_sat_per_vb_u32(2)
}

#[test]
fn receive_send_and_restore_from_mnemonic() -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let dir = tempfile::tempdir()?;
    let chain = connect(&env);
    let (mut alice, words) = RoleWallet::create(&dir.path().join("alice"), Network::Regtest, None)?;
    let (mut bob, _) = RoleWallet::create(&dir.path().join("bob"), Network::Regtest, None)?;

    let a1 = alice.next_address()?;
    let a2 = alice.next_address()?;
    assert_eq!(
        a1, a2,
        "an unused address is handed out again until it is used"
    );
    env.fund(&a1, Amount::from_sat(1_000_000))?;
    env.fund(&alice.next_address()?, Amount::from_sat(500_000))?;
    env.wait_for_height(env.tip_height()?, WAIT)?;
    let report = alice.sync(&chain)?;
    assert!(report.full_scan);
    assert_eq!(alice.balance(), (Amount::from_sat(1_500_000), Amount::ZERO));

    // Pay Bob; the payment is pending until a block confirms it.
    let bob_addr = bob.next_address()?;
    let txid = alice.send(
        &chain,
        &bob_addr.to_string(),
        Some(Amount::from_sat(300_000)),
        rate(),
    )?;
    env.wait_for_tx(&txid, WAIT)?;
    bob.sync(&chain)?;
    assert_eq!(bob.balance(), (Amount::ZERO, Amount::from_sat(300_000)));
    env.mine(1)?;
    env.wait_for_height(env.tip_height()?, WAIT)?;
    bob.sync(&chain)?;
    alice.sync(&chain)?;
    assert_eq!(bob.balance(), (Amount::from_sat(300_000), Amount::ZERO));
    let fee = alice
        .history()
        .iter()
        .find(|h| h.txid == txid)
        .and_then(|h| h.fee.map(|f| f.to_sat()))
        .expect("fee known");
    assert!(fee > 0);
    assert_eq!(
        alice.balance().0,
        Amount::from_sat(1_500_000 - 300_000 - fee)
    );

    // A wallet restored from the same words in another directory sees the same coins.
    let (mut restored, _) = RoleWallet::create(
        &dir.path().join("alice2"),
        Network::Regtest,
        Some(keys::parse_mnemonic(&words.to_string())?),
    )?;
    let r = restored.sync(&chain)?;
    assert!(r.full_scan);
    assert_eq!(restored.balance(), alice.balance());
    assert_eq!(restored.history().len(), alice.history().len());
    // And the same contract keys.
    assert_eq!(
        restored.contract_key(Some(5), "")?.1,
        alice.contract_key(Some(5), "")?.1
    );
    Ok(())
}

#[test]
fn bad_sends_fail_cleanly_and_broadcast_nothing() -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let dir = tempfile::tempdir()?;
    let chain = connect(&env);
    let (mut w, _) = RoleWallet::create(dir.path(), Network::Regtest, None)?;
    env.fund(&w.next_address()?, Amount::from_sat(100_000))?;
    env.wait_for_height(env.tip_height()?, WAIT)?;
    w.sync(&chain)?;
    let history_before = w.history().len();

    let err = w.send(
        &chain,
        "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
        Some(Amount::from_sat(1000)),
        rate(),
    );
    assert!(
        matches!(err, Err(WalletError::WrongNetwork { .. })),
        "{err:?}"
    );
    let err = w.send(
        &chain,
        "not-an-address",
        Some(Amount::from_sat(1000)),
        rate(),
    );
    assert!(matches!(err, Err(WalletError::Address { .. })), "{err:?}");
    let own = w.next_address()?.to_string();
    let err = w.send(&chain, &own, Some(Amount::from_sat(10_000_000)), rate());
    match err {
        Err(WalletError::InsufficientFunds { available, .. }) => {
            assert_eq!(available, Amount::from_sat(100_000))
        }
        other => panic!("expected insufficient funds, got {other:?}"),
    }
    w.sync(&chain)?;
    assert_eq!(w.history().len(), history_before, "nothing was broadcast");
    assert_eq!(w.balance(), (Amount::from_sat(100_000), Amount::ZERO));
    Ok(())
}

#[test]
fn unreachable_server_is_named() {
    // A port nothing listens on: leased (no other process is handed it) and never bound.
    let lease = btcmpc_regtest::ports::PortLease::new().unwrap();
    let port = lease.port();
    let err =
        ChainClient::connect(&format!("127.0.0.1:{port}"), Duration::from_secs(2)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("electrum server 127.0.0.1:{port}")),
        "{msg}"
    );
}

#[test]
fn wallet_files_are_private_and_databases_checked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (w, _) = RoleWallet::create(dir.path(), Network::Regtest, None)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("mnemonic.txt"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(w);
    assert!(matches!(
        RoleWallet::create(dir.path(), Network::Regtest, None),
        Err(WalletError::AlreadyExists(_))
    ));
    // The same directory opened for another network is refused, naming the database.
    let err = RoleWallet::open(dir.path(), Network::Signet).unwrap_err();
    assert!(matches!(err, WalletError::Mismatch { .. }), "{err:?}");
    let empty = tempfile::tempdir()?;
    assert!(matches!(
        RoleWallet::open(empty.path(), Network::Regtest),
        Err(WalletError::NotFound(_))
    ));
    Ok(())
}

#[test]
fn backup_round_trip_needs_the_same_seed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut w, words) = RoleWallet::create(&dir.path().join("a"), Network::Regtest, None)?;
    w.contract_key(None, "escrow")?;
    w.remember_contract(&btcmpc_wallet::ContractRecord {
        name: "c1".into(),
        file: "{\"version\":1}".into(),
        script_pubkey: "5120".into(),
        funding: None,
        amount_sat: Some(1234),
    })?;
    let file = dir.path().join("backup.bin");
    w.write_backup(&file, Default::default())?;

    let (same, _) = RoleWallet::create(&dir.path().join("b"), Network::Regtest, Some(words))?;
    let doc = same.restore_backup(&file)?;
    assert_eq!(doc.contracts.len(), 1);
    assert_eq!(same.contract("c1")?.and_then(|c| c.amount_sat), Some(1234));

    let (other, _) = RoleWallet::create(&dir.path().join("c"), Network::Regtest, None)?;
    let err = other.restore_backup(&file).unwrap_err();
    assert!(err.to_string().contains("another mnemonic"), "{err}");
    // A flipped byte is detected.
    let mut bytes = std::fs::read(&file)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, bytes)?;
    assert!(same.read_backup(&file).is_err());
    Ok(())
}
