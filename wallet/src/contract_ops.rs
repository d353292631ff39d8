//! Contracts on chain: fund, watch, claim, refund, exit, and the bond slash passed between
//! judges as a PSBT.
//!
//! The contract code (`btcmpc-contracts`) builds every spend, signs contract inputs with keys
//! this wallet derives on its contract path, finalizes with rust-miniscript, and checks the
//! result with Bitcoin Core's interpreter; only then does the wallet broadcast it, and it keeps
//! broadcasting it at every sync until it is buried (the server may lose its mempool, a reorg
//! may drop a block).

use bitcoin::hashes::{sha256, Hash};
use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{Keypair, PublicKey};
use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use btcmpc_contracts::{
    finalize_and_verify, sign_input, CompiledContract, Contract, ContractFile, PathKind, Utxo,
};
use serde::Serialize;

use crate::chain::ChainClient;
use crate::fee::{FeeChoice, DEFAULT_FEE_POLICY};
use crate::store::ContractRecord;
use crate::wallet::RoleWallet;
use crate::WalletError;

/// Where a contract output stands on chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContractStatus {
    /// The server's tip height.
    pub tip: u32,
    /// The funding output, when one is known.
    pub funding: Option<FundingStatus>,
    /// What spent it, if anything did.
    pub spend: Option<SpendStatus>,
}

/// The contract's funding output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FundingStatus {
    /// The outpoint.
    pub outpoint: OutPoint,
    /// Its value in satoshis.
    pub value_sat: u64,
    /// Confirmations (0 while in the mempool).
    pub confirmations: u32,
}

/// The transaction that spent the contract output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendStatus {
    /// Its id.
    pub txid: Txid,
    /// Which path it took (`claim`, `refund`, `exit`, `slash`, `key`), if recognised.
    pub path: Option<String>,
    /// The hashlock preimage its witness reveals (claims), hex.
    pub preimage: Option<String>,
    /// Confirmations (0 while in the mempool).
    pub confirmations: u32,
}

impl ContractStatus {
    /// The preimage revealed by a claim, as bytes.
    pub fn preimage(&self) -> Option<[u8; 32]> {
        let hex = self.spend.as_ref()?.preimage.as_ref()?;
        let bytes = hex::decode(hex).ok()?;
        bytes.try_into().ok()
    }
}

fn confirmations(tip: u32, height: Option<u32>) -> u32 {
    height.map_or(0, |h| tip.saturating_add(1).saturating_sub(h))
}

/// The 32-byte preimage of `hash` among a witness's stack items.
pub fn preimage_in_witness(witness: &bitcoin::Witness, hash: &sha256::Hash) -> Option<[u8; 32]> {
    witness
        .iter()
        .filter(|item| item.len() == 32)
        .find(|item| sha256::Hash::hash(item) == *hash)
        .map(|item| item.try_into().expect("length checked"))
}

/// Find the contract's funding output and whatever spent it, from the chain alone.
///
/// `known` is the funding outpoint when this wallet funded it; otherwise the first output
/// paying the contract's script is taken.
///
/// # Errors
/// [`WalletError::Electrum`] on a network or protocol failure.
pub fn contract_status(
    chain: &ChainClient,
    compiled: &CompiledContract,
    known: Option<OutPoint>,
) -> Result<ContractStatus, WalletError> {
    let (tip, _) = chain.tip()?;
    let spk = compiled.script_pubkey();
    let history = chain.history(spk)?;
    let mut txs: Vec<(Transaction, Option<u32>)> = Vec::with_capacity(history.len());
    for h in &history {
        txs.push((chain.transaction(&h.txid)?, h.height));
    }
    let funding = match known {
        Some(op) => txs
            .iter()
            .find(|(tx, _)| tx.compute_txid() == op.txid)
            .and_then(|(tx, h)| tx.output.get(op.vout as usize).map(|o| (op, o.value, *h))),
        None => txs.iter().find_map(|(tx, h)| {
            tx.output
                .iter()
                .position(|o| &o.script_pubkey == spk)
                .map(|vout| {
                    (
                        OutPoint {
                            txid: tx.compute_txid(),
                            vout: vout as u32,
                        },
                        tx.output[vout].value,
                        *h,
                    )
                })
        }),
    };
    let Some((outpoint, value, fheight)) = funding else {
        return Ok(ContractStatus {
            tip,
            funding: None,
            spend: None,
        });
    };
    let spend = txs.iter().find_map(|(tx, h)| {
        let input = tx.input.iter().find(|i| i.previous_output == outpoint)?;
        let path = compiled.path_of_witness(&input.witness);
        let preimage = compiled
            .path(PathKind::Claim)
            .and_then(|p| p.hash)
            .and_then(|hash| preimage_in_witness(&input.witness, &hash))
            .map(hex::encode);
        Some(SpendStatus {
            txid: tx.compute_txid(),
            path: path.map(|p| p.name().to_string()),
            preimage,
            confirmations: confirmations(tip, *h),
        })
    });
    Ok(ContractStatus {
        tip,
        funding: Some(FundingStatus {
            outpoint,
            value_sat: value.to_sat(),
            confirmations: confirmations(tip, fheight),
        }),
        spend,
    })
}

