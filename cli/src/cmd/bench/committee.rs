//! `btcmpc bench committee`: the committee across separate party processes on loopback, over
//! the parties' Noise channels, beside MP-SPDZ's figures.
//!
//! The coordinator (this command) leases one loopback port per party, starts `n` processes of
//! this binary (`btcmpc bench committee-party`, hidden) for each workload, acts as the owner of
//! the stored vector in the `input` workload, collects each party's one-line JSON report and
//! prints the table. The parties run [`btcmpc_engine::node::bench::run_party`]: the same
//! machines as a real job (PRSS setup, Damgård-Nielsen products with echo-broadcast openings,
//! the plan evaluator, openings decoded with Berlekamp-Welch), with bench-only keys derived
//! from a per-run random seed given on their command line. Every child is killed and reaped
//! when the coordinator returns or fails ([`Children`]); every wait is bounded.
//!
//! A run is checked: every party's digest of what it opened must equal the digest of the
//! clear computation from the same seed.

use crate::cmd::runtime;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use btcmpc_engine::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
use btcmpc_engine::node::bench::{
    self, OwnerConfig, OwnerReport, PartyConfig, PartyReport, Workload,
};
use btcmpc_regtest::ports::PortLease;
use serde_json::{json, Value};

use crate::{global::Global, output::Report};

/// The field of a committee run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Field {
    /// The secp256k1 scalar field (256 bits).
    Secp256k1,
    /// The Mersenne prime 2^127 - 1.
    M127,
}

/// Arguments of `btcmpc bench committee`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The field.
    #[arg(long, value_enum, default_value_t = Field::Secp256k1)]
    field: Field,
    /// Parties (separate processes); the threshold is t = (n - 1) / 3.
    #[arg(long, default_value_t = 4)]
    n: usize,
    /// Values per vector.
    #[arg(long, default_value_t = 1_000_000)]
    size: usize,
    /// Workloads to run, comma-separated (products, dot, input).
    #[arg(long, value_delimiter = ',', default_value = "products,dot,input")]
    only: Vec<String>,
    /// Seconds one workload may take, processes started to reports collected.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Arguments of the hidden `btcmpc bench committee-party`: one party of a run, started by the
/// coordinator.
#[derive(Debug, clap::Args)]
pub struct PartyArgs {
    /// The field.
    #[arg(long, value_enum)]
    field: Field,
    /// Parties.
    #[arg(long)]
    n: usize,
    /// Threshold.
    #[arg(long)]
    t: usize,
    /// This party's index, 1..=n.
    #[arg(long)]
    me: usize,
    /// The run's seed, 64 hex digits.
    #[arg(long)]
    seed: String,
    /// Values per vector.
    #[arg(long)]
    size: usize,
    /// The workload.
    #[arg(long)]
    workload: String,
    /// Every party's loopback port, comma-separated, party 1 first.
    #[arg(long, value_delimiter = ',')]
    ports: Vec<u16>,
    /// Seconds the run may take.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Exit as soon as stdin closes: the coordinator holds the other end, so a party never
    /// outlives it (killed, crashed or interrupted).
    #[arg(long)]
    exit_with_stdin: bool,
}

fn addrs(ports: &[u16]) -> Vec<SocketAddr> {
    ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect()
}

fn parse_seed(hex_seed: &str) -> anyhow::Result<[u8; 32]> {
    hex::decode(hex_seed)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| anyhow!("--seed must be 64 hex digits"))
}

