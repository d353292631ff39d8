//! A committee of four `btcmpc party run` processes (t = 1) with bonds on the embedded regtest
//! chain, and a funded owner: what the multi-process tests share.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::{Address, Amount, Network};
use btcmpc_regtest::harness::TestEnv;
use btcmpc_regtest::ports::PortLease;
use serde_json::Value;

use super::Cli;

pub const WAIT: Duration = Duration::from_secs(30);
pub const PARTIES: [&str; 4] = ["p1", "p2", "p3", "p4"];

/// A `party run` process, killed when dropped (even when the test fails).
pub struct Daemon {
    pub child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Net {
    pub env: TestEnv,
    pub _dir: tempfile::TempDir,
    pub cli: Cli,
    pub manifest: String,
    pub daemons: Vec<Option<Daemon>>,
    /// The parties' endpoints, held until the daemons are gone.
    pub _ports: Vec<PortLease>,
}

/// A loopback port held for this test until the lease is dropped (see
/// [`btcmpc_regtest::ports`]: a port that was merely free a moment ago may be taken by a
/// parallel test before the daemon binds it).
pub fn lease_port() -> PortLease {
    PortLease::new().expect("a loopback port to lease")
}

impl Net {
    pub fn settle(&self) {
        self.env
            .wait_for_height(self.env.tip_height().unwrap(), WAIT)
            .unwrap();
    }

    pub fn fund(&self, who: &str) {
        self.cli.json(who, &["wallet", "create"]);
        self.fund_again(who);
    }

    /// Pays `who`'s existing wallet a coin of 1,000,000 sat (called again, so it can fund two
    /// things at once) and waits for it to confirm.
    pub fn fund_again(&self, who: &str) {
        let addr: Address = self.cli.json(who, &["wallet", "address"])["address"]
            .as_str()
            .unwrap()
            .parse::<Address<_>>()
            .unwrap()
            .require_network(Network::Regtest)
            .unwrap();
        self.env.fund(&addr, Amount::from_sat(1_000_000)).unwrap();
        self.settle();
    }

    /// Four bonded parties with a verified manifest, each daemon running, and a funded owner.
    pub fn new() -> Net {
        Net::with_bonds("100000sat", "100000sat")
    }

    /// As [`Net::new`], with a roster minimum of `min_bond` and bonds of `bond` each.
    pub fn with_bonds(min_bond: &str, bond: &str) -> Net {
        let env = TestEnv::new().expect("regtest chain starts");
        let dir = tempfile::tempdir().unwrap();
        let cli = Cli {
            electrum: env.electrum_url(),
            root: dir.path().to_path_buf(),
        };
        let mut net = Net {
            env,
            cli,
            _dir: dir,
            manifest: String::new(),
            daemons: Vec::new(),
            _ports: Vec::new(),
        };
        let mut cards = Vec::new();
        for p in PARTIES {
            net.fund(p);
            let lease = lease_port();
            let endpoint = format!("127.0.0.1:{}", lease.port());
            net._ports.push(lease);
            let v = net.cli.json(p, &["party", "init", "--endpoint", &endpoint]);
            cards.push(v["card"].as_str().unwrap().to_string());
        }
        net.fund("owner");
        let roster = net.cli.path("roster.json");
        let mut args = vec![
            "network",
            "roster",
            "--t",
            "1",
            "--min-bond",
            min_bond,
            "--out",
            &roster,
        ];
        args.extend(cards.iter().map(String::as_str));
        net.cli.json("p1", &args);
        for p in PARTIES {
            net.cli.json(p, &["party", "sign-roster", &roster]);
        }
        for p in PARTIES {
            net.cli.json(
                p,
                &["party", "bond", bond, "--exit", "+400", "--roster", &roster],
            );
        }
        net.env.mine(1).unwrap();
        net.settle();
        net.manifest = net.cli.path("manifest.json");
        let mut args = vec![
            "network",
            "manifest",
            "--roster",
            &roster,
            "--out",
            &net.manifest,
        ];
        args.extend(cards.iter().map(String::as_str));
        net.cli.json("p1", &args);
        for p in PARTIES {
            std::fs::copy(&net.manifest, net.cli.root.join(p).join("manifest.json")).unwrap();
        }
        for (i, p) in PARTIES.iter().enumerate() {
            let d = net.spawn(p, None);
            net.daemons.push(Some(d));
            net.wait_ready(i + 1);
        }
        net
    }

