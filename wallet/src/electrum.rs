//! The Electrum connection every role uses to read the chain and broadcast.

use std::time::Duration;

use bdk_electrum::electrum_client::{self, ConfigBuilder, ElectrumApi};
use bdk_electrum::BdkElectrumClient;
use bitcoin::{BlockHash, FeeRate, Script, Transaction, Txid};

use crate::error::{Rejection, ServerError};
use crate::fee::FeeChoice;
use crate::WalletError;

/// How long one Electrum request may take before it fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// One entry of a script's history as the server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The transaction.
    pub txid: Txid,
    /// Its confirmation height, or `None` while unconfirmed.
    pub height: Option<u32>,
}

/// An Electrum client (plain TCP by default, `ssl://` for TLS).
pub struct ChainClient {
    url: String,
    inner: BdkElectrumClient<electrum_client::Client>,
}

impl std::fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClient")
            .field("url", &self.url)
            .finish()
    }
}

impl ChainClient {
    /// Connect to an Electrum server at `url` (`HOST:PORT`, `tcp://HOST:PORT` or
    /// `ssl://HOST:PORT`), with a timeout on every request and no silent retries.
    ///
    /// # Errors
    /// [`WalletError::Electrum`] when the server cannot be reached or does not answer.
    pub fn connect(url: &str, timeout: Duration) -> Result<Self, WalletError> {
        let full = if url.contains("://") {
            url.to_string()
        } else {
            format!("tcp://{url}")
        };
        let config = ConfigBuilder::new().timeout(Some(timeout)).retry(0).build();
        let client = electrum_client::Client::from_config(&full, config).map_err(|e| {
            WalletError::Electrum {
                url: url.to_string(),
                source: e.into(),
            }
        })?;
        let this = ChainClient {
            url: url.to_string(),
            inner: BdkElectrumClient::new(client),
        };
        // Fail now, with the server named, rather than at the first real request.
        this.tip()?;
        Ok(this)
    }

    /// [`ChainClient::connect`] for a wallet on `network`: off regtest a plaintext connection
    /// (`tcp://` or no scheme) is refused unless `allow_plaintext`, since a server reached
    /// without TLS can be impersonated by anyone on the path (and then lie about fees and
    /// history).
    ///
    /// # Errors
    /// [`WalletError::PlaintextElectrum`]; as [`ChainClient::connect`].
    pub fn connect_for(
        url: &str,
        network: bitcoin::Network,
        allow_plaintext: bool,
        timeout: Duration,
    ) -> Result<Self, WalletError> {
        check_transport(url, network, allow_plaintext)?;
        Self::connect(url, timeout)
    }

