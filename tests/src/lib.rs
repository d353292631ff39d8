//! End-to-end scenarios of btcmpc across processes: party daemons, owners and services on the
//! embedded regtest node, real money flows, cheating parties, crashes and restarts.
//!
//! The scenarios arrive with the party node; until then the workspace's end-to-end coverage
//! lives in `cli/tests/` (the `btcmpc` binary against a regtest chain) and `wallet/tests/`.
