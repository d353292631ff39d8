//! End-to-end runs of the in-process committee: every committee size 4..=7, every tolerable
//! number of faulty parties 0..=t, every evil twin; exact results and exact culprit sets.

use std::collections::BTreeSet;

use btcmpc_engine::mpc::check::Refusal;
use btcmpc_engine::mpc::committee::{
    run, Behaviour, CommitteeError, Outcome, OwnerBehaviour, Scenario, ServiceBehaviour, Status,
};
use btcmpc_engine::mpc::csv::Dataset;
use btcmpc_engine::mpc::evidence::verify_equivocation;
use btcmpc_engine::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
use btcmpc_engine::mpc::query::{parse, plan, OutputValue};
use btcmpc_engine::mpc::round::PartyId;
use proptest::prelude::*;

const LINEAR: &str = "sum(x), mean(y), hist(c), count(), sum(2 * x - y + 0.5)";
const PRODUCTS: &str = "var(x), cov(x, y), dot(x, z), sum(x * y * z), mean(x)";

/// One row of the test data as text: `x` (int), `y` and `z` (decimals), `c` (category).
struct Row {
    x: i64,
    y: String,
    z: String,
    c: &'static str,
}

fn rows() -> Vec<Row> {
    (0..24i64)
        .map(|i| Row {
            x: (i * 7) % 11 - 5,
            y: format!("{}.{:02}", (i * 13) % 17 - 8, (i * 37) % 100),
            z: format!("{}.5", i % 5),
            c: ["red", "green", "blue"][(i % 3) as usize],
        })
        .collect()
}

fn data() -> Dataset {
    let mut csv = String::from("x:int,y:dec,z:dec,c:cat\n");
    for r in rows() {
        csv.push_str(&format!("{},{},{},{}\n", r.x, r.y, r.z, r.c));
    }
    Dataset::parse(&csv).unwrap()
}

/// `LINEAR` computed from the rows directly, independently of the planner: integers in i128,
/// decimals in f64 from their text. Returns `(name, value, tolerance)`; decimals are stored in
/// fixed point within 2^-17 of their text, so a sum over the rows may be off by rows * 2^-17.
fn linear_oracle() -> Vec<(String, f64, f64)> {
    let rows = rows();
    let n = rows.len();
    let eps = 2f64.powi(-17);
    let slack = 1e-9;
    let sum_x: i128 = rows.iter().map(|r| i128::from(r.x)).sum();
    let ys: Vec<f64> = rows.iter().map(|r| r.y.parse::<f64>().unwrap()).collect();
    let mean_y = ys.iter().sum::<f64>() / n as f64;
    let expr: f64 = rows
        .iter()
        .zip(&ys)
        .map(|(r, y)| 2.0 * r.x as f64 - y + 0.5)
        .sum();
    let mut out = vec![
        ("sum(x)".to_string(), sum_x as f64, 0.0),
        ("mean(y)".to_string(), mean_y, eps + slack),
    ];
    let mut levels: Vec<&str> = rows.iter().map(|r| r.c).collect();
    levels.sort_unstable();
    levels.dedup();
    for level in levels {
        let count = rows.iter().filter(|r| r.c == level).count();
        out.push((format!("hist(c)[{level}]"), count as f64, 0.0));
    }
    out.push(("count()".to_string(), n as f64, 0.0));
    out.push((
        "sum(2 * x - y + 0.5)".to_string(),
        expr,
        n as f64 * eps + slack,
    ));
    out
}

/// `got` (the result of `LINEAR`) agrees with [`linear_oracle`]: every aggregate present, within
/// its tolerance, and the exact integer aggregates exact.
fn check_linear_oracle(got: &[OutputValue], label: &str) {
    let want = linear_oracle();
    let names: BTreeSet<&str> = got.iter().map(|v| v.name.as_str()).collect();
    let wanted: BTreeSet<&str> = want.iter().map(|w| w.0.as_str()).collect();
    assert_eq!(names, wanted, "{label}: aggregates");
    assert_eq!(got.len(), want.len(), "{label}: aggregates");
    for (name, value, tolerance) in &want {
        let v = got.iter().find(|v| &v.name == name).unwrap();
        let decimal: f64 = v.decimal.parse().unwrap();
        assert!(
            (decimal - value).abs() <= *tolerance,
            "{label}: {name} = {} (exact {}), oracle {value}",
            v.decimal,
            v.exact
        );
        if *tolerance == 0.0 {
            assert_eq!(v.exact, format!("{}", *value as i128), "{label}: {name}");
        }
    }
}

