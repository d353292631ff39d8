//! The same questions answered in the clear, two ways: the engine's own clear evaluation of the
//! query plan over the fixed-point CSV values (exact: the MPC result must equal it digit for
//! digit), and an independent floating-point computation straight from the CSV text (a check
//! that the plan asks what the question says, up to the 2^-16 rounding of the stored values).

use std::collections::BTreeMap;

use anyhow::{anyhow, Context as _};
use btcmpc_engine::mpc::csv::{Dataset, ReadOptions};
use btcmpc_engine::mpc::field::Mersenne127;
use btcmpc_engine::mpc::query::{parse, plan};

/// One aggregate of a demo question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    /// `count()`.
    Count,
    /// `count(c)`: rows where `c` is present.
    CountOf(&'static str),
    /// `mean(c)`.
    Mean(&'static str),
    /// `var(c)` (population variance).
    Var(&'static str),
    /// `cov(a, b)` (population covariance over rows where both are present).
    Cov(&'static str, &'static str),
    /// `count() where c > k`: rows where `c` is present and above `k`.
    CountAbove(&'static str, u32),
    /// `mean(x) where c > k`: the mean of `x` over the rows where `c` is above `k` and `x` is
    /// present.
    MeanAbove(&'static str, &'static str, u32),
}

impl Agg {
    /// The aggregate's canonical query text (the result's key).
    pub fn text(&self) -> String {
        match self {
            Agg::Count => "count()".into(),
            Agg::CountOf(c) => format!("count({c})"),
            Agg::Mean(c) => format!("mean({c})"),
            Agg::Var(c) => format!("var({c})"),
            Agg::Cov(a, b) => format!("cov({a}, {b})"),
            Agg::CountAbove(c, k) => format!("count() where {c} > {k}"),
            Agg::MeanAbove(x, c, k) => format!("mean({x}) where {c} > {k}"),
        }
    }
}

/// The query text of a list of aggregates.
pub fn query_text(aggs: &[Agg]) -> String {
    aggs.iter().map(Agg::text).collect::<Vec<_>>().join(", ")
}

/// The engine's clear answer: aggregate text to decimal text, as the service prints it.
///
/// # Errors
/// A CSV the engine refuses, or a query its planner refuses.
pub fn exact(
    csv: &[u8],
    columns: &[&str],
    query: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let options = ReadOptions {
        columns: Some(columns.iter().map(|c| c.to_string()).collect()),
    };
    let data = Dataset::from_bytes_with(csv, &options).context("reading the CSV in the clear")?;
    let q = parse(query).map_err(|e| anyhow!("query {query:?}: {e}"))?;
    let p = plan::<Mersenne127>(&q, &data.schema).map_err(|e| anyhow!("query {query:?}: {e}"))?;
    let out = p
        .finish(&p.eval_clear(&data.values))
        .map_err(|e| anyhow!("query {query:?}: {e}"))?;
    Ok(out.into_iter().map(|v| (v.name, v.decimal)).collect())
}

/// An independent answer in `f64`, straight from the CSV text (empty cells are missing).
///
/// # Errors
/// A missing column or a cell that is not a number.
pub fn float(csv: &str, aggs: &[Agg]) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| anyhow!("the CSV is empty"))?
        .split(',')
        .collect();
    let rows: Vec<Vec<&str>> = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').collect())
        .collect();
    let col = |name: &str| -> anyhow::Result<Vec<Option<f64>>> {
        let i = header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| anyhow!("no column {name:?} in the CSV"))?;
        rows.iter()
            .enumerate()
            .map(|(r, row)| match row.get(i).map(|c| c.trim()) {
                None | Some("") => Ok(None),
                Some(c) => c
                    .parse::<f64>()
                    .map(Some)
                    .map_err(|_| anyhow!("row {}: {name} is {c:?}", r + 2)),
            })
            .collect()
    };
    let mut out = BTreeMap::new();
    for a in aggs {
        let v = match *a {
            Agg::Count => rows.len() as f64,
            Agg::CountOf(c) => col(c)?.iter().flatten().count() as f64,
            Agg::Mean(c) => {
                let x: Vec<f64> = col(c)?.into_iter().flatten().collect();
                x.iter().sum::<f64>() / x.len() as f64
            }
            Agg::Var(c) => {
                let x: Vec<f64> = col(c)?.into_iter().flatten().collect();
                let m = x.iter().sum::<f64>() / x.len() as f64;
                x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / x.len() as f64
            }
            Agg::Cov(a, b) => {
                let pairs: Vec<(f64, f64)> = col(a)?
                    .into_iter()
                    .zip(col(b)?)
                    .filter_map(|(x, y)| Some((x?, y?)))
                    .collect();
                let n = pairs.len() as f64;
                let mx = pairs.iter().map(|p| p.0).sum::<f64>() / n;
                let my = pairs.iter().map(|p| p.1).sum::<f64>() / n;
                pairs.iter().map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / n
            }
            Agg::CountAbove(c, k) => col(c)?
                .iter()
                .filter(|v| v.is_some_and(|v| v > f64::from(k)))
                .count() as f64,
            Agg::MeanAbove(x, c, k) => {
                let xs: Vec<f64> = col(x)?
                    .into_iter()
                    .zip(col(c)?)
                    .filter(|(_, c)| c.is_some_and(|c| c > f64::from(k)))
                    .filter_map(|(x, _)| x)
                    .collect();
                xs.iter().sum::<f64>() / xs.len() as f64
            }
        };
        out.insert(a.text(), v);
    }
    Ok(out)
}

