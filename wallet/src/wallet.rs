//! [`RoleWallet`]: one role's wallet in one directory.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use bdk_wallet::chain::ChainPosition;
use bdk_wallet::rusqlite::Connection;
use bdk_wallet::{KeychainKind, PersistedWallet, SignOptions, Wallet};
use bitcoin::secp256k1::{All, Keypair, PublicKey, Secp256k1};
use bitcoin::{
    Address, Amount, FeeRate, Network, OutPoint, Psbt, ScriptBuf, SignedAmount, Transaction, Txid,
};
use tracing::{debug, info, warn};

use crate::electrum::ChainClient;
use crate::error::{BuildError, ContractError, MismatchError, SignError, StorageError};
use crate::fee::{FeeChoice, DEFAULT_FEE_POLICY};
use crate::keys::{self, Seed};
use crate::store::{self, BroadcastKind, BroadcastRecord, ContractRecord};
use crate::{Mnemonic, WalletError};

/// The file in a wallet's directory holding its mnemonic (the words and a newline, mode 0600).
pub const MNEMONIC_FILE: &str = "mnemonic.txt";
const DB_FILE: &str = "wallet.sqlite";
const STOP_GAP: usize = 20;
const BATCH: usize = 25;
/// Contract keys searched when a key was handed out before a restore from the mnemonic.
const CONTRACT_KEY_SEARCH: u32 = 1_000;
/// The highest fee rate automatic claim bumping goes to (100 sat/vB).
pub const MAX_CLAIM_FEE_RATE: FeeRate = FeeRate::from_sat_per_kwu(25_000);
/// Confirmations after which a broadcast record is forgotten (deep enough not to be reorged).
pub const REORG_SAFETY: u32 = 6;

/// Where one of our transactions stands on the server's chain.
enum Standing {
    Confirmed(u32),
    Mempool,
    Absent,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Records ordered so that a transaction comes after every recorded transaction it spends
/// (otherwise in recording order).
fn parents_first(mut records: Vec<BroadcastRecord>) -> Vec<BroadcastRecord> {
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let pending: HashSet<Txid> = records.iter().map(|r| r.txid).collect();
        let ready = records.iter().position(|r| {
            !r.tx.input.iter().any(|i| {
                i.previous_output.txid != r.txid && pending.contains(&i.previous_output.txid)
            })
        });
        // A cycle cannot happen between real transactions; take the first if it does.
        out.push(records.remove(ready.unwrap_or(0)));
    }
    out
}

/// One wallet transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// Its id.
    pub txid: Txid,
    /// What this wallet received in it minus what it sent (negative for a payment out).
    pub net: SignedAmount,
    /// The fee, when every input's value is known to this wallet (not for a transaction
    /// paying this wallet from someone else's coins).
    pub fee: Option<Amount>,
    /// Its confirmation height, `None` while unconfirmed.
    pub height: Option<u32>,
}

/// What a sync found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// The server's tip height.
    pub tip: u32,
    /// Whether this was a full scan (first sync, or after a restore).
    pub full_scan: bool,
    /// Unconfirmed transactions broadcast again.
    pub rebroadcast: usize,
}

/// One role's wallet: BIP86 taproot keychains in BDK, contract keys beside them, our records in
/// the same SQLite database.
pub struct RoleWallet {
    dir: PathBuf,
    conn: Connection,
    wallet: PersistedWallet<Connection>,
    seed: Seed,
    secp: Secp256k1<All>,
    existing: Option<ExistingDatabase>,
}

/// A database [`RoleWallet::create`] found in the wallet's directory without a mnemonic file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExistingDatabase {
    /// It belongs to the mnemonic given (same keys, same network): kept, with its contracts.
    Kept(PathBuf),
    /// It belongs to another seed or network, or is unreadable: renamed, not deleted.
    MovedAside {
        /// Where it was.
        from: PathBuf,
        /// Where it is now.
        to: PathBuf,
    },
}

/// Whether the wallet database at `db` holds this mnemonic's wallet on `network`.
fn database_belongs_to(db: &Path, mnemonic: &Mnemonic, network: Network) -> bool {
    let Ok(seed) = Seed::from_mnemonic(mnemonic, network) else {
        return false;
    };
    let (ext, int) = seed.descriptors();
    let Ok(mut conn) = Connection::open(db) else {
        return false;
    };
    let loaded = Wallet::load()
        .descriptor(KeychainKind::External, Some(ext))
        .descriptor(KeychainKind::Internal, Some(int))
        .check_network(network)
        .load_wallet(&mut conn);
    matches!(loaded, Ok(Some(_)))
        && !matches!(store::get_meta(&conn, "network"), Ok(Some(n)) if n != network.to_string())
}

/// Rename `path` (and SQLite's `-wal`, `-shm` and `-journal` files beside it) to
/// `<name>.moved-<unix seconds>` (with `-2`, `-3`, ... when that is taken). Returns the new
/// path of `path`, or `None` when it does not exist. Nothing is ever deleted.
///
/// # Errors
/// [`crate::StorageError::Io`] when a rename fails.
pub fn move_aside(path: &Path) -> Result<Option<PathBuf>, WalletError> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut n = 1u32;
    let target = loop {
        let suffix = if n == 1 {
            format!("{name}.moved-{secs}")
        } else {
            format!("{name}.moved-{secs}-{n}")
        };
        let candidate = path.with_file_name(suffix);
        if fs::symlink_metadata(&candidate).is_err() {
            break candidate;
        }
        n += 1;
    };
    fs::rename(path, &target).map_err(|e| WalletError::io(path, e))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(Some(target))
}

