//! The node's faucet: a P2WPKH key kept in the datadir that receives the first 101 block
//! rewards and pays whoever asks (`btcmpc regtest faucet ADDR AMOUNT`, the `faucet` RPC).
//!
//! The embedded node has no wallet; this is the smallest thing that lets tests and demos get
//! coins: it selects mature outputs of its own script, signs a P2WPKH spend, submits it to the
//! mempool through the same checks as any transaction and mines one block.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{All, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    absolute, transaction, Address, Amount, BlockHash, CompressedPublicKey, Network, OutPoint,
    Script, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};
use tracing::info;

use crate::node::{Node, NodeError, Reject, ScriptHash};

/// Coinbase outputs need this many confirmations (counting the block that would spend them).
const COINBASE_MATURITY: u32 = 100;
/// The fee rate the faucet pays, in sat/vB.
const FEE_SAT_PER_VB: u64 = 2;
/// Change below this is left to the miner.
const MIN_CHANGE: Amount = Amount::from_sat(1_000);
/// File name of the key in the datadir.
pub const KEY_FILE: &str = "faucet.key";
/// Blocks mined to the faucet on first start (100 to mature the first reward, plus one).
pub const INITIAL_BLOCKS: u32 = 101;

/// Errors of the faucet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FaucetError {
    /// The key file could not be read or written.
    #[error("faucet key file {path}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The key file does not hold a 32-byte hex secret key.
    #[error("faucet key file {0} does not hold a valid secret key")]
    BadKey(PathBuf),
    /// Not enough mature coins.
    #[error("faucet has {available} in mature coins, cannot pay {requested} plus fee")]
    InsufficientFunds {
        /// What was asked for.
        requested: Amount,
        /// What the faucet can spend now.
        available: Amount,
    },
    /// The mempool refused the payment.
    #[error("faucet payment refused: {0}")]
    Rejected(Reject),
    /// Mining failed.
    #[error("faucet could not mine: {0}")]
    Node(#[from] NodeError),
}

/// The faucet key and the node it pays on.
pub struct Faucet {
    node: Node,
    secp: Secp256k1<All>,
    key: SecretKey,
    pubkey: CompressedPublicKey,
    script_pubkey: ScriptBuf,
    lock: Mutex<()>,
}

impl std::fmt::Debug for Faucet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faucet")
            .field("address", &self.address().to_string())
            .finish()
    }
}

impl Faucet {
    /// The faucet of `node`, paying with `key` (see [`load_or_create_key`]).
    pub fn new(node: Node, key: SecretKey) -> Self {
        let secp = Secp256k1::new();
        let pubkey = CompressedPublicKey(key.public_key(&secp));
        let script_pubkey = ScriptBuf::new_p2wpkh(&pubkey.wpubkey_hash());
        Faucet {
            node,
            secp,
            key,
            pubkey,
            script_pubkey,
            lock: Mutex::new(()),
        }
    }

    /// The P2WPKH output script of a faucet key.
    pub fn script_pubkey_of(key: &SecretKey) -> ScriptBuf {
        let secp = Secp256k1::signing_only();
        let pubkey = CompressedPublicKey(key.public_key(&secp));
        ScriptBuf::new_p2wpkh(&pubkey.wpubkey_hash())
    }

    /// The faucet's address.
    pub fn address(&self) -> Address {
        Address::p2wpkh(&self.pubkey, Network::Regtest)
    }

    /// The faucet's output script.
    pub fn script_pubkey(&self) -> &Script {
        &self.script_pubkey
    }

    /// Mine up to height [`INITIAL_BLOCKS`] to the faucet if the chain is shorter (first start).
    ///
    /// # Errors
    ///
    /// [`FaucetError::Node`] when mining fails.
    pub fn ensure_initial_blocks(&self) -> Result<u32, FaucetError> {
        let height = self.node.tip().height;
        if height >= INITIAL_BLOCKS {
            return Ok(0);
        }
        let n = INITIAL_BLOCKS - height;
        self.node.generate_to_script(n, &self.script_pubkey)?;
        info!(target: "btcmpc_regtest::faucet", blocks = n, address = %self.address(), "mined initial blocks to the faucet");
        Ok(n)
    }

    /// What the faucet can spend now (mature, unspent, not spent in the mempool).
    pub fn balance(&self) -> Amount {
        self.spendable().iter().map(|(_, v)| *v).sum()
    }

    fn spendable(&self) -> Vec<(OutPoint, Amount)> {
        let next_height = self.node.tip().height + 1;
        let sh = ScriptHash::from_script(&self.script_pubkey);
        let mut coins: Vec<(OutPoint, Amount)> = self
            .node
            .utxos(&sh)
            .into_iter()
            .filter(|u| match self.node.utxo(&u.outpoint, true) {
                Some(e) if e.is_coinbase => e
                    .height
                    .is_some_and(|h| next_height - h >= COINBASE_MATURITY),
                Some(_) => true,
                None => false,
            })
            .map(|u| (u.outpoint, u.value))
            .collect();
        // Largest first: few inputs, and the coin set stays small.
        coins.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        coins
    }

