//! An embedded Bitcoin regtest node.
//!
//! It enforces Bitcoin Core's consensus rules (scripts through Core's own interpreter, the
//! `bitcoinconsensus` crate) and Core's mempool policy, keeps a full transaction index and an
//! Electrum script-hash index, persists its blocks in a data directory, and serves them through
//! the Electrum protocol and a subset of Core's JSON-RPC (the servers are in this crate too).
//!
//! The chain itself is [`Node`] (module [`node`], consensus and mempool in [`chain`]); the
//! servers, the faucet and the test harness (module `harness`, behind the cargo feature `harness`)
//! build on it.
//!
//! ```
//! use bitcoin::{Amount, ScriptBuf, WScriptHash};
//! use bitcoin::hashes::Hash;
//! use btcmpc_regtest::{Node, NodeConfig, ScriptHash};
//!
//! let node = Node::open(NodeConfig::in_memory())?;
//! let spk = ScriptBuf::new_p2wsh(&WScriptHash::all_zeros());
//! node.generate_to_script(101, &spk)?;
//! assert_eq!(node.tip().height, 101);
//! let (confirmed, _) = node.balance(&ScriptHash::from_script(&spk));
//! assert_eq!(confirmed, 101 * Amount::from_btc(50.0).unwrap().to_sat() as i64);
//! # Ok::<(), btcmpc_regtest::NodeError>(())
//! ```

pub(crate) mod automine;
pub mod chain;
pub(crate) mod core_json;
pub mod electrum;
pub mod faucet;
#[cfg(feature = "harness")]
pub mod harness;
pub mod limits;
pub mod node;
pub mod ports;
pub mod rpc;
pub mod rpc_client;
pub mod server;
pub mod types;

pub use limits::Limits;
pub use node::{
    AcceptInfo, Automine, AutomineMode, Confirmation, HistoryItem, MempoolEntry, Node, NodeConfig,
    NodeError, NodeEvent, ParseScriptHashError, Reject, ScriptHash, TipInfo, TxInfo, Utxo,
    UtxoEntry,
};
