//! Wallet operations of setup and access control: fund and withdraw a party's bond, publish a
//! dataset's STORE record with its first anchor, and extend the anchor with a GRANT or REVOKE.
//!
//! Every transaction is built from this wallet's own records and chain view (the anchor output
//! is re-read from the chain and must pay the anchor script; the anchor key must be this
//! wallet's), signed, run through Bitcoin Core's script interpreter, and only then broadcast
//! (recorded first, so the wallet re-broadcasts it until it is buried).

use std::path::Path;

use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::PublicKey;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Weight, Witness,
};
use btcmpc_contracts::{
    finalize_and_verify, sign_input, verify_spend, Anchor, Contract, ContractFile, FeeInput,
    Funding, SpendError, Utxo,
};
use btcmpc_wallet::{
    BroadcastKind, ChainClient, FeeChoice, RoleWallet, WalletError, DEFAULT_FEE_POLICY,
};
use serde::{Deserialize, Serialize};

use super::acl::{anchor_script, dataset_id, Record};
use super::card::{read_bounded, write_atomic, SetupError};
use super::roster::Roster;

/// Witness weight of a BIP86 key-path input, with its stack-item count (67: the bound for a
/// signature of any sighash type).
const BIP86_SATISFACTION: Weight =
    btcmpc_contracts::key_path_witness_weight(btcmpc_contracts::SigSizes::ANY_SIGHASH);

/// A failed wallet operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// The wallet refused or failed.
    #[error(transparent)]
    Wallet(#[from] WalletError),
    /// A spend could not be built or was refused by the interpreter.
    #[error(transparent)]
    Spend(#[from] SpendError),
    /// A roster or card problem.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The wallet's spendable outputs do not pay for the transaction (`needed` says what).
    #[error("cannot build transaction: this wallet's funds do not cover {needed}")]
    NoFunds {
        /// What was to be paid.
        needed: &'static str,
    },
    /// Anything else, said plainly.
    #[error("{0}")]
    Refused(String),
}

/// The wallet's unspent outputs, largest first, with the PSBT inputs that let it sign them.
fn spendable(wallet: &RoleWallet) -> Result<Vec<(FeeInput, bitcoin::psbt::Input)>, OpsError> {
    Ok(wallet
        .spendable_outputs()?
        .into_iter()
        .map(|(outpoint, txout, input)| {
            let fee_input = FeeInput {
                utxo: Utxo { outpoint, txout },
                satisfaction_weight: BIP86_SATISFACTION,
            };
            (fee_input, input)
        })
        .collect())
}

fn no_funds(needed: &'static str) -> OpsError {
    OpsError::NoFunds { needed }
}

/// What [`publish_store`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorePublished {
    /// The STORE transaction.
    pub txid: Txid,
    /// The first anchor output.
    pub outpoint: OutPoint,
    /// The dataset id, hex.
    pub dataset_id: String,
}

