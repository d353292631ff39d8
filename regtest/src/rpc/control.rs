//! Fees, node control and the faucet (`fees.cpp`, `server.cpp`, `node.cpp`; `faucet` is this node's own).

use bitcoin::Amount;
use serde_json::{json, Value};

use super::params::*;
use super::*;
use crate::core_json::*;

/// Runs `method`, one of this group's.
pub(super) fn call(ctx: &RpcContext, method: &str, raw: Value) -> Result<Value, RpcError> {
    let node = &ctx.node;
    match method {
        "estimatesmartfee" => {
            let p = Params::new(
                method,
                &["conf_target", "estimate_mode"],
                1,
                "conf_target ( \"estimate_mode\" )",
                raw,
            )?;
            let target = p.i64_opt(0)?.unwrap_or(0);
            if !(1..=1008).contains(&target) {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    "Invalid conf_target, must be between 1 and 1008",
                ));
            }
            if let Some(mode) = p.str_opt(1)? {
                if !["unset", "economical", "conservative"]
                    .contains(&mode.to_ascii_lowercase().as_str())
                {
                    return Err(RpcError::new(
                        code::INVALID_PARAMETER,
                        "Invalid estimate_mode parameter, must be one of: \"unset\", \"economical\", \"conservative\"",
                    ));
                }
            }
            let blocks = u16::try_from(target).unwrap_or(1008);
            match node.estimate_fee(blocks) {
                Some(rate) => Ok(json!({"feerate": btc_per_kvb(rate), "blocks": blocks})),
                None => {
                    Ok(json!({"errors": ["Insufficient data or no feerate found"], "blocks": 0}))
                }
            }
        }
        "setmocktime" => {
            let p = Params::new(method, &["timestamp"], 1, "timestamp", raw)?;
            let t = p.i64_opt(0)?.unwrap_or(0);
            if t < 0 {
                return Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    format!("Mocktime cannot be negative: {t}."),
                ));
            }
            node.set_mocktime(t.unsigned_abs());
            Ok(Value::Null)
        }
        "uptime" => {
            Params::new(method, &[], 0, "", raw)?;
            Ok(json!(ctx.shutdown.uptime().as_secs()))
        }
        "stop" => {
            Params::new(method, &["wait"], 0, "", raw)?;
            ctx.shutdown.trigger();
            Ok(json!("btcmpc regtest node stopping"))
        }
        "faucet" => {
            let p = Params::new(method, &["address", "amount"], 2, "\"address\" amount", raw)?;
            let addr = parse_address(p.str(0)?)?;
            let amount = amount_from_value(p.required(1)?)?;
            if amount == Amount::ZERO {
                return Err(RpcError::new(code::TYPE_ERROR, "Invalid amount for send"));
            }
            let faucet = ctx
                .faucet
                .as_ref()
                .ok_or_else(|| RpcError::new(code::METHOD_NOT_FOUND, "Method not found"))?;
            let (txid, block) = faucet
                .pay(&addr.script_pubkey(), amount)
                .map_err(|e| match e {
                    crate::faucet::FaucetError::InsufficientFunds { .. } => {
                        RpcError::new(code::WALLET_INSUFFICIENT_FUNDS, e.to_string())
                    }
                    crate::faucet::FaucetError::Rejected(r) => r.into(),
                    other => RpcError::new(code::MISC_ERROR, other.to_string()),
                })?;
            Ok(json!({"txid": txid.to_string(), "blockhash": block.to_string()}))
        }
        _ => Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found")),
    }
}
