//! The party node: the only part of the engine that touches sockets and disk. The pure
//! protocol logic lives in [`crate::mpc`], which never imports this module.
//!
//! Committee setup (PROTOCOL.md, "Network and committee"): signed party cards ([`card`]), the
//! roster every party signs ([`roster`]), bonds and the manifest checked against the chain
//! ([`manifest`], [`chain`]); access control on chain ([`acl`], [`acl_ops`]).

pub mod acl;
pub mod acl_ops;
pub mod card;
pub mod chain;
pub mod manifest;
pub mod roster;