/// Run `btcmpc bench committee-party`: one party; its report is one JSON line on stdout.
pub fn party(args: PartyArgs, _global: &Global) -> anyhow::Result<Report> {
    if args.exit_with_stdin {
        std::thread::spawn(|| {
            let mut sink = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            eprintln!("error: the coordinator is gone: party stopped");
            std::process::exit(1);
        });
    }
    let workload = Workload::from_name(&args.workload)
        .ok_or_else(|| anyhow!("unknown workload {:?}", args.workload))?;
    check_party_timeout(args.timeout)?;
    if args.size == 0 {
        bail!("--size must be at least 1");
    }
    if args.t == 0 || 3 * args.t >= args.n || args.me == 0 || args.me > args.n {
        bail!("--t must be at least 1 with 3 t < n, and --me 1 to n");
    }
    check_memory(args.size, 1, args.field)?;
    let cfg = PartyConfig {
        n: args.n,
        t: args.t,
        me: args.me,
        seed: parse_seed(&args.seed)?,
        size: args.size,
        workload,
        addrs: addrs(&args.ports),
        timeout: Duration::from_secs(args.timeout),
        round_timeout: Duration::from_secs(args.timeout),
    };
    // One thread per party: the four processes share two cores, and the command's usual
    // two-worker runtime cost 8-14% more CPU in cross-thread wake-ups (a frame crossed three
    // threads on its way from one party's machine to another's).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = match args.field {
        Field::Secp256k1 => rt.block_on(bench::run_party::<Secp256k1Scalar>(&cfg))?.0,
        Field::M127 => rt.block_on(bench::run_party::<Mersenne127>(&cfg))?.0,
    };
    rt.shutdown_timeout(Duration::from_secs(1));
    let value = serde_json::to_value(&report)?;
    Ok(Report::new(serde_json::to_string(&report)?, value))
}

