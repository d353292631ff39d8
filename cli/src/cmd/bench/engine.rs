//! `btcmpc bench engine`: the MPC engine's throughput in both fields, as a table.
//!
//! Every figure is the best of a few runs on this machine: dealing (n = 4, t = 1), the batch
//! degree check of a dealing, `sum` and `dot` over the rows of one party's shares, element-wise
//! products through the in-process committee (n = 4, the parties' machines in parallel,
//! Damgård-Nielsen with PRSS double sharings and echo-broadcast openings), Berlekamp-Welch decoding, and filtered aggregates
//! through the committee (`count() where x > c`, `mean(y) where x between a and b` over 32-bit
//! values: secure comparisons, Catrina-de Hoogh LTZ with random bits by the square-root
//! trick), with the comparisons per second (each measured once: a run takes seconds).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use btcmpc_engine::mpc::check::{verify_openings, Challenge, STORE_CHECK_TAG};
use btcmpc_engine::mpc::committee::{Committee, Scenario};
use btcmpc_engine::mpc::dealing::{deal, receipts_root};
use btcmpc_engine::mpc::decode::{decode_vec, DecodeVec};
use btcmpc_engine::mpc::eval::evaluate_local;
use btcmpc_engine::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
use btcmpc_engine::mpc::query::{parse, plan, Plan};
use btcmpc_engine::mpc::round::PartyId;
use btcmpc_engine::mpc::shamir::{self, Params};
use serde_json::{json, Value};

use crate::{global::Global, output::Report};

/// Which field to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FieldArg {
    /// The secp256k1 scalar field.
    Secp256k1,
    /// The Mersenne prime 2^127 - 1.
    M127,
    /// Both.
    Both,
}

/// Arguments of `btcmpc bench engine`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Field(s) to measure.
    #[arg(long, value_enum, default_value_t = FieldArg::Both)]
    field: FieldArg,
    /// Values per measurement (rows, dealt values, products).
    #[arg(long, default_value_t = 1_000_000)]
    size: usize,
    /// Runs per measurement (the best is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Rows of the filtered aggregates through the committee (0: skip them).
    #[arg(long, default_value_t = 100_000)]
    compare_rows: usize,
}

/// Best wall-clock time of `runs` runs of `f`.
fn best<T>(runs: usize, mut f: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        std::hint::black_box(f()?);
        best = best.min(start.elapsed());
    }
    Ok(best)
}

/// One row of the table.
struct Row {
    what: String,
    time: Duration,
    per_second: Option<f64>,
    unit: &'static str,
}

fn row(what: String, time: Duration, count: Option<usize>, unit: &'static str) -> Row {
    Row {
        what,
        time,
        per_second: count.map(|c| c as f64 / time.as_secs_f64()),
        unit,
    }
}

fn linear_plan<F: PrimeField>(query: &str, rows: usize) -> anyhow::Result<Plan> {
    let mut csv = String::from("x:int,y:int\n");
    // The plan only needs the schema; two rows give the ranges, `rows` sets the count.
    csv.push_str("-1000,-1000\n1000,1000\n");
    let d = btcmpc_engine::mpc::csv::Dataset::parse(&csv).context("benchmark schema")?;
    let mut schema = d.schema;
    schema.rows = rows;
    Ok(plan::<F>(&parse(query)?, &schema)?)
}

/// The filtered aggregates over `rows` rows of 32-bit values through the committee (n = 4,
/// t = 1), one run each, with the comparisons per second.
fn filtered<F: PrimeField>(rows: usize) -> anyhow::Result<Vec<Row>> {
    let params = Params::new(4, 1)?;
    let mut rng = shamir::dealer_rng();
    // Declared ranges make x and y 32-bit values; no gaps, so the fields are x and y.
    let d = btcmpc_engine::mpc::csv::Dataset::parse(
        "x:int:-2147483648..2147483647,y:int:-2147483648..2147483647\n0,0\n1,1\n",
    )
    .context("benchmark schema")?;
    let mut schema = d.schema;
    schema.rows = rows;
    let x: Vec<F> = (0..rows as i64)
        .map(|i| F::from_i64(i.wrapping_mul(0x9e37_79b9) % (1 << 31)))
        .collect();
    let y: Vec<F> = (0..rows as i64).map(|i| F::from_i64(i % 100_000)).collect();
    let mut columns: Vec<Vec<Vec<F>>> = vec![Vec::new(); 4];
    for col in [&x, &y] {
        for (i, sh) in shamir::deal_vec(col, params, &mut rng)
            .into_iter()
            .enumerate()
        {
            columns[i].push(sh);
        }
    }
    let committee = Committee::<F>::setup(&Scenario::honest(4, 1))?;
    let mut out = Vec::new();
    for (query, per_row) in [
        ("count() where x > 1000", 1),
        ("mean(y) where x between -1000000 and 1000000", 2),
    ] {
        let p = plan::<F>(&parse(query)?, &schema)?;
        let time = best(1, || {
            committee
                .evaluate([9u8; 32], &p, &columns)
                .map_err(|e| anyhow!("{query}: {e}"))
        })?;
        out.push(row(
            format!("{query}, {rows} rows, committee n=4"),
            time,
            Some(rows * per_row),
            "cmp/s",
        ));
    }
    Ok(out)
}

