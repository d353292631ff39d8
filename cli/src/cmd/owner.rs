//! `btcmpc owner store|grant|revoke|list|acl|export`: a data owner's datasets and their access
//! control on chain, by extending or reading the dataset's anchor spend chain (PROTOCOL.md,
//! "Access control on chain").
//!
//! Datasets live in `DATADIR/datasets/NAME.json` (what was published) and
//! `DATADIR/stores/NAME.json` (the schema, session and committee, written before the
//! STORE record is published). `owner store` publishes the STORE record through the same
//! library call as the hidden test command `owner publish-store`, which publishes a STORE
//! record for a receipts root given by hand.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use bitcoin::secp256k1::PublicKey;
use btcmpc_engine::node::acl::{self, Access, AclState, Record, Scope, DEFAULT_ACL_MIN_CONF};
use btcmpc_engine::node::acl_ops::{extend_anchor, store_dataset, OwnedDataset};
use btcmpc_engine::node::chain::{ChainView, ElectrumView};
use btcmpc_wallet::ChainClient;
use serde_json::json;

use crate::args::HeightArg;
use crate::cmd::party::resolve_height;
use crate::cmd::wallet::{connect, open_synced};
use crate::{global::Global, output::Report};
use btcmpc_wallet::FeeChoice;

/// Arguments of `btcmpc owner`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Share every column of a CSV file with every party of the committee, run their store
    /// check, and publish the STORE record (the first anchor).
    Store {
        /// The CSV file (header row; empty, NA, NaN or NULL cells are NULL).
        file: PathBuf,
        /// The dataset's name.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The committee (default: DATADIR/manifest.json).
        #[arg(long, value_name = "F")]
        manifest: Option<PathBuf>,
        /// Only these columns, by name or 0-based position (default: every column). A name
        /// holding a comma is selected by its position.
        #[arg(long, value_delimiter = ',', value_name = "a,b")]
        columns: Vec<String>,
        /// The field: secp256k1 (default) or m127 (2^127-1, faster, 126-bit range limit).
        #[arg(long, value_name = "FIELD", default_value = "secp256k1")]
        field: String,
        /// Seconds each exchange with one party may take, reconnections included.
        #[arg(long, value_name = "S", default_value_t = 60)]
        party_timeout: u64,
        /// Fee rate in sat/vB of the STORE transaction.
        #[arg(long, value_name = "R", value_parser = crate::args::parse_fee_rate)]
        fee_rate: Option<bitcoin::FeeRate>,
    },
    /// Write the dataset card services use: name, dataset id, STORE outpoint, anchor key,
    /// schema (columns, kinds, ranges, rows), committee, signed by the anchor key.
    Export {
        /// The dataset.
        name: String,
        /// Write the card here instead of stdout.
        #[arg(long, value_name = "F")]
        out: Option<PathBuf>,
    },
    /// Allow a service to query dataset NAME (a GRANT record spending the current anchor).
    Grant {
        /// The dataset.
        name: String,
        /// The service key (33-byte compressed, 66 hex).
        service_key: String,
        /// Columns the service may use, by name or 0-based position (default: all). A GRANT's
        /// column list covers the first 40 columns; to grant a later one, grant all columns
        /// or store the columns the service needs among the first 40.
        #[arg(long, value_delimiter = ',', value_name = "a,b")]
        columns: Vec<String>,
        /// Largest multiplicative degree of a query: sum, count and mean of one column are 1,
        /// var, cov and dot are 2; a column with empty cells adds 1 where it is multiplied
        /// by the presence of another (sum(a + b) over two gappy columns is 2).
        #[arg(long, value_name = "D", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..))]
        max_degree: u8,
        /// The grant ends at this height (absolute or +N); default: never.
        #[arg(long, value_name = "H", value_parser = crate::args::parse_height)]
        expires: Option<HeightArg>,
        /// Fee rate in sat/vB (default: the server's estimate, at least 1 sat/vB).
        #[arg(long, value_name = "R", value_parser = crate::args::parse_fee_rate)]
        fee_rate: Option<bitcoin::FeeRate>,
    },
    /// Stop a service (a REVOKE record; effective as soon as it is seen).
    Revoke {
        /// The dataset.
        name: String,
        /// The service key.
        service_key: String,
        /// Fee rate in sat/vB.
        #[arg(long, value_name = "R", value_parser = crate::args::parse_fee_rate)]
        fee_rate: Option<bitcoin::FeeRate>,
    },
    /// The datasets this owner published.
    List,
    /// The ACL of dataset NAME as the chain says now.
    Acl {
        /// The dataset.
        name: String,
        /// Confirmations a GRANT needs.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_ACL_MIN_CONF)]
        min_conf: u32,
    },
    /// Test support: publish a STORE record for dataset NAME with a receipts root given by hand
    /// (what `owner store` does once the parties' receipts are collected).
    #[command(hide = true)]
    PublishStore {
        /// The dataset name.
        name: String,
        /// The receipts root, 64 hex.
        #[arg(long, value_name = "HEX")]
        receipts_root: String,
        /// Column names, in order.
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// Fee rate in sat/vB.
        #[arg(long, value_name = "R", value_parser = crate::args::parse_fee_rate)]
        fee_rate: Option<bitcoin::FeeRate>,
    },
}

