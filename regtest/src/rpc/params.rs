//! Method parameters as Core parses them: positional or named, typed, with Core's messages.

use std::str::FromStr;

use bitcoin::consensus::encode::deserialize;
use bitcoin::{Address, Amount, FeeRate, Network, ScriptBuf, Transaction};
use serde_json::Value;

use crate::node::NodeError;

use super::*;

/// Positional parameters after mapping named ones.
pub(crate) struct Params<'a> {
    pub(crate) method: &'a str,
    pub(crate) usage: &'a str,
    pub(crate) names: &'a [&'a str],
    pub(crate) vals: Vec<Value>,
}

impl<'a> Params<'a> {
    pub(crate) fn new(
        method: &'a str,
        names: &'a [&'a str],
        required: usize,
        usage: &'a str,
        raw: Value,
    ) -> Result<Self, RpcError> {
        let vals = match raw {
            Value::Array(v) => v,
            Value::Object(map) => {
                let mut vals = vec![Value::Null; names.len()];
                let mut last = 0;
                for (k, v) in map {
                    let Some(i) = names.iter().position(|n| *n == k) else {
                        return Err(RpcError::new(
                            code::INVALID_PARAMETER,
                            format!("Unknown named parameter {k}"),
                        ));
                    };
                    last = last.max(i + 1);
                    vals[i] = v;
                }
                vals.truncate(last);
                vals
            }
            _ => Vec::new(),
        };
        let given = vals.iter().rposition(|v| !v.is_null()).map_or(0, |i| i + 1);
        if vals.len() > names.len() || given < required {
            return Err(RpcError::new(code::MISC_ERROR, format!("{method} {usage}")));
        }
        // Required parameters may not be null.
        if vals.iter().take(required).any(Value::is_null) {
            return Err(RpcError::new(code::MISC_ERROR, format!("{method} {usage}")));
        }
        Ok(Params {
            method,
            usage,
            names,
            vals,
        })
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Value> {
        self.vals.get(i).filter(|v| !v.is_null())
    }

    pub(crate) fn name(&self, i: usize) -> &str {
        self.names.get(i).copied().unwrap_or("param")
    }

    pub(crate) fn required(&self, i: usize) -> Result<&Value, RpcError> {
        self.get(i).ok_or_else(|| {
            RpcError::new(code::MISC_ERROR, format!("{} {}", self.method, self.usage))
        })
    }

    pub(crate) fn u64_opt(&self, i: usize) -> Result<Option<u64>, RpcError> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) => Ok(Some(n)),
                None if v.is_number() => Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    format!("{} out of range", self.name(i)),
                )),
                None => Err(type_error(v, "number")),
            },
        }
    }

    pub(crate) fn i64_opt(&self, i: usize) -> Result<Option<i64>, RpcError> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| type_error(v, "number")),
        }
    }

    pub(crate) fn str(&self, i: usize) -> Result<&str, RpcError> {
        let v = self.required(i)?;
        v.as_str().ok_or_else(|| type_error(v, "string"))
    }

    pub(crate) fn str_opt(&self, i: usize) -> Result<Option<&str>, RpcError> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| type_error(v, "string")),
        }
    }

    pub(crate) fn bool_opt(&self, i: usize) -> Result<Option<bool>, RpcError> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| type_error(v, "bool")),
        }
    }

    /// A verbosity given as a bool or a number (Core's `ParseVerbosity`).
    pub(crate) fn verbosity(&self, i: usize, default: u64) -> Result<u64, RpcError> {
        match self.get(i) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(u64::from(*b)),
            Some(v) => v.as_u64().ok_or_else(|| type_error(v, "number")),
        }
    }

    pub(crate) fn hash<T: FromStr + bitcoin::hashes::Hash>(&self, i: usize) -> Result<T, RpcError> {
        let s = self.str(i)?;
        parse_hash::<T>(s, self.name(i))
    }

    /// As [`Params::hash`], naming the value `name` in errors where Core's code does so
    /// under another name than the parameter's (`getblockheader` parses `blockhash` as `hash`).
    pub(crate) fn hash_as<T: FromStr + bitcoin::hashes::Hash>(
        &self,
        i: usize,
        name: &str,
    ) -> Result<T, RpcError> {
        parse_hash::<T>(self.str(i)?, name)
    }
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub(crate) fn type_error(v: &Value, expected: &str) -> RpcError {
    RpcError::new(
        code::TYPE_ERROR,
        format!(
            "JSON value of type {} is not of expected type {expected}",
            json_type(v)
        ),
    )
}