/// The query evaluated in the clear: the oracle.
fn expected<F: PrimeField>(d: &Dataset, q: &str) -> Vec<OutputValue> {
    let p = plan::<F>(&parse(q).unwrap(), &d.schema).unwrap();
    p.finish(&p.eval_clear(&d.values)).unwrap()
}

/// `k` faulty parties, spread out: 2, n, 1, 3, ...
fn faulty(n: usize, k: usize) -> Vec<usize> {
    let mut order = vec![2, n];
    order.extend((1..=n).filter(|i| *i != 2 && *i != n));
    order.truncate(k);
    order
}

fn scenario(n: usize, t: usize, bad: &[usize], b: Behaviour, seed: u64) -> Scenario {
    let mut s = Scenario::honest(n, t);
    s.seed = seed;
    for i in bad {
        s = s.with(*i, b);
    }
    s
}

/// What v1 promises for one behaviour on one query kind.
fn promise(b: Behaviour, products: bool, bad: &[usize]) -> (bool, BTreeSet<usize>) {
    let named: BTreeSet<usize> = bad.iter().copied().collect();
    match b {
        // These queries open nothing to the committee: a wrong opening has nothing to lie in.
        Behaviour::Honest | Behaviour::Withhold | Behaviour::WrongOpening => {
            (true, BTreeSet::new())
        }
        // Detected by the over-determined degree-2t openings: abort, no blame.
        Behaviour::WrongProductContribution => (!products || bad.is_empty(), BTreeSet::new()),
        _ => (true, named),
    }
}

/// Equivocators (on check openings and degree-`2t` openings, or on PRSS key contributions)
/// are named by equivocation evidence, exactly them, each verifying against the roster; any
/// other run produces none.
fn check_equivocations(out: &Outcome, b: Behaviour, bad: &[usize], label: &str) {
    let equivocates = matches!(
        b,
        Behaviour::Equivocate | Behaviour::BadRandomnessContribution
    );
    let want: BTreeSet<usize> = if equivocates {
        bad.iter().copied().collect()
    } else {
        BTreeSet::new()
    };
    let senders: BTreeSet<usize> = out
        .equivocations
        .iter()
        .map(|ev| ev.sender() as usize)
        .collect();
    assert_eq!(senders, want, "{label}: equivocation evidence");
    assert_eq!(
        out.equivocations.len(),
        want.len(),
        "{label}: one piece of evidence per equivocator"
    );
    for ev in &out.equivocations {
        assert_eq!(
            verify_equivocation(ev, &out.roster),
            Ok(PartyId::from_wire(ev.sender()).expect("a sender index")),
            "{label}: evidence against {} verifies",
            ev.sender()
        );
    }
}

fn sweep<F: PrimeField>(query: &str, products: bool) {
    let d = data();
    let want = expected::<F>(&d, query);
    if query == LINEAR {
        check_linear_oracle(&want, F::NAME);
    }
    for n in 4..=7 {
        let t = (n - 1) / 3;
        for k in 0..=t {
            for b in Behaviour::ALL {
                let bad = faulty(n, k);
                let out = run::<F>(
                    &scenario(n, t, &bad, b, n as u64 * 31 + k as u64),
                    &d,
                    query,
                )
                .unwrap();
                let (delivered, named) = promise(b, products, &bad);
                let label = format!("{} n={n} t={t} faulty={bad:?} {b:?}", F::NAME);
                if delivered {
                    assert_eq!(out.status, Status::Delivered, "{label}");
                    assert_eq!(out.result.as_ref(), Some(&want), "{label}");
                    if query == LINEAR {
                        check_linear_oracle(out.result.as_ref().unwrap(), &label);
                    }
                } else {
                    assert!(
                        matches!(out.status, Status::Aborted(_)),
                        "{label}: {:?}",
                        out.status
                    );
                    assert!(out.result.is_none(), "{label}");
                }
                assert_eq!(out.culprits, named, "{label}");
                check_equivocations(&out, b, &bad, &label);
            }
        }
    }
}

