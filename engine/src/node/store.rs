//! A party's durable storage: SQLite (bundled) in WAL mode.
//!
//! What it holds: datasets (metadata), share columns (one blob per column chunk, field
//! elements in the wire encoding of [`super::frame::encode_field_vec`]), receipts, the ACL
//! cache, job state, and the outbox of signed messages keyed by (job, round, slot).
//!
//! Durability: every write runs in a transaction that is committed before the method returns,
//! so a caller acknowledges (signs a receipt, answers a peer) only what is on disk. The journal
//! is `WAL` with `synchronous = FULL`: each commit syncs the WAL. `NORMAL` would be safe
//! against a process crash but may lose the last commits on power loss, and a lost outbox
//! entry would let a restarted party sign a second, different message for a slot it already
//! sent (equivocation), or forget shares it already receipted; one sync per commit is the price.
//!
//! A dataset is written through a [`DatasetWriter`]: metadata and every chunk go into one
//! transaction, so a crash (or dropping the writer) before [`DatasetWriter::commit`] leaves no
//! trace of the dataset.
//!
//! The outbox never holds two messages for one slot: [`Store::put_outgoing`] keeps the first
//! bytes and returns them when offered different ones, so a restarted party re-sends exactly
//! what it signed before.
//!
//! The schema is versioned (`schema_version` table); [`Store::open`] applies the migrations
//! from the stored version up to [`SCHEMA_VERSION`] in one transaction and refuses a newer one.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::frame::{decode_field_vec, encode_field_vec, FrameError};
use crate::mpc::field::PrimeField;

/// The schema version this code writes.
pub const SCHEMA_VERSION: u32 = 3;

/// `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE datasets (
        id TEXT PRIMARY KEY NOT NULL,
        meta BLOB NOT NULL,
        rows INTEGER NOT NULL,
        columns INTEGER NOT NULL
    );
    CREATE TABLE share_chunks (
        dataset TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
        col INTEGER NOT NULL,
        chunk INTEGER NOT NULL,
        first_row INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (dataset, col, chunk)
    ) WITHOUT ROWID;
    CREATE TABLE receipts (
        dataset TEXT NOT NULL,
        party INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        PRIMARY KEY (dataset, party)
    ) WITHOUT ROWID;
    CREATE TABLE acl_cache (
        dataset TEXT NOT NULL,
        service TEXT NOT NULL,
        entry BLOB NOT NULL,
        height INTEGER NOT NULL,
        PRIMARY KEY (dataset, service)
    ) WITHOUT ROWID;
    CREATE TABLE jobs (
        job TEXT PRIMARY KEY NOT NULL,
        state BLOB NOT NULL,
        open INTEGER NOT NULL
    );
    CREATE TABLE outbox (
        job TEXT NOT NULL,
        round INTEGER NOT NULL,
        slot INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job, round, slot)
    ) WITHOUT ROWID;",
    // 1 -> 2: a machine's journal, appended one event at a time (the job record no longer
    // carries it, so an event costs its own bytes, not the whole log's).
    "CREATE TABLE journal (
        job TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        PRIMARY KEY (job, seq)
    ) WITHOUT ROWID;",
    // 2 -> 3: the journal and the outbox hold whole round messages (megabytes): as WITHOUT
    // ROWID tables every seek of their key read those payloads (SQLite advises such tables
    // only for rows under a twentieth of a page), so appending one event cost more than the
    // evaluation. Rowid tables with a unique key index seek through the small index only.
    "CREATE TABLE journal_rows (
        job TEXT NOT NULL,
        seq INTEGER NOT NULL,
        sender INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        UNIQUE (job, seq)
    );
    INSERT INTO journal_rows (job, seq, sender, bytes)
        SELECT job, seq, sender, bytes FROM journal;
    DROP TABLE journal;
    ALTER TABLE journal_rows RENAME TO journal;
    CREATE TABLE outbox_rows (
        job TEXT NOT NULL,
        round INTEGER NOT NULL,
        slot INTEGER NOT NULL,
        bytes BLOB NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        UNIQUE (job, round, slot)
    );
    INSERT INTO outbox_rows (job, round, slot, bytes, sent)
        SELECT job, round, slot, bytes, sent FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_rows RENAME TO outbox;",
];

