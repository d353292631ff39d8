//! JSON-RPC 1.x and 2.0 framing: requests, batches, replies and their HTTP status.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::electrum::MAX_JSON_TOKENS;
use crate::limits::json_within;

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Legacy,
    V2,
}

pub(crate) struct JsonRequest {
    pub(crate) id: Option<Value>,
    pub(crate) method: String,
    pub(crate) params: Value,
    pub(crate) version: Version,
}

pub(crate) fn parse_request(v: &Value) -> Result<JsonRequest, (RpcError, Option<Value>, Version)> {
    let Some(obj) = v.as_object() else {
        return Err((
            RpcError::new(code::INVALID_REQUEST, "Invalid Request object"),
            None,
            Version::Legacy,
        ));
    };
    let id = obj.get("id").cloned();
    let version = match obj.get("jsonrpc") {
        None => Version::Legacy,
        Some(Value::String(s)) if s == "2.0" => Version::V2,
        Some(Value::String(_)) => Version::Legacy,
        Some(_) => {
            return Err((
                RpcError::new(code::INVALID_REQUEST, "jsonrpc field must be a string"),
                id,
                Version::Legacy,
            ))
        }
    };
    let method = match obj.get("method") {
        None => {
            return Err((
                RpcError::new(code::INVALID_REQUEST, "Missing method"),
                id,
                version,
            ))
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err((
                RpcError::new(code::INVALID_REQUEST, "Method must be a string"),
                id,
                version,
            ))
        }
    };
    let params = match obj.get("params") {
        None | Some(Value::Null) => Value::Array(Vec::new()),
        Some(p @ (Value::Array(_) | Value::Object(_))) => p.clone(),
        Some(_) => {
            return Err((
                RpcError::new(code::INVALID_REQUEST, "Params must be an array or object"),
                id,
                version,
            ))
        }
    };
    Ok(JsonRequest {
        id,
        method,
        params,
        version,
    })
}

pub(crate) fn reply(result: Result<Value, RpcError>, id: Option<Value>, version: Version) -> Value {
    let id = id.unwrap_or(Value::Null);
    match (version, result) {
        (Version::Legacy, Ok(r)) => json!({"result": r, "error": null, "id": id}),
        (Version::Legacy, Err(e)) => json!({"result": null, "error": e.to_json(), "id": id}),
        (Version::V2, Ok(r)) => json!({"jsonrpc": "2.0", "result": r, "id": id}),
        (Version::V2, Err(e)) => json!({"jsonrpc": "2.0", "error": e.to_json(), "id": id}),
    }
}

pub(crate) fn http_status_for(e: &RpcError) -> u16 {
    match e.code {
        code::INVALID_REQUEST => 400,
        code::METHOD_NOT_FOUND => 404,
        _ => 500,
    }
}

/// Execute one HTTP body: (HTTP status, reply body or none for 204).
pub(crate) async fn handle_body(ctx: &Arc<RpcContext>, body: &[u8]) -> (u16, Option<Value>) {
    if !json_within(body, MAX_JSON_TOKENS) {
        let e = RpcError::new(
            code::INVALID_REQUEST,
            format!("request too complex (more than {MAX_JSON_TOKENS} JSON values)"),
        );
        return (400, Some(reply(Err(e), None, Version::Legacy)));
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let e = RpcError::new(code::PARSE_ERROR, "Parse error");
            return (500, Some(reply(Err(e), None, Version::Legacy)));
        }
    };
    match value {
        Value::Object(_) => match parse_request(&value) {
            Err((e, id, version)) => {
                let status = if version == Version::V2 {
                    200
                } else {
                    http_status_for(&e)
                };
                (status, Some(reply(Err(e), id, version)))
            }
            Ok(req) => {
                let notification = req.version == Version::V2 && req.id.is_none();
                let result = execute(ctx, req.method, req.params).await;
                if notification {
                    return (204, None);
                }
                let status = match (&result, req.version) {
                    (Err(e), Version::Legacy) => http_status_for(e),
                    _ => 200,
                };
                (status, Some(reply(result, req.id, req.version)))
            }
        },
        // No count of its own for a batch, as in Core: the body's size and its number of JSON
        // values bound it.
        Value::Array(items) => {
            let mut replies = Vec::with_capacity(items.len());
            let total = items.len();
            for item in items {
                match parse_request(&item) {
                    Err((e, id, version)) => replies.push(reply(Err(e), id, version)),
                    Ok(req) => {
                        let notification = req.version == Version::V2 && req.id.is_none();
                        let result = execute(ctx, req.method, req.params).await;
                        if !notification {
                            replies.push(reply(result, req.id, req.version));
                        }
                    }
                }
            }
            if replies.is_empty() && total > 0 {
                (204, None)
            } else {
                (200, Some(Value::Array(replies)))
            }
        }
        _ => {
            let e = RpcError::new(code::PARSE_ERROR, "Top-level object parse error");
            (500, Some(reply(Err(e), None, Version::Legacy)))
        }
    }
}

pub(crate) async fn execute(
    ctx: &Arc<RpcContext>,
    method: String,
    params: Value,
) -> Result<Value, RpcError> {
    // Methods that can hold the chain for long (mining, reorgs, whole blocks) run on the
    // blocking pool; the rest are short and run inline, which saves a thread hop per request.
    let heavy = matches!(
        method.as_str(),
        "generatetoaddress"
            | "generatetodescriptor"
            | "generateblock"
            | "invalidateblock"
            | "reconsiderblock"
            | "faucet"
            | "getblock"
            | "getrawmempool"
            | "stop"
    );
    if !heavy {
        return dispatch(ctx, &method, params);
    }
    let ctx = ctx.clone();
    match tokio::task::spawn_blocking(move || dispatch(&ctx, &method, params)).await {
        Ok(r) => r,
        Err(e) => Err(RpcError::new(
            code::MISC_ERROR,
            format!("internal error: {e}"),
        )),
    }
}
