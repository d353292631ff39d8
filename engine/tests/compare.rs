//! Secure comparison (LTZ, EQZ) and disclosure gates on shares, against the clear evaluation
//! of the same plan ([`Plan::eval_clear`], [`Node::eval_row`], [`GateTest::passes`]), through
//! the in-process committee: boundaries, random plans, every evil twin, and the no-selective-
//! failure property (a perturbation's outcome does not depend on the secret it targets).

use std::collections::BTreeSet;

use btcmpc_engine::mpc::committee::{run_plan, Behaviour, Committee, Scenario, Status};
use btcmpc_engine::mpc::compare::max_compare_bits;
use btcmpc_engine::mpc::csv::Dataset;
use btcmpc_engine::mpc::decode::{decode_vec, DecodeVec};
use btcmpc_engine::mpc::eval::{EvalError, Tamper};
use btcmpc_engine::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
use btcmpc_engine::mpc::query::num::to_signed;
use btcmpc_engine::mpc::query::{Gate, GateTest, Node, Opened, Plan};
use btcmpc_engine::mpc::round::PartyId;
use btcmpc_engine::mpc::shamir::deal_vec;
use num_bigint::BigInt;
use num_traits::{One, Zero};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rand::SeedableRng;

fn col(c: usize) -> Box<Node> {
    Box::new(Node::Column(c))
}

fn konst(v: i64) -> Box<Node> {
    Box::new(Node::Const(BigInt::from(v)))
}

fn ltz(value: Node, bits: u32) -> Node {
    Node::LessThanZero {
        value: Box::new(value),
        bits,
    }
}

fn eqz(value: Node, bits: u32) -> Node {
    Node::EqualsZero {
        value: Box::new(value),
        bits,
    }
}

fn mul(a: Node, b: Node) -> Node {
    Node::Mul(Box::new(a), Box::new(b))
}

fn sub(a: Node, b: Node) -> Node {
    Node::Sub(Box::new(a), Box::new(b))
}

/// A plan opening `sum(node)` for every node, with `gates`.
fn plan<F: PrimeField>(rows: usize, nodes: Vec<Node>, gates: Vec<Gate>) -> Plan {
    let opened: Vec<Opened> = nodes
        .into_iter()
        .enumerate()
        .map(|(i, node)| Opened {
            label: format!("s{i}"),
            degree: node.degree(),
            scale: 0,
            bits: 0,
            node,
        })
        .collect();
    Plan {
        field: F::NAME,
        rows,
        degree: opened.iter().map(|o| o.degree).max().unwrap_or(0),
        opened,
        outputs: Vec::new(),
        gates,
        min_rows: None,
        supports: Vec::new(),
    }
}

/// The clear gate bits of a plan.
fn clear_gates(plan: &Plan, values: &[Vec<BigInt>]) -> Vec<bool> {
    plan.gates
        .iter()
        .map(|g| {
            g.tests.iter().all(|t| {
                let count: BigInt = (0..plan.rows)
                    .map(|r| t.rows().eval_row(&|c| i128_of(&values[c][r])))
                    .sum();
                t.passes(u64::try_from(count).expect("a count is small"))
            })
        })
        .collect()
}

fn i128_of(v: &BigInt) -> i128 {
    i128::try_from(v).expect("columns hold i128 values")
}

/// Decoded sums, gate bits, disclosure.
type Opened3 = (Vec<BigInt>, Vec<bool>, Vec<bool>);

