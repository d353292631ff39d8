//! The wallet every btcmpc role uses: a BDK wallet (BIP86 taproot, SQLite) over Electrum.
//!
//! - [`RoleWallet`] creates, restores and opens a wallet in a directory (mnemonic file with
//!   0600 permissions, `wallet.sqlite` holding BDK's state and ours), syncs it over Electrum,
//!   sends, and derives contract keys on a dedicated hardened path outside the BIP86 keychains
//!   ([`keys::CONTRACT_PURPOSE`]), so every contract key is recoverable from the mnemonic.
//! - [`ChainClient`] is the Electrum connection: tip, history of a script, fee estimates with a
//!   floor, broadcast with the server's reject reason.
//! - [`FeePolicy`] bounds every fee the user did not choose (server estimates, automatic bumps):
//!   an absolute cap and a bound relative to the amount moved, checked before signing.
//!
//! ```no_run
//! # fn main() -> Result<(), btcmpc_wallet::WalletError> {
//! use btcmpc_wallet::{ChainClient, RoleWallet};
//! let dir = std::path::Path::new("/tmp/alice");
//! let (mut wallet, _mnemonic) = RoleWallet::create(dir, bitcoin::Network::Regtest, None)?;
//! let chain = ChainClient::connect("tcp://127.0.0.1:60401", std::time::Duration::from_secs(5))?;
//! wallet.sync(&chain)?;
//! println!("{}", wallet.next_address()?);
//! # Ok(()) }
//! ```

mod backup;
mod contracts;
mod electrum;
mod error;
mod fee;
pub mod fs;
pub mod keys;
mod store;
mod wallet;
mod watch;

pub use backup::{Backup, ContractKey, PendingSpend};
pub use contracts::{
    contract_name, contract_status, preimage_in_witness, ClaimRules, ContractStatus, EscrowPromise,
    FundingStatus, OutputStatus, SpendStatus,
};
pub use electrum::{check_transport, ChainClient, HistoryEntry, DEFAULT_TIMEOUT};
pub use error::{
    BackupError, BuildError, ContractError, FeeBound, KeyRole, MismatchError, Rejection,
    ServerError, SignError, StorageError, WalletError,
};
pub use fee::{
    FeeChoice, FeePolicy, CONTRACT_TARGET, DEFAULT_FEE_POLICY, FEE_FLOOR, PAYMENT_TARGET,
};
pub use store::{BroadcastKind, BroadcastRecord, ContractRecord};
pub use wallet::{
    move_aside, ExistingDatabase, HistoryItem, RoleWallet, SyncReport, MAX_CLAIM_FEE_RATE,
    MNEMONIC_FILE, REORG_SAFETY,
};
pub use watch::{WatchEvent, Watcher};

pub use bdk_wallet::keys::bip39::Mnemonic;
