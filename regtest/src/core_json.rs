//! Bitcoin Core's JSON shapes (blocks, headers, transactions, scripts, mempool entries,
//! amounts), rendered once for both servers.

use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::Hash as _;
use bitcoin::{Address, Amount, Block, BlockHash, FeeRate, Network, Script, Transaction, Txid};
use serde_json::{json, Map, Value};

use crate::node::{MempoolEntry, Node};
use crate::rpc::{code, RpcError};

/// An amount in BTC, as Core prints amounts.
pub(crate) fn btc(a: Amount) -> Value {
    json!(a.to_btc())
}

/// A fee rate in BTC/kvB, as Core prints fee rates.
pub(crate) fn btc_per_kvb(rate: FeeRate) -> Value {
    // 1 sat/kwu = 4 sat/kvB.
    let sat_per_kvb = rate.to_sat_per_kwu().saturating_mul(4);
    json!(Amount::from_sat(sat_per_kvb).to_btc())
}

/// `getblockchaininfo`'s object.
pub(crate) fn blockchain_info(node: &Node) -> Value {
    let tip = node.tip();
    let target = tip.header.target();
    json!({
        "chain": "regtest",
        "blocks": tip.height,
        "headers": tip.height,
        "bestblockhash": tip.hash.to_string(),
        "bits": format!("{:08x}", tip.header.bits.to_consensus()),
        "target": hex::encode(target.to_be_bytes()),
        "difficulty": target.difficulty_float(),
        "time": tip.time,
        "mediantime": tip.median_time_past,
        "verificationprogress": 1,
        "initialblockdownload": false,
        "chainwork": hex::encode(tip.chain_work.to_be_bytes()),
        "size_on_disk": 0,
        "pruned": false,
        "warnings": [],
    })
}

/// Median time past of a block (the median of its and its 10 ancestors' times).
pub(crate) fn median_time_past(node: &Node, header: &bitcoin::block::Header) -> u32 {
    let mut times = vec![header.time];
    let mut prev = header.prev_blockhash;
    while times.len() < 11 && prev != BlockHash::all_zeros() {
        match node.header_by_hash(&prev) {
            Some((h, _, _)) => {
                times.push(h.time);
                prev = h.prev_blockhash;
            }
            None => break,
        }
    }
    times.sort_unstable();
    times[times.len() / 2]
}

/// Chain work up to a block at `height` (every regtest block has the same target).
pub(crate) fn chain_work_hex(header: &bitcoin::block::Header, height: u32) -> String {
    let le = header.work().to_le_bytes();
    let mut low = [0u8; 16];
    low.copy_from_slice(&le[..16]);
    let per_block = u128::from_le_bytes(low);
    let total = per_block.saturating_mul(u128::from(height) + 1);
    format!("{total:064x}")
}

pub(crate) fn header_json(
    node: &Node,
    header: &bitcoin::block::Header,
    height: u32,
    in_best: bool,
    n_tx: usize,
) -> Value {
    let tip = node.tip();
    let hash = header.block_hash();
    let target = header.target();
    let mut o = Map::new();
    o.insert("hash".into(), json!(hash.to_string()));
    o.insert(
        "confirmations".into(),
        json!(if in_best {
            i64::from(tip.height) - i64::from(height) + 1
        } else {
            -1
        }),
    );
    o.insert("height".into(), json!(height));
    o.insert("version".into(), json!(header.version.to_consensus()));
    o.insert(
        "versionHex".into(),
        json!(format!("{:08x}", header.version.to_consensus())),
    );
    o.insert("merkleroot".into(), json!(header.merkle_root.to_string()));
    o.insert("time".into(), json!(header.time));
    o.insert("mediantime".into(), json!(median_time_past(node, header)));
    o.insert("nonce".into(), json!(header.nonce));
    o.insert(
        "bits".into(),
        json!(format!("{:08x}", header.bits.to_consensus())),
    );
    o.insert("target".into(), json!(hex::encode(target.to_be_bytes())));
    o.insert("difficulty".into(), json!(target.difficulty_float()));
    o.insert("chainwork".into(), json!(chain_work_hex(header, height)));
    o.insert("nTx".into(), json!(n_tx));
    if header.prev_blockhash != BlockHash::all_zeros() {
        o.insert(
            "previousblockhash".into(),
            json!(header.prev_blockhash.to_string()),
        );
    }
    if in_best {
        if let Some(next) = node.block_hash(height + 1) {
            o.insert("nextblockhash".into(), json!(next.to_string()));
        }
    }
    Value::Object(o)
}