    pub fn command(&self, who: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_btcmpc"));
        c.arg("--datadir")
            .arg(self.cli.root.join(who))
            .arg("--electrum")
            .arg(&self.cli.electrum)
            .env_remove("BTCMPC_DATADIR")
            .env_remove("BTCMPC_NETWORK")
            .env_remove("BTCMPC_TESTING_FAULT");
        c
    }

    pub fn log(&self, who: &str) -> PathBuf {
        self.cli.root.join(format!("{who}.log"))
    }

    pub fn spawn(&self, who: &str, fault: Option<&str>) -> Daemon {
        self.spawn_with(who, fault, &[])
    }

    /// As [`Net::spawn`], with more `party run` arguments (replacing the defaults they name).
    pub fn spawn_with(&self, who: &str, fault: Option<&str>, extra: &[&str]) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log(who))
            .unwrap();
        let mut c = self.command(who);
        c.args(["-v", "party", "run"]);
        // Defaults the extra arguments do not set. Rounds wait 10 s: on a loaded 2-core machine
        // (two tests, eight daemons) an honest opening can take longer than 5 s to arrive.
        for (flag, value) in [
            ("--round-timeout", "10"),
            ("--acl-poll", "1"),
            ("--acl-min-conf", "1"),
        ] {
            if !extra.contains(&flag) {
                c.args([flag, value]);
            }
        }
        if let Some(f) = fault {
            c.args(["--testing-fault", f]);
        }
        c.args(extra);
        let child = c
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon { child }
    }

    /// Polls `party status` until the daemon answers.
    pub fn wait_ready(&self, party: usize) -> Value {
        let who = PARTIES[party - 1];
        let end = Instant::now() + WAIT;
        loop {
            let out = self.cli.run(who, &["--json", "party", "status"]);
            if out.status.success() {
                return serde_json::from_slice(&out.stdout).unwrap();
            }
            assert!(
                Instant::now() < end,
                "party {party} never answered: {}\nlog:\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(self.log(who)).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Replaces party `i`'s daemon with one committing `fault`.
    pub fn restart(&mut self, party: usize, fault: Option<&str>) {
        self.restart_with(party, fault, &[]);
    }

    /// As [`Net::restart`], with more `party run` arguments (replacing the defaults they name).
    pub fn restart_with(&mut self, party: usize, fault: Option<&str>, extra: &[&str]) {
        self.daemons[party - 1] = None;
        let d = self.spawn_with(PARTIES[party - 1], fault, extra);
        self.daemons[party - 1] = Some(d);
        self.wait_ready(party);
    }

    /// Whether party `who`'s `party jobs` lists a failed job whose reason holds every one of
    /// `words`.
    pub fn has_failed_job(&self, who: &str, words: &[&str]) -> bool {
        self.cli.json(who, &["party", "jobs"])["jobs"]
            .as_array()
            .is_some_and(|jobs| {
                jobs.iter().any(|j| {
                    j["state"] == "failed"
                        && j["reason"]
                            .as_str()
                            .is_some_and(|r| words.iter().all(|w| r.contains(w)))
                })
            })
    }

    pub fn status(&self, party: usize) -> Value {
        self.cli.json(PARTIES[party - 1], &["party", "status"])
    }

    pub fn datasets(&self, party: usize) -> Vec<(String, String)> {
        self.status(party)["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_string(),
                    d["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    pub fn store_args<'a>(&'a self, csv: &'a str, name: &'a str) -> Vec<&'a str> {
        vec![
            "owner",
            "store",
            csv,
            "--name",
            name,
            "--manifest",
            &self.manifest,
            "--party-timeout",
            "60",
        ]
    }

    pub fn store(&self, csv: &str, name: &str) -> Value {
        let v = self.cli.json("owner", &self.store_args(csv, name));
        self.env.mine(1).unwrap();
        self.settle();
        v
    }
}

impl Net {
    /// Stores a CSV of `rows` rows ([`write_csv`]) as `survey`, funds and initialises a
    /// `service`, grants it, and waits until every party reads the grant. Returns the
    /// dataset card's path.
    pub fn granted_dataset(&self, rows: usize) -> String {
        let csv = self.cli.path("data.csv");
        write_csv(std::path::Path::new(&csv), rows);
        self.grant_stored(&csv, &[])
    }

    /// Stores `csv` as dataset `survey`, funds and inits the service, grants it with the extra
    /// `owner grant` arguments, and waits until every party reads the grant; returns the card.
    pub fn grant_stored(&self, csv: &str, grant: &[&str]) -> String {
        self.store(csv, "survey");
        self.fund("service");
        let service = self.cli.json("service", &["service", "init"])["pubkey"]
            .as_str()
            .unwrap()
            .to_string();
        let card = self.cli.path("survey.card.json");
        self.cli
            .json("owner", &["owner", "export", "survey", "--out", &card]);
        let mut args = vec!["owner", "grant", "survey", &service];
        args.extend_from_slice(grant);
        self.cli.json("owner", &args);
        self.env.mine(1).unwrap();
        self.settle();
        let end = Instant::now() + WAIT;
        loop {
            let out = self
                .cli
                .run("service", &["--json", "service", "access", &card]);
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if v["parties"]
                .as_array()
                .is_some_and(|a| a.iter().all(|p| p["granted"] == true))
            {
                return card;
            }
            assert!(Instant::now() < end, "the grant was never read: {v}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `btcmpc --json service query CARD QUERY EXTRA...` as `service` with `env` set, mining a
    /// block every half second while it runs (at most 100 s); its output, success or not.
    pub fn query_output(
        &self,
        card: &str,
        query: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> std::process::Output {
        let mut args = vec!["--json", "service", "query", card, query];
        args.extend_from_slice(extra);
        self.run_mining("service", &args, env, Duration::from_secs(100))
    }

    /// [`Net::query_output`] that must succeed; its JSON report.
    pub fn query_json(
        &self,
        card: &str,
        query: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Value {
        let out = self.query_output(card, query, extra, env);
        assert!(
            out.status.success(),
            "service query {query:?} failed: {}\nparty 1 log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.log("p1")).unwrap_or_default()
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Runs `btcmpc` as `who` with `env` set, mining a block every half second while it runs
    /// (at most `limit`; killed after); returns its output.
    pub fn run_mining(
        &self,
        who: &str,
        args: &[&str],
        env: &[(&str, &str)],
        limit: Duration,
    ) -> std::process::Output {
        self.run_all_mining(&[(who, args)], env, limit)
            .pop()
            .expect("one run, one output")
    }

    /// Runs every `(who, args)` at once with `env` set, mining a block every half second until
    /// all have exited (at most `limit`; every one still running is killed after, and on any
    /// failure); their outputs, in order.
    pub fn run_all_mining(
        &self,
        runs: &[(&str, &[&str])],
        env: &[(&str, &str)],
        limit: Duration,
    ) -> Vec<std::process::Output> {
        struct Guard(Vec<Child>);
        impl Drop for Guard {
            fn drop(&mut self) {
                for c in &mut self.0 {
                    let _ = c.kill();
                    let _ = c.wait();
                }
            }
        }
        let mut g = Guard(Vec::new());
        for (who, args) in runs {
            let mut c = self.command(who);
            c.args(*args);
            for (k, v) in env {
                c.env(k, v);
            }
            let child = c
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            g.0.push(child);
        }
        let end = Instant::now() + limit;
        while g.0.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
            assert!(
                Instant::now() < end,
                "btcmpc {:?} did not finish in {limit:?}",
                runs.iter().map(|r| r.1).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(500));
            self.env.mine(1).unwrap();
        }
        use std::io::Read;
        g.0.iter_mut()
            .map(|c| {
                let (mut out, mut err) = (Vec::new(), Vec::new());
                c.stdout.take().unwrap().read_to_end(&mut out).unwrap();
                c.stderr.take().unwrap().read_to_end(&mut err).unwrap();
                std::process::Output {
                    status: c.wait().unwrap(),
                    stdout: out,
                    stderr: err,
                }
            })
            .collect()
    }
}

/// A CSV of `rows` rows with an integer column, a decimal column with gaps, a category and a
/// column with a declared range. Neither `income` nor `age` can be 0 (their ranges exclude
/// it), so the leakage rule counts their rows by presence alone: `sum(income)` and
/// `count(income)` rest on the same rows.
pub fn write_csv(path: &std::path::Path, rows: usize) -> (i64, usize) {
    let mut s = String::from("id,income,plan:cat,age:int:1..120\n");
    let mut sum = 0;
    let mut gaps = 0;
    for r in 0..rows {
        let income = if r % 7 == 3 {
            gaps += 1;
            String::new()
        } else {
            format!("{}.{}", r % 1000 + 1, r % 10)
        };
        let plan = ["free", "basic", "full"][r % 3];
        s.push_str(&format!("{r},{income},{plan},{}\n", 18 + r % 70));
        sum += r as i64;
    }
    std::fs::write(path, s).unwrap();
    (sum, gaps)
}
