//! Secure comparison on Shamir shares: the bounds a compared value must respect.
//!
//! The comparison protocols mask a `k`-bit signed value with a random value `kappa` bits
//! longer before opening it (statistical masking, Catrina and de Hoogh, "Improved Primitives
//! for Secure Multiparty Integer Computation", SCN 2010), so `k + kappa + 1` bits must fit
//! below the field's modulus without wrapping.

use crate::mpc::field::PrimeField;

/// The statistical security parameter `kappa`, in bits: a masked opening is within statistical
/// distance `2^-kappa` of uniform.
pub const STATISTICAL_SECURITY_BITS: u32 = 40;

/// The most bits (sign bit included) a compared value may have in field `F`:
/// `F::MAGNITUDE_LIMIT_BITS - kappa - 1` (85 for 2^127-1, 213 for secp256k1's order).
pub fn max_compare_bits<F: PrimeField>() -> u32 {
    F::MAGNITUDE_LIMIT_BITS - STATISTICAL_SECURITY_BITS - 1
}
