//! `btcmpc party init|sign-roster|bond|run|status|withdraw`: a compute party's keys, card,
//! roster signature, bond, and its daemon.
//!
//! Files in the datadir: `card.json` (the signed card, with the bond once funded),
//! `transport.key` (the X25519 secret, mode 0600), `bond.json` (the bond's contract file, for
//! `party withdraw`), `manifest.json` (the committee, for `party run`), `party.sqlite` (the
//! daemon's store).

use crate::cmd::runtime;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use btcmpc_contracts::ContractFile;
use btcmpc_engine::node::acl_ops::fund_bond;
use btcmpc_engine::node::card::{write_atomic, BondRef, PartyCard, TransportSecret};
use btcmpc_engine::node::roster::Roster;
use btcmpc_wallet::ChainClient;
use serde_json::json;

use crate::args::{parse_amount, parse_fee_rate, HeightArg};
use crate::cmd::wallet::{open, open_synced};
use crate::{global::Global, output::Report};
use btcmpc_wallet::FeeChoice;

/// Arguments of `btcmpc party`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

impl Args {
    /// Whether this runs the long-lived daemon (`party run`).
    pub fn is_daemon(&self) -> bool {
        matches!(self.cmd, Cmd::Run { .. })
    }
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Create the party key (a contract key of this wallet) and the transport key, and write
    /// the signed card to DATADIR/card.json.
    Init {
        /// Where peers and clients reach this party.
        #[arg(long, value_name = "HOST:PORT")]
        endpoint: String,
        /// Fee per job (`1000sat`).
        #[arg(long, value_name = "AMOUNT", default_value = "1000sat", value_parser = parse_amount)]
        fee: bitcoin::Amount,
        /// Jobs taken on at once.
        #[arg(long, value_name = "N", default_value_t = 4)]
        max_open_jobs: u32,
    },
    /// Add this party's signature to a roster file (in place).
    SignRoster {
        /// The roster file.
        roster: PathBuf,
    },
    /// Fund this party's bond against a roster signed by every party, and record the outpoint
    /// in the card.
    Bond {
        /// The bond amount (`100000sat`), at least the roster's minimum.
        #[arg(value_parser = parse_amount)]
        amount: bitcoin::Amount,
        /// Exit height: absolute, or `+N` blocks from the tip.
        #[arg(long, value_name = "HEIGHT", value_parser = crate::args::parse_height)]
        exit: HeightArg,
        /// The fully signed roster.
        #[arg(long, value_name = "F")]
        roster: PathBuf,
        /// Fee rate in sat/vB (default: the server's estimate, at least 1 sat/vB).
        #[arg(long, value_name = "R", value_parser = parse_fee_rate)]
        fee_rate: Option<bitcoin::FeeRate>,
    },
    /// Run the party daemon: serve owners and the other parties until interrupted.
    Run {
        /// The committee's manifest (default: DATADIR/manifest.json).
        #[arg(long, value_name = "F")]
        manifest: Option<PathBuf>,
        /// Listen here instead of the card's endpoint.
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// Seconds a protocol round waits for the slowest party.
        #[arg(long, value_name = "S", default_value_t = 30)]
        round_timeout: u64,
        /// Most values (rows x shared columns) one store may hand this party.
        #[arg(long, value_name = "N", default_value_t = btcmpc_engine::node::party::DEFAULT_MAX_STORE_VALUES)]
        max_store_values: u64,
        /// FOR TESTING ONLY, regtest only: misbehave in one named way (withhold,
        /// wrong-opening, equivocate, bad-receipt, wrong-output-share, wrong-product,
        /// drop-to:K, crash-before:STEP, crash-after:STEP with STEP receipt, check-send or
        /// commit).
        #[arg(
            long,
            value_name = "FAULT",
            env = "BTCMPC_TESTING_FAULT",
            hide_env_values = true
        )]
        testing_fault: Option<String>,
        /// Seconds between two readings of the datasets' ACLs and the bond from the chain (a
        /// job request or access question always waits for a reading begun after it came).
        #[arg(long, value_name = "S", default_value_t = 10)]
        acl_poll: u64,
        /// Confirmations a GRANT needs before it counts.
        #[arg(long, value_name = "N", default_value_t = btcmpc_engine::node::acl::DEFAULT_ACL_MIN_CONF)]
        acl_min_conf: u32,
        /// Datasets with fewer rows are never queried.
        #[arg(long, value_name = "N", default_value_t = btcmpc_engine::node::access::DEFAULT_MIN_ROWS)]
        min_rows: u64,
        /// The smallest fee this party quotes a job for (default: the card's fee).
        #[arg(long, value_name = "AMOUNT", value_parser = crate::args::parse_amount)]
        min_fee: Option<bitcoin::Amount>,
        /// Most jobs open at once (default: the card's `max_open_jobs`).
        #[arg(long, value_name = "N")]
        max_open_jobs: Option<usize>,
        /// The fee rate (sat/vB, 1 to 100) this party assumes for its claims: each quote asks
        /// for the claim's fee at this rate on top of the fee, so the fee is paid net.
        #[arg(long, value_name = "R", default_value_t = btcmpc_engine::node::party::DEFAULT_CLAIM_FEE_RATE)]
        claim_fee_rate: u64,
    },
    /// Ask the running daemon of this datadir for its peers, datasets, open jobs and bond.
    Status,
    /// List every job this party recorded (read from its store; the daemon may be running):
    /// state, fee, deadline, funding and claim.
    Jobs,
    /// Judge an evidence file against this party's own manifest and chain view and, when it
    /// convicts, sign the canonical slash of the accused's bond (the daemon does the same for
    /// evidence a service sends it).
    Judge {
        /// The evidence file (`service evidence JOB` prints its path).
        evidence: PathBuf,
        /// The committee's manifest (default: DATADIR/manifest.json).
        #[arg(long, value_name = "F")]
        manifest: Option<PathBuf>,
        /// A slash PSBT other judges signed, as the carrier file `party judge` and `contract
        /// slash`/`sign-psbt` write (version 1; a bare base64 PSBT is refused): checked to be
        /// the canonical slash, then signed too.
        #[arg(long, value_name = "F")]
        psbt: Option<PathBuf>,
        /// Where to write the signed PSBT carrier (default:
        /// DATADIR/evidence/slash-JOB-partyI.psbt).
        #[arg(long, value_name = "F")]
        out: Option<PathBuf>,
        /// Broadcast the slash once it carries k signatures.
        #[arg(long)]
        broadcast: bool,
    },
    /// Take the bond back to this wallet once the exit height is reached.
    Withdraw {
        /// Fee rate in sat/vB (default: the server's estimate, at least 1 sat/vB).
        #[arg(long, value_name = "R", value_parser = parse_fee_rate)]
        fee_rate: Option<bitcoin::FeeRate>,
    },
}

