//! `btcmpc wallet`: the wallet every role has (BIP86 taproot, over Electrum).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use btcmpc_wallet::{keys, ChainClient, ExistingDatabase, RoleWallet, DEFAULT_TIMEOUT};
use serde_json::json;

use crate::args::{parse_amount_or_all, parse_fee_rate, AmountOrAll};
use crate::{global::Global, output::Report};

/// Arguments of `btcmpc wallet`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Create a wallet: a fresh mnemonic (or the words in --mnemonic-file), kept in
    /// DATADIR/wallet/mnemonic.txt with mode 0600.
    Create {
        /// Use the mnemonic in this file instead of a fresh one.
        #[arg(long, value_name = "F")]
        mnemonic_file: Option<PathBuf>,
        /// Print the mnemonic (it is otherwise only written to the wallet's directory).
        #[arg(long)]
        show_mnemonic: bool,
    },
    /// Restore a wallet from its mnemonic and scan the chain; with --backup, also bring back
    /// contract files and job parameters.
    Restore {
        /// File with the 12 or 24 words.
        #[arg(long, value_name = "F")]
        mnemonic_file: Option<PathBuf>,
        /// An encrypted backup written by `wallet backup`.
        #[arg(long, value_name = "FILE")]
        backup: Option<PathBuf>,
    },
    /// A fresh receiving address.
    Address,
    /// Sync, then print the confirmed and unconfirmed balance.
    Balance {
        /// Do not contact the server: print what the database knows.
        #[arg(long)]
        offline: bool,
    },
    /// Scan the chain for this wallet's transactions and re-broadcast its unconfirmed ones.
    Sync,
    /// Pay AMOUNT (`50000sat`, `0.0005btc`, or `all`) to ADDR.
    Send {
        /// The address to pay.
        address: String,
        /// The amount with its unit, or `all` for the whole balance less the fee.
        #[arg(value_parser = parse_amount_or_all)]
        amount: AmountOrAll,
        /// Fee rate in sat/vB, paid as given (default: the server's estimate, at least
        /// 1 sat/vB, refused above 200 sat/vB or above 10% of the amount).
        #[arg(long, value_name = "R", value_parser = parse_fee_rate)]
        fee_rate: Option<bitcoin::FeeRate>,
    },
    /// Replace an unconfirmed transaction of this wallet (a payment, or a claim, refund or
    /// exit it broadcast) by one paying a higher fee rate.
    BumpFee {
        /// The transaction to replace.
        txid: String,
        /// The new fee rate in sat/vB.
        #[arg(long, value_name = "R", value_parser = parse_fee_rate)]
        fee_rate: bitcoin::FeeRate,
    },
    /// The wallet's transactions, newest first.
    History,
    /// A contract public key (33-byte compressed, hex) on the contract path `m/4743'/coin'/0'/i'`.
    Key {
        /// The key index (default: the next one never handed out).
        #[arg(long, value_name = "N")]
        index: Option<u32>,
        /// What the key is for, recorded with it.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Write an encrypted backup of what the mnemonic alone cannot rebuild.
    Backup {
        /// Where to write it.
        file: PathBuf,
    },
}

/// The directory of the datadir's wallet.
pub fn wallet_dir(global: &Global) -> PathBuf {
    global.datadir().join("wallet")
}

/// Open the datadir's wallet.
pub fn open(global: &Global) -> anyhow::Result<RoleWallet> {
    Ok(RoleWallet::open(
        &wallet_dir(global),
        global.network.network(),
    )?)
}

/// Connect to the Electrum server of `--electrum`, or of the embedded node of the datadir.
pub fn connect(global: &Global) -> anyhow::Result<ChainClient> {
    let url = global.electrum_url()?;
    Ok(ChainClient::connect_for(
        &url,
        global.network.network(),
        global.allow_plaintext_electrum,
        DEFAULT_TIMEOUT,
    )?)
}

