//! `btcmpc party`, `network` and `owner` run as users run them against a regtest chain: four
//! parties make a bonded committee whose manifest verifies; an owner grants and revokes a
//! service on chain.

use std::time::Duration;

use bitcoin::{Address, Amount, Network};
use btcmpc_regtest::harness::TestEnv;
use serde_json::Value;

mod support;
use support::Cli;

const WAIT: Duration = Duration::from_secs(30);

fn settle(env: &TestEnv) {
    env.wait_for_height(env.tip_height().unwrap(), WAIT)
        .unwrap();
}

fn funded_wallet(env: &TestEnv, cli: &Cli, who: &str) {
    cli.json(who, &["wallet", "create"]);
    let addr: Address = cli.json(who, &["wallet", "address"])["address"]
        .as_str()
        .unwrap()
        .parse::<Address<_>>()
        .unwrap()
        .require_network(Network::Regtest)
        .unwrap();
    env.fund(&addr, Amount::from_sat(1_000_000)).unwrap();
    settle(env);
}

#[test]
fn four_parties_bond_and_an_owner_grants_and_revokes() {
    let env = TestEnv::new().expect("regtest chain starts");
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        electrum: env.electrum_url(),
        root: dir.path().to_path_buf(),
    };
    let parties = ["p1", "p2", "p3", "p4"];
    let mut cards = Vec::new();
    for (i, p) in parties.iter().enumerate() {
        funded_wallet(&env, &cli, p);
        let endpoint = format!("127.0.0.1:{}", 7101 + i);
        let v = cli.json(
            p,
            &["party", "init", "--endpoint", &endpoint, "--fee", "2000sat"],
        );
        assert_eq!(v["party_key"].as_str().unwrap().len(), 66);
        cards.push(v["card"].as_str().unwrap().to_string());
    }
    // A second init in the same datadir is refused.
    assert!(cli
        .fails("p1", &["party", "init", "--endpoint", "127.0.0.1:1"])
        .contains("already exists"));
    // n = 4 cannot carry t = 2.
    let mut args = vec!["network", "roster", "--t", "2", "--min-bond", "100000sat"];
    args.extend(cards.iter().map(String::as_str));
    assert!(cli.fails("p1", &args).contains("3t+1"));

    let roster = cli.path("roster.json");
    let mut args = vec![
        "network",
        "roster",
        "--t",
        "1",
        "--min-bond",
        "100000sat",
        "--out",
        &roster,
    ];
    args.extend(cards.iter().map(String::as_str));
    cli.json("p1", &args);
    // Bonding before every party signed is refused.
    assert!(cli
        .fails(
            "p1",
            &[
                "party",
                "bond",
                "100000sat",
                "--exit",
                "+400",
                "--roster",
                &roster
            ]
        )
        .contains("not signed"));
    for p in parties {
        cli.json(p, &["party", "sign-roster", &roster]);
    }
    for p in parties {
        let v = cli.json(
            p,
            &[
                "party",
                "bond",
                "100000sat",
                "--exit",
                "+400",
                "--roster",
                &roster,
            ],
        );
        assert_eq!(v["amount_sat"], 100_000);
    }
    env.mine(1).unwrap();
    settle(&env);
    let manifest = cli.path("manifest.json");
    let mut args = vec![
        "network", "manifest", "--roster", &roster, "--out", &manifest,
    ];
    args.extend(cards.iter().map(String::as_str));
    cli.json("p1", &args);
    let v = cli.json("p2", &["network", "verify", &manifest]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["bonds"].as_array().unwrap().len(), 4);

    // A tampered manifest is refused with one line naming why.
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["roster"]["dispute_window"] = 1.into();
    let bad = cli.path("bad.json");
    std::fs::write(&bad, m.to_string()).unwrap();
    assert!(cli
        .fails("p2", &["network", "verify", &bad])
        .contains("does not verify"));
    // A bond pointed elsewhere names its party.
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let out0 = m["bonds"][0]["outpoint"].as_str().unwrap().to_string();
    let txid0 = out0.split(':').next().unwrap().to_string();
    m["bonds"][2]["outpoint"] = format!("{txid0}:7").into();
    std::fs::write(&bad, m.to_string()).unwrap();
    let err = cli.fails("p2", &["network", "verify", &bad]);
    assert!(err.contains("party 3 bond"), "{err}");

    // An owner stores (the STORE record alone here) and grants, then revokes, a service.
    funded_wallet(&env, &cli, "owner");
    let service = cli.json("p1", &["wallet", "key"])["pubkey"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(cli
        .fails("owner", &["owner", "grant", "health", &service])
        .contains("no dataset named health"));
    let root = "11".repeat(32);
    let d = cli.json(
        "owner",
        &[
            "owner",
            "publish-store",
            "health",
            "--receipts-root",
            &root,
            "--columns",
            "age,income",
        ],
    );
    assert_eq!(d["dataset_id"].as_str().unwrap().len(), 64);
    env.mine(1).unwrap();
    settle(&env);
    assert!(cli
        .fails(
            "owner",
            &["owner", "grant", "health", &service, "--columns", "weight"]
        )
        .contains("no column"));
    cli.json(
        "owner",
        &[
            "owner",
            "grant",
            "health",
            &service,
            "--columns",
            "income",
            "--max-degree",
            "1",
        ],
    );
    let acl = cli.json("owner", &["owner", "acl", "health"]);
    assert_eq!(acl["services"][0]["granted"], false, "{acl}");
    env.mine(2).unwrap();
    settle(&env);
    let acl = cli.json("owner", &["owner", "acl", "health"]);
    assert_eq!(acl["services"][0]["granted"], true, "{acl}");
    assert_eq!(acl["services"][0]["service"], service.as_str());
    cli.json("owner", &["owner", "revoke", "health", &service]);
    let acl = cli.json("owner", &["owner", "acl", "health"]);
    assert_eq!(acl["services"][0]["granted"], false, "{acl}");
    assert!(acl["services"][0]["access"]
        .as_str()
        .unwrap()
        .starts_with("revoked"));
    assert_eq!(acl["records"], 2);
    let list = cli.json("owner", &["owner", "list"]);
    assert_eq!(list[0]["name"], "health");
}
