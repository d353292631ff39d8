//! Whether a service may ask about a dataset: a party's decision from its own chain view.
//!
//! A service signs an [`AccessRequest`] (BIP340, its service key: the key owners grant) naming
//! the dataset, the CSV columns it will use and the multiplicative degree of its query. Each
//! party answers from the ACL it follows on chain ([`super::acl`]): granted, or refused with
//! the reason ([`authorize`]): never granted, a GRANT not yet `acl_min_conf` deep, revoked
//! (as soon as the REVOKE is seen), expired, out of scope (a column or the degree), a closed
//! dataset, a STORE record that does not carry the receipts root the parties checked, or a
//! dataset under `min_rows` rows (PROTOCOL.md, "Leakage").

use std::collections::BTreeMap;

use bitcoin::secp256k1::PublicKey;
use serde::{Deserialize, Serialize};

use super::acl::Access;
use super::card::{schnorr_verify, tagged_hash};

/// Datasets with fewer rows are never queried (PROTOCOL.md: default 10).
pub const DEFAULT_MIN_ROWS: u64 = 10;

/// A service's signed question: may I query these columns of this dataset at this degree?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRequest {
    /// The dataset id, hex.
    pub dataset_id: String,
    /// The service key (33-byte compressed, hex).
    pub service: String,
    /// CSV column names the query uses.
    pub columns: Vec<String>,
    /// The query's multiplicative degree (1: sum, count, mean; 2: var, cov, dot).
    pub degree: u8,
    /// BIP340 signature by the service key over [`AccessRequest::digest`], hex.
    pub signature: String,
}

impl AccessRequest {
    /// `tagged_hash("btcmpc/v1/access", json of the request without its signature)`.
    pub fn digest(&self) -> [u8; 32] {
        let unsigned = serde_json::json!({
            "dataset_id": self.dataset_id,
            "service": self.service,
            "columns": self.columns,
            "degree": self.degree,
        });
        tagged_hash("btcmpc/v1/access", unsigned.to_string().as_bytes())
    }

    /// The service key, once the signature verifies.
    ///
    /// # Errors
    /// A one-line reason: a bad key, bad hex, or a signature that does not verify.
    pub fn verify(&self) -> Result<PublicKey, String> {
        verify_service_signed(&self.service, &self.signature, self.digest())
    }
}

/// Checks a service's BIP340 signature (`signature`, 128 hex digits) over `digest` under its
/// key (`service`, 33-byte compressed, hex); returns the key. Used for access questions and job
/// requests alike.
///
/// # Errors
/// A one-line reason: a bad key, bad hex, or a signature that does not verify.
pub(crate) fn verify_service_signed(
    service: &str,
    signature: &str,
    digest: [u8; 32],
) -> Result<PublicKey, String> {
    let key: PublicKey = service
        .parse()
        .map_err(|_| format!("service key {service:?} is not a compressed public key"))?;
    let mut sig = [0u8; 64];
    hex::decode_to_slice(signature, &mut sig)
        .map_err(|_| "the request's signature is not 128 hex digits".to_string())?;
    if !schnorr_verify(&key, digest, &sig) {
        return Err("the request's signature does not verify for its service key".into());
    }
    Ok(key)
}

/// A party's answer to an [`AccessRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessAnswer {
    /// The answering party.
    pub party: u32,
    /// The dataset id, hex.
    pub dataset_id: String,
    /// Whether the service may ask.
    pub granted: bool,
    /// Why not, in one line.
    pub reason: Option<String>,
    /// The chain tip the answer was read at.
    pub tip: u32,
}

/// What a party knows of one dataset's ACL (from its chain follower).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclView {
    /// The chain tip it was read at.
    pub tip: u32,
    /// Every service named by a record, with its access at `tip`.
    pub table: BTreeMap<PublicKey, Access>,
    /// Set when the dataset is closed, or its STORE record does not match what was checked.
    pub closed: Option<String>,
}

