//! Errors of the wallet crate: [`WalletError`], with one typed error per operation that can
//! fail in several ways ([`StorageError`], [`BuildError`], [`SignError`], [`ContractError`],
//! [`BackupError`], [`MismatchError`], [`ServerError`]) and the server's classified refusal of a
//! broadcast ([`Rejection`]).
//!
//! Every message is one line and names its cause: a variant wrapping another error (a SQLite,
//! BDK, Electrum or parse error) prints that error's text after its own and also returns it from
//! [`std::error::Error::source`], so a caller can inspect the cause without parsing text. A
//! printer of whole chains should skip a cause whose text its parent already shows (the CLI
//! does).

use std::path::PathBuf;

use bdk_electrum::electrum_client;
use bdk_wallet::rusqlite;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, FeeRate, OutPoint, Txid};
use btcmpc_contracts::PathKind;

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
    /// The mnemonic could not be parsed (word count, unknown word, checksum).
    #[error("invalid mnemonic: {0}")]
    Mnemonic(#[source] bdk_wallet::keys::bip39::Error),
    /// The master key could not be derived from the mnemonic's seed (BIP32 master derivation
    /// fails only with negligible probability).
    #[error("cannot derive the master key from the mnemonic: {0}")]
    MasterKey(#[source] bitcoin::bip32::Error),
    /// The database belongs to another network or another seed.
    #[error("wallet database {path} does not match: {source}")]
    Mismatch {
        /// The database file.
        path: PathBuf,
        /// What differs.
        #[source]
        source: MismatchError,
    },
    /// Reading or writing a file, or the wallet database, failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The Electrum server could not be reached or answered with an error.
    #[error("electrum server {url}: {source}")]
    Electrum {
        /// The server.
        url: String,
        /// The cause.
        #[source]
        source: ServerError,
    },
    /// The server refused a transaction.
    #[error("transaction {txid} refused by the server: {message}")]
    Broadcast {
        /// The refused transaction.
        txid: Txid,
        /// The refusal, classified ([`Rejection::classify`]).
        rejection: Rejection,
        /// The server's reject text, as it sent it.
        message: String,
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
    #[error("invalid address {address}: {source}")]
    Address {
        /// The address as given.
        address: String,
        /// Why.
        #[source]
        source: bitcoin::address::ParseError,
    },
    /// Not enough confirmed and unconfirmed coins.
    #[error("insufficient funds: needed {needed}, available {available}")]
    InsufficientFunds {
        /// What the transaction needs, fee included.
        needed: Amount,
        /// What the wallet can spend.
        available: Amount,
    },
    /// Building a transaction from the wallet's coins failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Signing the wallet's inputs failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// A contract spend could not be built, signed, finalized or verified.
    #[error(transparent)]
    Spend(#[from] btcmpc_contracts::SpendError),
    /// A contract cannot be used as asked (wrong kind, network, state or key), or a contract
    /// or transaction is not known to this wallet.
    #[error(transparent)]
    Contract(#[from] ContractError),
    /// A backup could not be written or read.
    #[error("backup {path}: {source}")]
    Backup {
        /// The backup file.
        path: PathBuf,
        /// Why.
        #[source]
        source: BackupError,
    },
    /// A fee rate the user did not choose (a server's estimate, an automatic bump) would pay
    /// more than the [`crate::FeePolicy`] allows. Nothing was signed.
    #[error("refusing a fee of {} sat at {} sat/vB not chosen by the user: above {bound} (give an explicit fee rate, e.g. --fee-rate, to pay it)", .fee.to_sat(), crate::fee::sat_per_vb(*.rate))]
    FeeTooHigh {
        /// The rate.
        rate: FeeRate,
        /// The fee the transaction would pay.
        fee: Amount,
        /// The bound it exceeds.
        bound: FeeBound,
    },
    /// An Electrum connection without TLS off regtest, not allowed explicitly.
    #[error("electrum server {url}: refusing a plaintext (tcp) connection on {network}: use ssl://HOST:PORT, or allow plaintext explicitly (--allow-plaintext-electrum)")]
    PlaintextElectrum {
        /// The server as given.
        url: String,
        /// The wallet's network.
        network: bitcoin::Network,
    },
}

/// The wallet's storage failed: a file, or the SQLite database holding BDK's tables and ours.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// SQLite failed (opening, a query, a write).
    #[error("wallet database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The wallet could not be reloaded from the database after a chain cut.
    #[error("wallet database: {0}")]
    Reload(#[source] bdk_wallet::LoadWithPersistError<rusqlite::Error>),
    /// The wallet was gone from the database when reloaded after a chain cut.
    #[error("wallet database: the wallet vanished while reloading")]
    Vanished,
    /// The database was written by a newer btcmpc (a later schema version of our tables),
    /// which this build must not change.
    #[error("wallet database: written by a newer btcmpc (schema version {found}; this build reads version {supported}): upgrade btcmpc")]
    NewerSchema {
        /// The version recorded in the database.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The recorded schema version is not a number.
    #[error("wallet database: unknown schema version {0:?} in btcmpc_meta")]
    UnknownSchema(String),
    /// A transaction stored in our table does not decode.
    #[error("wallet database: stored transaction {txid}: {source}")]
    StoredTransaction {
        /// The txid recorded beside it.
        txid: String,
        /// The decoding error.
        #[source]
        source: bitcoin::consensus::encode::FromHexError,
    },
    /// A kept transaction's recorded kind is not one this build knows (see
    /// [`crate::BroadcastKind`]).
    #[error("wallet database: stored transaction {txid}: unknown kind {kind:?} (written by another btcmpc?)")]
    UnknownBroadcastKind {
        /// The txid recorded beside it.
        txid: String,
        /// The kind recorded.
        kind: String,
    },
    /// A contract's recorded script is not hex.
    #[error("wallet database: contract {name}: {source}")]
    StoredScript {
        /// The contract's name.
        name: String,
        /// The decoding error.
        #[source]
        source: bitcoin::hex::HexToBytesError,
    },
}

/// Why a wallet database does not belong to the wallet being opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MismatchError {
    /// BDK refused to load it (other descriptors or network), or could not read it.
    #[error(transparent)]
    Load(#[from] bdk_wallet::LoadWithPersistError<rusqlite::Error>),
    /// BDK could not create the wallet in it.
    #[error(transparent)]
    Create(#[from] bdk_wallet::CreateWithPersistError<rusqlite::Error>),
    /// Our tables record another network.
    #[error("it is for {recorded}, not {wallet}")]
    Network {
        /// The network our tables record, as written.
        recorded: String,
        /// The network asked for.
        wallet: bitcoin::Network,
    },
}

/// How an Electrum request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The client failed: network, timeout, or the server's error answer.
    #[error(transparent)]
    Client(#[from] electrum_client::Error),
    /// The server's blocks do not connect to the wallet's chain.
    #[error(transparent)]
    Disconnected(#[from] bdk_wallet::chain::local_chain::CannotConnectError),
    /// The server reported a height that does not fit a block height.
    #[error(transparent)]
    Height(#[from] std::num::TryFromIntError),
}

/// A building step that failed before anything was signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// BDK's transaction builder refused (other than for lack of funds, which is
    /// [`WalletError::InsufficientFunds`]).
    #[error("cannot build transaction: {0}")]
    Create(#[source] bdk_wallet::error::CreateTxError),
    /// BDK cannot describe one of the wallet's outputs as a PSBT input.
    #[error("cannot build transaction: wallet input: {0}")]
    WalletInput(#[source] bdk_wallet::error::CreateTxError),
    /// The built PSBT's fee cannot be computed.
    #[error("cannot build transaction: cannot compute the fee: {0}")]
    Fee(#[source] bitcoin::psbt::Error),
    /// A funding of several contracts was asked with none.
    #[error("cannot build transaction: no contract outputs to fund")]
    NoOutputs,
    /// Two contract outputs of one funding pay the same script.
    #[error("cannot build transaction: two contract outputs pay the same script")]
    DuplicateScript,
    /// BDK cannot replace the transaction (unknown, confirmed, or not ours).
    #[error("cannot build transaction: cannot bump {txid}: {source}")]
    Bump {
        /// The transaction to replace.
        txid: Txid,
        /// BDK's reason.
        #[source]
        source: bdk_wallet::error::BuildFeeBumpError,
    },
}

/// Signing the wallet's own inputs failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The wallet's keys could not sign some inputs (input index, reason).
    #[error("cannot sign: {0:?}")]
    Inputs(std::collections::BTreeMap<usize, bitcoin::psbt::SignError>),
    /// BDK could not finalize the wallet's inputs.
    #[error("cannot sign: {0}")]
    Finalize(#[source] bdk_wallet::signer::SignerError),
    /// The signed transaction could not be extracted from the PSBT (boxed: it holds the
    /// transaction).
    #[error("cannot sign: {0}")]
    Extract(#[source] Box<bitcoin::psbt::ExtractTxError>),
}

/// A contract's key, named by its role in the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRole {
    /// An escrow's receiver (claims).
    Receiver,
    /// An escrow's sender (refunds).
    Sender,
    /// A bond's party (exits).
    Party,
}

impl std::fmt::Display for KeyRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyRole::Receiver => "receiver",
            KeyRole::Sender => "sender",
            KeyRole::Party => "party",
        })
    }
}

/// The name of a spend's path, or `unknown path`.
struct PathName(Option<PathKind>);

impl std::fmt::Display for PathName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(k) => f.write_str(k.name()),
            None => f.write_str("unknown path"),
        }
    }
}

/// A contract that cannot be used as asked: its kind, network or state, a key this wallet
/// does not hold, a claim rule broken, or a contract or transaction this wallet does not know.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// The contract file is for another network.
    #[error("contract file is for {file}, this wallet is on {wallet}")]
    WrongNetwork {
        /// The file's network.
        file: bitcoin::Network,
        /// The wallet's network.
        wallet: bitcoin::Network,
    },
    /// The contract has no such spend path (`kind` is the contract's kind, e.g. `bond`).
    #[error("a {kind} contract has no {path} path")]
    NoPath {
        /// The contract's kind.
        kind: &'static str,
        /// The path asked for.
        path: PathKind,
    },
    /// Only bonds can be slashed.
    #[error("a {kind} contract cannot be slashed")]
    NotSlashable {
        /// The contract's kind.
        kind: &'static str,
    },
    /// The wallet's seed does not derive the key the spend needs.
    #[error("this wallet does not hold the {role} key {key} of the contract")]
    KeyNotHeld {
        /// Whose key it is.
        role: KeyRole,
        /// The key.
        key: PublicKey,
    },
    /// The wallet's seed derives none of a bond's judge keys.
    #[error("cannot sign: this wallet holds none of the bond's judge keys")]
    NoJudgeKey,
    /// A claim was asked without its preimage.
    #[error("a claim needs the preimage")]
    MissingPreimage,
    /// No output pays the contract.
    #[error("contract {name} is not funded (no output pays it)")]
    NotFunded {
        /// The contract's name.
        name: String,
    },
    /// Every output paying the contract is spent.
    #[error("contract {name} has no unspent output: {outpoint} is already spent by {by} ({})", PathName(*.path))]
    AllSpent {
        /// The contract's name.
        name: String,
        /// The last output paying it.
        outpoint: OutPoint,
        /// What spent it.
        by: Txid,
        /// The path it took, when recognised.
        path: Option<PathKind>,
    },
    /// The promised escrow output is not in our chain view of the escrow.
    #[error("promised output {outpoint} does not pay escrow {name} in our chain view")]
    PromiseNotFound {
        /// The promised outpoint.
        outpoint: OutPoint,
        /// The escrow's name.
        name: String,
    },
    /// The promised escrow output holds less than promised.
    #[error("promised output {outpoint} holds {} sat, less than the promised {} sat", .holds.to_sat(), .promised.to_sat())]
    PromiseShort {
        /// The promised outpoint.
        outpoint: OutPoint,
        /// What it holds.
        holds: Amount,
        /// What was promised.
        promised: Amount,
    },
    /// The promised escrow output is already spent.
    #[error("promised output {outpoint} is already spent by {by} ({})", PathName(*.path))]
    PromiseSpent {
        /// The promised outpoint.
        outpoint: OutPoint,
        /// What spent it.
        by: Txid,
        /// The path it took, when recognised.
        path: Option<PathKind>,
    },
    /// The promised escrow output has too few confirmations.
    #[error(
        "promised output {outpoint} has {confirmations} confirmation(s), a claim needs {needed}"
    )]
    PromiseUnconfirmed {
        /// The promised outpoint.
        outpoint: OutPoint,
        /// Its confirmations.
        confirmations: u32,
        /// `escrow_min_conf`.
        needed: u32,
    },
    /// Claiming now could race the refund.
    #[error("tip {tip} + claim margin {margin} is past the escrow timeout {timeout}: the refund could race the claim")]
    PastClaimMargin {
        /// The tip height.
        tip: u32,
        /// The claim margin (blocks).
        margin: u32,
        /// The escrow's timeout height.
        timeout: u32,
    },
    /// A slash's fee cannot be bumped by one judge.
    #[error("a slash cannot be re-signed alone: its judges must sign the new fee")]
    SlashNeedsJudges,
    /// A contract key index beyond the hardened range.
    #[error("contract key index {0} is out of range (0 to 2147483647)")]
    KeyIndexOutOfRange(u32),
    /// A contract file this wallet stored no longer loads.
    #[error("stored contract {name}: {source}")]
    StoredFile {
        /// The contract's name.
        name: String,
        /// Why it does not load.
        #[source]
        source: btcmpc_contracts::FileError,
    },
    /// The transaction is not a contract spend this wallet keeps.
    #[error("{0} is not a contract spend this wallet is watching")]
    NotWatched(Txid),
    /// The kept transaction belongs to no contract.
    #[error("{0} has no contract")]
    NoContract(Txid),
    /// The contract is not remembered by this wallet.
    #[error("contract {0} is not remembered")]
    NotRemembered(String),
    /// The transaction has no input.
    #[error("{0} has no input")]
    NoInput(Txid),
    /// The transaction does not spend the contract along a known path.
    #[error("{txid} does not spend contract {name}")]
    NotASpendOf {
        /// The transaction.
        txid: Txid,
        /// The contract's name.
        name: String,
    },
    /// The output a spend spends is not in its parent transaction.
    #[error("funding output {0} not found")]
    FundingOutputMissing(OutPoint),
}