fn move_aside_with_companions(db: &Path) -> Result<Option<PathBuf>, WalletError> {
    let Some(moved) = move_aside(db)? else {
        return Ok(None);
    };
    for ext in ["-wal", "-shm", "-journal"] {
        let mut from = db.as_os_str().to_owned();
        from.push(ext);
        let from = PathBuf::from(from);
        if fs::symlink_metadata(&from).is_ok() {
            let mut to = moved.as_os_str().to_owned();
            to.push(ext);
            fs::rename(&from, &to).map_err(|e| WalletError::io(&from, e))?;
        }
    }
    Ok(Some(moved))
}

impl std::fmt::Debug for RoleWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleWallet")
            .field("dir", &self.dir)
            .field("seed", &self.seed)
            .finish()
    }
}

/// Write `contents` to `path` atomically and durably with mode 0600 ([`crate::fs::write_atomic`]).
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), WalletError> {
    crate::fs::write_atomic(path, contents, 0o600).map_err(|e| WalletError::io(path, e))
}

impl RoleWallet {
    /// Whether a wallet exists in `dir`.
    pub fn exists(dir: &Path) -> bool {
        Self::mnemonic_path(dir).exists()
    }

    /// Where the wallet in `dir` keeps its mnemonic: `dir/`[`MNEMONIC_FILE`].
    pub fn mnemonic_path(dir: &Path) -> PathBuf {
        dir.join(MNEMONIC_FILE)
    }

    /// Create a wallet in `dir` from `mnemonic`, or from a fresh one. The mnemonic is written to
    /// `dir/mnemonic.txt` (mode 0600) before anything else.
    ///
    /// A `wallet.sqlite` already in `dir` (its mnemonic file moved away, or an interrupted
    /// create) is never deleted: it is kept when it holds this mnemonic's wallet, and moved aside
    /// (see [`move_aside`]) otherwise; [`RoleWallet::existing_database`] says which.
    ///
    /// # Errors
    /// [`WalletError::AlreadyExists`] when `dir` holds a wallet; I/O and database errors.
    pub fn create(
        dir: &Path,
        network: Network,
        mnemonic: Option<Mnemonic>,
    ) -> Result<(Self, Mnemonic), WalletError> {
        if Self::exists(dir) {
            return Err(WalletError::AlreadyExists(dir.to_path_buf()));
        }
        fs::create_dir_all(dir).map_err(|e| WalletError::io(dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| WalletError::io(dir, e))?;
        }
        let mnemonic = mnemonic.unwrap_or_else(keys::generate_mnemonic);
        // A database without its mnemonic file (the seed kept offline, or an interrupted
        // create): kept when it belongs to this mnemonic, moved aside otherwise. Never deleted.
        let db = dir.join(DB_FILE);
        let existing = if db.exists() {
            if database_belongs_to(&db, &mnemonic, network) {
                info!(target: "btcmpc_wallet::create", db = %db.display(), "existing database kept: it belongs to this mnemonic");
                Some(ExistingDatabase::Kept(db.clone()))
            } else {
                let moved = move_aside_with_companions(&db)?
                    .expect("the database exists: it was checked just above");
                warn!(target: "btcmpc_wallet::create", db = %db.display(), moved = %moved.display(), "existing database moved aside");
                Some(ExistingDatabase::MovedAside {
                    from: db.clone(),
                    to: moved,
                })
            }
        } else {
            None
        };
        write_private(
            &Self::mnemonic_path(dir),
            format!("{mnemonic}\n").as_bytes(),
        )?;
        let mut wallet = Self::open(dir, network)?;
        wallet.existing = existing;
        Ok((wallet, mnemonic))
    }

    /// What [`RoleWallet::create`] found in the directory and did with it in this run: an
    /// existing database of the same mnemonic kept, or another one moved aside (never deleted).
    /// `None` for a wallet that was opened, or created in an empty directory.
    pub fn existing_database(&self) -> Option<&ExistingDatabase> {
        self.existing.as_ref()
    }