/// Open the datadir's wallet if it has one: `None` when there is no wallet (a watcher's
/// datadir); any other failure (an unreadable database, another network's) is an error.
pub fn open_if_any(global: &Global) -> anyhow::Result<Option<RoleWallet>> {
    match RoleWallet::open(&wallet_dir(global), global.network.network()) {
        Ok(w) => Ok(Some(w)),
        Err(btcmpc_wallet::WalletError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Open the wallet, connect and sync.
pub fn open_synced(global: &Global) -> anyhow::Result<(RoleWallet, ChainClient)> {
    let mut wallet = open(global)?;
    let chain = connect(global)?;
    wallet.sync(&chain)?;
    Ok((wallet, chain))
}

/// Add to a report what `create` did with a database it found: kept or moved aside.
fn existing_database_note(wallet: &RoleWallet, text: &mut String, j: &mut serde_json::Value) {
    match wallet.existing_database() {
        Some(ExistingDatabase::Kept(path)) => {
            text.push_str(&format!(
                "\n  kept the existing database {} (it belongs to this mnemonic)",
                path.display()
            ));
            j["database_kept"] = json!(path.display().to_string());
        }
        Some(ExistingDatabase::MovedAside { from, to }) => {
            text.push_str(&format!(
                "\n  moved the existing database {} aside to {} (another seed's wallet; nothing was deleted)",
                from.display(),
                to.display()
            ));
            j["database_moved_aside"] = json!(to.display().to_string());
        }
        _ => {}
    }
}

fn read_mnemonic(path: &Path) -> anyhow::Result<btcmpc_wallet::Mnemonic> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    keys::parse_mnemonic(&text).with_context(|| format!("mnemonic file {}", path.display()))
}

/// Run `btcmpc wallet`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<Report> {
    let network = global.network.network();
    let dir = wallet_dir(global);
    match args.cmd {
        Cmd::Create {
            mnemonic_file,
            show_mnemonic,
        } => {
            let given = mnemonic_file.as_deref().map(read_mnemonic).transpose()?;
            let (mut wallet, mnemonic) = RoleWallet::create(&dir, network, given)?;
            let address = wallet.next_address()?;
            let file = RoleWallet::mnemonic_path(&dir);
            let mut text = format!(
                "wallet created in {}\n  mnemonic: {} (keep it safe; mode 0600)\n  address:  {address}",
                dir.display(),
                file.display()
            );
            let mut j = json!({"dir": dir.display().to_string(), "mnemonic_file": file.display().to_string(),
                "address": address.to_string(), "network": network.to_string()});
            existing_database_note(&wallet, &mut text, &mut j);
            if show_mnemonic {
                text.push_str(&format!("\n  words:    {mnemonic}"));
                j["mnemonic"] = json!(mnemonic.to_string());
            }
            Ok(Report::new(text, j))
        }
        Cmd::Restore {
            mnemonic_file,
            backup,
        } => {
            let mut wallet = match mnemonic_file {
                Some(f) => {
                    let words = read_mnemonic(&f)?;
                    RoleWallet::create(&dir, network, Some(words))?.0
                }
                None if backup.is_some() => open(global)?,
                None => bail!("restore needs --mnemonic-file F (and optionally --backup FILE)"),
            };
            let mut contracts = 0;
            if let Some(b) = &backup {
                contracts = wallet.restore_backup(b)?.contracts.len();
            }
            // Say what happened to an existing database before anything can fail on the network.
            let mut note = String::new();
            let mut note_json = json!({});
            existing_database_note(&wallet, &mut note, &mut note_json);
            if !note.is_empty() {
                eprintln!("{}", note.trim_start());
            }
            let chain = connect(global)?;
            let sync = wallet.sync(&chain)?;
            let (confirmed, unconfirmed) = wallet.balance();
            let mut j = json!({"dir": dir.display().to_string(), "height": sync.tip, "confirmed": confirmed.to_sat(),
                    "unconfirmed": unconfirmed.to_sat(), "contracts_restored": contracts});
            // The wallet keeps its words beside it (as `create` does): say so, so that a user who
            // keeps the seed offline knows to move the file away again.
            let mnemonic_file = RoleWallet::mnemonic_path(&dir);
            if mnemonic_file.exists() {
                note.push_str(&format!(
                    "\n  mnemonic written to {} (mode 0600; move it away to keep the seed offline)",
                    mnemonic_file.display()
                ));
                j["mnemonic_file"] = json!(mnemonic_file.display().to_string());
            }
            if let (Some(o), Some(n)) = (j.as_object_mut(), note_json.as_object()) {
                o.extend(n.clone());
            }
            Ok(Report::new(
                format!(
                    "wallet restored in {} at height {}\n  confirmed:   {confirmed}\n  unconfirmed: {unconfirmed}\n  contracts from backup: {contracts}{note}",
                    dir.display(),
                    sync.tip
                ),
                j,
            ))
        }
        Cmd::Address => {
            let mut wallet = open(global)?;
            let address = wallet.next_address()?;
            Ok(Report::new(
                address.to_string(),
                json!({"address": address.to_string()}),
            ))
        }
        Cmd::Balance { offline } => {
            let wallet = if offline {
                open(global)?
            } else {
                open_synced(global)?.0
            };
            let (confirmed, unconfirmed) = wallet.balance();
            Ok(Report::new(
                format!("confirmed:   {confirmed}\nunconfirmed: {unconfirmed}"),
                json!({"confirmed": confirmed.to_sat(), "unconfirmed": unconfirmed.to_sat()}),
            ))
        }
        Cmd::Sync => {
            let mut wallet = open(global)?;
            let chain = connect(global)?;
            let r = wallet.sync(&chain)?;
            // Claims still unconfirmed a block after their broadcast pay more (bounded).
            let bumped = wallet.bump_stuck_claims(&chain, btcmpc_wallet::MAX_CLAIM_FEE_RATE)?;
            let (confirmed, unconfirmed) = wallet.balance();
            Ok(Report::new(
                format!(
                    "synced to height {}{}; re-broadcast {} transaction(s), fee-bumped {} claim(s)\nconfirmed:   {confirmed}\nunconfirmed: {unconfirmed}",
                    r.tip,
                    if r.full_scan { " (full scan)" } else { "" },
                    r.rebroadcast,
                    bumped.len()
                ),
                json!({"height": r.tip, "full_scan": r.full_scan, "rebroadcast": r.rebroadcast,
                    "bumped": bumped.iter().map(|(old, new)| json!({"replaced": old.to_string(), "by": new.to_string()})).collect::<Vec<_>>(),
                    "confirmed": confirmed.to_sat(), "unconfirmed": unconfirmed.to_sat()}),
            ))
        }
        Cmd::Send {
            address,
            amount,
            fee_rate,
        } => {
            let amount = amount.amount();
            let mut wallet = open(global)?;
            // Check the address before touching the network.
            wallet.parse_address(&address)?;
            let chain = connect(global)?;
            wallet.sync(&chain)?;
            // An explicit rate is paid as given; the server's estimate is bounded by the
            // wallet's fee policy.
            let fee = chain.fee_choice(fee_rate, btcmpc_wallet::PAYMENT_TARGET)?;
            let txid = wallet.send(&chain, &address, amount, fee)?;
            Ok(Report::new(
                txid.to_string(),
                json!({"txid": txid.to_string()}),
            ))
        }
        Cmd::BumpFee { txid, fee_rate } => {
            let txid: bitcoin::Txid = txid
                .trim()
                .parse()
                .with_context(|| format!("invalid txid {txid:?}"))?;
            let (mut wallet, chain) = open_synced(global)?;
            let new = wallet.bump_fee(&chain, txid, fee_rate)?;
            Ok(Report::new(
                format!("{txid} replaced by {new}"),
                json!({"txid": new.to_string(), "replaces": txid.to_string()}),
            ))
        }
        Cmd::History => {
            let wallet = open(global)?;
            let items = wallet.history();
            let mut text = format!(
                "{:<64}  {:>14}  {:>8}  height\n",
                "txid", "net (sat)", "fee"
            );
            for i in &items {
                text.push_str(&format!(
                    "{}  {:>14}  {:>8}  {}\n",
                    i.txid,
                    i.net.to_sat(),
                    i.fee.map_or("-".into(), |f| f.to_sat().to_string()),
                    i.height.map_or("unconfirmed".into(), |h| h.to_string())
                ));
            }
            // Each: `txid` (hex), `net_sat` (received minus sent), `fee_sat` (null when an
            // input is not this wallet's), `height` (null while unconfirmed).
            let rows: Vec<_> = items
                .iter()
                .map(|i| {
                    json!({
                        "txid": i.txid.to_string(),
                        "net_sat": i.net.to_sat(),
                        "fee_sat": i.fee.map(|f| f.to_sat()),
                        "height": i.height,
                    })
                })
                .collect();
            Ok(Report::new(text, json!({"transactions": rows})))
        }
        Cmd::Key { index, label } => {
            let mut wallet = open(global)?;
            let (index, pk) = wallet.contract_key(index, &label)?;
            Ok(Report::new(
                pk.to_string(),
                json!({"pubkey": pk.to_string(), "index": index}),
            ))
        }
        Cmd::Backup { file } => {
            let wallet = open(global)?;
            let moved = wallet.write_backup(&file, Default::default())?;
            let doc = wallet.backup_document()?;
            let mut text = format!(
                "backup written to {} ({} contracts)",
                file.display(),
                doc.contracts.len()
            );
            if let Some(m) = &moved {
                text.push_str(&format!(
                    "\n  the file that was there was moved to {}",
                    m.display()
                ));
            }
            Ok(Report::new(
                text,
                json!({"file": file.display().to_string(), "contracts": doc.contracts.len(),
                    "moved_aside": moved.map(|m| m.display().to_string())}),
            ))
        }
    }
}
