//! `btcmpc contract`: the toolkit commands that need no chain (`compile`, `new`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use btcmpc_contracts::{
    compile_policy, parse_hash, parse_key, Anchor, Bond, ClaimOrRefund, Contract, ContractFile,
    InternalKey, Target,
};
use serde_json::{json, Value};

use crate::{args::HeightArg, global::Global, output::Report};

/// Arguments of `btcmpc contract`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Compile a Miniscript policy to a descriptor, address, script size and spend paths with
    /// their witness sizes. Keys are 33-byte compressed keys (66 hex).
    Compile(CompileArgs),
    /// Write a contract file (JSON) with policy, descriptor, address and parameters.
    New(NewArgs),
    #[command(flatten)]
    Chain(super::contract_chain::ChainCmd),
}

#[derive(Debug, clap::Args)]
struct CompileArgs {
    /// The policy, e.g. `or(pk(KEY),and(pk(KEY),after(1000)))`.
    policy: String,
    /// Compile to segwit v0 (`wsh`).
    #[arg(long, conflicts_with = "tr")]
    wsh: bool,
    /// Compile to taproot (`tr`, the default), with BIP341's NUMS point as internal key
    /// unless the compiler lifts a key of the policy into the key path.
    #[arg(long)]
    tr: bool,
}

#[derive(Debug, clap::Args)]
struct NewArgs {
    #[command(subcommand)]
    kind: NewKind,
}

/// Where the file goes and which internal key to use.
#[derive(Debug, clap::Args)]
struct FileArgs {
    /// Write the contract file here (default: `DATADIR/contracts/ADDRESS.json`).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct KeyArgs {
    /// A cooperative internal key (33-byte hex) the parties can sign for together; by
    /// default the internal key is the unspendable `H + rG` with a fresh `r` kept in the file.
    #[arg(long, value_name = "KEY")]
    cooperative_key: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum NewKind {
    /// Job escrow: the receiver claims with the preimage of HASH at any height; the sender is
    /// refunded from TIMEOUT on. Heights are absolute here (`+N` needs a chain connection).
    ClaimOrRefund {
        /// The receiver's (party's) key, 33-byte hex.
        #[arg(long)]
        receiver: String,
        /// The sender's (service's) key, 33-byte hex.
        #[arg(long)]
        sender: String,
        /// sha256 of the claim secret, 64 hex.
        #[arg(long)]
        hash: String,
        /// Absolute block height from which the refund is valid.
        #[arg(long, value_parser = crate::args::parse_height)]
        timeout: HeightArg,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        file: FileArgs,
    },
    /// Party bond: the party withdraws from EXIT on; K of the judges can slash at any time.
    Bond {
        /// The bonded party's key, 33-byte hex.
        #[arg(long)]
        party: String,
        /// The threshold, then the judge keys: `K,KEY,KEY,...`.
        #[arg(long, value_name = "K,KEY...")]
        judges: String,
        /// Absolute block height from which the party may exit.
        #[arg(long, value_parser = crate::args::parse_height)]
        exit: HeightArg,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        file: FileArgs,
    },
    /// Dataset anchor: a P2TR key-path output of the owner's anchor key.
    Anchor {
        /// The owner's anchor key, 33-byte hex.
        #[arg(long)]
        key: String,
        #[command(flatten)]
        file: FileArgs,
    },
}

/// Run `btcmpc contract`.
pub fn run(args: Args, global: &Global) -> anyhow::Result<Report> {
    match args.command {
        Command::Compile(a) => compile(a, global),
        Command::New(a) => new(a.kind, global),
        Command::Chain(c) => super::contract_chain::run(c, global),
    }
}

fn compile(args: CompileArgs, global: &Global) -> anyhow::Result<Report> {
    let target = if args.wsh { Target::Wsh } else { Target::Tr };
    let compiled = compile_policy(&args.policy, target)?;
    let network = global.network.network();
    let address = compiled.address(network).to_string();
    let descriptor = compiled.descriptor.to_string();
    let spk = compiled.descriptor.script_pubkey();
    let script_size = match target {
        Target::Wsh => compiled.paths.first().map_or(0, |p| p.script_size),
        Target::Tr => spk.len(),
    };
    let paths: Vec<Value> = compiled
        .paths
        .iter()
        .map(|p| {
            json!({
                "path": p.name,
                "miniscript": p.miniscript,
                "script_size": p.script_size,
                "witness_size": p.witness_size.to_wu(),
            })
        })
        .collect();
    let mut text = format!(
        "descriptor  {descriptor}\naddress     {address}\nscript size {script_size} bytes ({})\nspend paths:\n",
        match target {
            Target::Tr => "output script",
            Target::Wsh => "witness script",
        }
    );
    for p in &compiled.paths {
        let _ = writeln!(
            text,
            "  {:<8} witness {:>4} bytes  {}",
            p.name,
            p.witness_size.to_wu(),
            p.miniscript.as_deref().unwrap_or("(key path signature)")
        );
    }
    if !compiled.locks.is_empty() {
        text.push_str("locks:\n");
        for (lock, meaning) in &compiled.locks {
            let _ = writeln!(text, "  {lock:<20} {meaning}");
        }
    }
    text.push_str(
        "witness sizes are the largest of any spend of the path (72-byte ECDSA, 65-byte Schnorr signatures)\n",
    );
    let locks: Vec<Value> = compiled
        .locks
        .iter()
        .map(|(lock, meaning)| json!({"lock": lock, "meaning": meaning.to_string()}))
        .collect();
    let json = json!({
        "descriptor": descriptor,
        "address": address,
        "script_pubkey": spk.to_hex_string(),
        "script_size": script_size,
        "spend_paths": paths,
        "locks": locks,
    });
    Ok(Report::new(text, json))
}

fn internal_key(key: &KeyArgs) -> anyhow::Result<InternalKey> {
    Ok(match &key.cooperative_key {
        Some(k) => InternalKey::Cooperative(parse_key("--cooperative-key", k)?),
        None => InternalKey::random_nums(&mut bitcoin::secp256k1::rand::thread_rng()),
    })
}

fn parse_judges(text: &str) -> anyhow::Result<(usize, Vec<bitcoin::secp256k1::PublicKey>)> {
    let mut items = text.split(',').map(str::trim);
    let first = items.next().unwrap_or_default();
    let k: usize = first.parse().map_err(|_| {
        anyhow::anyhow!("--judges: the first item must be the threshold K, got {first:?}")
    })?;
    let keys = items
        .enumerate()
        .map(|(i, item)| parse_key(&format!("--judges key {}", i + 1), item))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        anyhow::bail!("--judges: no judge keys after the threshold {k}");
    }
    Ok((k, keys))
}

