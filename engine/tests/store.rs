//! The party store on disk: reopen after writes, a crash in the middle of a dataset, the
//! outbox's one-message-per-slot rule, schema versions.

use btcmpc_engine::mpc::field::{PrimeField, Secp256k1Scalar as F};
use btcmpc_engine::node::store::{
    DatasetMeta, OutboxSlot, PutOutgoing, Store, StoreError, SCHEMA_VERSION,
};

fn meta(id: &str) -> DatasetMeta {
    DatasetMeta {
        id: id.into(),
        meta: b"card".to_vec(),
        rows: 5,
        columns: 2,
    }
}

fn slot(round: u32, slot: u32) -> OutboxSlot {
    OutboxSlot {
        job: "job-1".into(),
        round,
        slot,
    }
}

#[test]
fn everything_written_is_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("party.sqlite");
    let col0: Vec<F> = (0..5).map(|i| F::from_u64(i * 1000 + 1)).collect();
    let col1: Vec<F> = (0..5).map(|i| -F::from_u64(i + 7)).collect();
    {
        let mut s = Store::open(&path).unwrap();
        let mut w = s.begin_dataset(&meta("rand")).unwrap();
        w.put_field_chunk(0, 0, 0, &col0[..3]).unwrap();
        w.put_field_chunk(0, 1, 3, &col0[3..]).unwrap();
        w.put_field_chunk(1, 0, 0, &col1).unwrap();
        w.commit().unwrap();
        s.put_receipt("rand", 2, b"receipt-2").unwrap();
        s.put_acl("rand", "svc", b"grant", 120).unwrap();
        s.put_job_state("job-1", b"round 3", true).unwrap();
        s.put_job_state("job-0", b"done", false).unwrap();
        assert_eq!(
            s.put_outgoing(&slot(1, 0), b"m").unwrap(),
            PutOutgoing::Inserted
        );
        s.mark_sent(&slot(1, 0)).unwrap();
        assert_eq!(
            s.put_outgoing(&slot(2, 0), b"n").unwrap(),
            PutOutgoing::Inserted
        );
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.datasets().unwrap(), vec![meta("rand")]);
    assert_eq!(s.read_column::<F>("rand", 0).unwrap(), col0);
    assert_eq!(s.read_column::<F>("rand", 1).unwrap(), col1);
    assert_eq!(
        s.column_chunks("rand", 0)
            .unwrap()
            .iter()
            .map(|c| c.0)
            .collect::<Vec<_>>(),
        vec![0, 3]
    );
    assert_eq!(
        s.receipts("rand").unwrap(),
        vec![(2, b"receipt-2".to_vec())]
    );
    assert_eq!(
        s.acl("rand", "svc").unwrap(),
        Some((b"grant".to_vec(), 120))
    );
    assert_eq!(s.job_state("job-1").unwrap(), Some(b"round 3".to_vec()));
    assert_eq!(s.open_jobs().unwrap(), vec!["job-1".to_string()]);
    assert_eq!(
        s.outbox("job-1").unwrap(),
        vec![
            (slot(1, 0), b"m".to_vec(), true),
            (slot(2, 0), b"n".to_vec(), false)
        ]
    );
    assert!(matches!(
        s.read_column::<F>("nope", 0),
        Err(StoreError::NoDataset(_))
    ));
}

#[test]
fn a_dataset_interrupted_before_commit_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("party.sqlite");
    {
        let mut s = Store::open(&path).unwrap();
        let mut w = s.begin_dataset(&meta("half")).unwrap();
        w.put_field_chunk(0, 0, 0, &[F::ONE; 3]).unwrap();
        w.put_field_chunk(1, 0, 0, &[F::ONE; 3]).unwrap();
        // The process dies here: the writer is dropped without commit.
        drop(w);
        assert!(s.datasets().unwrap().is_empty());
    }
    let mut s = Store::open(&path).unwrap();
    assert!(s.datasets().unwrap().is_empty());
    assert!(matches!(
        s.column_chunks("half", 0),
        Err(StoreError::NoDataset(_))
    ));
    // The same dataset can be stored again from scratch, and a duplicate is refused.
    let mut w = s.begin_dataset(&meta("half")).unwrap();
    w.put_field_chunk(0, 0, 0, &[F::ONE; 5]).unwrap();
    w.commit().unwrap();
    assert_eq!(s.read_column::<F>("half", 0).unwrap(), vec![F::ONE; 5]);
    assert!(matches!(
        s.begin_dataset(&meta("half")),
        Err(StoreError::DatasetExists(_))
    ));
}