/// Storage errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("party store: {during}: {source}")]
    Sqlite {
        /// What we were doing.
        during: &'static str,
        /// The error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of this software.
    #[error("party store schema version {found} is newer than this software's {supported}")]
    TooNew {
        /// Version in the file.
        found: u32,
        /// [`SCHEMA_VERSION`].
        supported: u32,
    },
    /// A dataset with this id is already stored.
    #[error("dataset {0:?} is already stored")]
    DatasetExists(String),
    /// No dataset with this id.
    #[error("no dataset {0:?}")]
    NoDataset(String),
    /// A stored share chunk does not decode.
    #[error("share chunk {chunk} of column {column} of dataset {dataset:?} is corrupt: {source}")]
    Corrupt {
        /// Dataset id.
        dataset: String,
        /// Column index.
        column: u32,
        /// Chunk index.
        chunk: u32,
        /// The decoding error.
        source: FrameError,
    },
    /// A count does not fit SQLite's signed 64-bit integers.
    #[error("{what} {value} does not fit the store")]
    OutOfRange {
        /// Which value.
        what: &'static str,
        /// The value.
        value: u64,
    },
}

fn sql(during: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { during, source }
}

fn to_i64(what: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

/// Metadata of a stored dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetMeta {
    /// The dataset id (the name the owner gave, or its digest).
    pub id: String,
    /// Opaque metadata bytes (the owner's signed dataset card).
    pub meta: Vec<u8>,
    /// Number of rows.
    pub rows: u64,
    /// Number of columns.
    pub columns: u32,
}

/// An outbox key: the slot of one signed message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboxSlot {
    /// The job (or store) id.
    pub job: String,
    /// The protocol round.
    pub round: u32,
    /// The slot within the round (message kind and recipient, as the protocol numbers them).
    pub slot: u32,
}

/// What [`Store::put_outgoing`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutgoing {
    /// The slot was empty; the bytes are now stored.
    Inserted,
    /// The same bytes were already stored.
    Unchanged,
    /// Different bytes were already stored and are kept: send these, never the new ones.
    KeptExisting {
        /// The stored bytes.
        stored: Vec<u8>,
    },
}

