//! A Bitcoin Core style JSON-RPC server over HTTP/1.1 for the embedded node.
//!
//! It implements the subset of Core's RPC that btcmpc and its tests need (see REGTEST.md) with
//! Core's parameter shapes, result shapes, error codes and HTTP status codes (`httprpc.cpp`):
//! JSON-RPC 1.x requests that fail get HTTP 500 (404 for an unknown method, 400 for an invalid
//! request) with the error object in the body; JSON-RPC 2.0 requests and batches always get
//! HTTP 200; a wrong or missing password gets 401. Connections are kept alive.
//!
//! Besides Core's methods it has one of its own, `faucet ADDRESS AMOUNT_BTC`, which pays from
//! the node's faucet key and mines one block (the embedded node has no wallet).
//!
//! Every read has a timeout, headers are capped at 64 KiB and bodies at [`MAX_BODY`] (HTTP 413,
//! as Core's `evhttp_set_max_body_size`) and a body at [`crate::electrum::MAX_JSON_TOKENS`]
//! JSON values (HTTP 400 with a JSON-RPC error), which bounds a batch (Core counts no batch);
//! bodies above 64 KiB are read and handled a few at a time ([`crate::limits::Limits::large_inputs`]).
//! Connections are capped at [`crate::limits::Limits::rpc_connections`]; a new client is admitted by closing
//! the least recently active idle connection (policy of [`crate::limits`]). So a slow, silent
//! or malicious client only ever costs its own connection.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::faucet::Faucet;
use crate::node::{Node, Reject};
use crate::server::Shutdown;

mod blockchain;
mod control;
mod http;
mod jsonrpc;
mod mining;
mod params;
mod rawtx;

pub use http::{serve, serve_with};

pub use crate::limits::MAX_BODY;
/// The largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// How long an idle kept-alive connection stays open (Core's `-rpcservertimeout` default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send a whole request once it started.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Core's RPC error codes used here.
pub(crate) mod code {
    pub const MISC_ERROR: i64 = -1;
    pub const TYPE_ERROR: i64 = -3;
    pub const INVALID_ADDRESS_OR_KEY: i64 = -5;
    pub const WALLET_INSUFFICIENT_FUNDS: i64 = -6;
    pub const INVALID_PARAMETER: i64 = -8;
    pub const DESERIALIZATION_ERROR: i64 = -22;
    pub const VERIFY_ERROR: i64 = -25;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const PARSE_ERROR: i64 = -32700;
}

/// The credentials a server accepts, as `user:password` strings.
#[derive(Clone)]
pub struct RpcCredentials {
    accepted: Vec<String>,
}

impl std::fmt::Debug for RpcCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcCredentials")
            .field("count", &self.accepted.len())
            .finish()
    }
}

impl RpcCredentials {
    /// Accept `user:password` pairs (for the cookie: `__cookie__:HEX`).
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        RpcCredentials {
            accepted: pairs.into_iter().map(|(u, p)| format!("{u}:{p}")).collect(),
        }
    }

    fn check(&self, header: Option<&str>) -> bool {
        let Some(h) = header else { return false };
        let Some(b64) = h.trim().strip_prefix("Basic ") else {
            return false;
        };
        let Some(decoded) = crate::rpc_client::base64_decode(b64.trim()) else {
            return false;
        };
        // Compare every candidate in full so the time does not depend on where they differ.
        self.accepted.iter().fold(false, |ok, cand| {
            let same = cand.len() == decoded.len()
                && cand
                    .as_bytes()
                    .iter()
                    .zip(&decoded)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            ok | same
        })
    }
}

/// What the RPC handlers share.
#[derive(Debug, Clone)]
pub struct RpcContext {
    /// The node.
    pub node: Node,
    /// The faucet, if this node has one.
    pub faucet: Option<Arc<Faucet>>,
    /// Triggered by the `stop` method.
    pub shutdown: Shutdown,
}

/// A JSON-RPC error: Core's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// Core's error code.
    pub code: i64,
    /// The message.
    pub message: String,
}

impl RpcError {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    fn to_json(&self) -> Value {
        json!({"code": self.code, "message": self.message})
    }
}

impl From<Reject> for RpcError {
    fn from(r: Reject) -> Self {
        RpcError::new(i64::from(r.code), send_error_message(&r))
    }
}

/// The message `sendrawtransaction` prints for a refusal: the validation state's text, reject
/// reason and details. Core 31's `HandleATMPError` sets the error string to
/// `state.ToString()` for every refusal, missing inputs included (-25
/// `bad-txns-inputs-missingorspent`); its generic `TransactionErrorString` ("Inputs missing or
/// spent") is used only when that string is empty, which it never is for a mempool refusal.
pub(crate) fn send_error_message(r: &Reject) -> String {
    r.message()
}

