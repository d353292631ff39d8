//! Benchmarks of evaluation in both fields: `sum` and `dot` over 1 million rows of one party's
//! shares, element-wise products through the in-process committee (n = 4, t = 1), a secure
//! comparison (LTZ of a 32-bit value) on 10,000 rows through the committee, and the pieces of
//! one party's share of a degree reduction of 1 million products (`reduction/FIELD/...`: the
//! local products, the PRSS double sharing, masking, the payload hash of the signed opening,
//! encoding and decoding the opening as a peer message, checking and interpolating the four
//! openings, re-sharing), which `btcmpc bench committee` runs across processes; and one
//! party's PRSS sharings alone (`prss/FIELD/...`: double and degree-`2t` zero sharings for
//! n = 4, t = 1 and n = 7, t = 2); the portable inner products beside the AVX-512 IFMA ones
//! (`eval/FIELD/dot_1m_scalar`); signing and verifying one echo-broadcast header
//! (`sig/...`).

// criterion_group! defines a public function that cannot carry a doc comment.
#![allow(missing_docs)]

use btcmpc_engine::mpc::committee::{Committee, Scenario};
use btcmpc_engine::mpc::echo::{payload_hash, SignedHeader};
use btcmpc_engine::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
use btcmpc_engine::mpc::mult;
use btcmpc_engine::mpc::query::{Node, Opened, Plan};
use btcmpc_engine::mpc::round::{Message, PartyId};
use btcmpc_engine::mpc::shamir::{self, Params};
use btcmpc_engine::mpc::sig::SigningKey;
use btcmpc_engine::node::peer::{decode_message, message_bytes};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const ROWS: usize = 1_000_000;
const PRODUCTS: usize = 1 << 18;
const COMPARED: usize = 10_000;

fn shares<F: PrimeField>(len: usize, seed: u64) -> Vec<F> {
    (0..len as u64)
        .map(|i| F::from_u64(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed).square())
        .collect()
}

fn aggregates<F: PrimeField>(c: &mut Criterion) {
    let x = shares::<F>(ROWS, 1);
    let y = shares::<F>(ROWS, 2);
    let mut g = c.benchmark_group(format!("eval/{}", F::NAME));
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    g.bench_function("sum_1m", |b| {
        b.iter(|| black_box(F::sum_slice(black_box(&x))))
    });
    g.bench_function("dot_1m", |b| {
        b.iter(|| black_box(F::dot(black_box(&x), black_box(&y))))
    });
    g.finish();
}

/// The portable inner products, beside `eval/FIELD/dot_1m` (the AVX-512 IFMA ones where the
/// processor has it).
fn dot_scalar(c: &mut Criterion) {
    let mut g = c.benchmark_group("eval/m127");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    let x = shares::<Mersenne127>(ROWS, 1);
    let y = shares::<Mersenne127>(ROWS, 2);
    g.bench_function("dot_1m_scalar", |b| {
        b.iter(|| black_box(Mersenne127::dot_scalar(black_box(&x), black_box(&y))))
    });
    g.finish();
    let mut g = c.benchmark_group("eval/secp256k1");
    g.throughput(Throughput::Elements(ROWS as u64));
    g.sample_size(10);
    let x = shares::<Secp256k1Scalar>(ROWS, 1);
    let y = shares::<Secp256k1Scalar>(ROWS, 2);
    g.bench_function("dot_1m_scalar", |b| {
        b.iter(|| black_box(Secp256k1Scalar::dot_scalar(black_box(&x), black_box(&y))))
    });
    g.finish();
}

fn products<F: PrimeField>(c: &mut Criterion) {
    let params = Params::new(4, 1).expect("n = 4, t = 1 is valid");
    let committee = Committee::<F>::setup(&Scenario::honest(4, 1)).expect("honest setup");
    let mut rng = shamir::dealer_rng();
    let values = shares::<F>(PRODUCTS, 3);
    let a = shamir::deal_vec(&values, params, &mut rng);
    let b = shamir::deal_vec(&values, params, &mut rng);
    let mut g = c.benchmark_group(format!("committee/{}", F::NAME));
    g.throughput(Throughput::Elements(PRODUCTS as u64));
    g.sample_size(10);
    g.bench_function("elementwise_products_n4", |bench| {
        bench.iter(|| {
            black_box(
                committee
                    .multiply([1u8; 32], &a, &b)
                    .expect("honest products"),
            )
        })
    });
    g.finish();
}

/// `sum(LTZ(x))` over 10,000 rows of 32-bit signed values: shared random bits (72 per row),
/// one masked opening, a 5-round BitLT, through 4 parties in one process.
fn comparisons<F: PrimeField>(c: &mut Criterion) {
    let params = Params::new(4, 1).expect("n = 4, t = 1 is valid");
    let committee = Committee::<F>::setup(&Scenario::honest(4, 1)).expect("honest setup");
    let mut rng = shamir::dealer_rng();
    let values: Vec<F> = (0..COMPARED as i64)
        .map(|i| F::from_i64((i.wrapping_mul(0x9e37_79b9) % (1 << 31)) - (1 << 30)))
        .collect();
    let columns: Vec<Vec<Vec<F>>> = shamir::deal_vec(&values, params, &mut rng)
        .into_iter()
        .map(|c| vec![c])
        .collect();
    let node = Node::LessThanZero {
        value: Box::new(Node::Column(0)),
        bits: 32,
    };
    let plan = Plan {
        field: F::NAME,
        rows: COMPARED,
        opened: vec![Opened {
            label: "sum(x < 0)".into(),
            degree: node.degree(),
            node,
            scale: 0,
            bits: 15,
        }],
        outputs: Vec::new(),
        degree: 1,
        gates: Vec::new(),
        min_rows: None,
        supports: Vec::new(),
    };
    let mut g = c.benchmark_group(format!("committee/{}", F::NAME));
    g.throughput(Throughput::Elements(COMPARED as u64));
    g.sample_size(10);
    g.bench_function("ltz32_10k_n4", |bench| {
        bench.iter(|| {
            black_box(
                committee
                    .evaluate([2u8; 32], &plan, &columns)
                    .expect("honest comparison"),
            )
        })
    });
    g.finish();
}

