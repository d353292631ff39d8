//! `btcmpc bench committee` as a user runs it: four party processes on loopback, every workload
//! at 1,000 values; the command checks what every party opened against the clear computation
//! from the run's seed and says so in its JSON.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bound on the whole command (its party processes are told half of it).
const BOUND: Duration = Duration::from_secs(100);

#[test]
fn a_small_committee_run_opens_the_clear_results_in_both_fields() {
    for field in ["m127", "secp256k1"] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_btcmpc"))
            .args(["--json", "--datadir"])
            .arg(dir.path())
            .args(["bench", "committee", "--field", field, "--size", "1000"])
            .args(["--timeout", "45"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + BOUND;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= end {
                // The command kills its parties when it dies; they also stop on their own
                // timeout.
                let _ = child.kill();
                let _ = child.wait();
                panic!("bench committee --field {field} did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(status.success(), "{field}: {status}: {stderr}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["n"], 4);
        assert_eq!(v["t"], 1);
        let runs = v["runs"].as_array().unwrap();
        let names: Vec<&str> = runs
            .iter()
            .map(|r| r["workload"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["products", "dot", "input"]);
        for r in runs {
            assert_eq!(r["verified"], true, "{r}");
            let parties = r["parties"].as_array().unwrap();
            assert_eq!(parties.len(), 4);
            let digests: Vec<&Value> = parties.iter().map(|p| &p["opened_digest"]).collect();
            assert!(digests.iter().all(|d| *d == digests[0]), "{r}");
            assert!(parties.iter().all(|p| p["peak_rss_kib"].as_u64() > Some(0)));
        }
    }
}
