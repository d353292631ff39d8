//! Benchmarks of the arithmetic core in both fields: the square roots of comparisons' random
//! bits, dealing (values shared per second, n = 4,
//! t = 1), the batch degree check on 1 million values, and Berlekamp-Welch decoding
//! (n = 4..=7).

// criterion_group! defines a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use btcmpc_engine::mpc::check::{verify_openings, Challenge, STORE_CHECK_TAG};
use btcmpc_engine::mpc::compare::inverse_roots;
use btcmpc_engine::mpc::dealing::{deal, receipts_root, Hash32};
use btcmpc_engine::mpc::decode::{decode, decode_vec};
use btcmpc_engine::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
use btcmpc_engine::mpc::round::PartyId;
use btcmpc_engine::mpc::shamir::{self, Params, Poly};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

const DEAL_VALUES: usize = 1 << 20;
const CHECK_VALUES: usize = 1_000_000;

fn dealing<F: PrimeField>(c: &mut Criterion) {
    let params = Params::new(4, 1).expect("valid");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let secrets: Vec<F> = (0..DEAL_VALUES as u64).map(F::from_u64).collect();
    let mut out: Vec<Vec<F>> = (0..4).map(|_| Vec::with_capacity(DEAL_VALUES)).collect();
    let mut g = c.benchmark_group(format!("deal/{}", F::NAME));
    g.throughput(Throughput::Elements(DEAL_VALUES as u64));
    g.sample_size(10);
    g.bench_function("n4_t1", |b| {
        b.iter(|| {
            for v in out.iter_mut() {
                v.clear();
            }
            shamir::deal_vec_into(&secrets, params, &mut rng, &mut out);
            black_box(&out);
        })
    });
    let params = Params::new(7, 2).expect("valid");
    let mut out: Vec<Vec<F>> = (0..7).map(|_| Vec::with_capacity(DEAL_VALUES)).collect();
    g.bench_function("n7_t2", |b| {
        b.iter(|| {
            for v in out.iter_mut() {
                v.clear();
            }
            shamir::deal_vec_into(&secrets, params, &mut rng, &mut out);
            black_box(&out);
        })
    });
    g.finish();
}

/// The whole check of a 1M-value store at n = 4: every party hashes its receipt and computes
/// its opening (the work of all four parties, on one core), then the openings are verified.
fn batch_check<F: PrimeField>(c: &mut Criterion) {
    let params = Params::new(4, 1).expect("valid");
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let col: Vec<F> = (0..CHECK_VALUES as u64).map(F::from_u64).collect();
    let parties = deal(params, &[col], &mut rng);
    let ctx: Hash32 = [5; 32];
    let mut g = c.benchmark_group(format!("check/{}", F::NAME));
    g.throughput(Throughput::Elements(CHECK_VALUES as u64));
    g.sample_size(10);
    g.bench_function("receipt_1m_one_party", |b| {
        b.iter(|| black_box(parties[0].receipt_hash(&ctx)))
    });
    let root = receipts_root(
        &parties
            .iter()
            .map(|p| p.receipt_hash(&ctx))
            .collect::<Vec<_>>(),
    );
    g.bench_function("challenge_1m", |b| {
        b.iter(|| black_box(Challenge::<F>::new(STORE_CHECK_TAG, &root, CHECK_VALUES)))
    });
    let ch = Challenge::<F>::new(STORE_CHECK_TAG, &root, CHECK_VALUES);
    g.bench_function("opening_1m_one_party", |b| {
        b.iter(|| black_box(ch.opening(&parties[0]).expect("shape")))
    });
    g.bench_function("party_total_1m", |b| {
        b.iter(|| {
            let _ = black_box(parties[0].receipt_hash(&ctx));
            let ch = Challenge::<F>::new(STORE_CHECK_TAG, &root, CHECK_VALUES);
            let o = ch.opening(&parties[0]).expect("shape");
            black_box(o)
        })
    });
    let openings: Vec<(PartyId, F)> = parties
        .iter()
        .map(|p| (p.index, ch.opening(p).expect("shape")))
        .collect();
    g.bench_function("verify_openings", |b| {
        b.iter(|| black_box(verify_openings(params, &openings).expect("valid")))
    });
    g.finish();
}

