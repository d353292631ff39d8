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
