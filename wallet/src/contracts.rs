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
    finalize_and_verify, sign_input, CompiledContract, Contract, ContractFile, PathKind,
    SlashSummary, SlashTerms, Utxo,
};

use crate::electrum::ChainClient;
use crate::error::{ContractError, KeyRole};
use crate::fee::{FeeChoice, DEFAULT_FEE_POLICY};
use crate::store::ContractRecord;
use crate::wallet::RoleWallet;
use crate::WalletError;

/// Where a contract stands on chain: every output that pays its script, and what spent each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractStatus {
    /// The server's tip height.
    pub tip: u32,
    /// The funding output: the known one when given, otherwise the first output in history
    /// paying the contract's script.
    pub funding: Option<FundingStatus>,
    /// What spent the funding output, if anything did.
    pub spend: Option<SpendStatus>,
    /// Every output paying the contract's script, in history order (funding outputs, slash
    /// remainders, later payments), each with its spend.
    pub outputs: Vec<OutputStatus>,
}

/// The contract's funding output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingStatus {
    /// The outpoint.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// Confirmations (0 while in the mempool).
    pub confirmations: u32,
}

/// One output paying the contract's script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputStatus {
    /// The outpoint.
    pub outpoint: OutPoint,
    /// Its value.
    pub value: Amount,
    /// Confirmations (0 while in the mempool).
    pub confirmations: u32,
    /// What spent it, if anything did.
    pub spend: Option<SpendStatus>,
}

impl OutputStatus {
    fn utxo(&self, compiled: &CompiledContract) -> Utxo {
        Utxo {
            outpoint: self.outpoint,
            txout: TxOut {
                value: self.value,
                script_pubkey: compiled.script_pubkey().clone(),
            },
        }
    }
}

/// The transaction that spent the contract output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendStatus {
    /// Its id.
    pub txid: Txid,
    /// Which path it took, if recognised from its witness.
    pub path: Option<PathKind>,
    /// The hashlock preimage its witness reveals (claims): the 32 bytes whose SHA-256 is the
    /// contract's claim hash.
    pub preimage: Option<[u8; 32]>,
    /// Confirmations (0 while in the mempool).
    pub confirmations: u32,
}

impl ContractStatus {
    /// The preimage revealed by the spend of the funding output (a claim).
    pub fn preimage(&self) -> Option<[u8; 32]> {
        self.spend.as_ref()?.preimage
    }

    /// The outputs paying the contract that nothing spent (mempool included).
    pub fn unspent(&self) -> impl Iterator<Item = &OutputStatus> {
        self.outputs.iter().filter(|o| o.spend.is_none())
    }