pub(crate) fn block_json(
    node: &Node,
    block: &Block,
    height: u32,
    in_best: bool,
    verbosity: u64,
) -> Value {
    let mut v = header_json(node, &block.header, height, in_best, block.txdata.len());
    let strippedsize = bitcoin::consensus::encode::serialize(&block.header).len()
        + bitcoin::VarInt(block.txdata.len() as u64).size()
        + block.txdata.iter().map(|t| t.base_size()).sum::<usize>();
    if let Some(o) = v.as_object_mut() {
        o.insert("strippedsize".into(), json!(strippedsize));
        o.insert("size".into(), json!(block.total_size()));
        o.insert("weight".into(), json!(block.weight().to_wu()));
        let txs: Vec<Value> = if verbosity >= 2 {
            block.txdata.iter().map(|t| tx_json(t, true)).collect()
        } else {
            block
                .txdata
                .iter()
                .map(|t| json!(t.compute_txid().to_string()))
                .collect()
        };
        o.insert("tx".into(), Value::Array(txs));
    }
    v
}

pub(crate) fn raw_transaction(
    node: &Node,
    txid: &Txid,
    verbosity: u64,
    blockhash: Option<BlockHash>,
) -> Result<Value, RpcError> {
    let (tx, conf, in_active) = match blockhash {
        Some(bh) => {
            let (block, height) = node.block(&bh).ok_or_else(|| {
                RpcError::new(code::INVALID_ADDRESS_OR_KEY, "Block hash not found")
            })?;
            let pos = block
                .txdata
                .iter()
                .position(|t| t.compute_txid() == *txid)
                .ok_or_else(|| {
                    RpcError::new(
                        code::INVALID_ADDRESS_OR_KEY,
                        "No such transaction found in the provided block. Use gettransaction for wallet transactions.",
                    )
                })?;
            let hdr_height = node.header_by_hash(&bh).map_or(0, |(_, h, _)| h);
            let tx = block.txdata[pos].clone();
            (
                tx,
                Some((
                    bh,
                    height.unwrap_or(hdr_height),
                    block.header.time,
                    height.is_some(),
                )),
                Some(height.is_some()),
            )
        }
        None => {
            let info = node.transaction(txid).ok_or_else(|| {
                RpcError::new(
                    code::INVALID_ADDRESS_OR_KEY,
                    "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
                )
            })?;
            let conf = info
                .confirmation
                .map(|c| (c.block_hash, c.height, c.time, true));
            (info.tx, conf, None)
        }
    };
    if verbosity == 0 {
        return Ok(json!(serialize_hex(&tx)));
    }
    let mut v = tx_json(&tx, true);
    if let Some(o) = v.as_object_mut() {
        if let Some(active) = in_active {
            o.insert("in_active_chain".into(), json!(active));
        }
        if let Some((bh, height, time, active)) = conf {
            let tip = node.tip();
            o.insert("blockhash".into(), json!(bh.to_string()));
            o.insert(
                "confirmations".into(),
                json!(if active {
                    tip.height.saturating_sub(height) + 1
                } else {
                    0
                }),
            );
            o.insert("time".into(), json!(time));
            o.insert("blocktime".into(), json!(time));
        }
    }
    Ok(v)
}

