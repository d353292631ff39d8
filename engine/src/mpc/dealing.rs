//! The owner's dealing of a dataset, and the receipts the parties sign for what they got.
//!
//! The owner shares every value of every column with a fresh degree-`t` polynomial
//! ([`crate::mpc::shamir::deal_vec`]) and adds one random **mask** sharing, used once by the
//! batch degree check ([`crate::mpc::check`]). Party `i` receives a [`PartyShares`] over its
//! authenticated channel, hashes it ([`PartyShares::receipt_hash`]) and signs a receipt with
//! that hash. The receipts of all parties are bound together by [`receipts_root`], which the
//! STORE record puts on chain and which seeds the check's challenge.
//!
//! The same types carry the service's output masks in a job: one "column" per opened
//! aggregate, checked with a job-specific tag.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::field::PrimeField;
use super::round::PartyId;
use super::shamir::{self, Params, ShamirError};

/// Domain tag of a receipt hash.
pub const RECEIPT_TAG: &[u8] = b"btcmpc/v1/receipt";
/// Domain tag of the receipts root.
pub const RECEIPTS_ROOT_TAG: &[u8] = b"btcmpc/v1/receipts-root";

/// A SHA-256 digest.
pub type Hash32 = [u8; 32];

/// What one party holds of a dealing: its share of the mask and of every column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "F: PrimeField")]
pub struct PartyShares<F> {
    /// The party (its evaluation point).
    pub index: PartyId,
    /// Share of the random mask used by the batch check.
    pub mask: F,
    /// Shares of the columns, `columns[c][row]`.
    pub columns: Vec<Vec<F>>,
}

impl<F: PrimeField> PartyShares<F> {
    /// Number of shared values (all columns).
    pub fn len(&self) -> usize {
        self.columns.iter().map(Vec::len).sum()
    }

    /// Whether no value is shared.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The receipt hash `H_i`:
    /// `SHA256(RECEIPT_TAG || context || u32_be(i) || u8(len(field)) || field
    /// || u32_be(#columns) || mask || for each column: u64_be(len) || values)`, every field
    /// element in its canonical big-endian encoding. `context` binds the hash to the dataset
    /// (or job) and its metadata (column names, kinds, per-column [min, max]): the caller
    /// passes a digest of them.
    pub fn receipt_hash(&self, context: &Hash32) -> Hash32 {
        let mut h = Sha256::new();
        h.update(RECEIPT_TAG);
        h.update(context);
        h.update(self.index.get().to_be_bytes());
        h.update([F::NAME.len() as u8]);
        h.update(F::NAME.as_bytes());
        h.update((self.columns.len() as u32).to_be_bytes());
        h.update(self.mask.to_repr());
        let mut buf = Vec::with_capacity(F::ENCODED_LEN * 2048);
        for col in &self.columns {
            h.update((col.len() as u64).to_be_bytes());
            for chunk in col.chunks(2048) {
                buf.clear();
                for v in chunk {
                    buf.extend_from_slice(v.to_repr().as_ref());
                }
                h.update(&buf);
            }
        }
        h.finalize().into()
    }
}

/// `receipts_root = SHA256(RECEIPTS_ROOT_TAG || u32_be(n) || H_1 || ... || H_n)`, the receipt
/// hashes in party order.
pub fn receipts_root(receipts: &[Hash32]) -> Hash32 {
    let mut h = Sha256::new();
    h.update(RECEIPTS_ROOT_TAG);
    h.update((receipts.len() as u32).to_be_bytes());
    for r in receipts {
        h.update(r);
    }
    h.finalize().into()
}

/// Deals `columns` (each a vector of field values) and a fresh mask to `n` parties.
///
/// Returns one [`PartyShares`] per party, in party order.
pub fn deal<F: PrimeField, R: RngCore + ?Sized>(
    params: Params,
    columns: &[Vec<F>],
    rng: &mut R,
) -> Vec<PartyShares<F>> {
    let n = params.n();
    let mask = shamir::share(F::random(rng), params, rng);
    let mut parties: Vec<PartyShares<F>> = PartyId::all(n)
        .map(|i| PartyShares {
            index: i,
            mask: mask[i.slot()],
            columns: Vec::with_capacity(columns.len()),
        })
        .collect();
    for col in columns {
        let shares = shamir::deal_vec(col, params, rng);
        for (p, s) in parties.iter_mut().zip(shares) {
            p.columns.push(s);
        }
    }
    parties
}

