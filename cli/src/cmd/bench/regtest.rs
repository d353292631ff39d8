//! `btcmpc bench regtest`: the embedded node measured through its RPC, as a client sees it.
//!
//! It starts a node in a temporary datadir, funds N one-input taproot key-path spends, and
//! measures `testmempoolaccept` per second and `sendrawtransaction` per second (one request at a
//! time on one kept-alive connection), mining the block of those N transactions, and restarting
//! the node on a chain of `--blocks` blocks (until it answers RPC again).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::hashes::Hash as _;
use bitcoin::key::{Keypair, TapTweak as _};
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    absolute, transaction, Address, Amount, Network, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Txid, Witness,
};
use btcmpc_regtest::rpc_client::{Auth, RpcClient};
use btcmpc_regtest::server::{Server, ServerConfig};
use serde_json::{json, Value};

use crate::{global::Global, output::Report};

/// Most outputs of one fan-out transaction (stays under the standard weight limit).
const FANOUT: usize = 2_000;
/// Fee of each measured spend (about 1.8 sat/vB for 111 vB).
const SPEND_FEE: u64 = 200;

/// Arguments of `btcmpc bench regtest`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Transactions to accept, send and mine.
    #[arg(long, default_value_t = 2_000)]
    txs: usize,
    /// Chain length for the restart measurement.
    #[arg(long, default_value_t = 10_000)]
    blocks: u32,
}

struct Row {
    name: &'static str,
    value: f64,
    unit: &'static str,
    target: &'static str,
}

/// Run `btcmpc bench regtest`.
pub fn run(args: Args, _global: &Global) -> anyhow::Result<Report> {
    if args.txs == 0 {
        bail!("--txs must be at least 1");
    }
    let dir = scratch_dir();
    let result = bench(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let rows = result?;
    let mut text = format!(
        "btcmpc bench regtest ({} one-input taproot key-path spends, {} blocks)\n\n{:<44} {:>14}  {}\n",
        args.txs, args.blocks, "benchmark", "result", "target"
    );
    let mut j = serde_json::Map::new();
    for r in &rows {
        text.push_str(&format!(
            "{:<44} {:>10.1} {:<4} {}\n",
            r.name, r.value, r.unit, r.target
        ));
        j.insert(
            r.name.to_string(),
            json!({"value": r.value, "unit": r.unit, "target": r.target}),
        );
    }
    Ok(Report::new(text, Value::Object(j)))
}

fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "btcmpc-bench-regtest-{}-{nanos}",
        std::process::id()
    ))
}

fn client(server: &Server) -> anyhow::Result<RpcClient> {
    Ok(
        RpcClient::new(&server.rpc_url(), Auth::CookieFile(server.cookie_path()))?
            .with_timeout(Duration::from_secs(600)),
    )
}