/// Core's name of an output script's type (`GetTxnOutputType`).
pub(crate) fn script_type(spk: &Script) -> &'static str {
    let b = spk.as_bytes();
    if spk.is_p2pkh() {
        "pubkeyhash"
    } else if spk.is_p2sh() {
        "scripthash"
    } else if spk.is_p2wpkh() {
        "witness_v0_keyhash"
    } else if spk.is_p2wsh() {
        "witness_v0_scripthash"
    } else if spk.is_p2tr() {
        "witness_v1_taproot"
    } else if b == [0x51, 0x02, 0x4e, 0x73] {
        "anchor"
    } else if spk.is_witness_program() {
        "witness_unknown"
    } else if spk.is_op_return() {
        "nulldata"
    } else if spk.is_p2pk() {
        "pubkey"
    } else if spk.is_multisig() {
        "multisig"
    } else {
        "nonstandard"
    }
}

/// A script in Core's assembly notation (pushes of up to 4 bytes as numbers).
pub(crate) fn script_asm(script: &Script) -> String {
    use bitcoin::script::Instruction;
    let mut out: Vec<String> = Vec::new();
    for ins in script.instructions() {
        match ins {
            Ok(Instruction::PushBytes(p)) => {
                let bytes = p.as_bytes();
                if bytes.is_empty() {
                    out.push("0".into());
                } else if bytes.len() <= 4 {
                    // CScriptNum: little-endian, sign bit in the last byte.
                    let mut n: i64 = 0;
                    for (i, b) in bytes.iter().enumerate() {
                        n |= i64::from(*b) << (8 * i);
                    }
                    let last = bytes[bytes.len() - 1];
                    if last & 0x80 != 0 {
                        n &= !(0x80i64 << (8 * (bytes.len() - 1)));
                        n = -n;
                    }
                    out.push(n.to_string());
                } else {
                    out.push(hex::encode(bytes));
                }
            }
            Ok(Instruction::Op(op)) => {
                let code = op.to_u8();
                if (0x51..=0x60).contains(&code) {
                    out.push((code - 0x50).to_string());
                } else if code == 0x4f {
                    out.push("-1".into());
                } else {
                    out.push(op.to_string());
                }
            }
            Err(_) => {
                out.push("[error]".into());
                break;
            }
        }
    }
    out.join(" ")
}

pub(crate) fn script_pubkey_json(spk: &Script) -> Value {
    let mut o = Map::new();
    o.insert("asm".into(), json!(script_asm(spk)));
    o.insert("hex".into(), json!(hex::encode(spk.as_bytes())));
    if let Ok(addr) = Address::from_script(spk, Network::Regtest) {
        o.insert("address".into(), json!(addr.to_string()));
    }
    o.insert("type".into(), json!(script_type(spk)));
    Value::Object(o)
}

/// Core's `TxToUniv` (without `fee`, which needs the spent outputs).
pub(crate) fn tx_json(tx: &Transaction, include_hex: bool) -> Value {
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|input| {
            let mut o = Map::new();
            if tx.is_coinbase() {
                o.insert(
                    "coinbase".into(),
                    json!(hex::encode(input.script_sig.as_bytes())),
                );
            } else {
                o.insert(
                    "txid".into(),
                    json!(input.previous_output.txid.to_string()),
                );
                o.insert("vout".into(), json!(input.previous_output.vout));
                o.insert(
                    "scriptSig".into(),
                    json!({"asm": script_asm(&input.script_sig), "hex": hex::encode(input.script_sig.as_bytes())}),
                );
            }
            if !input.witness.is_empty() {
                o.insert(
                    "txinwitness".into(),
                    Value::Array(input.witness.iter().map(|w| json!(hex::encode(w))).collect()),
                );
            }
            o.insert("sequence".into(), json!(input.sequence.0));
            Value::Object(o)
        })
        .collect();
    let vout: Vec<Value> = tx
        .output
        .iter()
        .enumerate()
        .map(|(n, out)| {
            json!({
                "value": btc(out.value),
                "n": n,
                "scriptPubKey": script_pubkey_json(&out.script_pubkey),
            })
        })
        .collect();
    let mut o = Map::new();
    o.insert("txid".into(), json!(tx.compute_txid().to_string()));
    o.insert("hash".into(), json!(tx.compute_wtxid().to_string()));
    o.insert("version".into(), json!(tx.version.0));
    o.insert("size".into(), json!(tx.total_size()));
    o.insert("vsize".into(), json!(tx.vsize()));
    o.insert("weight".into(), json!(tx.weight().to_wu()));
    o.insert("locktime".into(), json!(tx.lock_time.to_consensus_u32()));
    o.insert("vin".into(), Value::Array(vin));
    o.insert("vout".into(), Value::Array(vout));
    if include_hex {
        o.insert("hex".into(), json!(serialize_hex(tx)));
    }
    Value::Object(o)
}

