//! Transactions and the mempool (`rawtransaction.cpp`, `mempool.cpp`).

use bitcoin::{Amount, BlockHash, FeeRate, Txid};
use serde_json::{json, Map, Value};

use super::params::*;
use super::*;
use crate::core_json::*;

/// Runs `method`, one of this group's.
pub(super) fn call(ctx: &RpcContext, method: &str, raw: Value) -> Result<Value, RpcError> {
    let node = &ctx.node;
    match method {
        "getrawtransaction" => {
            let p = Params::new(
                method,
                &["txid", "verbose", "blockhash"],
                1,
                "\"txid\" ( verbosity \"blockhash\" )",
                raw,
            )?;
            let txid: Txid = p.hash(0)?;
            let verbosity = p.verbosity(1, 0)?;
            let blockhash: Option<BlockHash> = match p.get(2) {
                None => None,
                Some(_) => Some(p.hash(2)?),
            };
            raw_transaction(node, &txid, verbosity, blockhash)
        }
        "sendrawtransaction" => {
            let p = Params::new(
                method,
                &["hexstring", "maxfeerate", "maxburnamount"],
                1,
                "\"hexstring\" ( maxfeerate maxburnamount )",
                raw,
            )?;
            let tx = decode_tx(p.str(0)?).ok_or_else(|| {
                RpcError::new(
                    code::DESERIALIZATION_ERROR,
                    "TX decode failed. Make sure the tx has at least one input.",
                )
            })?;
            let max_fee_rate = match p.get(1) {
                None => Some(FeeRate::from_sat_per_kwu(10_000_000 / 4)),
                Some(v) => {
                    let r = fee_rate_from_btc_per_kvb(v)?;
                    (r != FeeRate::ZERO).then_some(r)
                }
            };
            let max_burn = match p.get(2) {
                None => Amount::ZERO,
                Some(v) => amount_from_value(v)?,
            };
            for out in &tx.output {
                if (out.script_pubkey.is_op_return() || out.script_pubkey.len() > 10_000)
                    && out.value > max_burn
                {
                    return Err(RpcError::new(
                        code::VERIFY_ERROR,
                        "Unspendable output exceeds maximum configured by user (maxburnamount)",
                    ));
                }
            }
            let txid = node.send_raw_transaction(&tx, max_fee_rate)?;
            Ok(json!(txid.to_string()))
        }
        "testmempoolaccept" => {
            let p = Params::new(
                method,
                &["rawtxs", "maxfeerate"],
                1,
                "[\"rawtx\",...] ( maxfeerate )",
                raw,
            )?;
            let raws = p.required(0)?;
            let raws = raws.as_array().ok_or_else(|| type_error(raws, "array"))?;
            if raws.is_empty() || raws.len() > 25 {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Array must contain between 1 and 25 transactions.",
                ));
            }
            let max_fee_rate = match p.get(1) {
                None => Some(FeeRate::from_sat_per_kwu(10_000_000 / 4)),
                Some(v) => {
                    let r = fee_rate_from_btc_per_kvb(v)?;
                    (r != FeeRate::ZERO).then_some(r)
                }
            };
            let mut txs = Vec::with_capacity(raws.len());
            for raw_tx in raws {
                let s = raw_tx
                    .as_str()
                    .ok_or_else(|| type_error(raw_tx, "string"))?;
                let tx = decode_tx(s).ok_or_else(|| {
                    RpcError::new(
                        code::DESERIALIZATION_ERROR,
                        format!("TX decode failed: {s} Make sure the tx has at least one input."),
                    )
                })?;
                txs.push(tx);
            }
            if let [tx] = txs.as_slice() {
                let mut exit_early = false;
                let r = node.test_mempool_accept(tx);
                return Ok(Value::Array(vec![accept_result_json(
                    tx,
                    Some(r),
                    None,
                    max_fee_rate,
                    &mut exit_early,
                )]));
            }
            // Core's package path (`ProcessNewPackage` with `test_accept`): a package error is
            // repeated on every member; a member not validated because another failed first
            // (or the maxfeerate of an earlier member was exceeded) has only its ids.
            let verdict = node.test_mempool_accept_package(&txs);
            let mut exit_early = false;
            let out = txs
                .iter()
                .zip(verdict.results)
                .map(|(tx, r)| {
                    accept_result_json(
                        tx,
                        r,
                        verdict.package_error.as_deref(),
                        max_fee_rate,
                        &mut exit_early,
                    )
                })
                .collect();
            Ok(Value::Array(out))
        }
        "getrawmempool" => {
            let p = Params::new(
                method,
                &["verbose", "mempool_sequence"],
                0,
                "( verbose mempool_sequence )",
                raw,
            )?;
            let verbose = p.bool_opt(0)?.unwrap_or(false);
            let seq = p.bool_opt(1)?.unwrap_or(false);
            if verbose && seq {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Verbose results cannot contain mempool sequence values.",
                ));
            }
            let entries = node.mempool();
            if verbose {
                let mut map = Map::new();
                for e in &entries {
                    map.insert(e.txid.to_string(), mempool_entry_json(e));
                }
                Ok(Value::Object(map))
            } else {
                let txids: Vec<Value> = entries.iter().map(|e| json!(e.txid.to_string())).collect();
                if seq {
                    Ok(json!({"txids": txids, "mempool_sequence": 0}))
                } else {
                    Ok(Value::Array(txids))
                }
            }
        }
        "getmempoolentry" => {
            let p = Params::new(method, &["txid"], 1, "\"txid\"", raw)?;
            let txid: Txid = p.hash(0)?;
            let e = node.mempool_entry(&txid).ok_or_else(|| {
                RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool")
            })?;
            Ok(mempool_entry_json(&e))
        }
        "getmempoolinfo" => {
            Params::new(method, &[], 0, "", raw)?;
            let entries = node.mempool();
            let bytes: u64 = entries.iter().map(|e| e.vsize).sum();
            let fees: Amount = entries.iter().map(|e| e.fee).sum();
            Ok(json!({
                "loaded": true,
                "size": entries.len(),
                "bytes": bytes,
                "usage": bytes * 4,
                "total_fee": btc(fees),
                "maxmempool": 300_000_000u64,
                "mempoolminfee": btc_per_kvb(node.relay_fee()),
                "minrelaytxfee": btc_per_kvb(node.relay_fee()),
                "incrementalrelayfee": btc_per_kvb(node.relay_fee()),
                "unbroadcastcount": 0,
                "fullrbf": true,
            }))
        }
        _ => Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found")),
    }
}