/// Evaluates `plan` through an honest committee of `n` (threshold `t`) on `values[col][row]`
/// and decodes every opened sum (checking that nobody's share is off); returns the sums, the
/// gate bits and the disclosure every party agreed on.
fn on_shares<F: PrimeField>(
    committee: &Committee<F>,
    plan: &Plan,
    values: &[Vec<i128>],
    seed: u64,
) -> Result<Opened3, EvalError> {
    let params = committee.params();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut columns: Vec<Vec<Vec<F>>> = vec![Vec::new(); params.n()];
    for c in values {
        let secrets: Vec<F> = c.iter().map(|v| F::from_i128(*v)).collect();
        for (i, s) in deal_vec(&secrets, params, &mut rng).into_iter().enumerate() {
            columns[i].push(s);
        }
    }
    let mut job = [0u8; 32];
    job[..8].copy_from_slice(&seed.to_be_bytes());
    let evals = committee.evaluate(job, plan, &columns)?;
    for e in &evals {
        assert_eq!(
            e.gates, evals[0].gates,
            "every party opened the same gate bits"
        );
        assert_eq!(e.disclosed, evals[0].disclosed);
    }
    let vectors: Vec<(PartyId, &[F])> = PartyId::all(evals.len())
        .zip(&evals)
        .map(|(i, e)| (i, &e.values[..]))
        .collect();
    let sums = match decode_vec(params, &vectors).unwrap() {
        DecodeVec::Decoded { values, culprits } => {
            assert!(culprits.is_empty(), "honest shares lie on one polynomial");
            values.into_iter().map(to_signed).collect()
        }
        DecodeVec::Inconsistent { position } => panic!("inconsistent output {position}"),
    };
    Ok((sums, evals[0].gates.clone(), evals[0].disclosed.clone()))
}

/// `value = sum_j digit_j 2^(60 j)` over `digits` columns from `first` on: values wider than
/// an `i128` column.
fn digits_node(first: usize, digits: usize) -> Node {
    let mut node = Node::Column(first);
    for j in 1..digits {
        node = Node::Add(
            Box::new(node),
            Box::new(Node::Scale(col(first + j), BigInt::one() << (60 * j))),
        );
    }
    node
}

/// Splits `v` into `digits` base-2^60 digits, the top one signed.
fn split(v: &BigInt, digits: usize) -> Vec<i128> {
    let base = BigInt::one() << 60u32;
    let mut rest = v.clone();
    let mut out = Vec::new();
    for _ in 0..digits - 1 {
        let d = ((&rest % &base) + &base) % &base;
        rest = (&rest - &d) / &base;
        out.push(i128_of(&d));
    }
    out.push(i128_of(&rest));
    out
}

/// LTZ and EQZ of every boundary value of `bits` bits: 0, 1, -1, the largest and smallest
/// values and their neighbours; each row's bit is read back through a weight `2^row`.
fn boundaries<F: PrimeField>(committee: &Committee<F>, bits: u32) {
    let half = BigInt::one() << (bits - 1);
    let mut targets: Vec<BigInt> = vec![
        BigInt::zero(),
        BigInt::one(),
        -BigInt::one(),
        &half - 1,
        &half - 2,
        -half.clone(),
        -&half + 1,
        BigInt::from(2),
        BigInt::from(-2),
    ];
    targets.retain(|v| *v >= -half.clone() && *v < half);
    targets.sort();
    targets.dedup();
    let digits = (bits as usize).div_ceil(60) + 1;
    let rows = targets.len();
    let mut values: Vec<Vec<i128>> = vec![Vec::new(); digits + 1];
    for v in &targets {
        for (j, d) in split(v, digits).into_iter().enumerate() {
            values[j].push(d);
        }
    }
    values[digits] = (0..rows).map(|r| 1i128 << r).collect();
    let value = digits_node(0, digits);
    let weight = Node::Column(digits);
    let p = plan::<F>(
        rows,
        vec![
            mul(ltz(value.clone(), bits), weight.clone()),
            mul(eqz(value.clone(), bits), weight),
            ltz(value.clone(), bits),
            eqz(value, bits),
        ],
        Vec::new(),
    );
    let (sums, _, _) = on_shares(committee, &p, &values, u64::from(bits)).unwrap();
    let want = p.eval_clear(&values);
    assert_eq!(sums, want, "{} bits={bits} values {targets:?}", F::NAME);
    // The oracle itself: bit r of the weighted sums is row r's comparison.
    for (r, v) in targets.iter().enumerate() {
        let lt = (&want[0] >> r) & BigInt::one();
        let eq = (&want[1] >> r) & BigInt::one();
        assert_eq!(lt, BigInt::from(u8::from(*v < BigInt::zero())), "{v}");
        assert_eq!(eq, BigInt::from(u8::from(v.is_zero())), "{v}");
    }
}

