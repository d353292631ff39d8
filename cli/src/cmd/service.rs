//! `btcmpc service init|access`: a service's key (the key owners grant) and its question to the
//! committee: may I query this dataset? Each party answers from the ACL it reads on chain.
//!
//! Files in the datadir: `service.json` (the service key, a contract key of this wallet) and
//! `service-transport.key` (its Noise static key, mode 0600).

use crate::cmd::runtime;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use bitcoin::secp256k1::PublicKey;
use btcmpc_engine::node::acl::dataset_id;
use btcmpc_engine::node::card::{
    read_bounded, schnorr_verify, tagged_hash, write_atomic, TransportSecret,
};
use btcmpc_engine::node::chain::ElectrumView;
use btcmpc_engine::node::job::STALE_RULE;
use btcmpc_engine::node::manifest::{verify_manifest, Manifest};
use btcmpc_engine::node::noise::StaticKeypair;
use btcmpc_engine::node::owner::StoreOptions;
use btcmpc_engine::node::paid::ServiceJob;
use btcmpc_engine::node::service::Service;
use btcmpc_engine::node::settle::{report_notice, settle_job, wait_and_open, JobBook};
use serde_json::{json, Value};

use crate::args::parse_fee;
use crate::cmd::wallet::{connect, open, open_synced};
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
        /// The dataset card (a file), or the name of a dataset whose card this service used
        /// before.
        card: PathBuf,
        /// CSV columns the query would use (default: every column).
        #[arg(long, value_delimiter = ',', value_name = "a,b")]
        columns: Vec<String>,
        /// The query's multiplicative degree (1: sum, count, mean; 2: var, cov).
        #[arg(long, value_name = "D", default_value_t = 1)]
        degree: u8,
    },
    /// Pay the committee to run a query on a dataset (its card from `owner export`): quotes,
    /// output masks, computation, escrow funding, claims; prints the result, who was paid,
    /// who was blamed and the refunds still pending.
    Query {
        /// The dataset card (a file), or the name of a dataset whose card this service used
        /// before (kept in DATADIR/cards/NAME.json).
        card: PathBuf,
        /// The query, e.g. 'sum(income), mean(age)'.
        query: String,
        /// The fee offered to each party (at least 1 sat).
        #[arg(long, value_name = "AMOUNT", value_parser = parse_fee)]
        fee: bitcoin::Amount,
        /// The escrow refund height T: absolute, or `+N` blocks from the tip.
        #[arg(long, value_name = "HEIGHT", default_value = "+20", value_parser = crate::args::parse_height)]
        deadline: crate::args::HeightArg,
        /// Stop after the quotes and print the price.
        #[arg(long)]
        quote: bool,
        /// Seconds to wait for the parties' claims (the job stays open after: `service
        /// settle` finishes it).
        #[arg(long, value_name = "S", default_value_t = 120)]
        wait: u64,
        /// Fee rate of the escrow funding in sat/vB (default: the server's estimate).
        #[arg(long, value_name = "R", value_parser = crate::args::parse_fee_rate)]
        fee_rate: Option<bitcoin::FeeRate>,
        /// Seconds each party has for each exchange (the computation included).
        #[arg(long, value_name = "S", default_value_t = 120)]
        party_timeout: u64,
        /// On bitcoin (mainnet), run a query with products (var, cov, a*b) although version 1
        /// does not detect a wrong product contribution (PROTOCOL.md, "Trust").
        #[arg(long)]
        accept_v1_risks: bool,
    },
    /// The service daemon: every POLL seconds, settle every open job (as `service settle`)
    /// until interrupted.
    Run {
        /// Seconds between two rounds.
        #[arg(long, value_name = "S", default_value_t = 10)]
        poll: u64,
        /// Fee rate of the refunds in sat/vB (default: the server's estimate).
        #[arg(long, value_name = "R", value_parser = crate::args::parse_fee_rate)]
        fee_rate: Option<bitcoin::FeeRate>,
    },
    /// Print the paths of the evidence files of a job (one per party blamed).
    Evidence {
        /// The job id.
        job: String,
    },
    /// Finish open jobs (every one, or JOB): read the claims, open the result, send the
    /// evidence against every party blamed to its judges and broadcast the slash they sign,
    /// and refund every escrow output still unclaimed once the tip reaches T.
    Settle {
        /// A job id (default: every open job).
        job: Option<String>,
        /// Fee rate of the refunds in sat/vB (default: the server's estimate).
        #[arg(long, value_name = "R", value_parser = crate::args::parse_fee_rate)]
        fee_rate: Option<bitcoin::FeeRate>,
    },
}

