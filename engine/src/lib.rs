//! The btcmpc off-chain engine.
//!
//! [`mpc`] is the pure cryptographic core, free of I/O: prime fields ([`mpc::field`]), signed
//! fixed point ([`mpc::fixed`]), Shamir sharing ([`mpc::shamir`]), the owner's dealing with its
//! batch degree check and complaint resolution ([`mpc::dealing`], [`mpc::check`]),
//! Berlekamp-Welch decoding that names culprits ([`mpc::decode`]) and evidence verifiable
//! offline ([`mpc::evidence`]); on top of them the query language, randomness, products,
//! evaluation and an in-process committee.
//!
//! A store and its check, then a robust opening with one wrong share:
//!
//! ```
//! use btcmpc_engine::mpc::check::{verify_openings, Challenge, CheckOutcome, STORE_CHECK_TAG};
//! use btcmpc_engine::mpc::dealing::{deal, receipts_root};
//! use btcmpc_engine::mpc::decode::{decode, Decode};
//! use btcmpc_engine::mpc::field::{PrimeField, Secp256k1Scalar as F};
//! use btcmpc_engine::mpc::fixed::{decode_decimal, encode_decimal, Scale};
//! use btcmpc_engine::mpc::round::PartyId;
//! use btcmpc_engine::mpc::shamir::{dealer_rng, Params};
//!
//! let params = Params::byzantine(4)?; // n = 4, t = 1
//! let column: Vec<F> = ["1.5", "-2.25", "10"]
//!     .iter()
//!     .map(|v| encode_decimal::<F>(v, Scale::UNIT))
//!     .collect::<Result<_, _>>()?;
//! let parties = deal(params, &[column], &mut dealer_rng());
//!
//! // Each party signs a receipt for what it got; the receipts fix the challenge.
//! let context = [0u8; 32]; // digest of the dataset's metadata
//! let receipts: Vec<[u8; 32]> = parties.iter().map(|p| p.receipt_hash(&context)).collect();
//! let challenge = Challenge::<F>::new(STORE_CHECK_TAG, &receipts_root(&receipts), 3);
//! let openings: Vec<(PartyId, F)> = parties
//!     .iter()
//!     .map(|p| Ok((p.index, challenge.opening(p)?)))
//!     .collect::<Result<_, btcmpc_engine::mpc::check::CheckError>>()?;
//! assert_eq!(verify_openings(params, &openings)?, CheckOutcome::Accepted);
//!
//! // Each party sums its shares locally; party 3 lies about its result.
//! let mut sums: Vec<(PartyId, F)> = parties
//!     .iter()
//!     .map(|p| (p.index, F::sum_slice(&p.columns[0])))
//!     .collect();
//! sums[2].1 += F::ONE;
//! match decode(params, &sums)? {
//!     Decode::Decoded { value, culprits } => {
//!         assert_eq!(decode_decimal(value, Scale::UNIT), "9.25");
//!         assert_eq!(culprits, [PartyId::new(3, 4)?]);
//!     }
//!     Decode::Inconsistent => unreachable!("one error is within the decoding radius"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod mpc;
pub mod node;