/// The local name of a contract: its address.
pub fn contract_name(file: &ContractFile) -> String {
    file.compiled().address(file.network()).to_string()
}

impl RoleWallet {
    fn check_network(&self, file: &ContractFile) -> Result<(), WalletError> {
        if file.network() != self.network() {
            return Err(WalletError::Contract(format!(
                "contract file is for {}, this wallet is on {}",
                file.network(),
                self.network()
            )));
        }
        Ok(())
    }

    /// Fund a contract file's output with `amount`; the contract is remembered under its
    /// address with the funding outpoint.
    ///
    /// # Errors
    /// A file for another network; funds, signing, broadcast and database errors.
    pub fn fund_contract_file(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        amount: Amount,
        fee_rate: impl Into<FeeChoice>,
    ) -> Result<OutPoint, WalletError> {
        self.check_network(file)?;
        let spk = file.compiled().script_pubkey().clone();
        self.fund_contract(
            chain,
            &contract_name(file),
            &file.to_json(),
            spk,
            amount,
            fee_rate,
        )
    }

    /// The funding outpoint this wallet recorded for a contract file, if any.
    ///
    /// # Errors
    /// Database errors.
    pub fn known_funding(&self, file: &ContractFile) -> Result<Option<OutPoint>, WalletError> {
        Ok(self.contract(&contract_name(file))?.and_then(|r| r.funding))
    }

    fn keypair_of(&self, pk: &PublicKey, role: &str) -> Result<Keypair, WalletError> {
        self.contract_keypair_for(pk)?.ok_or_else(|| {
            WalletError::Contract(format!(
                "this wallet does not hold the {role} key {pk} of the contract"
            ))
        })
    }

    /// The unspent, funded contract output, or an error saying why there is none.
    fn live_utxo(
        &self,
        chain: &ChainClient,
        file: &ContractFile,
    ) -> Result<(Utxo, ContractStatus), WalletError> {
        let status = contract_status(chain, file.compiled(), self.known_funding(file)?)?;
        let Some(f) = &status.funding else {
            return Err(WalletError::Contract(format!(
                "contract {} is not funded (no output pays it)",
                contract_name(file)
            )));
        };
        if let Some(s) = &status.spend {
            return Err(WalletError::Contract(format!(
                "contract output {} is already spent by {} ({})",
                f.outpoint,
                s.txid,
                s.path.as_deref().unwrap_or("unknown path")
            )));
        }
        let utxo = Utxo {
            outpoint: f.outpoint,
            txout: TxOut {
                value: Amount::from_sat(f.value_sat),
                script_pubkey: file.compiled().script_pubkey().clone(),
            },
        };
        Ok((utxo, status))
    }