#[test]
fn every_width_at_its_boundaries_m127() {
    let committee = Committee::<Mersenne127>::setup(&Scenario::honest(4, 1)).unwrap();
    for bits in [1, 2, 3, 8, 32, 61, max_compare_bits::<Mersenne127>()] {
        boundaries(&committee, bits);
    }
}

#[test]
fn every_width_at_its_boundaries_secp256k1() {
    let committee = Committee::<Secp256k1Scalar>::setup(&Scenario::honest(4, 1)).unwrap();
    for bits in [1, 2, 33, max_compare_bits::<Secp256k1Scalar>()] {
        boundaries(&committee, bits);
    }
}

#[test]
fn comparisons_wider_than_the_field_allows_are_refused_by_name() {
    let committee = Committee::<Mersenne127>::setup(&Scenario::honest(4, 1)).unwrap();
    let max = max_compare_bits::<Mersenne127>();
    for bits in [0, max + 1] {
        let p = plan::<Mersenne127>(2, vec![ltz(Node::Column(0), bits)], Vec::new());
        match on_shares(&committee, &p, &[vec![1, -1]], 1) {
            Err(EvalError::CompareBits {
                node,
                bits: b,
                max: m,
            }) => {
                assert_eq!((b, m), (bits, max));
                assert!(node.starts_with("LessThanZero"), "{node}");
            }
            other => panic!("bits={bits}: {other:?}"),
        }
    }
    // Inside a gate too.
    let p = plan::<Mersenne127>(
        2,
        vec![Node::Column(0)],
        vec![Gate {
            tests: vec![GateTest::AtLeast {
                rows: eqz(Node::Column(0), max + 1),
                min_rows: 1,
            }],
            opened: vec![0],
        }],
    );
    assert!(matches!(
        on_shares(&committee, &p, &[vec![1, -1]], 1),
        Err(EvalError::CompareBits { .. })
    ));
}

/// A random small plan over two columns `x`, `y` of values in `[-lim, lim]`: comparisons of
/// expressions, products of comparisons and values, comparisons of comparisons.
fn random_plan(shape: u8, c: i64, bits: u32) -> Vec<Node> {
    let x = || Node::Column(0);
    let y = || Node::Column(1);
    match shape % 7 {
        // count() where x < c, count() where x = y
        0 => vec![
            ltz(sub(x(), Node::Const(c.into())), bits),
            eqz(sub(x(), y()), bits),
        ],
        // sum(y) where x > y; count where x >= c and y != c
        1 => vec![
            mul(ltz(sub(y(), x()), bits), y()),
            mul(
                Node::Sub(
                    konst(1),
                    Box::new(ltz(sub(x(), Node::Const(c.into())), bits)),
                ),
                Node::Sub(
                    konst(1),
                    Box::new(eqz(sub(y(), Node::Const(c.into())), bits)),
                ),
            ),
        ],
        // x between c and y: (1 - ltz(x - c)) * (1 - ltz(y - x))
        2 => vec![mul(
            mul(
                Node::Sub(
                    konst(1),
                    Box::new(ltz(sub(x(), Node::Const(c.into())), bits)),
                ),
                Node::Sub(konst(1), Box::new(ltz(sub(y(), x()), bits))),
            ),
            x(),
        )],
        // a comparison of a comparison: ltz(ltz(x) - eqz(y)) (bits 2)
        3 => vec![ltz(sub(ltz(x(), bits), eqz(y(), bits)), 2)],
        // sum(x * y) where x * 2 < y
        4 => vec![mul(
            ltz(sub(Node::Scale(Box::new(x()), 2.into()), y()), bits),
            mul(x(), y()),
        )],
        // mean(y) where x between c and y, then count() where x >= c: the product of two
        // comparisons first, one of them alone later (the evaluator's replays take the product
        // from their cache; the comparison inside it must not take rounds again)
        6 => {
            let at_least_c = Node::Sub(
                konst(1),
                Box::new(ltz(sub(x(), Node::Const(c.into())), bits)),
            );
            let at_most_y = Node::Sub(konst(1), Box::new(ltz(sub(y(), x()), bits)));
            let between = mul(at_least_c.clone(), at_most_y);
            vec![mul(between.clone(), y()), between, at_least_c]
        }
        // x in (c, -c): eqz(x - c) + eqz(x + c) (disjoint unless c = 0)
        _ => vec![
            Node::Add(
                Box::new(eqz(sub(x(), Node::Const(c.into())), bits)),
                Box::new(eqz(
                    Node::Add(col(0), Box::new(Node::Const(c.into()))),
                    bits,
                )),
            ),
            eqz(y(), bits),
        ],
    }
}

