//! Any user-supplied Miniscript policy compiled to a taproot or segwit v0 descriptor
//! (`btcmpc contract compile`).

use std::str::FromStr;

use bitcoin::{Address, Network, Weight};
use miniscript::policy::Concrete;
use miniscript::{Descriptor, Miniscript, Segwitv0};

use crate::keys::nums_h;
use crate::locks::{check_locks_in, Lock};
use crate::witness::{key_path_witness_weight, tap_leaf_witness_size, wsh_witness_size, SigSizes};
use crate::Error;

/// The descriptor type to compile to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    /// Taproot (`tr`), with BIP341's NUMS point `H` as internal key unless the compiler
    /// lifts one of the policy's keys into the key path.
    #[default]
    Tr,
    /// Segwit v0 (`wsh`).
    Wsh,
}

/// One spend path of a compiled policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyPath {
    /// `key` for the taproot key path, `leaf N` for a tapscript leaf, `script` for wsh.
    pub name: String,
    /// The Miniscript of the leaf or witness script (`None` for the key path).
    pub miniscript: Option<String>,
    /// Its script size in bytes (0 for the key path).
    pub script_size: usize,
    /// The largest witness of any spend on this path, in bytes (weight units), including the
    /// stack-item count, the script and the control block: computed as Bitcoin Core's
    /// `CalcWitnessSize` with [`SigSizes::ANY_SIGHASH`] (72-byte ECDSA, 65-byte Schnorr
    /// signatures), so never below the witness of any satisfaction; a signer using
    /// `SIGHASH_DEFAULT` makes tapscript witnesses one byte smaller per signature.
    pub witness_size: Weight,
}

/// A compiled user policy.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    /// The policy as parsed.
    pub policy: Concrete<bitcoin::PublicKey>,
    /// The descriptor.
    pub descriptor: Descriptor<bitcoin::PublicKey>,
    /// The spend paths.
    pub paths: Vec<PolicyPath>,
    /// Every `after(n)` and `older(n)` of the policy with its meaning, in order.
    pub locks: Vec<(String, Lock)>,
}

impl CompiledPolicy {
    /// The address on `network`.
    pub fn address(&self, network: Network) -> Address {
        self.descriptor
            .address(network)
            .expect("tr and wsh descriptors always have an address")
    }

    /// The output script's size in bytes.
    pub fn script_pubkey_size(&self) -> usize {
        self.descriptor.script_pubkey().len()
    }
}

/// Parse and compile a Miniscript policy. Keys are 33-byte compressed keys (66 hex).
///
/// Every lock value is checked first ([`check_locks_in`]: Bitcoin Core's range and BIP68's
/// bits), and every compiled script must pass Miniscript's sanity checks (what Core's
/// descriptor parser requires: non-malleable, a signature on every path, no mixed height and
/// time locks, no repeated keys, within resource limits), so the descriptor is one Core's
/// `getdescriptorinfo` accepts.
///
/// # Errors
/// [`Error::InvalidLock`] for a lock value outside Core's rules, [`Error::Policy`] when the
/// policy does not parse, [`Error::Compile`] when it cannot be compiled (unsafe, malleable,
/// too many leaves, ...), [`Error::NotSane`] when a compiled script fails a sanity check.
pub fn compile_policy(policy: &str, target: Target) -> Result<CompiledPolicy, Error> {
    let text = policy.trim();
    let locks = check_locks_in(text)?;
    let parsed = Concrete::<bitcoin::PublicKey>::from_str(text).map_err(|e| Error::Policy {
        policy: text.to_owned(),
        reason: e.to_string(),
    })?;
    let (name, result) = match target {
        Target::Tr => (
            "tr",
            match single_key(&parsed) {
                // `compile_tr` lifts the key into the key path and then finds no leaf to
                // compile, which it reports as an error; a single key is a key-path-only output.
                Some(key) => Descriptor::new_tr(key, None),
                None => parsed.compile_tr(Some(bitcoin::PublicKey::new(nums_h()))),
            },
        ),
        Target::Wsh => (
            "wsh",
            parsed
                .compile::<Segwitv0>()
                .map_err(miniscript::Error::from)
                .and_then(Descriptor::new_wsh),
        ),
    };
    let descriptor = result.map_err(|e| Error::Compile {
        target: name,
        reason: e.to_string(),
    })?;
    let impossible = |ms: &dyn std::fmt::Display| Error::Compile {
        target: name,
        reason: format!("{ms} cannot be satisfied"),
    };
    let sigs = SigSizes::ANY_SIGHASH;
    let mut paths = Vec::new();
    match &descriptor {
        Descriptor::Tr(tr) => {
            if *tr.internal_key() != bitcoin::PublicKey::new(nums_h()) {
                paths.push(PolicyPath {
                    name: "key".to_owned(),
                    miniscript: None,
                    script_size: 0,
                    witness_size: key_path_witness_weight(sigs),
                });
            }
            for (i, (depth, ms)) in tr.iter_scripts().enumerate() {
                sane(name, ms)?;
                let size = tap_leaf_witness_size(ms, depth, sigs).ok_or_else(|| impossible(ms))?;
                paths.push(PolicyPath {
                    name: format!("leaf {i}"),
                    miniscript: Some(ms.to_string()),
                    script_size: ms.script_size(),
                    witness_size: Weight::from_wu(size as u64),
                });
            }
        }
        Descriptor::Wsh(wsh) => {
            let ms: &Miniscript<bitcoin::PublicKey, Segwitv0> = match wsh.as_inner() {
                miniscript::descriptor::WshInner::Ms(ms) => ms,
                miniscript::descriptor::WshInner::SortedMulti(_) => {
                    unreachable!("the compiler never builds sortedmulti")
                }
            };
            sane(name, ms)?;
            let size = wsh_witness_size(ms, sigs).ok_or_else(|| impossible(ms))?;
            paths.push(PolicyPath {
                name: "script".to_owned(),
                miniscript: Some(ms.to_string()),
                script_size: ms.script_size(),
                witness_size: Weight::from_wu(size as u64),
            });
        }
        _ => unreachable!("only tr and wsh are compiled here"),
    }
    // The descriptor as printed carries the same locks (belt and braces: the compiler never
    // invents one).
    check_locks_in(&descriptor.to_string())?;
    Ok(CompiledPolicy {
        policy: parsed,
        descriptor,
        paths,
        locks,
    })
}

/// Miniscript's sanity checks, which Core's descriptor parser also requires (`IsSane`).
fn sane<Ctx: miniscript::ScriptContext>(
    target: &'static str,
    ms: &Miniscript<bitcoin::PublicKey, Ctx>,
) -> Result<(), Error> {
    ms.sanity_check().map_err(|e| Error::NotSane {
        target,
        miniscript: ms.to_string(),
        reason: e.to_string(),
    })
}

/// The key, when the policy means exactly "this key signs".
fn single_key(policy: &Concrete<bitcoin::PublicKey>) -> Option<bitcoin::PublicKey> {
    use miniscript::policy::{Liftable, Semantic};
    match policy.lift().ok()?.normalized() {
        Semantic::Key(k) => Some(k),
        _ => None,
    }
}
