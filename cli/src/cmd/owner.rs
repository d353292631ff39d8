//! `btcmpc owner grant|revoke|list|acl`: a data owner's access control on chain, by extending
//! or reading the dataset's anchor spend chain (PROTOCOL.md, "Access control on chain").
//!
//! Datasets live in `DATADIR/datasets/NAME.json`. `owner store` (with the party network)
//! publishes the STORE record through the same library call as the hidden test command
//! `owner publish-store`, which publishes a STORE record for a receipts root given by hand.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context as _};
use bitcoin::secp256k1::PublicKey;
use btcmpc_engine::node::acl::{self, Access, AclState, Record, Scope, DEFAULT_ACL_MIN_CONF};
use btcmpc_engine::node::acl_ops::{extend_anchor, store_dataset, OwnedDataset};
use btcmpc_engine::node::chain::{ChainView, ElectrumView};
use btcmpc_wallet::ChainClient;
use serde_json::json;

use crate::args::parse_fee_rate;
use crate::cmd::party::parse_height;
use crate::cmd::wallet::{connect, open_synced, FEE_FLOOR};
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
    /// Allow a service to query dataset NAME (a GRANT record spending the current anchor).
    Grant {
        /// The dataset.
        name: String,
        /// The service key (33-byte compressed, 66 hex).
        service_key: String,
        /// Columns the service may use (names or 0-based indices); default: all.
        #[arg(long, value_delimiter = ',', value_name = "a,b")]
        columns: Vec<String>,
        /// Largest multiplicative degree (1 = sum, count, mean; 2 = var, cov).
        #[arg(long, value_name = "D", default_value_t = 2)]
        max_degree: u8,
        /// The grant ends at this height (absolute or +N); default: never.
        #[arg(long, value_name = "H")]
        expires: Option<String>,
        /// Fee rate in sat/vB (default: the server's estimate, at least 1 sat/vB).
        #[arg(long, value_name = "R")]
        fee_rate: Option<String>,
    },
    /// Stop a service (a REVOKE record; effective as soon as it is seen).
    Revoke {
        /// The dataset.
        name: String,
        /// The service key.
        service_key: String,
        /// Fee rate in sat/vB.
        #[arg(long, value_name = "R")]
        fee_rate: Option<String>,
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
        #[arg(long, value_name = "R")]
        fee_rate: Option<String>,
    },
}

/// The rate given (paid as given), or the server's estimate, which the wallet's fee policy
/// bounds when the transaction is built.
fn fee_rate(arg: Option<&str>, chain: &ChainClient) -> anyhow::Result<FeeChoice> {
    match arg {
        Some(r) => Ok(FeeChoice::Explicit(parse_fee_rate(r)?)),
        None => Ok(chain.fee_rate(2, FEE_FLOOR)),
    }
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
                .filter(|_| d.columns.is_empty())
                .with_context(|| {
                    format!(
                        "dataset {} has no column {n:?} (columns: {})",
                        d.name,
                        d.columns.join(",")
                    )
                })?,
        };
        if i >= acl::MAX_BITMAP_LEN * 8 {
            bail!("column {n:?} (index {i}) is past the 40 a GRANT can name");
        }
        out.insert(i as u8);
    }
    Ok(Some(out))
}

fn access_text(a: &Access) -> String {
    match a {
        Access::Granted(s) => format!(
            "granted (degree <= {}, columns {}, expires {})",
            s.max_degree,
            s.columns
                .as_ref()
                .map_or("all".into(), |c| format!("{c:?}")),
            s.expiry.map_or("never".into(), |e| e.to_string())
        ),
        Access::Pending(c) => format!("pending ({c} confirmations)"),
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
    rate: Option<&str>,
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
    let rate = fee_rate(rate, &chain)?;
    let txid = extend_anchor(
        &mut wallet,
        &chain,
        &state.anchor_key,
        current,
        record,
        rate,
    )?;
    Ok(Report::new(
        format!("{txid}"),
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
            let expiry = match &expires {
                None => None,
                Some(h) => Some(parse_height("--expires", h, &connect(global)?)?),
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
            extend(global, &name, &record, rate.as_deref())
        }
        Cmd::Revoke {
            name,
            service_key,
            fee_rate: rate,
        } => {
            let record = Record::Revoke {
                service: service(&service_key)?,
            };
            extend(global, &name, &record, rate.as_deref())
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
                "dataset {name} {} tip {tip}, {} records{}\n",
                d.dataset_id,
                state.entries.len(),
                if state.closed.is_some() {
                    ", CLOSED"
                } else {
                    ""
                }
            );
            for (k, a) in &table {
                text.push_str(&format!("{k}  {}\n", access_text(a)));
            }
            let rows: Vec<_> = table
                .iter()
                .map(|(k, a)| json!({"service": k.to_string(), "granted": a.is_granted(), "access": access_text(a)}))
                .collect();
            Ok(Report::new(
                text,
                json!({"dataset_id": d.dataset_id, "tip": tip, "closed": state.closed.is_some(),
                       "records": state.entries.len(), "services": rows}),
            ))
        }
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
            let rate = fee_rate(rate.as_deref(), &chain)?;
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