#[test]
fn random_plans_agree_with_the_clear_evaluation() {
    let lim: i64 = 1 << 20;
    // Differences of two values and doubled values need 23 bits with the sign.
    let bits = 23;
    for (name, cases) in [("m127", 14), ("secp256k1", 4)] {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let strategy = (
            prop::collection::vec((-lim..=lim, -lim..=lim), 1..5),
            any::<u8>(),
            -lim..=lim,
            prop::bool::ANY,
            any::<u64>(),
        );
        let m127 = Committee::<Mersenne127>::setup(&Scenario::honest(4, 1)).unwrap();
        let secp = Committee::<Secp256k1Scalar>::setup(&Scenario::honest(4, 1)).unwrap();
        runner
            .run(&strategy, |(rows, shape, c, reuse, seed)| {
                // Equal values are the interesting boundary: reuse x for y, or c from the data.
                let c = if reuse { rows[0].0 } else { c };
                let x: Vec<i128> = rows.iter().map(|r| i128::from(r.0)).collect();
                let y: Vec<i128> = if reuse && shape % 2 == 0 {
                    x.clone()
                } else {
                    rows.iter().map(|r| i128::from(r.1)).collect()
                };
                let values = vec![x, y];
                let nodes = random_plan(shape, c, bits);
                let got = if name == "m127" {
                    let p = plan::<Mersenne127>(rows.len(), nodes, Vec::new());
                    let want = p.eval_clear(&values);
                    (on_shares(&m127, &p, &values, seed).unwrap().0, want)
                } else {
                    let p = plan::<Secp256k1Scalar>(rows.len(), nodes, Vec::new());
                    let want = p.eval_clear(&values);
                    (on_shares(&secp, &p, &values, seed).unwrap().0, want)
                };
                prop_assert_eq!(got.0, got.1, "shape {} c {}", shape % 7, c);
                Ok(())
            })
            .unwrap();
    }
}

/// A product of two comparisons and then one of them alone, in both fields, with rows on each
/// side of both bounds: the evaluator's replays take the product from their cache after its
/// rounds, and must count the comparison inside it as computed (a second computation takes
/// rounds the first pass did not, and its random bits open a non-square).
#[test]
fn a_comparison_inside_a_cached_product_is_not_computed_again() {
    let x: Vec<i128> = vec![-5, 0, 3, 7, 7, 12, -1, 4];
    let y: Vec<i128> = vec![9, 1, 3, 2, 8, 20, 0, 4];
    let values = vec![x, y];
    let nodes = random_plan(6, 3, 8);
    let p = plan::<Mersenne127>(8, nodes.clone(), Vec::new());
    let m127 = Committee::<Mersenne127>::setup(&Scenario::honest(4, 1)).unwrap();
    let got = on_shares(&m127, &p, &values, 1).unwrap().0;
    assert_eq!(got, p.eval_clear(&values));
    // mean(y) where 3 <= x <= y: rows (3, 3), (7, 8), (12, 20) and (4, 4); x >= 3 on 5 rows.
    assert_eq!(got[1], BigInt::from(4));
    assert_eq!(got[0], BigInt::from(3 + 8 + 20 + 4));
    assert_eq!(got[2], BigInt::from(5));
    let p = plan::<Secp256k1Scalar>(8, nodes, Vec::new());
    let secp = Committee::<Secp256k1Scalar>::setup(&Scenario::honest(4, 1)).unwrap();
    assert_eq!(
        on_shares(&secp, &p, &values, 2).unwrap().0,
        p.eval_clear(&values)
    );
}

