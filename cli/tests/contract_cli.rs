//! `btcmpc contract compile|new` and `btcmpc bench contracts` as a user runs them: JSON
//! shapes of CLI.md, files that load back, one-line errors with exit code 1, and clap usage
//! errors with exit code 2.

use std::path::Path;
use std::process::{Command, Output};

use btcmpc_contracts::ContractFile;
use serde_json::Value;

const A: &str = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";
const B: &str = "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9";
const C: &str = "02e493dbf1c10d80f3581e4904930b1404cc6c13900ee0758474fa94abe8c4cd13";
const D: &str = "022f8bde4d1a07209355b4a7250a5c5128e88b84bddc619ab7cba8d569b240efe4";
const HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

mod support;

fn btcmpc(datadir: &Path, args: &[&str]) -> Output {
    support::output_bounded(
        Command::new(env!("CARGO_BIN_EXE_btcmpc"))
            .arg("--datadir")
            .arg(datadir)
            .args(args)
            .env_remove("BTCMPC_NETWORK")
            .env_remove("BTCMPC_DATADIR"),
    )
}

fn json_ok(datadir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = btcmpc(datadir, &all);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

/// A refused command: exit code 1 and one line on stderr starting with `error:`.
fn refused(datadir: &Path, args: &[&str]) -> String {
    let out = btcmpc(datadir, args);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line for {args:?}: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_owned()
}

#[test]
fn compile_prints_descriptor_address_and_paths() {
    let dir = tempfile::tempdir().unwrap();
    let policy = format!("or(and(pk({A}),sha256({HASH})),and(pk({B}),after(1000)))");
    let v = json_ok(dir.path(), &["contract", "compile", &policy]);
    let desc = v["descriptor"].as_str().unwrap();
    assert!(
        desc.starts_with("tr(0250929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0,{"),
        "{desc}"
    );
    assert!(v["address"].as_str().unwrap().starts_with("bcrt1p"));
    let paths = v["spend_paths"].as_array().unwrap();
    assert_eq!(paths.len(), 2);
    for p in paths {
        assert!(p["witness_size"].as_u64().unwrap() > 64);
        assert!(p["miniscript"].as_str().unwrap().starts_with("and_v(v:pk("));
    }

    let v = json_ok(
        dir.path(),
        &[
            "--network",
            "bitcoin",
            "contract",
            "compile",
            "--wsh",
            &policy,
        ],
    );
    assert!(v["descriptor"]
        .as_str()
        .unwrap()
        .starts_with("wsh(andor(pk("));
    assert!(v["address"].as_str().unwrap().starts_with("bc1q"));
    assert!(v["script_size"].as_u64().unwrap() > 70);

    // Text output for people.
    let out = btcmpc(dir.path(), &["contract", "compile", &format!("pk({A})")]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("descriptor  tr(") && text.contains("spend paths:"),
        "{text}"
    );
}

#[test]
fn new_claim_or_refund_writes_a_file_that_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let v = json_ok(
        dir.path(),
        &[
            "contract",
            "new",
            "claim-or-refund",
            "--receiver",
            A,
            "--sender",
            B,
            "--hash",
            HASH,
            "--timeout",
            "1000",
        ],
    );
    let file = Path::new(v["file"].as_str().unwrap());
    assert!(file.starts_with(dir.path().join("contracts")), "{file:?}");
    let loaded = ContractFile::from_json(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(
        loaded.compiled().descriptor().to_string(),
        v["descriptor"].as_str().unwrap()
    );
    assert_eq!(
        loaded
            .compiled()
            .address(bitcoin::Network::Regtest)
            .to_string(),
        v["address"].as_str().unwrap()
    );
    let names: Vec<&str> = v["spend_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["claim", "refund"]);
    assert_eq!(v["spend_paths"][1]["after"], 1000);

    // A fresh r each time: same parameters, unlinkable addresses.
    let again = json_ok(
        dir.path(),
        &[
            "contract",
            "new",
            "claim-or-refund",
            "--receiver",
            A,
            "--sender",
            B,
            "--hash",
            HASH,
            "--timeout",
            "1000",
        ],
    );
    assert_ne!(again["address"], v["address"]);

    // Never overwrites.
    let out = dir.path().join("fixed.json");
    let args = [
        "contract",
        "new",
        "anchor",
        "--key",
        A,
        "--out",
        out.to_str().unwrap(),
    ];
    json_ok(dir.path(), &args);
    let e = refused(dir.path(), &args);
    assert!(e.contains("cannot create contract file"), "{e}");
}

#[test]
fn new_bond_and_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let judges = format!("2,{B},{C},{D}");
    let v = json_ok(
        dir.path(),
        &[
            "contract", "new", "bond", "--party", A, "--judges", &judges, "--exit", "5000",
        ],
    );
    assert!(v["descriptor"].as_str().unwrap().contains(",multi_a(2,"));
    assert_eq!(v["kind"], "bond");
    let f = ContractFile::from_json(&std::fs::read_to_string(v["file"].as_str().unwrap()).unwrap())
        .unwrap();
    assert_eq!(f.compiled().spend_paths().len(), 2);

    let v = json_ok(
        dir.path(),
        &[
            "--network",
            "signet",
            "contract",
            "new",
            "anchor",
            "--key",
            A,
        ],
    );
    assert!(v["descriptor"]
        .as_str()
        .unwrap()
        .starts_with(&format!("tr({A})")));
    assert!(v["address"].as_str().unwrap().starts_with("tb1p"));
}

#[test]
fn bad_input_gives_one_line_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = refused(d, &["contract", "compile", "or(pk(nope)"]);
    assert!(e.starts_with("error: policy:"), "{e}");
    let e = refused(
        d,
        &["contract", "compile", &format!("and(pk({A}),pk({A}))")],
    );
    assert!(e.starts_with("error: policy:"), "{e}");

    let base = |receiver: &str, hash: &str, timeout: &str| -> String {
        refused(
            d,
            &[
                "contract",
                "new",
                "claim-or-refund",
                "--receiver",
                receiver,
                "--sender",
                B,
                "--hash",
                hash,
                "--timeout",
                timeout,
            ],
        )
    };
    let e = base("02abcd", HASH, "1000");
    assert!(
        e.starts_with("error: --receiver: invalid public key"),
        "{e}"
    );
    let e = base(A, &HASH[..62], "1000");
    assert!(
        e.starts_with("error: --hash:") && e.contains("31 bytes"),
        "{e}"
    );
    let e = base(A, HASH, "0");
    assert!(e.starts_with("error: --timeout:"), "{e}");
    let e = base(A, HASH, "500000000");
    assert!(e.starts_with("error: --timeout:"), "{e}");
    let e = base(A, HASH, "+144");
    assert!(e.contains("needs a chain connection"), "{e}");

    let e = refused(
        d,
        &[
            "contract",
            "new",
            "bond",
            "--party",
            A,
            "--judges",
            &format!("4,{B},{C}"),
            "--exit",
            "10",
        ],
    );
    assert!(e.starts_with("error: k: threshold 4"), "{e}");
    let e = refused(
        d,
        &[
            "contract",
            "new",
            "bond",
            "--party",
            A,
            "--judges",
            &format!("{B},{C}"),
            "--exit",
            "10",
        ],
    );
    assert!(e.starts_with("error: --judges:"), "{e}");
    let e = refused(
        d,
        &[
            "contract",
            "new",
            "bond",
            "--party",
            A,
            "--judges",
            &format!("1,{A}"),
            "--exit",
            "10",
        ],
    );
    assert!(e.contains("cannot judge its own bond"), "{e}");
    // Nothing was written by the refused commands.
    assert!(!d.join("contracts").exists());
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = btcmpc(
        dir.path(),
        &["contract", "new", "claim-or-refund", "--receiver", A],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = btcmpc(
        dir.path(),
        &["contract", "compile", "pk(x)", "--wsh", "--tr"],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = btcmpc(dir.path(), &["contract", "fund"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_contracts_prints_a_row_per_path() {
    let dir = tempfile::tempdir().unwrap();
    let v = json_ok(dir.path(), &["bench", "contracts", "--seconds", "0.1"]);
    let rows = v["paths"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["claim", "refund", "exit", "slash 2-of-3", "anchor extend"]
    );
    for r in rows {
        assert!(r["spends"].as_u64().unwrap() >= 1, "{r}");
    }
}

/// Lock values: the boundary values Bitcoin Core accepts compile, the first value beyond is
/// refused in one line naming the value and the rule, and nothing is printed or written.
#[test]
fn lock_values_outside_cores_rules_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The reported case.
    let e = refused(
        d,
        &[
            "contract",
            "compile",
            "--wsh",
            &format!("thresh(2,pk({A}),pk({B}),after(2147483648))"),
        ],
    );
    assert!(
        e.starts_with("error: policy: after(2147483648) is refused: Bitcoin Core's Miniscript accepts after(n) for 1 <= n < 2147483648"),
        "{e}"
    );
    for (lock, ok) in [
        ("after(1)", true),
        ("after(0)", false),
        ("after(499999999)", true),
        ("after(500000000)", true),
        ("after(2147483647)", true),
        ("after(2147483648)", false),
        ("after(4294967296)", false),
        ("older(1)", true),
        ("older(0)", false),
        ("older(65535)", true),
        ("older(65536)", false),
        ("older(4194305)", true),
        ("older(4194304)", false),
        ("older(4259839)", true),
        ("older(4259840)", false),
        ("older(2147483648)", false),
    ] {
        for target in ["--tr", "--wsh"] {
            let policy = format!("or(pk({A}),and(pk({B}),{lock}))");
            let args = ["contract", "compile", target, policy.as_str()];
            if ok {
                let v = json_ok(d, &args);
                assert_eq!(v["locks"][0]["lock"], lock, "{v}");
                let desc = v["descriptor"].as_str().unwrap();
                assert!(desc.contains(lock), "{desc}");
            } else {
                let e = refused(d, &args);
                assert!(e.contains(&format!("policy: {lock} is refused: ")), "{e}");
            }
        }
    }
    // A height with a time lock in one spend can never be satisfied: refused by the compiler.
    let e = refused(
        d,
        &[
            "contract",
            "compile",
            &format!("and(pk({A}),and(after(100),after(500000001)))"),
        ],
    );
    assert!(e.starts_with("error: policy:"), "{e}");

    // Contract heights: 499,999,999 is the last block height; 500,000,000 would be a time.
    let new = |flag_value: &str, out: &str| {
        btcmpc(
            d,
            &[
                "contract",
                "new",
                "claim-or-refund",
                "--receiver",
                A,
                "--sender",
                B,
                "--hash",
                HASH,
                "--timeout",
                flag_value,
                "--out",
                d.join(out).to_str().unwrap(),
            ],
        )
    };
    assert!(new("499999999", "last.json").status.success());
    for bad in ["500000000", "0", "4294967296"] {
        let out = new(bad, "bad.json");
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("error: --timeout: height \"{bad}\"")),
            "{err}"
        );
        assert!(!d.join("bad.json").exists());
    }
    let out = btcmpc(
        d,
        &[
            "contract",
            "new",
            "bond",
            "--party",
            A,
            "--judges",
            &format!("1,{B}"),
            "--exit",
            "500000000",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: --exit: height \"500000000\""));
}

/// The reported witness sizes (wsh): the largest witness of any spend, in weight units.
#[test]
fn compile_prints_exact_threshold_witness_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for (policy, size) in [
        (format!("thresh(2,pk({A}),pk({B}),after(100))"), 234),
        (format!("thresh(2,pk({A}),pk({B}),pk({C}),after(100))"), 272),
        (format!("thresh(1,pk({A}),and(pk({B}),after(100)))"), 158),
    ] {
        let v = json_ok(dir.path(), &["contract", "compile", "--wsh", &policy]);
        assert_eq!(v["spend_paths"][0]["witness_size"], size, "{policy}: {v}");
    }
}

/// Every descriptor `contract compile` and `contract new` print is one Bitcoin Core accepts:
/// `getdescriptorinfo` agrees on the checksum and `deriveaddresses` on the address. Core
/// also refuses the first lock value beyond its range, as we do. Needs a real bitcoind
/// (`BITCOIND_EXE`, see `scripts/build-core`); says so and passes without.
#[test]
fn core_accepts_every_descriptor_we_print() {
    use btcmpc_regtest::harness::TestEnv;
    use serde_json::json;
    let Some(exe) = std::env::var_os("BITCOIND_EXE").filter(|v| !v.is_empty()) else {
        eprintln!("skipping core_accepts_every_descriptor_we_print: set BITCOIND_EXE");
        return;
    };
    let env = TestEnv::real_bitcoind_only(std::path::Path::new(&exe)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut printed: Vec<(String, String)> = Vec::new();
    let h = "ab".repeat(32);
    for policy in [
        format!("pk({A})"),
        format!("or(pk({A}),and(pk({B}),after(2147483647)))"),
        format!("or(pk({A}),and(pk({B}),after(499999999)))"),
        format!("or(pk({A}),and(pk({B}),after(500000000)))"),
        format!("or(pk({A}),and(pk({B}),older(65535)))"),
        format!("or(pk({A}),and(pk({B}),older(4259839)))"),
        format!("thresh(2,pk({A}),pk({B}),after(100))"),
        format!("thresh(2,pk({A}),pk({B}),pk({C}),after(100))"),
        format!("thresh(1,pk({A}),and(pk({B}),after(100)))"),
        format!("or(and(pk({A}),sha256({h})),and(pk({B}),after(1000)))"),
        format!("thresh(3,pk({A}),pk({B}),pk({C}),pk({D}))"),
    ] {
        for target in ["--tr", "--wsh"] {
            let v = json_ok(
                d,
                &[
                    "--network",
                    "regtest",
                    "contract",
                    "compile",
                    target,
                    &policy,
                ],
            );
            printed.push((
                v["descriptor"].as_str().unwrap().to_owned(),
                v["address"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for args in [
        vec![
            "claim-or-refund",
            "--receiver",
            A,
            "--sender",
            B,
            "--hash",
            HASH,
            "--timeout",
            "499999999",
        ],
        vec![
            "bond",
            "--party",
            A,
            "--judges",
            &format!("2,{B},{C},{D}")[..],
            "--exit",
            "1",
        ],
        vec!["anchor", "--key", A],
    ] {
        let mut all = vec!["contract", "new"];
        all.extend(args);
        let v = json_ok(d, &all);
        printed.push((
            v["descriptor"].as_str().unwrap().to_owned(),
            v["address"].as_str().unwrap().to_owned(),
        ));
    }
    for (desc, address) in &printed {
        let (_, checksum) = desc.split_once('#').expect("printed with a checksum");
        let info = env
            .rpc()
            .call("getdescriptorinfo", &[json!(desc)])
            .unwrap_or_else(|e| panic!("Core refuses {desc}: {e}"));
        assert_eq!(info["checksum"], checksum, "{desc}: {info}");
        let derived = env
            .rpc()
            .call("deriveaddresses", &[json!(desc)])
            .unwrap_or_else(|e| panic!("Core cannot derive {desc}: {e}"));
        assert_eq!(derived, json!([address]), "{desc}");
    }
    // Core's own range, seen from Core: 2^31 is refused, in after() and older().
    for bad in [
        format!("wsh(or_d(pk({A}),and_v(v:pk({B}),after(2147483648))))"),
        format!("wsh(or_d(pk({A}),and_v(v:pk({B}),older(2147483648))))"),
        format!("wsh(or_d(pk({A}),and_v(v:pk({B}),after(0))))"),
    ] {
        assert!(
            env.rpc().call("getdescriptorinfo", &[json!(bad)]).is_err(),
            "Core accepted {bad}"
        );
    }
    // Where we are stricter than Core (BIP68 bits consensus ignores): Core parses older(65536),
    // whose lock is 0 blocks; we refuse it (see lock_values_outside_cores_rules_are_refused).
    let lax = format!("wsh(or_d(pk({A}),and_v(v:pk({B}),older(65536))))");
    assert!(env.rpc().call("getdescriptorinfo", &[json!(lax)]).is_ok());
}