/// Reconstructs the columns from the shares of any `t + 1` parties (the owner's own check, and
/// tests).
///
/// # Errors
/// Index errors, [`ShamirError::NotEnoughShares`], [`ShamirError::LengthMismatch`] if the
/// parties' column shapes differ.
pub fn reconstruct_columns<F: PrimeField>(
    params: Params,
    parties: &[&PartyShares<F>],
) -> Result<Vec<Vec<F>>, ShamirError> {
    let need = params.t() + 1;
    if parties.len() < need {
        return Err(ShamirError::NotEnoughShares {
            got: parties.len(),
            need,
        });
    }
    params.check_indices(parties.iter().map(|p| p.index.point()))?;
    let used = &parties[..need];
    let points: Vec<usize> = used.iter().map(|p| p.index.point()).collect();
    let l = shamir::Lagrange::at_zero(&points)?;
    let ncols = used[0].columns.len();
    for p in used {
        if p.columns.len() != ncols {
            return Err(ShamirError::LengthMismatch {
                index: p.index.point(),
                got: p.columns.len(),
                expected: ncols,
            });
        }
    }
    (0..ncols)
        .map(|c| {
            let vecs: Vec<&[F]> = used.iter().map(|p| p.columns[c].as_slice()).collect();
            l.interpolate_vec(&vecs)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn round_trip<F: PrimeField>() {
        let params = Params::new(5, 1).unwrap();
        let mut rng = StdRng::seed_from_u64(4);
        let cols: Vec<Vec<F>> = (0..3)
            .map(|c| (0..10).map(|r| F::from_u64(c * 100 + r)).collect())
            .collect();
        let parties = deal(params, &cols, &mut rng);
        let refs: Vec<&PartyShares<F>> = parties.iter().rev().collect();
        assert_eq!(reconstruct_columns(params, &refs).unwrap(), cols);
        let ctx = [1u8; 32];
        let hashes: Vec<Hash32> = parties.iter().map(|p| p.receipt_hash(&ctx)).collect();
        // Any change to a share, the context or the index changes the hash.
        let mut tampered = parties[0].clone();
        tampered.columns[2][9] += F::ONE;
        assert_ne!(tampered.receipt_hash(&ctx), hashes[0]);
        let mut tampered = parties[0].clone();
        tampered.mask += F::ONE;
        assert_ne!(tampered.receipt_hash(&ctx), hashes[0]);
        assert_ne!(parties[0].receipt_hash(&[2u8; 32]), hashes[0]);
        let mut moved = parties[0].clone();
        moved.index = PartyId::from_wire(2).unwrap();
        assert_ne!(moved.receipt_hash(&ctx), hashes[0]);
        // Column boundaries are part of the encoding.
        let mut split = parties[0].clone();
        let last = split.columns[0].pop().unwrap();
        split.columns[1].insert(0, last);
        assert_ne!(split.receipt_hash(&ctx), hashes[0]);
        let root = receipts_root(&hashes);
        let mut swapped = hashes.clone();
        swapped.swap(0, 1);
        assert_ne!(receipts_root(&swapped), root);
        let json = serde_json::to_string(&parties[1]).unwrap();
        assert_eq!(
            serde_json::from_str::<PartyShares<F>>(&json).unwrap(),
            parties[1]
        );
    }

    #[test]
    fn dealing_round_trip_and_receipts() {
        round_trip::<Secp256k1Scalar>();
        round_trip::<Mersenne127>();
    }

    #[test]
    fn receipt_hash_frozen() {
        // Frozen encoding: party 1 of a one-column dealing with fixed shares.
        let p = PartyShares {
            index: PartyId::from_wire(1).unwrap(),
            mask: Mersenne127::from_u64(5),
            columns: vec![vec![Mersenne127::from_u64(1), Mersenne127::from_u64(2)]],
        };
        let mut h = Sha256::new();
        h.update(b"btcmpc/v1/receipt");
        h.update([0u8; 32]);
        h.update([0, 0, 0, 1]);
        h.update([4]);
        h.update(b"m127");
        h.update([0, 0, 0, 1]);
        h.update(5u128.to_be_bytes());
        h.update(2u64.to_be_bytes());
        h.update(1u128.to_be_bytes());
        h.update(2u128.to_be_bytes());
        let expect: Hash32 = h.finalize().into();
        assert_eq!(p.receipt_hash(&[0u8; 32]), expect);
    }
}
