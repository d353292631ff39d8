//! The party node: the only part of the engine that touches sockets and disk. The pure
//! protocol logic lives in [`crate::mpc`], which never imports this module.
//!
//! Transport and storage: binary frames ([`frame`]), Noise channels with pinned static keys
//! ([`noise`], [`transport`]) and the party's SQLite store ([`store`]).
//!
//! Committee setup (PROTOCOL.md, "Network and committee"): signed party cards ([`card`]), the
//! roster every party signs ([`roster`]), bonds and the manifest checked against the chain
//! ([`manifest`], [`chain`]); access control on chain ([`acl`], [`acl_ops`]).

pub mod access;
pub mod acl;
pub mod acl_ops;
pub mod bench;
pub mod card;
pub mod chain;
pub mod fault;
pub mod frame;
pub mod job;
pub mod judge;
pub mod manifest;
pub mod noise;
pub mod owner;
pub mod paid;
pub mod party;
pub mod peer;
pub mod roster;
pub mod service;
pub mod settle;
pub mod store;
pub mod transport;
pub mod wire;
