//! The regtest world shared by the wallet's chain tests: a node (embedded, or bitcoind +
//! electrs with `BITCOIND_EXE`/`ELECTRS_EXE`), an Electrum client, wallets in a temp dir.

#![allow(dead_code)] // not every test binary uses every helper

use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::rand::thread_rng;
use bitcoin::{Amount, Network};
use btcmpc_contracts::{ClaimOrRefund, Contract, ContractFile, Height, InternalKey};
use btcmpc_regtest::harness::TestEnv;
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