    /// Build, sign, finalize and verify a one-input sweep of a contract output along `kind`
    /// (claim, refund or exit) paying `to`.
    fn build_sweep(
        &self,
        file: &ContractFile,
        kind: PathKind,
        utxo: &Utxo,
        to: ScriptBuf,
        preimage: Option<&[u8; 32]>,
        fee_rate: FeeRate,
    ) -> Result<Transaction, WalletError> {
        let compiled = file.compiled();
        let (signer, role) = match (file.contract(), kind) {
            (Contract::ClaimOrRefund(c), PathKind::Claim) => (c.receiver, "receiver"),
            (Contract::ClaimOrRefund(c), PathKind::Refund) => (c.sender, "sender"),
            (Contract::Bond(b), PathKind::Exit) => (b.party, "party"),
            (c, k) => {
                return Err(WalletError::Contract(format!(
                    "a {} contract has no {k} path",
                    c.kind()
                )))
            }
        };
        let kp = self.keypair_of(&signer, role)?;
        let (mut psbt, _) = match kind {
            PathKind::Claim => {
                let preimage = preimage
                    .ok_or_else(|| WalletError::Contract("a claim needs the preimage".into()))?;
                compiled.build_claim(utxo, preimage, to, fee_rate)?
            }
            PathKind::Refund => compiled.build_refund(utxo, to, fee_rate)?,
            _ => compiled.build_exit(utxo, to, fee_rate)?,
        };
        sign_input(&mut psbt, 0, &kp)?;
        Ok(finalize_and_verify(psbt, &[(0, compiled)])?)
    }

    /// Remember the contract (so its spend is re-broadcast and restorable) and broadcast.
    fn send_spend(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        tx: &Transaction,
        kind: PathKind,
        fee_rate: FeeRate,
    ) -> Result<Txid, WalletError> {
        let name = contract_name(file);
        if self.contract(&name)?.is_none() {
            self.remember_contract(&ContractRecord {
                name: name.clone(),
                file: file.to_json(),
                script_pubkey: file.compiled().script_pubkey().to_hex_string(),
                funding: Some(tx.input[0].previous_output),
                amount_sat: None,
            })?;
        }
        self.broadcast_recorded(chain, tx, kind.name(), Some(&name), fee_rate)
    }

    fn sweep_to_wallet(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        kind: PathKind,
        preimage: Option<&[u8; 32]>,
        fee: FeeChoice,
    ) -> Result<Txid, WalletError> {
        let fee_rate = fee.rate();
        self.check_network(file)?;
        // Check the path and the key before touching the chain.
        if file.compiled().path(kind).is_none() {
            return Err(WalletError::Contract(format!(
                "a {} contract has no {kind} path",
                file.contract().kind()
            )));
        }
        let (utxo, _) = self.live_utxo(chain, file)?;
        let to = self.next_address()?.script_pubkey();
        let tx = self.build_sweep(file, kind, &utxo, to, preimage, fee_rate)?;
        check_sweep_fee(fee, &utxo, &tx)?;
        self.send_spend(chain, file, &tx, kind, fee_rate)
    }

    /// Claim an escrow output with the hashlock preimage, paying this wallet.
    ///
    /// # Errors
    /// Wrong preimage, a key this wallet does not hold, an unfunded or spent contract, the
    /// interpreter's refusal (nothing is broadcast then), the server's refusal.
    pub fn claim(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        preimage: &[u8; 32],
        fee_rate: impl Into<FeeChoice>,
    ) -> Result<Txid, WalletError> {
        self.sweep_to_wallet(
            chain,
            file,
            PathKind::Claim,
            Some(preimage),
            fee_rate.into(),
        )
    }

    /// Refund an escrow output to this wallet (valid once the tip is at least the timeout).
    ///
    /// # Errors
    /// As [`RoleWallet::claim`]; before the timeout the server refuses it as `non-final`.
    pub fn refund(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        fee_rate: impl Into<FeeChoice>,
    ) -> Result<Txid, WalletError> {
        self.sweep_to_wallet(chain, file, PathKind::Refund, None, fee_rate.into())
    }

    /// Take a bond back after its exit height.
    ///
    /// # Errors
    /// As [`RoleWallet::refund`].
    pub fn exit_bond(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        fee_rate: impl Into<FeeChoice>,
    ) -> Result<Txid, WalletError> {
        self.sweep_to_wallet(chain, file, PathKind::Exit, None, fee_rate.into())
    }

