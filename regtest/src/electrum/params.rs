//! Request parameters, checked as electrs checks them (`-32602` on a bad one).

use std::str::FromStr;

use bitcoin::Txid;
use serde_json::Value;

use crate::node::ScriptHash;

use super::*;

pub(crate) fn param_u32(params: &[Value], i: usize) -> Result<u32, CallError> {
    params
        .get(i)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(CallError::params)
}

pub(crate) fn param_str(params: &[Value], i: usize) -> Result<&str, CallError> {
    params
        .get(i)
        .and_then(Value::as_str)
        .ok_or_else(CallError::params)
}

pub(crate) fn param_scripthash(params: &[Value], i: usize) -> Result<ScriptHash, CallError> {
    if params.len() != 1 {
        return Err(CallError::params());
    }
    ScriptHash::from_str(param_str(params, i)?).map_err(|_| CallError::params())
}

pub(crate) fn param_txid(params: &[Value], i: usize) -> Result<Txid, CallError> {
    Txid::from_str(param_str(params, i)?).map_err(|_| CallError::params())
}

pub(crate) fn no_params(params: &[Value]) -> Result<(), CallError> {
    if params.is_empty() {
        Ok(())
    } else {
        Err(CallError::params())
    }
}
