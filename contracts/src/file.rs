//! The contract file: a versioned JSON document with stable field names.
//!
//! ```json
//! {
//!   "version": 1,
//!   "kind": "claim-or-refund" | "bond" | "anchor",
//!   "network": "regtest",
//!   "parameters": { "receiver", "sender", "hash", "timeout" }
//!               | { "party", "judges": [...], "k", "exit" }
//!               | { "key" },
//!   "internal_key": { "kind": "nums" | "nums-tweaked" | "cooperative", "r"?, "key" },
//!   "policy": "...", "descriptor": "...", "script_pubkey": "...", "address": "...",
//!   "spend_paths": [ { "path", "miniscript", "after", "witness_weight" } ]
//! }
//! ```
//!
//! Keys print as 33-byte compressed hex; heights as numbers. An anchor has no `internal_key`
//! (its key is the internal key). Everything after `internal_key` is derived: loading a file
//! re-derives it from the parameters and refuses a file where any of it disagrees, naming the
//! field. Object keys are written in sorted order so a file's bytes depend only on its content.

use bitcoin::Network;
use serde_json::{json, Map, Value};

use crate::keys::{encode_hex, parse_hash, parse_key, parse_scalar};
use crate::{
    Anchor, Bond, ClaimOrRefund, CompiledContract, Contract, Error, FileError, Height, InternalKey,
};

/// The contract-file version this build writes and reads.
pub const FILE_VERSION: u64 = 1;

/// A contract with its network, as stored in a contract file.
#[derive(Debug, Clone)]
pub struct ContractFile {
    network: Network,
    compiled: CompiledContract,
}

impl ContractFile {
    /// A contract file for `contract` on `network`.
    ///
    /// # Errors
    /// As [`Contract::compile`].
    pub fn new(contract: Contract, network: Network) -> Result<ContractFile, Error> {
        Ok(ContractFile {
            network,
            compiled: contract.compile()?,
        })
    }

    /// The network.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The contract's parameters.
    pub fn contract(&self) -> &Contract {
        self.compiled.contract()
    }

    /// The compiled contract (descriptor, spend paths, builders).
    pub fn compiled(&self) -> &CompiledContract {
        &self.compiled
    }

    /// The file as a JSON value.
    pub fn to_value(&self) -> Value {
        let c = &self.compiled;
        let parameters = match c.contract() {
            Contract::ClaimOrRefund(p) => json!({
                "receiver": p.receiver.to_string(),
                "sender": p.sender.to_string(),
                "hash": p.hash.to_string(),
                "timeout": p.timeout.to_u32(),
            }),
            Contract::Bond(p) => json!({
                "party": p.party.to_string(),
                "judges": p.judges.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "k": p.k,
                "exit": p.exit.to_u32(),
            }),
            Contract::Anchor(p) => json!({ "key": p.key.to_string() }),
        };
        let mut doc = json!({
            "version": FILE_VERSION,
            "kind": c.contract().kind(),
            "network": self.network.to_string(),
            "parameters": parameters,
        });
        let internal = match c.contract() {
            Contract::ClaimOrRefund(p) => Some(p.internal_key),
            Contract::Bond(p) => Some(p.internal_key),
            Contract::Anchor(_) => None,
        };
        let derived = derived_fields(c, self.network);
        let obj = doc.as_object_mut().expect("built as an object");
        if let Some(ik) = internal {
            let mut v = json!({ "kind": ik.kind(), "key": ik.public_key().to_string() });
            if let InternalKey::NumsTweaked { r } = ik {
                v["r"] = Value::String(encode_hex(&r.secret_bytes()));
            }
            obj.insert("internal_key".to_owned(), v);
        }
        obj.extend(derived);
        doc
    }

