//! The service's client: its key (the one owners grant) and its questions to the committee.
//!
//! In this version a service asks every party whether it may query a dataset
//! ([`Service::check_access`]); each party answers from the ACL it reads on chain itself
//! ([`super::access`]). Paid queries build on this client.

use std::time::Duration;

use bitcoin::secp256k1::Keypair;

use super::access::{AccessAnswer, AccessRequest};
use super::card::schnorr_sign;
use super::frame::MessageType;
use super::manifest::Manifest;
use super::noise::{AllowedKeys, StaticKeypair, TransportKey};
use super::transport::{connect, ChannelConfig};
use super::wire::{json_frame, parse_json};

/// A service: its signing key and its Noise static key.
#[derive(Debug, Clone)]
pub struct Service {
    key: Keypair,
    transport: StaticKeypair,
}

impl Service {
    /// A service signing with `key` (the key owners grant) and connecting with `transport`.
    pub fn new(key: Keypair, transport: StaticKeypair) -> Self {
        Service { key, transport }
    }

    /// The signed question for `dataset_id` (hex): these CSV `columns`, this multiplicative
    /// `degree`.
    pub fn access_request(
        &self,
        dataset_id: &str,
        columns: &[String],
        degree: u8,
    ) -> AccessRequest {
        let mut r = AccessRequest {
            dataset_id: dataset_id.to_string(),
            service: self.key.public_key().to_string(),
            columns: columns.to_vec(),
            degree,
            signature: String::new(),
        };
        r.signature = hex::encode(schnorr_sign(&self.key, r.digest()));
        r
    }

    /// Asks every party of `manifest` (which the caller verified on chain) the signed question;
    /// one answer per party, in party order, or why there is none (each party bounded by
    /// `timeout`).
    pub async fn check_access(
        &self,
        manifest: &Manifest,
        request: &AccessRequest,
        config: ChannelConfig,
        timeout: Duration,
    ) -> Vec<(u32, Result<AccessAnswer, String>)> {
        let mut tasks = Vec::new();
        for (i, card) in manifest.roster.cards.iter().enumerate() {
            let party = i as u32 + 1;
            let (endpoint, key) = (card.endpoint.clone(), TransportKey(card.transport_key));
            let (me, request) = (self.transport.clone(), request.clone());
            tasks.push(tokio::spawn(async move {
                let ask = async {
                    let mut ch = connect(&endpoint, &me, &AllowedKeys::new([key]), config)
                        .await
                        .map_err(|e| format!("unreachable: {e}"))?;
                    let f = json_frame(MessageType::ACCESS, &request).map_err(|e| e.to_string())?;
                    ch.send(&f).await.map_err(|e| e.to_string())?;
                    loop {
                        let f = ch.recv().await.map_err(|e| e.to_string())?;
                        match f.kind() {
                            MessageType::PING => continue,
                            MessageType::ERROR => {
                                return Err(String::from_utf8_lossy(f.payload())
                                    .chars()
                                    .take(300)
                                    .collect())
                            }
                            MessageType::ACCESS => {
                                let a: AccessAnswer = parse_json(&f).map_err(|e| e.to_string())?;
                                if a.party != party || a.dataset_id != request.dataset_id {
                                    return Err("answered for another party or dataset".into());
                                }
                                return Ok(a);
                            }
                            other => return Err(format!("unexpected {other}")),
                        }
                    }
                };
                let r = match tokio::time::timeout(timeout, ask).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                };
                (party, r)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            match t.await {
                Ok(x) => out.push(x),
                Err(e) => out.push((0, Err(e.to_string()))),
            }
        }
        out
    }
}
