//! `btcmpc contract fund|status|claim|refund|exit|slash|sign-psbt|broadcast-psbt`: contracts on
//! chain, through the datadir's wallet.
//!
//! Every spend is built by the contracts crate, signed with the wallet's contract keys,
//! finalized with rust-miniscript and checked by Bitcoin Core's script interpreter before it
//! is broadcast; a refused spend prints the reason and is not broadcast.
//!
//! Slash PSBTs are passed between judges as carrier files (version 1, see
//! `btcmpc_contracts::encode_carrier`). Nothing in them is trusted: `sign-psbt` and
//! `broadcast-psbt` take the bond file the judge holds and the slash terms (victim, penalty,
//! fee rate) on the judge's own command line, rebuild the canonical slash from the judge's own
//! chain view, and refuse any PSBT that differs from it, naming the first difference.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context as _};
use bitcoin::psbt::Psbt;
use bitcoin::OutPoint;
use btcmpc_contracts::{
    decode_carrier, encode_carrier, Contract, ContractFile, SlashSummary, SlashTerms,
};
use btcmpc_wallet::{
    contract_status, ChainClient, ClaimRules, ContractStatus, EscrowPromise, FeeChoice, RoleWallet,
    SpendStatus,
};
use serde_json::{json, Value};

use crate::args::{parse_amount, parse_fee_rate};
use crate::cmd::wallet::{connect, open, open_if_any, open_synced};
use crate::{global::Global, output::Report};

