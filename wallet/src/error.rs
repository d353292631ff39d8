//! Errors of the wallet crate.

use std::path::PathBuf;

use bitcoin::Amount;

/// What went wrong in a wallet operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// A wallet already exists in that directory.
    #[error("a wallet already exists in {0}")]
    AlreadyExists(PathBuf),
    /// No wallet in that directory.
    #[error("no wallet in {0} (run `btcmpc wallet create` first)")]
    NotFound(PathBuf),
    /// The mnemonic could not be parsed.
    #[error("invalid mnemonic: {0}")]
    Mnemonic(String),
    /// The database belongs to another network or another seed.
    #[error("wallet database {path} does not match: {reason}")]
    Mismatch {
        /// The database file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The wallet database failed.
    #[error("wallet database: {0}")]
    Database(String),
    /// The Electrum server could not be reached or answered with an error.
    #[error("electrum server {url}: {reason}")]
    Electrum {
        /// The server.
        url: String,
        /// The cause.
        reason: String,
    },
    /// The server refused a transaction.
    #[error("transaction {txid} refused by the server: {reason}")]
    Broadcast {
        /// The refused transaction.
        txid: bitcoin::Txid,
        /// The server's reject reason.
        reason: String,
    },
    /// An address is for another network.
    #[error("address {address} is not valid on {network}")]
    WrongNetwork {
        /// The address as given.
        address: String,
        /// The wallet's network.
        network: bitcoin::Network,
    },
    /// An address could not be parsed.
    #[error("invalid address {address}: {reason}")]
    Address {
        /// The address as given.
        address: String,
        /// Why.
        reason: String,
    },
    /// Not enough confirmed and unconfirmed coins.
    #[error("insufficient funds: needed {needed}, available {available}")]
    InsufficientFunds {
        /// What the transaction needs, fee included.
        needed: Amount,
        /// What the wallet can spend.
        available: Amount,
    },
    /// Building a transaction failed.
    #[error("cannot build transaction: {0}")]
    Build(String),
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(String),
    /// A contract spend could not be built, signed, finalized or verified.
    #[error(transparent)]
    Spend(#[from] btcmpc_contracts::SpendError),
    /// A contract cannot be used as asked (wrong kind, network, state or key).
    #[error("{0}")]
    Contract(String),
    /// A backup could not be read.
    #[error("backup {path}: {reason}")]
    Backup {
        /// The backup file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A fee rate the user did not choose (a server's estimate, an automatic bump) would pay
    /// more than the [`crate::FeePolicy`] allows. Nothing was signed.
    #[error("refusing a fee of {} sat at {rate} sat/vB not chosen by the user: above {bound} (give an explicit fee rate, e.g. --fee-rate, to pay it)", .fee.to_sat())]
    FeeTooHigh {
        /// The rate in sat/vB.
        rate: String,
        /// The fee the transaction would pay.
        fee: Amount,
        /// The bound it exceeds, in words.
        bound: String,
    },
    /// An Electrum connection without TLS off regtest, not allowed explicitly.
    #[error("electrum server {url}: refusing a plaintext (tcp) connection on {network}: use ssl://HOST:PORT, or allow plaintext explicitly (--allow-plaintext-electrum)")]
    PlaintextElectrum {
        /// The server as given.
        url: String,
        /// The wallet's network.
        network: bitcoin::Network,
    },
    /// The contract or transaction is not known to this wallet.
    #[error("{0}")]
    Unknown(String),
}

impl WalletError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WalletError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn db(err: impl std::fmt::Display) -> Self {
        WalletError::Database(err.to_string())
    }
}
