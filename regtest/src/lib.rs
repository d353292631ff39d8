//! An embedded Bitcoin regtest node.
//!
//! It enforces Bitcoin Core's consensus rules (scripts through Core's own interpreter, the
//! `bitcoinconsensus` crate) and Core's mempool policy, keeps a full transaction index and an
//! Electrum script-hash index, persists its blocks in a data directory, and serves them through
//! the Electrum protocol and a subset of Core's JSON-RPC (the servers are in this crate too).
//!
//! ```
//! use btcmpc_regtest::{Node, NodeConfig};
//! use bitcoin::ScriptBuf;
//!
//! let node = Node::open(NodeConfig::in_memory())?;
//! assert_eq!(node.tip().height, 0);
//! # Ok::<(), btcmpc_regtest::NodeError>(())
//! ```

pub mod chain;
pub mod electrum;
pub mod faucet;
pub mod harness;
pub mod node;
pub mod rpc;
pub mod rpc_client;
pub mod server;

pub use node::{
    AcceptInfo, Automine, AutomineMode, Confirmation, HistoryItem, MempoolEntry, Node, NodeConfig,
    NodeError, NodeEvent, ParseScriptHashError, Reject, ScriptHash, TipInfo, TxInfo, Utxo,
    UtxoEntry,
};
