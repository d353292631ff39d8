//! Mining and reorganisations on demand (`mining.cpp`, `blockchain.cpp`).

use bitcoin::{BlockHash, Txid};
use serde_json::{json, Value};

use super::params::*;
use super::*;

/// Runs `method`, one of this group's.
pub(super) fn call(ctx: &RpcContext, method: &str, raw: Value) -> Result<Value, RpcError> {
    let node = &ctx.node;
    match method {
        "generatetoaddress" => {
            let p = Params::new(
                method,
                &["nblocks", "address", "maxtries"],
                2,
                "nblocks \"address\" ( maxtries )",
                raw,
            )?;
            let n = p.i64_opt(0)?.unwrap_or(0);
            let addr = parse_address(p.str(1)?)?;
            let n = u32::try_from(n.max(0)).unwrap_or(0);
            let hashes = node
                .generate_to_script(n, &addr.script_pubkey())
                .map_err(node_error)?;
            Ok(Value::Array(
                hashes.iter().map(|h| json!(h.to_string())).collect(),
            ))
        }
        "generatetodescriptor" => {
            let p = Params::new(
                method,
                &["num_blocks", "descriptor", "maxtries"],
                2,
                "num_blocks \"descriptor\" ( maxtries )",
                raw,
            )?;
            let n = p.i64_opt(0)?.unwrap_or(0);
            let spk = parse_output(p.str(1)?)?;
            let n = u32::try_from(n.max(0)).unwrap_or(0);
            let hashes = node.generate_to_script(n, &spk).map_err(node_error)?;
            Ok(Value::Array(
                hashes.iter().map(|h| json!(h.to_string())).collect(),
            ))
        }
        "generateblock" => {
            let p = Params::new(
                method,
                &["output", "transactions", "submit"],
                2,
                "\"output\" [\"rawtx/txid\",...] ( submit )",
                raw,
            )?;
            let spk = parse_output(p.str(0)?)?;
            let list = p.required(1)?;
            let list = list.as_array().ok_or_else(|| type_error(list, "array"))?;
            if p.bool_opt(2)? == Some(false) {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "submit=false is not supported by this node",
                ));
            }
            let mut txs = Vec::with_capacity(list.len());
            for item in list {
                let s = item.as_str().ok_or_else(|| type_error(item, "string"))?;
                if let Ok(txid) = parse_hash::<Txid>(s, "txid") {
                    let e = node
                        .mempool_entry(&txid)
                        .and_then(|_| node.transaction(&txid));
                    match e {
                        Some(info) if info.confirmation.is_none() => txs.push(info.tx),
                        _ => {
                            return Err(RpcError::new(
                                code::INVALID_ADDRESS_OR_KEY,
                                format!("Transaction {s} not in mempool."),
                            ))
                        }
                    }
                } else {
                    let tx = decode_tx(s).ok_or_else(|| {
                        RpcError::new(
                            code::DESERIALIZATION_ERROR,
                            format!("Transaction decode failed for {s}. Make sure the tx has at least one input."),
                        )
                    })?;
                    txs.push(tx);
                }
            }
            let hash = node.generate_block(&spk, txs).map_err(|r| {
                RpcError::new(
                    code::VERIFY_ERROR,
                    format!("TestBlockValidity failed: {}", r.message()),
                )
            })?;
            Ok(json!({"hash": hash.to_string()}))
        }
        "invalidateblock" => {
            let p = Params::new(method, &["blockhash"], 1, "\"blockhash\"", raw)?;
            let hash: BlockHash = p.hash(0)?;
            node.invalidate_block(&hash).map_err(node_error)?;
            Ok(Value::Null)
        }
        "reconsiderblock" => {
            let p = Params::new(method, &["blockhash"], 1, "\"blockhash\"", raw)?;
            let hash: BlockHash = p.hash(0)?;
            node.reconsider_block(&hash).map_err(node_error)?;
            Ok(Value::Null)
        }
        _ => Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found")),
    }
}
