//! `btcmpc network roster|manifest|verify`: collect party cards into a roster, the signed
//! roster and the bonds into a manifest, and check a manifest's bonds on chain.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use btcmpc_engine::node::card::{write_atomic, PartyCard};
use btcmpc_engine::node::chain::ElectrumView;
use btcmpc_engine::node::manifest::{verify_manifest, Manifest};
use btcmpc_engine::node::roster::{Roster, RosterParams};
use serde_json::json;

use crate::args::parse_amount;
use crate::cmd::wallet::connect;
use crate::{global::Global, output::Report};

/// Arguments of `btcmpc network`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Collect cards (in party order) into an unsigned roster.
    Roster {
        /// Threshold: any T parties together learn nothing (n >= 3T+1 unless --unbonded).
        #[arg(long = "t", value_name = "T")]
        t: usize,
        /// Smallest bond a party must post (`100000sat`).
        #[arg(long, value_name = "AMOUNT", value_parser = parse_amount)]
        min_bond: bitcoin::Amount,
        /// Blocks after a job's deadline during which evidence can be brought.
        #[arg(long, value_name = "N", default_value_t = 144)]
        dispute_window: u32,
        /// Penalty = this x the party's fee.
        #[arg(long, value_name = "M", default_value_t = 10)]
        penalty_multiplier: u32,
        /// Fee rate of the canonical slash, sat/vB.
        #[arg(long, value_name = "R", default_value_t = 2)]
        slash_fee_rate: u64,
        /// The longest job deadline the committee accepts, in blocks.
        #[arg(long, value_name = "N", default_value_t = 144)]
        deadline_horizon: u32,
        /// An unbonded test network (n = 2t+1 allowed; nothing can be slashed).
        #[arg(long)]
        unbonded: bool,
        /// The party cards, party 1 first.
        #[arg(required = true, value_name = "CARD")]
        cards: Vec<PathBuf>,
        /// Write here instead of stdout.
        #[arg(long, value_name = "F")]
        out: Option<PathBuf>,
    },
    /// The fully signed roster plus each party's bond outpoint, taken from its card.
    Manifest {
        /// The roster signed by every party.
        #[arg(long, value_name = "F")]
        roster: PathBuf,
        /// The party cards (with their bonds), any order.
        #[arg(value_name = "CARD")]
        cards: Vec<PathBuf>,
        /// Write here instead of stdout.
        #[arg(long, value_name = "F")]
        out: Option<PathBuf>,
    },
    /// Check every signature and every bond of a manifest on chain and print a table.
    Verify {
        /// The manifest.
        manifest: PathBuf,
    },
}

fn emit(text: String, out: Option<&Path>, what: &str) -> anyhow::Result<Report> {
    match out {
        Some(p) => {
            write_atomic(p, text.as_bytes(), 0o644)?;
            Ok(Report::new(
                format!("{what} written to {}", p.display()),
                json!({"file": p.display().to_string()}),
            ))
        }
        None => {
            let v: serde_json::Value = serde_json::from_str(&text).expect("we just serialized it");
            Ok(Report::new(text, v))
        }
    }
}

fn load_cards(paths: &[PathBuf]) -> anyhow::Result<Vec<PartyCard>> {
    paths
        .iter()
        .map(|p| PartyCard::load(p).with_context(|| format!("card {}", p.display())))
        .collect()
}

/// Run `btcmpc network`.
/// The manifest at `path`, or `DATADIR/manifest.json`; a missing file says which option to pass.
pub fn load_manifest(
    global: &Global,
    path: Option<PathBuf>,
) -> anyhow::Result<(PathBuf, Manifest)> {
    let path = path.unwrap_or_else(|| global.datadir().join("manifest.json"));
    if !path.exists() {
        anyhow::bail!(
            "no manifest at {}: pass --manifest F (the committee's `network manifest` file)",
            path.display()
        );
    }
    let m = Manifest::load(&path)?;
    Ok((path, m))
}

pub fn run(args: Args, global: &Global) -> anyhow::Result<Report> {
    match args.cmd {
        Cmd::Roster {
            t,
            min_bond,
            dispute_window,
            penalty_multiplier,
            slash_fee_rate,
            deadline_horizon,
            unbonded,
            cards,
            out,
        } => {
            let params = RosterParams {
                t,
                min_bond_sat: min_bond.to_sat(),
                penalty_multiplier,
                dispute_window,
                slash_fee_rate,
                deadline_horizon,
                unbonded,
            };
            let roster = Roster::new(global.network.network(), params, load_cards(&cards)?)?;
            emit(roster.to_json(), out.as_deref(), "roster")
        }
        Cmd::Manifest { roster, cards, out } => {
            let roster = Roster::load(&roster)?;
            let manifest = Manifest::new(roster, &load_cards(&cards)?)?;
            emit(manifest.to_json(), out.as_deref(), "manifest")
        }
        Cmd::Verify { manifest } => {
            let m = Manifest::load(&manifest)?;
            let chain = connect(global)?;
            let report = verify_manifest(&m, &ElectrumView::new(&chain))?;
            let mut text = format!(
                "manifest {}: n = {}, t = {}, tip {}\nparty  bond                                                                 sats  confs  exit    status\n",
                manifest.display(),
                m.roster.n(),
                m.roster.params.t,
                report.tip
            );
            for r in &report.rows {
                text.push_str(&format!(
                    "{:<5}  {:<68} {:>10}  {:>5}  {:<6}  {}\n",
                    r.party,
                    r.bond.outpoint.to_string(),
                    r.value_sat.map_or("-".into(), |v| v.to_string()),
                    r.confirmations.map_or("-".into(), |v| v.to_string()),
                    r.bond.exit,
                    match (&r.status, &r.live) {
                        (Ok(()), None) => "ok".to_string(),
                        (Ok(()), Some(l)) => format!("ok (slashed; the rest is at {l})"),
                        (Err(e), _) => e.to_string(),
                    }
                ));
            }
            if m.roster.params.unbonded {
                text.push_str("unbonded test network: no bonds to check\n");
            }
            let mut v = report.to_value();
            v["roster_id"] = json!(hex::encode(m.roster.id()));
            match report.first_failure() {
                None => Ok(Report::new(text, v)),
                Some(e) => {
                    // The table first (stdout), then the one-line refusal.
                    crate::output::Report::new(text, v).print(global.json);
                    Err(anyhow::anyhow!("manifest refused: {e}"))
                }
            }
        }
    }
}