/// The rate given (paid as given), or the server's estimate, which the wallet's fee policy
/// bounds when the transaction is built.
fn fee_rate(arg: Option<bitcoin::FeeRate>, chain: &ChainClient) -> anyhow::Result<FeeChoice> {
    crate::cmd::party::fee_rate(arg, chain)
}

fn service(text: &str) -> anyhow::Result<PublicKey> {
    Ok(btcmpc_contracts::parse_key("service key", text)?)
}

/// Follow dataset `d`'s anchor chain to its end.
fn follow_dataset(
    d: &OwnedDataset,
    view: &impl ChainView,
    min_conf: u32,
) -> anyhow::Result<AclState> {
    let mut state = acl::start(view, d.store_outpoint()?, d.anchor_key()?, min_conf)
        .with_context(|| format!("dataset {}", d.name))?;
    while acl::follow(&mut state, view, acl::MAX_STEPS_PER_CALL)? == acl::MAX_STEPS_PER_CALL {}
    Ok(state)
}

fn column_indices(d: &OwnedDataset, names: &[String]) -> anyhow::Result<Option<BTreeSet<u8>>> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut out = BTreeSet::new();
    for n in names {
        let i = match d.columns.iter().position(|c| c == n) {
            Some(i) => i,
            None => n
                .parse::<usize>()
                .ok()
                .filter(|&i| d.columns.is_empty() || i < d.columns.len())
                .with_context(|| {
                    format!(
                        "dataset {} has no column {n:?} (columns: {})",
                        d.name,
                        d.columns.join(",")
                    )
                })?,
        };
        if i >= acl::MAX_BITMAP_LEN * 8 {
            bail!(
                "column {n:?} (position {i}) is past the first {} a GRANT's column list can name: grant all columns (no --columns), or store the needed columns among the first {}",
                acl::MAX_BITMAP_LEN * 8,
                acl::MAX_BITMAP_LEN * 8
            );
        }
        out.insert(i as u8);
    }
    Ok(Some(out))
}

fn access_text(a: &Access, names: &[String]) -> String {
    match a {
        Access::Granted(s) => format!(
            "granted (degree <= {}, columns {}, expires {})",
            s.max_degree,
            s.columns.as_ref().map_or("all".into(), |c| c
                .iter()
                .map(|i| names
                    .get(*i as usize)
                    .cloned()
                    .unwrap_or_else(|| i.to_string()))
                .collect::<Vec<_>>()
                .join(",")),
            s.expiry.map_or("never".into(), |e| e.to_string())
        ),
        Access::Pending(c) => format!("pending ({c} confirmation(s); parties count it from --acl-min-conf, {DEFAULT_ACL_MIN_CONF} by default)"),
        Access::Revoked(txid) => format!("revoked by {txid}"),
        Access::Expired(h) => format!("expired at {h}"),
        Access::NotGranted => "not granted".into(),
        Access::Closed => "dataset closed".into(),
    }
}