/// The chain-facing contract commands.
#[derive(Debug, clap::Subcommand)]
pub enum ChainCmd {
    /// Pay AMOUNT into the contract's output from this wallet.
    Fund {
        /// The contract file.
        file: PathBuf,
        /// Amount with its unit: `50000sat`, `0.0005btc`.
        #[arg(value_parser = parse_amount)]
        amount: bitcoin::Amount,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Funding, confirmations, and what spent the output (with a claim's preimage).
    Status {
        /// The contract file.
        file: PathBuf,
    },
    /// Claim an escrow with the preimage of its hash (the receiver's wallet).
    Claim {
        /// The contract file.
        file: PathBuf,
        /// The 32-byte secret, 64 hex.
        #[arg(long)]
        preimage: String,
        /// The escrow output you were promised, `TXID:VOUT`; no other output is claimed.
        #[arg(long, value_name = "TXID:VOUT")]
        outpoint: String,
        /// The amount you were promised; the output must hold at least this.
        #[arg(long, value_name = "AMOUNT", value_parser = parse_amount)]
        amount: bitcoin::Amount,
        /// Confirmations the output needs (default: `escrow_min_conf`, 1 on regtest, 3 on
        /// signet/testnet, 6 on mainnet). Regtest only.
        #[arg(long, value_name = "N")]
        min_conf: Option<u32>,
        /// Blocks kept before the timeout: refused unless `tip + N <= timeout` (default 2 on
        /// regtest, 6 elsewhere). Regtest only.
        #[arg(long, value_name = "N")]
        claim_margin: Option<u32>,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Refund an escrow to the sender's wallet (valid once the tip is at least the timeout).
    Refund {
        /// The contract file.
        file: PathBuf,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Take a bond back to the party's wallet (valid once the tip is at least the exit height).
    Exit {
        /// The bond's contract file.
        file: PathBuf,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Build the canonical slash of a bond's live output paying ADDR, sign it with this
    /// wallet's judge key if it holds one, and write the PSBT carrier for the other judges.
    Slash {
        /// The bond's contract file.
        file: PathBuf,
        #[command(flatten)]
        terms: TermsArg,
        /// Where to write the PSBT carrier.
        #[arg(long, value_name = "F")]
        psbt_out: PathBuf,
    },
    /// Check a slash PSBT carrier against the canonical slash rebuilt from your own bond file,
    /// your own chain view and the terms you give, then add this wallet's judge signature (in
    /// place). Any difference is refused and named.
    SignPsbt {
        /// The PSBT carrier file.
        psbt: PathBuf,
        /// The bond's contract file (the one you hold, not one from the PSBT).
        #[arg(long, value_name = "FILE")]
        bond: PathBuf,
        #[command(flatten)]
        terms: TermsArg,
    },
    /// Check a slash PSBT carrier as `sign-psbt` does, finalize it with k judge signatures,
    /// check it with Core's interpreter and broadcast it.
    BroadcastPsbt {
        /// The PSBT carrier file.
        psbt: PathBuf,
        /// The bond's contract file (the one you hold, not one from the PSBT).
        #[arg(long, value_name = "FILE")]
        bond: PathBuf,
        #[command(flatten)]
        terms: TermsArg,
    },
}

/// The slash terms a judge fixes itself: `--to ADDR [--amount AMOUNT] --fee-rate R`.
#[derive(Debug, clap::Args)]
pub struct TermsArg {
    /// The victim's address.
    #[arg(long, value_name = "ADDR")]
    to: String,
    /// The penalty (default: the whole bond less the fee); the rest returns to the bond.
    #[arg(long, value_name = "AMOUNT", value_parser = parse_amount)]
    amount: Option<bitcoin::Amount>,
    /// The slash fee rate in sat/vB (the roster's; every judge must give the same).
    #[arg(long, value_name = "R", value_parser = parse_fee_rate)]
    fee_rate: bitcoin::FeeRate,
}

impl TermsArg {
    fn terms(&self, wallet: &RoleWallet) -> anyhow::Result<SlashTerms> {
        Ok(SlashTerms {
            victim: wallet.parse_address(&self.to)?.script_pubkey(),
            penalty: self.amount,
            fee_rate: self.fee_rate,
        })
    }
}

/// `--fee-rate R` in sat/vB.
#[derive(Debug, clap::Args)]
pub struct FeeArg {
    /// Fee rate in sat/vB, paid as given (default: the server's estimate, at least 1 sat/vB,
    /// refused above 200 sat/vB or above 10% of the amount moved).
    #[arg(long, value_name = "R", value_parser = parse_fee_rate)]
    fee_rate: Option<bitcoin::FeeRate>,
}

impl FeeArg {
    /// The rate given, or the server's estimate (bounded by the wallet's fee policy when the
    /// transaction is built).
    fn choice(&self, chain: &ChainClient) -> anyhow::Result<FeeChoice> {
        crate::cmd::party::fee_rate(self.fee_rate, chain)
    }
}

fn load(path: &Path, global: &Global) -> anyhow::Result<ContractFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = ContractFile::from_json(&text)
        .with_context(|| format!("contract file {}", path.display()))?;
    if file.network() != global.network.network() {
        bail!(
            "contract file {} is for {}, not {} (use --network)",
            path.display(),
            file.network(),
            global.network.network()
        );
    }
    Ok(file)
}

fn parse_preimage(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes =
        hex::decode(text.trim()).map_err(|e| anyhow::anyhow!("--preimage is not hex: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        anyhow::anyhow!(
            "--preimage must be 32 bytes (64 hex), got {} bytes",
            b.len()
        )
    })
}

fn tx_report(kind: &str, txid: bitcoin::Txid) -> Report {
    Report::new(
        format!("{kind} broadcast: {txid}"),
        json!({"txid": txid.to_string()}),
    )
}

fn read_psbt(path: &Path) -> anyhow::Result<Psbt> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > btcmpc_contracts::MAX_CARRIER_LEN as u64 {
        bail!(
            "{}: {} bytes is more than a slash carrier may have",
            path.display(),
            meta.len()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    decode_carrier(&text).with_context(|| path.display().to_string())
}

fn write_psbt(path: &Path, psbt: &Psbt) -> anyhow::Result<()> {
    btcmpc_wallet::fs::write_atomic(path, encode_carrier(psbt).as_bytes(), 0o644)
        .with_context(|| format!("writing {}", path.display()))
}

fn parse_outpoint(text: &str) -> anyhow::Result<OutPoint> {
    OutPoint::from_str(text.trim())
        .map_err(|e| anyhow::anyhow!("--outpoint {text:?} is not TXID:VOUT: {e}"))
}

fn load_bond(path: &Path, global: &Global) -> anyhow::Result<ContractFile> {
    let file = load(path, global)?;
    if !matches!(file.contract(), Contract::Bond(_)) {
        bail!(
            "{} is a {} contract; only bonds can be slashed",
            path.display(),
            file.contract().kind()
        );
    }
    Ok(file)
}

/// Where a slash's money goes, one line.
fn slash_line(s: &SlashSummary, to: &str) -> String {
    format!(
        "slash of {} ({} sat): {} sat to {to}, {} sat back to the bond, fee {} sat",
        s.outpoint,
        s.bond.to_sat(),
        s.paid.to_sat(),
        s.remainder.to_sat(),
        s.fee.to_sat()
    )
}

fn slash_json(s: &SlashSummary) -> serde_json::Value {
    json!({"outpoint": s.outpoint.to_string(), "bond_sat": s.bond.to_sat(),
        "penalty_sat": s.paid.to_sat(), "remainder_sat": s.remainder.to_sat(),
        "fee_sat": s.fee.to_sat()})
}

/// Run a chain-facing contract command.
pub fn run(cmd: ChainCmd, global: &Global) -> anyhow::Result<Report> {
    match cmd {
        ChainCmd::Fund { file, amount, fee } => {
            let contract = load(&file, global)?;
            let (mut wallet, chain) = open_synced(global)?;
            let op = wallet.fund_contract_file(&chain, &contract, amount, fee.choice(&chain)?)?;
            Ok(Report::new(
                format!(
                    "funded {} with {amount}: {op}",
                    contract.compiled().address(contract.network())
                ),
                json!({"txid": op.txid.to_string(), "vout": op.vout}),
            ))
        }
        ChainCmd::Status { file } => {
            let contract = load(&file, global)?;
            let wallet = open_if_any(global)?;
            let chain = connect(global)?;
            // With a wallet: its own fundings and spends are shown even if the server forgot
            // them.
            let st = match &wallet {
                Some(w) => w.contract_status(&chain, &contract)?,
                None => contract_status(&chain, contract.compiled(), None)?,
            };
            let locks: Vec<_> = contract
                .compiled()
                .spend_paths()
                .iter()
                .filter_map(|p| {
                    p.after
                        .map(|h| json!({"path": p.kind.name(), "height": h.to_u32()}))
                })
                .collect();
            let mut text = format!(
                "contract {} ({}) at tip {}\n",
                contract.compiled().address(contract.network()),
                contract.contract().kind(),
                st.tip
            );
            match &st.funding {
                None => text.push_str("  not funded\n"),
                Some(f) => text.push_str(&format!(
                    "  funded:  {} with {} sat, {} confirmation(s)\n",
                    f.outpoint,
                    f.value.to_sat(),
                    f.confirmations
                )),
            }
            match &st.spend {
                None if st.funding.is_some() => text.push_str("  unspent\n"),
                None => {}
                Some(s) => {
                    text.push_str(&format!(
                        "  spent:   by {} ({}), {} confirmation(s)\n",
                        s.txid,
                        path_name(s),
                        s.confirmations
                    ));
                    if let Some(p) = &s.preimage {
                        text.push_str(&format!("  preimage: {}\n", hex::encode(p)));
                    }
                }
            }
            if st.outputs.len() > 1 {
                text.push_str("  outputs paying the contract:\n");
                for o in &st.outputs {
                    let state = match &o.spend {
                        None => "unspent".to_owned(),
                        Some(s) => format!("spent by {} ({})", s.txid, path_name(s)),
                    };
                    text.push_str(&format!(
                        "    {} {} sat, {} confirmation(s), {state}\n",
                        o.outpoint,
                        o.value.to_sat(),
                        o.confirmations
                    ));
                }
            }
            for l in &locks {
                text.push_str(&format!(
                    "  {} valid from tip {}\n",
                    l["path"].as_str().unwrap_or("?"),
                    l["height"]
                ));
            }
            let mut j = status_json(&st);
            j["timelocks"] = json!(locks);
            j["address"] = json!(contract.compiled().address(contract.network()).to_string());
            Ok(Report::new(text, j))
        }
        ChainCmd::Claim {
            file,
            preimage,
            outpoint,
            amount,
            min_conf,
            claim_margin,
            fee,
        } => {
            let network = global.network.network();
            if (min_conf.is_some() || claim_margin.is_some())
                && network != bitcoin::Network::Regtest
            {
                bail!("--min-conf and --claim-margin are for regtest only, not {network}");
            }
            let contract = load(&file, global)?;
            let preimage = parse_preimage(&preimage)?;
            let promise = EscrowPromise {
                outpoint: parse_outpoint(&outpoint)?,
                amount,
            };
            let mut rules = ClaimRules::for_network(network);
            rules.min_conf = min_conf.unwrap_or(rules.min_conf);
            rules.margin = claim_margin.unwrap_or(rules.margin);
            let (mut wallet, chain) = open_synced(global)?;
            let txid = wallet.claim(
                &chain,
                &contract,
                &preimage,
                &promise,
                &rules,
                fee.choice(&chain)?,
            )?;
            Ok(tx_report("claim", txid))
        }
        ChainCmd::Refund { file, fee } => {
            let contract = load(&file, global)?;
            let (mut wallet, chain) = open_synced(global)?;
            let txid = wallet.refund(&chain, &contract, fee.choice(&chain)?)?;
            Ok(tx_report("refund", txid))
        }
        ChainCmd::Exit { file, fee } => {
            let contract = load(&file, global)?;
            let (mut wallet, chain) = open_synced(global)?;
            let txid = wallet.exit_bond(&chain, &contract, fee.choice(&chain)?)?;
            Ok(tx_report("exit", txid))
        }
        ChainCmd::Slash {
            file,
            terms,
            psbt_out,
        } => {
            let contract = load_bond(&file, global)?;
            let Contract::Bond(bond) = contract.contract() else {
                unreachable!("load_bond checked the kind")
            };
            let (wallet, chain) = open_synced(global)?;
            let t = terms.terms(&wallet)?;
            let (mut psbt, summary) = wallet.slash_psbt(&chain, &contract, &t)?;
            let signed = match wallet.sign_checked_slash(&contract, &mut psbt) {
                Ok(n) => n,
                // A wallet holding no judge key writes the PSBT unsigned for the judges.
                Err(btcmpc_wallet::WalletError::Contract(
                    btcmpc_wallet::ContractError::NoJudgeKey,
                )) => 0,
                Err(e) => return Err(e.into()),
            };
            write_psbt(&psbt_out, &psbt)?;
            let mut j = slash_json(&summary);
            j["psbt"] = json!(psbt_out.display().to_string());
            j["signatures"] = json!(signed);
            j["needed"] = json!(bond.k);
            Ok(Report::new(
                format!(
                    "{}\nslash PSBT written to {} ({signed} of {} judge signatures)",
                    slash_line(&summary, &terms.to),
                    psbt_out.display(),
                    bond.k
                ),
                j,
            ))
        }
        ChainCmd::SignPsbt {
            psbt: path,
            bond,
            terms,
        } => {
            let contract = load_bond(&bond, global)?;
            let mut psbt = read_psbt(&path)?;
            let wallet = open(global)?;
            let chain = connect(global)?;
            let t = terms.terms(&wallet)?;
            let (mut canonical, summary) = wallet.check_slash(&chain, &contract, &t, &psbt)?;
            // Where the money goes, before anything is signed.
            eprintln!("{}", slash_line(&summary, &terms.to));
            let added = wallet.sign_checked_slash(&contract, &mut canonical)?;
            psbt = canonical;
            write_psbt(&path, &psbt)?;
            let total = psbt.inputs[0].tap_script_sigs.len();
            let mut j = slash_json(&summary);
            j["psbt"] = json!(path.display().to_string());
            j["added"] = json!(added);
            j["signatures"] = json!(total);
            Ok(Report::new(
                format!(
                    "added {added} signature(s) to {}; it now has {total}",
                    path.display()
                ),
                j,
            ))
        }
        ChainCmd::BroadcastPsbt {
            psbt: path,
            bond,
            terms,
        } => {
            let contract = load_bond(&bond, global)?;
            let psbt = read_psbt(&path)?;
            let (mut wallet, chain) = open_synced(global)?;
            let t = terms.terms(&wallet)?;
            let (txid, summary) = wallet.broadcast_slash(&chain, &contract, &t, &psbt)?;
            let mut j = slash_json(&summary);
            j["txid"] = json!(txid.to_string());
            Ok(Report::new(
                format!(
                    "{}\nslash broadcast: {txid}",
                    slash_line(&summary, &terms.to)
                ),
                j,
            ))
        }
    }
}

/// The name of the path a spend took, or `unknown path`.
fn path_name(s: &SpendStatus) -> &'static str {
    s.path.map_or("unknown path", |p| p.name())
}

/// A spend as `contract status --json` prints it: `txid` (hex), `path` (`claim`, `refund`,
/// `exit`, `slash`, `key`, or null when not recognised), `preimage` (64 hex, or null), and
/// `confirmations`.
fn spend_json(s: &SpendStatus) -> Value {
    json!({
        "txid": s.txid.to_string(),
        "path": s.path.map(|p| p.name()),
        "preimage": s.preimage.map(hex::encode),
        "confirmations": s.confirmations,
    })
}

/// `contract status --json` without the file's own fields: `tip`, `funding` (`outpoint` as
/// `TXID:VOUT`, `value_sat`, `confirmations`, or null), `spend` (of the funding, or null) and
/// `outputs` (every output paying the contract, each with its `spend`).
fn status_json(st: &ContractStatus) -> Value {
    json!({
        "tip": st.tip,
        "funding": st.funding.as_ref().map(|f| json!({
            "outpoint": f.outpoint.to_string(),
            "value_sat": f.value.to_sat(),
            "confirmations": f.confirmations,
        })),
        "spend": st.spend.as_ref().map(spend_json),
        "outputs": st.outputs.iter().map(|o| json!({
            "outpoint": o.outpoint.to_string(),
            "value_sat": o.value.to_sat(),
            "confirmations": o.confirmations,
            "spend": o.spend.as_ref().map(spend_json),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Amount;
    use btcmpc_contracts::PathKind;
    use btcmpc_wallet::{FundingStatus, OutputStatus};

    /// The JSON of `contract status`, frozen: the text below is what serializing the wallet's
    /// status structs printed before the CLI built its own JSON (CLI.md documents it).
    #[test]
    fn status_json_keeps_its_field_names_and_formats() {
        let claim = SpendStatus {
            txid: "0202020202020202020202020202020202020202020202020202020202020202"
                .parse()
                .unwrap(),
            path: Some(PathKind::Claim),
            preimage: Some([0xab; 32]),
            confirmations: 2,
        };
        let op: OutPoint = "0101010101010101010101010101010101010101010101010101010101010101:1"
            .parse()
            .unwrap();
        let op2: OutPoint = "0303030303030303030303030303030303030303030303030303030303030303:0"
            .parse()
            .unwrap();
        let st = ContractStatus {
            tip: 105,
            funding: Some(FundingStatus {
                outpoint: op,
                value: Amount::from_sat(60_000),
                confirmations: 3,
            }),
            spend: Some(claim.clone()),
            outputs: vec![
                OutputStatus {
                    outpoint: op,
                    value: Amount::from_sat(60_000),
                    confirmations: 3,
                    spend: Some(claim),
                },
                OutputStatus {
                    outpoint: op2,
                    value: Amount::from_sat(1_000),
                    confirmations: 0,
                    spend: Some(SpendStatus {
                        txid: op.txid,
                        path: None,
                        preimage: None,
                        confirmations: 0,
                    }),
                },
                OutputStatus {
                    outpoint: op2,
                    value: Amount::from_sat(5),
                    confirmations: 0,
                    spend: None,
                },
            ],
        };
        let before: Value = serde_json::from_str(r#"{"tip":105,"funding":{"outpoint":"0101010101010101010101010101010101010101010101010101010101010101:1","value_sat":60000,"confirmations":3},"spend":{"txid":"0202020202020202020202020202020202020202020202020202020202020202","path":"claim","preimage":"abababababababababababababababababababababababababababababababab","confirmations":2},"outputs":[{"outpoint":"0101010101010101010101010101010101010101010101010101010101010101:1","value_sat":60000,"confirmations":3,"spend":{"txid":"0202020202020202020202020202020202020202020202020202020202020202","path":"claim","preimage":"abababababababababababababababababababababababababababababababab","confirmations":2}},{"outpoint":"0303030303030303030303030303030303030303030303030303030303030303:0","value_sat":1000,"confirmations":0,"spend":{"txid":"0101010101010101010101010101010101010101010101010101010101010101","path":null,"preimage":null,"confirmations":0}},{"outpoint":"0303030303030303030303030303030303030303030303030303030303030303:0","value_sat":5,"confirmations":0,"spend":null}]}"#).unwrap();
        assert_eq!(status_json(&st), before);
        let empty = ContractStatus {
            tip: 1,
            funding: None,
            spend: None,
            outputs: vec![],
        };
        assert_eq!(
            status_json(&empty),
            json!({"tip": 1, "funding": null, "spend": null, "outputs": []})
        );
    }
}
