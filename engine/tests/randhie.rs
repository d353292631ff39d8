//! The real RAND Health Insurance Experiment file (`data/randhie/`, public domain): it loads
//! with its gaps as NULLs, and queries over it through the in-process committee match a plain
//! f64 computation over the CSV text within the fixed-point error.

use std::collections::BTreeSet;

use btcmpc_engine::mpc::committee::{run, Scenario, Status};
use btcmpc_engine::mpc::csv::{inspect, ColumnKind, Dataset, ReadOptions};
use btcmpc_engine::mpc::field::{Mersenne127, Secp256k1Scalar};
use btcmpc_engine::mpc::query::{parse, plan};

fn bytes() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/randhie/randhie.csv");
    std::fs::read(path).expect("data/randhie/randhie.csv ships with the repository")
}

/// The file split naively (it has no quotes): header and rows of cells.
fn plain() -> (Vec<String>, Vec<Vec<String>>) {
    let text = String::from_utf8(bytes()).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// The present values of `col`, per row (`None` where the cell is empty).
fn column(name: &str) -> Vec<Option<f64>> {
    let (header, rows) = plain();
    let i = header.iter().position(|h| h == name).unwrap();
    rows.iter()
        .map(|r| (!r[i].is_empty()).then(|| r[i].parse().unwrap()))
        .collect()
}

#[test]
fn the_file_loads_with_its_gaps() {
    let d = Dataset::from_bytes_with(&bytes(), &ReadOptions::default()).unwrap();
    assert_eq!(d.schema.rows, 20_190);
    let names: Vec<&str> = d.schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "plan", "site", "coins", "year", "zper", "black", "income", "xage", "female", "child",
            "educdec", "time", "outpdol", "drugdol", "inpdol", "meddol", "mdvis", "num", "mhi",
            "disea", "physlm", "ghindx", "mdeoff", "pioff", "idp", "logc", "lnmeddol", "binexp"
        ]
    );
    assert_eq!(
        d.schema.nullable(),
        ["educdec", "ghindx", "mdeoff", "pioff", "lnmeddol"]
    );
    // 28 value columns and 5 validity columns.
    assert_eq!(d.schema.fields.len(), 33);
    assert_eq!(d.schema.column("zper").unwrap().kind, ColumnKind::Integer);
    assert_eq!(d.schema.column("black").unwrap().kind, ColumnKind::Decimal);
    let report = inspect(&bytes()).unwrap();
    let gaps: Vec<(&str, usize)> = report
        .iter()
        .filter(|r| r.nulls > 0)
        .map(|r| (r.name.as_str(), r.nulls))
        .collect();
    assert_eq!(
        gaps,
        [
            ("educdec", 4),
            ("ghindx", 5223),
            ("mdeoff", 5),
            ("pioff", 5),
            ("lnmeddol", 4453)
        ]
    );
    assert!(report.iter().all(|r| r.problem.is_none()));
    // The validity column of ghindx counts its present values.
    let v = d.schema.fields[d.schema.column("ghindx").unwrap().first_field]
        .validity
        .unwrap();
    assert_eq!(d.values[v].iter().sum::<i128>(), 20_190 - 5223);
}

