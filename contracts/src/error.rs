//! Error types of the contracts toolkit.
//!
//! Every message is one line, lower-case, and names the field, input or output at fault.

use bitcoin::Amount;

/// A contract definition or a policy was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A public key could not be parsed.
    #[error("{field}: invalid public key {value:?} (want a 33-byte compressed key, 66 hex)")]
    InvalidKey {
        /// The field that held the key.
        field: String,
        /// The text given.
        value: String,
    },
    /// A hash was not 32 bytes of hex.
    #[error("{field}: invalid sha256 hash {value:?} (want 32 bytes, 64 hex): {reason}")]
    InvalidHash {
        /// The field that held the hash.
        field: String,
        /// The text given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A height was not an absolute block height in `1..500000000`.
    #[error("{field}: height {value:?} is not an absolute block height in 1..500000000")]
    InvalidHeight {
        /// The field that held the height.
        field: String,
        /// The text given.
        value: String,
    },
    /// A `+N` height was given where only absolute heights are accepted.
    #[error(
        "{field}: relative height {value:?} needs a chain connection; give an absolute height"
    )]
    RelativeHeight {
        /// The field that held the height.
        field: String,
        /// The text given.
        value: String,
    },
    /// A scalar (the internal key's tweak) was not a valid secp256k1 scalar.
    #[error(
        "{field}: invalid scalar {value:?} (want 32 bytes of hex, nonzero, below the group order)"
    )]
    InvalidScalar {
        /// The field that held the scalar.
        field: String,
        /// The text given.
        value: String,
    },
    /// The threshold of a bond is not in `1..=judges`.
    #[error("k: threshold {k} is not in 1..={judges} (the number of judges)")]
    InvalidThreshold {
        /// The threshold.
        k: usize,
        /// The number of judge keys.
        judges: usize,
    },
    /// The same judge key appears twice.
    #[error("judges: key {key} appears more than once")]
    DuplicateJudge {
        /// The repeated key.
        key: String,
    },
    /// The bonded party is also listed as a judge.
    #[error("judges: the party key {key} cannot judge its own bond")]
    PartyIsJudge {
        /// The party key.
        key: String,
    },
    /// A lock value (`after(n)`, `older(n)`) is outside Bitcoin Core's rules.
    #[error("policy: {lock} is refused: {rule}")]
    InvalidLock {
        /// The fragment as written, e.g. `after(2147483648)`.
        lock: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A compiled Miniscript is not one Bitcoin Core's descriptor parser accepts as sane.
    #[error("policy: {target} script {miniscript} is not sane to Bitcoin Core: {reason}")]
    NotSane {
        /// `tr` or `wsh`.
        target: &'static str,
        /// The Miniscript.
        miniscript: String,
        /// Why.
        reason: String,
    },
    /// A Miniscript policy could not be parsed.
    #[error("policy: cannot parse {policy:?}: {reason}")]
    Policy {
        /// The policy text.
        policy: String,
        /// The parser's reason.
        reason: String,
    },
    /// A policy parsed but could not be compiled to a descriptor.
    #[error("policy: cannot compile to {target}: {reason}")]
    Compile {
        /// `tr` or `wsh`.
        target: &'static str,
        /// The compiler's reason.
        reason: String,
    },
}

/// A contract file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file is not valid JSON of the contract-file shape.
    #[error("contract file: {reason}")]
    Json {
        /// The JSON parser's reason (it names the field and line).
        reason: String,
    },
    /// The file's `version` is not one this build reads.
    #[error("version: contract file version {found} is not supported (want 1)")]
    Version {
        /// The version in the file.
        found: u64,
    },
    /// A field's value is malformed.
    #[error("{0}")]
    Field(#[from] Error),
    /// A field disagrees with what its parameters derive to.
    #[error("{field}: file says {in_file:?} but the parameters derive {derived:?}")]
    Mismatch {
        /// The field that disagrees.
        field: String,
        /// Its value in the file.
        in_file: String,
        /// The value re-derived from the parameters.
        derived: String,
    },
}

