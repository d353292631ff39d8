//! The party node: the only part of the engine that touches sockets and disk. The pure
//! protocol logic lives in [`crate::mpc`], which never imports this module.

pub mod frame;
pub mod noise;
pub mod store;
pub mod transport;