#[test]
fn linear_queries_are_correct_and_name_every_cheater_m127() {
    sweep::<Mersenne127>(LINEAR, false);
}

#[test]
fn product_queries_are_private_and_abort_on_wrong_contributions_m127() {
    sweep::<Mersenne127>(PRODUCTS, true);
}

#[test]
fn secp256k1_sweep_n4_and_n7() {
    // The full sweep in the default field is the same code; run its corners.
    let d = data();
    for (query, products) in [(LINEAR, false), (PRODUCTS, true)] {
        let want = expected::<Secp256k1Scalar>(&d, query);
        if query == LINEAR {
            check_linear_oracle(&want, "secp256k1");
        }
        for (n, t) in [(4, 1), (7, 2)] {
            for b in Behaviour::ALL {
                let bad = faulty(n, t);
                let out = run::<Secp256k1Scalar>(&scenario(n, t, &bad, b, 5), &d, query).unwrap();
                let (delivered, named) = promise(b, products, &bad);
                if delivered {
                    assert_eq!(out.result.as_ref(), Some(&want), "n={n} {b:?}");
                } else {
                    assert!(matches!(out.status, Status::Aborted(_)), "n={n} {b:?}");
                }
                assert_eq!(out.culprits, named, "n={n} {b:?}");
                check_equivocations(&out, b, &bad, &format!("secp256k1 n={n} {b:?}"));
            }
        }
    }
}

#[test]
fn mixed_evil_twins_are_each_named() {
    let d = data();
    let want = expected::<Mersenne127>(&d, LINEAR);
    let s = Scenario::honest(7, 2)
        .with(3, Behaviour::WrongOutputShare)
        .with(6, Behaviour::Equivocate);
    let out = run::<Mersenne127>(&s, &d, LINEAR).unwrap();
    assert_eq!(out.result, Some(want.clone()));
    assert_eq!(out.culprits, BTreeSet::from([3, 6]));
    check_equivocations(&out, Behaviour::Equivocate, &[6], "mixed 3, 6");
    let s = Scenario::honest(7, 2)
        .with(1, Behaviour::WrongCheckOpening)
        .with(4, Behaviour::Withhold);
    let out = run::<Mersenne127>(&s, &d, LINEAR).unwrap();
    assert_eq!(out.result, Some(want.clone()));
    assert_eq!(out.culprits, BTreeSet::from([1]));
    let s = Scenario::honest(7, 2)
        .with(2, Behaviour::BadRandomnessContribution)
        .with(7, Behaviour::WrongOutputShare);
    let out = run::<Mersenne127>(&s, &d, PRODUCTS).unwrap();
    assert_eq!(out.result, Some(expected::<Mersenne127>(&d, PRODUCTS)));
    assert_eq!(out.culprits, BTreeSet::from([2, 7]));
    let _ = want;
}

#[test]
fn a_cheating_owner_is_refused_and_nobody_is_named() {
    let d = data();
    for n in 4..=7 {
        let t = (n - 1) / 3;
        for victim in 1..=n {
            let mut s = Scenario::honest(n, t);
            s.owner = OwnerBehaviour::Inconsistent { victim };
            let out = run::<Mersenne127>(&s, &d, LINEAR).unwrap();
            assert_eq!(
                out.status,
                Status::StoreRefused(Refusal::Inconsistent {
                    parties: vec![PartyId::new(victim, n).unwrap()]
                }),
                "n={n} victim={victim}"
            );
            assert!(out.culprits.is_empty());
            assert!(out.result.is_none());
        }
    }
}