/// Why a backup could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Encryption failed.
    #[error("encryption failed")]
    Encrypt,
    /// The file does not start with a backup's header.
    #[error("not a btcmpc backup file")]
    NotABackup,
    /// Decryption failed: another mnemonic's key, or altered bytes.
    #[error("cannot decrypt: made with another mnemonic, or altered")]
    Decrypt,
    /// The decrypted document is not a backup document.
    #[error("bad contents: {0}")]
    Contents(#[source] serde_json::Error),
    /// The document's version is not one this build reads.
    #[error("unsupported version {0}")]
    Version(u32),
    /// The backup is for another network.
    #[error("it is for {backup}, this wallet is on {wallet}")]
    Network {
        /// The backup's network, as written.
        backup: String,
        /// The wallet's network.
        wallet: bitcoin::Network,
    },
    /// A pending transaction in the backup does not decode.
    #[error("bad transaction: {0}")]
    Transaction(#[source] bitcoin::consensus::encode::FromHexError),
}

/// The bound of the [`crate::FeePolicy`] an automatic fee exceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeeBound {
    /// The absolute cap on automatic rates.
    Cap(FeeRate),
    /// The bound relative to the amount moved: `percent`% of `moved`, `max` in all.
    Relative {
        /// The percentage.
        percent: u64,
        /// The amount the transaction moves.
        moved: Amount,
        /// The highest fee accepted.
        max: Amount,
    },
}

