//! `btcmpc bench contracts`: build, sign, finalize and verify each contract spend path in a
//! loop for a few seconds on one thread, and print spends per second.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use bitcoin::{Amount, FeeRate, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use btcmpc_contracts::{
    sign_input, Anchor, Bond, ClaimOrRefund, CompiledContract, Contract, Height, InternalKey,
    SpendError, Utxo,
};
use serde_json::json;

use crate::{global::Global, output::Report};

/// Arguments of `btcmpc bench contracts`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds to run each spend path.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
}

fn keypair(secp: &Secp256k1<bitcoin::secp256k1::All>, seed: u8) -> anyhow::Result<Keypair> {
    let sk = SecretKey::from_slice(&[seed; 32]).context("benchmark key")?;
    Ok(Keypair::from_secret_key(secp, &sk))
}

fn utxo(c: &CompiledContract) -> Utxo {
    Utxo {
        outpoint: OutPoint {
            txid: Txid::from_byte_array([7; 32]),
            vout: 0,
        },
        txout: TxOut {
            value: Amount::from_sat(100_000),
            script_pubkey: c.script_pubkey().clone(),
        },
    }
}

type Spend<'a> = Box<dyn Fn() -> Result<Transaction, SpendError> + 'a>;

/// One row of the table.
struct Row {
    path: &'static str,
    spends: u64,
    seconds: f64,
    /// CPU time of this thread, when the OS reports it (on a shared machine wall time
    /// understates what one core does).
    cpu_seconds: Option<f64>,
}

/// This thread's CPU time so far, from Linux's `/proc/thread-self/schedstat` (nanoseconds on
/// the CPU is its first field); `None` elsewhere.
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Run every path.
fn measure(seconds: f64) -> anyhow::Result<Vec<Row>> {
    let secp = Secp256k1::new();
    let receiver = keypair(&secp, 1)?;
    let sender = keypair(&secp, 2)?;
    let owner = keypair(&secp, 20)?;
    let party = keypair(&secp, 10)?;
    let judges = [
        keypair(&secp, 11)?,
        keypair(&secp, 12)?,
        keypair(&secp, 13)?,
    ];
    let preimage = [9u8; 32];
    let rate = FeeRate::from_sat_per_vb(2).context("fee rate")?;
    let to = ScriptBuf::new_p2tr(&secp, receiver.x_only_public_key().0, None);

    // Compiled once, outside the timed loops.
    let escrow = Contract::ClaimOrRefund(ClaimOrRefund {
        receiver: receiver.public_key(),
        sender: sender.public_key(),
        hash: sha256::Hash::hash(&preimage),
        timeout: Height::new(1_000)?,
        internal_key: InternalKey::random_nums(&mut bitcoin::secp256k1::rand::thread_rng()),
    })
    .compile()?;
    let bond = Contract::Bond(Bond {
        party: party.public_key(),
        judges: judges.iter().map(Keypair::public_key).collect(),
        k: 2,
        exit: Height::new(5_000)?,
        internal_key: InternalKey::random_nums(&mut bitcoin::secp256k1::rand::thread_rng()),
    })
    .compile()?;
    let anchor = Contract::Anchor(Anchor {
        key: owner.public_key(),
    })
    .compile()?;
    let (eu, bu, au) = (utxo(&escrow), utxo(&bond), utxo(&anchor));

    let paths: Vec<(&'static str, Spend<'_>)> = vec![
        (
            "claim",
            Box::new(|| {
                let (mut p, _) = escrow.build_claim(&eu, &preimage, to.clone(), rate)?;
                sign_input(&mut p, 0, &receiver)?;
                escrow.finalize_and_verify(p)
            }),
        ),
        (
            "refund",
            Box::new(|| {
                let (mut p, _) = escrow.build_refund(&eu, to.clone(), rate)?;
                sign_input(&mut p, 0, &sender)?;
                escrow.finalize_and_verify(p)
            }),
        ),
        (
            "exit",
            Box::new(|| {
                let (mut p, _) = bond.build_exit(&bu, to.clone(), rate)?;
                sign_input(&mut p, 0, &party)?;
                bond.finalize_and_verify(p)
            }),
        ),
        (
            "slash 2-of-3",
            Box::new(|| {
                let (mut p, _) =
                    bond.build_slash(&bu, to.clone(), Amount::from_sat(40_000), rate)?;
                sign_input(&mut p, 0, &judges[0])?;
                sign_input(&mut p, 0, &judges[2])?;
                bond.finalize_and_verify(p)
            }),
        ),
        (
            "anchor extend",
            Box::new(|| {
                let (mut p, _) = anchor.build_anchor_extend(&au, b"BMPC\x01", rate, None)?;
                sign_input(&mut p, 0, &owner)?;
                anchor.finalize_and_verify(p)
            }),
        ),
    ];
    let budget = Duration::from_secs_f64(seconds.max(0.05));
    let mut rows = Vec::new();
    for (name, spend) in paths {
        let cpu_start = thread_cpu_time();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget {
            std::hint::black_box(spend().with_context(|| format!("{name} spend"))?);
            n += 1;
        }
        let seconds = start.elapsed().as_secs_f64();
        let cpu_seconds = match (cpu_start, thread_cpu_time()) {
            (Some(a), Some(b)) if b > a => Some((b - a).as_secs_f64()),
            _ => None,
        };
        rows.push(Row {
            path: name,
            spends: n,
            seconds,
            cpu_seconds,
        });
    }
    Ok(rows)
}

/// Run `btcmpc bench contracts`.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<Report> {
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 600.0) {
        anyhow::bail!("--seconds: {} is not in (0, 600]", args.seconds);
    }
    let rows = measure(args.seconds)?;
    let mut text = String::from(
        "contract spends: build + sign + finalize + verify (Core interpreter), one thread\n\n\
         path             spends   seconds   spends/s   per CPU-second\n",
    );
    let mut json_rows = Vec::new();
    for r in &rows {
        let rate = r.spends as f64 / r.seconds;
        let per_cpu = r.cpu_seconds.map(|c| r.spends as f64 / c);
        let cpu_text = per_cpu.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        let _ = writeln!(
            text,
            "{:<14} {:>8} {:>9.2} {rate:>10.0} {cpu_text:>16}",
            r.path, r.spends, r.seconds
        );
        json_rows.push(json!({
            "path": r.path,
            "spends": r.spends,
            "seconds": r.seconds,
            "spends_per_second": rate,
            "cpu_seconds": r.cpu_seconds,
            "spends_per_cpu_second": per_cpu,
        }));
    }
    Ok(Report::new(text, json!({ "paths": json_rows })))
}
