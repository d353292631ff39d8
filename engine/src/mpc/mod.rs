//! The pure MPC core: fields, fixed point, Shamir sharing, dealing and its batch check,
//! robust decoding and evidence. No I/O, no clock.

pub mod check;
pub mod csv;
pub mod dealing;
pub mod decode;
pub mod echo;
pub mod evidence;
pub mod field;
pub mod fixed;
pub mod prss;
pub mod query;
pub mod shamir;