fn extend(
    global: &Global,
    name: &str,
    record: &Record,
    rate: Option<bitcoin::FeeRate>,
) -> anyhow::Result<Report> {
    let dir = global.datadir();
    let d = OwnedDataset::load(&dir, name)?;
    let (mut wallet, chain) = open_synced(global)?;
    let view = ElectrumView::new(&chain);
    let state = follow_dataset(&d, &view, DEFAULT_ACL_MIN_CONF)?;
    let current = state.current().with_context(|| {
        format!(
            "dataset {name} is closed: its anchor was spent without a valid record ({})",
            state
                .closed
                .as_ref()
                .map_or(String::new(), |c| c.reason.clone())
        )
    })?;
    // A record that would change nothing is refused before it costs a fee.
    if let Some(why) = state.unchanged_by(record, view.tip()?) {
        bail!("dataset {name}: {why} (no transaction made)");
    }
    let rate = fee_rate(rate, &chain)?;
    let txid = extend_anchor(
        &mut wallet,
        &chain,
        &state.anchor_key,
        current,
        record,
        rate,
    )?;
    let text = match record {
        Record::Grant { service, .. } => format!(
            "GRANT of dataset {name} to {service}: {txid}\n(parties count it once it has their --acl-min-conf confirmations, {DEFAULT_ACL_MIN_CONF} by default)"
        ),
        Record::Revoke { service } => format!(
            "REVOKE of dataset {name} for {service}: {txid}\n(parties refuse the service as soon as they see it)"
        ),
        Record::Store { .. } => txid.to_string(),
    };
    Ok(Report::new(
        text,
        json!({"txid": txid.to_string(), "dataset_id": d.dataset_id}),
    ))
}

/// Run `btcmpc owner`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<Report> {
    match args.cmd {
        Cmd::Grant {
            name,
            service_key,
            columns,
            max_degree,
            expires,
            fee_rate: rate,
        } => {
            let d = OwnedDataset::load(&global.datadir(), &name)?;
            let service = service(&service_key)?;
            let expiry = match expires {
                None => None,
                Some(h) => Some(resolve_height("--expires", h, &connect(global)?)?.to_u32()),
            };
            let record = Record::Grant {
                service,
                scope: Scope {
                    expiry,
                    max_degree,
                    columns: column_indices(&d, &columns)?,
                },
            };
            record.encode()?;
            extend(global, &name, &record, rate)
        }
        Cmd::Revoke {
            name,
            service_key,
            fee_rate: rate,
        } => {
            let record = Record::Revoke {
                service: service(&service_key)?,
            };
            extend(global, &name, &record, rate)
        }
        Cmd::List => {
            let all = OwnedDataset::list(&global.datadir())?;
            let text = all
                .iter()
                .map(|d| format!("{}  {}  {}", d.name, d.dataset_id, d.store_outpoint))
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Report::new(text, serde_json::to_value(&all)?))
        }
        Cmd::Acl { name, min_conf } => {
            let d = OwnedDataset::load(&global.datadir(), &name)?;
            let chain = connect(global)?;
            let view = ElectrumView::new(&chain);
            let state = follow_dataset(&d, &view, min_conf)?;
            let tip = view.tip()?;
            let table = state.table(tip);
            let mut text = format!(
                "dataset {name} {} tip {tip}, {} record{}{}\n",
                d.dataset_id,
                state.entries.len(),
                if state.entries.len() == 1 { "" } else { "s" },
                if state.closed.is_some() {
                    ", CLOSED"
                } else {
                    ""
                }
            );
            for (k, a) in &table {
                text.push_str(&format!("{k}  {}\n", access_text(a, &d.columns)));
            }
            let rows: Vec<_> = table
                .iter()
                .map(|(k, a)| json!({"service": k.to_string(), "granted": a.is_granted(), "access": access_text(a, &d.columns)}))
                .collect();
            Ok(Report::new(
                text,
                json!({"dataset_id": d.dataset_id, "tip": tip, "closed": state.closed.is_some(),
                       "records": state.entries.len(), "services": rows}),
            ))
        }
        Cmd::Store {
            file,
            name,
            manifest,
            columns,
            field,
            party_timeout,
            fee_rate: rate,
        } => store(
            global,
            &file,
            &name,
            manifest,
            columns,
            &field,
            party_timeout,
            rate,
        ),
        Cmd::Export { name, out } => export(global, &name, out.as_deref()),
        Cmd::PublishStore {
            name,
            receipts_root,
            columns,
            fee_rate: rate,
        } => {
            let root: [u8; 32] = hex::decode(&receipts_root)
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("receipts root {receipts_root:?} is not 64 hex"))?;
            let dir: &Path = &global.datadir();
            let (mut wallet, chain) = open_synced(global)?;
            let rate = fee_rate(rate, &chain)?;
            let d = store_dataset(&mut wallet, &chain, dir, &name, &columns, root, rate)?;
            Ok(Report::new(
                format!(
                    "dataset {name}: {} (STORE {})",
                    d.dataset_id, d.store_outpoint
                ),
                serde_json::to_value(&d)?,
            ))
        }
    }
}

