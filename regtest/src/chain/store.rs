//! The block store: one append-only file of checksummed records.
//!
//! Each record is `kind: u8`, `len: u32 LE`, `payload`, then the first 4 bytes of the
//! SHA-256 of the kind, length and payload. A record that is cut short or fails its
//! checksum (a crash during a write) ends the log: it and anything after it are dropped and
//! the file is truncated there, so the store never holds a corrupt record after a restart.
//! Writes are flushed with `fdatasync` before the node reports the blocks as mined.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash as _;
use bitcoin::{Block, BlockHash};
use tracing::warn;

use crate::types::NodeError;

/// File name of the block store in the datadir.
pub const BLOCKS_FILE: &str = "blocks.dat";

const KIND_BLOCK: u8 = 1;
const KIND_INVALIDATE: u8 = 2;
const KIND_RECONSIDER: u8 = 3;
/// Largest payload accepted on load (a block of 4 MB weight is at most 4 MB).
const MAX_PAYLOAD: usize = 8 * 1024 * 1024;

/// One entry of the log.
#[derive(Debug, Clone)]
pub enum Record {
    /// A block (in the best chain when written, or later moved out of it).
    Block(Block),
    /// `invalidateblock`.
    Invalidate(BlockHash),
    /// `reconsiderblock`.
    Reconsider(BlockHash),
}

/// The open store.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
    dirty: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.to_owned(),
        source,
    }
}

fn checksum(kind: u8, payload: &[u8]) -> [u8; 4] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update([kind]);
    h.update((payload.len() as u32).to_le_bytes());
    h.update(payload);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Parses records from `data`; returns them and the length of the valid prefix.
pub fn parse_records(data: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while data.len() - pos >= 9 {
        let kind = data[pos];
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&data[pos + 1..pos + 5]);
        let len = u32::from_le_bytes(len_bytes) as usize;
        if len > MAX_PAYLOAD || data.len() - pos - 5 < len + 4 {
            break;
        }
        let payload = &data[pos + 5..pos + 5 + len];
        let sum = &data[pos + 5 + len..pos + 9 + len];
        if sum != checksum(kind, payload) {
            break;
        }
        let record = match kind {
            KIND_BLOCK => match deserialize::<Block>(payload) {
                Ok(b) => Record::Block(b),
                Err(_) => break,
            },
            KIND_INVALIDATE | KIND_RECONSIDER if len == 32 => {
                let mut h = [0u8; 32];
                h.copy_from_slice(payload);
                let hash = BlockHash::from_byte_array(h);
                if kind == KIND_INVALIDATE {
                    Record::Invalidate(hash)
                } else {
                    Record::Reconsider(hash)
                }
            }
            _ => break,
        };
        records.push(record);
        pos += 9 + len;
    }
    (records, pos)
}

impl Store {
    /// Opens (or creates) the store in `dir` and returns its valid records; a damaged tail is
    /// cut off.
    ///
    /// # Errors
    /// [`NodeError::Io`] when the directory or file cannot be created, read or truncated.
    pub fn open(dir: &Path) -> Result<(Store, Vec<Record>), NodeError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(BLOCKS_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io_err(&path))?;
        let (records, valid) = parse_records(&data);
        if valid < data.len() {
            warn!(
                target: "btcmpc_regtest::chain::store",
                path = %path.display(),
                dropped = data.len() - valid,
                "dropping a damaged tail of the block store (interrupted write)"
            );
            file.set_len(valid as u64).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
        }
        file.seek(SeekFrom::Start(valid as u64))
            .map_err(io_err(&path))?;
        Ok((
            Store {
                path,
                file,
                dirty: false,
            },
            records,
        ))
    }

    fn append_raw(&mut self, kind: u8, payload: &[u8]) -> Result<(), NodeError> {
        let mut buf = Vec::with_capacity(payload.len() + 9);
        buf.push(kind);
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(payload);
        buf.extend_from_slice(&checksum(kind, payload));
        self.file.write_all(&buf).map_err(io_err(&self.path))?;
        self.dirty = true;
        Ok(())
    }

    /// Appends a record (not yet synced: call [`Store::sync`]).
    ///
    /// # Errors
    /// [`NodeError::Io`].
    pub fn append(&mut self, record: &Record) -> Result<(), NodeError> {
        match record {
            Record::Block(b) => self.append_raw(KIND_BLOCK, &serialize(b)),
            Record::Invalidate(h) => self.append_raw(KIND_INVALIDATE, h.as_byte_array()),
            Record::Reconsider(h) => self.append_raw(KIND_RECONSIDER, h.as_byte_array()),
        }
    }

    /// Appends an already serialized block (not yet synced).
    ///
    /// # Errors
    /// [`NodeError::Io`].
    pub fn append_block_bytes(&mut self, block: &[u8]) -> Result<(), NodeError> {
        self.append_raw(KIND_BLOCK, block)
    }

    /// Makes appended records durable.
    ///
    /// # Errors
    /// [`NodeError::Io`].
    pub fn sync(&mut self) -> Result<(), NodeError> {
        if self.dirty {
            self.file.sync_data().map_err(io_err(&self.path))?;
            self.dirty = false;
        }
        Ok(())
    }
}