fn measure<F: PrimeField>(size: usize, runs: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let params = Params::new(4, 1)?;
    let mut rng = shamir::dealer_rng();
    let values: Vec<F> = (0..size as u64).map(|i| F::from_u64(i % 2001)).collect();

    // Dealing.
    let time = best(runs, || Ok(shamir::deal_vec(&values, params, &mut rng)))?;
    rows.push(row("dealing, n=4 t=1".into(), time, Some(size), "values/s"));

    // Batch check of a dealing of `size` values: challenge, one party's opening, the check.
    let dealt = deal(params, std::slice::from_ref(&values), &mut rng);
    let receipts: Vec<[u8; 32]> = dealt.iter().map(|p| p.receipt_hash(&[0u8; 32])).collect();
    let root = receipts_root(&receipts);
    let time = best(runs, || {
        let c = Challenge::<F>::new(STORE_CHECK_TAG, &root, size);
        let o = c.opening(&dealt[0])?;
        Ok((c, o))
    })?;
    rows.push(row(
        "batch check: challenge + one opening".into(),
        time,
        Some(size),
        "values/s",
    ));
    let challenge = Challenge::<F>::new(STORE_CHECK_TAG, &root, size);
    let openings: Vec<(PartyId, F)> = dealt
        .iter()
        .map(|p| Ok((p.index, challenge.opening(p)?)))
        .collect::<anyhow::Result<_>>()?;
    let time = best(runs, || Ok(verify_openings(params, &openings)?))?;
    rows.push(row("batch check: verify 4 openings".into(), time, None, ""));

    // Aggregates on one party's shares.
    let share_x = dealt[0].columns[0].clone();
    let share_y: Vec<F> = share_x.iter().map(|v| *v + F::ONE).collect();
    let columns = vec![share_x, share_y];
    let committee = Committee::<F>::setup(&Scenario::honest(4, 1))?;
    let sum = linear_plan::<F>("sum(x)", size)?;
    let time = best(runs, || Ok(evaluate_local(&sum, &columns)?))?;
    rows.push(row(
        format!("sum over {size} rows, per party"),
        time,
        Some(size),
        "rows/s",
    ));
    let time = best(runs, || Ok(F::dot(&columns[0], &columns[1])))?;
    rows.push(row(
        format!("dot product of {size} elements, per party (local part)"),
        time,
        Some(size),
        "elements/s",
    ));

    // Element-wise products through the committee.
    let a = shamir::deal_vec(&values, params, &mut rng);
    let b = shamir::deal_vec(&values, params, &mut rng);
    let time = best(runs, || {
        committee
            .multiply([7u8; 32], &a, &b)
            .map_err(|e| anyhow!("committee products: {e}"))
    })?;
    rows.push(row(
        format!("element-wise products through the committee, n=4, {size} values"),
        time,
        Some(size),
        "mult/s",
    ));

    // Decoding (n = 4, one wrong share).
    let m = size.min(100_000);
    let mut outs = shamir::deal_vec(&values[..m], params, &mut rng);
    outs[2][0] += F::ONE;
    let vectors: Vec<(PartyId, &[F])> = PartyId::all(params.n())
        .zip(&outs)
        .map(|(i, v)| (i, &v[..]))
        .collect();
    let third = PartyId::new(3, params.n())?;
    let time = best(runs, || match decode_vec(params, &vectors)? {
        DecodeVec::Decoded { culprits, .. } if culprits == [third] => Ok(()),
        other => Err(anyhow!("unexpected decoding {other:?}")),
    })?;
    rows.push(row(
        format!("decoding {m} values, n=4, one wrong share"),
        time,
        Some(m),
        "values/s",
    ));
    Ok(rows)
}

fn render(field: &str, rows: &[Row], text: &mut String, json: &mut Vec<Value>) {
    let _ = writeln!(text, "field {field}");
    let _ = writeln!(
        text,
        "  {:<66} {:>12} {:>16}",
        "measurement", "time", "throughput"
    );
    for r in rows {
        let rate = r
            .per_second
            .map(|p| {
                if p >= 1e5 {
                    format!("{:.2}M {}", p / 1e6, r.unit)
                } else {
                    format!("{p:.0} {}", r.unit)
                }
            })
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "  {:<66} {:>9.3} ms {:>16}",
            r.what,
            r.time.as_secs_f64() * 1e3,
            rate
        );
        json.push(json!({
            "field": field,
            "measurement": r.what,
            "ms": r.time.as_secs_f64() * 1e3,
            "per_second": r.per_second,
            "unit": r.unit,
        }));
    }
}

/// Run `btcmpc bench engine`.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<Report> {
    if args.size == 0 {
        anyhow::bail!("--size must be at least 1");
    }
    let mut text = String::new();
    let mut json = Vec::new();
    if matches!(args.field, FieldArg::Secp256k1 | FieldArg::Both) {
        let mut rows = measure::<Secp256k1Scalar>(args.size, args.runs)?;
        if args.compare_rows > 0 {
            rows.extend(filtered::<Secp256k1Scalar>(args.compare_rows)?);
        }
        render(Secp256k1Scalar::NAME, &rows, &mut text, &mut json);
    }
    if matches!(args.field, FieldArg::M127 | FieldArg::Both) {
        let mut rows = measure::<Mersenne127>(args.size, args.runs)?;
        if args.compare_rows > 0 {
            rows.extend(filtered::<Mersenne127>(args.compare_rows)?);
        }
        render(Mersenne127::NAME, &rows, &mut text, &mut json);
    }
    let _ = writeln!(
        text,
        "(best of {} runs; {} threads available)",
        args.runs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(Report::new(
        text,
        json!({ "size": args.size, "rows": json }),
    ))
}