fn bench(args: &Args, dir: &Path) -> anyhow::Result<Vec<Row>> {
    let datadir = dir.join("node");
    let server = Server::start(ServerConfig::new(&datadir)).context("starting the node")?;
    let rpc = client(&server)?;
    let secp = Secp256k1::new();
    let keypair = Keypair::new(&secp, &mut bitcoin::secp256k1::rand::thread_rng());
    let (xonly, _) = keypair.x_only_public_key();
    let address = Address::p2tr(&secp, xonly, None, Network::Regtest);
    let spk = address.script_pubkey();
    let tweaked = keypair.tap_tweak(&secp, None).to_keypair();
    let sign = |tx: &mut Transaction, prevout: &TxOut| -> anyhow::Result<()> {
        let sighash = SighashCache::new(&*tx)
            .taproot_key_spend_signature_hash(
                0,
                &Prevouts::All(&[prevout]),
                TapSighashType::Default,
            )
            .map_err(|e| anyhow!("sighash: {e}"))?;
        let sig =
            secp.sign_schnorr_no_aux_rand(&Message::from_digest(sighash.to_byte_array()), &tweaked);
        tx.input[0].witness = Witness::p2tr_key_spend(&bitcoin::taproot::Signature {
            signature: sig,
            sighash_type: TapSighashType::Default,
        });
        Ok(())
    };

    // Coins: fan-out transactions of up to FANOUT outputs each, from faucet payments.
    // Two disjoint sets: testmempoolaccept would otherwise fill the script-execution cache for
    // the transactions sendrawtransaction is measured on.
    let wanted = 2 * args.txs;
    let mut coins: Vec<(OutPoint, TxOut)> = Vec::with_capacity(wanted);
    while coins.len() < wanted {
        let n = (wanted - coins.len()).min(FANOUT);
        let funding = Amount::from_sat(50_000_000);
        let reply = rpc.call(
            "faucet",
            &[json!(address.to_string()), json!(funding.to_btc())],
        )?;
        let ftxid = Txid::from_str(reply["txid"].as_str().unwrap_or_default())?;
        let ftx = get_tx(&rpc, &ftxid)?;
        let vout = ftx
            .output
            .iter()
            .position(|o| o.script_pubkey == spk)
            .ok_or_else(|| anyhow!("faucet output not found"))?;
        let prev = ftx.output[vout].clone();
        let fee = 100_000u64 + 45 * n as u64;
        let each = (funding.to_sat() - fee) / n as u64;
        let mut fan = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![input(OutPoint {
                txid: ftxid,
                vout: vout as u32,
            })],
            output: (0..n)
                .map(|_| TxOut {
                    value: Amount::from_sat(each),
                    script_pubkey: spk.clone(),
                })
                .collect(),
        };
        sign(&mut fan, &prev)?;
        let txid = fan.compute_txid();
        rpc.call(
            "sendrawtransaction",
            &[json!(serialize_hex(&fan)), json!(0)],
        )
        .context("sending a fan-out transaction")?;
        for (i, o) in fan.output.iter().enumerate() {
            coins.push((
                OutPoint {
                    txid,
                    vout: i as u32,
                },
                o.clone(),
            ));
        }
    }
    rpc.call(
        "generatetoaddress",
        &[json!(1), json!(server.faucet_address().to_string())],
    )?;

    // The measured spends, signed up front.
    let mut spends = Vec::with_capacity(coins.len());
    for (op, prev) in &coins {
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![input(*op)],
            output: vec![TxOut {
                value: prev.value - Amount::from_sat(SPEND_FEE),
                script_pubkey: spk.clone(),
            }],
        };
        sign(&mut tx, prev)?;
        spends.push(serialize_hex(&tx));
    }

    let (tested, sent) = spends.split_at(args.txs);
    let mut rows = Vec::new();
    // The RPC round trip alone, for reference.
    let start = Instant::now();
    let rounds = 5_000;
    for _ in 0..rounds {
        rpc.call("getblockcount", &[])?;
    }
    rows.push(Row {
        name: "rpc round trip (getblockcount)",
        value: f64::from(rounds) / start.elapsed().as_secs_f64(),
        unit: "/s",
        target: "(reference)",
    });
    // testmempoolaccept, one transaction per request, one connection.
    let start = Instant::now();
    for hex_tx in tested {
        let r = rpc.call("testmempoolaccept", &[json!([hex_tx])])?;
        if r[0]["allowed"] != json!(true) {
            bail!("testmempoolaccept refused a benchmark transaction: {r}");
        }
    }
    rows.push(Row {
        name: "testmempoolaccept (1-in taproot key path)",
        value: tested.len() as f64 / start.elapsed().as_secs_f64(),
        unit: "tx/s",
        target: ">= 6,500 tx/s (Core)",
    });

    // sendrawtransaction, one connection.
    let start = Instant::now();
    for hex_tx in sent {
        rpc.call("sendrawtransaction", &[json!(hex_tx)])?;
    }
    rows.push(Row {
        name: "sendrawtransaction (1-in taproot key path)",
        value: sent.len() as f64 / start.elapsed().as_secs_f64(),
        unit: "tx/s",
        target: ">= 3,500 tx/s (Core)",
    });

    // Mine the block holding them.
    let start = Instant::now();
    let hashes = rpc.call(
        "generatetoaddress",
        &[json!(1), json!(server.faucet_address().to_string())],
    )?;
    let mine_ms = start.elapsed().as_secs_f64() * 1000.0;
    let block = rpc.call("getblock", &[hashes[0].clone()])?;
    let n_tx = block["nTx"].as_u64().unwrap_or(0);
    if n_tx != sent.len() as u64 + 1 {
        bail!(
            "the mined block holds {n_tx} transactions, expected {}",
            sent.len() + 1
        );
    }
    rows.push(Row {
        name: "mine a block of the spends",
        value: mine_ms,
        unit: "ms",
        target: "< 30 ms (Core ~15 ms for 2,000)",
    });

    // Restart on a chain of `blocks` blocks.
    let height = rpc.call("getblockcount", &[])?.as_u64().unwrap_or(0);
    let mut remaining = u64::from(args.blocks).saturating_sub(height);
    while remaining > 0 {
        let n = remaining.min(1_000);
        rpc.call(
            "generatetoaddress",
            &[json!(n), json!(server.faucet_address().to_string())],
        )?;
        remaining -= n;
    }
    let height = rpc.call("getblockcount", &[])?.as_u64().unwrap_or(0);
    drop(rpc);
    server.stop();
    drop(server);
    let start = Instant::now();
    let server = Server::start(ServerConfig::new(&datadir)).context("restarting the node")?;
    let rpc = client(&server)?;
    let after = rpc.call("getblockcount", &[])?.as_u64().unwrap_or(0);
    let restart = start.elapsed().as_secs_f64();
    if after != height {
        bail!("restart lost blocks: {height} before, {after} after");
    }
    rows.push(Row {
        name: if height >= 10_000 {
            "restart with 10,000+ blocks"
        } else {
            "restart (see --blocks)"
        },
        value: restart,
        unit: "s",
        target: "< 5 s",
    });
    server.stop();
    Ok(rows)
}

fn input(previous_output: OutPoint) -> TxIn {
    TxIn {
        previous_output,
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    }
}

fn get_tx(rpc: &RpcClient, txid: &Txid) -> anyhow::Result<Transaction> {
    let hex_tx: String = rpc.call_as("getrawtransaction", &[json!(txid.to_string())])?;
    Ok(deserialize_hex(&hex_tx)?)
}