    /// The file's text: pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(&self.to_value())
            .expect("a serde_json::Value always serializes");
        s.push('\n');
        s
    }

    /// Read a contract file, re-derive everything from its parameters, and check that every
    /// derived field in the file agrees.
    ///
    /// # Errors
    /// [`FileError::Json`] for text that is not JSON; [`FileError::Version`];
    /// [`FileError::Field`] naming a missing, unknown or malformed field;
    /// [`FileError::Mismatch`] naming the first derived field that disagrees.
    pub fn from_json(text: &str) -> Result<ContractFile, FileError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| FileError::Json {
            reason: e.to_string(),
        })?;
        let top = as_object(&doc, "contract file")?;
        let version = top
            .get("version")
            .ok_or_else(|| field_err("version", "missing"))?
            .as_u64()
            .ok_or_else(|| field_err("version", "not a number"))?;
        if version != FILE_VERSION {
            return Err(FileError::Version { found: version });
        }
        check_known(
            top,
            "",
            &[
                "version",
                "kind",
                "network",
                "parameters",
                "internal_key",
                "policy",
                "descriptor",
                "script_pubkey",
                "address",
                "spend_paths",
            ],
        )?;
        let kind = get_str(top, "", "kind")?;
        let network_text = get_str(top, "", "network")?;
        let network: Network = network_text
            .parse()
            .map_err(|_| field_err("network", &format!("unknown network {network_text:?}")))?;
        let params = as_object(
            top.get("parameters")
                .ok_or_else(|| field_err("parameters", "missing"))?,
            "parameters",
        )?;
        let p = "parameters.";
        let internal = || -> Result<InternalKey, FileError> {
            let ik = as_object(
                top.get("internal_key")
                    .ok_or_else(|| field_err("internal_key", "missing"))?,
                "internal_key",
            )?;
            check_known(ik, "internal_key.", &["kind", "r", "key"])?;
            let key = parse_key("internal_key.key", get_str(ik, "internal_key.", "key")?)?;
            let parsed = match get_str(ik, "internal_key.", "kind")? {
                "nums" => InternalKey::Nums,
                "nums-tweaked" => InternalKey::NumsTweaked {
                    r: parse_scalar("internal_key.r", get_str(ik, "internal_key.", "r")?)?,
                },
                "cooperative" => InternalKey::Cooperative(key),
                other => {
                    return Err(field_err(
                        "internal_key.kind",
                        &format!("unknown kind {other:?}"),
                    ))
                }
            };
            if parsed.public_key() != key {
                return Err(FileError::Mismatch {
                    field: "internal_key.key".to_owned(),
                    in_file: key.to_string(),
                    derived: parsed.public_key().to_string(),
                });
            }
            Ok(parsed)
        };
        let contract = match kind {
            "claim-or-refund" => {
                check_known(params, p, &["receiver", "sender", "hash", "timeout"])?;
                Contract::ClaimOrRefund(ClaimOrRefund {
                    receiver: parse_key("parameters.receiver", get_str(params, p, "receiver")?)?,
                    sender: parse_key("parameters.sender", get_str(params, p, "sender")?)?,
                    hash: parse_hash("parameters.hash", get_str(params, p, "hash")?)?,
                    timeout: get_height(params, p, "timeout")?,
                    internal_key: internal()?,
                })
            }
            "bond" => {
                check_known(params, p, &["party", "judges", "k", "exit"])?;
                let judges = params
                    .get("judges")
                    .ok_or_else(|| field_err("parameters.judges", "missing"))?
                    .as_array()
                    .ok_or_else(|| field_err("parameters.judges", "not an array"))?
                    .iter()
                    .enumerate()
                    .map(|(i, j)| {
                        let field = format!("parameters.judges[{i}]");
                        let text = j
                            .as_str()
                            .ok_or_else(|| field_err(&field, "not a string"))?;
                        Ok(parse_key(&field, text)?)
                    })
                    .collect::<Result<Vec<_>, FileError>>()?;
                let k = params
                    .get("k")
                    .ok_or_else(|| field_err("parameters.k", "missing"))?
                    .as_u64()
                    .and_then(|k| usize::try_from(k).ok())
                    .ok_or_else(|| field_err("parameters.k", "not a whole number"))?;
                Contract::Bond(Bond {
                    party: parse_key("parameters.party", get_str(params, p, "party")?)?,
                    judges,
                    k,
                    exit: get_height(params, p, "exit")?,
                    internal_key: internal()?,
                })
            }
            "anchor" => {
                check_known(params, p, &["key"])?;
                if top.contains_key("internal_key") {
                    return Err(field_err(
                        "internal_key",
                        "an anchor has no separate internal key",
                    ));
                }
                Contract::Anchor(Anchor {
                    key: parse_key("parameters.key", get_str(params, p, "key")?)?,
                })
            }
            other => return Err(field_err("kind", &format!("unknown kind {other:?}"))),
        };
        let file = ContractFile::new(contract, network)?;
        let derived = derived_fields(&file.compiled, network);
        for (field, want) in derived {
            let got = top
                .get(&field)
                .ok_or_else(|| field_err(&field, "missing"))?;
            // Files written while witness weights were upper bounds (65-byte signatures: one
            // byte more per signature of the path) still load; anything else is refused.
            let same =
                *got == want || (field == "spend_paths" && *got == legacy_paths(&file.compiled));
            if !same {
                return Err(FileError::Mismatch {
                    field,
                    in_file: compact(got),
                    derived: compact(&want),
                });
            }
        }
        Ok(file)
    }
}

