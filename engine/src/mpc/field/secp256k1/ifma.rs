//! The inner product of two [`Secp256k1Scalar`] vectors with AVX-512 IFMA (52-bit
//! multiply-add, eight 64-bit lanes), where the processor has it (detected at run time).
//!
//! Each element `x < n < 2^256` is split into five 52-bit limbs
//! `x = x0 + x1 2^52 + x2 2^104 + x3 2^156 + x4 2^208` (`x4 < 2^48`). `vpmadd52luq` and
//! `vpmadd52huq` add the low and the high 52 bits of each 104-bit limb product to a 64-bit
//! lane, so the products `xi yj` land in ten column accumulators of weight `2^(52 k)`,
//! `k = i + j` (low halves) and `k = i + j + 1` (high halves): the lazy-reduction schoolbook
//! inner product (the carries are added once, at the end), laid out for SIMD as in Gueron and
//! Krasnov, "Accelerating Big Integer Arithmetic Using Intel IFMA Extensions" (ARITH 2016),
//! as [`crate::mpc::field::Mersenne127`]'s with three limbs. A column takes at most 9 terms
//! below `2^52` per element, so a lane holds [`BLOCK_ROUNDS`] elements' terms before it is
//! emptied into 128-bit totals; the totals are reduced modulo `n` once, at the end.
//!
//! k256's `Scalar` promises no memory layout, so each element's four 64-bit words are read
//! through [`Secp256k1Scalar::to_limbs`] into a block of eight elements laid out word by word
//! (a transposition on the way in) before the vector loads. Constant-time: no branch or
//! address depends on the values.

// One of the three modules where the workspace allows `unsafe` (with `field::ifma`): the
// intrinsics of a `target_feature` function and the vector loads. Every block says why it is sound.
#![allow(unsafe_code)]

use crate::mpc::field::ifma::add_lanes;
use std::arch::x86_64::{
    __m512i, _mm512_and_si512, _mm512_loadu_si512, _mm512_madd52hi_epu64, _mm512_madd52lo_epu64,
    _mm512_or_si512, _mm512_set1_epi64, _mm512_setzero_si512, _mm512_slli_epi64, _mm512_srli_epi64,
};

use super::Secp256k1Scalar;
use crate::mpc::field::PrimeField;

/// Vector iterations (8 elements each) between two emptyings of the 64-bit lanes: a lane
/// then holds at most `9 * 256` terms below `2^52`, below `2^64`.
const BLOCK_ROUNDS: usize = 256;

/// Whether this processor runs [`dot`] (AVX-512 F and IFMA).
pub(crate) use crate::mpc::field::ifma::available;

/// `sum a[i] * b[i]` over the first `8 * floor(min(len) / 8)` pairs, or `None` when the
/// processor lacks AVX-512 IFMA ([`available`]). The caller adds the remaining 0-7 pairs.
pub(crate) fn dot(a: &[Secp256k1Scalar], b: &[Secp256k1Scalar]) -> Option<Secp256k1Scalar> {
    if !available() {
        return None;
    }
    let n = a.len().min(b.len()) / 8 * 8;
    // SAFETY: the processor has AVX-512 F and IFMA (checked just above), the only
    // requirement of a `target_feature` function beyond its signature.
    let columns = unsafe { columns(&a[..n], &b[..n]) };
    // sum columns[k] * 2^(52 k) (mod n), by Horner's rule from the top column.
    let radix = Secp256k1Scalar::from_u64(1 << 52);
    Some(
        columns
            .iter()
            .rev()
            .fold(Secp256k1Scalar::ZERO, |acc, c| acc * radix + from_u128(*c)),
    )
}

/// The element of the integer `v < 2^128` (below `n`, so canonical).
fn from_u128(v: u128) -> Secp256k1Scalar {
    Secp256k1Scalar::from_limbs([v as u64, (v >> 64) as u64, 0, 0])
        .expect("an integer below 2^128 is below n")
}