/// A gate on `count where x < c` (AtLeast) and on `count where x = c` (ZeroOrAtLeast).
fn gated_plan(rows: usize, c: i64, at_least: u64, zero_or: u64) -> Plan {
    let below = ltz(sub(Node::Column(0), Node::Const(c.into())), 24);
    let equal = eqz(sub(Node::Column(0), Node::Const(c.into())), 24);
    plan::<Mersenne127>(
        rows,
        vec![
            mul(below.clone(), Node::Column(1)),
            below.clone(),
            Node::Column(1),
            mul(equal.clone(), Node::Column(1)),
        ],
        vec![
            Gate {
                tests: vec![GateTest::AtLeast {
                    rows: below,
                    min_rows: at_least,
                }],
                opened: vec![0, 1],
            },
            Gate {
                tests: vec![
                    GateTest::ZeroOrAtLeast {
                        rows: equal,
                        min_rows: zero_or,
                    },
                    GateTest::AtLeast {
                        rows: Node::Const(1.into()),
                        min_rows: 2,
                    },
                ],
                opened: vec![3],
            },
        ],
    )
}

#[test]
fn gates_open_one_bit_and_withhold_what_fails() {
    let committee = Committee::<Mersenne127>::setup(&Scenario::honest(5, 1)).unwrap();
    // x: 1 2 3 3 5 7 ; below 4: four rows; equal to 3: two rows.
    let values = vec![vec![1, 2, 3, 3, 5, 7], vec![10, 20, 30, 40, 50, 60]];
    let big: Vec<Vec<BigInt>> = values
        .iter()
        .map(|c| c.iter().map(|v| BigInt::from(*v)).collect())
        .collect();
    let mut seen = BTreeSet::new();
    for (c, at_least, zero_or) in [
        (4, 4, 2),  // exactly min_rows: both pass
        (4, 5, 3),  // one short; two equal rows, 3 needed: both fail
        (4, 0, 0),  // min_rows 0 always passes
        (6, 4, 1),  // no equal row: ZeroOrAtLeast passes on 0
        (3, 3, 3),  // below 3: two rows, fails; two equal, fails
        (-9, 1, 5), // nothing below: fails; nothing equal: passes
    ] {
        let p = gated_plan(6, c, at_least, zero_or);
        let want_gates = clear_gates(&p, &big);
        let want = p.eval_clear(&values);
        let (sums, gates, disclosed) = on_shares(&committee, &p, &values, c as u64).unwrap();
        assert_eq!(gates, want_gates, "c={c} {at_least} {zero_or}");
        seen.extend(gates.iter().copied());
        for (i, s) in sums.iter().enumerate() {
            let open = p
                .gates
                .iter()
                .zip(&gates)
                .all(|(g, b)| *b || !g.opened.contains(&i));
            assert_eq!(disclosed[i], open);
            if open {
                assert_eq!(*s, want[i], "sum {i}");
            } else {
                assert!(s.is_zero(), "a withheld sum is 0 on every share");
            }
        }
    }
    assert_eq!(
        seen,
        BTreeSet::from([false, true]),
        "both outcomes exercised"
    );
}

#[test]
fn a_withheld_sum_leaves_the_party_as_its_mask() {
    let d = Dataset::parse("x:int,y:int\n1,10\n2,20\n3,30\n").unwrap();
    // count where x < 3 is 2: AtLeast 3 withholds sums 0 and 1, sum 2 stays open.
    let p = gated_plan(3, 3 << 16, 3, 1);
    let want = p.eval_clear(&d.values);
    let out = run_plan::<Mersenne127>(&Scenario::honest(4, 1), &d, p, "gated", &|_, _| {}).unwrap();
    assert_eq!(out.status, Status::Delivered);
    assert_eq!(out.gates, Some(vec![false, true]));
    assert_eq!(out.disclosed, Some(vec![false, false, true, true]));
    // The service removes the mask: what it decoded was the mask alone.
    let opened = out.opened.unwrap();
    assert!(opened[0].is_zero() && opened[1].is_zero());
    assert_eq!(opened[2], want[2]);
    assert_eq!(opened[3], want[3]);
    // The plan has no outputs of its own: finishing with the gate bits gives none.
    assert_eq!(out.result.map(|r| r.len()), Some(0));
}

