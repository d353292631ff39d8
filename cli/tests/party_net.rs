//! The party network as separate processes on the embedded regtest chain: four `btcmpc party
//! run` daemons (t = 1) with bonds, an owner storing a CSV with gaps in one `owner store` call,
//! granting and revoking on chain; parties that misbehave through the fault switchboard, and
//! parties killed mid-store.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::net::{write_csv, Net, WAIT};

#[test]
fn an_owner_stores_10000_rows_with_four_party_processes_and_grants_on_chain() {
    let mut net = Net::new();
    let csv = net.cli.path("data.csv");
    write_csv(std::path::Path::new(&csv), 10_000);
    let v = net.store(&csv, "survey");
    assert_eq!(v["holders"], serde_json::json!([1, 2, 3, 4]), "{v}");
    assert_eq!(v["committed"], serde_json::json!([1, 2, 3, 4]), "{v}");
    assert_eq!(v["blamed"], serde_json::json!([]));
    assert_eq!(v["rows"], 10_000);
    // id, income + present(income), plan = 3 levels, age: 7 shared columns.
    assert_eq!(v["columns"], 7, "{v}");
    let id = v["dataset_id"].as_str().unwrap().to_string();
    for p in 1..=4 {
        let s = net.status(p);
        let d = &s["datasets"][0];
        assert_eq!(d["name"], "survey");
        assert_eq!(d["rows"], 10_000);
        assert_eq!(d["state"], "committed", "{s}");
        assert_eq!(d["dataset_id"].as_str().unwrap(), id);
        assert_eq!(s["peers_connected"].as_array().unwrap().len(), 3, "{s}");
        assert!(s["bond"].is_array(), "{s}");
    }
    // Each party checks its own bond on chain as clients do.
    let end = Instant::now() + WAIT;
    while !net.status(1)["bond_state"]
        .as_str()
        .is_some_and(|b| b.starts_with("ok at tip"))
    {
        assert!(Instant::now() < end, "{}", net.status(1));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The dataset card services use is signed and names the committee.
    let card = net.cli.json("owner", &["owner", "export", "survey"]);
    assert_eq!(card["dataset_id"].as_str().unwrap(), id);
    assert_eq!(card["schema"]["rows"], 10_000);
    assert_eq!(card["signature"].as_str().unwrap().len(), 128);
    // A service asks every party whether it may query; each reads the ACL on chain itself.
    net.fund("service");
    let service = net.cli.json("service", &["service", "init"])["pubkey"]
        .as_str()
        .unwrap()
        .to_string();
    let card_file = net.cli.path("survey.card.json");
    net.cli
        .json("owner", &["owner", "export", "survey", "--out", &card_file]);
    /// `service access`: exit 0 when granted, 3 when refused, the report on stdout either way.
    fn access(net: &Net, card: &str, columns: &str, degree: &str) -> Value {
        let args = [
            "--json",
            "service",
            "access",
            card,
            "--columns",
            columns,
            "--degree",
            degree,
        ];
        let out = net.cli.run("service", &args);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "service access printed no report: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let want = if v["granted"] == true { 0 } else { 3 };
        assert_eq!(out.status.code(), Some(want), "{v}");
        v
    }
    fn wait_for(net: &Net, card: &str, want: bool, columns: &str) -> Value {
        let end = Instant::now() + WAIT;
        loop {
            let v = access(net, card, columns, "1");
            let all = v["parties"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["granted"] == want && p.get("error").is_none());
            if all {
                return v;
            }
            assert!(Instant::now() < end, "parties never agreed on {want}: {v}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    let v = wait_for(&net, &card_file, false, "income");
    assert_eq!(v["granted"], false);
    assert!(
        v["parties"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not granted"),
        "{v}"
    );
    // Party 4 is offline while the GRANT is published; it catches up from the chain.
    net.daemons[3] = None;
    net.cli.json(
        "owner",
        &["owner", "grant", "survey", &service, "--columns", "income"],
    );
    net.env.mine(1).unwrap();
    net.settle();
    let acl = net
        .cli
        .json("owner", &["owner", "acl", "survey", "--min-conf", "1"]);
    assert_eq!(acl["services"][0]["granted"], true, "{acl}");
    net.restart(4, None);
    let v = wait_for(&net, &card_file, true, "income");
    assert_eq!(v["granted"], true, "{v}");
    // Out of scope: another column, a higher degree.
    let v = access(&net, &card_file, "id", "1");
    assert_eq!(v["granted"], false);
    assert!(
        v["parties"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("outside the granted scope"),
        "{v}"
    );
    let v = access(&net, &card_file, "income", "3");
    assert!(
        v["parties"][2]["reason"]
            .as_str()
            .unwrap()
            .contains("degree 3"),
        "{v}"
    );
    // A REVOKE counts as soon as it is seen, before it confirms, and a party reads the chain
    // again for every request: with the periodic poll an hour away, the very next question
    // after the revoke is refused by every party (and the one before it is answered).
    for p in 1..=4 {
        net.restart_with(p, None, &["--acl-poll", "3600"]);
    }
    let v = access(&net, &card_file, "income", "1");
    assert_eq!(v["granted"], true, "{v}");
    net.cli
        .json("owner", &["owner", "revoke", "survey", &service]);
    let v = access(&net, &card_file, "income", "1");
    assert_eq!(v["granted"], false, "{v}");
    for p in 0..4 {
        assert!(
            v["parties"][p]["reason"]
                .as_str()
                .unwrap()
                .contains("revoked"),
            "party {}: {v}",
            p + 1
        );
    }
    let acl = net.cli.json("owner", &["owner", "acl", "survey"]);
    assert_eq!(acl["services"][0]["granted"], false, "{acl}");
    // Records that would change nothing cost nothing: refused before a transaction.
    let err = net
        .cli
        .fails("owner", &["owner", "revoke", "survey", &service]);
    assert!(err.contains("already revoked"), "{err}");
    let err = net.cli.fails(
        "owner",
        &["owner", "grant", "survey", &service, "--expires", "5"],
    );
    assert!(err.contains("not above the tip"), "{err}");
    let records = net.cli.json("owner", &["owner", "acl", "survey"])["records"].clone();
    assert_eq!(records, acl["records"], "no record was added");

    // Bad input: a clear one-line error, nothing published, the daemons keep serving.
    let bad = net.cli.path("bad.csv");
    for (text, what) in [
        ("a,b\n1,2\n3\n", "line 3"),
        ("a,b\n1,2\n3,x\n", "b"),
        ("age:int:0..120\n5\n121\n", "121"),
        ("a,b\n,2\n,3\n", "a"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let err = net.cli.fails("owner", &net.store_args(&bad, "bad"));
        assert!(err.contains(what), "{text:?}: {err}");
    }
    assert!(net
        .cli
        .fails("owner", &net.store_args(&csv, "survey"))
        .contains("already exists"));
    let err = net
        .cli
        .fails("owner", &["owner", "grant", "nosuch", &service]);
    assert!(err.contains("nosuch"), "{err}");
    let stranger = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";
    let err = net
        .cli
        .fails("owner", &["owner", "revoke", "survey", stranger]);
    assert!(err.contains("never granted"), "{err}");
    let list = net.cli.json("owner", &["owner", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // A manifest whose bond is not the committee's is refused before anything is sent.
    let mut m: Value =
        serde_json::from_str(&std::fs::read_to_string(&net.manifest).unwrap()).unwrap();
    m["bonds"][2]["exit"] = (m["bonds"][2]["exit"].as_u64().unwrap() + 1).into();
    let bad_manifest = net.cli.path("bad-manifest.json");
    std::fs::write(&bad_manifest, m.to_string()).unwrap();
    let err = net.cli.fails(
        "owner",
        &[
            "owner",
            "store",
            &csv,
            "--name",
            "other",
            "--manifest",
            &bad_manifest,
        ],
    );
    assert!(err.contains("refused") && err.contains("party 3"), "{err}");
    for p in 1..=4 {
        assert_eq!(
            net.datasets(p).len(),
            1,
            "party {p} holds only the good dataset"
        );
    }

    // A dataset under min_rows (10) rows is never queried, granted or not.
    let tiny = net.cli.path("tiny.csv");
    std::fs::write(&tiny, "x\n1\n2\n3\n4\n5\n").unwrap();
    net.store(&tiny, "tiny");
    let tiny_card = net.cli.path("tiny.card.json");
    net.cli
        .json("owner", &["owner", "export", "tiny", "--out", &tiny_card]);
    net.env.mine(1).unwrap();
    let v = wait_for(&net, &tiny_card, false, "x");
    assert!(
        v["parties"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("5 rows"),
        "{v}"
    );
    // A card whose content was changed is refused before any party is asked.
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&tiny_card).unwrap()).unwrap();
    c["schema"]["rows"] = 500.into();
    std::fs::write(&tiny_card, c.to_string()).unwrap();
    let err = net.cli.fails("service", &["service", "access", &tiny_card]);
    assert!(err.contains("signature does not verify"), "{err}");
}

#[test]
fn faulty_parties_during_store_are_named_or_tolerated() {
    let mut net = Net::new();
    let csv = net.cli.path("data.csv");
    write_csv(std::path::Path::new(&csv), 500);

    // A lying check opening: the owner reveals party 3's vector, party 3 is named, the store
    // goes on with the others.
    net.restart(3, Some("wrong-opening"));
    let v = net.store(&csv, "d1");
    assert_eq!(v["blamed"], serde_json::json!([3]), "{v}");
    assert_eq!(v["holders"], serde_json::json!([1, 2, 4]), "{v}");

    // Two different signed openings: equivocation evidence names party 2.
    net.restart(3, None);
    net.restart(2, Some("equivocate"));
    let v = net.store(&csv, "d2");
    assert_eq!(v["blamed"], serde_json::json!([2]), "{v}");
    assert!(!v["holders"].as_array().unwrap().contains(&2.into()), "{v}");
    // The honest parties keep the two signed openings as evidence.
    let session = v["session"].as_str().unwrap();
    for p in [1, 3, 4] {
        let s = net.status(p);
        assert!(
            s["evidence"].as_array().unwrap().contains(&session.into()),
            "party {p}: {s}"
        );
    }

    // A receipt for shares it was not sent: the owner refuses before any check, publishes
    // nothing, and says who holds the shares.
    net.restart(2, None);
    net.restart(4, Some("bad-receipt"));
    let err = net.cli.fails("owner", &net.store_args(&csv, "d3"));
    assert!(
        err.contains("party 4") && err.contains("wrong receipt"),
        "{err}"
    );
    assert!(err.contains("holding the shares: [1, 2, 3]"), "{err}");
    let list = net.cli.json("owner", &["owner", "list"]);
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "d3 was never published: {list}"
    );
}

/// The faults that make the others wait for a round's deadline (a silent party, messages
/// dropped to one peer), in a test of their own: each costs round timeouts.
#[test]
fn silent_parties_during_store_are_tolerated_and_reported() {
    let mut net = Net::new();
    let csv = net.cli.path("data.csv");
    write_csv(std::path::Path::new(&csv), 500);

    // A party that goes silent in the check is tolerated (t = 1) and reported.
    net.restart(4, Some("withhold"));
    let v = net.store(&csv, "d4");
    assert_eq!(v["silent"], serde_json::json!([4]), "{v}");
    assert_eq!(v["holders"], serde_json::json!([1, 2, 3]), "{v}");

    // Messages dropped to one peer: the others still agree.
    net.restart(4, None);
    net.restart(1, Some("drop-to:2"));
    let v = net.store(&csv, "d5");
    assert!(v["holders"].as_array().unwrap().len() >= 3, "{v}");
    assert_eq!(v["blamed"], serde_json::json!([]), "{v}");
    let list = net.cli.json("owner", &["owner", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

#[test]
fn a_party_killed_mid_store_holds_all_or_nothing_and_never_equivocates() {
    let mut net = Net::new();
    let csv = net.cli.path("data.csv");
    write_csv(std::path::Path::new(&csv), 2_000);
    for (party, fault, name) in [
        (2, "crash-before:receipt", "k1"),
        (3, "crash-before:check-send", "k2"),
        (4, "crash-after:check-send", "k3"),
        (1, "crash-after:receipt", "k4"),
    ] {
        net.restart(party, Some(fault));
        let mut owner = net
            .command("owner")
            .args(["--json"])
            .args(net.store_args(&csv, name))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let guard = scopeguard(&mut owner);
        // The faulty party dies (abort, like kill -9) at its step.
        let end = Instant::now() + WAIT;
        loop {
            let d = net.daemons[party - 1].as_mut().unwrap();
            if d.child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                Instant::now() < end,
                "party {party} did not crash at {fault}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Restart it honestly: whatever it holds of the dataset is whole (every row of every
        // column, in one transaction), never a part; then it takes the session up again.
        net.restart(party, None);
        for d in net.status(party)["datasets"].as_array().unwrap() {
            if d["name"] == name {
                assert_eq!(d["rows"], 2_000, "{fault}: {d}");
                assert_eq!(d["columns"], 7, "{fault}: {d}");
            }
        }
        if fault.ends_with(":check-send") || fault == "crash-after:receipt" {
            // Its receipt was signed before it died: the dataset was committed first.
            let held = net.datasets(party);
            assert!(held.iter().any(|d| d.0 == name), "{fault}: {held:?}");
        }
        let out = guard.wait();
        assert!(
            out.status.success(),
            "{fault}: store failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["blamed"],
            serde_json::json!([]),
            "{fault}: a restarted party is no equivocator: {v}"
        );
        assert!(
            v["holders"].as_array().unwrap().contains(&party.into()),
            "{fault}: {v}"
        );
        net.env.mine(1).unwrap();
        net.settle();
    }
}

/// Kills the child on drop unless waited for.
struct Guard<'a>(&'a mut Child, bool);

fn scopeguard(c: &mut Child) -> Guard<'_> {
    Guard(c, false)
}

impl Guard<'_> {
    fn wait(mut self) -> std::process::Output {
        let end = Instant::now() + Duration::from_secs(90);
        while self.0.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = self.0.kill();
                panic!("owner store did not finish in 90 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.1 = true;
        let mut out = std::process::Output {
            status: self.0.wait().unwrap(),
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        use std::io::Read;
        if let Some(mut s) = self.0.stdout.take() {
            s.read_to_end(&mut out.stdout).unwrap();
        }
        if let Some(mut s) = self.0.stderr.take() {
            s.read_to_end(&mut out.stderr).unwrap();
        }
        out
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if !self.1 {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
