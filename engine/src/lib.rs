//! The btcmpc off-chain engine.
//!
//! [`mpc`] is the pure cryptographic core: prime fields ([`mpc::field`]), signed fixed point
//! ([`mpc::fixed`]), Shamir sharing ([`mpc::shamir`]), the owner's dealing with its batch degree
//! check and complaint resolution ([`mpc::dealing`], [`mpc::check`]), Berlekamp-Welch decoding
//! that names culprits ([`mpc::decode`]) and evidence verifiable offline ([`mpc::evidence`]).

pub mod mpc;
