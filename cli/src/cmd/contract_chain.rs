//! `btcmpc contract fund|status|claim|refund|exit|slash|sign-psbt|broadcast-psbt`: contracts on
//! chain, through the datadir's wallet.
//!
//! Every spend is built by the contracts crate, signed with the wallet's contract keys,
//! finalized with rust-miniscript and checked by Bitcoin Core's script interpreter before it
//! is broadcast; a refused spend prints the reason and is not broadcast.
//!
//! Slash PSBTs are passed between judges as base64 files that carry the bond's contract file
//! in a proprietary global field (prefix `btcmpc`, subtype 0), so `sign-psbt` and
//! `broadcast-psbt` need nothing but the PSBT.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context as _};
use bitcoin::psbt::{raw::ProprietaryKey, Psbt};
use btcmpc_contracts::{Contract, ContractFile};
use btcmpc_wallet::{contract_status, ChainClient, FeeChoice, DEFAULT_FEE_POLICY};
use serde_json::json;

use crate::args::{parse_amount, parse_fee_rate};
use crate::cmd::wallet::{connect, open, open_synced, FEE_FLOOR};
use crate::{global::Global, output::Report};

/// The chain-facing contract commands.
#[derive(Debug, clap::Subcommand)]
pub enum ChainCmd {
    /// Pay AMOUNT into the contract's output from this wallet.
    Fund {
        /// The contract file.
        file: PathBuf,
        /// Amount with its unit: `50000sat`, `0.0005btc`.
        amount: String,
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
    /// Build the canonical slash of a bond paying ADDR, sign it with this wallet's judge key if
    /// it holds one, and write the PSBT for the other judges.
    Slash {
        /// The bond's contract file.
        file: PathBuf,
        /// The victim's address.
        #[arg(long, value_name = "ADDR")]
        to: String,
        /// The penalty (default: the whole bond less the fee); the rest returns to the bond.
        #[arg(long, value_name = "AMOUNT")]
        amount: Option<String>,
        /// Where to write the PSBT (base64).
        #[arg(long, value_name = "F")]
        psbt_out: PathBuf,
        #[command(flatten)]
        fee: FeeArg,
    },
    /// Add this wallet's judge signature to a slash PSBT file (in place).
    SignPsbt {
        /// The PSBT file.
        psbt: PathBuf,
    },
    /// Finalize a slash PSBT with k judge signatures, check it with Core's interpreter and
    /// broadcast it.
    BroadcastPsbt {
        /// The PSBT file.
        psbt: PathBuf,
    },
}

/// `--fee-rate R` in sat/vB.
#[derive(Debug, clap::Args)]
pub struct FeeArg {
    /// Fee rate in sat/vB, paid as given (default: the server's estimate, at least 1 sat/vB,
    /// refused above 200 sat/vB or above 10% of the amount moved).
    #[arg(long, value_name = "R")]
    fee_rate: Option<String>,
}

impl FeeArg {
    /// The rate given, or the server's estimate (bounded by the wallet's fee policy when the
    /// transaction is built).
    fn choice(&self, chain: &ChainClient) -> anyhow::Result<FeeChoice> {
        match &self.fee_rate {
            Some(r) => Ok(FeeChoice::Explicit(parse_fee_rate(r)?)),
            None => Ok(chain.fee_rate(2, FEE_FLOOR)),
        }
    }