/// Publish a dataset's STORE transaction: output 0 is the first anchor (a dust-limit P2TR
/// output of `anchor_key`, which must be this wallet's contract key), output 1 the
/// `OP_RETURN` STORE record with `receipts_root`, output 2 the change; paid from this wallet's
/// BIP86 outputs at `fee_rate`.
///
/// # Errors
/// [`OpsError`]: an anchor key this wallet does not hold, insufficient funds, a refused spend
/// or broadcast.
pub fn publish_store(
    wallet: &mut RoleWallet,
    chain: &ChainClient,
    anchor_key: &PublicKey,
    receipts_root: [u8; 32],
    fee: impl Into<FeeChoice>,
) -> Result<StorePublished, OpsError> {
    // A server's rate is bounded by the wallet's fee policy (the cap before anything is built;
    // the fee against the anchor's value once it is).
    let fee_choice = fee.into();
    let fee_rate = DEFAULT_FEE_POLICY.check_rate(fee_choice, 250)?;
    if wallet.contract_keypair_for(anchor_key)?.is_none() {
        return Err(OpsError::Refused(format!(
            "anchor key {anchor_key} is not a contract key of this wallet"
        )));
    }
    wallet.sync(chain)?;
    let anchor = anchor_script(anchor_key);
    let record = Record::Store { receipts_root }
        .script()
        .map_err(|e| OpsError::Refused(e.to_string()))?;
    let change = wallet.next_address()?.script_pubkey();
    let inputs = spendable(wallet)?;
    let anchor_value = anchor.minimal_non_dust();
    for k in 1..=inputs.len() {
        let chosen = &inputs[..k];
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: chosen
                .iter()
                .map(|(f, _)| TxIn {
                    previous_output: f.utxo.outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output: vec![
                TxOut {
                    value: anchor_value,
                    script_pubkey: anchor.clone(),
                },
                TxOut {
                    value: Amount::ZERO,
                    script_pubkey: record.clone(),
                },
                TxOut {
                    value: Amount::ZERO,
                    script_pubkey: change.clone(),
                },
            ],
        };
        let weight =
            btcmpc_contracts::estimated_weight(&tx, BIP86_SATISFACTION * chosen.len() as u64);
        let fee = fee_rate
            .fee_wu(weight)
            .ok_or_else(|| OpsError::Refused("fee overflow".into()))?;
        let available: Amount = chosen.iter().map(|(f, _)| f.utxo.txout.value).sum();
        let Some(rest) = available
            .checked_sub(anchor_value)
            .and_then(|a| a.checked_sub(fee))
        else {
            continue;
        };
        if rest < change.minimal_non_dust() {
            continue;
        }
        DEFAULT_FEE_POLICY.check(fee_choice, fee, anchor_value)?;
        tx.output[2].value = rest;
        let mut psbt = Psbt::from_unsigned_tx(tx).expect("the transaction has empty witnesses");
        for (slot, (_, input)) in psbt.inputs.iter_mut().zip(chosen) {
            *slot = input.clone();
        }
        wallet.sign_wallet_inputs(&mut psbt)?;
        let tx = psbt
            .extract_tx()
            .map_err(|e| OpsError::Refused(format!("STORE transaction: {e}")))?;
        let spent: Vec<TxOut> = chosen.iter().map(|(f, _)| f.utxo.txout.clone()).collect();
        verify_spend(&tx, &spent)
            .map_err(|e| OpsError::Refused(format!("STORE transaction refused: {e}")))?;
        let txid = wallet.broadcast_recorded(chain, &tx, BroadcastKind::Store, None, fee_rate)?;
        let outpoint = OutPoint { txid, vout: 0 };
        tracing::info!(target: "btcmpc_engine::node::acl", %txid, "STORE published");
        return Ok(StorePublished {
            txid,
            outpoint,
            dataset_id: hex::encode(dataset_id(&outpoint, anchor_key)),
        });
    }
    Err(no_funds("a STORE transaction"))
}

/// Spend the current anchor `current` of `anchor_key` into a new anchor (output 0) and
/// `record` (output 1, GRANT or REVOKE), the fee paid from this wallet's outputs (output 2 is
/// the change). The anchor output is read from the chain and must pay the anchor script.
///
/// # Errors
/// [`OpsError`]: a STORE record, an anchor key this wallet does not hold, an anchor output that
/// is not the anchor script, insufficient funds, a refused spend or broadcast.
pub fn extend_anchor(
    wallet: &mut RoleWallet,
    chain: &ChainClient,
    anchor_key: &PublicKey,
    current: OutPoint,
    record: &Record,
    fee: impl Into<FeeChoice>,
) -> Result<Txid, OpsError> {
    let fee_choice = fee.into();
    let fee_rate = DEFAULT_FEE_POLICY.check_rate(fee_choice, 250)?;
    let kind = match record {
        Record::Grant { .. } => BroadcastKind::Grant,
        Record::Revoke { .. } => BroadcastKind::Revoke,
        Record::Store { .. } => {
            return Err(OpsError::Refused(
                "a STORE record starts a dataset; it does not extend an anchor".into(),
            ))
        }
    };
    let keypair = wallet.contract_keypair_for(anchor_key)?.ok_or_else(|| {
        OpsError::Refused(format!(
            "anchor key {anchor_key} is not a contract key of this wallet"
        ))
    })?;
    let bytes = record
        .encode()
        .map_err(|e| OpsError::Refused(e.to_string()))?;
    let compiled = Contract::Anchor(Anchor { key: *anchor_key })
        .compile()
        .map_err(|e| OpsError::Refused(e.to_string()))?;
    let prev = chain.transaction(&current.txid)?;
    let txout = prev
        .output
        .get(current.vout as usize)
        .cloned()
        .ok_or_else(|| OpsError::Refused(format!("anchor {current} does not exist")))?;
    if txout.script_pubkey != *compiled.script_pubkey() {
        return Err(OpsError::Refused(format!(
            "output {current} does not pay the anchor of {anchor_key}"
        )));
    }
    let anchor = Utxo {
        outpoint: current,
        txout,
    };
    wallet.sync(chain)?;
    let inputs = spendable(wallet)?;
    let change = wallet.next_address()?.script_pubkey();
    for k in 1..=inputs.len() {
        let funding = Funding {
            inputs: inputs[..k].iter().map(|(f, _)| f.clone()).collect(),
            change: change.clone(),
        };
        let mut psbt = match compiled.build_anchor_extend(&anchor, &bytes, fee_rate, Some(&funding))
        {
            Ok((psbt, _)) => psbt,
            Err(SpendError::InsufficientFunds { .. } | SpendError::Dust { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        for (slot, (_, input)) in psbt.inputs[1..].iter_mut().zip(&inputs[..k]) {
            *slot = input.clone();
        }
        sign_input(&mut psbt, 0, &keypair)?;
        wallet.sign_wallet_inputs(&mut psbt)?;
        let tx = finalize_and_verify(psbt, &[(0, &compiled)])?;
        // The fee the extension pays: what goes in less what comes out.
        let spent: Amount = anchor.txout.value
            + inputs[..k]
                .iter()
                .map(|(f, _)| f.utxo.txout.value)
                .sum::<Amount>();
        let out: Amount = tx.output.iter().map(|o| o.value).sum();
        let paid = spent.checked_sub(out).unwrap_or(Amount::ZERO);
        DEFAULT_FEE_POLICY.check(fee_choice, paid, anchor.txout.value)?;
        let txid = wallet.broadcast_recorded(chain, &tx, kind, None, fee_rate)?;
        tracing::info!(target: "btcmpc_engine::node::acl", %txid, %kind, "anchor extended");
        return Ok(txid);
    }
    Err(no_funds("the anchor extension's fee"))
}

/// Fund party `index`'s bond against a fully signed `roster`: the bond contract of
/// [`Roster::bond_contract`] with exit height `exit`, `amount` (at least the roster's minimum),
/// paid from this wallet, whose contract keys must include the party key. Returns the outpoint
/// and the bond's contract file (for `party withdraw`).
///
/// # Errors
/// An unsigned roster, a key this wallet does not hold, an amount below the minimum, an exit
/// height that `network verify` would refuse at the current tip; wallet errors.
pub fn fund_bond(
    wallet: &mut RoleWallet,
    chain: &ChainClient,
    roster: &Roster,
    index: usize,
    amount: Amount,
    exit: u32,
    fee: impl Into<FeeChoice>,
) -> Result<(OutPoint, ContractFile), OpsError> {
    roster.verify()?;
    if roster.params.unbonded {
        return Err(OpsError::Refused(
            "this roster is unbonded: its parties post no bond".into(),
        ));
    }
    let key = roster
        .cards
        .get(index.wrapping_sub(1))
        .ok_or_else(|| OpsError::Refused(format!("no party {index} in the roster")))?
        .party_key;
    if wallet.contract_keypair_for(&key)?.is_none() {
        return Err(OpsError::Refused(format!(
            "party key {key} of party {index} is not this wallet's"
        )));
    }
    if amount.to_sat() < roster.params.min_bond_sat {
        return Err(OpsError::Refused(format!(
            "bond {} sat is below the roster's minimum {} sat",
            amount.to_sat(),
            roster.params.min_bond_sat
        )));
    }
    let (tip, _) = chain.tip()?;
    let needed = tip
        .saturating_add(roster.params.deadline_horizon)
        .saturating_add(roster.params.dispute_window);
    if exit < needed {
        return Err(OpsError::Refused(format!(
            "exit height {exit} is before tip {tip} + deadline horizon {} + dispute window {} = {needed}",
            roster.params.deadline_horizon, roster.params.dispute_window
        )));
    }
    let contract = roster.bond_contract(index, exit)?;
    let file = ContractFile::new(contract, roster.network)
        .map_err(|e| OpsError::Refused(e.to_string()))?;
    let outpoint = wallet.fund_contract_file(chain, &file, amount, fee)?;
    Ok((outpoint, file))
}

/// A dataset this owner published, as kept in `DIR/datasets/NAME.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedDataset {
    /// Format version (1).
    pub version: u64,
    /// The owner's name for it.
    pub name: String,
    /// The anchor key (33-byte compressed, hex).
    pub anchor_key: String,
    /// The STORE anchor outpoint `TXID:VOUT`.
    pub store_outpoint: String,
    /// The dataset id, hex.
    pub dataset_id: String,
    /// The receipts root, hex.
    pub receipts_root: String,
    /// Column names in dataset order (the bit of column `i` in a GRANT's bitmap is `i`).
    #[serde(default)]
    pub columns: Vec<String>,
}

impl OwnedDataset {
    /// The file of dataset `name` under `dir` (`dir/datasets/NAME.json`).
    ///
    /// # Errors
    /// [`SetupError::Field`] for a name that is not 1 to 64 of `[A-Za-z0-9_.-]` or starts with
    /// a dot.
    pub fn path(dir: &Path, name: &str) -> Result<std::path::PathBuf, SetupError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !ok {
            return Err(super::card::field(
                "dataset name",
                name,
                "use 1 to 64 of A-Z a-z 0-9 _ - . (not starting with a dot)",
            ));
        }
        Ok(dir.join("datasets").join(format!("{name}.json")))
    }

    /// Save under `dir`, refusing to replace another dataset of the same name.
    ///
    /// # Errors
    /// [`SetupError::Io`].
    pub fn save_new(&self, dir: &Path) -> Result<(), SetupError> {
        let path = OwnedDataset::path(dir, &self.name)?;
        if path.exists() {
            return Err(SetupError::Io {
                path: path.display().to_string(),
                reason: format!("a dataset named {} already exists", self.name),
            });
        }
        let text = serde_json::to_string_pretty(self).expect("a dataset record serializes");
        write_atomic(&path, text.as_bytes(), 0o644)
    }

    /// Load dataset `name` from `dir`.
    ///
    /// # Errors
    /// [`SetupError::Io`] (an unknown dataset), [`SetupError::Format`].
    pub fn load(dir: &Path, name: &str) -> Result<OwnedDataset, SetupError> {
        let path = OwnedDataset::path(dir, name)?;
        if !path.exists() {
            return Err(SetupError::Io {
                path: path.display().to_string(),
                reason: format!("no dataset named {name} (store it first)"),
            });
        }
        let d: OwnedDataset =
            serde_json::from_str(&read_bounded(&path)?).map_err(|e| SetupError::Format {
                what: format!("dataset file {}", path.display()),
                reason: e.to_string(),
            })?;
        if d.version != 1 {
            return Err(SetupError::Version {
                what: "dataset file",
                version: d.version,
                supported: 1,
            });
        }
        Ok(d)
    }

    /// Every dataset under `dir`, by name.
    ///
    /// # Errors
    /// As [`OwnedDataset::load`].
    pub fn list(dir: &Path) -> Result<Vec<OwnedDataset>, SetupError> {
        let d = dir.join("datasets");
        let Ok(entries) = std::fs::read_dir(&d) else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".json"))
                    .filter(|n| !n.starts_with('.'))
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        names.iter().map(|n| OwnedDataset::load(dir, n)).collect()
    }

    /// The anchor key.
    ///
    /// # Errors
    /// [`SetupError::Field`].
    pub fn anchor_key(&self) -> Result<PublicKey, SetupError> {
        super::card::parse_pubkey("anchor_key", &self.anchor_key)
    }

    /// The STORE outpoint.
    ///
    /// # Errors
    /// [`SetupError::Field`].
    pub fn store_outpoint(&self) -> Result<OutPoint, SetupError> {
        super::card::parse_outpoint("store_outpoint", &self.store_outpoint)
    }
}

/// Publish a STORE record for a new dataset `name` with a fresh anchor key of this wallet, and
/// record it under `dir` (what `owner store` calls once the receipts are collected).
///
/// # Errors
/// An existing dataset of that name; as [`publish_store`].
pub fn store_dataset(
    wallet: &mut RoleWallet,
    chain: &ChainClient,
    dir: &Path,
    name: &str,
    columns: &[String],
    receipts_root: [u8; 32],
    fee: impl Into<FeeChoice>,
) -> Result<OwnedDataset, OpsError> {
    let path = OwnedDataset::path(dir, name)?;
    if path.exists() {
        return Err(OpsError::Refused(format!(
            "a dataset named {name} already exists"
        )));
    }
    let (_, anchor_key) = wallet.contract_key(None, &format!("anchor {name}"))?;
    let published = publish_store(wallet, chain, &anchor_key, receipts_root, fee)?;
    let d = OwnedDataset {
        version: 1,
        name: name.to_string(),
        anchor_key: anchor_key.to_string(),
        store_outpoint: published.outpoint.to_string(),
        dataset_id: published.dataset_id,
        receipts_root: hex::encode(receipts_root),
        columns: columns.to_vec(),
    };
    d.save_new(dir)?;
    Ok(d)
}