    /// The server's address as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn bdk(&self) -> &BdkElectrumClient<electrum_client::Client> {
        &self.inner
    }

    pub(crate) fn err(&self, e: impl Into<ServerError>) -> WalletError {
        WalletError::Electrum {
            url: self.url.clone(),
            source: e.into(),
        }
    }

    /// The server's best block: height and hash.
    ///
    /// # Errors
    /// [`WalletError::Electrum`] on a network or protocol failure.
    pub fn tip(&self) -> Result<(u32, BlockHash), WalletError> {
        let note = self
            .inner
            .inner
            .block_headers_subscribe()
            .map_err(|e| self.err(e))?;
        let height = u32::try_from(note.height).map_err(|e| self.err(e))?;
        Ok((height, note.header.block_hash()))
    }

    /// The hash of the server's best-chain block at `height`, read from the server (never from
    /// a cache: after a reorg the block at a height changes).
    ///
    /// # Errors
    /// [`WalletError::Electrum`] on a network or protocol failure, or a height beyond its tip.
    pub fn block_hash(&self, height: u32) -> Result<BlockHash, WalletError> {
        self.inner
            .inner
            .block_header(height as usize)
            .map(|h| h.block_hash())
            .map_err(|e| self.err(e))
    }

    /// Every transaction that pays to or spends from `script`, confirmed ones with their height.
    ///
    /// # Errors
    /// [`WalletError::Electrum`] on a network or protocol failure.
    pub fn history(&self, script: &Script) -> Result<Vec<HistoryEntry>, WalletError> {
        let hist = self
            .inner
            .inner
            .script_get_history(script)
            .map_err(|e| self.err(e))?;
        Ok(hist
            .into_iter()
            .map(|h| HistoryEntry {
                txid: h.tx_hash,
                height: u32::try_from(h.height).ok().filter(|&h| h > 0),
            })
            .collect())
    }

    /// A transaction by id.
    ///
    /// # Errors
    /// [`WalletError::Electrum`] when the server does not have it.
    pub fn transaction(&self, txid: &Txid) -> Result<Transaction, WalletError> {
        self.inner
            .fetch_tx(*txid)
            .map(|tx| (*tx).clone())
            .map_err(|e| self.err(e))
    }

    /// Broadcast a transaction. A transaction the server already has (in its mempool or its
    /// chain: [`Rejection::already_have`]) counts as broadcast.
    ///
    /// # Errors
    /// [`WalletError::Broadcast`] with the server's reject text and its [`Rejection`];
    /// [`WalletError::Electrum`] when the request itself failed (network, timeout).
    pub fn broadcast(&self, tx: &Transaction) -> Result<Txid, WalletError> {
        let txid = tx.compute_txid();
        match self.inner.transaction_broadcast(tx) {
            Ok(_) => Ok(txid),
            Err(e) => match reject_message(&e) {
                Some(message) => {
                    let rejection = Rejection::classify(&message);
                    if rejection.already_have() {
                        Ok(txid)
                    } else {
                        Err(WalletError::Broadcast {
                            txid,
                            rejection,
                            message,
                        })
                    }
                }
                None => Err(self.err(e)),
            },
        }
    }

    /// A fee rate for confirmation within `target` blocks: the server's estimate, never below
    /// `floor` nor the server's relay fee. It is [`FeeChoice::Automatic`]: the wallet checks
    /// the fee it makes against its [`crate::FeePolicy`] before signing (a lying server must not
    /// be able to burn the wallet's coins in fees). A server without an estimate (regtest's
    /// answer -1, or an error answer such as an unsupported method) leaves the floor.
    ///
    /// # Errors
    /// [`WalletError::Electrum`] when a request failed without an answer (network, timeout):
    /// the floor is not a stand-in for an estimate that could not be asked.
    pub fn fee_rate(&self, target: usize, floor: FeeRate) -> Result<FeeChoice, WalletError> {
        let est = self.answered(self.inner.inner.estimate_fee(target, None))?;
        let relay = self.answered(self.inner.inner.relay_fee())?;
        Ok(FeeChoice::Automatic(choose_fee_rate(est, relay, floor)))
    }

    /// A request's value; `None` for the server's error answer; the error when the request
    /// itself failed.
    fn answered<T>(&self, r: Result<T, electrum_client::Error>) -> Result<Option<T>, WalletError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(electrum_client::Error::Protocol(answer)) => {
                tracing::debug!(target: "btcmpc_wallet::chain", %answer, "no fee estimate");
                Ok(None)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// The fee of a transaction: `explicit` paid as given, or else the server's estimate for
    /// `target` blocks above [`crate::FEE_FLOOR`] ([`ChainClient::fee_rate`]), which the
    /// wallet's fee policy bounds when the transaction is built.
    ///
    /// # Errors
    /// As [`ChainClient::fee_rate`] (never for an explicit rate).
    pub fn fee_choice(
        &self,
        explicit: Option<FeeRate>,
        target: usize,
    ) -> Result<FeeChoice, WalletError> {
        match explicit {
            Some(r) => Ok(FeeChoice::Explicit(r)),
            None => self.fee_rate(target, crate::FEE_FLOOR),
        }
    }
}

/// Refuse a plaintext Electrum URL off regtest unless `allow_plaintext`.
///
/// # Errors
/// [`WalletError::PlaintextElectrum`].
pub fn check_transport(
    url: &str,
    network: bitcoin::Network,
    allow_plaintext: bool,
) -> Result<(), WalletError> {
    let tls = url.trim().to_ascii_lowercase().starts_with("ssl://");
    if tls || allow_plaintext || network == bitcoin::Network::Regtest {
        return Ok(());
    }
    Err(WalletError::PlaintextElectrum {
        url: url.to_string(),
        network,
    })
}