/// The party processes of one workload, killed and reaped when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits for every child to exit, all within `timeout`; returns their stdout, or the first
/// failure.
fn collect(children: &mut Children, timeout: Duration) -> anyhow::Result<Vec<String>> {
    let mut readers = Vec::new();
    for (i, c) in children.0.iter_mut().enumerate() {
        let mut out = c
            .stdout
            .take()
            .ok_or_else(|| anyhow!("party {} has no stdout", i + 1))?;
        readers.push(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }));
    }
    let end = Instant::now() + timeout;
    let mut exited = vec![false; children.0.len()];
    while exited.iter().any(|e| !e) {
        for (i, c) in children.0.iter_mut().enumerate() {
            if exited[i] {
                continue;
            }
            if let Some(status) = c.try_wait()? {
                if status.code().is_none() {
                    bail!("party {} was stopped ({status})", i + 1);
                }
                if !status.success() {
                    bail!("party {} failed ({status}); its error is above", i + 1);
                }
                exited[i] = true;
            }
        }
        if Instant::now() >= end {
            bail!("the parties did not finish in {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    readers
        .into_iter()
        .map(|r| r.join().map_err(|_| anyhow!("a reader thread panicked")))
        .collect()
}

/// What one workload measured.
struct Measured {
    workload: Workload,
    parties: Vec<PartyReport>,
    owner: Option<OwnerReport>,
    /// Whether every party opened the clear result.
    verified: bool,
}

impl Measured {
    /// The earliest start of the owner and the parties, µs.
    fn start_us(&self) -> u64 {
        self.owner
            .as_ref()
            .map(|o| o.start_us)
            .into_iter()
            .chain(self.parties.iter().map(|p| p.start_us))
            .min()
            .unwrap_or(0)
    }

    /// First message to last opening, ms.
    fn span_ms(&self) -> f64 {
        let start = self.start_us();
        let end = self.parties.iter().map(|p| p.end_us).max().unwrap_or(0);
        end.saturating_sub(start) as f64 / 1e3
    }

    /// The workload's own machine (before the opening), first start to last end, ms.
    fn compute_ms(&self) -> f64 {
        let start = self.start_us();
        let end = self
            .parties
            .iter()
            .map(|p| p.computed_us)
            .max()
            .unwrap_or(0);
        end.saturating_sub(start) as f64 / 1e3
    }

    fn max_rss_kib(&self) -> Option<u64> {
        self.parties.iter().filter_map(|p| p.peak_rss_kib).max()
    }
}

fn run_workload<F: PrimeField>(
    args: &Args,
    field: &str,
    t: usize,
    workload: Workload,
) -> anyhow::Result<Measured> {
    let seed = bench::random_seed();
    let leases = (0..args.n)
        .map(|_| PortLease::new())
        .collect::<Result<Vec<_>, _>>()
        .context("leasing loopback ports")?;
    let ports: Vec<u16> = leases.iter().map(PortLease::port).collect();
    let port_list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe().context("finding this binary")?;
    let timeout = Duration::from_secs(args.timeout);
    let mut children = Children(Vec::with_capacity(args.n));
    for me in 1..=args.n {
        let child = Command::new(&exe)
            .args(["bench", "committee-party", "--field", field])
            .args(["--n", &args.n.to_string(), "--t", &t.to_string()])
            .args(["--me", &me.to_string(), "--seed", &hex::encode(seed)])
            .args([
                "--size",
                &args.size.to_string(),
                "--workload",
                workload.name(),
            ])
            .args([
                "--ports",
                &port_list,
                "--timeout",
                &(args.timeout + PARTY_GRACE_S).to_string(),
                "--exit-with-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting party {me}"))?;
        children.0.push(child);
    }
    // The owner runs beside the watch over the parties, so a party that dies mid-store stops
    // the run at once instead of when the owner's channel to it times out.
    let owner = (workload == Workload::Input)
        .then(|| {
            let cfg = OwnerConfig {
                n: args.n,
                t,
                seed,
                size: args.size,
                addrs: addrs(&ports),
                timeout,
            };
            let rt = runtime()?;
            Ok::<_, anyhow::Error>(std::thread::spawn(move || {
                let r = rt.block_on(bench::run_owner::<F>(&cfg));
                rt.shutdown_timeout(Duration::from_secs(1));
                r
            }))
        })
        .transpose()?;
    let outputs = collect(&mut children, timeout)?;
    let owner = owner
        .map(|h| {
            h.join()
                .map_err(|_| anyhow!("the owner's thread panicked"))?
                .context("the owner")
        })
        .transpose()?;
    drop(children);
    drop(leases);
    let mut parties = Vec::with_capacity(args.n);
    for (i, out) in outputs.iter().enumerate() {
        let line = out
            .lines()
            .find(|l| l.starts_with('{'))
            .ok_or_else(|| anyhow!("party {} printed no report", i + 1))?;
        let r: PartyReport =
            serde_json::from_str(line).with_context(|| format!("the report of party {}", i + 1))?;
        parties.push(r);
    }
    let want = bench::digest(&bench::expected::<F>(workload, &seed, args.size));
    let verified = parties.iter().all(|p| p.opened_digest == want);
    Ok(Measured {
        workload,
        parties,
        owner,
        verified,
    })
}

/// MP-SPDZ 0.4.2's figures on this machine kind (4 processes, loopback, TLS, t = 1,
/// semi-honest Shamir, 1 M elements) and this project's targets, per field.
struct Reference {
    mpspdz_field: &'static str,
    mults_per_s: Option<f64>,
    dot_ms: Option<f64>,
    input_ms: Option<f64>,
    malicious_mults_per_s: Option<f64>,
    target_mults_per_s: Option<f64>,
    target_dot_ms: Option<f64>,
    target_input_ms: Option<f64>,
}

/// The figures a run of `n` parties and `size` values is compared with: all of them for the
/// reference's own run (n = 4, 1 M values), none for another.
fn reference(field: Field, n: usize, size: usize) -> Reference {
    let r = reference_1m(field);
    if n == 4 && size == 1_000_000 {
        return r;
    }
    Reference {
        mpspdz_field: r.mpspdz_field,
        mults_per_s: None,
        dot_ms: None,
        input_ms: None,
        malicious_mults_per_s: None,
        target_mults_per_s: None,
        target_dot_ms: None,
        target_input_ms: None,
    }
}

fn reference_1m(field: Field) -> Reference {
    match field {
        Field::Secp256k1 => Reference {
            mpspdz_field: "256-bit field",
            mults_per_s: Some(1.71e6),
            dot_ms: Some(106.0),
            input_ms: Some(409.0),
            malicious_mults_per_s: Some(0.19e6),
            target_mults_per_s: Some(2.6e6),
            target_dot_ms: Some(40.0),
            target_input_ms: Some(400.0),
        },
        Field::M127 => Reference {
            mpspdz_field: "128-bit field",
            mults_per_s: Some(2.88e6),
            dot_ms: None,
            input_ms: None,
            malicious_mults_per_s: None,
            target_mults_per_s: Some(5.8e6),
            target_dot_ms: Some(10.0),
            target_input_ms: None,
        },
    }
}

fn rate(r: f64) -> String {
    format!("{:.2} M/s", r / 1e6)
}

fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

/// `ours / theirs` as a speed ratio (above 1: faster than MP-SPDZ).
fn speed(ours_per_s: f64, theirs_per_s: Option<f64>) -> String {
    theirs_per_s.map_or_else(
        || "-".to_string(),
        |t| format!("{:.2}x MP-SPDZ", ours_per_s / t),
    )
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn table(args: &Args, t: usize, field_name: &str, runs: &[Measured]) -> (String, Value) {
    let r = reference(args.field, args.n, args.size);
    let comparable = args.n == 4 && args.size == 1_000_000;
    let mut text = String::new();
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let _ = writeln!(
        text,
        "committee of {} processes on loopback over Noise channels, t = {t}, field {field_name}, \
         {} values (load average {load} at the end)",
        args.n, args.size
    );
    let _ = writeln!(
        text,
        "  {:<46} {:>11} {:>12} {:>16} {:>10} {:>8}",
        "measurement",
        format!(
            "MP-SPDZ {}",
            if args.field == Field::Secp256k1 {
                "256"
            } else {
                "128"
            }
        ),
        "target",
        "measured",
        "vs MP-SPDZ",
        "met?"
    );
    let mut rows = Vec::new();
    let mut line = |what: &str,
                    theirs: String,
                    target: String,
                    ours: String,
                    ratio: String,
                    ok: Option<bool>| {
        let status = ok.map_or("", met);
        let _ = writeln!(
            text,
            "  {what:<46} {theirs:>11} {target:>12} {ours:>16} {ratio:>10} {status:>8}"
        );
        rows.push(json!({
            "measurement": what, "mp_spdz": theirs, "target": target,
            "measured": ours, "ratio": ratio, "target_met": ok,
        }));
    };
    for m in runs {
        let span = m.span_ms();
        let check = if m.verified { "" } else { " WRONG" };
        let cpu: f64 = m.parties.iter().filter_map(|p| p.cpu_ms).sum();
        match m.workload {
            Workload::Products => {
                let per_s = args.size as f64 / (span / 1e3);
                line(
                    "element-wise multiplications per second",
                    r.mults_per_s.map_or("-".into(), rate),
                    r.target_mults_per_s
                        .map_or("-".into(), |v| format!(">= {}", rate(v))),
                    format!("{}{check}", rate(per_s)),
                    speed(per_s, r.mults_per_s),
                    r.target_mults_per_s.map(|v| per_s >= v),
                );
                line(
                    "  products + opening, first message to last",
                    String::new(),
                    String::new(),
                    ms(span),
                    String::new(),
                    None,
                );
                line(
                    "  of which the products (one reduction)",
                    String::new(),
                    String::new(),
                    ms(m.compute_ms()),
                    String::new(),
                    None,
                );
            }
            Workload::Dot => {
                line(
                    "dot product of two vectors, then opened",
                    r.dot_ms.map_or("-".into(), ms),
                    r.target_dot_ms
                        .map_or("-".into(), |v| format!("<= {}", ms(v))),
                    format!("{}{check}", ms(span)),
                    r.dot_ms.map_or("-".into(), |d| format!("{:.2}x", d / span)),
                    r.target_dot_ms.map(|v| span <= v),
                );
            }
            Workload::Input => {
                line(
                    "input from an owner + sum + reveal",
                    r.input_ms.map_or("-".into(), ms),
                    r.target_input_ms
                        .map_or("-".into(), |v| format!("<= {}", ms(v))),
                    format!("{}{check}", ms(span)),
                    r.input_ms
                        .map_or("-".into(), |d| format!("{:.2}x", d / span)),
                    r.target_input_ms.map(|v| span <= v),
                );
                if let Some(o) = &m.owner {
                    line(
                        "  of which the owner's dealing",
                        String::new(),
                        String::new(),
                        ms(o.deal_ms),
                        String::new(),
                        None,
                    );
                }
            }
        }
        line(
            &format!("  CPU of the {} parties in it, summed", m.parties.len()),
            String::new(),
            String::new(),
            ms(cpu),
            String::new(),
            None,
        );
    }
    line(
        "malicious-secure variant mults/s",
        r.malicious_mults_per_s.map_or("-".into(), rate),
        "-".into(),
        "not measured".into(),
        "-".into(),
        None,
    );
    if let Some(m) = runs.iter().find(|m| m.workload == Workload::Products) {
        let input = m.parties.iter().map(|p| p.input_bytes).max().unwrap_or(0);
        let rss = m.max_rss_kib().map_or(0, |k| k * 1024);
        line(
            "peak RSS per party, products run (VmHWM)",
            "-".into(),
            if comparable {
                format!("< {:.0} MB", 4.0 * input as f64 / 1e6)
            } else {
                "-".into()
            },
            format!("{:.0} MB", rss as f64 / 1e6),
            format!("{:.1}x inputs", rss as f64 / input.max(1) as f64),
            comparable.then_some(rss < 4 * input),
        );
    }
    let _ = writeln!(text, "per party (wall: first message to last opening):");
    for m in runs {
        for p in &m.parties {
            let _ = writeln!(
                text,
                "  {:<8} party {}: wall {:>7.1} ms, busy {:>7.1} ms, CPU {:>7.1} ms, sent {:>5.1} \
                 MB, received {:>5.1} MB, peak RSS {:>4} MB, setup {:.0} ms",
                m.workload.name(),
                p.party,
                (p.end_us - p.start_us) as f64 / 1e3,
                p.busy_ms,
                p.cpu_ms.unwrap_or(0.0),
                p.bytes_sent as f64 / 1e6,
                p.bytes_received as f64 / 1e6,
                p.peak_rss_kib.map_or(0, |k| k * 1024 / 1_000_000),
                p.setup_ms
            );
        }
    }
    let _ = writeln!(
        text,
        "inputs: products and dot dealt from a per-run seed (each party evaluates the same \
         random polynomials at its point); input: dealt by the coordinator acting as owner \
         with the store's dealing and sent as SHARE_BATCH frames (no store check, no chain). \
         Every opened result checked against the clear computation: {}.",
        if runs.iter().all(|m| m.verified) {
            "equal"
        } else {
            "DIFFERENT"
        }
    );
    let _ = writeln!(
        text,
        "MP-SPDZ {}: 0.4.2 on this machine kind, 4 processes, loopback, TLS, t = 1, \
         semi-honest Shamir, 1 M elements. {} threads available.",
        r.mpspdz_field,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if !comparable {
        let _ = writeln!(
            text,
            "MP-SPDZ's figures and the targets are for 4 parties and 1,000,000 values: not \
             compared with this run of {} parties and {} values.",
            args.n, args.size
        );
    }
    let json = json!({
        "field": field_name,
        "n": args.n,
        "t": t,
        "size": args.size,
        "load_average": load,
        "table": rows,
        "runs": runs.iter().map(|m| json!({
            "workload": m.workload.name(),
            "span_ms": m.span_ms(),
            "compute_ms": m.compute_ms(),
            "cpu_ms": m.parties.iter().filter_map(|p| p.cpu_ms).sum::<f64>(),
            "verified": m.verified,
            "owner": m.owner,
            "parties": m.parties,
        })).collect::<Vec<_>>(),
    });
    (text, json)
}

fn run_field<F: PrimeField>(
    args: &Args,
    t: usize,
    workloads: &[Workload],
) -> anyhow::Result<Report> {
    let field = match args.field {
        Field::Secp256k1 => "secp256k1",
        Field::M127 => "m127",
    };
    let mut runs = Vec::new();
    for &w in workloads {
        runs.push(
            run_workload::<F>(args, field, t, w)
                .with_context(|| format!("workload {}", w.name()))?,
        );
    }
    let (text, json) = table(args, t, F::NAME, &runs);
    let exit = u8::from(!runs.iter().all(|m| m.verified));
    Ok(Report::new(text, json).with_exit(exit))
}

/// Refuses a run whose vectors would not fit in memory: each of the `n` parties holds about
/// six vectors of `size` values at its peak, and the coordinator about eight more (the owner's
/// dealing, the clear computation it checks against). Compared with `MemAvailable`
/// (`/proc/meminfo`); where that cannot be read, with 16 GiB.
///
/// # Errors
/// A one-line refusal naming the size, what it needs and what is available.
fn check_memory(size: usize, n: usize, field: Field) -> anyhow::Result<()> {
    let width: u64 = match field {
        Field::Secp256k1 => 32,
        Field::M127 => 16,
    };
    let vectors = 6 * n as u64 + 8;
    let need = (size as u64)
        .checked_mul(width)
        .and_then(|b| b.checked_mul(vectors));
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(16 << 30, |kib| kib.saturating_mul(1024));
    match need {
        Some(need) if need <= available => Ok(()),
        Some(need) => bail!(
            "--size {size} needs about {:.1} GB of memory for {n} parties and the coordinator, \
             {:.1} GB available",
            need as f64 / 1e9,
            available as f64 / 1e9
        ),
        None => bail!("--size {size} is too large: its vectors would not fit in 2^64 bytes"),
    }
}

/// The longest `--timeout`, a day in seconds: a deadline must stay representable (a huge
/// value overflowed the clock).
const MAX_TIMEOUT_S: u64 = 86_400;

/// Refuses a `--timeout` of 0 s or above [`MAX_TIMEOUT_S`], in one line.
fn check_timeout(seconds: u64) -> anyhow::Result<()> {
    if seconds == 0 || seconds > MAX_TIMEOUT_S {
        bail!("--timeout must be at least 1 s and at most {MAX_TIMEOUT_S} s (a day)");
    }
    Ok(())
}

/// Seconds the parties' own deadline runs past the coordinator's: when a run is too slow,
/// the coordinator's deadline passes first and it stops the parties, so the user reads one
/// line (the coordinator's) instead of one from every party as well.
const PARTY_GRACE_S: u64 = 2;

/// A party's `--timeout`: the coordinator's plus [`PARTY_GRACE_S`].
fn check_party_timeout(seconds: u64) -> anyhow::Result<()> {
    if seconds == 0 || seconds > MAX_TIMEOUT_S + PARTY_GRACE_S {
        bail!(
            "--timeout must be at least 1 s and at most {} s",
            MAX_TIMEOUT_S + PARTY_GRACE_S
        );
    }
    Ok(())
}

/// Run `btcmpc bench committee`.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<Report> {
    if args.n < 4 || args.n > 10 {
        bail!("--n must be 4 to 10 (t = (n - 1) / 3 must be at least 1)");
    }
    if args.size == 0 {
        bail!("--size must be at least 1");
    }
    check_timeout(args.timeout)?;
    // Every name is checked before anything runs.
    let mut workloads = Vec::with_capacity(args.only.len());
    for name in &args.only {
        let name = name.trim();
        if name.is_empty() {
            bail!("--only has an empty workload name (products, dot, input)");
        }
        let w = Workload::from_name(name).ok_or_else(|| {
            anyhow!("--only names unknown workload {name:?} (products, dot, input)")
        })?;
        if workloads.contains(&w) {
            bail!("--only names workload {name:?} twice");
        }
        workloads.push(w);
    }
    check_memory(args.size, args.n, args.field)?;
    let t = (args.n - 1) / 3;
    match args.field {
        Field::Secp256k1 => run_field::<Secp256k1Scalar>(&args, t, &workloads),
        Field::M127 => run_field::<Mersenne127>(&args, t, &workloads),
    }
}
