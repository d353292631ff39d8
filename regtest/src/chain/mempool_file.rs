//! `DATADIR/mempool.dat`: the mempool kept across a clean shutdown, as Core's `-persistmempool`
//! (on by default) keeps it in its own `mempool.dat` (`node/mempool_persist.cpp`: written by
//! `DumpMempool` at shutdown, read by `LoadMempool` at start, every transaction going through
//! `AcceptToMemoryPool` again). A node that is killed writes nothing, so it loses whatever
//! entered its mempool since the last clean shutdown, as Core does.
//!
//! The format is ours (Core's is tied to its serialization and XOR key): a magic, a version,
//! the entry count (`u32` LE), then per entry its entry time (`u64` LE, unix seconds), its length
//! (`u32` LE) and the transaction (consensus encoding, with witnesses), and last the first 8
//! bytes of the SHA-256 of everything before. A file that fails its checksum or any bound is
//! ignored as a whole (with a warning), never half-read.

use std::path::{Path, PathBuf};

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::Transaction;
use sha2::{Digest, Sha256};

/// File name in the datadir.
pub const MEMPOOL_FILE: &str = "mempool.dat";

const MAGIC: &[u8; 8] = b"btcmpcMP";
const VERSION: u8 = 1;
/// Largest file read (Core's default `-maxmempool` is 300 MB).
pub const MAX_FILE: u64 = 300 * 1024 * 1024;
/// Largest transaction read (a standard transaction weighs at most 400,000 WU, so 400 kB).
const MAX_TX: usize = 4 * 1024 * 1024;

/// What was wrong with a mempool file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MempoolFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not one this node wrote, or was cut short or altered.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

fn checksum(bytes: &[u8]) -> [u8; 8] {
    let d = Sha256::digest(bytes);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// Encode `(entry time, transaction)` pairs, in the order given (parents before children).
pub fn encode<'a>(entries: impl IntoIterator<Item = (u64, &'a Transaction)>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(MAGIC);
    body.push(VERSION);
    let count_at = body.len();
    body.extend_from_slice(&0u32.to_le_bytes());
    let mut n: u32 = 0;
    for (time, tx) in entries {
        let raw = serialize(tx);
        body.extend_from_slice(&time.to_le_bytes());
        body.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        body.extend_from_slice(&raw);
        n += 1;
    }
    body[count_at..count_at + 4].copy_from_slice(&n.to_le_bytes());
    let sum = checksum(&body);
    body.extend_from_slice(&sum);
    body
}

/// Decode a file written by [`encode`].
///
/// # Errors
/// [`MempoolFileError::Corrupt`] naming the first fault (magic, version, checksum, a length
/// beyond the file or beyond 4 MiB, a transaction that does not decode).
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Vec<(u64, Transaction)>, MempoolFileError> {
    let bad = |reason: String| MempoolFileError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() < MAGIC.len() + 1 + 4 + 8 {
        return Err(bad(format!("{} bytes is too short", bytes.len())));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if checksum(body) != sum {
        return Err(bad("checksum mismatch".into()));
    }
    if &body[..8] != MAGIC {
        return Err(bad("not a mempool file of this node".into()));
    }
    if body[8] != VERSION {
        return Err(bad(format!("unknown version {}", body[8])));
    }
    let count = u32::from_le_bytes(body[9..13].try_into().expect("4 bytes"));
    let mut at = 13usize;
    let mut out = Vec::new();
    for i in 0..count {
        let Some(head) = body.get(at..at + 12) else {
            return Err(bad(format!("entry {i} of {count} is cut short")));
        };
        let time = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
        if len > MAX_TX {
            return Err(bad(format!("entry {i}: {len} bytes is above {MAX_TX}")));
        }
        at += 12;
        let Some(raw) = body.get(at..at + len) else {
            return Err(bad(format!("entry {i} of {count} is cut short")));
        };
        let tx: Transaction =
            deserialize(raw).map_err(|e| bad(format!("entry {i}: transaction: {e}")))?;
        out.push((time, tx));
        at += len;
    }
    if at != body.len() {
        return Err(bad(format!(
            "{} bytes after the last entry",
            body.len() - at
        )));
    }
    Ok(out)
}

/// Write `bytes` to `path` atomically and durably ([`crate::server::write_atomic`]: a temporary
/// file, `fsync`, rename, `fsync` of the directory).
///
/// # Errors
/// [`MempoolFileError::Io`].
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), MempoolFileError> {
    crate::server::write_atomic(path, bytes, 0o644).map_err(|source| MempoolFileError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Read `path`; `Ok(None)` when there is no file.
///
/// # Errors
/// As [`decode`]; [`MempoolFileError::Io`]; a file above [`MAX_FILE`] bytes.
pub fn read(path: &Path) -> Result<Option<Vec<(u64, Transaction)>>, MempoolFileError> {
    let io = |source| MempoolFileError::Io {
        path: path.to_owned(),
        source,
    };
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if len > MAX_FILE {
        return Err(MempoolFileError::Corrupt {
            path: path.to_owned(),
            reason: format!("{len} bytes is above the {MAX_FILE}-byte bound"),
        });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    decode(path, &bytes).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::{absolute, transaction, Amount, OutPoint, ScriptBuf, TxIn, TxOut};

    fn tx(n: u32) -> Transaction {
        Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(bitcoin::Txid::from_byte_array([n as u8; 32]), n),
                ..Default::default()
            }],
            output: vec![TxOut {
                value: Amount::from_sat(1_000 + u64::from(n)),
                script_pubkey: ScriptBuf::new_op_return([n as u8; 4]),
            }],
        }
    }

    use bitcoin::hashes::Hash as _;

    #[test]
    fn round_trip_and_every_damage_is_refused() {
        let p = Path::new("mempool.dat");
        let txs: Vec<Transaction> = (0..3).map(tx).collect();
        let bytes = encode(txs.iter().enumerate().map(|(i, t)| (i as u64 + 7, t)));
        let back = decode(p, &bytes).unwrap();
        assert_eq!(back.len(), 3);
        for (i, (time, t)) in back.iter().enumerate() {
            assert_eq!(*time, i as u64 + 7);
            assert_eq!(t, &txs[i]);
        }
        assert!(decode(p, &encode(std::iter::empty())).unwrap().is_empty());
        // Every truncation and every flipped byte is refused, never half-read.
        for cut in 0..bytes.len() {
            assert!(decode(p, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(decode(p, &b).is_err(), "flip at {i}");
        }
    }
}
