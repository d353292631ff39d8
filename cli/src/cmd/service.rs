//! `btcmpc service init|access`: a service's key (the key owners grant) and its question to the
//! committee: may I query this dataset? Each party answers from the ACL it reads on chain.
//!
//! Files in the datadir: `service.json` (the service key, a contract key of this wallet) and
//! `service-transport.key` (its Noise static key, mode 0600).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use bitcoin::secp256k1::PublicKey;
use btcmpc_engine::node::acl::dataset_id;
use btcmpc_engine::node::card::{
    read_bounded, schnorr_verify, tagged_hash, write_atomic, TransportSecret,
};
use btcmpc_engine::node::chain::ElectrumView;
use btcmpc_engine::node::manifest::{verify_manifest, Manifest};
use btcmpc_engine::node::noise::StaticKeypair;
use btcmpc_engine::node::service::Service;
use serde_json::{json, Value};

use crate::cmd::wallet::{connect, open};
use crate::{global::Global, output::Report};

/// Arguments of `btcmpc service`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Create the service key (the key owners grant) and print it.
    Init,
    /// Ask every party whether this service may query a dataset (its card from `owner export`);
    /// exits with 3 when the parties refuse.
    Access {
        /// The dataset card.
        card: PathBuf,
        /// CSV columns the query would use (default: every column).
        #[arg(long, value_delimiter = ',', value_name = "a,b")]
        columns: Vec<String>,
        /// The query's multiplicative degree (1: sum, count, mean; 2: var, cov).
        #[arg(long, value_name = "D", default_value_t = 1)]
        degree: u8,
    },
}

fn service_file(global: &Global) -> PathBuf {
    global.datadir().join("service.json")
}

/// Reads a dataset card and checks it: its dataset id is `sha256(STORE outpoint || anchor
/// key)`, and the anchor key signed it.
fn load_card(path: &Path) -> anyhow::Result<(Value, Manifest)> {
    let text = read_bounded(path)?;
    let mut card: Value =
        serde_json::from_str(&text).with_context(|| format!("dataset card {}", path.display()))?;
    let s = |k: &str| -> anyhow::Result<String> {
        card[k]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("dataset card {}: no {k}", path.display()))
    };
    let (op, key, id, sig) = (
        s("store_outpoint")?,
        s("anchor_key")?,
        s("dataset_id")?,
        s("signature")?,
    );
    let op: bitcoin::OutPoint = op.parse().context("dataset card: bad store_outpoint")?;
    let key: PublicKey = key.parse().context("dataset card: bad anchor_key")?;
    if hex::encode(dataset_id(&op, &key)) != id {
        bail!(
            "dataset card {}: dataset_id is not sha256(store_outpoint || anchor_key)",
            path.display()
        );
    }
    let mut sig64 = [0u8; 64];
    hex::decode_to_slice(&sig, &mut sig64).context("dataset card: bad signature hex")?;
    if let Some(obj) = card.as_object_mut() {
        obj.remove("signature");
    }
    let digest = tagged_hash(
        "btcmpc/v1/dataset-card",
        serde_json::to_string(&card)?.as_bytes(),
    );
    if !schnorr_verify(&key, digest, &sig64) {
        bail!(
            "dataset card {}: the anchor key's signature does not verify",
            path.display()
        );
    }
    let manifest = Manifest::from_value(card["manifest"].clone())
        .with_context(|| format!("dataset card {}: manifest", path.display()))?;
    Ok((card, manifest))
}

/// Run `btcmpc service`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<Report> {
    match args.cmd {
        Cmd::Init => {
            let path = service_file(global);
            if path.exists() {
                let v: Value = serde_json::from_str(&read_bounded(&path)?)?;
                return Ok(Report::new(
                    v["pubkey"].as_str().unwrap_or_default().to_string(),
                    v,
                ));
            }
            let mut wallet = open(global)?;
            let (index, key) = wallet.contract_key(None, "service key")?;
            let v = json!({"pubkey": key.to_string(), "contract_key_index": index});
            write_atomic(&path, serde_json::to_string_pretty(&v)?.as_bytes(), 0o644)?;
            let tk = global.datadir().join("service-transport.key");
            if !tk.exists() {
                TransportSecret::generate().save_new(&tk)?;
            }
            Ok(Report::new(
                format!(
                    "service key {key}\n(owners grant this key: btcmpc owner grant NAME {key})"
                ),
                v,
            ))
        }
        Cmd::Access {
            card,
            columns,
            degree,
        } => {
            let (card, manifest) = load_card(&card)?;
            let v: Value = serde_json::from_str(
                &read_bounded(&service_file(global)).context("run `btcmpc service init` first")?,
            )?;
            let key: PublicKey = v["pubkey"]
                .as_str()
                .unwrap_or_default()
                .parse()
                .context("service.json: bad pubkey")?;
            let wallet = open(global)?;
            let keypair = wallet
                .contract_keypair_for(&key)?
                .context("this wallet does not hold the service key")?;
            // Every client checks the committee's bonds before it trusts it.
            let chain = connect(global)?;
            if let Err(e) = verify_manifest(&manifest, &ElectrumView::new(&chain))?.ok() {
                bail!("the dataset's committee is refused: {e}");
            }
            let columns = if columns.is_empty() {
                card["schema"]["columns"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c["name"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                columns
            };
            let secret = TransportSecret::load(&global.datadir().join("service-transport.key"))?;
            let service =
                Service::new(keypair, StaticKeypair::from_secret(&secret.secret_bytes())?);
            let request = service.access_request(
                card["dataset_id"].as_str().unwrap_or_default(),
                &columns,
                degree,
            );
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let answers = rt.block_on(service.check_access(
                &manifest,
                &request,
                Default::default(),
                std::time::Duration::from_secs(20),
            ));
            let n = manifest.roster.n();
            let granted = answers
                .iter()
                .filter(|(_, a)| a.as_ref().is_ok_and(|a| a.granted))
                .count();
            let ok = granted >= n - manifest.roster.params.t;
            let mut text = format!(
                "dataset {}: {} ({granted} of {n} parties grant, {} needed)\n",
                card["name"].as_str().unwrap_or_default(),
                if ok { "GRANTED" } else { "REFUSED" },
                n - manifest.roster.params.t
            );
            let mut rows = Vec::new();
            for (p, a) in &answers {
                let line = match a {
                    Ok(a) if a.granted => format!("party {p}: granted (tip {})", a.tip),
                    Ok(a) => format!(
                        "party {p}: refused: {}",
                        a.reason.clone().unwrap_or_default()
                    ),
                    Err(e) => format!("party {p}: no answer: {e}"),
                };
                text.push_str(&format!("  {line}\n"));
                rows.push(match a {
                    Ok(a) => {
                        json!({"party": p, "granted": a.granted, "reason": a.reason, "tip": a.tip})
                    }
                    Err(e) => json!({"party": p, "granted": false, "error": e}),
                });
            }
            // A refusal is an answer, not an error: the report is printed, the exit code is 3.
            Ok(Report::new(
                text.trim_end(),
                json!({"granted": ok, "parties": rows, "service": key.to_string(),
                       "columns": columns, "degree": degree}),
            )
            .with_exit(if ok { 0 } else { 3 }))
        }
    }
}