/// f64 oracle over rows where every input is present.
fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn committee_queries_match_plain_f64() {
    let columns = ["meddol", "ghindx", "xage", "lnmeddol"];
    let opts = ReadOptions {
        columns: Some(columns.iter().map(|s| s.to_string()).collect()),
    };
    let d = Dataset::from_bytes_with(&bytes(), &opts).unwrap();
    let q = "mean(meddol), count(), count(ghindx), mean(ghindx), var(ghindx), \
             cov(ghindx, xage), mean(ghindx + lnmeddol), count(ghindx * lnmeddol), sum(lnmeddol)";
    let out = run::<Mersenne127>(&Scenario::honest(4, 1), &d, q).unwrap();
    assert_eq!(out.status, Status::Delivered, "{:?}", out.status);
    let got: Vec<f64> = out
        .result
        .unwrap()
        .iter()
        .map(|v| v.decimal.parse().unwrap())
        .collect();

    let meddol: Vec<f64> = column("meddol").into_iter().map(Option::unwrap).collect();
    let ghindx = column("ghindx");
    let xage: Vec<f64> = column("xage").into_iter().map(Option::unwrap).collect();
    let lnmed = column("lnmeddol");
    let g: Vec<f64> = ghindx.iter().flatten().copied().collect();
    let g_x: Vec<(f64, f64)> = ghindx
        .iter()
        .zip(&xage)
        .filter_map(|(g, x)| Some(((*g)?, *x)))
        .collect();
    let g_l: Vec<(f64, f64)> = ghindx
        .iter()
        .zip(&lnmed)
        .filter_map(|(g, l)| Some(((*g)?, (*l)?)))
        .collect();
    let mg = mean(&g);
    let var = g.iter().map(|x| (x - mg).powi(2)).sum::<f64>() / g.len() as f64;
    let (gx, xs): (Vec<f64>, Vec<f64>) = g_x.iter().copied().unzip();
    let (mgx, mx) = (mean(&gx), mean(&xs));
    let cov = g_x.iter().map(|(g, x)| (g - mgx) * (x - mx)).sum::<f64>() / g_x.len() as f64;
    let sum_l: f64 = lnmed.iter().flatten().sum();
    let want = [
        mean(&meddol),
        20_190.0,
        g.len() as f64,
        mg,
        var,
        cov,
        g_l.iter().map(|(g, l)| g + l).sum::<f64>() / g_l.len() as f64,
        g_l.len() as f64,
        sum_l,
    ];
    // Stated fixed-point error: every stored value is within 2^-17 of its text. A mean is off by
    // at most 2^-17 (2^-16 for a sum of two columns); var(g) by at most 2 max|g| 2^-17 + 2^-34;
    // cov(g, x) by at most (max|g| + max|x|) 2^-17 + 2^-34; a sum over n rows by n 2^-17; counts
    // are exact. 1e-9 relative covers f64's own rounding over 20,190 rows.
    let eps = 2f64.powi(-17);
    let n_l = lnmed.iter().flatten().count() as f64;
    let bounds = [
        eps,
        0.0,
        0.0,
        eps,
        2.0 * 100.0 * eps + eps * eps,
        (100.0 + 65.0) * eps + eps * eps,
        2.0 * eps,
        0.0,
        n_l * eps,
    ];
    let names: Vec<String> = parse(q)
        .unwrap()
        .aggregates
        .iter()
        .map(|(a, _)| a.to_string())
        .collect();
    for (i, ((g, w), b)) in got.iter().zip(want).zip(bounds).enumerate() {
        assert!(
            (g - w).abs() <= b + 1e-9 * w.abs().max(1.0),
            "{}: committee {g} vs f64 {w} (bound {b})",
            names[i]
        );
    }
    // The opened sums on shares equal the plan evaluated in the clear, exactly.
    let p = plan::<Mersenne127>(&parse(q).unwrap(), &d.schema).unwrap();
    assert_eq!(out.opened.unwrap(), p.eval_clear(&d.values));
    // And the NULL handling went through products (validity multiplications).
    assert!(p.uses_products());
    let labels: BTreeSet<&str> = p.opened.iter().map(|o| o.label.as_str()).collect();
    assert!(labels.contains("sum((ghindx + lnmeddol) * present(ghindx) * present(lnmeddol))"));
    assert!(labels.contains("sum(xage * present(ghindx))"));
}

#[test]
fn secp256k1_mean_with_gaps() {
    let opts = ReadOptions {
        columns: Some(vec!["ghindx".into(), "educdec".into()]),
    };
    let d = Dataset::from_bytes_with(&bytes(), &opts).unwrap();
    let out = run::<Secp256k1Scalar>(
        &Scenario::honest(4, 1),
        &d,
        "mean(educdec), count(educdec), dot(ghindx, educdec)",
    )
    .unwrap();
    let got: Vec<f64> = out
        .result
        .unwrap()
        .iter()
        .map(|v| v.decimal.parse().unwrap())
        .collect();
    let e: Vec<f64> = column("educdec").into_iter().flatten().collect();
    let dot: f64 = column("ghindx")
        .iter()
        .zip(column("educdec"))
        .filter_map(|(g, e)| Some((*g)? * e?))
        .sum();
    let eps = 2f64.powi(-17);
    assert!((got[0] - mean(&e)).abs() <= eps + 1e-9);
    assert_eq!(got[1], (20_190 - 4) as f64);
    // Each product is off by at most (|g| + |e|) 2^-17 + 2^-34.
    assert!((got[2] - dot).abs() <= 20_190.0 * (125.0 * eps + eps * eps) + 1e-9 * dot);
}