/// The service's job records.
fn book(global: &Global) -> JobBook {
    JobBook::new(&global.datadir())
}

fn save_job(global: &Global, job: &ServiceJob) -> anyhow::Result<()> {
    Ok(book(global).save(job)?)
}

/// Progress lines of settlement, on stderr.
fn stderr_line(line: String) {
    eprintln!("{line}");
}

/// The service's key pair and client, from `service init`'s files.
fn load_service(global: &Global) -> anyhow::Result<Service> {
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
    let secret = TransportSecret::load(&global.datadir().join("service-transport.key"))?;
    Ok(Service::new(
        keypair,
        StaticKeypair::from_secret(&secret.secret_bytes())?,
    ))
}

/// Fractional digits of a result in the text report (values are stored to 2^-16, about
/// 1.5e-5; the JSON report keeps every digit).
const SHOWN_DIGITS: usize = 5;

/// How many times `service query` asks again, as a new job, after a run refused with
/// [`STALE_RULE`] (nothing computed, nothing paid).
const RUN_RETRIES: usize = 3;

/// The report of a job: result table, payments, blame, pending refunds.
fn job_report(global: &Global, job: &ServiceJob, manifest: &Manifest, name: &str) -> Report {
    let mut text = format!("job {} on dataset {name}\n", job.id_hex());
    let mut result = serde_json::Map::new();
    // The cells the leakage rule withheld (their value reads `withheld (fewer than N rows)`).
    let withheld: Vec<&str> = job
        .result
        .iter()
        .flatten()
        .filter(|v| v.withheld)
        .map(|v| v.name.as_str())
        .collect();
    match &job.result {
        Some(values) => {
            text.push_str("result:\n");
            let width = values.iter().map(|v| v.name.len()).max().unwrap_or(0);
            for v in values {
                text.push_str(&format!(
                    "  {:width$}  {}\n",
                    v.name,
                    crate::output::rounded_decimal(&v.value, SHOWN_DIGITS)
                ));
                result.insert(v.name.clone(), json!(v.value));
            }
            if values.iter().any(|v| {
                v.value
                    .split('.')
                    .nth(1)
                    .is_some_and(|f| f.len() > SHOWN_DIGITS)
            }) {
                text.push_str(&format!(
                    "  (shown to {SHOWN_DIGITS} decimals: values are stored to 1/65536; --json gives every digit)\n"
                ));
            }
        }
        None if job.funding.is_none() => {
            let why = if !job.refused.is_empty() {
                btcmpc_engine::node::paid::by_reason(&job.refused)
            } else if !job.silent.is_empty() {
                btcmpc_engine::node::paid::by_reason(&job.silent)
            } else if !job.deliveries.is_empty() {
                "computed, never funded: no party released its key".into()
            } else {
                "it was not run".into()
            };
            text.push_str(&format!(
                "result: none: the job stopped before it was paid, nothing was spent ({why})\n"
            ))
        }
        None => text.push_str("result: not opened yet (waiting for claims)\n"),
    }
    let mut paid = Vec::new();
    if let Some(f) = &job.funding {
        text.push_str(&format!("paid (escrow funding {}):\n", f.funding_txid));
        for o in &f.outputs {
            let claim = job.claims.iter().find(|c| c.party == o.party);
            let refund = job.refunds.iter().find(|r| r.0 == o.party);
            text.push_str(&format!(
                "  party {}: {} sat, {}\n",
                o.party,
                o.sats,
                match (claim, refund) {
                    (Some(c), _) => format!("claimed in {}", c.txid),
                    (None, Some(r)) => format!("refunded to us in {}", r.1),
                    (None, None) => "not claimed yet".to_string(),
                }
            ));
            paid.push(json!({"party": o.party, "escrow_txid": f.funding_txid,
                "claim_txid": claim.map(|c| c.txid.clone()), "sats": o.sats}));
        }
    }
    let blamed: Vec<Value> = job
        .blamed()
        .iter()
        .map(|p| {
            let path = book(global).evidence_path(&job.id_hex(), *p);
            json!({"party": p,
                   "rule": if job.equivocators().contains(p) { "equivocation" } else { "wrong-output-share" },
                   "evidence": path.exists().then(|| path.display().to_string())})
        })
        .collect();
    if job.blamed().is_empty() {
        text.push_str("blamed: none\n");
    }
    for p in &job.blamed() {
        let what = if job.equivocators().contains(p) {
            "signed two conflicting messages (equivocation)"
        } else {
            "delivered a wrong output share"
        };
        text.push_str(&format!(
            "blamed: party {p} {what} (evidence {})\n",
            book(global).evidence_path(&job.id_hex(), *p).display()
        ));
        match job.slashes.iter().find(|s| s.party == *p) {
            Some(s) => text.push_str(&format!(
                "  slashed: {} sat of its bond paid to us in {} (signed by judges {:?})\n",
                s.sats, s.txid, s.judges
            )),
            None => text.push_str(&format!(
                "  not slashed yet: {}\n",
                job.unslashed
                    .iter()
                    .find(|u| u.0 == *p)
                    .map_or("the evidence was not sent", |u| u.1.as_str())
            )),
        }
    }
    let slashed: Vec<Value> = job
        .slashes
        .iter()
        .map(|s| json!({"party": s.party, "txid": s.txid, "sats": s.sats, "judges": s.judges}))
        .collect();
    let pending: Vec<Value> = job
        .unclaimed()
        .iter()
        .map(|p| json!({"party": p, "height": job.request.timeout}))
        .collect();
    if !pending.is_empty() {
        text.push_str(&format!(
            "pending refunds: parties {:?} at height {} (`btcmpc service settle`)\n",
            job.unclaimed(),
            job.request.timeout
        ));
    }
    for (p, e) in &job.gate_dissent {
        text.push_str(&format!("named: party {p} {e} (not paid)\n"));
    }
    for (p, e) in job
        .silent
        .iter()
        .filter(|(p, _)| !job.gate_dissent.iter().any(|(q, _)| q == p))
    {
        text.push_str(&format!("  party {p} delivered nothing: {e}\n"));
    }
    let _ = manifest;
    Report::new(
        text.trim_end(),
        json!({"job": job.id_hex(),
               "result": if job.funding.is_none() && result.is_empty() { Value::Null } else { Value::Object(result) },
               "paid": paid,
               "withheld": withheld,
               "gate_dissent": job.gate_dissent.iter()
                   .map(|(p, e)| json!({"party": p, "why": e})).collect::<Vec<_>>(),
               "pending_refunds": pending, "blamed": blamed, "slashed": slashed}),
    )
}