impl std::fmt::Display for FeeBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeeBound::Cap(rate) => {
                write!(f, "the cap of {} sat/vB", crate::fee::sat_per_vb(*rate))
            }
            FeeBound::Relative {
                percent,
                moved,
                max,
            } => write!(
                f,
                "the bound of {percent}% of the {} sat moved ({} sat)",
                moved.to_sat(),
                max.to_sat()
            ),
        }
    }
}

/// A server's refusal of a broadcast, classified from its reject text.
///
/// The text is Bitcoin Core's reject reason (`sendrawtransaction`'s message), which Electrum
/// servers pass on inside their own wording (`sendrawtransaction RPC error -26: ...`, a JSON
/// object with `code` and `message`); [`Rejection::classify`] finds Core's reason in it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The server's mempool already holds the transaction (`txn-already-in-mempool`,
    /// `txn-already-known`, `txn-same-nonwitness-data-in-mempool`).
    AlreadyKnown,
    /// The transaction is already confirmed (`Transaction already in block chain` before
    /// Core 28, `Transaction outputs already in utxo set` since).
    AlreadyInChain,
    /// An input is unknown or already spent by a confirmed transaction
    /// (`bad-txns-inputs-missingorspent`, `missing-inputs`, `Inputs missing or spent`).
    MissingInputs,
    /// An input is spent by a mempool transaction that this one does not replace
    /// (`txn-mempool-conflict`).
    Conflict,
    /// A replacement does not pay enough more than what it replaces (BIP125 rules 3 and 4:
    /// `insufficient fee`, `insufficient feerate`).
    InsufficientFee,
    /// A timelock is not yet satisfied at the next block (`non-final`, `non-BIP68-final`).
    NonFinal,
    /// Any other refusal; the server's text.
    Other(String),
}