/// A party's store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, in WAL mode with `synchronous = FULL`,
    /// and migrates its schema to [`SCHEMA_VERSION`].
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the file cannot be opened or migrated;
    /// [`StoreError::TooNew`] if it was written by a newer version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(sql("opening the database"))?;
        Self::init(conn)
    }

    /// An in-memory store (tests).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(sql("opening the database"))?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql("setting the busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql("setting synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql("enabling foreign keys"))?;
        migrate(&mut conn)?;
        Ok(Self { conn })
    }

    /// The schema version in the file.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        read_version(&self.conn)
    }

    /// Starts writing a dataset; nothing is visible until [`DatasetWriter::commit`].
    ///
    /// # Errors
    /// [`StoreError::DatasetExists`]; [`StoreError::Sqlite`].
    pub fn begin_dataset(&mut self, meta: &DatasetMeta) -> Result<DatasetWriter<'_>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("starting a dataset"))?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM datasets WHERE id = ?1)",
                [&meta.id],
                |r| r.get(0),
            )
            .map_err(sql("looking up a dataset"))?;
        if exists {
            return Err(StoreError::DatasetExists(meta.id.clone()));
        }
        tx.execute(
            "INSERT INTO datasets (id, meta, rows, columns) VALUES (?1, ?2, ?3, ?4)",
            params![
                meta.id,
                meta.meta,
                to_i64("row count", meta.rows)?,
                meta.columns
            ],
        )
        .map_err(sql("inserting a dataset"))?;
        Ok(DatasetWriter {
            tx,
            dataset: meta.id.clone(),
        })
    }

    /// Replaces the metadata bytes of a stored dataset (its state changed), in one commit.
    ///
    /// # Errors
    /// [`StoreError::NoDataset`]; [`StoreError::Sqlite`].
    pub fn set_dataset_meta(&mut self, dataset: &str, meta: &[u8]) -> Result<(), StoreError> {
        let changed = self
            .conn
            .execute(
                "UPDATE datasets SET meta = ?2 WHERE id = ?1",
                params![dataset, meta],
            )
            .map_err(sql("updating a dataset"))?;
        if changed == 0 {
            return Err(StoreError::NoDataset(dataset.to_owned()));
        }
        Ok(())
    }

    /// Deletes a dataset with its share chunks and receipts, in one commit (a refused store).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn delete_dataset(&mut self, dataset: &str) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("deleting a dataset"))?;
        tx.execute("DELETE FROM share_chunks WHERE dataset = ?1", [dataset])
            .map_err(sql("deleting a dataset"))?;
        tx.execute("DELETE FROM receipts WHERE dataset = ?1", [dataset])
            .map_err(sql("deleting a dataset"))?;
        tx.execute("DELETE FROM datasets WHERE id = ?1", [dataset])
            .map_err(sql("deleting a dataset"))?;
        tx.commit().map_err(sql("deleting a dataset"))
    }

    /// The metadata of every stored dataset, by id.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn datasets(&self) -> Result<Vec<DatasetMeta>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT id, meta, rows, columns FROM datasets ORDER BY id")
            .map_err(sql("listing datasets"))?;
        let rows = st
            .query_map([], |r| {
                Ok(DatasetMeta {
                    id: r.get(0)?,
                    meta: r.get(1)?,
                    rows: r.get::<_, i64>(2)?.unsigned_abs(),
                    columns: r.get(3)?,
                })
            })
            .map_err(sql("listing datasets"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("listing datasets"))
    }

    /// The chunks of one column of a dataset, in order, as `(first_row, bytes)`.
    ///
    /// # Errors
    /// [`StoreError::NoDataset`]; [`StoreError::Sqlite`].
    pub fn column_chunks(
        &self,
        dataset: &str,
        column: u32,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.require_dataset(dataset)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT first_row, data FROM share_chunks WHERE dataset = ?1 AND col = ?2
                 ORDER BY chunk",
            )
            .map_err(sql("reading a column"))?;
        let rows = st
            .query_map(params![dataset, column], |r| {
                Ok((r.get::<_, i64>(0)?.unsigned_abs(), r.get(1)?))
            })
            .map_err(sql("reading a column"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("reading a column"))
    }

    /// One column of a dataset as field elements, chunks concatenated in order.
    ///
    /// # Errors
    /// [`StoreError::NoDataset`]; [`StoreError::Corrupt`] if a chunk does not decode;
    /// [`StoreError::Sqlite`].
    pub fn read_column<F: PrimeField>(
        &self,
        dataset: &str,
        column: u32,
    ) -> Result<Vec<F>, StoreError> {
        let mut out = Vec::new();
        for (chunk, (_, bytes)) in self.column_chunks(dataset, column)?.into_iter().enumerate() {
            let v = decode_field_vec::<F>(&bytes).map_err(|source| StoreError::Corrupt {
                dataset: dataset.to_owned(),
                column,
                chunk: u32::try_from(chunk).unwrap_or(u32::MAX),
                source,
            })?;
            out.extend(v);
        }
        Ok(out)
    }

    fn require_dataset(&self, dataset: &str) -> Result<(), StoreError> {
        let exists: bool = self
            .conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM datasets WHERE id = ?1)",
                [dataset],
                |r| r.get(0),
            )
            .map_err(sql("looking up a dataset"))?;
        if exists {
            Ok(())
        } else {
            Err(StoreError::NoDataset(dataset.to_owned()))
        }
    }

    /// Stores (or replaces) the receipt of `party` for `dataset`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn put_receipt(
        &mut self,
        dataset: &str,
        party: u32,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.write("storing a receipt", |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO receipts (dataset, party, bytes) VALUES (?1, ?2, ?3)",
                params![dataset, party, bytes],
            )
            .map(drop)
        })
    }

    /// Every receipt stored for `dataset`, as `(party, bytes)` by party.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn receipts(&self, dataset: &str) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT party, bytes FROM receipts WHERE dataset = ?1 ORDER BY party")
            .map_err(sql("reading receipts"))?;
        let rows = st
            .query_map([dataset], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("reading receipts"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("reading receipts"))
    }

    /// Caches the ACL entry of `service` for `dataset` as seen at chain `height`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn put_acl(
        &mut self,
        dataset: &str,
        service: &str,
        entry: &[u8],
        height: u32,
    ) -> Result<(), StoreError> {
        self.write("caching an ACL entry", |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO acl_cache (dataset, service, entry, height)
                 VALUES (?1, ?2, ?3, ?4)",
                params![dataset, service, entry, height],
            )
            .map(drop)
        })
    }

    /// The cached ACL entry and its height.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn acl(&self, dataset: &str, service: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
        self.conn
            .query_row(
                "SELECT entry, height FROM acl_cache WHERE dataset = ?1 AND service = ?2",
                [dataset, service],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(sql("reading the ACL cache"))
    }

    /// Drops every cached ACL entry of `dataset` (after a reorg or a revocation).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn clear_acl(&mut self, dataset: &str) -> Result<(), StoreError> {
        self.write("clearing the ACL cache", |tx| {
            tx.execute("DELETE FROM acl_cache WHERE dataset = ?1", [dataset])
                .map(drop)
        })
    }

    /// Stores the state of `job` (opaque bytes) and whether it is still open. Closing a job
    /// deletes its outbox in the same transaction: no machine of a closed job sends again, so
    /// its messages are never re-sent and no slot of it can be offered a second version.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn put_job_state(&mut self, job: &str, state: &[u8], open: bool) -> Result<(), StoreError> {
        self.write("storing job state", |tx| {
            tx.execute(
                "INSERT OR REPLACE INTO jobs (job, state, open) VALUES (?1, ?2, ?3)",
                params![job, state, open],
            )?;
            if !open {
                tx.execute("DELETE FROM outbox WHERE job = ?1", [job])?;
            }
            Ok(())
        })
    }

    /// Deletes the outbox of `job` (its machines are finished: they never send again).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn delete_outbox(&mut self, job: &str) -> Result<(), StoreError> {
        self.write("deleting an outbox", |tx| {
            tx.execute("DELETE FROM outbox WHERE job = ?1", [job])
                .map(drop)
        })
    }

    /// The stored state of `job`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn job_state(&self, job: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row("SELECT state FROM jobs WHERE job = ?1", [job], |r| r.get(0))
            .optional()
            .map_err(sql("reading job state"))
    }

    /// The ids of the open jobs.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn open_jobs(&self) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT job FROM jobs WHERE open ORDER BY job")
            .map_err(sql("listing jobs"))?;
        let rows = st
            .query_map([], |r| r.get(0))
            .map_err(sql("listing jobs"))?;
        rows.collect::<Result<_, _>>().map_err(sql("listing jobs"))
    }

    /// Every job whose name starts with `prefix`, open or not, ascending.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn jobs_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT job FROM jobs WHERE substr(job, 1, length(?1)) = ?1 ORDER BY job")
            .map_err(sql("listing jobs"))?;
        let rows = st
            .query_map([prefix], |r| r.get(0))
            .map_err(sql("listing jobs"))?;
        rows.collect::<Result<_, _>>().map_err(sql("listing jobs"))
    }

    /// Appends one event to the journal of `job` (a machine's log: a message from party
    /// `sender`, or `sender` 0 for a deadline), after every event appended before.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn append_journal(
        &mut self,
        job: &str,
        sender: u32,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.write("appending to a journal", |tx| {
            tx.execute(
                "INSERT INTO journal (job, seq, sender, bytes) VALUES (?1,
                    (SELECT COALESCE(MAX(seq), 0) + 1 FROM journal WHERE job = ?1), ?2, ?3)",
                params![job, sender, bytes],
            )
            .map(drop)
        })
    }

    /// The journal of `job`, in the order it was appended: `(sender, bytes)`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn journal(&self, job: &str) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT sender, bytes FROM journal WHERE job = ?1 ORDER BY seq")
            .map_err(sql("reading a journal"))?;
        let rows = st
            .query_map([job], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("reading a journal"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("reading a journal"))
    }

    /// Deletes the journal of `job` (once its machine's outcome is recorded).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn delete_journal(&mut self, job: &str) -> Result<(), StoreError> {
        self.write("deleting a journal", |tx| {
            tx.execute("DELETE FROM journal WHERE job = ?1", [job])
                .map(drop)
        })
    }

    /// Persists a signed message for `slot` before it is sent. The first bytes stored for a
    /// slot are final: offered different bytes, the store keeps the old ones and returns them
    /// ([`PutOutgoing::KeptExisting`]); the caller must send those.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn put_outgoing(
        &mut self,
        slot: &OutboxSlot,
        bytes: &[u8],
    ) -> Result<PutOutgoing, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("storing an outgoing message"))?;
        let stored: Option<Vec<u8>> = tx
            .query_row(
                "SELECT bytes FROM outbox WHERE job = ?1 AND round = ?2 AND slot = ?3",
                params![slot.job, slot.round, slot.slot],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("reading the outbox"))?;
        let result = match stored {
            Some(s) if s == bytes => PutOutgoing::Unchanged,
            Some(stored) => {
                tracing::warn!(target: "btcmpc_engine::node::store", job = %slot.job, round = slot.round, slot = slot.slot, "refused a second, different message for an outbox slot");
                PutOutgoing::KeptExisting { stored }
            }
            None => {
                tx.execute(
                    "INSERT INTO outbox (job, round, slot, bytes) VALUES (?1, ?2, ?3, ?4)",
                    params![slot.job, slot.round, slot.slot, bytes],
                )
                .map_err(sql("storing an outgoing message"))?;
                PutOutgoing::Inserted
            }
        };
        tx.commit().map_err(sql("committing an outgoing message"))?;
        Ok(result)
    }

    /// The stored message of `slot`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn outgoing(&self, slot: &OutboxSlot) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .query_row(
                "SELECT bytes FROM outbox WHERE job = ?1 AND round = ?2 AND slot = ?3",
                params![slot.job, slot.round, slot.slot],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("reading the outbox"))
    }

    /// Records that `slot` was sent (delivery to the socket; the protocol decides when a
    /// message needs no re-send).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn mark_sent(&mut self, slot: &OutboxSlot) -> Result<(), StoreError> {
        self.write("marking a message sent", |tx| {
            tx.execute(
                "UPDATE outbox SET sent = 1 WHERE job = ?1 AND round = ?2 AND slot = ?3",
                params![slot.job, slot.round, slot.slot],
            )
            .map(drop)
        })
    }

    /// Every stored message of `job`, in slot order, with whether it was sent: what a restarted
    /// party re-sends.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`].
    pub fn outbox(&self, job: &str) -> Result<Vec<(OutboxSlot, Vec<u8>, bool)>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT round, slot, bytes, sent FROM outbox WHERE job = ?1 ORDER BY round, slot",
            )
            .map_err(sql("reading the outbox"))?;
        let rows = st
            .query_map([job], |r| {
                Ok((
                    OutboxSlot {
                        job: job.to_owned(),
                        round: r.get(0)?,
                        slot: r.get(1)?,
                    },
                    r.get(2)?,
                    r.get(3)?,
                ))
            })
            .map_err(sql("reading the outbox"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql("reading the outbox"))
    }

    fn write(
        &mut self,
        during: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(during))?;
        f(&tx).map_err(sql(during))?;
        tx.commit().map_err(sql(during))
    }
}