/// Core's `ParseHashV`.
pub(crate) fn parse_hash<T: FromStr + bitcoin::hashes::Hash>(
    s: &str,
    name: &str,
) -> Result<T, RpcError> {
    if s.len() != 64 {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{s}')"),
        ));
    }
    T::from_str(s).map_err(|_| {
        RpcError::new(
            code::INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{s}')"),
        )
    })
}

/// Core's `AmountFromValue` (BTC as a number or a string, at most 8 decimals).
pub(crate) fn amount_from_value(v: &Value) -> Result<Amount, RpcError> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => return Err(type_error(other, "number")),
    };
    let amount = Amount::from_str_in(&text, bitcoin::Denomination::Bitcoin)
        .map_err(|_| RpcError::new(code::TYPE_ERROR, "Invalid amount"))?;
    if amount > Amount::MAX_MONEY {
        return Err(RpcError::new(code::TYPE_ERROR, "Amount out of range"));
    }
    Ok(amount)
}

/// A fee rate from Core's BTC/kvB parameter.
pub(crate) fn fee_rate_from_btc_per_kvb(v: &Value) -> Result<FeeRate, RpcError> {
    let amount = amount_from_value(v)?;
    if amount >= Amount::ONE_BTC {
        return Err(RpcError::new(
            code::INVALID_PARAMETER,
            "Fee rates larger than or equal to 1BTC/kvB are not accepted",
        ));
    }
    Ok(FeeRate::from_sat_per_kwu(amount.to_sat() / 4))
}

pub(crate) fn parse_address(s: &str) -> Result<Address, RpcError> {
    Address::from_str(s)
        .ok()
        .and_then(|a| a.require_network(Network::Regtest).ok())
        .ok_or_else(|| RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Error: Invalid address"))
}

pub(crate) fn decode_tx(hex_str: &str) -> Option<Transaction> {
    let bytes = hex::decode(hex_str).ok()?;
    deserialize::<Transaction>(&bytes).ok()
}

pub(crate) fn node_error(e: NodeError) -> RpcError {
    match e {
        NodeError::BlockNotFound(_) => {
            RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block not found")
        }
        NodeError::Genesis(_) => RpcError::new(
            code::INVALID_PARAMETER,
            "Cannot invalidate the genesis block",
        ),
        NodeError::BlockRefused(r) => RpcError::new(code::VERIFY_ERROR, r.message()),
        other => RpcError::new(code::MISC_ERROR, other.to_string()),
    }
}

/// An output given as an address or as an `addr(...)` / `raw(HEX)` descriptor.
pub(crate) fn parse_output(s: &str) -> Result<ScriptBuf, RpcError> {
    let bad = || {
        RpcError::new(
            code::INVALID_ADDRESS_OR_KEY,
            "Error: Invalid address or descriptor",
        )
    };
    let desc = s.split('#').next().unwrap_or(s);
    if let Some(inner) = desc.strip_prefix("addr(").and_then(|r| r.strip_suffix(')')) {
        return parse_address(inner)
            .map(|a| a.script_pubkey())
            .map_err(|_| bad());
    }
    if let Some(inner) = desc.strip_prefix("raw(").and_then(|r| r.strip_suffix(')')) {
        return hex::decode(inner)
            .map(ScriptBuf::from_bytes)
            .map_err(|_| bad());
    }
    parse_address(s)
        .map(|a| a.script_pubkey())
        .map_err(|_| bad())
}