/// Polls until every paid party claimed or `wait` passed; opens the result when the claims
/// allow it. Returns the time spent after the wait (opening, evidence to the judges).
/// FOR TESTS ON REGTEST ONLY: dies (abort, like `kill -9`) at the named step of `service
/// query` when `BTCMPC_TESTING_SERVICE_CRASH` names it (`requested`, `quoted`, `computed`,
/// `funded-unsaved`, `funded`, `notified`).
fn crash_point(global: &Global, step: &str) {
    if global.network.network() == bitcoin::Network::Regtest
        && std::env::var("BTCMPC_TESTING_SERVICE_CRASH").is_ok_and(|s| s == step)
    {
        eprintln!("testing: the service dies after step {step}");
        std::process::abort();
    }
}

/// `service settle [JOB]` (and one round of `service run`, which skips settled jobs): for each
/// job, recover a funding saved too late, tell unclaimed parties where their escrow output is,
/// read claims, open, send evidence to the judges, refund after T. A job that fails is
/// reported and the others still run.
fn settle(
    global: &Global,
    job: Option<String>,
    fee_rate: Option<bitcoin::FeeRate>,
    open_only: bool,
) -> anyhow::Result<Report> {
    let book = book(global);
    let explicit = job.is_some();
    let ids: Vec<String> = match job {
        Some(j) => {
            JobBook::check_id(&j)?;
            vec![j]
        }
        None => book.ids()?,
    };
    let mut text = String::new();
    let mut rows = Vec::new();
    if ids.is_empty() {
        return Ok(Report::new("no open jobs", json!({"jobs": rows})));
    }
    let service = load_service(global)?;
    let (mut wallet, chain) = open_synced(global)?;
    let fee_choice = crate::cmd::party::fee_rate(fee_rate, &chain)?;
    let rt = runtime()?;
    for id in ids {
        /// A job's report and the refunds broadcast now, or `None` for a settled job.
        type Settled = Option<(Report, Vec<(u32, String)>)>;
        let one = (|| -> anyhow::Result<Settled> {
            let Some(done) = rt.block_on(settle_job(
                &book,
                &service,
                &mut wallet,
                &chain,
                fee_choice,
                &id,
                open_only,
                &mut stderr_line,
            ))?
            else {
                return Ok(None);
            };
            let job = &done.job;
            Ok(Some((
                job_report(
                    global,
                    job,
                    &done.manifest,
                    &format!(
                        "id {}",
                        &job.request.dataset_id[..16.min(job.request.dataset_id.len())]
                    ),
                ),
                done.refunds,
            )))
        })();
        match one {
            Ok(Some((r, refunds))) => {
                text.push_str(&r.text);
                text.push('\n');
                rows.push(json!({"job": id, "report": r.json, "refunds": refunds}));
            }
            Ok(None) => {}
            Err(e) if explicit => return Err(e.context(format!("job {id}"))),
            Err(e) => {
                let e = crate::output::one_line(&e);
                text.push_str(&format!("job {id}: {e}\n"));
                rows.push(json!({"job": id, "error": e}));
            }
        }
    }
    if rows.is_empty() && text.is_empty() {
        text = "no open jobs".into();
    }
    Ok(Report::new(text.trim_end(), json!({"jobs": rows})))
}

