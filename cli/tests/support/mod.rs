//! Helpers shared by the CLI tests.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// No command of these tests may take longer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// Run a command to completion, killing it (and failing the test) after [`COMMAND_TIMEOUT`].
pub fn output_bounded(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if child.try_wait().expect("waiting on the child").is_some() {
            return child
                .wait_with_output()
                .expect("reading the child's output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `btcmpc` binary run as one user per datadir (`ROOT/WHO`) against one Electrum server.
#[allow(dead_code)] // not every test binary uses every helper
pub struct Cli {
    /// The Electrum server every command talks to.
    pub electrum: String,
    /// One datadir per user below it.
    pub root: PathBuf,
}

#[allow(dead_code)]
impl Cli {
    /// Run `btcmpc ARGS` as `who` (a clean environment: no `BTCMPC_*` from the caller).
    pub fn run(&self, who: &str, args: &[&str]) -> Output {
        output_bounded(
            Command::new(env!("CARGO_BIN_EXE_btcmpc"))
                .arg("--datadir")
                .arg(self.root.join(who))
                .arg("--electrum")
                .arg(&self.electrum)
                .args(args)
                .env_remove("BTCMPC_DATADIR")
                .env_remove("BTCMPC_NETWORK")
                .env_remove("BTCMPC_ALLOW_PLAINTEXT_ELECTRUM"),
        )
    }

    /// Run with `--json`, require success, return stdout as JSON.
    pub fn json(&self, who: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(who, &all);
        assert!(
            out.status.success(),
            "btcmpc {args:?} as {who} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("--json prints one JSON document")
    }

    /// Run, require failure with exit code 1 and a one-line error; return it.
    pub fn fails(&self, who: &str, args: &[&str]) -> String {
        let out = self.run(who, args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "btcmpc {args:?} should fail: {out:?}"
        );
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert_eq!(err.lines().count(), 1, "one-line error expected: {err}");
        err
    }

    /// A path below the root, as a string for an argument.
    pub fn path(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }
}
pub mod net;
