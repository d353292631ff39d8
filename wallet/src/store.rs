//! btcmpc's own records, kept in the wallet's SQLite database beside BDK's tables: contract
//! files with their funding outpoints, contract key indices handed out, and every transaction
//! this wallet broadcast (payments, fee bumps, contract fundings and spends, STORE and anchor
//! extensions), kept and re-broadcast until buried: the server's view (and BDK's, which follows
//! it) may forget them.
//!
//! Every write is one SQLite transaction: a crash leaves either the old or the new record.

use bdk_wallet::rusqlite::{params, Connection, OptionalExtension};
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{OutPoint, Transaction, Txid};
use btcmpc_contracts::PathKind;
use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::WalletError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS btcmpc_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS btcmpc_contract_keys (
    idx INTEGER PRIMARY KEY NOT NULL,
    pubkey TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS btcmpc_contracts (
    name TEXT PRIMARY KEY NOT NULL,
    file TEXT NOT NULL,
    script_pubkey TEXT NOT NULL,
    funding_txid TEXT,
    funding_vout INTEGER,
    amount_sat INTEGER
);
CREATE TABLE IF NOT EXISTS btcmpc_broadcasts (
    txid TEXT PRIMARY KEY NOT NULL,
    raw TEXT NOT NULL,
    kind TEXT NOT NULL,
    contract TEXT,
    height INTEGER NOT NULL DEFAULT 0,
    fee_rate INTEGER NOT NULL DEFAULT 0
);
";

/// A contract this wallet knows: its file (JSON, as written by the contracts crate) and,
/// once funded, its outpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractRecord {
    /// Local name (the contract file's address, unless given one).
    pub name: String,
    /// The contract file's JSON text.
    pub file: String,
    /// The contract output's script, hex.
    pub script_pubkey: String,
    /// The funding outpoint, once funded.
    pub funding: Option<OutPoint>,
    /// The funded amount in satoshis.
    pub amount_sat: Option<u64>,
}

/// What a kept transaction is. Stored (the `kind` column, the backup's pending spends) as its
/// lower-case [`BroadcastKind::name`].
///
/// The set is closed: a stored kind this build does not know is refused, naming it
/// ([`StorageError::UnknownBroadcastKind`]), rather than carried as free text. A kind decides
/// what a record is (a contract spend along one path, a payment, an ACL record), so a build that
/// misread one would misclassify it; a new kind is a change of the stored layout and comes with
/// a new [`SCHEMA_VERSION`] (and backup version), which older builds refuse as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastKind {
    /// A payment (`wallet send`).
    Send,
    /// A contract funding.
    Fund,
    /// A fee bump of a wallet transaction that was not recorded.
    Bump,
    /// A contract spend along the claim path.
    Claim,
    /// A contract spend along the refund path.
    Refund,
    /// A contract spend along the exit path.
    Exit,
    /// A contract spend along the slash path.
    Slash,
    /// A STORE record (a dataset's first anchor).
    Store,
    /// A GRANT record (an anchor extension).
    Grant,
    /// A REVOKE record (an anchor extension).
    Revoke,
}

impl BroadcastKind {
    /// Every kind, in declaration order.
    pub const ALL: [BroadcastKind; 10] = [
        BroadcastKind::Send,
        BroadcastKind::Fund,
        BroadcastKind::Bump,
        BroadcastKind::Claim,
        BroadcastKind::Refund,
        BroadcastKind::Exit,
        BroadcastKind::Slash,
        BroadcastKind::Store,
        BroadcastKind::Grant,
        BroadcastKind::Revoke,
    ];