    /// The output the contract's money lives in now: follow the funding output through every
    /// spend that pays the same script again (a partial slash's remainder) to its end; when
    /// that end is spent (or there is no funding), the largest unspent output, if any.
    pub fn live(&self) -> Option<&OutputStatus> {
        let find = |op: OutPoint| self.outputs.iter().find(|o| o.outpoint == op);
        let mut at = self.funding.as_ref().and_then(|f| find(f.outpoint));
        // Each step moves to an output of a later transaction: at most one step per output.
        for _ in 0..self.outputs.len() {
            let Some(o) = at else { break };
            let Some(s) = &o.spend else { break };
            match self.outputs.iter().find(|n| n.outpoint.txid == s.txid) {
                Some(next) => at = Some(next),
                None => break,
            }
        }
        at.filter(|o| o.spend.is_none())
            .or_else(|| self.unspent().max_by_key(|o| o.value))
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

/// Every output paying the contract's script and whatever spent each, from the chain alone
/// (the server's history of the script: funding and spending transactions, mempool included;
/// transactions a reorg or a replacement removed are no longer in it).
///
/// `known` is the funding outpoint when this wallet funded it; otherwise the first output
/// paying the contract's script is reported as the funding.
///
/// # Errors
/// [`WalletError::Electrum`] on a network or protocol failure.
pub fn contract_status(
    chain: &ChainClient,
    compiled: &CompiledContract,
    known: Option<OutPoint>,
) -> Result<ContractStatus, WalletError> {
    contract_status_with(chain, compiled, known, &[])
}

/// [`contract_status`], with `own` transactions (this wallet's, kept until buried) that the
/// server does not list added as unconfirmed: a funding or spend the server forgot (a restart
/// that lost its mempool) is still shown, with 0 confirmations.
pub(crate) fn contract_status_with(
    chain: &ChainClient,
    compiled: &CompiledContract,
    known: Option<OutPoint>,
    own: &[Transaction],
) -> Result<ContractStatus, WalletError> {
    let (tip, _) = chain.tip()?;
    let spk = compiled.script_pubkey();
    let history = chain.history(spk)?;
    let mut txs: Vec<(Transaction, Option<u32>)> = Vec::with_capacity(history.len());
    for h in &history {
        txs.push((chain.transaction(&h.txid)?, h.height));
    }
    // Our own transactions paying the contract, then those spending an output listed so far.
    for pass in 0..2 {
        for tx in own {
            let txid = tx.compute_txid();
            if txs.iter().any(|(t, _)| t.compute_txid() == txid) {
                continue;
            }
            let relevant = if pass == 0 {
                tx.output.iter().any(|o| &o.script_pubkey == spk)
            } else {
                tx.input.iter().any(|i| {
                    txs.iter().any(|(t, _)| {
                        t.compute_txid() == i.previous_output.txid
                            && t.output
                                .get(i.previous_output.vout as usize)
                                .is_some_and(|o| &o.script_pubkey == spk)
                    })
                })
            };
            if relevant {
                txs.push((tx.clone(), None));
            }
        }
    }
    let spend_of = |outpoint: OutPoint| {
        txs.iter().find_map(|(tx, h)| {
            let input = tx.input.iter().find(|i| i.previous_output == outpoint)?;
            let path = compiled.path_of_witness(&input.witness);
            let preimage = compiled
                .path(PathKind::Claim)
                .and_then(|p| p.hash)
                .and_then(|hash| preimage_in_witness(&input.witness, &hash));
            Some(SpendStatus {
                txid: tx.compute_txid(),
                path,
                preimage,
                confirmations: confirmations(tip, *h),
            })
        })
    };
    let mut outputs = Vec::new();
    for (tx, h) in &txs {
        let txid = tx.compute_txid();
        for (vout, o) in tx.output.iter().enumerate() {
            if &o.script_pubkey != spk {
                continue;
            }
            let outpoint = OutPoint {
                txid,
                vout: vout as u32,
            };
            outputs.push(OutputStatus {
                outpoint,
                value: o.value,
                confirmations: confirmations(tip, *h),
                spend: spend_of(outpoint),
            });
        }
    }
    let funding = match known {
        Some(op) => txs
            .iter()
            .find(|(tx, _)| tx.compute_txid() == op.txid)
            .and_then(|(tx, h)| {
                tx.output.get(op.vout as usize).map(|o| FundingStatus {
                    outpoint: op,
                    value: o.value,
                    confirmations: confirmations(tip, *h),
                })
            }),
        None => outputs.first().map(|o| FundingStatus {
            outpoint: o.outpoint,
            value: o.value,
            confirmations: o.confirmations,
        }),
    };
    let spend = funding.as_ref().and_then(|f| spend_of(f.outpoint));
    Ok(ContractStatus {
        tip,
        funding,
        spend,
        outputs,
    })
}

/// PROTOCOL.md's claim rule: a party reveals its hashlock key only against an escrow output
/// with `min_conf` confirmations while `tip + margin <= T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRules {
    /// `escrow_min_conf`: confirmations the promised output needs (blocks).
    pub min_conf: u32,
    /// `claim_margin`: blocks kept between the tip and the timeout T, so the claim confirms
    /// before the refund becomes valid.
    pub margin: u32,
}

impl ClaimRules {
    /// The defaults: `escrow_min_conf` 1 on regtest, 3 on signet and testnets, 6 on mainnet
    /// (PROTOCOL.md, job flow step 6); `claim_margin` 2 blocks on regtest, 6 elsewhere.
    pub fn for_network(network: bitcoin::Network) -> Self {
        match network {
            bitcoin::Network::Regtest => ClaimRules {
                min_conf: 1,
                margin: 2,
            },
            bitcoin::Network::Bitcoin => ClaimRules {
                min_conf: 6,
                margin: 6,
            },
            _ => ClaimRules {
                min_conf: 3,
                margin: 6,
            },
        }
    }
}

/// The escrow output a claimer was promised: where, and at least how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscrowPromise {
    /// The promised outpoint.
    pub outpoint: OutPoint,
    /// The promised value; the output must hold at least this.
    pub amount: Amount,
}

