//! NULLs through the in-process committee: random data with random gaps, every aggregate,
//! against a naive f64 oracle over the rows where the inputs are present.

use btcmpc_engine::mpc::committee::{run, Scenario, Status};
use btcmpc_engine::mpc::csv::Dataset;
use btcmpc_engine::mpc::field::Mersenne127;
use btcmpc_engine::mpc::query::{parse, plan};
use proptest::prelude::*;

type Row = (Option<i64>, Option<f64>);

fn csv_of(rows: &[Row]) -> String {
    let mut s = String::from("a:int,b:dec\n");
    for (i, (a, b)) in rows.iter().enumerate() {
        // Alternate the NULL spellings the reader accepts.
        let null = ["", "NA", "NaN", "\"\""][i % 4];
        let a = a.map_or(null.to_owned(), |v| v.to_string());
        let b = b.map_or(null.to_owned(), |v| format!("{v:.4}"));
        s.push_str(&format!("{a},{b}\n"));
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_skip_nulls_through_the_committee(
        rows in prop::collection::vec(
            (prop::option::weighted(0.75, -300i64..300), prop::option::weighted(0.75, -50.0f64..50.0)),
            2..24,
        ),
    ) {
        let present = |r: &Row| Some((r.0?, format!("{:.4}", r.1?).parse::<f64>().unwrap()));
        let both: Vec<(f64, f64)> = rows.iter().filter_map(present).map(|(a, b)| (a as f64, b)).collect();
        let a: Vec<f64> = rows.iter().filter_map(|r| r.0).map(|v| v as f64).collect();
        let b: Vec<f64> = rows.iter().filter_map(|r| r.1).map(|v| format!("{v:.4}").parse().unwrap()).collect();
        prop_assume!(!both.is_empty() && !a.is_empty() && !b.is_empty());
        let d = Dataset::parse(&csv_of(&rows)).unwrap();
        let q = "sum(a), count(), count(a), count(b), mean(b), var(b), sum(a + b), mean(a * b), \
                 cov(a, b), dot(a, b), sum(2 * a - b + 1)";
        let out = run::<Mersenne127>(&Scenario::honest(4, 1), &d, q).unwrap();
        prop_assert_eq!(&out.status, &Status::Delivered);
        let p = plan::<Mersenne127>(&parse(q).unwrap(), &d.schema).unwrap();
        prop_assert_eq!(out.opened.clone().unwrap(), p.eval_clear(&d.values));
        let got: Vec<f64> = out.result.unwrap().iter().map(|v| v.decimal.parse().unwrap()).collect();

        let n = |v: usize| v as f64;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / n(v.len());
        let mb = mean(&b);
        let var_b = b.iter().map(|x| (x - mb).powi(2)).sum::<f64>() / n(b.len());
        let (xa, xb): (Vec<f64>, Vec<f64>) = both.iter().copied().unzip();
        let (ma, mb2) = (mean(&xa), mean(&xb));
        let cov = both.iter().map(|(x, y)| (x - ma) * (y - mb2)).sum::<f64>() / n(both.len());
        let dot: f64 = both.iter().map(|(x, y)| x * y).sum();
        let want = [
            a.iter().sum::<f64>(),
            n(rows.len()),
            n(a.len()),
            n(b.len()),
            mb,
            var_b,
            both.iter().map(|(x, y)| x + y).sum::<f64>(),
            dot / n(both.len()),
            cov,
            dot,
            both.iter().map(|(x, y)| 2.0 * x - y + 1.0).sum::<f64>(),
        ];
        // Each stored b is within 2^-17 of its text; a is exact. Bounds per aggregate:
        let eps = 2f64.powi(-17);
        let rows_both = n(both.len());
        let bounds = [
            0.0,
            0.0,
            0.0,
            0.0,
            eps,
            2.0 * 50.0 * eps + eps * eps,
            rows_both * eps,
            300.0 * eps,
            300.0 * 2.0 * eps,
            rows_both * 300.0 * eps,
            rows_both * eps,
        ];
        for (i, ((g, w), bound)) in got.iter().zip(want).zip(bounds).enumerate() {
            prop_assert!((g - w).abs() <= bound + 1e-9 * w.abs().max(1.0), "aggregate {i}: {g} vs {w}");
        }
    }
}
