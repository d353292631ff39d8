//! A chain watcher for contract outputs: subscribes to their scripts over Electrum, and on
//! each poll reports what changed since the last one: funding seen, confirmations up or down
//! (a reorg), a spend seen (with the preimage a claim reveals), a spend gone from the chain.

use std::time::Duration;

use bitcoin::{OutPoint, ScriptBuf, Txid};
use btcmpc_contracts::{CompiledContract, ContractFile, PathKind};

use crate::contracts::{contract_status, ContractStatus};
use crate::electrum::ChainClient;
use crate::error::ContractError;
use crate::wallet::RoleWallet;
use crate::WalletError;

/// What changed for one watched contract.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// An output paying the contract was seen.
    Funded {
        /// The contract's name.
        name: String,
        /// The funding outpoint.
        outpoint: OutPoint,
        /// Its confirmations.
        confirmations: u32,
    },
    /// A transaction spent the contract output.
    Spent {
        /// The contract's name.
        name: String,
        /// The spending transaction.
        txid: Txid,
        /// The path it took, when recognised.
        path: Option<PathKind>,
        /// The hashlock preimage it reveals (claims).
        preimage: Option<[u8; 32]>,
    },
    /// The confirmations of the funding or the spend changed.
    Confirmations {
        /// The contract's name.
        name: String,
        /// The transaction.
        txid: Txid,
        /// Before.
        from: u32,
        /// Now; lower than `from` after a reorg.
        to: u32,
    },
    /// A spend seen before is no longer seen at all (dropped or reorged out and evicted).
    SpendVanished {
        /// The contract's name.
        name: String,
        /// The vanished spend.
        txid: Txid,
    },
}

#[derive(Debug)]
struct Watched {
    name: String,
    compiled: CompiledContract,
    known: Option<OutPoint>,
    last: Option<ContractStatus>,
}

/// Watches contract outputs.
#[derive(Debug, Default)]
pub struct Watcher {
    entries: Vec<Watched>,
}

impl Watcher {
    /// An empty watcher.
    pub fn new() -> Self {
        Watcher::default()
    }

    /// Watch a contract under `name`; `known` is its funding outpoint when known.
    pub fn watch(
        &mut self,
        name: impl Into<String>,
        compiled: CompiledContract,
        known: Option<OutPoint>,
    ) {
        self.entries.push(Watched {
            name: name.into(),
            compiled,
            known,
            last: None,
        });
    }

    /// Watch every contract a wallet remembers.
    ///
    /// # Errors
    /// Database errors; a stored contract file that no longer loads.
    pub fn from_wallet(wallet: &RoleWallet) -> Result<Self, WalletError> {
        let mut w = Watcher::new();
        for rec in wallet.contracts()? {
            let file =
                ContractFile::from_json(&rec.file).map_err(|source| ContractError::StoredFile {
                    name: rec.name.clone(),
                    source,
                })?;
            w.watch(rec.name, file.compiled().clone(), rec.funding);
        }
        Ok(w)
    }

    /// The scripts watched.
    pub fn scripts(&self) -> Vec<ScriptBuf> {
        self.entries
            .iter()
            .map(|e| e.compiled.script_pubkey().clone())
            .collect()
    }

    /// The last status seen of contract `name`.
    pub fn status(&self, name: &str) -> Option<&ContractStatus> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.last.as_ref())
    }

    /// Subscribe to the watched scripts and wait until the server reports a change or a new
    /// block, or `timeout` passes. Returns whether anything changed.
    ///
    /// # Errors
    /// [`WalletError::Electrum`] on a network or protocol failure.
    pub fn wait(&self, chain: &ChainClient, timeout: Duration) -> Result<bool, WalletError> {
        let scripts = self.scripts();
        let refs: Vec<&bitcoin::Script> = scripts.iter().map(|s| s.as_script()).collect();
        chain.subscribe(&refs)?;
        chain.wait_for_change(&refs, timeout)
    }

    /// Read every watched contract's status and report what changed since the last poll.
    ///
    /// # Errors
    /// [`WalletError::Electrum`] on a network or protocol failure.
    pub fn poll(&mut self, chain: &ChainClient) -> Result<Vec<WatchEvent>, WalletError> {
        let mut events = Vec::new();
        for e in &mut self.entries {
            let now = contract_status(chain, &e.compiled, e.known)?;
            let before = e.last.take();
            let name = &e.name;
            match (
                before.as_ref().and_then(|b| b.funding.as_ref()),
                now.funding.as_ref(),
            ) {
                (None, Some(f)) => {
                    e.known.get_or_insert(f.outpoint);
                    events.push(WatchEvent::Funded {
                        name: name.clone(),
                        outpoint: f.outpoint,
                        confirmations: f.confirmations,
                    });
                }
                (Some(b), Some(f)) if b.confirmations != f.confirmations => {
                    events.push(WatchEvent::Confirmations {
                        name: name.clone(),
                        txid: f.outpoint.txid,
                        from: b.confirmations,
                        to: f.confirmations,
                    })
                }
                _ => {}
            }
            match (
                before.as_ref().and_then(|b| b.spend.as_ref()),
                now.spend.as_ref(),
            ) {
                (None, Some(s)) => events.push(WatchEvent::Spent {
                    name: name.clone(),
                    txid: s.txid,
                    path: s.path,
                    preimage: now.preimage(),
                }),
                (Some(b), Some(s)) if b.txid != s.txid => {
                    events.push(WatchEvent::SpendVanished {
                        name: name.clone(),
                        txid: b.txid,
                    });
                    events.push(WatchEvent::Spent {
                        name: name.clone(),
                        txid: s.txid,
                        path: s.path,
                        preimage: now.preimage(),
                    });
                }
                (Some(b), Some(s)) if b.confirmations != s.confirmations => {
                    events.push(WatchEvent::Confirmations {
                        name: name.clone(),
                        txid: s.txid,
                        from: b.confirmations,
                        to: s.confirmations,
                    })
                }
                (Some(b), None) => events.push(WatchEvent::SpendVanished {
                    name: name.clone(),
                    txid: b.txid,
                }),
                _ => {}
            }
            e.last = Some(now);
        }
        Ok(events)
    }
}