/// Whether `got` (decimal text) is `want` up to the 2^-16 rounding of each stored value:
/// within 1e-6 relative or 1e-3 absolute.
pub fn close(got: &str, want: f64) -> bool {
    got.parse::<f64>()
        .is_ok_and(|g| (g - want).abs() <= 1e-3 || (g - want).abs() <= want.abs() * 1e-6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_float_agree_on_a_small_table_with_gaps() {
        let csv = "a,b\n1,10\n2,\n3,30\n4,40\n";
        let aggs = [
            Agg::Count,
            Agg::CountOf("b"),
            Agg::Mean("a"),
            Agg::Var("a"),
            Agg::Cov("a", "b"),
        ];
        let q = query_text(&aggs);
        assert_eq!(q, "count(), count(b), mean(a), var(a), cov(a, b)");
        let e = exact(csv.as_bytes(), &["a", "b"], &q).unwrap();
        let f = float(csv, &aggs).unwrap();
        assert_eq!(e["count()"], "4");
        assert_eq!(e["count(b)"], "3");
        assert_eq!(e["mean(a)"], "2.5");
        assert_eq!(e["var(a)"], "1.25");
        // Rows 1, 3, 4: mean a = 8/3, mean b = 80/3, cov = (10 + 90 + 160)/3 - (8/3)(80/3).
        assert!((f["cov(a, b)"] - (260.0 / 3.0 - 640.0 / 9.0)).abs() < 1e-9);
        for (k, v) in &f {
            assert!(close(&e[k], *v), "{k}: {} vs {v}", e[k]);
        }
        assert!(!close("2.6", 2.5));
    }

    #[test]
    fn filtered_aggregates_agree_and_skip_gaps_on_both_sides() {
        // Row 2 has no b (not counted by `b > 15`), row 5 no a (not in the mean of a).
        let csv = "a,b\n1,10\n2,\n3,30\n4,40\n,50\n";
        let aggs = [Agg::CountAbove("b", 15), Agg::MeanAbove("a", "b", 15)];
        let q = query_text(&aggs);
        assert_eq!(q, "count() where b > 15, mean(a) where b > 15");
        let e = exact(csv.as_bytes(), &["a", "b"], &q).unwrap();
        let f = float(csv, &aggs).unwrap();
        assert_eq!(e["count() where b > 15"], "3");
        assert_eq!(e["mean(a) where b > 15"], "3.5");
        for (k, v) in &f {
            assert!(close(&e[k], *v), "{k}: {} vs {v}", e[k]);
        }
    }
}