    /// The stored text: `send`, `fund`, `bump`, `claim`, `refund`, `exit`, `slash`, `store`,
    /// `grant`, `revoke`.
    pub fn name(self) -> &'static str {
        match self {
            BroadcastKind::Send => "send",
            BroadcastKind::Fund => "fund",
            BroadcastKind::Bump => "bump",
            BroadcastKind::Claim => "claim",
            BroadcastKind::Refund => "refund",
            BroadcastKind::Exit => "exit",
            BroadcastKind::Slash => "slash",
            BroadcastKind::Store => "store",
            BroadcastKind::Grant => "grant",
            BroadcastKind::Revoke => "revoke",
        }
    }

    /// The kind of a spend of a contract along `path`; `None` for the key path (an anchor
    /// extension is recorded as the record it publishes, `grant` or `revoke`).
    pub fn of_path(path: PathKind) -> Option<BroadcastKind> {
        match path {
            PathKind::Claim => Some(BroadcastKind::Claim),
            PathKind::Refund => Some(BroadcastKind::Refund),
            PathKind::Exit => Some(BroadcastKind::Exit),
            PathKind::Slash => Some(BroadcastKind::Slash),
            _ => None,
        }
    }

    /// The contract path a spend of this kind goes along; `None` for payments, fundings, fee
    /// bumps of those, and ACL records.
    pub fn contract_path(self) -> Option<PathKind> {
        match self {
            BroadcastKind::Claim => Some(PathKind::Claim),
            BroadcastKind::Refund => Some(PathKind::Refund),
            BroadcastKind::Exit => Some(PathKind::Exit),
            BroadcastKind::Slash => Some(PathKind::Slash),
            BroadcastKind::Send
            | BroadcastKind::Fund
            | BroadcastKind::Bump
            | BroadcastKind::Store
            | BroadcastKind::Grant
            | BroadcastKind::Revoke => None,
        }
    }
}

impl std::fmt::Display for BroadcastKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BroadcastKind {
    type Err = String;

    /// The kind whose [`BroadcastKind::name`] is `s`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BroadcastKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown transaction kind {s:?}"))
    }
}

/// A transaction this wallet broadcast and keeps re-broadcasting until it is buried
/// (`REORG_SAFETY` deep) or a conflicting transaction is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastRecord {
    /// Its id.
    pub txid: Txid,
    /// The transaction.
    pub tx: Transaction,
    /// What it is.
    pub kind: BroadcastKind,
    /// The contract it belongs to, if any.
    pub contract: Option<String>,
    /// The tip height when it was (last) broadcast.
    pub height: u32,
    /// Its fee rate in sat/kwu.
    pub fee_rate_sat_kwu: u64,
}

impl BroadcastRecord {
    /// The contract path this transaction spends along, when it is a contract spend (its
    /// `kind` is the path's name: `claim`, `refund`, `exit`, `slash`); `None` for payments,
    /// fundings, fee bumps of those, and ACL records.
    pub fn contract_path(&self) -> Option<PathKind> {
        self.kind.contract_path()
    }
}

/// The version of btcmpc's tables in a wallet database (`schema_version` in `btcmpc_meta`).
/// Version 1 is the layout above; databases written before the version was recorded have
/// exactly that layout and are stamped version 1 when opened.
pub const SCHEMA_VERSION: u32 = 1;

/// Creates btcmpc's tables if missing and checks (or records) their version.
///
/// # Errors
/// Database errors; [`StorageError::NewerSchema`] for a database written by a newer btcmpc (a
/// later schema version), which this build must not change.
pub(crate) fn init(conn: &Connection) -> Result<(), WalletError> {
    conn.execute_batch(SCHEMA).map_err(WalletError::db)?;
    match get_meta(conn, "schema_version")? {
        None => set_meta(conn, "schema_version", &SCHEMA_VERSION.to_string()),
        Some(v) => match v.parse::<u32>() {
            Ok(v) if v == SCHEMA_VERSION => Ok(()),
            Ok(found) if found > SCHEMA_VERSION => Err(StorageError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            }
            .into()),
            _ => Err(StorageError::UnknownSchema(v).into()),
        },
    }
}

pub(crate) fn get_meta(conn: &Connection, key: &str) -> Result<Option<String>, WalletError> {
    conn.query_row(
        "SELECT value FROM btcmpc_meta WHERE key = ?1",
        params![key],
        |r| r.get(0),
    )
    .optional()
    .map_err(WalletError::db)
}