/// A spend could not be built, signed or finalized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpendError {
    /// The spent output is not paid to this contract.
    #[error("input {index}: script_pubkey {found} is not this contract's {expected}")]
    ScriptMismatch {
        /// The input index.
        index: usize,
        /// The script found (hex).
        found: String,
        /// The contract's script (hex).
        expected: String,
    },
    /// The contract has no such spend path (for example a slash on an escrow).
    #[error("this {kind} contract has no {path} path")]
    NoSuchPath {
        /// The contract's kind.
        kind: &'static str,
        /// The path asked for.
        path: &'static str,
    },
    /// The preimage does not hash to the contract's hash.
    #[error("preimage: sha256 of the preimage is {got}, the contract wants {want}")]
    WrongPreimage {
        /// The hash of the preimage given.
        got: String,
        /// The contract's hash.
        want: String,
    },
    /// An output would be dust.
    #[error("output {output} ({name}): {} sat is below the dust limit {} sat of its script", .value.to_sat(), .min.to_sat())]
    Dust {
        /// The output index.
        output: usize,
        /// What the output is for.
        name: &'static str,
        /// Its value.
        value: Amount,
        /// The smallest non-dust value for its script.
        min: Amount,
    },
    /// The inputs do not cover the fee.
    #[error("amount: inputs of {} sat do not cover the fee of {} sat", .available.to_sat(), .fee.to_sat())]
    InsufficientFunds {
        /// What the inputs hold (less any fixed outputs).
        available: Amount,
        /// The fee at the requested fee rate.
        fee: Amount,
    },
    /// The fee rate times the weight overflows.
    #[error("fee_rate: {fee_rate} overflows for a transaction of weight {weight}")]
    FeeOverflow {
        /// The fee rate (sat/kwu).
        fee_rate: u64,
        /// The weight.
        weight: u64,
    },
    /// A penalty of zero was asked for.
    #[error("penalty: must be more than zero")]
    ZeroPenalty,
    /// An anchor record is longer than a standard `OP_RETURN` carries.
    #[error("record: {len} bytes is more than the 80 an OP_RETURN output may carry")]
    RecordTooLong {
        /// The record's length.
        len: usize,
    },
    /// The input index is not in the PSBT.
    #[error("input {index}: no such input (the transaction has {inputs})")]
    NoSuchInput {
        /// The index asked for.
        index: usize,
        /// The number of inputs.
        inputs: usize,
    },
    /// An input has no `witness_utxo`, which taproot signing and verification need.
    #[error("input {index}: missing witness_utxo")]
    MissingUtxo {
        /// The input index.
        index: usize,
    },
    /// The key cannot sign this input.
    #[error("input {index}: key {key} is not a signer of this input")]
    KeyNotInInput {
        /// The input index.
        index: usize,
        /// The x-only key that tried to sign.
        key: String,
    },
    /// The sighash could not be computed.
    #[error("input {index}: cannot compute the sighash: {reason}")]
    Sighash {
        /// The input index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// No spend path of the contract is satisfied by what the PSBT holds.
    #[error("input {index}: cannot finalize, no spend path is satisfied ({missing})")]
    Unsatisfied {
        /// The input index.
        index: usize,
        /// For each path, what is missing.
        missing: String,
    },
    /// An input is still not finalized when the transaction is extracted.
    #[error("input {index}: not finalized")]
    NotFinalized {
        /// The input index.
        index: usize,
    },
    /// PSBTs that should describe the same transaction differ.
    #[error("psbt: cannot combine: {reason}")]
    Combine {
        /// Why.
        reason: String,
    },
    /// A slash PSBT is not the canonical slash the judge rebuilt itself.
    #[error("not the canonical slash: {0}")]
    NotCanonical(crate::slash::TxDifference),
    /// A slash PSBT spends an output that is not an unspent output of the bond.
    #[error("input 0 spends {outpoint}, which is not an unspent output of this bond in our chain view (unspent: {live})")]
    NotLiveOutput {
        /// The outpoint the PSBT spends.
        outpoint: bitcoin::OutPoint,
        /// The bond's unspent outputs we see.
        live: String,
    },
    /// A PSBT's `witness_utxo` disagrees with the chain.
    #[error("input 0: the PSBT says {outpoint} holds {} sat, our chain view says {} sat", .claimed.to_sat(), .chain.to_sat())]
    PrevoutMismatch {
        /// The outpoint.
        outpoint: bitcoin::OutPoint,
        /// The PSBT's value.
        claimed: Amount,
        /// The chain's value.
        chain: Amount,
    },
    /// A slash carrier file could not be read.
    #[error("slash carrier: {reason}")]
    Carrier {
        /// Why.
        reason: String,
    },
    /// The finished transaction was refused by the script interpreter.
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

/// Bitcoin Core's script interpreter refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The number of spent outputs does not match the number of inputs.
    #[error("spent outputs: {spent} given for a transaction with {inputs} inputs")]
    SpentCount {
        /// Inputs of the transaction.
        inputs: usize,
        /// Spent outputs given.
        spent: usize,
    },
    /// An input's script failed.
    #[error("input {input}{}: refused by the script interpreter: {}", path_suffix(.path), code_text(.code))]
    Script {
        /// The input index.
        input: usize,
        /// The spend path, when the caller knows it.
        path: Option<String>,
        /// The interpreter's error code.
        code: bitcoinconsensus::Error,
    },
}

fn path_suffix(path: &Option<String>) -> String {
    match path {
        Some(p) => format!(" ({p} path)"),
        None => String::new(),
    }
}

/// The interpreter's code with its meaning. `ERR_SCRIPT` is what the library returns when the
/// script itself evaluates to false; it carries no finer reason.
pub(crate) fn code_text(code: &bitcoinconsensus::Error) -> String {
    use bitcoinconsensus::Error as E;
    match code {
        E::ERR_SCRIPT => "ERR_SCRIPT (script evaluation failed)".to_owned(),
        other => format!("{other:?} ({other})"),
    }
}