    /// Replace an unconfirmed claim, refund or exit this wallet broadcast by the same spend at
    /// `fee_rate` (full RBF: same input, same destination, a higher fee).
    ///
    /// # Errors
    /// Unknown or confirmed transactions; a slash (its judges must sign again); a fee the
    /// output cannot pay; the server's refusal (for example a rate that does not pay enough more).
    pub fn bump_contract_spend(
        &mut self,
        chain: &ChainClient,
        txid: Txid,
        fee_rate: impl Into<FeeChoice>,
    ) -> Result<Txid, WalletError> {
        let fee = fee_rate.into();
        let fee_rate = fee.rate();
        let rec = self
            .pending_broadcasts()?
            .into_iter()
            .find(|r| r.txid == txid)
            .ok_or_else(|| {
                WalletError::Unknown(format!(
                    "{txid} is not a contract spend this wallet is watching"
                ))
            })?;
        let name = rec
            .contract
            .clone()
            .ok_or_else(|| WalletError::Unknown(format!("{txid} has no contract")))?;
        let stored = self
            .contract(&name)?
            .ok_or_else(|| WalletError::Unknown(format!("contract {name} is not remembered")))?;
        let file = ContractFile::from_json(&stored.file)
            .map_err(|e| WalletError::Contract(format!("stored contract {name}: {e}")))?;
        let input = rec
            .tx
            .input
            .first()
            .ok_or_else(|| WalletError::Unknown(format!("{txid} has no input")))?;
        let kind = file
            .compiled()
            .path_of_witness(&input.witness)
            .ok_or_else(|| {
                WalletError::Contract(format!("{txid} does not spend contract {name}"))
            })?;
        if kind == PathKind::Slash {
            return Err(WalletError::Contract(
                "a slash cannot be re-signed alone: its judges must sign the new fee".into(),
            ));
        }
        let preimage = file
            .compiled()
            .path(PathKind::Claim)
            .and_then(|p| p.hash)
            .and_then(|h| preimage_in_witness(&input.witness, &h));
        let prev = chain.transaction(&input.previous_output.txid)?;
        let txout = prev
            .output
            .get(input.previous_output.vout as usize)
            .cloned()
            .ok_or_else(|| {
                WalletError::Unknown(format!(
                    "funding output {} not found",
                    input.previous_output
                ))
            })?;
        let utxo = Utxo {
            outpoint: input.previous_output,
            txout,
        };
        let to = rec.tx.output[0].script_pubkey.clone();
        let tx = self.build_sweep(&file, kind, &utxo, to, preimage.as_ref(), fee_rate)?;
        check_sweep_fee(fee, &utxo, &tx)?;
        self.replace_recorded(chain, &rec, &tx, fee_rate)
    }

    /// Bump every claim still unconfirmed one block or more after its broadcast, by a quarter
    /// (at least 1 sat/vB), never above `max_rate` nor above the [`DEFAULT_FEE_POLICY`]'s bound
    /// for the claimed amount: PROTOCOL.md's job flow bumps claims every block until they are
    /// deep, and stops bumping at the bound. Returns the replacements.
    ///
    /// # Errors
    /// Network and database errors; a claim that cannot be bumped is logged and left as is.
    pub fn bump_stuck_claims(
        &mut self,
        chain: &ChainClient,
        max_rate: FeeRate,
    ) -> Result<Vec<(Txid, Txid)>, WalletError> {
        let (tip, _) = chain.tip()?;
        let mut out = Vec::new();
        for rec in self.pending_broadcasts()? {
            if rec.kind != PathKind::Claim.name() || rec.height >= tip {
                continue;
            }
            let Some(first) = rec.tx.output.first() else {
                continue;
            };
            let confirmed = chain
                .history(&first.script_pubkey)?
                .iter()
                .any(|h| h.txid == rec.txid && h.height.is_some());
            if confirmed {
                continue;
            }
            let Some(input) = rec.tx.input.first() else {
                continue;
            };
            let prev = chain.transaction(&input.previous_output.txid)?;
            let Some(claimed) = prev.output.get(input.previous_output.vout as usize) else {
                continue;
            };
            // One vbyte of slack for the rounding of the fee.
            let vsize = rec.tx.vsize() as u64 + 1;
            let cap = DEFAULT_FEE_POLICY
                .max_rate_for(claimed.value, vsize)
                .min(max_rate)
                .to_sat_per_kwu();
            let old = rec.fee_rate_sat_kwu;
            let new = (old + old / 4).max(old + 250).min(cap);
            // A replacement must pay at least 1 sat/vB more to be relayed (BIP125 rule 4).
            if new < old + 250 {
                tracing::debug!(target: "btcmpc_wallet::contract", txid = %rec.txid, "claim at its fee bound, not bumped");
                continue;
            }
            let rate = FeeChoice::Automatic(FeeRate::from_sat_per_kwu(new));
            match self.bump_contract_spend(chain, rec.txid, rate) {
                Ok(txid) => out.push((rec.txid, txid)),
                Err(e) => {
                    tracing::warn!(target: "btcmpc_wallet::contract", txid = %rec.txid, "claim not bumped: {e}")
                }
            }
        }
        Ok(out)
    }