#[test]
fn a_cheating_service_mask_gets_the_job_refused() {
    let d = data();
    for n in 4..=7 {
        let t = (n - 1) / 3;
        for victim in 1..=n {
            let mut s = Scenario::honest(n, t);
            s.service = ServiceBehaviour::InconsistentMask { victim };
            let out = run::<Mersenne127>(&s, &d, PRODUCTS).unwrap();
            assert_eq!(
                out.status,
                Status::JobRefused(Refusal::Inconsistent {
                    parties: vec![PartyId::new(victim, n).unwrap()]
                }),
                "n={n} victim={victim}"
            );
            assert!(out.culprits.is_empty());
        }
    }
}

/// No corrupt dealer of randomness (PRSS contributions, the owner's dealing, the service's
/// masks) and no corrupt party in the place of a "king" (degree-2t openings) can get an
/// honest party named, whatever it combines with.
#[test]
fn no_corrupt_dealer_king_or_mask_gets_an_honest_party_named() {
    let d = data();
    let corrupt_kinds = [
        Behaviour::BadRandomnessContribution,
        Behaviour::WrongProductContribution,
        Behaviour::Equivocate,
        Behaviour::WrongCheckOpening,
        Behaviour::Withhold,
    ];
    for n in 4..=7 {
        let t = (n - 1) / 3;
        let bad = faulty(n, t);
        for b in corrupt_kinds {
            // An honest victim, a corrupt victim, and the last party.
            for victim in [1, 2, n] {
                for (owner, service) in [
                    (
                        OwnerBehaviour::Inconsistent { victim },
                        ServiceBehaviour::Honest,
                    ),
                    (
                        OwnerBehaviour::Honest,
                        ServiceBehaviour::InconsistentMask { victim },
                    ),
                    (OwnerBehaviour::Honest, ServiceBehaviour::Honest),
                ] {
                    let mut s = scenario(n, t, &bad, b, victim as u64);
                    s.owner = owner;
                    s.service = service;
                    let out = run::<Mersenne127>(&s, &d, PRODUCTS).unwrap();
                    let label = format!("n={n} {b:?} victim={victim} {owner:?} {service:?}");
                    assert!(
                        out.culprits.iter().all(|c| bad.contains(c)),
                        "{label}: named {:?}",
                        out.culprits
                    );
                    if let Status::StoreRefused(Refusal::Inconsistent { parties })
                    | Status::JobRefused(Refusal::Inconsistent { parties }) = &out.status
                    {
                        assert!(
                            parties.contains(&PartyId::new(victim, n).unwrap())
                                || bad.contains(&victim),
                            "{label}"
                        );
                    }
                }
            }
        }
    }
}

/// Version 1 and products: with n = 2t + 1 a wrong product contribution shifts the result
/// and nobody notices (an additive attack). Correct only against a semi-honest minority.
#[test]
fn additive_attack_on_a_product_goes_undetected_with_2t_plus_1() {
    let d = data();
    let query = "dot(x, z)";
    let want = expected::<Mersenne127>(&d, query);
    let honest = run::<Mersenne127>(&Scenario::honest(3, 1), &d, query).unwrap();
    assert_eq!(honest.result, Some(want.clone()));
    let s = Scenario::honest(3, 1).with(2, Behaviour::WrongProductContribution);
    let out = run::<Mersenne127>(&s, &d, query).unwrap();
    assert_eq!(out.status, Status::Delivered);
    assert_ne!(out.result, Some(want), "the attack changed the result");
    assert!(out.culprits.is_empty(), "and nobody was named");
    // The shift is exactly delta * lambda_2 = 1 * (-3) at scale 2^32 (points 1, 2, 3).
    let diff = out.opened.unwrap()[0].clone() - honest.opened.unwrap()[0].clone();
    assert_eq!(diff, (-3).into());
    // A linear query in the same committee is not affected.
    let out = run::<Mersenne127>(&s, &d, LINEAR).unwrap();
    assert_eq!(out.result, Some(expected::<Mersenne127>(&d, LINEAR)));
}