/// The plan of the sweeps: a comparison inside a product, an equality, and a gate.
fn sweep_plan(rows: usize) -> Plan {
    let below = ltz(sub(Node::Column(0), Node::Const(3.into())), 5);
    plan::<Mersenne127>(
        rows,
        vec![mul(below.clone(), Node::Column(1)), eqz(Node::Column(1), 5)],
        vec![Gate {
            tests: vec![GateTest::AtLeast {
                rows: below,
                min_rows: 2,
            }],
            opened: vec![0],
        }],
    )
}

/// Every evil twin at `n` (threshold `(n - 1) / 3`) and every fault count up to `t`: each run
/// delivers the right sums and gate bit, or aborts because of a wrong product contribution;
/// every other cheater (equivocation, wrong opening, wrong output share, wrong check opening,
/// bad randomness contribution) is named, and only the cheaters are.
fn sweep(n: usize) {
    let d = Dataset {
        values: vec![vec![1, 2, 5], vec![0, -3, 4]],
        ..Dataset::parse("x:int,y:int\n0,0\n0,0\n0,0\n").unwrap()
    };
    let p = sweep_plan(3);
    let want = p.eval_clear(&d.values);
    let t = (n - 1) / 3;
    for k in 0..=t {
        let mut bad = vec![2, n];
        bad.extend((1..=n).filter(|i| *i != 2 && *i != n));
        bad.truncate(k);
        for b in Behaviour::ALL {
            if k == 0 && b != Behaviour::Honest {
                continue; // no faulty party: every behaviour is the honest run
            }
            let mut s = Scenario::honest(n, t);
            s.seed = (n * 10 + k) as u64;
            for i in &bad {
                s = s.with(*i, b);
            }
            let label = format!("n={n} t={t} bad={bad:?} {b:?}");
            let out = run_plan::<Mersenne127>(&s, &d, p.clone(), "sweep", &|_, _| {})
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let named: BTreeSet<usize> = bad.iter().copied().collect();
            match out.status {
                Status::Delivered => {
                    assert_eq!(out.opened.as_ref(), Some(&want), "{label}: never wrong");
                    assert_eq!(out.gates, Some(vec![true]), "{label}");
                }
                Status::Aborted(ref why) => {
                    // Only a wrong product contribution aborts (detected, not named).
                    assert_eq!(b, Behaviour::WrongProductContribution, "{label}: {why}");
                    assert!(!bad.is_empty(), "{label}");
                }
                ref other => panic!("{label}: {other:?}"),
            }
            let want_named = match b {
                Behaviour::Honest | Behaviour::Withhold | Behaviour::WrongProductContribution => {
                    BTreeSet::new()
                }
                _ => named,
            };
            assert_eq!(out.culprits, want_named, "{label}");
        }
    }
}

#[test]
fn every_evil_twin_is_detected_or_named_never_a_wrong_count_n4() {
    sweep(4);
}

#[test]
fn every_evil_twin_is_detected_or_named_never_a_wrong_count_n5() {
    sweep(5);
}

#[test]
fn every_evil_twin_is_detected_or_named_never_a_wrong_count_n6() {
    sweep(6);
}

#[test]
fn every_evil_twin_is_detected_or_named_never_a_wrong_count_n7() {
    sweep(7);
}

/// How a run ended, as a corrupt party sees it: abort, or delivered with these culprits (and
/// whether the result was right, which must always hold).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Aborted,
    Delivered { culprits: Vec<usize>, right: bool },
}

