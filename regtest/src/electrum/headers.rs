//! Block headers: the tip subscription, one header or a range, checkpoint proofs.

use bitcoin::consensus::encode::serialize_hex;
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
        "blockchain.headers.subscribe" => {
            session.headers = true;
            session.last_tip = Some(node.tip().hash);
            Ok(header_notification(node))
        }
        "blockchain.block.header" => {
            let height = param_u32(params, 0)?;
            let cp_height = match params.get(1) {
                None => 0,
                Some(_) => param_u32(params, 1)?,
            };
            let header = node
                .header(height)
                .ok_or_else(|| CallError::bad(format!("no header at {height}")))?;
            if cp_height == 0 {
                return Ok(json!(serialize_hex(&header)));
            }
            let (branch, root) = header_proof(node, height, cp_height)?;
            Ok(json!({"branch": branch, "header": serialize_hex(&header), "root": root}))
        }
        "blockchain.block.headers" => {
            let start = param_u32(params, 0)?;
            let count = param_u32(params, 1)?;
            let cp_height = match params.get(2) {
                None => 0,
                Some(_) => param_u32(params, 2)?,
            };
            let tip = node.tip().height;
            let end = u64::from(tip)
                .saturating_add(1)
                .min(u64::from(start) + u64::from(count.min(MAX_HEADERS)));
            let mut hex = String::new();
            let mut n = 0u32;
            let mut h = u64::from(start);
            while h < end {
                let Some(header) = u32::try_from(h).ok().and_then(|h| node.header(h)) else {
                    break;
                };
                hex.push_str(&serialize_hex(&header));
                n += 1;
                h += 1;
            }
            if cp_height == 0 || n == 0 {
                return Ok(json!({"count": n, "hex": hex, "max": MAX_HEADERS}));
            }
            let (branch, root) = header_proof(node, start + n - 1, cp_height)?;
            Ok(json!({"count": n, "hex": hex, "max": MAX_HEADERS, "root": root, "branch": branch}))
        }
        _ => Err(CallError::not_found()),
    }
}
