//! Store a CSV file with a committee and print the dataset's ACL, as a program embedding the
//! owner role (no `btcmpc` binary involved): what `btcmpc owner store` and `btcmpc owner acl`
//! do, through the library.
//!
//! ```text
//! cargo run -p btcmpc-engine --example store_csv -- \
//!     WALLET_DIR ELECTRUM_URL MANIFEST.json FILE.csv NAME [COLUMN,COLUMN,...]
//! ```
//!
//! The optional last argument stores only the named columns (as `owner store --columns`).
//!
//! `WALLET_DIR` is a regtest wallet made by `btcmpc wallet create` (`DATADIR/wallet`) with
//! funds for the STORE transaction; the committee's daemons (`btcmpc party run`) must be up.

use std::path::Path;
use std::time::Duration;

use btcmpc_engine::mpc::csv::{Dataset, ReadOptions};
use btcmpc_engine::mpc::field::Secp256k1Scalar;
use btcmpc_engine::node::acl;
use btcmpc_engine::node::acl_ops::store_dataset;
use btcmpc_engine::node::chain::{ChainView, ElectrumView};
use btcmpc_engine::node::manifest::{verify_manifest, Manifest};
use btcmpc_engine::node::noise::StaticKeypair;
use btcmpc_engine::node::owner::{Owner, StoreOptions};
use btcmpc_engine::node::wire::StoreCommit;
use btcmpc_wallet::{ChainClient, FeeChoice, RoleWallet};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (wallet_dir, electrum, manifest, file, name, only) = match &args[..] {
        [w, e, m, f, n] => (w, e, m, f, n, None),
        [w, e, m, f, n, c] => (
            w,
            e,
            m,
            f,
            n,
            Some(c.split(',').map(str::to_owned).collect()),
        ),
        _ => {
            return Err(
                "usage: store_csv WALLET_DIR ELECTRUM_URL MANIFEST.json FILE.csv NAME \
                 [COLUMN,COLUMN,...]"
                    .into(),
            )
        }
    };
    let network = bitcoin::Network::Regtest;
    let chain = ChainClient::connect_for(electrum, network, false, Duration::from_secs(30))?;
    // Every client checks the committee's bonds on chain before it trusts it.
    let manifest = Manifest::load(Path::new(manifest))?;
    verify_manifest(&manifest, &ElectrumView::new(&chain))?.ok()?;

    let read = ReadOptions { columns: only };
    let dataset = Dataset::from_bytes_with(&std::fs::read(file)?, &read)?;
    let owner = Owner::new(manifest, StaticKeypair::generate()?);
    let options = StoreOptions::new(name);
    let rt = tokio::runtime::Runtime::new()?;
    let shared = rt.block_on(owner.store_shares::<Secp256k1Scalar>(&dataset, &options, None))?;
    println!("shares held by parties {:?}", shared.holders);

    let mut wallet = RoleWallet::open(Path::new(wallet_dir), network)?;
    wallet.sync(&chain)?;
    let columns = dataset.schema.column_names();
    let dir = Path::new(wallet_dir).join("..");
    let fee = FeeChoice::Explicit(bitcoin::FeeRate::from_sat_per_vb(2).ok_or("fee rate")?);
    let d = store_dataset(
        &mut wallet,
        &chain,
        &dir,
        name,
        &columns,
        shared.receipts_root,
        fee,
    )?;
    let mut session = [0u8; 32];
    hex::decode_to_slice(&shared.session, &mut session)?;
    let commit = StoreCommit {
        session,
        store_outpoint: d.store_outpoint.clone(),
        anchor_key: d.anchor_key.clone(),
        dataset_id: d.dataset_id.clone(),
    };
    let confirmed = rt.block_on(owner.commit(
        &shared.holders,
        &commit,
        options.channel,
        options.party_timeout,
    ))?;
    println!(
        "dataset {} ({}) committed at parties {confirmed:?}",
        d.name, d.dataset_id
    );

    // The ACL, read from the anchor's spend chain.
    let view = ElectrumView::new(&chain);
    let mut state = acl::start(
        &view,
        d.store_outpoint()?,
        d.anchor_key()?,
        acl::DEFAULT_ACL_MIN_CONF,
    )?;
    while acl::follow(&mut state, &view, acl::MAX_STEPS_PER_CALL)? == acl::MAX_STEPS_PER_CALL {}
    let table = state.table(view.tip()?);
    println!("ACL: {} services", table.len());
    for (service, access) in table {
        println!("  {service}  {access:?}");
    }
    Ok(())
}