/// Run one method (blocking: call it off the async executor).
///
/// # Errors
///
/// The Core-style [`RpcError`] of the method.
pub fn dispatch(ctx: &RpcContext, method: &str, raw: Value) -> Result<Value, RpcError> {
    match method {
        "getblockcount" | "getbestblockhash" | "getblockchaininfo" | "getblockhash"
        | "getblockheader" | "getblock" | "gettxout" => blockchain::call(ctx, method, raw),
        "getrawtransaction" | "sendrawtransaction" | "testmempoolaccept" | "getrawmempool"
        | "getmempoolentry" | "getmempoolinfo" => rawtx::call(ctx, method, raw),
        "generatetoaddress"
        | "generatetodescriptor"
        | "generateblock"
        | "invalidateblock"
        | "reconsiderblock" => mining::call(ctx, method, raw),
        "estimatesmartfee" | "setmocktime" | "uptime" | "stop" | "faucet" => {
            control::call(ctx, method, raw)
        }
        _ => Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::params::*;
    use super::*;
    use crate::core_json::*;
    use bitcoin::{Amount, ScriptBuf, Txid};
    use proptest::strategy::Strategy as _;

    #[test]
    fn asm_like_core() {
        let spk = ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap();
        assert_eq!(
            script_asm(&spk),
            "0 751e76e8199196d454941c45d1b3a323f1433bd6"
        );
        assert_eq!(script_type(&spk), "witness_v0_keyhash");
        // A CLTV script: <500> OP_CHECKLOCKTIMEVERIFY OP_DROP.
        let s = ScriptBuf::from_hex("02f401b175").unwrap();
        assert!(script_asm(&s).starts_with("500 OP_"));
        let neg = ScriptBuf::from_hex("0181").unwrap();
        assert_eq!(script_asm(&neg), "-1");
    }

    #[test]
    fn hash_parameter_errors_match_core() {
        let e = parse_hash::<Txid>("abc", "txid").unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMETER);
        assert_eq!(e.message, "txid must be of length 64 (not 3, for 'abc')");
        let bad = "z".repeat(64);
        let e = parse_hash::<Txid>(&bad, "txid").unwrap_err();
        assert_eq!(
            e.message,
            format!("txid must be hexadecimal string (not '{bad}')")
        );
    }

    #[test]
    fn credentials_check() {
        let c = RpcCredentials::new([("__cookie__".to_string(), "ab".to_string())]);
        let good = format!(
            "Basic {}",
            crate::rpc_client::base64_encode(b"__cookie__:ab")
        );
        let bad = format!(
            "Basic {}",
            crate::rpc_client::base64_encode(b"__cookie__:ac")
        );
        assert!(c.check(Some(&good)));
        assert!(!c.check(Some(&bad)));
        assert!(!c.check(None));
        assert!(!c.check(Some("Bearer x")));
    }

    #[test]
    fn amounts_and_fee_rates() {
        assert_eq!(
            amount_from_value(&json!(0.0001)).unwrap(),
            Amount::from_sat(10_000)
        );
        assert_eq!(
            amount_from_value(&json!("1.5")).unwrap(),
            Amount::from_sat(150_000_000)
        );
        assert!(amount_from_value(&json!(0.000000001)).is_err());
        assert!(amount_from_value(&json!(-1)).is_err());
        let r = fee_rate_from_btc_per_kvb(&json!(0.0001)).unwrap();
        assert_eq!(btc_per_kvb(r), json!(0.0001));
        assert!(fee_rate_from_btc_per_kvb(&json!(1)).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Every method with arbitrary parameters returns a result or a Core error, never
        /// panics (mining and stop are left out: they are valid with most inputs).
        #[test]
        fn every_method_with_any_params(
            m in proptest::sample::select(vec![
                "getblockchaininfo", "getblockcount", "getbestblockhash", "getblockhash",
                "getblockheader", "getblock", "getrawtransaction", "sendrawtransaction",
                "testmempoolaccept", "getrawmempool", "getmempoolentry", "getmempoolinfo",
                "gettxout", "invalidateblock", "reconsiderblock", "estimatesmartfee",
                "faucet", "nosuchmethod",
            ]),
            params in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(Value::Null),
                    proptest::arbitrary::any::<bool>().prop_map(Value::Bool),
                    proptest::arbitrary::any::<i64>().prop_map(|n| json!(n)),
                    proptest::arbitrary::any::<f64>().prop_map(|f| json!(f)),
                    ".{0,70}".prop_map(Value::String),
                    "[0-9a-f]{64}".prop_map(Value::String),
                    "[0-9a-f]{0,300}".prop_map(Value::String),
                    proptest::collection::vec("[0-9a-f]{0,80}", 0..3)
                        .prop_map(|v| json!(v)),
                ],
                0..4,
            ),
        ) {
            let ctx = RpcContext {
                node: Node::open(crate::node::NodeConfig::in_memory()).unwrap(),
                faucet: None,
                shutdown: Shutdown::new(),
            };
            match dispatch(&ctx, m, Value::Array(params)) {
                Ok(_) => {}
                Err(e) => proptest::prop_assert!(e.code < 0 && !e.message.is_empty()),
            }
        }
    }
}
