//! One module per command group; each has an `Args` and a `run`.

pub mod bench;
pub mod contract;
pub mod contract_chain;
pub mod demo;
pub mod network;
pub mod owner;
pub mod party;
pub mod regtest;
pub mod service;
pub mod wallet;

/// The async runtime every command that talks to parties runs on: two worker threads, so a
/// socket task or a keepalive runs beside a busy handler.
///
/// # Errors
/// When the runtime cannot start.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