/// Wall time of each step of `service query`, milliseconds, in order.
struct Timings {
    begin: std::time::Instant,
    last: std::time::Instant,
    laps: Vec<(&'static str, u128)>,
}

impl Timings {
    fn start() -> Self {
        let now = std::time::Instant::now();
        Timings {
            begin: now,
            last: now,
            laps: Vec::new(),
        }
    }

    /// Ends step `name` now.
    fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.laps.push((name, (now - self.last).as_millis()));
        self.last = now;
    }

    /// Ends two steps now, the second of which took `second`.
    fn split(&mut self, first: &'static str, second: &'static str, took: std::time::Duration) {
        let now = std::time::Instant::now();
        let all = now - self.last;
        self.laps
            .push((first, all.saturating_sub(took).as_millis()));
        self.laps.push((second, took.min(all).as_millis()));
        self.last = now;
    }

    /// The report with a `timings` object (and a line of text) added.
    fn add_to(&self, mut report: Report) -> Report {
        let total = self.begin.elapsed().as_millis();
        let mut map = serde_json::Map::new();
        let mut line = String::from("timings (ms):");
        for (name, ms) in self.laps.iter().chain([&("total", total)]) {
            map.insert((*name).to_string(), json!(ms));
            line.push_str(&format!(" {name} {ms},"));
        }
        report.text = format!("{}\n{}", report.text, line.trim_end_matches(','));
        if let Some(obj) = report.json.as_object_mut() {
            obj.insert("timings".into(), Value::Object(map));
        }
        report
    }
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

/// A dataset card by path, or by the name of a dataset whose card this service loaded before
/// (`DATADIR/cards/NAME.json`). A card loaded from a file is kept there under its name.
fn resolve_card(global: &Global, arg: &Path) -> anyhow::Result<(Value, Manifest)> {
    let dir = global.datadir().join("cards");
    let named = arg
        .to_str()
        .filter(|n| !arg.exists() && wire_name_ok(n))
        .map(|n| dir.join(format!("{n}.json")));
    let path = match named {
        Some(p) if p.exists() => p,
        Some(_) => bail!(
            "{} is neither a dataset card file nor the name of a dataset this service has used (its card goes in {})",
            arg.display(),
            dir.display()
        ),
        None => arg.to_path_buf(),
    };
    let (card, manifest) = load_card(&path)?;
    if let Some(name) = card["name"].as_str().filter(|n| wire_name_ok(n)) {
        let keep = dir.join(format!("{name}.json"));
        if keep != path {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            // The file as it was read (the card as returned has its signature taken out).
            write_atomic(&keep, read_bounded(&path)?.as_bytes(), 0o644)?;
        }
    }
    Ok((card, manifest))
}

/// A dataset name as the store accepts it (so it is a safe file name).
fn wire_name_ok(name: &str) -> bool {
    btcmpc_engine::node::wire::check_name(name).is_ok()
}

/// Run `btcmpc service`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<Report> {
    match args.cmd {
        Cmd::Query {
            card,
            query,
            fee,
            deadline,
            quote,
            wait,
            fee_rate,
            party_timeout,
            accept_v1_risks,
        } => {
            // Every argument is checked before any party is asked to work (the fee rate by
            // its parser).
            let (card, manifest) = resolve_card(global, &card)?;
            if global.network.network() == bitcoin::Network::Bitcoin && !accept_v1_risks {
                let schema: btcmpc_engine::mpc::csv::Schema =
                    serde_json::from_value(card["schema"].clone())
                        .context("dataset card: bad schema")?;
                let field = card["field"].as_str().unwrap_or_default();
                if btcmpc_engine::node::paid::query_uses_products(field, &schema, &query)
                    .map_err(anyhow::Error::msg)?
                {
                    bail!(
                        "the query multiplies secret values: on bitcoin this needs --accept-v1-risks (version 1 does not detect a party adding an error to a product; sums, counts and means are protected)"
                    );
                }
            }
            let service = load_service(global)?;
            let chain = connect(global)?;
            if let Err(e) = verify_manifest(&manifest, &ElectrumView::new(&chain))?.ok() {
                bail!("the dataset's committee is refused: {e}");
            }
            let timeout =
                crate::cmd::party::resolve_height("--deadline", deadline, &chain)?.to_u32();
            let schema: btcmpc_engine::mpc::csv::Schema =
                serde_json::from_value(card["schema"].clone())
                    .context("dataset card: bad schema")?;
            let name = card["name"].as_str().unwrap_or_default().to_string();
            // Nothing is asked of the parties for a job this wallet cannot pay: each escrow
            // output is the fee plus a claim fee (known from the quotes, checked again there).
            let mut wallet = open(global)?;
            wallet.sync(&chain)?;
            let (confirmed, unconfirmed) = wallet.balance();
            let have = confirmed + unconfirmed;
            let n = manifest.roster.n() as u64;
            let need = fee
                .checked_mul(n)
                .context("the fee times the committee size overflows")?;
            if have < need {
                bail!(
                    "this wallet holds {} sat; the job needs at least {n} x {} sat = {} sat plus the claim and funding fees",
                    have.to_sat(),
                    fee.to_sat(),
                    need.to_sat()
                );
            }
            // Where a penalty from this job is paid: a fresh address of this wallet.
            let payout = wallet.next_address()?.to_string();
            drop(wallet);
            let new_job = || {
                ServiceJob::new(
                    &service,
                    &manifest,
                    card["dataset_id"].as_str().unwrap_or_default(),
                    card["field"].as_str().unwrap_or_default(),
                    schema.clone(),
                    &query,
                    fee.to_sat(),
                    timeout,
                    global.network.network(),
                    &payout,
                )
                .map_err(anyhow::Error::msg)
            };
            let mut job = new_job()?;
            if let Some(values) = job.public_result().map_err(anyhow::Error::msg)? {
                let mut text = String::from(
                    "public answer (from the dataset card; no party computes, nothing is paid):\n",
                );
                let mut result = serde_json::Map::new();
                for v in values {
                    text.push_str(&format!("  {}  {}\n", v.name, v.value));
                    result.insert(v.name, json!(v.value));
                }
                return Ok(Report::new(
                    text.trim_end(),
                    json!({"job": Value::Null, "result": result, "paid": [],
                           "pending_refunds": [], "blamed": [], "slashed": []}),
                ));
            }
            save_job(global, &job)?;
            crash_point(global, "requested");
            let rt = runtime()?;
            let each = std::time::Duration::from_secs(party_timeout.clamp(1, 3600));
            let mut timings = Timings::start();
            // A run refused because another query of this service on this dataset started
            // first at some parties (two queries at once, seen in another order by different
            // parties) computed and cost nothing: the job is asked for again as a new one, after
            // a random pause, at most RUN_RETRIES times.
            let mut retries = 0;
            loop {
                let quoted = rt.block_on(job.quote(&service, &manifest, Default::default(), each));
                save_job(global, &job)?;
                quoted.map_err(|e| anyhow::anyhow!("the committee refused the job: {e}"))?;
                crash_point(global, "quoted");
                timings.lap("quote");
                if quote {
                    // A price check: the quotes are withdrawn at once, so no party holds a place
                    // among its open jobs for a job that will never run.
                    let cancelled =
                        rt.block_on(job.cancel(&service, &manifest, Default::default(), each));
                    let n = job.quotes.len() as u64;
                    let claim_fees: u64 = job.quotes.iter().map(|q| q.claim_fee_sat).sum();
                    let withdrawn = match &cancelled {
                        Ok(()) => {
                            "quotes withdrawn; run without --quote to pay and compute".to_string()
                        }
                        Err(e) => format!(
                            "could not withdraw every quote ({e}); they lapse at height {timeout}"
                        ),
                    };
                    return Ok(Report::new(
                    format!(
                        "job {}: {n} parties quote {} sat each ({} sat in all, plus {claim_fees} sat of claim fees in the escrow outputs), escrow refund height {timeout}\n{withdrawn}",
                        job.id_hex(),
                        fee.to_sat(),
                        n * fee.to_sat()
                    ),
                    json!({"job": job.id_hex(), "quotes": job.quotes, "total_sat": n * fee.to_sat(),
                           "claim_fees_sat": claim_fees, "timeout": timeout,
                           "withdrawn": cancelled.is_ok()}),
                ));
                }
                let mut options = StoreOptions::new(&format!("job-{}", &job.id_hex()[..16]));
                options.party_timeout = each;
                let dealt = rt.block_on(job.deal_masks(&service, &manifest, &options));
                save_job(global, &job)?;
                dealt.map_err(|e| anyhow::anyhow!("the job did not compute: {e}"))?;
                timings.lap("masks");
                let computed = rt.block_on(job.run(&service, &manifest, &options, each));
                save_job(global, &job)?;
                match computed {
                    Err(e) if retries < RUN_RETRIES && e.contains(STALE_RULE) => {
                        retries += 1;
                        // The job id is random (the request's nonce): its first bits are the jitter.
                        let pause =
                            250 + u64::from_str_radix(&job.id_hex()[..8], 16).unwrap_or(0) % 1_000;
                        eprintln!(
                        "job {}: a party refused the run ({STALE_RULE}: another query started first); asking again as a new job in {pause} ms",
                        job.id_hex()
                    );
                        // Withdrawn where it is still only quoted (it holds a place there).
                        let _ =
                            rt.block_on(job.cancel(&service, &manifest, Default::default(), each));
                        std::thread::sleep(std::time::Duration::from_millis(pause));
                        job = new_job()?;
                        save_job(global, &job)?;
                    }
                    r => {
                        r.map_err(|e| anyhow::anyhow!("the job did not compute: {e}"))?;
                        break;
                    }
                }
            }
            crash_point(global, "computed");
            timings.lap("compute");
            let mut wallet = open(global)?;
            wallet.sync(&chain)?;
            let fee_choice = crate::cmd::party::fee_rate(fee_rate, &chain)?;
            // FOR TESTS ON REGTEST ONLY: pay only the parties BTCMPC_TESTING_SERVICE_PAY_ONLY
            // names (a cheating service; every party must refuse a delivery set under 2t + 1).
            if let Some(only) = std::env::var("BTCMPC_TESTING_SERVICE_PAY_ONLY")
                .ok()
                .filter(|_| global.network.network() == bitcoin::Network::Regtest)
            {
                let only: Vec<u32> = only.split(',').filter_map(|p| p.parse().ok()).collect();
                job.deliveries.retain(|d| only.contains(&d.party));
            }
            // FOR TESTS ON REGTEST ONLY: pay party BTCMPC_TESTING_SERVICE_UNDERPAY one sat less
            // than it quoted (it must refuse to claim, and say why).
            let short: Option<u32> = std::env::var("BTCMPC_TESTING_SERVICE_UNDERPAY")
                .ok()
                .filter(|_| global.network.network() == bitcoin::Network::Regtest)
                .and_then(|p| p.parse().ok());
            job.fund_with_values(&manifest, &mut wallet, &chain, fee_choice, |p, q| {
                q.escrow_sat() - u64::from(short == Some(p))
            })
            .map_err(|e| anyhow::anyhow!("funding the escrow outputs: {e}"))?;
            crash_point(global, "funded-unsaved");
            save_job(global, &job)?;
            crash_point(global, "funded");
            report_notice(
                rt.block_on(job.notify(&service, &manifest, Default::default(), each)),
                &mut stderr_line,
            );
            crash_point(global, "notified");
            timings.lap("fund");
            let opening = rt.block_on(wait_and_open(
                &book(global),
                &service,
                &mut wallet,
                &mut job,
                &manifest,
                &chain,
                std::time::Duration::from_secs(wait),
                &mut stderr_line,
            ))?;
            timings.split("wait_confirmation_and_claims", "open", opening);
            Ok(timings.add_to(job_report(global, &job, &manifest, &name)))
        }
        Cmd::Evidence { job } => {
            let record = book(global).load(&job)?;
            let paths: Vec<String> = record
                .blamed()
                .iter()
                .map(|p| book(global).evidence_path(&job, *p))
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect();
            if paths.is_empty() {
                return Ok(Report::new(
                    format!("job {job}: no evidence (nobody was blamed, or the claims needed are missing)"),
                    json!({"job": job, "evidence": paths}),
                ));
            }
            Ok(Report::new(
                paths.join("\n"),
                json!({"job": job, "evidence": paths}),
            ))
        }
        Cmd::Settle { job, fee_rate } => {
            // Every open job, or the one named (settled or not: its report again).
            let open_only = job.is_none();
            settle(global, job, fee_rate, open_only)
        }
        Cmd::Run { poll, fee_rate } => {
            let poll = std::time::Duration::from_secs(poll.clamp(1, 3600));
            eprintln!(
                "service daemon: settling every open job every {}s (Ctrl-C stops it; every step is saved)",
                poll.as_secs()
            );
            loop {
                match settle(global, None, fee_rate, true) {
                    Ok(r) if r.text != "no open jobs" => println!("{}", r.text),
                    Ok(_) => {}
                    Err(e) => eprintln!("settling: {}", crate::output::one_line(&e)),
                }
                std::thread::sleep(poll);
            }
        }
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
            let (card, manifest) = resolve_card(global, &card)?;
            let service = load_service(global)?;
            let key = service.key();
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
            let request = service.access_request(
                card["dataset_id"].as_str().unwrap_or_default(),
                &columns,
                degree,
            );
            let rt = runtime()?;
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