impl Rejection {
    /// Classify a server's reject text (matched without regard to case).
    pub fn classify(message: &str) -> Rejection {
        let m = message.to_ascii_lowercase();
        let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
        if has(&[
            "txn-already-in-mempool",
            "txn-already-known",
            "txn-same-nonwitness-data-in-mempool",
        ]) {
            Rejection::AlreadyKnown
        } else if has(&["already in block chain", "already in utxo set"]) {
            Rejection::AlreadyInChain
        } else if has(&[
            "bad-txns-inputs-missingorspent",
            "missing-inputs",
            "inputs missing or spent",
        ]) {
            Rejection::MissingInputs
        } else if has(&["txn-mempool-conflict"]) {
            Rejection::Conflict
        } else if has(&["insufficient fee"]) {
            Rejection::InsufficientFee
        } else if has(&["non-final", "non-bip68-final"]) {
            Rejection::NonFinal
        } else {
            Rejection::Other(message.to_string())
        }
    }

    /// Whether the server already has the transaction (in its mempool or its chain): a
    /// broadcast that counts as done.
    pub fn already_have(&self) -> bool {
        matches!(self, Rejection::AlreadyKnown | Rejection::AlreadyInChain)
    }
}

impl WalletError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WalletError::Storage(StorageError::Io {
            path: path.into(),
            source,
        })
    }

    pub(crate) fn db(err: rusqlite::Error) -> Self {
        WalletError::Storage(StorageError::Sqlite(err))
    }

    /// Whether this is the Electrum server's own error answer (for example "transaction not
    /// found"), as opposed to a request that failed (network, timeout).
    pub fn is_server_answer(&self) -> bool {
        matches!(
            self,
            WalletError::Electrum {
                source: ServerError::Client(electrum_client::Error::Protocol(_)),
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    #[test]
    fn core_reject_reasons_are_classified_inside_server_wording() {
        let cases: &[(&str, Rejection)] = &[
            ("txn-already-in-mempool", Rejection::AlreadyKnown),
            ("txn-already-known", Rejection::AlreadyKnown),
            (
                "sendrawtransaction RPC error -27: txn-same-nonwitness-data-in-mempool",
                Rejection::AlreadyKnown,
            ),
            ("Transaction already in block chain", Rejection::AlreadyInChain),
            (
                r#"{"code":-27,"message":"Transaction outputs already in utxo set"}"#,
                Rejection::AlreadyInChain,
            ),
            (
                "bad-txns-inputs-missingorspent",
                Rejection::MissingInputs,
            ),
            ("missing-inputs", Rejection::MissingInputs),
            ("Inputs missing or spent", Rejection::MissingInputs),
            (
                "sendrawtransaction RPC error: {\"code\":-26,\"message\":\"txn-mempool-conflict\"}",
                Rejection::Conflict,
            ),
            (
                "insufficient fee, rejecting replacement 8a3f..., less fees than conflicting txs; 0.00000141 < 0.00000282",
                Rejection::InsufficientFee,
            ),
            (
                "insufficient feerate: does not improve feerate diagram",
                Rejection::InsufficientFee,
            ),
            ("non-final", Rejection::NonFinal),
            ("non-BIP68-final", Rejection::NonFinal),
            (
                "mempool-script-verify-flag-failed (Invalid Schnorr signature)",
                Rejection::Other(
                    "mempool-script-verify-flag-failed (Invalid Schnorr signature)".into(),
                ),
            ),
            ("", Rejection::Other(String::new())),
        ];
        for (text, want) in cases {
            assert_eq!(&Rejection::classify(text), want, "{text}");
        }
        assert!(Rejection::AlreadyKnown.already_have());
        assert!(Rejection::AlreadyInChain.already_have());
        assert!(!Rejection::Conflict.already_have());
        assert!(!Rejection::Other("txn-mempool".into()).already_have());
    }

    #[test]
    fn messages_stay_one_line_and_name_the_cause() {
        let e = WalletError::Broadcast {
            txid: Txid::from_byte_array([7; 32]),
            rejection: Rejection::NonFinal,
            message: "non-final".into(),
        };
        assert!(
            e.to_string().ends_with("refused by the server: non-final"),
            "{e}"
        );
        let e = WalletError::from(ContractError::AllSpent {
            name: "bcrt1p".into(),
            outpoint: OutPoint::null(),
            by: Txid::from_byte_array([1; 32]),
            path: None,
        });
        assert!(e.to_string().ends_with("(unknown path)"), "{e}");
        let e = WalletError::FeeTooHigh {
            rate: FeeRate::from_sat_per_vb_u32(300),
            fee: Amount::from_sat(45_000),
            bound: FeeBound::Cap(FeeRate::from_sat_per_vb_u32(200)),
        };
        assert_eq!(
            e.to_string(),
            "refusing a fee of 45000 sat at 300 sat/vB not chosen by the user: above the cap of 200 sat/vB (give an explicit fee rate, e.g. --fee-rate, to pay it)"
        );
        let e = WalletError::db(rusqlite::Error::InvalidQuery);
        assert!(std::error::Error::source(&e).is_some());
        assert!(!e.to_string().contains('\n'));
    }
}