fn card_path(global: &Global) -> PathBuf {
    global.datadir().join("card.json")
}

fn load_card(global: &Global) -> anyhow::Result<PartyCard> {
    let p = card_path(global);
    if !p.exists() {
        bail!(
            "no party card in {} (run `btcmpc party init` first)",
            p.display()
        );
    }
    Ok(PartyCard::load(&p)?)
}

/// The rate given (paid as given), or the server's estimate, which the wallet's fee policy
/// bounds when the transaction is built.
pub fn fee_rate(
    explicit: Option<bitcoin::FeeRate>,
    chain: &ChainClient,
) -> anyhow::Result<FeeChoice> {
    Ok(chain.fee_choice(explicit, btcmpc_wallet::CONTRACT_TARGET)?)
}

/// A height argument as an absolute height: as given, or `+N` from the chain's tip (asked of
/// the server only then).
///
/// # Errors
/// The server's error, or `tip + N` out of the block height range (naming `flag`).
pub fn resolve_height(
    flag: &str,
    arg: HeightArg,
    chain: &ChainClient,
) -> anyhow::Result<btcmpc_contracts::Height> {
    let tip = match arg {
        HeightArg::Absolute(h) => return Ok(h),
        HeightArg::AfterTip(_) => chain.tip()?.0,
    };
    arg.resolve(flag, tip)
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    Ok(write_atomic(path, text.as_bytes(), 0o644)?)
}