/// The fee rate from a server's estimate and relay fee (both BTC/kvB, -1 or absent when
/// unknown): at least `floor`; saturating on absurd values (the policy refuses those).
fn choose_fee_rate(estimate: Option<f64>, relay: Option<f64>, floor: FeeRate) -> FeeRate {
    let to_rate = |btc_per_kvb: f64| -> Option<FeeRate> {
        if !(btc_per_kvb.is_finite() && btc_per_kvb > 0.0) {
            return None;
        }
        // BTC/kvB -> sat/kwu: x * 1e8 / 4, saturating on absurd values.
        let sat_per_kwu = (btc_per_kvb * 1e8 / 4.0).ceil();
        Some(FeeRate::from_sat_per_kwu(
            sat_per_kwu.min(u64::MAX as f64) as u64
        ))
    };
    let chosen = [
        Some(floor),
        estimate.and_then(to_rate),
        relay.and_then(to_rate),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(floor);
    if chosen > floor {
        tracing::debug!(target: "btcmpc_wallet::chain", rate_sat_vb = %crate::fee::sat_per_vb(chosen), "server fee estimate");
    }
    chosen
}

/// The server's message for a refused broadcast, without the client's wrapping; `None` when
/// the server did not answer (the request failed).
fn reject_message(e: &electrum_client::Error) -> Option<String> {
    match e {
        electrum_client::Error::Protocol(v) => Some(
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
        ),
        _ => None,
    }
}

impl ChainClient {
    /// Subscribe to changes of `scripts` (their Electrum status) and of the tip. Returns the
    /// current tip height.
    ///
    /// # Errors
    /// [`WalletError::Electrum`] on a network or protocol failure.
    pub fn subscribe(&self, scripts: &[&Script]) -> Result<u32, WalletError> {
        let client = &self.inner.inner;
        for s in scripts {
            // Subscribing twice is an error for the client: only new scripts are sent.
            match client.script_subscribe(s) {
                Ok(_) => {}
                Err(electrum_client::Error::AlreadySubscribed(_)) => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(self.tip()?.0)
    }

    /// Wait until the server notifies a change of a subscribed script or a new tip, or
    /// `timeout` passes. Returns whether anything changed.
    ///
    /// # Errors
    /// [`WalletError::Electrum`] on a network or protocol failure.
    pub fn wait_for_change(
        &self,
        scripts: &[&Script],
        timeout: Duration,
    ) -> Result<bool, WalletError> {
        let client = &self.inner.inner;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            // A ping makes the client read whatever notifications the server sent.
            client.ping().map_err(|e| self.err(e))?;
            let mut changed = false;
            while client
                .block_headers_pop()
                .map_err(|e| self.err(e))?
                .is_some()
            {
                changed = true;
            }
            for s in scripts {
                match client.script_pop(s) {
                    Ok(Some(_)) => changed = true,
                    // A script not subscribed (yet) has no notification to read.
                    Ok(None) | Err(electrum_client::Error::NotSubscribed(_)) => {}
                    Err(e) => return Err(self.err(e)),
                }
            }
            if changed {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_electrum_needs_an_opt_in_off_regtest() {
        use bitcoin::Network::*;
        assert!(check_transport("127.0.0.1:60401", Regtest, false).is_ok());
        assert!(check_transport("ssl://example.org:50002", Bitcoin, false).is_ok());
        for url in ["example.org:50001", "tcp://example.org:50001"] {
            let e = check_transport(url, Bitcoin, false)
                .unwrap_err()
                .to_string();
            assert!(e.contains("plaintext") && e.contains(url), "{e}");
            assert!(check_transport(url, Signet, false).is_err());
            assert!(check_transport(url, Signet, true).is_ok());
        }
    }

    #[test]
    fn fee_rate_from_estimates_is_floored_and_saturates() {
        let floor = FeeRate::from_sat_per_kwu(250); // 1 sat/vB
        assert_eq!(choose_fee_rate(None, None, floor), floor);
        assert_eq!(choose_fee_rate(Some(-1.0), Some(0.000001), floor), floor);
        // 0.0002 BTC/kvB = 20 sat/vB = 5,000 sat/kwu.
        assert_eq!(
            choose_fee_rate(Some(0.0002), Some(0.00001), floor),
            FeeRate::from_sat_per_kwu(5_000)
        );
        // A hostile estimate of 1 BTC/kvB is passed on as is: the fee policy refuses it.
        assert_eq!(
            choose_fee_rate(Some(1.0), None, floor),
            FeeRate::from_sat_per_kwu(25_000_000)
        );
        assert_eq!(
            choose_fee_rate(Some(1e300), None, floor),
            FeeRate::from_sat_per_kwu(u64::MAX)
        );
        assert_eq!(
            choose_fee_rate(Some(f64::INFINITY), Some(f64::NAN), floor),
            floor
        );
        // The caller's own floor wins over a lower estimate.
        let high = FeeRate::from_sat_per_kwu(300_000);
        assert_eq!(choose_fee_rate(Some(0.0002), None, high), high);
    }
}