fn decoding<F: PrimeField>(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("decode/{}", F::NAME));
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    for n in 4..=7usize {
        let params = Params::byzantine(n).expect("valid");
        let t = params.t();
        let poly = Poly::random(F::random(&mut rng), t, &mut rng);
        let clean: Vec<(PartyId, F)> = PartyId::all(n)
            .map(|x| (x, poly.eval_u64(u64::from(x.get()))))
            .collect();
        let mut dirty = clean.clone();
        for k in 0..t {
            dirty[2 * k].1 += F::ONE;
        }
        g.bench_with_input(BenchmarkId::new("clean", n), &clean, |b, pts| {
            b.iter(|| black_box(decode(params, pts).expect("valid")))
        });
        g.bench_with_input(BenchmarkId::new("t_errors", n), &dirty, |b, pts| {
            b.iter(|| black_box(decode(params, pts).expect("valid")))
        });
        // 1000 aggregates per party, no errors (the fast path).
        let secrets: Vec<F> = (0..1000).map(|_| F::random(&mut rng)).collect();
        let shares = shamir::deal_vec(&secrets, params, &mut rng);
        let refs: Vec<(PartyId, &[F])> = PartyId::all(n)
            .zip(&shares)
            .map(|(i, s)| (i, s.as_slice()))
            .collect();
        g.throughput(Throughput::Elements(1000));
        g.bench_with_input(BenchmarkId::new("vec1000", n), &refs, |b, r| {
            b.iter(|| black_box(decode_vec(params, r).expect("valid")))
        });
        g.throughput(Throughput::Elements(1));
    }
    g.finish();
}

fn field_ops<F: PrimeField>(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let a: Vec<F> = (0..1 << 16).map(|_| F::random(&mut rng)).collect();
    let b: Vec<F> = (0..1 << 16).map(|_| F::random(&mut rng)).collect();
    let mut g = c.benchmark_group(format!("field/{}", F::NAME));
    g.throughput(Throughput::Elements(1 << 16));
    g.bench_function("mul", |bench| {
        bench.iter(|| {
            let mut acc = F::ONE;
            for (x, y) in a.iter().zip(&b) {
                acc += *x * *y;
            }
            black_box(acc)
        })
    });
    g.bench_function("dot", |bench| bench.iter(|| black_box(F::dot(&a, &b))));
    g.bench_function("random", |bench| {
        bench.iter(|| {
            for _ in 0..1 << 16 {
                black_box(F::random(&mut rng));
            }
        })
    });
    g.finish();
}

/// The public square roots of the shared random bits of comparisons: `inverse_roots` of 4,096
/// squares (one per random bit; a 32-bit comparison takes 31).
fn roots<F: PrimeField>(c: &mut Criterion) {
    const LEN: usize = 4096;
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let squares: Vec<F> = (0..LEN)
        .map(|_| {
            let r = F::random(&mut rng);
            r * r
        })
        .collect();
    let mut g = c.benchmark_group(format!("roots/{}", F::NAME));
    g.throughput(Throughput::Elements(LEN as u64));
    g.sample_size(10);
    g.bench_function("inverse_roots", |b| {
        b.iter(|| black_box(inverse_roots(black_box(&squares)).expect("squares")))
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    roots::<Mersenne127>(c);
    roots::<Secp256k1Scalar>(c);
    field_ops::<Secp256k1Scalar>(c);
    field_ops::<Mersenne127>(c);
    dealing::<Secp256k1Scalar>(c);
    dealing::<Mersenne127>(c);
    batch_check::<Secp256k1Scalar>(c);
    batch_check::<Mersenne127>(c);
    decoding::<Secp256k1Scalar>(c);
    decoding::<Mersenne127>(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