/// One party's local work in a degree reduction of `REDUCED` products (n = 4, t = 1), piece
/// by piece.
fn reduction<F: PrimeField>(c: &mut Criterion) {
    const REDUCED: usize = 1_000_000;
    let committee = Committee::<F>::setup(&Scenario::honest(4, 1)).expect("honest setup");
    let prss = committee
        .prss(PartyId::new(1, 4).expect("party 1 of 4"))
        .expect("party 1's PRSS");
    let a = shares::<F>(REDUCED, 4);
    let b = shares::<F>(REDUCED, 5);
    let job = [3u8; 32];
    let c2t = mult::local_products(&a, &b).expect("same lengths");
    let (rt, r2t) = prss.double(&job, 0, REDUCED);
    let header = SignedHeader {
        job,
        round: 0,
        slot: 1,
        sender: 1,
        payload_hash: payload_hash(&c2t),
        signature: [0; 64],
    };
    let msg = Message::Value {
        header,
        payload: std::sync::Arc::new(c2t.clone()),
    };
    let bytes = message_bytes(&msg);
    let openings: Vec<Vec<F>> = (1..=4u64)
        .map(|x| {
            c2t.iter()
                .map(|v| *v + F::from_u64(x) * F::from_u64(7) + F::from_u64(x * x))
                .collect()
        })
        .collect();
    let refs: Vec<(usize, &[F])> = openings
        .iter()
        .enumerate()
        .map(|(i, v)| (i + 1, &v[..]))
        .collect();
    let mut g = c.benchmark_group(format!("reduction/{}", F::NAME));
    g.throughput(Throughput::Elements(REDUCED as u64));
    g.sample_size(10);
    g.bench_function("local_products_1m", |bench| {
        bench.iter(|| black_box(mult::local_products(&a, &b).expect("same lengths")))
    });
    g.bench_function("prss_double_1m", |bench| {
        bench.iter(|| black_box(prss.double(&job, 1, REDUCED)))
    });
    g.bench_function("mask_1m", |bench| {
        bench.iter(|| {
            let mut c = c2t.clone();
            mult::mask_for_opening(&mut c, &r2t).expect("same lengths");
            black_box(c)
        })
    });
    g.bench_function("payload_hash_1m", |bench| {
        bench.iter(|| black_box(payload_hash(&c2t)))
    });
    g.bench_function("encode_value_message_1m", |bench| {
        bench.iter(|| black_box(message_bytes(&msg)))
    });
    g.bench_function("decode_value_message_1m", |bench| {
        bench.iter(|| black_box(decode_message::<F>(&bytes).expect("valid")))
    });
    g.bench_function("open_2t_4_openings_1m", |bench| {
        bench.iter(|| black_box(mult::open_2t(1, &refs, REDUCED).expect("consistent")))
    });
    g.bench_function("reshare_1m", |bench| {
        bench.iter(|| black_box(mult::reshare(c2t.clone(), &rt).expect("same lengths")))
    });
    g.finish();
}

/// One party's PRSS double and zero sharings: `len` values for party `me` of `(n, t)`.
fn prss_sharings<F: PrimeField>(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("prss/{}", F::NAME));
    g.sample_size(10);
    for (n, t, me, len, name) in [
        (4, 1, 1, 1_000_000, "n4_t1_1m"),
        (7, 2, 3, 100_000, "n7_t2_100k"),
    ] {
        let committee = Committee::<F>::setup(&Scenario::honest(n, t)).expect("honest setup");
        let prss = committee
            .prss(PartyId::new(me, n).expect("a member"))
            .expect("the party's PRSS");
        let job = [3u8; 32];
        g.throughput(Throughput::Elements(len as u64));
        g.bench_function(format!("double_{name}"), |bench| {
            bench.iter(|| black_box(prss.double(&job, 1, len)))
        });
        g.bench_function(format!("zero_2t_{name}"), |bench| {
            bench.iter(|| black_box(prss.zero_2t(&job, 1, len)))
        });
    }
    g.finish();
}

/// One signed echo-broadcast header: signing it and verifying it (BIP340, libsecp256k1).
fn signatures(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[7; 32]).expect("a valid secret key");
    let header = SignedHeader::sign(&key, [1; 32], 3, 2, 2, [9; 32]);
    let mut g = c.benchmark_group("sig");
    g.bench_function("sign_header", |b| {
        b.iter(|| SignedHeader::sign(&key, [1; 32], 3, 2, 2, black_box([9; 32])))
    });
    g.bench_function("verify_header", |b| {
        b.iter(|| black_box(&header).verify(key.verifying_key()))
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    prss_sharings::<Secp256k1Scalar>(c);
    prss_sharings::<Mersenne127>(c);
    reduction::<Secp256k1Scalar>(c);
    reduction::<Mersenne127>(c);
    aggregates::<Secp256k1Scalar>(c);
    aggregates::<Mersenne127>(c);
    dot_scalar(c);
    signatures(c);
    products::<Secp256k1Scalar>(c);
    products::<Mersenne127>(c);
    comparisons::<Mersenne127>(c);
    comparisons::<Secp256k1Scalar>(c);
}

criterion_group!(eval, benches);
criterion_main!(eval);
