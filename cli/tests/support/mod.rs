//! Helpers shared by the CLI tests.

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