#[test]
fn a_crashed_process_leaves_no_half_dataset() {
    // A real crash: a child process writes half a dataset and aborts without commit.
    if let Ok(path) = std::env::var("BTCMPC_STORE_CRASH_CHILD") {
        let mut s = Store::open(std::path::Path::new(&path)).unwrap();
        let mut w = s.begin_dataset(&meta("crash")).unwrap();
        for chunk in 0..50 {
            w.put_chunk(0, chunk, u64::from(chunk) * 1000, &vec![0u8; 32 * 1000])
                .unwrap();
        }
        std::fs::write(format!("{path}.written"), b"50 chunks").unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("party.sqlite");
    Store::open(&path).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_crashed_process_leaves_no_half_dataset",
            "--nocapture",
        ])
        .env("BTCMPC_STORE_CRASH_CHILD", &path)
        .status()
        .unwrap();
    assert!(!status.success(), "the child aborted");
    assert!(
        dir.path().join("party.sqlite.written").exists(),
        "the child wrote its chunks before aborting"
    );
    let s = Store::open(&path).unwrap();
    assert!(s.datasets().unwrap().is_empty());
    assert!(matches!(
        s.column_chunks("crash", 0),
        Err(StoreError::NoDataset(_))
    ));
}

#[test]
fn outbox_keeps_the_first_message_of_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("party.sqlite");
    {
        let mut s = Store::open(&path).unwrap();
        assert_eq!(
            s.put_outgoing(&slot(1, 4), b"first").unwrap(),
            PutOutgoing::Inserted
        );
        assert_eq!(
            s.put_outgoing(&slot(1, 4), b"first").unwrap(),
            PutOutgoing::Unchanged
        );
        assert_eq!(
            s.put_outgoing(&slot(1, 4), b"second").unwrap(),
            PutOutgoing::KeptExisting {
                stored: b"first".to_vec()
            }
        );
        // Other slots are independent.
        assert_eq!(
            s.put_outgoing(&slot(1, 5), b"second").unwrap(),
            PutOutgoing::Inserted
        );
    }
    // After a restart the rule holds and the stored bytes are the ones to re-send.
    let mut s = Store::open(&path).unwrap();
    assert_eq!(
        s.put_outgoing(&slot(1, 4), b"re-signed").unwrap(),
        PutOutgoing::KeptExisting {
            stored: b"first".to_vec()
        }
    );
    assert_eq!(s.outgoing(&slot(1, 4)).unwrap(), Some(b"first".to_vec()));
}

#[test]
fn a_newer_schema_is_refused_and_version_one_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("party.sqlite");
    drop(Store::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
    }
    match Store::open(&path) {
        Err(StoreError::TooNew {
            found: 99,
            supported,
        }) => assert_eq!(supported, SCHEMA_VERSION),
        r => panic!("unexpected {r:?}"),
    }
}

#[test]
fn a_corrupt_chunk_is_named() {
    let mut s = Store::open_in_memory().unwrap();
    let mut w = s.begin_dataset(&meta("bad")).unwrap();
    w.put_chunk(0, 0, 0, &[0xFF; 32]).unwrap(); // >= the secp256k1 order
    w.commit().unwrap();
    match s.read_column::<F>("bad", 0) {
        Err(StoreError::Corrupt {
            column: 0,
            chunk: 0,
            ..
        }) => {}
        r => panic!("unexpected {r:?}"),
    }
}

#[test]
fn a_version_one_store_migrates_and_keeps_its_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("party.sqlite");
    {
        let mut s = Store::open(&path).unwrap();
        s.put_job_state("job:aa", b"{\"state\":\"quoted\"}", true)
            .unwrap();
    }
    // Make it a version-1 store: no journal table, version 1.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("DROP TABLE journal; UPDATE schema_version SET version = 1;")
            .unwrap();
    }
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        s.job_state("job:aa").unwrap(),
        Some(b"{\"state\":\"quoted\"}".to_vec())
    );
    s.append_journal("job:aa", 1, b"x").unwrap();
    assert_eq!(s.journal("job:aa").unwrap(), vec![(1, b"x".to_vec())]);
}

