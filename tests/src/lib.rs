//! End-to-end scenarios of btcmpc that use the library alone, as another Rust program would
//! embed the roles (no `btcmpc` binary): `tests/library.rs` runs a bonded committee of four
//! party daemons, an owner storing a CSV with gaps and granting a service on chain, and the
//! service paying for a query and getting the answer, on the regtest harness.
//!
//! The scenarios that drive the `btcmpc` binary across processes (kills, restarts, cheating
//! parties, the demo) live in `cli/tests/`, because Cargo gives the binary's path only to the
//! tests of the package that builds it.