pub(crate) fn set_meta(conn: &Connection, key: &str, value: &str) -> Result<(), WalletError> {
    conn.execute(
        "INSERT INTO btcmpc_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map(|_| ())
    .map_err(WalletError::db)
}

pub(crate) fn record_contract_key(
    conn: &Connection,
    index: u32,
    pubkey: &str,
    label: &str,
) -> Result<(), WalletError> {
    conn.execute(
        "INSERT OR IGNORE INTO btcmpc_contract_keys (idx, pubkey, label) VALUES (?1, ?2, ?3)",
        params![index, pubkey, label],
    )
    .map(|_| ())
    .map_err(WalletError::db)
}

pub(crate) fn next_contract_index(conn: &Connection) -> Result<u32, WalletError> {
    let max: Option<u32> = conn
        .query_row("SELECT MAX(idx) FROM btcmpc_contract_keys", [], |r| {
            r.get(0)
        })
        .map_err(WalletError::db)?;
    Ok(max.map_or(0, |m| m.saturating_add(1)))
}

pub(crate) fn contract_key_indices(conn: &Connection) -> Result<Vec<(u32, String)>, WalletError> {
    let mut stmt = conn
        .prepare("SELECT idx, pubkey FROM btcmpc_contract_keys ORDER BY idx")
        .map_err(WalletError::db)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(WalletError::db)?;
    rows.collect::<Result<_, _>>().map_err(WalletError::db)
}

/// A `u64` as SQLite's signed 64-bit integer; values above `i64::MAX` (no amount or fee rate
/// reaches them) are refused rather than written wrapped.
fn sql_u64(v: u64) -> Result<i64, WalletError> {
    i64::try_from(v).map_err(|e| {
        WalletError::db(bdk_wallet::rusqlite::Error::ToSqlConversionFailure(
            Box::new(e),
        ))
    })
}

pub(crate) fn put_contract(conn: &Connection, rec: &ContractRecord) -> Result<(), WalletError> {
    conn.execute(
        "INSERT INTO btcmpc_contracts (name, file, script_pubkey, funding_txid, funding_vout, amount_sat)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(name) DO UPDATE SET file = excluded.file, script_pubkey = excluded.script_pubkey,
           funding_txid = excluded.funding_txid, funding_vout = excluded.funding_vout,
           amount_sat = excluded.amount_sat",
        params![
            rec.name,
            rec.file,
            rec.script_pubkey,
            rec.funding.map(|o| o.txid.to_string()),
            rec.funding.map(|o| o.vout),
            rec.amount_sat.map(sql_u64).transpose()?,
        ],
    )
    .map(|_| ())
    .map_err(WalletError::db)
}

/// A column's value that SQLite holds but that is not what we wrote there (a txid that does
/// not parse, a negative amount): the row is refused as a conversion failure, never read as
/// absent or zero.
fn bad_column(
    col: usize,
    ty: bdk_wallet::rusqlite::types::Type,
    e: impl std::error::Error + Send + Sync + 'static,
) -> bdk_wallet::rusqlite::Error {
    bdk_wallet::rusqlite::Error::FromSqlConversionFailure(col, ty, Box::new(e))
}

fn row_to_contract(
    r: &bdk_wallet::rusqlite::Row<'_>,
) -> bdk_wallet::rusqlite::Result<ContractRecord> {
    use bdk_wallet::rusqlite::types::Type;
    let txid: Option<String> = r.get(3)?;
    let vout: Option<u32> = r.get(4)?;
    let amount: Option<i64> = r.get(5)?;
    let funding = match (txid, vout) {
        (Some(t), Some(v)) => Some(OutPoint {
            txid: t.parse().map_err(|e| bad_column(3, Type::Text, e))?,
            vout: v,
        }),
        _ => None,
    };
    let amount_sat = amount
        .map(u64::try_from)
        .transpose()
        .map_err(|e| bad_column(5, Type::Integer, e))?;
    Ok(ContractRecord {
        name: r.get(0)?,
        file: r.get(1)?,
        script_pubkey: r.get(2)?,
        funding,
        amount_sat,
    })
}

pub(crate) fn get_contract(
    conn: &Connection,
    name: &str,
) -> Result<Option<ContractRecord>, WalletError> {
    conn.query_row(
        "SELECT name, file, script_pubkey, funding_txid, funding_vout, amount_sat
         FROM btcmpc_contracts WHERE name = ?1",
        params![name],
        row_to_contract,
    )
    .optional()
    .map_err(WalletError::db)
}

pub(crate) fn list_contracts(conn: &Connection) -> Result<Vec<ContractRecord>, WalletError> {
    let mut stmt = conn
        .prepare(
            "SELECT name, file, script_pubkey, funding_txid, funding_vout, amount_sat
             FROM btcmpc_contracts ORDER BY name",
        )
        .map_err(WalletError::db)?;
    let rows = stmt
        .query_map([], row_to_contract)
        .map_err(WalletError::db)?;
    rows.collect::<Result<_, _>>().map_err(WalletError::db)
}

pub(crate) fn put_broadcast(conn: &Connection, rec: &BroadcastRecord) -> Result<(), WalletError> {
    conn.execute(
        "INSERT INTO btcmpc_broadcasts (txid, raw, kind, contract, height, fee_rate)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(txid) DO NOTHING",
        params![
            rec.txid.to_string(),
            serialize_hex(&rec.tx),
            rec.kind.name(),
            rec.contract,
            rec.height,
            sql_u64(rec.fee_rate_sat_kwu)?
        ],
    )
    .map(|_| ())
    .map_err(WalletError::db)
}

pub(crate) fn remove_broadcast(conn: &Connection, txid: &Txid) -> Result<(), WalletError> {
    conn.execute(
        "DELETE FROM btcmpc_broadcasts WHERE txid = ?1",
        params![txid.to_string()],
    )
    .map(|_| ())
    .map_err(WalletError::db)
}

pub(crate) fn list_broadcasts(conn: &Connection) -> Result<Vec<BroadcastRecord>, WalletError> {
    let mut stmt = conn
        .prepare(
            "SELECT txid, raw, kind, contract, height, fee_rate FROM btcmpc_broadcasts ORDER BY rowid",
        )
        .map_err(WalletError::db)?;
    let rows = stmt
        .query_map([], |r| {
            let rate = r.get::<_, i64>(5)?;
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get(3)?,
                r.get::<_, u32>(4)?,
                u64::try_from(rate)
                    .map_err(|e| bad_column(5, bdk_wallet::rusqlite::types::Type::Integer, e))?,
            ))
        })
        .map_err(WalletError::db)?;
    let mut out = Vec::new();
    for row in rows {
        let (txid, raw, kind, contract, height, rate) = row.map_err(WalletError::db)?;
        let kind: BroadcastKind = match kind.parse() {
            Ok(k) => k,
            Err(_) => return Err(StorageError::UnknownBroadcastKind { txid, kind }.into()),
        };
        let tx: Transaction = deserialize_hex(&raw)
            .map_err(|source| StorageError::StoredTransaction { txid, source })?;
        out.push(BroadcastRecord {
            txid: tx.compute_txid(),
            tx,
            kind,
            contract,
            height,
            fee_rate_sat_kwu: rate,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_records_round_trip() {
        let conn = Connection::open_in_memory().unwrap();
        init(&conn).unwrap();
        init(&conn).unwrap(); // idempotent
        let mut rec = ContractRecord {
            name: "escrow-1".into(),
            file: "{}".into(),
            script_pubkey: "5120".into(),
            funding: None,
            amount_sat: None,
        };
        put_contract(&conn, &rec).unwrap();
        assert_eq!(get_contract(&conn, "escrow-1").unwrap(), Some(rec.clone()));
        rec.funding = Some(OutPoint::null());
        rec.amount_sat = Some(50_000);
        put_contract(&conn, &rec).unwrap();
        assert_eq!(list_contracts(&conn).unwrap(), vec![rec]);
        assert_eq!(get_contract(&conn, "nope").unwrap(), None);
    }

    #[test]
    fn the_unversioned_layout_is_stamped_version_1_and_keeps_its_records() {
        // A database as the first releases wrote it: the tables, no schema version.
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute(
            "INSERT INTO btcmpc_contracts (name, file, script_pubkey) VALUES ('c', '{}', '51')",
            [],
        )
        .unwrap();
        init(&conn).unwrap();
        assert_eq!(
            get_meta(&conn, "schema_version").unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(list_contracts(&conn).unwrap()[0].name, "c");
        // Opening again changes nothing; a newer version is refused, nothing written.
        init(&conn).unwrap();
        set_meta(&conn, "schema_version", "2").unwrap();
        let e = init(&conn).unwrap_err().to_string();
        assert!(
            e.contains("newer btcmpc") && e.contains("schema version 2"),
            "{e}"
        );
        assert_eq!(
            get_meta(&conn, "schema_version").unwrap().as_deref(),
            Some("2")
        );
    }

    /// Rows as earlier builds wrote them (the kind as free text): each of the ten kinds loads
    /// as its typed kind and writes back as the same text; a kind this build does not know is an
    /// error naming it and the transaction.
    #[test]
    fn stored_kind_texts_load_and_unknown_ones_are_named() {
        let texts = [
            "send", "fund", "bump", "claim", "refund", "exit", "slash", "store", "grant", "revoke",
        ];
        let conn = Connection::open_in_memory().unwrap();
        init(&conn).unwrap();
        let mut txs = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            let tx = Transaction {
                version: bitcoin::transaction::Version::TWO,
                lock_time: bitcoin::absolute::LockTime::from_consensus(i as u32),
                input: vec![bitcoin::TxIn::default()],
                output: vec![bitcoin::TxOut::NULL],
            };
            conn.execute(
                "INSERT INTO btcmpc_broadcasts (txid, raw, kind, contract, height, fee_rate)
                 VALUES (?1, ?2, ?3, NULL, 7, 250)",
                params![tx.compute_txid().to_string(), serialize_hex(&tx), text],
            )
            .unwrap();
            txs.push(tx);
        }
        let got = list_broadcasts(&conn).unwrap();
        let kinds: Vec<&str> = got.iter().map(|r| r.kind.name()).collect();
        assert_eq!(kinds, texts);
        assert_eq!(
            got.iter().map(|r| r.kind).collect::<Vec<_>>(),
            BroadcastKind::ALL
        );
        assert_eq!(got[3].contract_path(), Some(PathKind::Claim));
        assert_eq!(got[6].contract_path(), Some(PathKind::Slash));
        assert_eq!(got[8].contract_path(), None);
        // Written back through the typed record: the same text in the column.
        remove_broadcast(&conn, &got[9].txid).unwrap();
        put_broadcast(&conn, &got[9]).unwrap();
        let text: String = conn
            .query_row(
                "SELECT kind FROM btcmpc_broadcasts WHERE txid = ?1",
                params![got[9].txid.to_string()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(text, "revoke");
        for k in BroadcastKind::ALL {
            assert_eq!(k.name().parse::<BroadcastKind>(), Ok(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::Value::String(k.name().into())
            );
        }
        // An unknown kind: an error naming it and the transaction, not a panic.
        conn.execute(
            "UPDATE btcmpc_broadcasts SET kind = 'teleport' WHERE txid = ?1",
            params![txs[0].compute_txid().to_string()],
        )
        .unwrap();
        let e = list_broadcasts(&conn).unwrap_err().to_string();
        assert!(
            e.contains("unknown kind \"teleport\"")
                && e.contains(&txs[0].compute_txid().to_string()),
            "{e}"
        );
    }

    #[test]
    fn contract_key_indices_grow() {
        let conn = Connection::open_in_memory().unwrap();
        init(&conn).unwrap();
        assert_eq!(next_contract_index(&conn).unwrap(), 0);
        record_contract_key(&conn, 0, "02aa", "").unwrap();
        record_contract_key(&conn, 3, "02bb", "party").unwrap();
        assert_eq!(next_contract_index(&conn).unwrap(), 4);
        assert_eq!(contract_key_indices(&conn).unwrap().len(), 2);
    }
}
