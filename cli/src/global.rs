//! Options every subcommand takes, and where the data directory lives.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// The Bitcoin network a datadir and its contracts belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum NetworkArg {
    /// Local regtest chain (the embedded node by default).
    #[default]
    Regtest,
    /// The default signet.
    Signet,
    /// Testnet version 4.
    Testnet4,
    /// Bitcoin mainnet.
    Bitcoin,
}

impl NetworkArg {
    /// The `bitcoin` crate's network.
    pub fn network(self) -> bitcoin::Network {
        match self {
            NetworkArg::Regtest => bitcoin::Network::Regtest,
            NetworkArg::Signet => bitcoin::Network::Signet,
            NetworkArg::Testnet4 => bitcoin::Network::Testnet4,
            NetworkArg::Bitcoin => bitcoin::Network::Bitcoin,
        }
    }

    /// Lower-case name used for the default datadir.
    pub fn name(self) -> &'static str {
        match self {
            NetworkArg::Regtest => "regtest",
            NetworkArg::Signet => "signet",
            NetworkArg::Testnet4 => "testnet4",
            NetworkArg::Bitcoin => "bitcoin",
        }
    }
}

/// Global options (listed under their own heading in every command's help, after the
/// command's own).
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Data directory (default `~/.btcmpc/<network>`).
    #[arg(long, global = true, env = "BTCMPC_DATADIR")]
    pub datadir: Option<PathBuf>,

    /// Bitcoin network.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "BTCMPC_NETWORK"
    )]
    pub network: NetworkArg,

    /// Electrum server `HOST:PORT` (`tcp://`, `ssl://` prefixes accepted); default: the embedded
    /// regtest node recorded in the datadir.
    #[arg(long, global = true, env = "BTCMPC_ELECTRUM")]
    pub electrum: Option<String>,

    /// Allow a plaintext (`tcp://`) Electrum connection off regtest (anyone on the path could
    /// then answer for the server); without it only `ssl://` is accepted there.
    #[arg(long, global = true, env = "BTCMPC_ALLOW_PLAINTEXT_ELECTRUM")]
    pub allow_plaintext_electrum: bool,

    /// Bitcoin Core JSON-RPC URL of any node (`http://HOST:PORT`), for the commands that
    /// control a chain (`regtest status`, `regtest mine`); default: the embedded node of the
    /// datadir.
    #[arg(long, global = true, env = "BTCMPC_RPC", value_name = "URL")]
    pub rpc: Option<String>,

    /// Cookie file for `--rpc` (Core's `.cookie`); without it no authentication is sent.
    #[arg(long, global = true, env = "BTCMPC_RPC_COOKIE", value_name = "FILE")]
    pub rpc_cookie: Option<PathBuf>,

    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// More logging (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less logging: errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

impl Global {
    /// The data directory for this network.
    pub fn datadir(&self) -> PathBuf {
        if let Some(dir) = &self.datadir {
            return dir.clone();
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".btcmpc").join(self.network.name())
    }
}

impl Global {
    /// The Electrum server to use: `--electrum`, else the embedded regtest node running on the
    /// datadir (or on the default regtest datadir).
    ///
    /// # Errors
    /// When neither is given nor running.
    pub fn electrum_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.electrum {
            return Ok(url.clone());
        }
        if self.network == NetworkArg::Regtest {
            let mut dirs = vec![self.datadir()];
            if let Some(home) = std::env::var_os("HOME") {
                dirs.push(PathBuf::from(home).join(".btcmpc").join("regtest"));
            }
            for dir in dirs {
                if let Ok(Some(info)) = btcmpc_regtest::server::NodeInfo::read(&dir) {
                    return Ok(info.electrum);
                }
            }
            anyhow::bail!("no Electrum server: pass --electrum HOST:PORT (`btcmpc regtest status` prints the embedded node's), or start the embedded node in this datadir with `btcmpc regtest up --detach`");
        }
        anyhow::bail!(
            "no Electrum server for {}: pass --electrum HOST:PORT",
            self.network.name()
        )
    }
}

/// Logs go to stderr so that `--json` output on stdout stays one document. A `daemon` logs
/// its own steps (`btcmpc::party` at info) by default.
pub fn init_logging(global: &Global, daemon: bool) {
    let level = if global.quiet {
        "error"
    } else {
        match global.verbose {
            // electrum_client logs each failed connection attempt as a warning; the command's
            // own one-line error already says it.
            0 if daemon => "warn,electrum_client=error,btcmpc::party=info",
            0 => "warn,electrum_client=error",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BTCMPC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