/// What `owner store` records beside the published dataset, before publishing.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreRecord {
    version: u32,
    name: String,
    session: String,
    roster_id: String,
    field: String,
    schema: btcmpc_engine::mpc::csv::Schema,
    holders: Vec<u32>,
    manifest: serde_json::Value,
}

fn store_record_path(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    OwnedDataset::path(dir, name)?;
    Ok(dir.join("stores").join(format!("{name}.json")))
}

#[allow(clippy::too_many_arguments)]
fn store(
    global: &Global,
    file: &Path,
    name: &str,
    manifest: Option<PathBuf>,
    columns: Vec<String>,
    field: &str,
    party_timeout: u64,
    rate: Option<bitcoin::FeeRate>,
) -> anyhow::Result<Report> {
    use btcmpc_engine::mpc::csv::{Dataset, ReadOptions};
    use btcmpc_engine::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
    use btcmpc_engine::node::card::{write_atomic, TransportSecret};
    use btcmpc_engine::node::manifest::verify_manifest;
    use btcmpc_engine::node::noise::StaticKeypair;
    use btcmpc_engine::node::owner::{Owner, StoreOptions};
    use btcmpc_engine::node::wire::StoreCommit;

    let dir = global.datadir();
    let dataset_file = OwnedDataset::path(&dir, name)?;
    if dataset_file.exists() {
        bail!(
            "a dataset named {name} already exists ({})",
            dataset_file.display()
        );
    }
    if field != Secp256k1Scalar::NAME && field != Mersenne127::NAME {
        bail!("unknown field {field:?}: secp256k1 or m127");
    }
    let (manifest_path, manifest) = crate::cmd::network::load_manifest(global, manifest)?;
    // Every client re-checks the bonds on chain before it trusts the committee.
    let chain = connect(global)?;
    let report = verify_manifest(&manifest, &ElectrumView::new(&chain))?;
    if let Err(e) = report.ok() {
        bail!("manifest {} refused: {e}", manifest_path.display());
    }
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let options = ReadOptions {
        columns: (!columns.is_empty()).then_some(columns),
    };
    let dataset = Dataset::from_bytes_with(&bytes, &options)
        .with_context(|| format!("{}", file.display()))?;
    drop(bytes);
    let key_file = dir.join("owner-transport.key");
    let secret = if key_file.exists() {
        TransportSecret::load(&key_file)?
    } else {
        let s = TransportSecret::generate();
        s.save_new(&key_file)?;
        s
    };
    let owner = Owner::new(
        manifest.clone(),
        StaticKeypair::from_secret(&secret.secret_bytes())?,
    );
    let mut opts = StoreOptions::new(name);
    opts.party_timeout = std::time::Duration::from_secs(party_timeout.clamp(1, 3600));
    let bar = (!global.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message("sharing");
        b
    });
    let progress: Option<btcmpc_engine::node::owner::Progress> = bar.clone().map(|b| {
        std::sync::Arc::new(move |done: u64, total: u64| {
            b.set_length(total);
            b.set_position(done);
        }) as btcmpc_engine::node::owner::Progress
    });
    let rt = crate::cmd::runtime()?;
    let started = std::time::Instant::now();
    let shared = rt.block_on(async {
        if field == Mersenne127::NAME {
            owner
                .store_shares::<Mersenne127>(&dataset, &opts, progress)
                .await
        } else {
            owner
                .store_shares::<Secp256k1Scalar>(&dataset, &opts, progress)
                .await
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let shared = shared?;
    let record = StoreRecord {
        version: 1,
        name: name.to_string(),
        session: shared.session.clone(),
        roster_id: hex::encode(manifest.roster.id()),
        field: field.to_string(),
        schema: dataset.schema.clone(),
        holders: shared.holders.clone(),
        manifest: manifest.to_value(),
    };
    write_atomic(
        &store_record_path(&dir, name)?,
        serde_json::to_string_pretty(&record)?.as_bytes(),
        0o644,
    )?;
    let (mut wallet, chain) = open_synced(global)?;
    let rate = fee_rate(rate, &chain)?;
    let names = dataset.schema.column_names();
    let d = store_dataset(
        &mut wallet,
        &chain,
        &dir,
        name,
        &names,
        shared.receipts_root,
        rate,
    )?;
    let commit = StoreCommit {
        session: {
            let mut s = [0u8; 32];
            hex::decode_to_slice(&shared.session, &mut s)?;
            s
        },
        store_outpoint: d.store_outpoint.clone(),
        anchor_key: d.anchor_key.clone(),
        dataset_id: d.dataset_id.clone(),
    };
    let confirmed =
        rt.block_on(owner.commit(&shared.holders, &commit, opts.channel, opts.party_timeout));
    let confirmed = match confirmed {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("no party confirmed the commit: {e}");
            Vec::new()
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let text = format!(
        "stored {name}: {} rows x {} shared columns ({} CSV columns, nullable: {})\n\
         held by parties {:?}{}{}\n\
         STORE {} (dataset id {})\n\
         receipts root {}\n\
         {:.1} s, {} MB of shares sent",
        shared.rows,
        shared.columns,
        dataset.schema.columns.len(),
        {
            let n = dataset.schema.nullable();
            if n.is_empty() {
                "none".to_string()
            } else {
                n.join(",")
            }
        },
        shared.holders,
        if shared.blamed.is_empty() {
            String::new()
        } else {
            format!("; BLAMED by the check: {:?}", shared.blamed)
        },
        if shared.silent.is_empty() {
            String::new()
        } else {
            format!("; silent: {:?}", shared.silent)
        },
        d.store_outpoint,
        d.dataset_id,
        d.receipts_root,
        secs,
        shared.bytes_sent / 1_000_000,
    );
    Ok(Report::new(
        text,
        json!({
            "name": name, "dataset_id": d.dataset_id, "store_outpoint": d.store_outpoint,
            "receipts_root": d.receipts_root, "session": shared.session,
            "rows": shared.rows, "columns": shared.columns,
            "holders": shared.holders, "blamed": shared.blamed, "silent": shared.silent,
            "committed": confirmed, "seconds": secs, "bytes_sent": shared.bytes_sent,
        }),
    ))
}

fn export(global: &Global, name: &str, out: Option<&Path>) -> anyhow::Result<Report> {
    use btcmpc_engine::node::card::{schnorr_sign, tagged_hash, write_atomic};
    let dir = global.datadir();
    let d = OwnedDataset::load(&dir, name)?;
    let path = store_record_path(&dir, name)?;
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "dataset {name} was not stored through `owner store` ({} missing)",
            path.display()
        )
    })?;
    let r: StoreRecord =
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let mut card = json!({
        "version": 1,
        "name": d.name,
        "dataset_id": d.dataset_id,
        "store_outpoint": d.store_outpoint,
        "anchor_key": d.anchor_key,
        "receipts_root": d.receipts_root,
        "roster_id": r.roster_id,
        "session": r.session,
        "field": r.field,
        "holders": r.holders,
        "schema": r.schema,
        "manifest": r.manifest,
    });
    let wallet = crate::cmd::wallet::open(global)?;
    let keypair = wallet
        .contract_keypair_for(&d.anchor_key()?)?
        .context("this wallet does not hold the dataset's anchor key")?;
    let digest = tagged_hash(
        "btcmpc/v1/dataset-card",
        serde_json::to_string(&card)?.as_bytes(),
    );
    card["signature"] = json!(hex::encode(schnorr_sign(&keypair, digest)));
    let text = serde_json::to_string_pretty(&card)?;
    if let Some(out) = out {
        write_atomic(out, text.as_bytes(), 0o644)?;
        return Ok(Report::new(
            format!("dataset card written to {}", out.display()),
            card,
        ));
    }
    Ok(Report::new(text, card))
}