#[test]
fn bad_scenarios_and_queries_are_typed_errors() {
    let d = data();
    let e = run::<Mersenne127>(&Scenario::honest(4, 1), &d, "sum(nope)").unwrap_err();
    assert!(matches!(e, CommitteeError::Query(_)), "{e}");
    let e = run::<Mersenne127>(&Scenario::honest(4, 1), &d, "sum(x +)").unwrap_err();
    assert!(matches!(e, CommitteeError::Query(_)));
    let mut s = Scenario::honest(4, 1);
    s.behaviours.pop();
    let e = run::<Mersenne127>(&s, &d, LINEAR).unwrap_err();
    assert_eq!(e, CommitteeError::Behaviours { got: 3, n: 4 });
    let e = run::<Mersenne127>(&Scenario::honest(4, 4), &d, LINEAR).unwrap_err();
    assert!(matches!(e, CommitteeError::Params(_)), "{e}");
    let e = run::<Mersenne127>(&Scenario::honest(4, 2), &d, LINEAR).unwrap_err();
    assert!(matches!(e, CommitteeError::Prss(_)), "{e}");
}

fn csv_of(rows: &[(i64, f64, f64)]) -> String {
    let mut s = String::from("a:int,b:dec,w:dec\n");
    for (a, b, w) in rows {
        s.push_str(&format!("{a},{b:.6},{w:.3}\n"));
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The evaluator on shares equals the same query evaluated in the clear, exactly.
    #[test]
    fn shares_equal_clear(
        rows in prop::collection::vec((-1000i64..1000, -500.0f64..500.0, -4.0f64..4.0), 1..20),
        k in -9i64..9,
    ) {
        let d = Dataset::parse(&csv_of(&rows)).unwrap();
        let q = format!("sum(a * {k} + b), dot(a - w, b), sum(a * b * w), var(b), count()");
        let out = run::<Mersenne127>(&Scenario::honest(4, 1), &d, &q).unwrap();
        let p = plan::<Mersenne127>(&parse(&q).unwrap(), &d.schema).unwrap();
        prop_assert_eq!(out.opened.unwrap(), p.eval_clear(&d.values));
    }

    /// Fixed-point results against f64: every stored decimal is within 2^-17 of its value, so
    /// with |b| <= M: |mean error| <= 2^-17, |var error| <= M 2^-16 + 2^-34, and
    /// |cov(a, b) error| <= |a|max 2^-17 (a is an exact integer), plus the 1e-18 of the decimal
    /// text and f64's own rounding.
    #[test]
    fn fixed_point_matches_f64(
        rows in prop::collection::vec((-1000i64..1000, -500.0f64..500.0, -4.0f64..4.0), 1..20),
    ) {
        let d = Dataset::parse(&csv_of(&rows)).unwrap();
        let out = run::<Secp256k1Scalar>(&Scenario::honest(4, 1), &d, "mean(b), var(b), cov(a, b), sum(a * w)").unwrap();
        let got: Vec<f64> = out.result.unwrap().iter().map(|v| v.decimal.parse().unwrap()).collect();
        // The exact inputs are the printed decimals.
        let b: Vec<f64> = rows.iter().map(|r| format!("{:.6}", r.1).parse().unwrap()).collect();
        let w: Vec<f64> = rows.iter().map(|r| format!("{:.3}", r.2).parse().unwrap()).collect();
        let a: Vec<f64> = rows.iter().map(|r| r.0 as f64).collect();
        let n = rows.len() as f64;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / n;
        let mb = mean(&b);
        let var = b.iter().map(|x| (x - mb) * (x - mb)).sum::<f64>() / n;
        let ma = mean(&a);
        let cov = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>() / n;
        let saw: f64 = a.iter().zip(&w).map(|(x, y)| x * y).sum();
        let eps = 2f64.powi(-17);
        let m_b = b.iter().fold(0f64, |m, x| m.max(x.abs()));
        let m_a = a.iter().fold(0f64, |m, x| m.max(x.abs()));
        let slack = 1e-9;
        prop_assert!((got[0] - mb).abs() <= eps + slack, "mean {} vs {}", got[0], mb);
        prop_assert!((got[1] - var).abs() <= m_b * 2.0 * eps + eps * eps + 1e-7, "var {} vs {}", got[1], var);
        prop_assert!((got[2] - cov).abs() <= m_a * 2.0 * eps + 1e-7, "cov {} vs {}", got[2], cov);
        prop_assert!((got[3] - saw).abs() <= n * m_a * eps + 1e-7, "sum {} vs {}", got[3], saw);
    }
}
