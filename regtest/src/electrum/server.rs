//! `server.*`: version negotiation, features, ping, banner, peers.

use serde_json::{json, Value};

use crate::node::Node;

use super::params::*;
use super::*;

/// Runs `method`, one of this group's.
pub(super) fn call(
    node: &Node,
    method: &str,
    params: &[Value],
    port: u16,
) -> Result<Value, CallError> {
    match method {
        "server.version" => {
            // [client_name, version] where version is "1.4" or ["min", "max"].
            let ok = match params.get(1) {
                None => true,
                Some(Value::String(v)) => v == PROTOCOL_VERSION,
                Some(Value::Array(range)) if range.len() == 2 => {
                    let parse = |v: &Value| {
                        v.as_str().map(|s| {
                            s.split('.')
                                .map(|p| p.parse::<u32>().unwrap_or(0))
                                .collect::<Vec<_>>()
                        })
                    };
                    match (parse(&range[0]), parse(&range[1])) {
                        (Some(lo), Some(hi)) => lo <= vec![1, 4] && vec![1, 4] <= hi,
                        _ => false,
                    }
                }
                Some(_) => return Err(CallError::params()),
            };
            if !ok {
                return Err(CallError::bad(format!(
                    "unsupported protocol version {}, server supports {PROTOCOL_VERSION}",
                    params.get(1).map(Value::to_string).unwrap_or_default()
                )));
            }
            Ok(json!([server_id(), PROTOCOL_VERSION]))
        }
        "server.features" => {
            no_params(params)?;
            let genesis = node.block_hash(0).map(|h| h.to_string());
            Ok(json!({
                "genesis_hash": genesis,
                "hosts": {"tcp_port": port},
                "protocol_max": PROTOCOL_VERSION,
                "protocol_min": PROTOCOL_VERSION,
                "pruning": null,
                "server_version": server_id(),
                "hash_function": "sha256",
            }))
        }
        "server.ping" => Ok(Value::Null),
        "server.banner" => Ok(json!(
            "Welcome to the btcmpc embedded regtest node (Electrum protocol 1.4)."
        )),
        "server.donation_address" => Ok(Value::Null),
        "server.peers.subscribe" => Ok(json!([])),
        _ => Err(CallError::not_found()),
    }
}