    /// Open the wallet in `dir`.
    ///
    /// # Errors
    /// [`WalletError::NotFound`] when there is none; [`WalletError::Mismatch`] when its database
    /// is for another network or another seed.
    pub fn open(dir: &Path, network: Network) -> Result<Self, WalletError> {
        let mpath = Self::mnemonic_path(dir);
        let text = match fs::read_to_string(&mpath) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(WalletError::NotFound(dir.to_path_buf()))
            }
            Err(e) => return Err(WalletError::io(&mpath, e)),
        };
        let mnemonic = keys::parse_mnemonic(&text)?;
        let seed = Seed::from_mnemonic(&mnemonic, network)?;
        let (ext, int) = seed.descriptors();
        let db = dir.join(DB_FILE);
        let mut conn = Connection::open(&db).map_err(WalletError::db)?;
        let mismatch = |source: MismatchError| WalletError::Mismatch {
            path: db.clone(),
            source,
        };
        let loaded = Wallet::load()
            .descriptor(KeychainKind::External, Some(ext.clone()))
            .descriptor(KeychainKind::Internal, Some(int.clone()))
            .check_network(network)
            .load_wallet(&mut conn)
            .map_err(|e| mismatch(e.into()))?;
        let wallet = match loaded {
            Some(w) => w,
            None => Wallet::create(ext, int)
                .network(network)
                .create_wallet(&mut conn)
                .map_err(|e| mismatch(e.into()))?,
        };
        store::init(&conn)?;
        match store::get_meta(&conn, "network")? {
            Some(recorded) if recorded != network.to_string() => {
                return Err(mismatch(MismatchError::Network {
                    recorded,
                    wallet: network,
                }))
            }
            Some(_) => {}
            None => store::set_meta(&conn, "network", &network.to_string())?,
        }
        Ok(RoleWallet {
            dir: dir.to_path_buf(),
            conn,
            wallet,
            seed,
            secp: Secp256k1::new(),
            existing: None,
        })
    }

    /// The wallet's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The wallet's network.
    pub fn network(&self) -> Network {
        self.seed.network()
    }

    /// The root keys (for contract signing and seed-derived secrets).
    pub(crate) fn seed(&self) -> &Seed {
        &self.seed
    }

    /// The height of the wallet's chain view (its latest checkpoint): what the last sync saw.
    pub fn synced_height(&self) -> u32 {
        self.wallet.latest_checkpoint().height()
    }

    /// This wallet's unspent outputs, largest first, each with the PSBT input that lets this
    /// wallet sign it (its BIP86 key path), for transactions built outside the wallet (ACL
    /// records, whose inputs are the anchor and these coins).
    ///
    /// # Errors
    /// [`BuildError::WalletInput`] when BDK cannot describe an output's input.
    pub fn spendable_outputs(
        &self,
    ) -> Result<Vec<(OutPoint, bitcoin::TxOut, bitcoin::psbt::Input)>, WalletError> {
        let mut utxos: Vec<_> = self.wallet.list_unspent().filter(|u| !u.is_spent).collect();
        utxos.sort_by_key(|u| std::cmp::Reverse(u.txout.value));
        utxos
            .into_iter()
            .map(|u| {
                let input = self
                    .wallet
                    .get_psbt_input(u.clone(), None, true)
                    .map_err(BuildError::WalletInput)?;
                Ok((u.outpoint, u.txout, input))
            })
            .collect()
    }

    fn persist(&mut self) -> Result<(), WalletError> {
        self.wallet
            .persist(&mut self.conn)
            .map(|_| ())
            .map_err(WalletError::db)
    }

    /// The next unused receiving address (recorded, so it is watched from now on).
    ///
    /// # Errors
    /// Database errors.
    pub fn next_address(&mut self) -> Result<Address, WalletError> {
        let info = self.wallet.next_unused_address(KeychainKind::External);
        self.persist()?;
        Ok(info.address)
    }

    /// The receiving address at `index` of the external keychain, without revealing it.
    pub fn peek_address(&self, index: u32) -> Address {
        self.wallet
            .peek_address(KeychainKind::External, index)
            .address
    }

    /// Confirmed and unconfirmed (pending) balance. Immature coinbase outputs count as neither.
    pub fn balance(&self) -> (Amount, Amount) {
        let b = self.wallet.balance();
        (b.confirmed, b.trusted_pending + b.untrusted_pending)
    }

    /// Sync with the server: a full scan the first time (or after a restore), then a sync of
    /// the revealed scripts. Afterwards, every unconfirmed transaction of this wallet and every
    /// contract spend it broadcast is broadcast again (the server may have lost its mempool),
    /// which is how the wallet keeps its transactions until they are buried. Nothing else is
    /// spent or replaced: fee-bumping stuck claims is [`RoleWallet::bump_stuck_claims`], called
    /// by whoever claims.
    ///
    /// # Errors
    /// [`WalletError::Electrum`] when the server fails; database errors.
    pub fn sync(&mut self, chain: &ChainClient) -> Result<SyncReport, WalletError> {
        let scanned = store::get_meta(&self.conn, "full_scan_done")?.is_some();
        self.follow_server_chain(chain)?;
        if scanned {
            let req = self.wallet.start_sync_with_revealed_spks().build();
            let update = chain
                .bdk()
                .sync(req, BATCH, true)
                .map_err(|e| chain.err(e))?;
            self.wallet.apply_update(update).map_err(|e| chain.err(e))?;
        } else {
            let req = self.wallet.start_full_scan().build();
            let update = chain
                .bdk()
                .full_scan(req, STOP_GAP, BATCH, true)
                .map_err(|e| chain.err(e))?;
            self.wallet.apply_update(update).map_err(|e| chain.err(e))?;
        }
        self.persist()?;
        if !scanned {
            store::set_meta(&self.conn, "full_scan_done", "1")?;
        }
        let (tip, _) = chain.tip()?;
        let rebroadcast = self.rebroadcast(chain, tip)?;
        Ok(SyncReport {
            tip,
            full_scan: !scanned,
            rebroadcast,
        })
    }

    /// Drop from the wallet's chain every checkpoint the server's best chain no longer has, so
    /// that transactions confirmed in blocks a reorg removed are unconfirmed again in our view.
    ///
    /// bdk_electrum 0.24.1 does not do this when the server's tip is below the wallet's:
    /// `fetch_tip_and_latest_blocks` in `src/bdk_electrum_client.rs` returns the wallet's own tip
    /// unchanged ("If electrum returns a tip height that is lower than our previous tip, then
    /// checkpoints do not need updating"; unchanged upstream at
    /// <https://github.com/bitcoindevkit/bdk/blob/95ed1b4f9c399a27143395c9d1c6d37c03462306/crates/electrum/src/bdk_electrum_client.rs>;
    /// a related open report is bitcoindevkit/bdk#2312, anchor hashes not checked against the
    /// tip's chain), and `LocalChain::apply_update` cannot remove blocks
    /// that an update does not contradict, so after `invalidateblock` of block 103 at tip 105 the
    /// wallet kept blocks 103 to 105 and every transaction anchored in them stayed confirmed
    /// until the chain grew back past 105. We walk our checkpoints from the top, compare each with
    /// the server's block at that height, and disconnect from the lowest one that differs or is
    /// above the server's tip (the same as BDK's own point-of-agreement search, which it only
    /// runs when the server's tip is not lower). The wallet's in-memory chain cannot be cut from
    /// outside (`Wallet` has no `disconnect_from`), so the removal is written to the database as
    /// a `local_chain` change set and the wallet reloaded from it.
    fn follow_server_chain(&mut self, chain: &ChainClient) -> Result<(), WalletError> {
        let (server_tip, _) = chain.tip()?;
        let mut stale: Vec<u32> = Vec::new();
        for cp in self.wallet.latest_checkpoint().iter() {
            let id = cp.block_id();
            if id.height == 0 {
                break;
            }
            if id.height <= server_tip && chain.block_hash(id.height)? == id.hash {
                break;
            }
            stale.push(id.height);
        }
        if stale.is_empty() {
            return Ok(());
        }
        warn!(target: "btcmpc_wallet::sync", from = stale.last().copied().unwrap_or(0), to = stale.first().copied().unwrap_or(0), server_tip, "blocks no longer in the server's best chain: disconnected");
        self.persist()?;
        let mut cut = bdk_wallet::ChangeSet::default();
        for h in stale {
            cut.local_chain.blocks.insert(h, None);
        }
        let db = self.conn.transaction().map_err(WalletError::db)?;
        cut.persist_to_sqlite(&db).map_err(WalletError::db)?;
        db.commit().map_err(WalletError::db)?;
        let (ext, int) = self.seed.descriptors();
        self.wallet = Wallet::load()
            .descriptor(KeychainKind::External, Some(ext))
            .descriptor(KeychainKind::Internal, Some(int))
            .check_network(self.network())
            .load_wallet(&mut self.conn)
            .map_err(StorageError::Reload)?
            .ok_or(StorageError::Vanished)?;
        Ok(())
    }

    /// Where a transaction stands on the server's chain: the height it is confirmed at, in the
    /// mempool, or unknown (the history of its first non-`OP_RETURN` output's script).
    fn standing(&self, chain: &ChainClient, tx: &Transaction) -> Result<Standing, WalletError> {
        let txid = tx.compute_txid();
        let Some(out) = tx.output.iter().find(|o| !o.script_pubkey.is_op_return()) else {
            return Ok(Standing::Absent);
        };
        Ok(
            match chain
                .history(&out.script_pubkey)?
                .iter()
                .find(|h| h.txid == txid)
            {
                Some(h) => h.height.map_or(Standing::Mempool, Standing::Confirmed),
                None => Standing::Absent,
            },
        )
    }

    /// A confirmed transaction other than `tx` spending one of `tx`'s inputs, with its height.
    fn confirmed_conflict(
        &self,
        chain: &ChainClient,
        tx: &Transaction,
    ) -> Result<Option<(Txid, u32)>, WalletError> {
        let txid = tx.compute_txid();
        for input in &tx.input {
            let op = input.previous_output;
            let script = match self.wallet.tx_graph().get_txout(op) {
                Some(o) => o.script_pubkey.clone(),
                None => match chain.transaction(&op.txid) {
                    Ok(prev) => match prev.output.get(op.vout as usize) {
                        Some(o) => o.script_pubkey.clone(),
                        None => continue,
                    },
                    // The parent is unknown to the server: no conflict can be seen. A failed
                    // request is an error, not an unknown parent.
                    Err(e) if e.is_server_answer() => continue,
                    Err(e) => return Err(e),
                },
            };
            for h in chain.history(&script)? {
                let Some(height) = h.height else { continue };
                if h.txid == txid || h.txid == op.txid {
                    continue;
                }
                let other = chain.transaction(&h.txid)?;
                if other.input.iter().any(|i| i.previous_output == op) {
                    return Ok(Some((h.txid, height)));
                }
            }
        }
        Ok(None)
    }

    /// Keep every transaction this wallet made until it is buried [`REORG_SAFETY`] deep or a
    /// transaction conflicting with it is: broadcast again every one the server does not have
    /// confirmed (the server may have lost its mempool, a reorg may have dropped a block), and
    /// show it as unconfirmed in the wallet's view even when the server has forgotten it
    /// (bdk_electrum marks a transaction the server no longer lists as evicted, which is no
    /// reason to forget our own). A transaction whose conflict is confirmed but not yet buried
    /// is kept (the conflict may be reorged out) but not shown. Also broadcasts BDK's other
    /// unconfirmed transactions. Returns how many transactions were broadcast (the server
    /// accepted them or already had them).
    fn rebroadcast(&mut self, chain: &ChainClient, tip: u32) -> Result<usize, WalletError> {
        let mut sent: HashSet<Txid> = HashSet::new();
        let unconfirmed: Vec<Transaction> = self
            .wallet
            .transactions()
            .filter(|t| matches!(t.chain_position, ChainPosition::Unconfirmed { .. }))
            .map(|t| (*t.tx_node.tx).clone())
            .collect();
        for tx in unconfirmed {
            match chain.broadcast(&tx) {
                Ok(txid) => {
                    sent.insert(txid);
                }
                Err(e) => debug!(target: "btcmpc_wallet::sync", "not re-broadcast: {e}"),
            }
        }
        let buried = |h: u32| tip.saturating_add(1) >= h.saturating_add(REORG_SAFETY);
        let mut dropped: HashSet<Txid> = HashSet::new();
        let mut shown: Vec<Transaction> = Vec::new();
        let mut hidden: Vec<Txid> = Vec::new();
        for rec in parents_first(store::list_broadcasts(&self.conn)?) {
            if rec
                .tx
                .input
                .iter()
                .any(|i| dropped.contains(&i.previous_output.txid))
            {
                warn!(target: "btcmpc_wallet::sync", txid = %rec.txid, kind = %rec.kind, "dropped: it spends a transaction whose conflict is buried");
                store::remove_broadcast(&self.conn, &rec.txid)?;
                dropped.insert(rec.txid);
                hidden.push(rec.txid);
                continue;
            }
            match self.standing(chain, &rec.tx)? {
                Standing::Confirmed(h) if buried(h) => {
                    debug!(target: "btcmpc_wallet::sync", txid = %rec.txid, kind = %rec.kind, height = h, "buried: forgotten");
                    store::remove_broadcast(&self.conn, &rec.txid)?;
                }
                Standing::Confirmed(_) => {}
                Standing::Mempool | Standing::Absent => match chain.broadcast(&rec.tx) {
                    Ok(_) => {
                        info!(target: "btcmpc_wallet::sync", txid = %rec.txid, kind = %rec.kind, "re-broadcast");
                        sent.insert(rec.txid);
                        shown.push(rec.tx);
                    }
                    Err(e) => match self.confirmed_conflict(chain, &rec.tx)? {
                        Some((other, h)) if buried(h) => {
                            warn!(target: "btcmpc_wallet::sync", txid = %rec.txid, kind = %rec.kind, conflict = %other, "dropped: a conflicting transaction is buried");
                            store::remove_broadcast(&self.conn, &rec.txid)?;
                            dropped.insert(rec.txid);
                            hidden.push(rec.txid);
                        }
                        Some((other, _)) => {
                            warn!(target: "btcmpc_wallet::sync", txid = %rec.txid, kind = %rec.kind, conflict = %other, "kept, not shown: a conflicting transaction is confirmed");
                            hidden.push(rec.txid);
                        }
                        None => {
                            warn!(target: "btcmpc_wallet::sync", txid = %rec.txid, kind = %rec.kind, "re-broadcast failed, kept: {e}");
                            shown.push(rec.tx);
                        }
                    },
                },
            }
        }
        let now = unix_now();
        let graph = self.wallet.tx_graph();
        let seen: Vec<(Transaction, u64)> = shown
            .into_iter()
            .map(|tx| {
                // BDK counts a transaction as evicted while `last_evicted >= last_seen`.
                let evicted = graph.get_last_evicted(tx.compute_txid()).unwrap_or(0);
                (tx, now.max(evicted.saturating_add(1)))
            })
            .collect();
        let gone: Vec<(Txid, u64)> = hidden
            .into_iter()
            .map(|txid| {
                let seen = graph
                    .get_tx_node(txid)
                    .and_then(|n| n.last_seen)
                    .unwrap_or(0);
                (txid, now.max(seen.saturating_add(1)))
            })
            .collect();
        self.wallet.apply_unconfirmed_txs(seen);
        self.wallet.apply_evicted_txs(gone);
        self.persist()?;
        Ok(sent.len())
    }

    /// Parse an address and check that it is for this wallet's network.
    ///
    /// # Errors
    /// [`WalletError::Address`] or [`WalletError::WrongNetwork`].
    pub fn parse_address(&self, text: &str) -> Result<Address, WalletError> {
        let unchecked: Address<bitcoin::address::NetworkUnchecked> =
            text.trim()
                .parse()
                .map_err(
                    |source: bitcoin::address::ParseError| WalletError::Address {
                        address: text.to_string(),
                        source,
                    },
                )?;
        unchecked
            .require_network(self.network())
            .map_err(|_| WalletError::WrongNetwork {
                address: text.to_string(),
                network: self.network(),
            })
    }

    fn map_create_err(&self, e: bdk_wallet::error::CreateTxError) -> WalletError {
        use bdk_wallet::error::CreateTxError;
        match e {
            CreateTxError::CoinSelection(i) => WalletError::InsufficientFunds {
                needed: i.needed,
                available: i.available,
            },
            other => BuildError::Create(other).into(),
        }
    }

    /// Sign every input this wallet's BIP86 keys can sign and finalize them.
    ///
    /// Inputs of contracts are left alone: they are signed and finalized by the contract code.
    ///
    /// # Errors
    /// [`SignError`] when a wallet input cannot be signed or finalized.
    pub fn sign_wallet_inputs(&self, psbt: &mut Psbt) -> Result<(), WalletError> {
        psbt.sign(self.seed.master(), &self.secp)
            .map_err(|(_, errs)| SignError::Inputs(errs))?;
        let opts = SignOptions {
            try_finalize: true,
            ..Default::default()
        };
        self.wallet
            .finalize_psbt(psbt, opts)
            .map_err(SignError::Finalize)?;
        Ok(())
    }

    /// Build, sign and broadcast a payment of `amount` (or everything, with `None`) to
    /// `script_pubkey`. The fee is checked against the [`DEFAULT_FEE_POLICY`] before signing.
    /// Returns the transaction.
    fn pay(
        &mut self,
        chain: &ChainClient,
        script_pubkey: ScriptBuf,
        amount: Option<Amount>,
        fee: FeeChoice,
        kind: BroadcastKind,
        contract: Option<&str>,
    ) -> Result<Transaction, WalletError> {
        // An automatic rate above the absolute cap is refused before coin selection, which
        // would otherwise fail first with "insufficient funds" and hide the real reason
        // (154 vB: a one-input, two-output taproot payment, to name the fee in the error).
        let fee_rate = DEFAULT_FEE_POLICY.check_rate(fee, 154)?;
        let moved_to = script_pubkey.clone();
        let psbt = {
            let mut b = self.wallet.build_tx();
            match amount {
                Some(a) => {
                    b.add_recipient(script_pubkey, a);
                }
                None => {
                    b.drain_wallet().drain_to(script_pubkey);
                }
            }
            b.fee_rate(fee_rate);
            b.finish()
        }
        .map_err(|e| self.map_create_err(e))?;
        let paid = psbt.fee().map_err(BuildError::Fee)?;
        let moved: Amount = match amount {
            Some(a) => a,
            None => psbt
                .unsigned_tx
                .output
                .iter()
                .filter(|o| o.script_pubkey == moved_to)
                .map(|o| o.value)
                .sum(),
        };
        // Refused before signing; nothing was persisted for this transaction yet.
        DEFAULT_FEE_POLICY.check(fee, paid, moved)?;
        let tx = self.sign_and_broadcast(chain, psbt, kind, contract, fee_rate, None)?;
        info!(target: "btcmpc_wallet::send", txid = %tx.compute_txid(), %kind, fee_sat = paid.to_sat(), "broadcast");
        Ok(tx)
    }

    /// Sign and finalize the wallet's inputs, persist (the change address reveal) before the
    /// transaction leaves this machine, then [`RoleWallet::keep_and_broadcast`] it.
    fn sign_and_broadcast(
        &mut self,
        chain: &ChainClient,
        mut psbt: Psbt,
        kind: BroadcastKind,
        contract: Option<&str>,
        fee_rate: FeeRate,
        replaces: Option<Txid>,
    ) -> Result<Transaction, WalletError> {
        self.sign_wallet_inputs(&mut psbt)?;
        let tx = psbt
            .extract_tx()
            .map_err(|e| SignError::Extract(Box::new(e)))?;
        self.persist()?;
        self.keep_and_broadcast(chain, &tx, kind, contract, fee_rate, replaces)?;
        Ok(tx)
    }

    /// Record `tx` in our own table (before it leaves: a crash right after the broadcast still
    /// leaves it kept), broadcast it, and show it as unconfirmed in the wallet's view. It is then
    /// re-broadcast at every sync until it is [`REORG_SAFETY`] deep or a conflicting
    /// transaction is (see [`RoleWallet::sync`]). `replaces` (a fee bump's original) is
    /// forgotten once the replacement is accepted. The record is not kept when the server
    /// refuses the transaction.
    fn keep_and_broadcast(
        &mut self,
        chain: &ChainClient,
        tx: &Transaction,
        kind: BroadcastKind,
        contract: Option<&str>,
        fee_rate: FeeRate,
        replaces: Option<Txid>,
    ) -> Result<Txid, WalletError> {
        let (tip, _) = chain.tip()?;
        let rec = BroadcastRecord {
            txid: tx.compute_txid(),
            tx: tx.clone(),
            kind,
            contract: contract.map(str::to_string),
            height: tip,
            fee_rate_sat_kwu: fee_rate.to_sat_per_kwu(),
        };
        store::put_broadcast(&self.conn, &rec)?;
        if let Err(e) = chain.broadcast(tx) {
            store::remove_broadcast(&self.conn, &rec.txid)?;
            return Err(e);
        }
        if let Some(old) = replaces {
            store::remove_broadcast(&self.conn, &old)?;
        }
        let now = unix_now();
        self.wallet.apply_unconfirmed_txs([(tx.clone(), now)]);
        if let Some(old) = replaces {
            self.wallet.apply_evicted_txs([(old, now)]);
        }
        self.persist()?;
        info!(target: "btcmpc_wallet::broadcast", txid = %rec.txid, %kind, "broadcast and kept");
        Ok(rec.txid)
    }

    /// Send `amount` (everything with `None`) to `address` at `fee` (a [`FeeRate`] the caller
    /// chose is explicit; [`ChainClient::fee_rate`] gives an automatic one, bounded by the
    /// [`DEFAULT_FEE_POLICY`]).
    ///
    /// # Errors
    /// Address, funds, signing, broadcast and database errors; [`WalletError::FeeTooHigh`] for
    /// an automatic rate above the policy; nothing is broadcast on error before the broadcast
    /// itself.
    pub fn send(
        &mut self,
        chain: &ChainClient,
        address: &str,
        amount: Option<Amount>,
        fee: impl Into<FeeChoice>,
    ) -> Result<Txid, WalletError> {
        let addr = self.parse_address(address)?;
        let tx = self.pay(
            chain,
            addr.script_pubkey(),
            amount,
            fee.into(),
            BroadcastKind::Send,
            None,
        )?;
        Ok(tx.compute_txid())
    }

    /// The wallet's transactions, newest first (unconfirmed on top).
    pub fn history(&self) -> Vec<HistoryItem> {
        let mut items: Vec<HistoryItem> = self
            .wallet
            .transactions()
            .map(|t| {
                let tx = &t.tx_node.tx;
                let (sent, received) = self.wallet.sent_and_received(tx);
                let height = match t.chain_position {
                    ChainPosition::Confirmed { anchor, .. } => Some(anchor.block_id.height),
                    ChainPosition::Unconfirmed { .. } => None,
                };
                HistoryItem {
                    txid: t.tx_node.txid,
                    // Amounts of one transaction are below 21e14 sat: the casts are exact.
                    net: SignedAmount::from_sat(received.to_sat() as i64 - sent.to_sat() as i64),
                    // No fee when an input's value is unknown to this wallet (MissingTxOut:
                    // someone else's coins paid us); NegativeFee cannot happen for a valid
                    // transaction.
                    fee: self.wallet.calculate_fee(tx).ok(),
                    height,
                }
            })
            .collect();
        items.sort_by_key(|i| (std::cmp::Reverse(i.height.unwrap_or(u32::MAX)), i.txid));
        items
    }

    /// A contract public key: `index`, or the next one never handed out. Recorded in the
    /// database with `label`.
    ///
    /// # Errors
    /// Database errors.
    pub fn contract_key(
        &mut self,
        index: Option<u32>,
        label: &str,
    ) -> Result<(u32, PublicKey), WalletError> {
        let index = match index {
            Some(i) => i,
            None => store::next_contract_index(&self.conn)?,
        };
        if index >= 1 << 31 {
            return Err(ContractError::KeyIndexOutOfRange(index).into());
        }
        let pk = self.seed.contract_pubkey(&self.secp, index);
        store::record_contract_key(&self.conn, index, &pk.to_string(), label)?;
        Ok((index, pk))
    }

    /// The key pair behind contract public key `pubkey`, if this wallet's seed derives it.
    ///
    /// # Errors
    /// Database errors.
    pub fn contract_keypair_for(&self, pubkey: &PublicKey) -> Result<Option<Keypair>, WalletError> {
        let wanted = pubkey.to_string();
        for (idx, pk) in store::contract_key_indices(&self.conn)? {
            if pk == wanted {
                return Ok(Some(self.seed.contract_keypair(&self.secp, idx)));
            }
        }
        // Keys handed out before a restore from the mnemonic are not in the database.
        for idx in 0..CONTRACT_KEY_SEARCH {
            let kp = self.seed.contract_keypair(&self.secp, idx);
            if kp.public_key() == *pubkey {
                store::record_contract_key(&self.conn, idx, &wanted, "recovered")?;
                return Ok(Some(kp));
            }
        }
        Ok(None)
    }

    /// Pay `amount` to a contract output and remember the contract with its outpoint.
    ///
    /// # Errors
    /// Funds, signing, broadcast and database errors; [`WalletError::FeeTooHigh`] as
    /// [`RoleWallet::send`].
    pub fn fund_contract(
        &mut self,
        chain: &ChainClient,
        name: &str,
        file_json: &str,
        script_pubkey: ScriptBuf,
        amount: Amount,
        fee: impl Into<FeeChoice>,
    ) -> Result<OutPoint, WalletError> {
        // Remember the contract first: a crash after the broadcast still leaves its file here.
        let mut rec = ContractRecord {
            name: name.to_string(),
            file: file_json.to_string(),
            script_pubkey: script_pubkey.to_hex_string(),
            funding: None,
            amount_sat: None,
        };
        store::put_contract(&self.conn, &rec)?;
        let tx = self.pay(
            chain,
            script_pubkey.clone(),
            Some(amount),
            fee.into(),
            BroadcastKind::Fund,
            Some(name),
        )?;
        let vout = tx
            .output
            .iter()
            .position(|o| o.script_pubkey == script_pubkey && o.value == amount)
            .expect("the funding transaction pays the contract output it was built with");
        let outpoint = OutPoint {
            txid: tx.compute_txid(),
            vout: vout as u32,
        };
        rec.funding = Some(outpoint);
        rec.amount_sat = Some(amount.to_sat());
        store::put_contract(&self.conn, &rec)?;
        Ok(outpoint)
    }

    /// Pay several contract outputs in one transaction (a job's escrow outputs, one per
    /// party: PROTOCOL.md's job flow step 5), remembering each contract (before the broadcast)
    /// with its funding outpoint. `items` holds `(name, contract file JSON, script, amount)`;
    /// returns the outpoints in the order of `items`.
    ///
    /// # Errors
    /// Two items paying one script; funds, signing, broadcast and database errors;
    /// [`WalletError::FeeTooHigh`] as [`RoleWallet::send`].
    pub fn fund_contracts(
        &mut self,
        chain: &ChainClient,
        items: &[(String, String, ScriptBuf, Amount)],
        fee: impl Into<FeeChoice>,
    ) -> Result<Vec<OutPoint>, WalletError> {
        if items.is_empty() {
            return Err(BuildError::NoOutputs.into());
        }
        let scripts: std::collections::BTreeSet<&ScriptBuf> = items.iter().map(|i| &i.2).collect();
        if scripts.len() != items.len() {
            return Err(BuildError::DuplicateScript.into());
        }
        for (name, file, spk, _) in items {
            store::put_contract(
                &self.conn,
                &ContractRecord {
                    name: name.clone(),
                    file: file.clone(),
                    script_pubkey: spk.to_hex_string(),
                    funding: None,
                    amount_sat: None,
                },
            )?;
        }
        let fee = fee.into();
        // One input, the outputs and a change output, taproot: for the error's fee figure.
        let fee_rate = DEFAULT_FEE_POLICY.check_rate(fee, 100 + 43 * items.len() as u64)?;
        let psbt = {
            let mut b = self.wallet.build_tx();
            for (_, _, spk, amount) in items {
                b.add_recipient(spk.clone(), *amount);
            }
            b.fee_rate(fee_rate);
            b.finish()
        }
        .map_err(|e| self.map_create_err(e))?;
        let paid = psbt.fee().map_err(BuildError::Fee)?;
        let moved: Amount = items.iter().map(|i| i.3).sum();
        DEFAULT_FEE_POLICY.check(fee, paid, moved)?;
        let tx = self.sign_and_broadcast(
            chain,
            psbt,
            BroadcastKind::Fund,
            Some(&items[0].0),
            fee_rate,
            None,
        )?;
        let txid = tx.compute_txid();
        let mut outpoints = Vec::with_capacity(items.len());
        for (name, file, spk, amount) in items {
            let vout = tx
                .output
                .iter()
                .position(|o| o.script_pubkey == *spk && o.value == *amount)
                .expect("the funding transaction pays every output it was built with");
            let outpoint = OutPoint {
                txid,
                vout: vout as u32,
            };
            store::put_contract(
                &self.conn,
                &ContractRecord {
                    name: name.clone(),
                    file: file.clone(),
                    script_pubkey: spk.to_hex_string(),
                    funding: Some(outpoint),
                    amount_sat: Some(amount.to_sat()),
                },
            )?;
            outpoints.push(outpoint);
        }
        info!(target: "btcmpc_wallet::send", %txid, outputs = items.len(), "funded contract outputs");
        Ok(outpoints)
    }

    /// Remember a contract (for example one funded by someone else) without funding it.
    ///
    /// # Errors
    /// Database errors.
    pub fn remember_contract(&self, rec: &ContractRecord) -> Result<(), WalletError> {
        store::put_contract(&self.conn, rec)
    }

    /// A contract this wallet remembers.
    ///
    /// # Errors
    /// Database errors.
    pub fn contract(&self, name: &str) -> Result<Option<ContractRecord>, WalletError> {
        store::get_contract(&self.conn, name)
    }

    /// Every contract this wallet remembers.
    ///
    /// # Errors
    /// Database errors.
    pub fn contracts(&self) -> Result<Vec<ContractRecord>, WalletError> {
        store::list_contracts(&self.conn)
    }

    /// Broadcast a finished transaction this wallet made outside BDK's builder (a contract
    /// spend, a STORE or anchor extension) and keep it as every other transaction of this
    /// wallet: re-broadcast at every sync until it is [`REORG_SAFETY`] deep or a conflicting
    /// transaction is.
    ///
    /// # Errors
    /// [`WalletError::Broadcast`] with the server's reason (the record is not kept then).
    pub fn broadcast_recorded(
        &mut self,
        chain: &ChainClient,
        tx: &Transaction,
        kind: BroadcastKind,
        contract: Option<&str>,
        fee_rate: FeeRate,
    ) -> Result<Txid, WalletError> {
        self.keep_and_broadcast(chain, tx, kind, contract, fee_rate, None)
    }

    /// Replace a recorded contract spend by a fee-bumped one (already built and verified).
    pub(crate) fn replace_recorded(
        &mut self,
        chain: &ChainClient,
        old: &BroadcastRecord,
        tx: &Transaction,
        fee_rate: FeeRate,
    ) -> Result<Txid, WalletError> {
        let txid = self.keep_and_broadcast(
            chain,
            tx,
            old.kind,
            old.contract.as_deref(),
            fee_rate,
            Some(old.txid),
        )?;
        info!(target: "btcmpc_wallet::contract", old = %old.txid, new = %txid, "fee bumped");
        Ok(txid)
    }

    /// Replace an unconfirmed wallet transaction by one paying `fee_rate` (BIP125 RBF).
    ///
    /// # Errors
    /// The transaction is unknown, confirmed, or cannot pay more; broadcast errors.
    pub fn bump_wallet_tx(
        &mut self,
        chain: &ChainClient,
        txid: Txid,
        fee_rate: FeeRate,
    ) -> Result<Txid, WalletError> {
        let psbt = {
            let mut b = self
                .wallet
                .build_fee_bump(txid)
                .map_err(|source| BuildError::Bump { txid, source })?;
            b.fee_rate(fee_rate);
            b.finish()
        }
        .map_err(|e| self.map_create_err(e))?;
        let old = store::list_broadcasts(&self.conn)?
            .into_iter()
            .find(|r| r.txid == txid);
        let kind = old.as_ref().map_or(BroadcastKind::Bump, |r| r.kind);
        let contract = old.as_ref().and_then(|r| r.contract.clone());
        let tx =
            self.sign_and_broadcast(chain, psbt, kind, contract.as_deref(), fee_rate, Some(txid))?;
        // A bumped contract funding moves the contract's outpoint to the replacement.
        if let Some(name) = contract {
            if let Some(mut rec) = store::get_contract(&self.conn, &name)? {
                if rec.funding.is_some_and(|f| f.txid == txid) {
                    let spk = ScriptBuf::from_hex(&rec.script_pubkey).map_err(|source| {
                        StorageError::StoredScript {
                            name: name.clone(),
                            source,
                        }
                    })?;
                    if let Some(vout) = tx.output.iter().position(|o| o.script_pubkey == spk) {
                        rec.funding = Some(OutPoint {
                            txid: tx.compute_txid(),
                            vout: vout as u32,
                        });
                        store::put_contract(&self.conn, &rec)?;
                    }
                }
            }
        }
        Ok(tx.compute_txid())
    }

    /// Every transaction this wallet made that is still kept (not yet buried
    /// [`REORG_SAFETY`] deep, no conflict buried), in recording order.
    ///
    /// # Errors
    /// Database errors.
    pub fn pending_broadcasts(&self) -> Result<Vec<BroadcastRecord>, WalletError> {
        store::list_broadcasts(&self.conn)
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}