fn new(kind: NewKind, global: &Global) -> anyhow::Result<Report> {
    let (contract, file) = match kind {
        NewKind::ClaimOrRefund {
            receiver,
            sender,
            hash,
            timeout,
            key,
            file,
        } => (
            Contract::ClaimOrRefund(ClaimOrRefund {
                receiver: parse_key("--receiver", &receiver)?,
                sender: parse_key("--sender", &sender)?,
                hash: parse_hash("--hash", &hash)?,
                timeout: timeout.absolute("--timeout")?,
                internal_key: internal_key(&key)?,
            }),
            file,
        ),
        NewKind::Bond {
            party,
            judges,
            exit,
            key,
            file,
        } => {
            let (k, judges) = parse_judges(&judges)?;
            (
                Contract::Bond(Bond {
                    party: parse_key("--party", &party)?,
                    judges,
                    k,
                    exit: exit.absolute("--exit")?,
                    internal_key: internal_key(&key)?,
                }),
                file,
            )
        }
        NewKind::Anchor { key, file } => (
            Contract::Anchor(Anchor {
                key: parse_key("--key", &key)?,
            }),
            file,
        ),
    };
    let network = global.network.network();
    let contract_file = ContractFile::new(contract, network)?;
    let compiled = contract_file.compiled();
    let address = compiled.address(network).to_string();
    let path = match file.out {
        Some(p) => p,
        None => global
            .datadir()
            .join("contracts")
            .join(format!("{address}.json")),
    };
    write_new(&path, &contract_file.to_json())?;
    tracing::info!(target: "btcmpc::contract", file = %path.display(), %address, "contract file written");

    let descriptor = compiled.descriptor().to_string();
    let paths: Vec<Value> = compiled
        .spend_paths()
        .iter()
        .map(|p| {
            // The file's rendering, its weight under the name `contract compile` reports.
            let mut v = btcmpc_contracts::spend_path_json(p);
            if let Some(o) = v.as_object_mut() {
                if let Some(w) = o.remove("witness_weight") {
                    o.insert("witness_size".to_owned(), w);
                }
            }
            v
        })
        .collect();
    let mut text = format!(
        "{} contract written to {}\ndescriptor  {descriptor}\naddress     {address}\nspend paths:\n",
        compiled.contract().kind(),
        path.display()
    );
    for p in compiled.spend_paths() {
        let after = p
            .after
            .map(|h| format!("from height {h}"))
            .unwrap_or_else(|| "any height".to_owned());
        let _ = writeln!(
            text,
            "  {:<7} {:<18} witness {:>4} bytes",
            p.kind.name(),
            after,
            p.witness_weight.to_wu()
        );
    }
    let json = json!({
        "kind": compiled.contract().kind(),
        "descriptor": descriptor,
        "address": address,
        "file": path.display().to_string(),
        "spend_paths": paths,
    });
    Ok(Report::new(text, json))
}

/// Write `text` to a new file; never overwrite a contract file.
fn write_new(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create contract file {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write contract file {}", path.display()))
}
