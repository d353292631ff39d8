//! Chain state: blocks, headers, the tip and the UTXO set (`blockchain.cpp`).

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::{BlockHash, OutPoint, Txid};
use serde_json::{json, Value};

use super::params::*;
use super::*;
use crate::core_json::*;

/// Runs `method`, one of this group's.
pub(super) fn call(ctx: &RpcContext, method: &str, raw: Value) -> Result<Value, RpcError> {
    let node = &ctx.node;
    match method {
        "getblockcount" => {
            Params::new(method, &[], 0, "", raw)?;
            Ok(json!(node.tip().height))
        }
        "getbestblockhash" => {
            Params::new(method, &[], 0, "", raw)?;
            Ok(json!(node.tip().hash.to_string()))
        }
        "getblockchaininfo" => {
            Params::new(method, &[], 0, "", raw)?;
            Ok(blockchain_info(node))
        }
        "getblockhash" => {
            let p = Params::new(method, &["height"], 1, "height", raw)?;
            let h = p.i64_opt(0)?.unwrap_or(-1);
            let hash = u32::try_from(h)
                .ok()
                .and_then(|h| node.block_hash(h))
                .ok_or_else(|| {
                    RpcError::new(code::INVALID_PARAMETER, "Block height out of range")
                })?;
            Ok(json!(hash.to_string()))
        }
        "getblockheader" => {
            let p = Params::new(
                method,
                &["blockhash", "verbose"],
                1,
                "\"blockhash\" ( verbose )",
                raw,
            )?;
            // Core: ParseHashV(request.params[0], "hash") in rpc/blockchain.cpp.
            let hash: BlockHash = p.hash_as(0, "hash")?;
            let verbose = p.bool_opt(1)?.unwrap_or(true);
            let (header, height, in_best) = node
                .header_by_hash(&hash)
                .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            if !verbose {
                return Ok(json!(serialize_hex(&header)));
            }
            let n_tx = node.block(&hash).map_or(0, |(b, _)| b.txdata.len());
            Ok(header_json(node, &header, height, in_best, n_tx))
        }
        "getblock" => {
            let p = Params::new(
                method,
                &["blockhash", "verbosity"],
                1,
                "\"blockhash\" ( verbosity )",
                raw,
            )?;
            let hash: BlockHash = p.hash(0)?;
            let verbosity = p.verbosity(1, 1)?;
            let (block, _) = node
                .block(&hash)
                .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            if verbosity == 0 {
                return Ok(json!(serialize_hex(&block)));
            }
            let (_, height, in_best) = node
                .header_by_hash(&hash)
                .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            Ok(block_json(node, &block, height, in_best, verbosity))
        }
        "gettxout" => {
            let p = Params::new(
                method,
                &["txid", "n", "include_mempool"],
                2,
                "\"txid\" n ( include_mempool )",
                raw,
            )?;
            let txid: Txid = p.hash(0)?;
            let vout = p.u64_opt(1)?.unwrap_or(0);
            let include_mempool = p.bool_opt(2)?.unwrap_or(true);
            let Ok(vout) = u32::try_from(vout) else {
                return Ok(Value::Null);
            };
            let tip = node.tip();
            match node.utxo(&OutPoint { txid, vout }, include_mempool) {
                None => Ok(Value::Null),
                Some(u) => Ok(json!({
                    "bestblock": tip.hash.to_string(),
                    "confirmations": u.height.map_or(0, |h| tip.height.saturating_sub(h) + 1),
                    "value": btc(u.txout.value),
                    "scriptPubKey": script_pubkey_json(&u.txout.script_pubkey),
                    "coinbase": u.is_coinbase,
                })),
            }
        }
        _ => Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found")),
    }
}
