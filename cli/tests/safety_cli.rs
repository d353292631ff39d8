//! What the CLI must never do to a user: pay a fee a hostile server chose, talk to an Electrum
//! server in plaintext off regtest without being told to, or delete state it did not create.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use btcmpc_regtest::harness::{ElectrumProxy, TestEnv};
use serde_json::{json, Value};

mod support;
use support::Cli;

const WAIT: Duration = Duration::from_secs(30);

fn setup() -> (TestEnv, Cli, tempfile::TempDir) {
    let env = TestEnv::new().expect("regtest chain starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let cli = Cli {
        electrum: env.electrum_url(),
        root: dir.path().to_path_buf(),
    };
    (env, cli, dir)
}

fn mempool(env: &TestEnv) -> Vec<Value> {
    env.rpc()
        .call("getrawmempool", &[])
        .unwrap()
        .as_array()
        .cloned()
        .unwrap()
}

#[test]
fn wallet_send_refuses_a_lying_fee_estimate_unless_the_rate_is_given() {
    let (env, cli, _dir) = setup();
    let proxy = ElectrumProxy::start(
        &env.electrum_url(),
        HashMap::from([("blockchain.estimatefee".to_string(), json!(1.0))]),
    )
    .unwrap();
    let liar = Cli {
        electrum: proxy.url(),
        root: cli.root.clone(),
    };
    cli.json("alice", &["wallet", "create"]);
    let addr = cli.json("alice", &["wallet", "address"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    let to = cli.json("bob", &["wallet", "create"])["address"]
        .as_str()
        .unwrap()
        .to_string();
    let funded = env
        .fund(
            &addr
                .parse::<bitcoin::Address<_>>()
                .unwrap()
                .assume_checked(),
            bitcoin::Amount::from_sat(1_000_000),
        )
        .unwrap();
    env.mine(1).unwrap();
    env.wait_for_height(env.tip_height().unwrap(), WAIT)
        .unwrap();
    assert!(!mempool(&env)
        .iter()
        .any(|t| t == &json!(funded.to_string())));

    let err = liar.fails("alice", &["wallet", "send", &to, "100000sat"]);
    assert!(
        err.contains("refusing a fee of")
            && err.contains("100000 sat/vB")
            && err.contains("--fee-rate"),
        "{err}"
    );
    assert!(mempool(&env).is_empty(), "nothing was broadcast");

    let sent = liar.json(
        "alice",
        &["wallet", "send", &to, "100000sat", "--fee-rate", "2"],
    );
    let txid: bitcoin::Txid = sent["txid"].as_str().unwrap().parse().unwrap();
    env.wait_for_tx(&txid, WAIT).unwrap();
}

#[test]
fn plaintext_electrum_off_regtest_needs_an_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        // Nothing listens here: with the opt-in the error is about the connection instead.
        electrum: "tcp://127.0.0.1:9".into(),
        root: dir.path().to_path_buf(),
    };
    let out = cli.run("s", &["--network", "signet", "wallet", "create"]);
    assert!(out.status.success(), "{out:?}");
    let err = cli.fails("s", &["--network", "signet", "wallet", "sync"]);
    assert!(
        err.contains("plaintext") && err.contains("--allow-plaintext-electrum"),
        "{err}"
    );
    let err = cli.fails(
        "s",
        &[
            "--network",
            "signet",
            "--allow-plaintext-electrum",
            "wallet",
            "sync",
        ],
    );
    assert!(!err.contains("plaintext"), "{err}");
}

fn move_away(from: &Path, to: &Path) {
    std::fs::rename(from, to).unwrap();
}

#[test]
fn restore_and_create_move_existing_state_aside_and_say_so() {
    let (_env, cli, dir) = setup();
    let wallet = dir.path().join("alice").join("wallet");
    let created = cli.json("alice", &["wallet", "create", "--show-mnemonic"]);
    let words = created["mnemonic"].as_str().unwrap().to_string();
    let key0 = cli.json("alice", &["wallet", "key", "--label", "bond"]);
    assert_eq!(key0["index"], 0);

    // The seed kept offline, restored from its file: the database is kept with its records.
    let seed = dir.path().join("seed.txt");
    move_away(&wallet.join("mnemonic.txt"), &seed);
    let r = cli.json(
        "alice",
        &[
            "wallet",
            "restore",
            "--mnemonic-file",
            seed.to_str().unwrap(),
        ],
    );
    assert!(r["database_kept"].is_string(), "{r}");
    let key1 = cli.json("alice", &["wallet", "key"]);
    assert_eq!(key1["index"], 1, "the kept database remembers key 0");

    // Another seed over it: the old database is moved aside, not deleted, and reported.
    let other = dir.path().join("other.txt");
    let other_words = cli.json("bob", &["wallet", "create", "--show-mnemonic"])["mnemonic"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(&other, format!("{other_words}\n")).unwrap();
    move_away(&wallet.join("mnemonic.txt"), &dir.path().join("seed2.txt"));
    let out = cli.run(
        "alice",
        &[
            "wallet",
            "restore",
            "--mnemonic-file",
            other.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("moved the existing database"), "{text}");
    let moved: Vec<PathBuf> = std::fs::read_dir(&wallet)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("wallet.sqlite.moved-"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    // The moved database is the old wallet: back with its mnemonic, its records are there.
    let back = dir.path().join("back").join("wallet");
    std::fs::create_dir_all(&back).unwrap();
    std::fs::copy(&moved[0], back.join("wallet.sqlite")).unwrap();
    std::fs::write(back.join("mnemonic.txt"), format!("{words}\n")).unwrap();
    let key2 = cli.json("back", &["wallet", "key"]);
    assert_eq!(key2["index"], 2, "keys 0 and 1 are in the moved database");

    // `wallet create` over a wallet: refused. Over a database alone: moved aside, reported.
    let err = cli.fails("alice", &["wallet", "create"]);
    assert!(err.contains("already exists"), "{err}");
    move_away(&wallet.join("mnemonic.txt"), &dir.path().join("seed3.txt"));
    let c = cli.json("alice", &["wallet", "create"]);
    let aside = c["database_moved_aside"].as_str().unwrap();
    assert!(Path::new(aside).exists(), "{c}");

    // A backup over an existing file moves that file aside.
    let backup = dir.path().join("alice.bak");
    std::fs::write(&backup, b"an older file").unwrap();
    let b = cli.json("alice", &["wallet", "backup", backup.to_str().unwrap()]);
    let aside = b["moved_aside"].as_str().unwrap();
    assert_eq!(std::fs::read(aside).unwrap(), b"an older file");
}
