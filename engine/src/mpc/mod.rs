//! The pure MPC core: fields, fixed point, Shamir sharing, dealing and its batch check,
//! robust decoding and evidence. No I/O, no clock.

pub mod check;
pub mod dealing;
pub mod decode;
pub mod evidence;
pub mod field;
pub mod fixed;
pub mod shamir;