    /// Pay `amount` to `script_pubkey` and mine one block (to the faucet) confirming it.
    ///
    /// # Errors
    ///
    /// [`FaucetError::InsufficientFunds`] when the mature coins do not cover it,
    /// [`FaucetError::Rejected`] if the mempool refuses the payment, [`FaucetError::Node`] if
    /// mining fails.
    pub fn pay(
        &self,
        script_pubkey: &Script,
        amount: Amount,
    ) -> Result<(Txid, BlockHash), FaucetError> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = self.build(script_pubkey, amount)?;
        let txid = self
            .node
            .send_raw_transaction(&tx, None)
            .map_err(FaucetError::Rejected)?;
        let hashes = self.node.generate_to_script(1, &self.script_pubkey)?;
        let block = hashes
            .first()
            .copied()
            .ok_or(FaucetError::Node(NodeError::ShutDown))?;
        info!(target: "btcmpc_regtest::faucet", %txid, %amount, "faucet paid");
        Ok((txid, block))
    }

    fn build(&self, script_pubkey: &Script, amount: Amount) -> Result<Transaction, FaucetError> {
        let coins = self.spendable();
        let available: Amount = coins.iter().map(|(_, v)| *v).sum();
        let out_size = |spk: &Script| 8 + 1 + spk.len() as u64;
        // vsize: 10.5 overhead (rounded up), 68 per P2WPKH input, outputs as serialized.
        let vsize = |n_in: usize, change: bool| {
            11 + 68 * n_in as u64
                + out_size(script_pubkey)
                + if change {
                    out_size(&self.script_pubkey)
                } else {
                    0
                }
        };
        let mut selected = Vec::new();
        let mut total = Amount::ZERO;
        for (op, v) in coins {
            selected.push((op, v));
            total += v;
            let fee = Amount::from_sat(vsize(selected.len(), true) * FEE_SAT_PER_VB);
            if total >= amount + fee {
                break;
            }
        }
        let fee_with_change = Amount::from_sat(vsize(selected.len(), true) * FEE_SAT_PER_VB);
        if total < amount + fee_with_change {
            return Err(FaucetError::InsufficientFunds {
                requested: amount,
                available,
            });
        }
        let change = total - amount - fee_with_change;
        let mut output = vec![TxOut {
            value: amount,
            script_pubkey: script_pubkey.to_owned(),
        }];
        if change >= MIN_CHANGE {
            output.push(TxOut {
                value: change,
                script_pubkey: self.script_pubkey.clone(),
            });
        }
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: selected
                .iter()
                .map(|(op, _)| TxIn {
                    previous_output: *op,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output,
        };
        let mut cache = SighashCache::new(&mut tx);
        let mut witnesses = Vec::with_capacity(selected.len());
        for (i, (_, value)) in selected.iter().enumerate() {
            let sighash = cache
                .p2wpkh_signature_hash(i, &self.script_pubkey, *value, EcdsaSighashType::All)
                .map_err(|_| FaucetError::BadKey(PathBuf::from(KEY_FILE)))?;
            let msg = Message::from_digest(sighash.to_byte_array());
            let sig = bitcoin::ecdsa::Signature::sighash_all(self.secp.sign_ecdsa(&msg, &self.key));
            witnesses.push(Witness::p2wpkh(&sig, &self.pubkey.0));
        }
        for (input, w) in tx.input.iter_mut().zip(witnesses) {
            input.witness = w;
        }
        Ok(tx)
    }
}

/// The faucet key of `datadir` (`datadir/faucet.key`), created on first use; `None` gives a
/// fresh key kept in memory only.
///
/// # Errors
///
/// [`FaucetError::Io`] or [`FaucetError::BadKey`] when the key file cannot be used.
pub fn load_or_create_key(datadir: Option<&Path>) -> Result<SecretKey, FaucetError> {
    match datadir {
        None => Ok(SecretKey::new(&mut bitcoin::secp256k1::rand::thread_rng())),
        Some(dir) => key_file(&dir.join(KEY_FILE)),
    }
}

fn key_file(path: &Path) -> Result<SecretKey, FaucetError> {
    let io = |source| FaucetError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut bytes)
                .map_err(|_| FaucetError::BadKey(path.to_path_buf()))?;
            SecretKey::from_slice(&bytes).map_err(|_| FaucetError::BadKey(path.to_path_buf()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::new(&mut bitcoin::secp256k1::rand::thread_rng());
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            crate::server::write_private_file(path, hex::encode(key.secret_bytes()).as_bytes())
                .map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}
