//! The chain as setup and access control read it: the tip, a script's history, transactions.
//!
//! [`ChainView`] is the three questions bond checks and the ACL follower ask; [`ElectrumView`]
//! answers them through the wallet crate's Electrum client and bounds every number the server
//! sends (history length, heights), so a lying or broken server gives an error, never a huge
//! allocation or a height past the tip.

use bitcoin::{Script, Transaction, Txid};
use btcmpc_wallet::{ChainClient, HistoryEntry};

/// Most history entries accepted for one script.
pub const MAX_HISTORY: usize = 10_000;

/// A failure to read the chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The server failed or refused.
    #[error("chain server: {0}")]
    Server(String),
    /// The server sent something out of bounds or inconsistent.
    #[error("chain server sent {0}")]
    Bad(String),
}

/// What setup and access control need from the chain.
pub trait ChainView {
    /// The tip height.
    ///
    /// # Errors
    /// [`ChainError`].
    fn tip(&self) -> Result<u32, ChainError>;

    /// Every transaction paying to or spending from `script` (confirmed ones with their height),
    /// at most [`MAX_HISTORY`].
    ///
    /// # Errors
    /// [`ChainError`].
    fn history(&self, script: &Script) -> Result<Vec<HistoryEntry>, ChainError>;

    /// A transaction by id, `None` when the server does not know it.
    ///
    /// # Errors
    /// [`ChainError`].
    fn transaction(&self, txid: &Txid) -> Result<Option<Transaction>, ChainError>;
}

/// [`ChainView`] over an Electrum connection.
#[derive(Debug)]
pub struct ElectrumView<'a> {
    chain: &'a ChainClient,
}

impl<'a> ElectrumView<'a> {
    /// Wrap a connection.
    pub fn new(chain: &'a ChainClient) -> Self {
        ElectrumView { chain }
    }
}

impl ChainView for ElectrumView<'_> {
    fn tip(&self) -> Result<u32, ChainError> {
        let (h, _) = self
            .chain
            .tip()
            .map_err(|e| ChainError::Server(e.to_string()))?;
        if h >= 500_000_000 {
            return Err(ChainError::Bad(format!("tip height {h}")));
        }
        Ok(h)
    }

    fn history(&self, script: &Script) -> Result<Vec<HistoryEntry>, ChainError> {
        let tip = self.tip()?;
        let hist = self
            .chain
            .history(script)
            .map_err(|e| ChainError::Server(e.to_string()))?;
        if hist.len() > MAX_HISTORY {
            return Err(ChainError::Bad(format!(
                "{} history entries for one script (at most {MAX_HISTORY})",
                hist.len()
            )));
        }
        for h in &hist {
            if let Some(height) = h.height {
                // One block of slack: the tip may move between the two requests.
                if height > tip.saturating_add(1) {
                    return Err(ChainError::Bad(format!(
                        "height {height} for {} above the tip {tip}",
                        h.txid
                    )));
                }
            }
        }
        Ok(hist)
    }

    fn transaction(&self, txid: &Txid) -> Result<Option<Transaction>, ChainError> {
        match self.chain.transaction(txid) {
            Ok(tx) => {
                if tx.compute_txid() != *txid {
                    return Err(ChainError::Bad(format!("another transaction for {txid}")));
                }
                Ok(Some(tx))
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::debug!(target: "btcmpc_engine::node::chain", %txid, "transaction not found: {msg}");
                Ok(None)
            }
        }
    }
}

/// Confirmations of a transaction at `height` (`None` = mempool) with the tip at `tip`.
pub fn confirmations(tip: u32, height: Option<u32>) -> u32 {
    height.map_or(0, |h| tip.saturating_add(1).saturating_sub(h))
}