/// A version-2 store (journal and outbox as WITHOUT ROWID tables) migrates to rowid tables with
/// its journal and outbox as they were, and both keep their keys unique.
#[test]
fn a_version_two_store_migrates_its_journal_and_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("party.sqlite");
    drop(Store::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE journal; DROP TABLE outbox;
             CREATE TABLE journal (job TEXT NOT NULL, seq INTEGER NOT NULL,
                 sender INTEGER NOT NULL, bytes BLOB NOT NULL, PRIMARY KEY (job, seq)) WITHOUT ROWID;
             CREATE TABLE outbox (job TEXT NOT NULL, round INTEGER NOT NULL, slot INTEGER NOT NULL,
                 bytes BLOB NOT NULL, sent INTEGER NOT NULL DEFAULT 0,
                 PRIMARY KEY (job, round, slot)) WITHOUT ROWID;
             INSERT INTO journal VALUES ('job:aa', 1, 2, x'0102'), ('job:aa', 2, 0, x'03');
             INSERT INTO outbox VALUES ('job-1', 4, 0, x'6d', 1), ('job-1', 5, 0, x'6e', 0);
             UPDATE schema_version SET version = 2;",
        )
        .unwrap();
    }
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(
        s.journal("job:aa").unwrap(),
        vec![(2, vec![1, 2]), (0, vec![3])]
    );
    s.append_journal("job:aa", 4, b"x").unwrap();
    assert_eq!(s.journal("job:aa").unwrap()[2], (4, b"x".to_vec()));
    let out = s.outbox("job-1").unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].1.clone(), out[0].2), (b"m".to_vec(), true));
    assert_eq!((out[1].1.clone(), out[1].2), (b"n".to_vec(), false));
    // The first message of a slot is kept, as before.
    assert_eq!(
        s.put_outgoing(&slot(4, 0), b"other").unwrap(),
        PutOutgoing::KeptExisting {
            stored: b"m".to_vec()
        }
    );
    drop(s);
    let conn = rusqlite::Connection::open(&path).unwrap();
    for table in ["journal", "outbox"] {
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
        assert!(sql.contains("UNIQUE"), "{sql}");
    }
    let dup = conn.execute(
        "INSERT INTO journal (job, seq, sender, bytes) VALUES ('job:aa', 1, 0, x'00')",
        [],
    );
    assert!(dup.is_err(), "a second event at one position is refused");
}

#[test]
fn a_journal_keeps_its_order_across_reopening_and_is_deleted_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("party.sqlite");
    {
        let mut s = Store::open(&path).unwrap();
        for (i, from) in [2u32, 0, 4, 2].into_iter().enumerate() {
            s.append_journal("job:aa", from, &[i as u8; 3]).unwrap();
        }
        s.append_journal("job:bb", 1, b"other").unwrap();
    }
    let mut s = Store::open(&path).unwrap();
    assert_eq!(
        s.journal("job:aa").unwrap(),
        vec![
            (2, vec![0; 3]),
            (0, vec![1; 3]),
            (4, vec![2; 3]),
            (2, vec![3; 3])
        ]
    );
    s.delete_journal("job:aa").unwrap();
    assert!(s.journal("job:aa").unwrap().is_empty());
    assert_eq!(s.journal("job:bb").unwrap(), vec![(1, b"other".to_vec())]);
}

/// A job's outbox lives while the job is open and goes when it is closed (in the same write),
/// so finished jobs do not keep every message they signed on disk; other jobs keep theirs.
#[test]
fn closing_a_job_deletes_its_outbox_and_only_its() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("party.sqlite")).unwrap();
    let other = OutboxSlot {
        job: "job-2".into(),
        round: 1,
        slot: 0,
    };
    s.put_outgoing(&slot(1, 0), b"m").unwrap();
    s.put_outgoing(&slot(2, 0), b"n").unwrap();
    s.put_outgoing(&other, b"o").unwrap();
    s.put_job_state("job-1", b"running", true).unwrap();
    assert_eq!(s.outbox("job-1").unwrap().len(), 2, "open: kept");
    s.put_job_state("job-1", b"claimed", false).unwrap();
    assert!(s.outbox("job-1").unwrap().is_empty(), "closed: deleted");
    assert_eq!(
        s.outbox("job-2").unwrap().len(),
        1,
        "another job's outbox stays"
    );
    s.delete_outbox("job-2").unwrap();
    assert!(s.outbox("job-2").unwrap().is_empty());
}