    /// Build the canonical slash of a bond paying `victim` up to `penalty` (the whole bond less
    /// the fee with `None`), unsigned. Judges sign it with [`RoleWallet::sign_slash`].
    ///
    /// # Errors
    /// An unfunded or spent bond; a dust payment.
    pub fn slash_psbt(
        &self,
        chain: &ChainClient,
        file: &ContractFile,
        victim: ScriptBuf,
        penalty: Option<Amount>,
        fee_rate: FeeRate,
    ) -> Result<Psbt, WalletError> {
        self.check_network(file)?;
        if !matches!(file.contract(), Contract::Bond(_)) {
            return Err(WalletError::Contract(format!(
                "a {} contract cannot be slashed",
                file.contract().kind()
            )));
        }
        let (utxo, _) = self.live_utxo(chain, file)?;
        let penalty = penalty.unwrap_or(utxo.txout.value);
        let (psbt, _) = file
            .compiled()
            .build_slash(&utxo, victim, penalty, fee_rate)?;
        Ok(psbt)
    }

    /// Add this wallet's judge signature to a slash PSBT. Returns how many signatures the
    /// wallet added (0 when it holds none of the judges' keys is an error).
    ///
    /// # Errors
    /// [`WalletError::Sign`] when this wallet holds no judge key of the bond.
    pub fn sign_slash(&self, psbt: &mut Psbt, file: &ContractFile) -> Result<usize, WalletError> {
        let Contract::Bond(b) = file.contract() else {
            return Err(WalletError::Contract(format!(
                "a {} contract cannot be slashed",
                file.contract().kind()
            )));
        };
        if psbt.inputs.len() != 1
            || psbt.inputs[0]
                .witness_utxo
                .as_ref()
                .map(|o| &o.script_pubkey)
                != Some(file.compiled().script_pubkey())
        {
            return Err(WalletError::Sign(
                "the PSBT does not spend this bond".into(),
            ));
        }
        let mut added = 0;
        for judge in &b.judges {
            if let Some(kp) = self.contract_keypair_for(judge)? {
                added += sign_input(psbt, 0, &kp)?;
            }
        }
        if added == 0 {
            return Err(WalletError::Sign(
                "this wallet holds none of the bond's judge keys".into(),
            ));
        }
        Ok(added)
    }

    /// Finalize a slash PSBT (k judge signatures), check it with Core's interpreter, broadcast.
    ///
    /// # Errors
    /// Too few signatures (named by the finalizer), the interpreter's or the server's refusal.
    pub fn broadcast_slash(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        psbt: Psbt,
    ) -> Result<Txid, WalletError> {
        self.check_network(file)?;
        let tx = finalize_and_verify(psbt, &[(0, file.compiled())])?;
        self.send_spend(chain, file, &tx, PathKind::Slash, FeeRate::ZERO)
    }
}

/// Check the fee of a one-input sweep `tx` of `utxo` against the [`DEFAULT_FEE_POLICY`].
fn check_sweep_fee(fee: FeeChoice, utxo: &Utxo, tx: &Transaction) -> Result<(), WalletError> {
    let out: Amount = tx.output.iter().map(|o| o.value).sum();
    let paid = utxo.txout.value.checked_sub(out).unwrap_or(Amount::ZERO);
    DEFAULT_FEE_POLICY.check(fee, paid, utxo.txout.value)
}
