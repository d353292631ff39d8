//! btcmpc's Bitcoin contracts: the Miniscript policies of the protocol (job escrow, party bond,
//! dataset anchor) and any user policy compiled to descriptors; a transaction builder for
//! every spend path; per-input PSBT signing and finalizing; and Bitcoin Core's script
//! interpreter as the last check of every spend.
//!
//! Pure: no network, no disk, no clock. Heights, fee rates, keys and randomness come in as
//! arguments.
//!
//! ```
//! use bitcoin::hashes::{sha256, Hash};
//! use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
//! use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, TxOut};
//! use btcmpc_contracts::{sign_input, ClaimOrRefund, Contract, Height, InternalKey, Utxo};
//!
//! let secp = Secp256k1::new();
//! let receiver = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[1; 32])?);
//! let sender = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[2; 32])?);
//! let k = [42u8; 32];
//! let escrow = Contract::ClaimOrRefund(ClaimOrRefund {
//!     receiver: receiver.public_key(),
//!     sender: sender.public_key(),
//!     hash: sha256::Hash::hash(&k),
//!     timeout: Height::new(800)?,
//!     internal_key: InternalKey::NumsTweaked { r: SecretKey::from_slice(&[3; 32])? },
//! })
//! .compile()?;
//!
//! // The funding output, as the wallet would report it.
//! let utxo = Utxo {
//!     outpoint: OutPoint::null(),
//!     txout: TxOut { value: Amount::from_sat(50_000), script_pubkey: escrow.script_pubkey().clone() },
//! };
//! let to = ScriptBuf::new_p2tr(&secp, receiver.x_only_public_key().0, None);
//! let (mut psbt, summary) = escrow.build_claim(&utxo, &k, to, FeeRate::from_sat_per_vb(2).unwrap())?;
//! sign_input(&mut psbt, 0, &receiver)?;
//! let tx = escrow.finalize_and_verify(psbt)?; // refused unless Core's interpreter accepts it
//! assert_eq!(tx.output[0].value, Amount::from_sat(50_000) - summary.fee);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod contract;
mod error;
mod file;
mod height;
mod keys;
mod locks;
mod policy;
mod slash;
mod spend;
mod verify;
mod witness;

pub use contract::{
    Anchor, Bond, ClaimOrRefund, CompiledContract, Contract, Leaf, PathKind, SpendPath,
};
pub use error::{Error, FileError, SpendError, VerifyError};
pub use file::{spend_path_json, ContractFile, FILE_VERSION};
pub use height::Height;
pub use keys::{nums_h, parse_hash, parse_key, parse_scalar, InternalKey, NUMS_H};
pub use locks::{
    check_after, check_locks_in, check_older, AbsoluteLock, Lock, RelativeLock, LOCKTIME_THRESHOLD,
    MAX_MINISCRIPT_LOCK, SEQUENCE_COUNT_MASK, SEQUENCE_TYPE_FLAG,
};
pub use policy::{compile_policy, CompiledPolicy, PolicyPath, Target};
pub use slash::{
    compare_unsigned, decode_carrier, encode_carrier, SlashSummary, SlashTerms, TxDifference,
    CARRIER_VERSION, MAX_CARRIER_LEN,
};
pub use spend::{
    combine, estimated_weight, finalize_and_verify, finalize_input, sign_input,
    sign_input_with_secret_key, FeeInput, Funding, SpendSummary, Utxo, MAX_RECORD_LEN,
};
pub use verify::{verify_spend, CONSENSUS_FLAGS};
pub use witness::{key_path_witness_weight, SigSizes};

pub use bitcoin;
pub use miniscript;