/// The ten column totals of `a . b` (`a.len() == b.len()`, a multiple of 8): the inner
/// product is `sum_k totals[k] 2^(52 k)`. Each total is below `9 * 2^52 * len`, far from
/// `2^128` for any slice in memory.
///
/// # Safety
/// The processor must have AVX-512 F and IFMA.
#[target_feature(enable = "avx512f,avx512ifma")]
unsafe fn columns(a: &[Secp256k1Scalar], b: &[Secp256k1Scalar]) -> [u128; 10] {
    debug_assert!(a.len() == b.len() && a.len().is_multiple_of(8));
    let m52 = _mm512_set1_epi64(((1u64 << 52) - 1) as i64);
    // Splits 8 elements into five vectors of 52-bit limbs: `words[8 k + e]` is word `k` of
    // element `e`, so each load takes one word of all eight.
    let limbs = |xs: &[Secp256k1Scalar]| {
        let mut words = [0u64; 32];
        for (e, x) in xs.iter().enumerate() {
            for (k, w) in x.to_limbs().into_iter().enumerate() {
                words[8 * k + e] = w;
            }
        }
        // SAFETY: `words` is 256 readable bytes, four loads of 64; the loads take unaligned
        // addresses.
        let [w0, w1, w2, w3] = unsafe {
            let p = words.as_ptr().cast::<__m512i>();
            [
                _mm512_loadu_si512(p),
                _mm512_loadu_si512(p.add(1)),
                _mm512_loadu_si512(p.add(2)),
                _mm512_loadu_si512(p.add(3)),
            ]
        };
        [
            _mm512_and_si512(w0, m52),
            _mm512_and_si512(
                _mm512_or_si512(_mm512_srli_epi64::<52>(w0), _mm512_slli_epi64::<12>(w1)),
                m52,
            ),
            _mm512_and_si512(
                _mm512_or_si512(_mm512_srli_epi64::<40>(w1), _mm512_slli_epi64::<24>(w2)),
                m52,
            ),
            _mm512_and_si512(
                _mm512_or_si512(_mm512_srli_epi64::<28>(w2), _mm512_slli_epi64::<36>(w3)),
                m52,
            ),
            _mm512_srli_epi64::<16>(w3),
        ]
    };
    let mut totals = [0u128; 10];
    for (ca, cb) in a.chunks(8 * BLOCK_ROUNDS).zip(b.chunks(8 * BLOCK_ROUNDS)) {
        let mut c = [_mm512_setzero_si512(); 10];
        for (xa, xb) in ca.chunks_exact(8).zip(cb.chunks_exact(8)) {
            let x = limbs(xa);
            let y = limbs(xb);
            for (i, xi) in x.iter().enumerate() {
                for (j, yj) in y.iter().enumerate() {
                    c[i + j] = _mm512_madd52lo_epu64(c[i + j], *xi, *yj);
                    c[i + j + 1] = _mm512_madd52hi_epu64(c[i + j + 1], *xi, *yj);
                }
            }
        }
        for (total, column) in totals.iter_mut().zip(c) {
            add_lanes(total, column);
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::dot_checks;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn minus_one() -> Secp256k1Scalar {
        -Secp256k1Scalar::ONE
    }

    /// The element of little-endian words `w`, or `n - 1` when they are not below `n`.
    fn of_words(w: [u64; 4]) -> Secp256k1Scalar {
        Secp256k1Scalar::from_limbs(w).unwrap_or_else(minus_one)
    }

    /// The 256-bit integer with bits `lo..lo + len` set (`lo + len <= 256`).
    fn ones(lo: u32, len: u32) -> [u64; 4] {
        let mut w = [0u64; 4];
        for bit in lo..lo + len {
            w[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        w
    }

    /// Elements drawn to hit the limb boundaries: 0, 1, `n - 1`, one 52-bit limb all ones
    /// (the top one, 48 bits, as far as it stays below `n`), one 64-bit word all ones, powers
    /// of two and their neighbours, and uniform values.
    fn edgy(rng: &mut StdRng) -> Secp256k1Scalar {
        match rng.gen_range(0..9) {
            0 => Secp256k1Scalar::ZERO,
            1 => minus_one(),
            2 => of_words(ones(52 * rng.gen_range(0..4u32), 52)),
            3 => of_words(ones(208, 47)),
            4 => of_words(ones(64 * rng.gen_range(0..4u32), 64)),
            5 => of_words(ones(rng.gen_range(0..256u32), 1)),
            6 => of_words(ones(0, rng.gen_range(1..256u32))),
            7 => minus_one() - of_words(ones(rng.gen_range(0..128u32), 1)),
            _ => Secp256k1Scalar::random(rng),
        }
    }

    /// Equal to the naive inner product and to the scalar loop at every length around the
    /// vector width (8) and the lane-emptying block (`8 * BLOCK_ROUNDS` = 2048), over random
    /// elements, over `n - 1` everywhere (the largest column sums) and over values with one
    /// limb at its largest.
    #[test]
    fn matches_the_naive_inner_product() {
        if !available() {
            eprintln!("SKIPPED: this processor lacks AVX-512 IFMA; the scalar inner product alone is tested (field tests)");
            return;
        }
        let mut rng = StdRng::seed_from_u64(17);
        let block = 8 * BLOCK_ROUNDS;
        let len = 3 * block + 17;
        let mut a = vec![Secp256k1Scalar::ZERO; len];
        let mut b = vec![Secp256k1Scalar::ZERO; len];
        Secp256k1Scalar::fill_random(&mut rng, &mut a);
        Secp256k1Scalar::fill_random(&mut rng, &mut b);
        let top = vec![minus_one(); len];
        let mixed: Vec<Secp256k1Scalar> = (0..len)
            .map(|i| match i % 6 {
                0 => of_words(ones(0, 52)),
                1 => of_words(ones(52, 52)),
                2 => of_words(ones(104, 52)),
                3 => of_words(ones(156, 52)),
                4 => of_words(ones(208, 47)),
                _ => minus_one(),
            })
            .collect();
        dot_checks::lengths(
            block,
            &[(&a, &b), (&top, &top), (&mixed, &a), (&mixed, &mixed)],
            dot,
            Secp256k1Scalar::dot_scalar,
        );
    }

    /// Many seeds: every length 0..=40 and around two blocks, offsets in both slices,
    /// different lengths, edge and uniform elements, and slices of all `n - 1` longer than
    /// three blocks: the dispatch always equals the naive inner product.
    #[test]
    fn random_seeds_match_the_naive_inner_product() {
        dot_checks::random_seeds(8 * BLOCK_ROUNDS, 20, edgy, minus_one());
    }

    /// Every 52-bit limb at [`dot_checks::FULL_LIMB`] (the top one, 48 bits, at 1): nine
    /// terms near `2^52` land in columns 4 and 5 per element, so a lane overflows after 455
    /// vector iterations. 8,192 iterations and a tail: any emptying interval above 455 fails.
    #[test]
    fn the_fullest_columns_do_not_overflow() {
        let l = dot_checks::FULL_LIMB;
        // Limbs l, l, l, l, 1 at bits 0, 52, 104, 156, 208, as four 64-bit words.
        let words = [
            l | (l << 52),
            (l >> 12) | (l << 40),
            (l >> 24) | (l << 28),
            (l >> 36) | (1 << 16),
        ];
        let x = Secp256k1Scalar::from_limbs(words).expect("below n");
        dot_checks::worst_case(x, 8 * 8192 + 3);
    }

    proptest::proptest! {
        /// Any elements (from 32 uniform bytes reduced, and their extremes), lengths and
        /// offsets: the dispatch equals the naive inner product.
        #[test]
        fn prop_matches_naive(
            a in proptest::collection::vec(proptest::array::uniform4(proptest::num::u64::ANY), 0..200),
            b in proptest::collection::vec(proptest::array::uniform4(proptest::num::u64::ANY), 0..200),
        ) {
            let a: Vec<Secp256k1Scalar> = a.into_iter().map(of_words).collect();
            let b: Vec<Secp256k1Scalar> = b.into_iter().map(of_words).collect();
            let n = a.len().min(b.len());
            proptest::prop_assert_eq!(Secp256k1Scalar::dot(&a, &b), dot_checks::naive(&a[..n], &b[..n]));
        }
    }
}