/// Decides a request for `service` about a dataset of `rows` rows whose CSV columns are
/// `column_names` (the bit of column `i` in a GRANT's bitmap is `i`).
///
/// # Errors
/// The refusal, one line, naming what is wrong.
pub fn authorize(
    view: &AclView,
    service: &PublicKey,
    request: &AccessRequest,
    column_names: &[String],
    rows: u64,
    min_rows: u64,
) -> Result<(), String> {
    if let Some(c) = &view.closed {
        return Err(format!("dataset closed: {c}"));
    }
    if rows < min_rows {
        return Err(format!(
            "the dataset has {rows} rows, fewer than the {min_rows} every query needs"
        ));
    }
    let scope = match view.table.get(service).unwrap_or(&Access::NotGranted) {
        Access::Granted(s) => s,
        Access::Pending(c) => {
            return Err(format!(
                "the GRANT for {service} has {c} confirmation(s), not yet enough"
            ))
        }
        Access::Revoked(txid) => return Err(format!("{service} was revoked by {txid}")),
        Access::Expired(h) => return Err(format!("the grant for {service} expired at height {h}")),
        Access::NotGranted => return Err(format!("{service} is not granted this dataset")),
        Access::Closed => return Err("dataset closed".into()),
    };
    if request.degree > scope.max_degree {
        return Err(format!(
            "degree {} is above the granted maximum {}",
            request.degree, scope.max_degree
        ));
    }
    for name in &request.columns {
        let i = column_names
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| format!("the dataset has no column {name:?}"))?;
        if let Some(allowed) = &scope.columns {
            if !u8::try_from(i).is_ok_and(|i| allowed.contains(&i)) {
                return Err(format!("column {name:?} is outside the granted scope"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::acl::Scope;
    use bitcoin::hashes::Hash;
    use bitcoin::secp256k1::{Keypair, Secp256k1};
    use std::collections::BTreeSet;

    fn signed(kp: &Keypair, columns: &[&str], degree: u8) -> AccessRequest {
        let mut r = AccessRequest {
            dataset_id: "00".repeat(32),
            service: kp.public_key().to_string(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            degree,
            signature: String::new(),
        };
        r.signature = hex::encode(crate::node::card::schnorr_sign(kp, r.digest()));
        r
    }

    #[test]
    fn every_refusal_names_its_reason() {
        let secp = Secp256k1::new();
        let kp = Keypair::new(&secp, &mut rand::thread_rng());
        let other = Keypair::new(&secp, &mut rand::thread_rng());
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let scope = Scope {
            expiry: None,
            max_degree: 1,
            columns: Some(BTreeSet::from([0, 2])),
        };
        let view = AclView {
            tip: 200,
            table: BTreeMap::from([(kp.public_key(), Access::Granted(scope))]),
            closed: None,
        };
        let req = signed(&kp, &["a", "c"], 1);
        let key = req.verify().unwrap();
        assert_eq!(authorize(&view, &key, &req, &names, 10, 10), Ok(()));
        // Boundaries: one row short, one degree over, a column outside, an unknown column.
        assert!(authorize(&view, &key, &req, &names, 9, 10)
            .unwrap_err()
            .contains("9 rows"));
        let r = signed(&kp, &["a"], 2);
        assert!(authorize(&view, &key, &r, &names, 100, 10)
            .unwrap_err()
            .contains("degree 2"));
        let r = signed(&kp, &["b"], 1);
        assert!(authorize(&view, &key, &r, &names, 100, 10)
            .unwrap_err()
            .contains("\"b\" is outside"));
        let r = signed(&kp, &["zz"], 1);
        assert!(authorize(&view, &key, &r, &names, 100, 10)
            .unwrap_err()
            .contains("no column"));
        // Another service, a revoked one, a pending one, a closed dataset.
        let r = signed(&other, &["a"], 1);
        let k = r.verify().unwrap();
        assert!(authorize(&view, &k, &r, &names, 100, 10)
            .unwrap_err()
            .contains("not granted"));
        let mut v = view.clone();
        v.table
            .insert(kp.public_key(), Access::Revoked(bitcoin::Txid::all_zeros()));
        assert!(authorize(&v, &key, &req, &names, 100, 10)
            .unwrap_err()
            .contains("revoked"));
        v.table.insert(kp.public_key(), Access::Pending(1));
        assert!(authorize(&v, &key, &req, &names, 100, 10)
            .unwrap_err()
            .contains("1 confirmation"));
        let mut v = view.clone();
        v.closed = Some("anchor spent without a record".into());
        assert!(authorize(&v, &key, &req, &names, 100, 10)
            .unwrap_err()
            .contains("closed"));
        // A request signed by someone else for this service key is refused.
        let mut forged = req.clone();
        forged.signature = signed(&other, &["a", "c"], 1).signature;
        assert!(forged.verify().unwrap_err().contains("does not verify"));
        let mut tampered = req;
        tampered.degree = 2;
        assert!(tampered.verify().is_err());
    }
}
