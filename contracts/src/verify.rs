//! Bitcoin Core's script interpreter (`bitcoinconsensus` 0.106, Core 26) as the last check of
//! every spend.

use bitcoin::{Transaction, TxOut};

use crate::VerifyError;

/// The script flags Core enforces as consensus today: P2SH, DERSIG, NULLDUMMY,
/// CHECKLOCKTIMEVERIFY, CHECKSEQUENCEVERIFY, WITNESS and TAPROOT (every flag the library
/// exposes).
pub const CONSENSUS_FLAGS: u32 =
    bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT;

/// Run every input of `tx` through Bitcoin Core's script interpreter with the consensus
/// flags; `spent[i]` is the output spent by input `i` (taproot signatures commit to all of
/// them, so all are needed).
///
/// This checks scripts only. `after(T)` is checked against the transaction's own nLockTime;
/// that nLockTime is not yet reached (`IsFinalTx`: nLockTime must be below the next block's
/// height) is a block-level rule the node checks when the transaction enters the mempool or a
/// block, not something a script interpreter can see.
///
/// # Errors
/// [`VerifyError::SpentCount`] when `spent` does not match the inputs, [`VerifyError::Script`]
/// naming the first input the interpreter refuses and its error code.
pub fn verify_spend(tx: &Transaction, spent: &[TxOut]) -> Result<(), VerifyError> {
    verify_with_paths(tx, spent, |_| None)
}

/// As [`verify_spend`], naming the spend path of each input in the error when `path_of`
/// knows it.
pub(crate) fn verify_with_paths(
    tx: &Transaction,
    spent: &[TxOut],
    path_of: impl Fn(usize) -> Option<String>,
) -> Result<(), VerifyError> {
    if spent.len() != tx.input.len() {
        return Err(VerifyError::SpentCount {
            inputs: tx.input.len(),
            spent: spent.len(),
        });
    }
    let bytes = bitcoin::consensus::serialize(tx);
    let scripts: Vec<&[u8]> = spent.iter().map(|o| o.script_pubkey.as_bytes()).collect();
    let utxos: Vec<bitcoinconsensus::Utxo> = spent
        .iter()
        .zip(&scripts)
        .map(|(o, s)| bitcoinconsensus::Utxo {
            script_pubkey: s.as_ptr(),
            script_pubkey_len: s.len() as u32,
            // Amounts are at most 21e6 BTC, far below i64::MAX.
            value: o.value.to_sat() as i64,
        })
        .collect();
    for (input, out) in spent.iter().enumerate() {
        bitcoinconsensus::verify_with_flags(
            out.script_pubkey.as_bytes(),
            out.value.to_sat(),
            &bytes,
            Some(&utxos),
            input,
            CONSENSUS_FLAGS,
        )
        .map_err(|code| {
            tracing::debug!(target: "btcmpc_contracts::verify", input, ?code, "spend refused");
            VerifyError::Script {
                input,
                path: path_of(input),
                code,
            }
        })?;
    }
    Ok(())
}