    /// As [`FeeArg::choice`], for a PSBT others sign: a server's estimate must be under the
    /// policy's absolute cap.
    fn rate(&self, chain: &ChainClient) -> anyhow::Result<bitcoin::FeeRate> {
        // A one-input, two-output taproot spend: the fee named in a refusal.
        const SLASH_VSIZE: u64 = 200;
        Ok(DEFAULT_FEE_POLICY.check_rate(self.choice(chain)?, SLASH_VSIZE)?)
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

fn contract_key() -> ProprietaryKey {
    ProprietaryKey {
        prefix: b"btcmpc".to_vec(),
        subtype: 0,
        key: Vec::new(),
    }
}

fn read_psbt(path: &Path) -> anyhow::Result<Psbt> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Psbt::from_str(text.trim()).with_context(|| format!("{} is not a base64 PSBT", path.display()))
}

fn write_psbt(path: &Path, psbt: &Psbt) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{psbt}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn psbt_contract(psbt: &Psbt, global: &Global) -> anyhow::Result<ContractFile> {
    let raw = psbt
        .proprietary
        .get(&contract_key())
        .context("the PSBT carries no btcmpc contract (write it with `btcmpc contract slash`)")?;
    let text = std::str::from_utf8(raw).context("the PSBT's contract field is not UTF-8")?;
    let file = ContractFile::from_json(text).context("the PSBT's contract field")?;
    if file.network() != global.network.network() {
        bail!(
            "the PSBT's contract is for {}, not {}",
            file.network(),
            global.network.network()
        );
    }
    Ok(file)
}

/// Run a chain-facing contract command.
pub fn run(cmd: ChainCmd, global: &Global) -> anyhow::Result<Report> {
    match cmd {
        ChainCmd::Fund { file, amount, fee } => {
            let contract = load(&file, global)?;
            let amount = parse_amount(&amount)?;
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
            let wallet = open(global).ok();
            let known = match &wallet {
                Some(w) => w.known_funding(&contract)?,
                None => None,
            };
            let chain = connect(global)?;
            let st = contract_status(&chain, contract.compiled(), known)?;
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
                    f.outpoint, f.value_sat, f.confirmations
                )),
            }
            match &st.spend {
                None if st.funding.is_some() => text.push_str("  unspent\n"),
                None => {}
                Some(s) => {
                    text.push_str(&format!(
                        "  spent:   by {} ({}), {} confirmation(s)\n",
                        s.txid,
                        s.path.as_deref().unwrap_or("unknown path"),
                        s.confirmations
                    ));
                    if let Some(p) = &s.preimage {
                        text.push_str(&format!("  preimage: {p}\n"));
                    }
                }
            }
            for l in &locks {
                text.push_str(&format!(
                    "  {} valid from tip {}\n",
                    l["path"].as_str().unwrap_or("?"),
                    l["height"]
                ));
            }
            let mut j = serde_json::to_value(&st).expect("status serializes");
            j["timelocks"] = json!(locks);
            j["address"] = json!(contract.compiled().address(contract.network()).to_string());
            Ok(Report::new(text, j))
        }
        ChainCmd::Claim {
            file,
            preimage,
            fee,
        } => {
            let contract = load(&file, global)?;
            let preimage = parse_preimage(&preimage)?;
            let (mut wallet, chain) = open_synced(global)?;
            let txid = wallet.claim(&chain, &contract, &preimage, fee.choice(&chain)?)?;
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
            to,
            amount,
            psbt_out,
            fee,
        } => {
            let contract = load(&file, global)?;
            let Contract::Bond(bond) = contract.contract() else {
                bail!(
                    "{} is a {} contract; only bonds can be slashed",
                    file.display(),
                    contract.contract().kind()
                );
            };
            let penalty = amount.as_deref().map(parse_amount).transpose()?;
            let (wallet, chain) = open_synced(global)?;
            let victim = wallet.parse_address(&to)?;
            let mut psbt = wallet.slash_psbt(
                &chain,
                &contract,
                victim.script_pubkey(),
                penalty,
                fee.rate(&chain)?,
            )?;
            psbt.proprietary
                .insert(contract_key(), contract.to_json().into_bytes());
            let signed = wallet.sign_slash(&mut psbt, &contract).unwrap_or(0);
            write_psbt(&psbt_out, &psbt)?;
            let pay = psbt.unsigned_tx.output[0].value;
            Ok(Report::new(
                format!(
                    "slash PSBT written to {} (pays {pay} to {to}; {signed} of {} judge signatures)",
                    psbt_out.display(),
                    bond.k
                ),
                json!({"psbt": psbt_out.display().to_string(), "penalty_sat": pay.to_sat(),
                    "signatures": signed, "needed": bond.k}),
            ))
        }
        ChainCmd::SignPsbt { psbt: path } => {
            let mut psbt = read_psbt(&path)?;
            let contract = psbt_contract(&psbt, global)?;
            let wallet = open(global)?;
            let added = wallet.sign_slash(&mut psbt, &contract)?;
            write_psbt(&path, &psbt)?;
            let total = psbt.inputs[0].tap_script_sigs.len();
            Ok(Report::new(
                format!(
                    "added {added} signature(s) to {}; it now has {total}",
                    path.display()
                ),
                json!({"psbt": path.display().to_string(), "added": added, "signatures": total}),
            ))
        }
        ChainCmd::BroadcastPsbt { psbt: path } => {
            let psbt = read_psbt(&path)?;
            let contract = psbt_contract(&psbt, global)?;
            let (mut wallet, chain) = open_synced(global)?;
            let txid = wallet.broadcast_slash(&chain, &contract, psbt)?;
            Ok(tx_report("slash", txid))
        }
    }
}