/// Writes one dataset in one transaction; dropped without [`DatasetWriter::commit`], it rolls
/// back and leaves nothing.
#[derive(Debug)]
pub struct DatasetWriter<'a> {
    tx: Transaction<'a>,
    dataset: String,
}

impl DatasetWriter<'_> {
    /// Adds chunk `chunk` of column `column`, starting at row `first_row`, as raw bytes.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] (also when the chunk was already written).
    pub fn put_chunk(
        &mut self,
        column: u32,
        chunk: u32,
        first_row: u64,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.tx
            .execute(
                "INSERT INTO share_chunks (dataset, col, chunk, first_row, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    self.dataset,
                    column,
                    chunk,
                    to_i64("first row", first_row)?,
                    bytes
                ],
            )
            .map_err(sql("storing a share chunk"))?;
        Ok(())
    }

    /// Adds a chunk of field elements (encoded as on the wire).
    ///
    /// # Errors
    /// As [`DatasetWriter::put_chunk`].
    pub fn put_field_chunk<F: PrimeField>(
        &mut self,
        column: u32,
        chunk: u32,
        first_row: u64,
        values: &[F],
    ) -> Result<(), StoreError> {
        let mut bytes = Vec::new();
        encode_field_vec(values, &mut bytes);
        self.put_chunk(column, chunk, first_row, &bytes)
    }

    /// Commits the dataset: from now on it is stored and may be acknowledged.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`]; nothing is stored then.
    pub fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().map_err(sql("committing a dataset"))
    }
}

fn read_version(conn: &Connection) -> Result<u32, StoreError> {
    let has_table: bool = conn
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
            [],
            |r| r.get(0),
        )
        .map_err(sql("reading the schema version"))?;
    if !has_table {
        return Ok(0);
    }
    conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
        .map_err(sql("reading the schema version"))
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Exclusive)
        .map_err(sql("starting the migration"))?;
    let found = read_version(&tx)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(sql("creating the schema version table"))?;
    for (from, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::info!(target: "btcmpc_engine::node::store", from, to = from + 1, "migrating the party store");
        tx.execute_batch(step)
            .map_err(sql("migrating the schema"))?;
    }
    tx.execute("DELETE FROM schema_version", [])
        .map_err(sql("writing the schema version"))?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES (?1)",
        [SCHEMA_VERSION],
    )
    .map_err(sql("writing the schema version"))?;
    tx.commit().map_err(sql("committing the migration"))
}
