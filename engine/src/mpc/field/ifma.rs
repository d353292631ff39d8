//! What the two AVX-512 IFMA inner products (`m127::ifma`, `secp256k1::ifma`) share: the
//! processor check and the emptying of a column accumulator's eight 64-bit lanes.

// The intrinsics' store takes a raw pointer; the block says why it is sound.
#![allow(unsafe_code)]

use std::arch::x86_64::{__m512i, _mm512_storeu_si512};

/// Whether this processor has AVX-512 F and IFMA, which the vector inner products need.
pub(crate) fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512ifma")
}

/// Adds the eight 64-bit lanes of `column` to `total`.
#[target_feature(enable = "avx512f")]
pub(crate) fn add_lanes(total: &mut u128, column: __m512i) {
    let mut lanes = [0u64; 8];
    // SAFETY: `lanes` is 64 writable bytes; the store takes an unaligned address.
    unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast::<__m512i>(), column) };
    *total += lanes.iter().map(|l| u128::from(*l)).sum::<u128>();
}
