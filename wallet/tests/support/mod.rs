//! The regtest world shared by the wallet's chain tests: a node (embedded, or bitcoind +
//! electrs with `BITCOIND_EXE`/`ELECTRS_EXE`), an Electrum client, wallets in a temp dir.

#![allow(dead_code)] // not every test binary uses every helper

use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::rand::thread_rng;
use bitcoin::{Amount, Network};
use btcmpc_contracts::{ClaimOrRefund, Contract, ContractFile, Height, InternalKey};
use btcmpc_regtest::harness::{Restart, TestEnv};
use btcmpc_wallet::{ChainClient, RoleWallet};

/// How long a test waits for Electrum to catch up.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct World {
    pub env: TestEnv,
    pub chain: ChainClient,
    _dir: tempfile::TempDir,
    pub dir: std::path::PathBuf,
}

impl World {
    pub fn new() -> anyhow::Result<World> {
        let env = TestEnv::new()?;
        let chain = ChainClient::connect(&env.electrum_url(), Duration::from_secs(10))?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().to_path_buf();
        Ok(World {
            env,
            chain,
            _dir: dir,
            dir: path,
        })
    }

    /// A wallet with `sats` confirmed.
    pub fn wallet(&self, name: &str, sats: u64) -> anyhow::Result<RoleWallet> {
        let (mut w, _) = RoleWallet::create(&self.dir.join(name), Network::Regtest, None)?;
        if sats > 0 {
            self.env.fund(&w.next_address()?, Amount::from_sat(sats))?;
            self.settle()?;
        }
        w.sync(&self.chain)?;
        Ok(w)
    }

    /// Wait until Electrum has caught up with the node's tip.
    pub fn settle(&self) -> anyhow::Result<()> {
        self.env.wait_for_height(self.env.tip_height()?, WAIT)?;
        Ok(())
    }

    pub fn mine(&self, n: u32) -> anyhow::Result<()> {
        self.env.mine(n)?;
        self.settle()
    }

    /// The txids in the node's mempool.
    pub fn mempool(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let v = self.env.rpc().call("getrawmempool", &[])?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Restart the node ([`Restart::Crash`] loses its mempool, as `kill -9` does) and
    /// reconnect the Electrum client.
    pub fn restart(&mut self, how: Restart) -> anyhow::Result<()> {
        self.env.restart(how)?;
        self.chain = ChainClient::connect(&self.env.electrum_url(), Duration::from_secs(10))?;
        Ok(())
    }

    /// Whether the node's mempool holds `txid`.
    pub fn in_mempool(&self, txid: &bitcoin::Txid) -> anyhow::Result<bool> {
        Ok(self
            .mempool()?
            .iter()
            .any(|t| t.as_str() == Some(&txid.to_string())))
    }

    /// The confirmations of `txid` as the node reports them (0 in the mempool).
    pub fn confirmations(&self, txid: &bitcoin::Txid) -> anyhow::Result<u64> {
        let v = self.env.rpc().call(
            "getrawtransaction",
            &[serde_json::json!(txid.to_string()), serde_json::json!(true)],
        )?;
        Ok(v.get("confirmations").and_then(|c| c.as_u64()).unwrap_or(0))
    }

    /// The hash of the best-chain block at `height`.
    pub fn block_hash(&self, height: u32) -> anyhow::Result<bitcoin::BlockHash> {
        let h: String = self
            .env
            .rpc()
            .call_as("getblockhash", &[serde_json::json!(height)])?;
        Ok(h.parse()?)
    }

    /// Mine an empty block (Core's `generateblock` with no transactions), leaving the mempool.
    pub fn mine_empty(&self) -> anyhow::Result<()> {
        self.env.rpc().call(
            "generateblock",
            &[
                serde_json::json!(self.env.mine_address().to_string()),
                serde_json::json!([]),
            ],
        )?;
        self.settle()
    }

    /// Mine until the tip is exactly `height`.
    pub fn mine_to_height(&self, height: u32) -> anyhow::Result<()> {
        let tip = self.env.tip_height()?;
        assert!(tip <= height, "tip {tip} already past {height}");
        if tip < height {
            self.mine(height - tip)?;
        }
        Ok(())
    }
}

pub fn escrow(
    service: &mut RoleWallet,
    party: &mut RoleWallet,
    k: &[u8; 32],
    timeout: u32,
) -> anyhow::Result<ContractFile> {
    let (_, s) = service.contract_key(None, "escrow sender")?;
    let (_, p) = party.contract_key(None, "escrow receiver")?;
    let c = Contract::ClaimOrRefund(ClaimOrRefund {
        receiver: p,
        sender: s,
        hash: sha256::Hash::hash(k),
        timeout: Height::new(timeout)?,
        internal_key: InternalKey::random_nums(&mut thread_rng()),
    });
    Ok(ContractFile::new(c, Network::Regtest)?)
}
