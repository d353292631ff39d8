//! Helpers shared by the chain tests: keys, signed taproot key-path spends, timelocked
//! P2WSH outputs.
#![allow(dead_code)]

use bitcoin::hashes::Hash as _;
use bitcoin::key::{Keypair, Secp256k1, TapTweak, XOnlyPublicKey};
use bitcoin::secp256k1::{All, Message, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{
    absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use btcmpc_regtest::{Node, NodeConfig};

/// A taproot key (key path only).
pub struct Key {
    pub secp: Secp256k1<All>,
    pub keypair: Keypair,
    pub spk: ScriptBuf,
}

impl Key {
    pub fn new(seed: u8) -> Key {
        let secp = Secp256k1::new();
        let mut bytes = [0x11u8; 32];
        bytes[31] = seed;
        bytes[0] = seed.wrapping_add(1);
        let sk = SecretKey::from_slice(&bytes).expect("a valid secret key");
        let keypair = Keypair::from_secret_key(&secp, &sk);
        let (xonly, _) = XOnlyPublicKey::from_keypair(&keypair);
        let spk = ScriptBuf::new_p2tr(&secp, xonly, None);
        Key { secp, keypair, spk }
    }

    /// Signs every input (all must pay to this key) with SIGHASH_DEFAULT.
    pub fn sign(&self, tx: &mut Transaction, prevouts: &[TxOut]) {
        let tweaked = self.keypair.tap_tweak(&self.secp, None);
        let sigs: Vec<_> = (0..tx.input.len())
            .map(|i| {
                let mut cache = SighashCache::new(&*tx);
                let sighash = cache
                    .taproot_key_spend_signature_hash(
                        i,
                        &Prevouts::All(prevouts),
                        TapSighashType::Default,
                    )
                    .expect("sighash");
                let msg = Message::from_digest(sighash.to_byte_array());
                self.secp
                    .sign_schnorr_no_aux_rand(&msg, &tweaked.to_keypair())
            })
            .collect();
        for (input, sig) in tx.input.iter_mut().zip(sigs) {
            input.witness = Witness::from_slice(&[sig.as_ref()]);
        }
    }

    /// A signed version-2 spend of `prev` (paying to this key) to `outputs`.
    pub fn spend(&self, prev: &[(OutPoint, TxOut)], outputs: Vec<TxOut>) -> Transaction {
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: prev
                .iter()
                .map(|(op, _)| TxIn {
                    previous_output: *op,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs,
        };
        let prevouts: Vec<TxOut> = prev.iter().map(|(_, o)| o.clone()).collect();
        self.sign(&mut tx, &prevouts);
        tx
    }

    /// A one-in one-out spend paying `value - fee` back to `to`.
    pub fn pay(&self, op: OutPoint, value: Amount, fee: Amount, to: &ScriptBuf) -> Transaction {
        let prev = TxOut {
            value,
            script_pubkey: self.spk.clone(),
        };
        self.spend(
            &[(op, prev)],
            vec![TxOut {
                value: value - fee,
                script_pubkey: to.clone(),
            }],
        )
    }
}

/// A node in memory with 101 blocks mined to `key` (the first coinbase is mature).
pub fn funded_node(key: &Key) -> Node {
    let node = Node::open(NodeConfig::in_memory()).expect("in-memory node");
    node.generate_to_script(101, &key.spk).expect("mine");
    node
}

/// The coinbase output of the best chain's block at `height`.
pub fn coinbase(node: &Node, height: u32) -> (OutPoint, TxOut) {
    let hash = node.block_hash(height).expect("height in chain");
    let (block, _) = node.block(&hash).expect("block");
    let cb = &block.txdata[0];
    (OutPoint::new(cb.compute_txid(), 0), cb.output[0].clone())
}