fn seen(d: &Dataset, p: &Plan, seed: u64, tamper: Tamper<Mersenne127>) -> Seen {
    let mut s = Scenario::honest(4, 1);
    s.seed = seed;
    let want = p.eval_clear(&d.values);
    let out = run_plan::<Mersenne127>(&s, d, p.clone(), "perturbed", &move |i, m| {
        if i == 2 {
            m.tamper(tamper);
        }
    })
    .unwrap();
    match out.status {
        Status::Delivered => Seen::Delivered {
            culprits: out.culprits.into_iter().collect(),
            right: out.opened.as_ref() == Some(&want),
        },
        Status::Aborted(_) => Seen::Aborted,
        other => panic!("{other:?}"),
    }
}

/// No selective failure: party 2 perturbs one value inside a comparison (one of its shares of
/// a random bit, its share of the mask's PRSS integer r'', its r^2 reduction and r^2 opening, its masked opening, a BitLT reduction, its
/// share of the gate bit) on two datasets whose targeted secret differs (the compared value is
/// -1 or 2^(k-1) - 1: LTZ 1 or 0, same low bits, so the masked openings' low bits agree) and
/// which the gate opens or withholds accordingly. For every seed the outcome is the same on
/// both, and it is never a wrong result.
#[test]
fn outcome_of_a_perturbation_does_not_depend_on_the_secret() {
    let k = 8u32;
    let value = |x: i64| Dataset {
        values: vec![vec![i128::from(x)]],
        ..Dataset::parse("x:int\n0\n").unwrap()
    };
    let below = ltz(Node::Column(0), k);
    let p = plan::<Mersenne127>(
        1,
        vec![below.clone()],
        vec![Gate {
            tests: vec![GateTest::AtLeast {
                rows: below,
                min_rows: 1,
            }],
            opened: vec![0],
        }],
    );
    let one = value(-1); // secret 1: gate opens
    let zero = value((1 << (k - 1)) - 1); // secret 0: gate withholds

    // Rounds of this plan: LTZ of the row (0 r^2 reduction, 1 r^2 opening, 2 masked opening,
    // 3..=5 BitLT; the gate test's LTZ of the same row is that one), the gate's LTZ of
    // count - 1 (6..=8), the gate bit's opening (9).
    let d = |round, position| Tamper::Round {
        round,
        position,
        delta: Mersenne127::ONE,
    };
    let bit = |position| Tamper::RandomBit {
        position,
        delta: Mersenne127::ONE,
    };
    let high = |position| Tamper::RandomInt {
        position,
        delta: Mersenne127::ONE,
    };
    // A wrong share of bit 0 of r' aborts or is named depending on bit 0 of the masked opening
    // (public, and the same on both datasets): the same outcome for both secrets, per seed.
    let cases = [
        ("random bit in r'", bit(0), None),
        ("random bit in r'", bit(3), None),
        ("random integer r''", high(0), Some(named())),
        ("r^2 reduction", d(0, 4), Some(Seen::Aborted)),
        ("r^2 opening", d(1, 4), Some(named())),
        ("masked opening", d(2, 0), Some(named())),
        ("BitLT reduction", d(3, 0), Some(Seen::Aborted)),
        ("gate bit opening", d(9, 0), Some(named())),
    ];
    for (what, tamper, expected) in cases {
        let mut histogram = [Vec::new(), Vec::new()];
        for seed in 0..6 {
            let a = seen(&one, &p, seed, tamper);
            let b = seen(&zero, &p, seed, tamper);
            for s in [&a, &b] {
                assert!(
                    !matches!(s, Seen::Delivered { right: false, .. }),
                    "{what} seed {seed}: a silently wrong result"
                );
                if let Some(e) = &expected {
                    assert_eq!(s, e, "{what} seed {seed}");
                }
            }
            assert_eq!(
                a, b,
                "{what} seed {seed}: the outcome depends on the secret"
            );
            histogram[0].push(a);
            histogram[1].push(b);
        }
        histogram[0].sort();
        histogram[1].sort();
        assert_eq!(histogram[0], histogram[1], "{what}");
    }
}

fn named() -> Seen {
    Seen::Delivered {
        culprits: vec![2],
        right: true,
    }
}
