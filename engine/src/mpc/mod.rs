//! The pure MPC core: fields, fixed point, Shamir sharing, dealing and its batch check,
//! robust decoding and evidence, and the protocols as round-based machines ([`round`]). No I/O,
//! no thread, no clock.

pub mod check;
#[cfg(any(test, feature = "test-support"))]
pub mod committee;
pub mod compare;
pub mod csv;
pub mod dealing;
pub mod decode;
pub mod echo;
pub mod eval;
pub mod evidence;
pub mod field;
pub mod fixed;
pub mod mult;
pub mod prss;
pub mod query;
pub mod round;
pub mod setup;
pub mod shamir;
pub mod sig;
