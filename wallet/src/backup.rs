//! Encrypted backups of what the seed alone cannot rebuild: contract files, funding outpoints,
//! contract key labels, pending contract spends, and job parameters added by other crates.
//!
//! File format: the 8 bytes `BMPCBAK1`, a 12-byte random nonce, then ChaCha20-Poly1305
//! (RFC 8439) ciphertext of the JSON document, under a key derived from the seed with
//! HKDF-SHA256 (RFC 5869, info `backup`). Restoring needs the same mnemonic.

use std::path::Path;

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

use crate::store::{self, BroadcastRecord, ContractRecord};
use crate::wallet::{write_private, RoleWallet};
use crate::WalletError;

const MAGIC: &[u8; 8] = b"BMPCBAK1";

/// The plaintext of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// Format version (1).
    pub version: u32,
    /// The network of the wallet.
    pub network: String,
    /// Contract key indices handed out, with their labels.
    pub contract_keys: Vec<(u32, String)>,
    /// Contracts with their files and funding outpoints.
    pub contracts: Vec<ContractRecord>,
    /// Contract spends still being re-broadcast: (kind, contract, raw transaction hex).
    pub pending: Vec<(String, Option<String>, String)>,
    /// Other state keyed by name (job parameters), opaque to the wallet.
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn cipher(wallet: &RoleWallet) -> ChaCha20Poly1305 {
    let key = wallet.seed().derive_secret("backup");
    ChaCha20Poly1305::new(&Key::from(key))
}

impl RoleWallet {
    /// Collect this wallet's backup document.
    ///
    /// # Errors
    /// Database errors.
    pub fn backup_document(&self) -> Result<Backup, WalletError> {
        Ok(Backup {
            version: 1,
            network: self.network().to_string(),
            contract_keys: store::contract_key_indices(self.conn())?,
            contracts: store::list_contracts(self.conn())?,
            pending: store::list_broadcasts(self.conn())?
                .into_iter()
                .map(|r| (r.kind, r.contract, serialize_hex(&r.tx)))
                .collect(),
            extra: Default::default(),
        })
    }

    /// Write an encrypted backup to `path` (mode 0600, atomically). A file already at `path` is
    /// moved aside first (see [`crate::move_aside`]), never overwritten; returns its new name.
    ///
    /// # Errors
    /// Database and I/O errors.
    pub fn write_backup(
        &self,
        path: &Path,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<std::path::PathBuf>, WalletError> {
        use rand::RngCore;
        let mut doc = self.backup_document()?;
        doc.extra = extra;
        let plain = serde_json::to_vec(&doc).expect("backup documents always serialize");
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher(self)
            .encrypt(&Nonce::from(nonce), plain.as_slice())
            .map_err(|_| WalletError::Backup {
                path: path.into(),
                reason: "encryption failed".into(),
            })?;
        let mut out = Vec::with_capacity(8 + 12 + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        let moved = crate::move_aside(path)?;
        write_private(path, &out)?;
        Ok(moved)
    }

    /// Read and decrypt a backup made by a wallet with the same mnemonic.
    ///
    /// # Errors
    /// [`WalletError::Backup`] when the file is not a backup, was made with another seed, or
    /// was altered.
    pub fn read_backup(&self, path: &Path) -> Result<Backup, WalletError> {
        let bad = |reason: &str| WalletError::Backup {
            path: path.into(),
            reason: reason.into(),
        };
        let bytes = std::fs::read(path).map_err(|e| WalletError::io(path, e))?;
        if bytes.len() < 8 + 12 + 16 || &bytes[..8] != MAGIC {
            return Err(bad("not a btcmpc backup file"));
        }
        let nonce: [u8; 12] = bytes[8..20].try_into().expect("length checked above");
        let plain = cipher(self)
            .decrypt(&Nonce::from(nonce), &bytes[20..])
            .map_err(|_| bad("cannot decrypt: made with another mnemonic, or altered"))?;
        let doc: Backup =
            serde_json::from_slice(&plain).map_err(|e| bad(&format!("bad contents: {e}")))?;
        if doc.version != 1 {
            return Err(bad(&format!("unsupported version {}", doc.version)));
        }
        if doc.network != self.network().to_string() {
            return Err(bad(&format!(
                "it is for {}, this wallet is on {}",
                doc.network,
                self.network()
            )));
        }
        Ok(doc)
    }

    /// Restore the records of a backup into this wallet (existing records are kept; the
    /// backup's records are added or overwrite those of the same name).
    ///
    /// # Errors
    /// As [`RoleWallet::read_backup`]; database errors.
    pub fn restore_backup(&self, path: &Path) -> Result<Backup, WalletError> {
        let doc = self.read_backup(path)?;
        for (idx, pk) in &doc.contract_keys {
            store::record_contract_key(self.conn(), *idx, pk, "restored")?;
        }
        for c in &doc.contracts {
            store::put_contract(self.conn(), c)?;
        }
        for (kind, contract, raw) in &doc.pending {
            let tx: bitcoin::Transaction =
                deserialize_hex(raw).map_err(|e| WalletError::Backup {
                    path: path.into(),
                    reason: format!("bad transaction: {e}"),
                })?;
            store::put_broadcast(
                self.conn(),
                &BroadcastRecord {
                    txid: tx.compute_txid(),
                    tx,
                    kind: kind.clone(),
                    contract: contract.clone(),
                    height: 0,
                    fee_rate_sat_kwu: 0,
                },
            )?;
        }
        Ok(doc)
    }
}
