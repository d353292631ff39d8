//! Transactions and fees: get, merkle proofs, broadcast, fee estimates, the mempool histogram.

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::Transaction;
use serde_json::{json, Value};

use crate::node::Node;

use super::params::*;
use super::*;

/// Runs `method`, one of this group's.
pub(super) fn call(node: &Node, method: &str, params: &[Value]) -> Result<Value, CallError> {
    match method {
        "blockchain.transaction.get" => {
            let txid = param_txid(params, 0)?;
            let verbose = match params.get(1) {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(CallError::params()),
            };
            if verbose {
                let blockhash = node
                    .transaction(&txid)
                    .and_then(|i| i.confirmation.map(|c| c.block_hash));
                return crate::core_json::raw_transaction(node, &txid, 1, blockhash).map_err(|e| {
                    CallError {
                        code: 2,
                        message: e.message,
                    }
                });
            }
            let info = node.transaction(&txid).ok_or_else(|| CallError {
                code: 2,
                message: "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.".into(),
            })?;
            Ok(json!(serialize_hex(&info.tx)))
        }
        "blockchain.transaction.get_merkle" => {
            let txid = param_txid(params, 0)?;
            let height = param_u32(params, 1)?;
            let (branch, pos) = node.merkle_proof(&txid, height).ok_or_else(|| {
                CallError::bad(format!("missing txid {txid} in block at height {height}"))
            })?;
            Ok(json!({
                "block_height": height,
                "pos": pos,
                "merkle": branch.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            }))
        }
        "blockchain.transaction.id_from_pos" => {
            let height = param_u32(params, 0)?;
            let pos = param_u32(params, 1)? as usize;
            let merkle = params.get(2).and_then(Value::as_bool).unwrap_or(false);
            let hash = node
                .block_hash(height)
                .ok_or_else(|| CallError::bad(format!("missing block at {height}")))?;
            let (block, _) = node
                .block(&hash)
                .ok_or_else(|| CallError::bad(format!("missing block at {height}")))?;
            let tx = block.txdata.get(pos).ok_or_else(|| {
                CallError::bad(format!("invalid tx_pos {pos} in block at height {height}"))
            })?;
            let txid = tx.compute_txid();
            if merkle {
                let (branch, _) = node.merkle_proof(&txid, height).ok_or_else(|| {
                    CallError::bad(format!("missing txid {txid} in block at height {height}"))
                })?;
                Ok(json!({
                    "tx_hash": txid.to_string(),
                    "merkle": branch.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                }))
            } else {
                Ok(json!(txid.to_string()))
            }
        }
        "blockchain.transaction.broadcast" => {
            if params.len() != 1 {
                return Err(CallError::params());
            }
            let raw = param_str(params, 0)?;
            let bytes = hex::decode(raw).map_err(|_| CallError::bad("non-hex transaction"))?;
            let tx: Transaction =
                deserialize(&bytes).map_err(|_| CallError::bad("invalid transaction"))?;
            // As bitcoind's sendrawtransaction with its default maxfeerate (0.10 BTC/kvB).
            let max = bitcoin::FeeRate::from_sat_per_kwu(10_000_000 / 4);
            match node.send_raw_transaction(&tx, Some(max)) {
                Ok(txid) => Ok(json!(txid.to_string())),
                Err(r) => Err(CallError {
                    code: 2,
                    message: crate::rpc::send_error_message(&r),
                }),
            }
        }
        "blockchain.estimatefee" => {
            let blocks = param_u32(params, 0)?;
            let blocks = u16::try_from(blocks.clamp(1, 1008)).unwrap_or(1008);
            match node.estimate_fee(blocks) {
                // BTC per kvB.
                Some(rate) => Ok(json!(bitcoin::Amount::from_sat(
                    rate.to_sat_per_kwu().saturating_mul(4)
                )
                .to_btc())),
                None => Ok(json!(-1)),
            }
        }
        "blockchain.relayfee" => {
            no_params(params)?;
            let rate = node.relay_fee();
            Ok(json!(bitcoin::Amount::from_sat(
                rate.to_sat_per_kwu().saturating_mul(4)
            )
            .to_btc()))
        }
        "mempool.get_fee_histogram" => {
            no_params(params)?;
            let pairs: Vec<Value> = node
                .fee_histogram()
                .into_iter()
                .map(|(rate, vsize)| json!([rate, vsize]))
                .collect();
            Ok(Value::Array(pairs))
        }
        _ => Err(CallError::not_found()),
    }
}
