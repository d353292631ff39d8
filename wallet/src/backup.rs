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

use crate::error::BackupError;
use crate::store::{self, BroadcastKind, BroadcastRecord, ContractRecord};
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
    /// Contract keys handed out.
    pub contract_keys: Vec<ContractKey>,
    /// Contracts with their files and funding outpoints.
    pub contracts: Vec<ContractRecord>,
    /// Contract spends still being re-broadcast.
    pub pending: Vec<PendingSpend>,
    /// Other state keyed by name (job parameters), opaque to the wallet.
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A contract key handed out: its index on the contract derivation path and its public key.
/// Version 1 writes it as the JSON array `[index, pubkey]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(u32, String)", into = "(u32, String)")]
pub struct ContractKey {
    /// The index (hardened) on the wallet's contract path.
    pub index: u32,
    /// The x-only or compressed public key, hex, as the wallet recorded it.
    pub pubkey: String,
}

impl From<(u32, String)> for ContractKey {
    fn from((index, pubkey): (u32, String)) -> Self {
        ContractKey { index, pubkey }
    }
}

impl From<ContractKey> for (u32, String) {
    fn from(k: ContractKey) -> Self {
        (k.index, k.pubkey)
    }
}

/// A contract spend the wallet keeps re-broadcasting until it is buried. Version 1 writes it
/// as the JSON array `[kind, contract, raw transaction hex]`, the kind as its
/// [`BroadcastKind::name`]; a kind this build does not know is refused, naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    from = "(BroadcastKind, Option<String>, String)",
    into = "(BroadcastKind, Option<String>, String)"
)]
pub struct PendingSpend {
    /// What the spend is (`claim`, `refund`, `exit`, `slash`, ...).
    pub kind: BroadcastKind,
    /// The contract's name, when the spend is of a recorded contract.
    pub contract: Option<String>,
    /// The raw transaction, consensus-encoded hex.
    pub tx_hex: String,
}

impl From<(BroadcastKind, Option<String>, String)> for PendingSpend {
    fn from((kind, contract, tx_hex): (BroadcastKind, Option<String>, String)) -> Self {
        PendingSpend {
            kind,
            contract,
            tx_hex,
        }
    }
}

impl From<PendingSpend> for (BroadcastKind, Option<String>, String) {
    fn from(p: PendingSpend) -> Self {
        (p.kind, p.contract, p.tx_hex)
    }
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
            contract_keys: store::contract_key_indices(self.conn())?
                .into_iter()
                .map(ContractKey::from)
                .collect(),
            contracts: store::list_contracts(self.conn())?,
            pending: store::list_broadcasts(self.conn())?
                .into_iter()
                .map(|r| PendingSpend {
                    kind: r.kind,
                    contract: r.contract,
                    tx_hex: serialize_hex(&r.tx),
                })
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
                source: BackupError::Encrypt,
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
        let bad = |source: BackupError| WalletError::Backup {
            path: path.into(),
            source,
        };
        let bytes = std::fs::read(path).map_err(|e| WalletError::io(path, e))?;
        if bytes.len() < 8 + 12 + 16 || &bytes[..8] != MAGIC {
            return Err(bad(BackupError::NotABackup));
        }
        let nonce: [u8; 12] = bytes[8..20].try_into().expect("length checked above");
        let plain = cipher(self)
            .decrypt(&Nonce::from(nonce), &bytes[20..])
            .map_err(|_| bad(BackupError::Decrypt))?;
        let doc: Backup =
            serde_json::from_slice(&plain).map_err(|e| bad(BackupError::Contents(e)))?;
        if doc.version != 1 {
            return Err(bad(BackupError::Version(doc.version)));
        }
        if doc.network != self.network().to_string() {
            return Err(bad(BackupError::Network {
                backup: doc.network,
                wallet: self.network(),
            }));
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
        for k in &doc.contract_keys {
            store::record_contract_key(self.conn(), k.index, &k.pubkey, "restored")?;
        }
        for c in &doc.contracts {
            store::put_contract(self.conn(), c)?;
        }
        for p in &doc.pending {
            let tx: bitcoin::Transaction =
                deserialize_hex(&p.tx_hex).map_err(|e| WalletError::Backup {
                    path: path.into(),
                    source: BackupError::Transaction(e),
                })?;
            store::put_broadcast(
                self.conn(),
                &BroadcastRecord {
                    txid: tx.compute_txid(),
                    tx,
                    kind: p.kind,
                    contract: p.contract.clone(),
                    height: 0,
                    fee_rate_sat_kwu: 0,
                },
            )?;
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Version 1 of the backup document, frozen: a document written by any version 1 wallet
    /// reads into the typed fields and writes back to the same JSON.
    #[test]
    fn version_1_documents_read_and_write_back_unchanged() {
        let text = include_str!("../tests/data/backup_v1.json");
        let doc: Backup = serde_json::from_str(text).unwrap();
        assert_eq!(doc.version, 1);
        assert_eq!(
            doc.contract_keys[1],
            ContractKey {
                index: 1,
                pubkey: "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9".into()
            }
        );
        assert_eq!(doc.contracts[0].amount_sat, Some(10_309));
        assert_eq!(doc.contracts[1].funding, None);
        assert_eq!(
            doc.pending[0],
            PendingSpend {
                kind: BroadcastKind::Claim,
                contract: Some("escrow-1".into()),
                tx_hex: "02000000000100000000".into()
            }
        );
        assert_eq!(doc.pending[1].contract, None);
        let back = serde_json::to_value(&doc).unwrap();
        let original: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, original);
    }

    /// A pending spend of each kind text a version 1 document may hold reads as its typed kind
    /// and writes back as the same text; an unknown kind is refused, naming it.
    #[test]
    fn pending_spend_kinds_read_and_write_back() {
        for kind in [
            "send", "fund", "bump", "claim", "refund", "exit", "slash", "store", "grant", "revoke",
        ] {
            let text = format!(r#"["{kind}",null,"0200"]"#);
            let p: PendingSpend = serde_json::from_str(&text).unwrap();
            assert_eq!(p.kind.name(), kind);
            assert_eq!(serde_json::to_string(&p).unwrap(), text);
        }
        let e = serde_json::from_str::<PendingSpend>(r#"["teleport",null,"0200"]"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `teleport`"), "{e}");
    }
}
