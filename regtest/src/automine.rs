//! The background miner of [`crate::node::Automine`]: a driver thread beside the chain code
//! that mines on the node when its mode says a block is due.

use std::time::{Duration, Instant};

use tracing::warn;

use crate::node::{Automine, AutomineMode, WeakNode};

/// How often the miner looks at the mempool.
const POLL: Duration = Duration::from_millis(50);

/// Starts the mining thread; it ends when the node is shut down or dropped.
pub(crate) fn spawn(node: WeakNode, automine: Automine) {
    let spawned = std::thread::Builder::new().name("regtest-automine".into()).spawn(move || {
        let mut since: Option<Instant> = None;
        let mut last = Instant::now();
        loop {
            std::thread::sleep(POLL);
            let Some(node) = node.upgrade() else { return };
            if node.is_shut_down() {
                return;
            }
            let due = match &automine.mode {
                AutomineMode::OnTransaction { delay } => {
                    if node.read().mempool.txs.is_empty() {
                        since = None;
                        false
                    } else {
                        let start = *since.get_or_insert_with(Instant::now);
                        start.elapsed() >= *delay
                    }
                }
                AutomineMode::Interval(every) => last.elapsed() >= *every,
            };
            if due {
                since = None;
                last = Instant::now();
                if let Err(e) = node.generate_to_script(1, &automine.script_pubkey) {
                    warn!(target: "btcmpc_regtest::automine", error = %e, "automatic mining failed");
                }
            }
        }
    });
    if let Err(e) = spawned {
        warn!(target: "btcmpc_regtest::automine", error = %e, "cannot start the automatic miner");
    }
}
