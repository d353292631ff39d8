//! A job escrow from start to finish, offline: compile it, then build, sign, finalize and
//! verify both its claim and its refund with Bitcoin Core's interpreter.
//!
//! `cargo run -p btcmpc-contracts --example escrow`

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::{rand, Keypair, Secp256k1};
use bitcoin::{Amount, FeeRate, Network, OutPoint, ScriptBuf, TxOut};
use btcmpc_contracts::{
    sign_input, ClaimOrRefund, Contract, ContractFile, Height, InternalKey, Utxo,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secp = Secp256k1::new();
    let mut rng = rand::thread_rng();
    let party = Keypair::new(&secp, &mut rng);
    let service = Keypair::new(&secp, &mut rng);
    let k: [u8; 32] = rand::random();

    let contract = Contract::ClaimOrRefund(ClaimOrRefund {
        receiver: party.public_key(),
        sender: service.public_key(),
        hash: sha256::Hash::hash(&k),
        timeout: Height::new(850_000)?,
        internal_key: InternalKey::random_nums(&mut rng),
    });
    let file = ContractFile::new(contract, Network::Regtest)?;
    let escrow = file.compiled();
    println!("contract file:\n{}", file.to_json());

    // Pretend the service funded it with 20,000 sat.
    let utxo = Utxo {
        outpoint: OutPoint::null(),
        txout: TxOut {
            value: Amount::from_sat(20_000),
            script_pubkey: escrow.script_pubkey().clone(),
        },
    };
    let fee_rate = FeeRate::from_sat_per_vb(2).ok_or("fee rate")?;

    let to_party = ScriptBuf::new_p2tr(&secp, party.x_only_public_key().0, None);
    let (mut claim, summary) = escrow.build_claim(&utxo, &k, to_party, fee_rate)?;
    sign_input(&mut claim, 0, &party)?;
    let claim = escrow.finalize_and_verify(claim)?;
    println!(
        "claim  {} pays {} (fee {})",
        claim.compute_txid(),
        claim.output[0].value,
        summary.fee
    );

    let to_service = ScriptBuf::new_p2tr(&secp, service.x_only_public_key().0, None);
    let (mut refund, summary) = escrow.build_refund(&utxo, to_service, fee_rate)?;
    sign_input(&mut refund, 0, &service)?;
    let refund = escrow.finalize_and_verify(refund)?;
    println!(
        "refund {} pays {} (fee {}), valid from height {}",
        refund.compute_txid(),
        refund.output[0].value,
        summary.fee,
        refund.lock_time
    );
    Ok(())
}