/// The local name of a contract: its address.
pub fn contract_name(file: &ContractFile) -> String {
    file.compiled().address(file.network()).to_string()
}

impl RoleWallet {
    fn check_network(&self, file: &ContractFile) -> Result<(), WalletError> {
        if file.network() != self.network() {
            return Err(ContractError::WrongNetwork {
                file: file.network(),
                wallet: self.network(),
            }
            .into());
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

    /// [`contract_status`] of `file` from this wallet's view: the funding it recorded, and its
    /// own transactions (fundings, spends) shown as unconfirmed even when the server forgot
    /// them (they are re-broadcast at the next sync).
    ///
    /// # Errors
    /// [`WalletError::Electrum`]; database errors.
    pub fn contract_status(
        &self,
        chain: &ChainClient,
        file: &ContractFile,
    ) -> Result<ContractStatus, WalletError> {
        let own: Vec<Transaction> = self
            .pending_broadcasts()?
            .into_iter()
            .map(|r| r.tx)
            .collect();
        contract_status_with(chain, file.compiled(), self.known_funding(file)?, &own)
    }

    /// Bump the fee of a transaction this wallet made (`wallet bump-fee`): a claim, refund or
    /// exit is rebuilt along its contract path ([`RoleWallet::bump_contract_spend`]), anything
    /// else is replaced by BDK's fee bump ([`RoleWallet::bump_wallet_tx`]).
    ///
    /// # Errors
    /// As those two.
    pub fn bump_fee(
        &mut self,
        chain: &ChainClient,
        txid: Txid,
        fee_rate: FeeRate,
    ) -> Result<Txid, WalletError> {
        let is_contract_spend = self
            .pending_broadcasts()?
            .iter()
            .any(|r| r.txid == txid && r.contract_path().is_some());
        if is_contract_spend {
            self.bump_contract_spend(chain, txid, FeeChoice::Explicit(fee_rate))
        } else {
            self.bump_wallet_tx(chain, txid, fee_rate)
        }
    }

    /// The funding outpoint this wallet recorded for a contract file, if any.
    ///
    /// # Errors
    /// Database errors.
    pub fn known_funding(&self, file: &ContractFile) -> Result<Option<OutPoint>, WalletError> {
        Ok(self.contract(&contract_name(file))?.and_then(|r| r.funding))
    }

    fn keypair_of(&self, key: &PublicKey, role: KeyRole) -> Result<Keypair, WalletError> {
        self.contract_keypair_for(key)?
            .ok_or_else(|| ContractError::KeyNotHeld { role, key: *key }.into())
    }

    /// The output the contract's money lives in now ([`ContractStatus::live`]), or an error
    /// saying why there is none.
    fn live_utxo(
        &self,
        chain: &ChainClient,
        file: &ContractFile,
    ) -> Result<(Utxo, ContractStatus), WalletError> {
        let status = contract_status(chain, file.compiled(), self.known_funding(file)?)?;
        if let Some(o) = status.live() {
            return Ok((o.utxo(file.compiled()), status));
        }
        let Some(last) = status.outputs.last() else {
            return Err(ContractError::NotFunded {
                name: contract_name(file),
            }
            .into());
        };
        let s = last
            .spend
            .as_ref()
            .expect("no unspent output, so the last is spent");
        Err(ContractError::AllSpent {
            name: contract_name(file),
            outpoint: last.outpoint,
            by: s.txid,
            path: s.path,
        }
        .into())
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
        let no_path = || ContractError::NoPath {
            kind: file.contract().kind(),
            path: kind,
        };
        // The paths one key sweeps, and whose key that is.
        let role = match kind {
            PathKind::Claim => KeyRole::Receiver,
            PathKind::Refund => KeyRole::Sender,
            PathKind::Exit => KeyRole::Party,
            _ => return Err(no_path().into()),
        };
        // The signer is the compiled path's (the contract has the path, and one key signs it).
        let path = compiled.path(kind).ok_or_else(no_path)?;
        let signer = match (path.threshold, path.signer_keys().as_slice()) {
            (1, [key]) => *key,
            _ => return Err(no_path().into()),
        };
        let kp = self.keypair_of(&signer, role)?;
        let (mut psbt, _) = match kind {
            PathKind::Claim => {
                let preimage = preimage.ok_or(ContractError::MissingPreimage)?;
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
        self.broadcast_recorded(
            chain,
            tx,
            crate::BroadcastKind::of_path(kind)
                .expect("contract spends are sent along claim, refund, exit or slash"),
            Some(&name),
            fee_rate,
        )
    }

    fn sweep_to_wallet(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        kind: PathKind,
        fee: FeeChoice,
    ) -> Result<Txid, WalletError> {
        // An automatic rate over the cap is refused before the sweep is built (150 vB: a
        // one-input, one-output taproot script spend, to name the fee in the error).
        DEFAULT_FEE_POLICY.check_rate(fee, 150)?;
        self.check_network(file)?;
        // Check the path and the key before touching the chain.
        if file.compiled().path(kind).is_none() {
            return Err(ContractError::NoPath {
                kind: file.contract().kind(),
                path: kind,
            }
            .into());
        }
        let (utxo, _) = self.live_utxo(chain, file)?;
        self.sweep_utxo(chain, file, kind, fee, utxo)
    }

    /// Sweep `utxo` of `file` along `kind` to a fresh address of this wallet.
    fn sweep_utxo(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        kind: PathKind,
        fee: FeeChoice,
        utxo: Utxo,
    ) -> Result<Txid, WalletError> {
        // An automatic rate over the cap is refused before the sweep is built (150 vB: a
        // one-input, one-output taproot script spend, to name the fee in the error).
        let fee_rate = DEFAULT_FEE_POLICY.check_rate(fee, 150)?;
        self.check_network(file)?;
        if file.compiled().path(kind).is_none() {
            return Err(ContractError::NoPath {
                kind: file.contract().kind(),
                path: kind,
            }
            .into());
        }
        let to = self.next_address()?.script_pubkey();
        let tx = self.build_sweep(file, kind, &utxo, to, None, fee_rate)?;
        check_sweep_fee(fee, &utxo, &tx)?;
        self.send_spend(chain, file, &tx, kind, fee_rate)
    }

    /// Check PROTOCOL.md's claim rule for `promise` against our chain view: the promised
    /// output pays this escrow, holds at least the promised amount, is unspent, has
    /// `rules.min_conf` confirmations, and `tip + rules.margin <= T`. Returns the output.
    ///
    /// # Errors
    /// [`ContractError`] naming the rule broken; network errors.
    pub fn check_claim(
        &self,
        chain: &ChainClient,
        file: &ContractFile,
        promise: &EscrowPromise,
        rules: &ClaimRules,
    ) -> Result<Utxo, WalletError> {
        self.check_network(file)?;
        let Contract::ClaimOrRefund(escrow) = file.contract() else {
            return Err(ContractError::NoPath {
                kind: file.contract().kind(),
                path: PathKind::Claim,
            }
            .into());
        };
        let timeout = escrow.timeout.to_u32();
        let status = contract_status(chain, file.compiled(), Some(promise.outpoint))?;
        let out = status
            .outputs
            .iter()
            .find(|o| o.outpoint == promise.outpoint)
            .ok_or_else(|| ContractError::PromiseNotFound {
                outpoint: promise.outpoint,
                name: contract_name(file),
            })?;
        if out.value < promise.amount {
            return Err(ContractError::PromiseShort {
                outpoint: out.outpoint,
                holds: out.value,
                promised: promise.amount,
            }
            .into());
        }
        if let Some(s) = &out.spend {
            return Err(ContractError::PromiseSpent {
                outpoint: out.outpoint,
                by: s.txid,
                path: s.path,
            }
            .into());
        }
        if out.confirmations < rules.min_conf {
            return Err(ContractError::PromiseUnconfirmed {
                outpoint: out.outpoint,
                confirmations: out.confirmations,
                needed: rules.min_conf,
            }
            .into());
        }
        if status.tip.saturating_add(rules.margin) > timeout {
            return Err(ContractError::PastClaimMargin {
                tip: status.tip,
                margin: rules.margin,
                timeout,
            }
            .into());
        }
        Ok(out.utxo(file.compiled()))
    }

    /// Claim the promised escrow output with the hashlock preimage, paying this wallet. The
    /// preimage leaves this process only when [`RoleWallet::check_claim`] accepts the output.
    ///
    /// # Errors
    /// As [`RoleWallet::check_claim`]; a wrong preimage, a key this wallet does not hold, the
    /// interpreter's refusal (nothing is broadcast then), the server's refusal.
    pub fn claim(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        preimage: &[u8; 32],
        promise: &EscrowPromise,
        rules: &ClaimRules,
        fee: impl Into<FeeChoice>,
    ) -> Result<Txid, WalletError> {
        let fee = fee.into();
        let fee_rate = DEFAULT_FEE_POLICY.check_rate(fee, 150)?;
        let utxo = self.check_claim(chain, file, promise, rules)?;
        let to = self.next_address()?.script_pubkey();
        let tx = self.build_sweep(file, PathKind::Claim, &utxo, to, Some(preimage), fee_rate)?;
        check_sweep_fee(fee, &utxo, &tx)?;
        tracing::info!(target: "btcmpc_wallet::contract", outpoint = %utxo.outpoint, value = utxo.txout.value.to_sat(), "claiming the promised escrow output");
        self.send_spend(chain, file, &tx, PathKind::Claim, fee_rate)
    }

    /// Refund an escrow output to this wallet (valid once the tip is at least the timeout).
    ///
    /// # Errors
    /// As [`RoleWallet::claim`]; before the timeout the server refuses it as `non-final`.
    ///
    /// A claim still unconfirmed is replaced (BIP125, full RBF) once the refund is valid: the
    /// contract allows it from `T` on, which is why a party claims no later than
    /// `T - claim_margin` and bumps its claim every block. The refund's fee must beat the
    /// claim's, or the server refuses it.
    pub fn refund(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        fee_rate: impl Into<FeeChoice>,
    ) -> Result<Txid, WalletError> {
        let fee = fee_rate.into();
        match self.live_utxo(chain, file) {
            Ok((utxo, _)) => self.sweep_utxo(chain, file, PathKind::Refund, fee, utxo),
            Err(e) => {
                let status = contract_status(chain, file.compiled(), self.known_funding(file)?)?;
                let stuck = status.outputs.iter().rev().find(|o| {
                    o.spend
                        .as_ref()
                        .is_some_and(|s| s.confirmations == 0 && s.path == Some(PathKind::Claim))
                });
                match stuck {
                    Some(o) => {
                        let utxo = o.utxo(file.compiled());
                        self.sweep_utxo(chain, file, PathKind::Refund, fee, utxo)
                    }
                    None => Err(e),
                }
            }
        }
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
        self.sweep_to_wallet(chain, file, PathKind::Exit, fee_rate.into())
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
            .ok_or(ContractError::NotWatched(txid))?;
        let name = rec
            .contract
            .clone()
            .ok_or(ContractError::NoContract(txid))?;
        let stored = self
            .contract(&name)?
            .ok_or_else(|| ContractError::NotRemembered(name.clone()))?;
        let file =
            ContractFile::from_json(&stored.file).map_err(|source| ContractError::StoredFile {
                name: name.clone(),
                source,
            })?;
        let input = rec.tx.input.first().ok_or(ContractError::NoInput(txid))?;
        let kind = file
            .compiled()
            .path_of_witness(&input.witness)
            .ok_or_else(|| ContractError::NotASpendOf {
                txid,
                name: name.clone(),
            })?;
        if kind == PathKind::Slash {
            return Err(ContractError::SlashNeedsJudges.into());
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
            .ok_or(ContractError::FundingOutputMissing(input.previous_output))?;
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
            if rec.contract_path() != Some(PathKind::Claim) || rec.height >= tip {
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

    fn require_bond(file: &ContractFile) -> Result<&btcmpc_contracts::Bond, WalletError> {
        match file.contract() {
            Contract::Bond(b) => Ok(b),
            other => Err(ContractError::NotSlashable { kind: other.kind() }.into()),
        }
    }

    /// Build the canonical slash of a bond's live output on `terms`, unsigned. Judges check and
    /// sign it with [`RoleWallet::sign_slash`].
    ///
    /// # Errors
    /// An unfunded or spent bond; a dust payment.
    pub fn slash_psbt(
        &self,
        chain: &ChainClient,
        file: &ContractFile,
        terms: &SlashTerms,
    ) -> Result<(Psbt, SlashSummary), WalletError> {
        self.check_network(file)?;
        Self::require_bond(file)?;
        let (utxo, _) = self.live_utxo(chain, file)?;
        Ok(file.compiled().expected_slash(&utxo, terms)?)
    }

    /// Check a slash PSBT someone handed us: rebuild the canonical slash of `file` (the bond
    /// this judge holds) on `terms` (the judge's own) from the bond outputs our chain view says
    /// are unspent, and require the PSBT's transaction to be identical
    /// ([`CompiledContract::check_slash`]). Returns our rebuilt PSBT with the PSBT's valid judge
    /// signatures, and where its money goes.
    ///
    /// # Errors
    /// [`WalletError::Spend`] naming the first difference; a file for another network or not a
    /// bond; network errors.
    pub fn check_slash(
        &self,
        chain: &ChainClient,
        file: &ContractFile,
        terms: &SlashTerms,
        psbt: &Psbt,
    ) -> Result<(Psbt, SlashSummary), WalletError> {
        self.check_network(file)?;
        Self::require_bond(file)?;
        let status = contract_status(chain, file.compiled(), self.known_funding(file)?)?;
        // Only the output the bond's money lives in (the funding followed through its
        // remainders), with `escrow_min_conf` confirmations: any other output paying the bond
        // script, such as an unconfirmed decoy anyone can create, is never slashed.
        let min_conf = ClaimRules::for_network(file.network()).min_conf.max(1);
        let live: Vec<Utxo> = status
            .live()
            .filter(|o| o.confirmations >= min_conf)
            .map(|o| o.utxo(file.compiled()))
            .into_iter()
            .collect();
        Ok(file.compiled().check_slash(&live, terms, psbt)?)
    }

    /// Add this wallet's judge signatures to `canonical`, a PSBT returned by
    /// [`RoleWallet::check_slash`] or [`RoleWallet::slash_psbt`]. Returns how many it added.
    ///
    /// # Errors
    /// [`ContractError::NoJudgeKey`] when this wallet holds no judge key of the bond.
    pub fn sign_checked_slash(
        &self,
        file: &ContractFile,
        canonical: &mut Psbt,
    ) -> Result<usize, WalletError> {
        Self::require_bond(file)?;
        // The judges are the signers of the compiled slash path.
        let judges = file
            .compiled()
            .path(PathKind::Slash)
            .map(btcmpc_contracts::SpendPath::signer_keys)
            .unwrap_or_default();
        let mut added = 0;
        for judge in &judges {
            if let Some(kp) = self.contract_keypair_for(judge)? {
                added += sign_input(canonical, 0, &kp)?;
            }
        }
        if added == 0 {
            return Err(ContractError::NoJudgeKey.into());
        }
        Ok(added)
    }

    /// Check `psbt` ([`RoleWallet::check_slash`]) and replace it by our rebuilt copy carrying
    /// the valid signatures it had plus this wallet's. Returns the signatures added and where
    /// the money goes.
    ///
    /// # Errors
    /// As [`RoleWallet::check_slash`] and [`RoleWallet::sign_checked_slash`]; `psbt` is left
    /// unchanged on error.
    pub fn sign_slash(
        &self,
        chain: &ChainClient,
        file: &ContractFile,
        terms: &SlashTerms,
        psbt: &mut Psbt,
    ) -> Result<(usize, SlashSummary), WalletError> {
        let (mut canonical, summary) = self.check_slash(chain, file, terms, psbt)?;
        let added = self.sign_checked_slash(file, &mut canonical)?;
        *psbt = canonical;
        Ok((added, summary))
    }

    /// Check a slash PSBT as [`RoleWallet::check_slash`] does, finalize our rebuilt copy with
    /// its k valid judge signatures, check it with Core's interpreter, broadcast.
    ///
    /// # Errors
    /// As [`RoleWallet::check_slash`]; too few signatures (named by the finalizer), the
    /// interpreter's or the server's refusal.
    pub fn broadcast_slash(
        &mut self,
        chain: &ChainClient,
        file: &ContractFile,
        terms: &SlashTerms,
        psbt: &Psbt,
    ) -> Result<(Txid, SlashSummary), WalletError> {
        let (canonical, summary) = self.check_slash(chain, file, terms, psbt)?;
        let tx = finalize_and_verify(canonical, &[(0, file.compiled())])?;
        let txid = self.send_spend(chain, file, &tx, PathKind::Slash, terms.fee_rate)?;
        Ok((txid, summary))
    }
}

/// Check the fee of a one-input sweep `tx` of `utxo` against the [`DEFAULT_FEE_POLICY`].
fn check_sweep_fee(fee: FeeChoice, utxo: &Utxo, tx: &Transaction) -> Result<(), WalletError> {
    let out: Amount = tx.output.iter().map(|o| o.value).sum();
    let paid = utxo.txout.value.checked_sub(out).unwrap_or(Amount::ZERO);
    DEFAULT_FEE_POLICY.check(fee, paid, utxo.txout.value)
}