/// One member of Core's `testmempoolaccept` answer (`rpc/mempool.cpp`): `txid`, `wtxid`, the
/// package error if any, then the verdict (`None`: not fully validated, ids only). A fee
/// above `max_fee_rate` is `max-fee-exceeded` and leaves the members after it with their ids
/// only (`exit_early`).
pub(crate) fn accept_result_json(
    tx: &Transaction,
    result: Option<Result<crate::node::AcceptInfo, crate::node::Reject>>,
    package_error: Option<&str>,
    max_fee_rate: Option<FeeRate>,
    exit_early: &mut bool,
) -> Value {
    let mut o = Map::new();
    o.insert("txid".into(), json!(tx.compute_txid().to_string()));
    o.insert("wtxid".into(), json!(tx.compute_wtxid().to_string()));
    if let Some(e) = package_error {
        o.insert("package-error".into(), json!(e));
    }
    let result = match result {
        Some(r) if !*exit_early => r,
        _ => return Value::Object(o),
    };
    match result {
        Ok(info) => {
            let vsize = info.vsize.max(1);
            // sat/kvB of this transaction.
            let sat_per_kvb = info.fee.to_sat().saturating_mul(1000) / vsize;
            let too_high = max_fee_rate
                .is_some_and(|max| sat_per_kvb > max.to_sat_per_kwu().saturating_mul(4));
            if too_high {
                o.insert("allowed".into(), json!(false));
                o.insert("reject-reason".into(), json!("max-fee-exceeded"));
                *exit_early = true;
            } else {
                o.insert("allowed".into(), json!(true));
                o.insert("vsize".into(), json!(info.vsize));
                o.insert(
                    "fees".into(),
                    json!({
                        "base": btc(info.fee),
                        "effective-feerate": Amount::from_sat(sat_per_kvb).to_btc(),
                        "effective-includes": [info.wtxid.to_string()],
                    }),
                );
            }
        }
        Err(r) => {
            o.insert("allowed".into(), json!(false));
            o.insert("reject-reason".into(), json!(r.reason));
            if let Some(d) = &r.details {
                o.insert("reject-details".into(), json!(format!("{}, {d}", r.reason)));
            }
        }
    }
    Value::Object(o)
}

pub(crate) fn mempool_entry_json(e: &MempoolEntry) -> Value {
    json!({
        "vsize": e.vsize,
        "weight": e.weight,
        "time": e.time,
        "height": e.height,
        "descendantcount": e.descendant_count,
        "descendantsize": e.descendant_size,
        "ancestorcount": e.ancestor_count,
        "ancestorsize": e.ancestor_size,
        "wtxid": e.wtxid.to_string(),
        "fees": {
            "base": btc(e.fee),
            "modified": btc(e.fee),
            "ancestor": btc(e.ancestor_fees),
            "descendant": btc(e.descendant_fees),
        },
        "depends": e.depends.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "spentby": e.spent_by.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
        "bip125-replaceable": true,
        "unbroadcast": false,
    })
}