/// `spend_paths` as written before witness weights were exact: each path's weight was one
/// byte more per signature (65-byte signatures instead of `SIGHASH_DEFAULT`'s 64).
fn legacy_paths(c: &CompiledContract) -> Value {
    Value::Array(
        c.spend_paths()
            .iter()
            .map(|p| path_json(p, p.witness_weight.to_wu() + p.threshold as u64))
            .collect(),
    )
}

/// One spend path as contract files write it (an item of `spend_paths`): `path` (its name),
/// `miniscript` (the leaf, null for the key path), `after` (the height it needs, null for
/// none) and `witness_weight` ([`SpendPath::witness_weight`](crate::SpendPath::witness_weight),
/// weight units).
pub fn spend_path_json(p: &crate::SpendPath) -> Value {
    path_json(p, p.witness_weight.to_wu())
}

fn path_json(p: &crate::SpendPath, witness_weight: u64) -> Value {
    json!({
        "path": p.kind.name(),
        "miniscript": p.leaf.as_ref().map(|l| l.miniscript.to_string()),
        "after": p.after.map(Height::to_u32),
        "witness_weight": witness_weight,
    })
}

/// The fields a contract file repeats for readers, all derived from the parameters.
fn derived_fields(c: &CompiledContract, network: Network) -> Map<String, Value> {
    let paths: Vec<Value> = c.spend_paths().iter().map(spend_path_json).collect();
    let mut m = Map::new();
    m.insert(
        "policy".to_owned(),
        Value::String(c.contract().policy_text()),
    );
    m.insert(
        "descriptor".to_owned(),
        Value::String(c.descriptor().to_string()),
    );
    m.insert(
        "script_pubkey".to_owned(),
        Value::String(encode_hex(c.script_pubkey().as_bytes())),
    );
    m.insert(
        "address".to_owned(),
        Value::String(c.address(network).to_string()),
    );
    m.insert("spend_paths".to_owned(), Value::Array(paths));
    m
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn field_err(field: &str, reason: &str) -> FileError {
    FileError::Json {
        reason: format!("{field}: {reason}"),
    }
}

fn as_object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, FileError> {
    v.as_object()
        .ok_or_else(|| field_err(field, "not a JSON object"))
}

fn check_known(obj: &Map<String, Value>, prefix: &str, known: &[&str]) -> Result<(), FileError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(field_err(&format!("{prefix}{k}"), "unknown field")),
        None => Ok(()),
    }
}

fn get_str<'a>(
    obj: &'a Map<String, Value>,
    prefix: &str,
    name: &str,
) -> Result<&'a str, FileError> {
    obj.get(name)
        .ok_or_else(|| field_err(&format!("{prefix}{name}"), "missing"))?
        .as_str()
        .ok_or_else(|| field_err(&format!("{prefix}{name}"), "not a string"))
}

fn get_height(obj: &Map<String, Value>, prefix: &str, name: &str) -> Result<Height, FileError> {
    let field = format!("{prefix}{name}");
    let v = obj.get(name).ok_or_else(|| field_err(&field, "missing"))?;
    let bad = || {
        FileError::Field(Error::InvalidHeight {
            field: field.clone(),
            value: v.to_string(),
        })
    };
    let n = v.as_u64().ok_or_else(bad)?;
    let n = u32::try_from(n).map_err(|_| bad())?;
    Height::new(n).map_err(|_| bad())
}