/// Run `btcmpc party`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<Report> {
    match args.cmd {
        Cmd::Init {
            endpoint,
            fee,
            max_open_jobs,
        } => {
            let dir = global.datadir();
            let card_file = card_path(global);
            if card_file.exists() {
                bail!(
                    "{} already exists: this datadir is a party already",
                    card_file.display()
                );
            }
            let mut wallet = open(global)?;
            let key_file = dir.join("transport.key");
            let transport = if key_file.exists() {
                TransportSecret::load(&key_file)?
            } else {
                let s = TransportSecret::generate();
                s.save_new(&key_file)?;
                s
            };
            let (index, party_key) = wallet.contract_key(None, "party key")?;
            let keypair = wallet
                .contract_keypair_for(&party_key)?
                .context("the wallet derives the key it just handed out")?;
            let card = PartyCard::new(
                global.network.network(),
                &keypair,
                transport.public(),
                &endpoint,
                fee.to_sat(),
                max_open_jobs,
            )?;
            write_file(&card_file, &card.to_json())?;
            Ok(Report::new(
                format!(
                    "party key {party_key} (contract key {index})\ntransport key {}\ncard {}",
                    hex::encode(card.transport_key),
                    card_file.display()
                ),
                json!({
                    "party_key": party_key.to_string(),
                    "transport_key": hex::encode(card.transport_key),
                    "card": card_file.display().to_string(),
                }),
            ))
        }
        Cmd::SignRoster { roster: path } => {
            let card = load_card(global)?;
            let mut roster = Roster::load(&path)?;
            let wallet = open(global)?;
            let keypair = wallet
                .contract_keypair_for(&card.party_key)?
                .context("this wallet does not hold the card's party key")?;
            let index = roster.sign(&keypair)?;
            write_file(&path, &roster.to_json())?;
            let missing = roster.verify_partial()?;
            Ok(Report::new(
                format!(
                    "signed as party {index}; {} of {} signatures{}",
                    roster.n() - missing.len(),
                    roster.n(),
                    if missing.is_empty() {
                        String::new()
                    } else {
                        format!(" (missing: {missing:?})")
                    }
                ),
                json!({"party": index, "roster_id": hex::encode(roster.id()), "missing": missing}),
            ))
        }
        Cmd::Bond {
            amount,
            exit,
            roster: path,
            fee_rate: rate,
        } => {
            let mut card = load_card(global)?;
            if let Some(b) = card.bond {
                bail!(
                    "the card already records bond {} (exit {}); a new committee needs a new datadir",
                    b.outpoint,
                    b.exit
                );
            }
            let roster = Roster::load(&path)?;
            roster.verify()?;
            let index = roster
                .index_of(&card.party_key)
                .context("this party's key is not in the roster")?;
            let (mut wallet, chain) = open_synced(global)?;
            let exit = resolve_height("--exit", exit, &chain)?.to_u32();
            let rate = fee_rate(rate, &chain)?;
            let (outpoint, file) =
                fund_bond(&mut wallet, &chain, &roster, index, amount, exit, rate)?;
            write_file(&global.datadir().join("bond.json"), &file.to_json())?;
            card.bond = Some(BondRef { outpoint, exit });
            write_file(&card_path(global), &card.to_json())?;
            Ok(Report::new(
                format!(
                    "party {index} bond {outpoint}: {} sat, exit height {exit}",
                    amount.to_sat()
                ),
                json!({"party": index, "txid": outpoint.txid.to_string(), "vout": outpoint.vout,
                       "exit": exit, "amount_sat": amount.to_sat()}),
            ))
        }
        Cmd::Run {
            manifest,
            listen,
            round_timeout,
            max_store_values,
            testing_fault,
            acl_poll,
            acl_min_conf,
            min_rows,
            min_fee,
            max_open_jobs,
            claim_fee_rate,
        } => run_daemon(
            global,
            manifest,
            listen,
            round_timeout,
            max_store_values,
            testing_fault.filter(|f| !f.is_empty()),
            (acl_poll, acl_min_conf, min_rows),
            (min_fee.map(|f| f.to_sat()), max_open_jobs, claim_fee_rate),
        ),
        Cmd::Status => status(global),
        Cmd::Jobs => {
            let path = global.datadir().join("party.sqlite");
            if !path.exists() {
                bail!(
                    "no party store in {} (run `btcmpc party run` first)",
                    global.datadir().display()
                );
            }
            let jobs = btcmpc_engine::node::party::job_summaries(&path)?;
            let mut text = if jobs.is_empty() {
                "no jobs".to_string()
            } else {
                format!(
                    "{:<16}  {:<9}  {:>8}  {:>8}  claim\n",
                    "job", "state", "fee sat", "T"
                )
            };
            for j in &jobs {
                text.push_str(&format!(
                    "{:<16}  {:<9}  {:>8}  {:>8}  {}{}\n",
                    &j.job[..16],
                    j.state,
                    j.fee_sat,
                    j.timeout,
                    j.claim_txid.as_deref().unwrap_or("-"),
                    j.reason
                        .as_ref()
                        .map(|r| format!("  ({r})"))
                        .unwrap_or_default()
                ));
            }
            Ok(Report::new(text.trim_end(), json!({"jobs": jobs})))
        }
        Cmd::Judge {
            evidence,
            manifest,
            psbt,
            out,
            broadcast,
        } => judge(global, &evidence, manifest, psbt, out, broadcast),
        Cmd::Withdraw { fee_rate: rate } => {
            let p = global.datadir().join("bond.json");
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("no bond in this datadir ({})", p.display()))?;
            let file = ContractFile::from_json(&text)
                .with_context(|| format!("bond file {}", p.display()))?;
            let (mut wallet, chain) = open_synced(global)?;
            if let Some(b) = load_card(global).ok().and_then(|c| c.bond) {
                use btcmpc_engine::node::chain::ChainView;
                let tip = btcmpc_engine::node::chain::ElectrumView::new(&chain).tip()?;
                if tip < b.exit {
                    bail!(
                        "the bond can be withdrawn from height {} on; the tip is {tip}: {} blocks to go",
                        b.exit,
                        b.exit - tip
                    );
                }
            }
            let rate = fee_rate(rate, &chain)?;
            let txid = wallet.exit_bond(&chain, &file, rate)?;
            Ok(Report::new(
                format!("bond withdrawn: {txid}"),
                json!({"txid": txid.to_string()}),
            ))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_daemon(
    global: &Global,
    manifest: Option<PathBuf>,
    listen: Option<String>,
    round_timeout: u64,
    max_store_values: u64,
    fault: Option<String>,
    (acl_poll, acl_min_conf, min_rows): (u64, u32, u64),
    (min_fee_sat, max_open_jobs, claim_fee_rate): (Option<u64>, Option<usize>, u64),
) -> anyhow::Result<Report> {
    use btcmpc_engine::node::fault::Fault;
    use btcmpc_engine::node::noise::StaticKeypair;
    use btcmpc_engine::node::party::{Party, PartyConfig};

    let dir = global.datadir();
    let card = load_card(global)?;
    // The card advertises the fee and the open-jobs limit; the flags override them.
    let min_fee_sat = min_fee_sat.unwrap_or(card.fee_sat);
    let max_open_jobs = max_open_jobs.unwrap_or(card.max_open_jobs as usize).max(1);
    let (manifest_path, manifest) = crate::cmd::network::load_manifest(global, manifest)?;
    if manifest.roster.network != global.network.network() {
        bail!(
            "manifest {} is for {}, this party runs on {}",
            manifest_path.display(),
            manifest.roster.network,
            global.network.name()
        );
    }
    let fault = match fault {
        None => None,
        Some(f) => {
            let f: Fault = f.parse()?;
            if !Fault::allowed_on(global.network.network()) {
                bail!("--testing-fault {f} is refused on {}: faults are for regtest tests and demos only", global.network.name());
            }
            Some(f)
        }
    };
    // One daemon per datadir: a second one would share the identity and the store.
    let lock_path = dir.join("party.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        bail!(
            "a party daemon already runs on this datadir ({} is locked)",
            lock_path.display()
        );
    }
    let wallet = open(global)?;
    let party_key = wallet
        .contract_keypair_for(&card.party_key)?
        .context("this wallet does not hold the card's party key")?;
    // The daemon's claimer opens the wallet itself.
    drop(wallet);
    let transport = TransportSecret::load(&dir.join("transport.key"))?;
    let transport = StaticKeypair::from_secret(&transport.secret_bytes())?;
    let listen = listen.unwrap_or_else(|| card.endpoint.clone());
    let listen: std::net::SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&listen)
        .with_context(|| format!("listen address {listen:?}"))?
        .next()
        .with_context(|| format!("listen address {listen:?} resolves to nothing"))?;
    let config = PartyConfig {
        manifest,
        party_key,
        transport,
        listen,
        store_path: dir.join("party.sqlite"),
        round_timeout: std::time::Duration::from_secs(round_timeout.clamp(1, 3600)),
        max_store_values,
        fault,
        idle_session: btcmpc_engine::node::party::IDLE_SESSION,
        channel: Default::default(),
        chain: Some(btcmpc_engine::node::party::ChainSource {
            url: global.electrum_url()?,
            network: global.network.network(),
            allow_plaintext: global.allow_plaintext_electrum,
            poll: std::time::Duration::from_secs(acl_poll.clamp(1, 3600)),
            acl_min_conf,
            min_rows,
        }),
        wallet: Some(crate::cmd::wallet::wallet_dir(global)),
        min_fee_sat,
        claim_fee_rate,
        max_open_jobs,
    };
    let rt = runtime()?;
    rt.block_on(async move {
        let party = Party::start(config).await?;
        eprintln!(
            "party daemon listening on {}{}",
            party.local_addr(),
            fault.map_or(String::new(), |f| format!(" (TESTING FAULT: {f})"))
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => { r.context("waiting for ctrl-c")?; }
            _ = term.recv() => {}
        }
        party.shutdown().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    drop(lock);
    Ok(Report::new(
        "party daemon stopped",
        json!({"stopped": true}),
    ))
}

fn status(global: &Global) -> anyhow::Result<Report> {
    use btcmpc_engine::node::noise::{StaticKeypair, TransportKey};
    let dir = global.datadir();
    let card = load_card(global)?;
    let transport = TransportSecret::load(&dir.join("transport.key"))?;
    let me = StaticKeypair::from_secret(&transport.secret_bytes())?;
    let rt = runtime()?;
    let s = rt
        .block_on(btcmpc_engine::node::owner::party_status(
            &card.endpoint,
            &me,
            TransportKey(card.transport_key),
            Default::default(),
        ))
        .map_err(anyhow::Error::msg)?;
    let mut text = format!(
        "party {} of {}, roster {}\npeers connected: {:?}\nbond: {}\n",
        s.party,
        s.n,
        &s.roster[..16],
        s.peers_connected,
        s.bond
            .as_ref()
            .map_or("none (unbonded)".into(), |(o, e)| format!("{o}, exit {e}"))
    );
    if let Some(b) = &s.bond_state {
        text.push_str(&format!("bond on chain: {b}\n"));
    }
    if !s.evidence.is_empty() {
        text.push_str(&format!(
            "equivocation evidence kept for: {}\n",
            s.evidence.join(", ")
        ));
    }
    if let Some(f) = &s.fault {
        text.push_str(&format!("TESTING FAULT: {f}\n"));
    }
    text.push_str(&format!(
        "open jobs: {} of at most {}\ndatasets:\n",
        s.jobs_counted, s.max_open_jobs
    ));
    for d in &s.datasets {
        text.push_str(&format!(
            "  {:<20} {:>9} rows {:>4} cols  {:<9} {}\n",
            d.name,
            d.rows,
            d.columns,
            d.state,
            d.dataset_id.as_deref().unwrap_or("-")
        ));
    }
    if s.datasets.iter().any(|d| d.state == "received") {
        text.push_str(&format!(
            "(received: shares taken, check not run; deleted {} minutes after the upload if the owner never runs it, at most {} kept)\n",
            btcmpc_engine::node::party::UNCHECKED_TTL_SECS / 60,
            btcmpc_engine::node::party::MAX_UNCHECKED
        ));
    }
    Ok(Report::new(text.trim_end(), serde_json::to_value(&s)?))
}

fn judge(
    global: &Global,
    evidence: &Path,
    manifest: Option<PathBuf>,
    psbt: Option<PathBuf>,
    out: Option<PathBuf>,
    broadcast: bool,
) -> anyhow::Result<Report> {
    use btcmpc_engine::node::card::read_bounded;
    use btcmpc_engine::node::judge::{self, JobEvidence, JudgeRequest};
    let dir = global.datadir();
    let manifest_path = manifest.unwrap_or_else(|| dir.join("manifest.json"));
    let manifest = btcmpc_engine::node::manifest::Manifest::load(&manifest_path)
        .with_context(|| format!("manifest {}", manifest_path.display()))?;
    let card = load_card(global)?;
    let me = manifest
        .roster
        .index_of(&card.party_key)
        .context("this party is not in the manifest's roster")? as u32;
    let ev = JobEvidence::from_json(&read_bounded(evidence)?)
        .with_context(|| format!("evidence {}", evidence.display()))?;
    // The carrier's text as it is: the judge decodes it (and names what is wrong with it).
    let psbt = match psbt {
        Some(p) => Some(read_bounded(&p)?),
        None => None,
    };
    let (mut wallet, chain) = open_synced(global)?;
    let mut store = btcmpc_engine::node::store::Store::open(&dir.join("party.sqlite"))?;
    let req = JudgeRequest { evidence: ev, psbt };
    let a = judge::judge(&chain, &wallet, &mut store, &manifest, me, &req)?;
    let job = hex::encode(req.evidence.request.id());
    let out = out.unwrap_or_else(|| {
        dir.join("evidence")
            .join(format!("slash-{}-party{}.psbt", &job[..16], a.accused))
    });
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    write_atomic(&out, a.psbt.as_bytes(), 0o600)?;
    let mut text = format!(
        "party {} is convicted ({}): {}\nthe canonical slash spends its bond {} ({} sat): {} sat to the victim, {} sat back to the bond script, {} sat fee\nsigned: {} of {} judge signatures; PSBT written to {}",
        a.accused,
        a.rule,
        a.detail,
        a.bond_outpoint,
        a.bond_sat,
        a.victim_sat,
        a.remainder_sat,
        a.fee_sat,
        a.signatures,
        a.needed,
        out.display()
    );
    let mut txid = None;
    if broadcast {
        if a.signatures < a.needed {
            bail!(
                "the slash carries {} of the {} signatures it needs: pass it to another judge first",
                a.signatures,
                a.needed
            );
        }
        let file = judge::bond_file(&manifest, a.accused)?;
        let terms = judge::slash_terms(&req.evidence.request, &manifest)?;
        let signed = btcmpc_contracts::decode_carrier(&a.psbt).context("the signed PSBT")?;
        let (t, _) = wallet.broadcast_slash(&chain, &file, &terms, &signed)?;
        text.push_str(&format!("\nbroadcast: {t}"));
        txid = Some(t.to_string());
    }
    Ok(Report::new(
        text,
        json!({"accused": a.accused, "judge": a.judge, "rule": a.rule, "detail": a.detail,
               "psbt": out.display().to_string(), "signatures": a.signatures, "needed": a.needed,
               "bond_outpoint": a.bond_outpoint, "bond_sat": a.bond_sat,
               "victim_sat": a.victim_sat, "remainder_sat": a.remainder_sat, "fee_sat": a.fee_sat,
               "txid": txid}),
    ))
}
