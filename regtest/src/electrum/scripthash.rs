//! Script hashes: history, balance, unspent outputs, status subscriptions.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::node::Node;

use super::params::*;
use super::*;

/// Runs `method`, one of this group's.
pub(super) fn call(
    node: &Node,
    session: &mut Session,
    method: &str,
    params: &[Value],
) -> Result<Value, CallError> {
    match method {
        "blockchain.scripthash.get_history" => {
            let sh = param_scripthash(params, 0)?;
            let items: Vec<Value> = node
                .history(&sh)
                .into_iter()
                .map(|item| match item.fee {
                    Some(fee) if item.height <= 0 => json!({
                        "height": item.height,
                        "tx_hash": item.txid.to_string(),
                        "fee": fee.to_sat(),
                    }),
                    _ => json!({"height": item.height, "tx_hash": item.txid.to_string()}),
                })
                .collect();
            Ok(Value::Array(items))
        }
        "blockchain.scripthash.get_balance" => {
            let sh = param_scripthash(params, 0)?;
            let (confirmed, unconfirmed) = node.balance(&sh);
            Ok(json!({"confirmed": confirmed, "unconfirmed": unconfirmed}))
        }
        "blockchain.scripthash.listunspent" => {
            let sh = param_scripthash(params, 0)?;
            let items: Vec<Value> = node
                .utxos(&sh)
                .into_iter()
                .map(|u| {
                    json!({
                        "height": u.height,
                        "tx_pos": u.outpoint.vout,
                        "tx_hash": u.outpoint.txid.to_string(),
                        "value": u.value.to_sat(),
                    })
                })
                .collect();
            Ok(Value::Array(items))
        }
        "blockchain.scripthash.subscribe" => {
            let sh = param_scripthash(params, 0)?;
            if !session.scripthashes.contains_key(&sh) {
                if session.scripthashes.len() >= session.max_subscriptions {
                    return Err(CallError::bad(format!(
                        "too many subscriptions on this connection (at most {})",
                        session.max_subscriptions
                    )));
                }
                let max = session.max_total_subscriptions;
                let taken = session.total_subscriptions.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |n| (n < max).then_some(n + 1),
                );
                if taken.is_err() {
                    return Err(CallError::bad(format!(
                        "too many subscriptions on this server (at most {max})"
                    )));
                }
            }
            let status = node.status_hash(&sh);
            session.scripthashes.insert(sh, status);
            Ok(status_json(status))
        }
        "blockchain.scripthash.unsubscribe" => {
            let sh = param_scripthash(params, 0)?;
            let removed = session.scripthashes.remove(&sh).is_some();
            if removed {
                session.total_subscriptions.fetch_sub(1, Ordering::Relaxed);
            }
            Ok(json!(removed))
        }
        _ => Err(CallError::not_found()),
    }
}
