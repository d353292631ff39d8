//! The committee bench driver (`node::bench`) end to end on loopback: four parties over real
//! Noise channels (tasks of this process, each with its own listener and peer manager) run the
//! products, the dot product and an owner's stored vector, and every party opens exactly the
//! clear result computed from the same seed.

use std::net::SocketAddr;
use std::time::Duration;

use btcmpc_engine::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
use btcmpc_engine::node::bench::{
    self, run_owner, run_party, OwnerConfig, PartyConfig, PartyReport, Workload,
};
use btcmpc_regtest::ports::PortLease;

const N: usize = 4;
const T: usize = 1;
const SIZE: usize = 1000;
/// Bound on one workload; the tasks are dropped with the runtime if it passes.
const BOUND: Duration = Duration::from_secs(50);

/// Runs `workload` among four parties (and the owner for `Input`); returns every party's
/// report and opened values.
async fn run<F: PrimeField>(workload: Workload, seed: [u8; 32]) -> Vec<(PartyReport, Vec<F>)> {
    let leases: Vec<PortLease> = (0..N).map(|_| PortLease::new().unwrap()).collect();
    let addrs: Vec<SocketAddr> = leases
        .iter()
        .map(|l| SocketAddr::from(([127, 0, 0, 1], l.port())))
        .collect();
    let mut parties = Vec::new();
    for me in 1..=N {
        let cfg = PartyConfig {
            n: N,
            t: T,
            me,
            seed,
            size: SIZE,
            workload,
            addrs: addrs.clone(),
            timeout: BOUND,
            round_timeout: BOUND,
        };
        parties.push(tokio::spawn(async move { run_party::<F>(&cfg).await }));
    }
    if workload == Workload::Input {
        let cfg = OwnerConfig {
            n: N,
            t: T,
            seed,
            size: SIZE,
            addrs: addrs.clone(),
            timeout: BOUND,
        };
        let owner = run_owner::<F>(&cfg).await.expect("the owner's run");
        assert!(owner.bytes_sent as usize > N * SIZE * F::ENCODED_LEN);
    }
    let mut out = Vec::new();
    for (i, p) in parties.into_iter().enumerate() {
        let r = tokio::time::timeout(BOUND, p)
            .await
            .unwrap_or_else(|_| panic!("party {} finished in time", i + 1))
            .expect("party task")
            .unwrap_or_else(|e| panic!("party {}: {e}", i + 1));
        out.push(r);
    }
    drop(leases);
    out
}

async fn every_workload_opens_the_clear_result<F: PrimeField>() {
    for (k, workload) in Workload::ALL.into_iter().enumerate() {
        let seed = [k as u8 + 1; 32];
        let want = bench::expected::<F>(workload, &seed, SIZE);
        let results = run::<F>(workload, seed).await;
        assert_eq!(results.len(), N);
        for (report, opened) in &results {
            assert_eq!(opened, &want, "{} party {}", workload.name(), report.party);
            assert_eq!(report.opened_digest, bench::digest(&want));
            assert_eq!(report.workload, workload);
            assert!(report.start_us <= report.computed_us && report.computed_us <= report.end_us);
            assert!(report.bytes_sent > 0 && report.bytes_received > 0);
        }
        // The products are opened in full, the aggregates as one value.
        let opened = if workload == Workload::Products {
            SIZE
        } else {
            1
        };
        assert_eq!(want.len(), opened);
        // The shares were never the values: a party's input shares differ from the clear ones.
        if workload != Workload::Input {
            let share = bench::dealt_share::<F>(&seed, 0, SIZE, T, 1);
            assert_ne!(share, bench::clear_values::<F>(&seed, 0, SIZE));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_parties_open_the_clear_results_in_2_127_minus_1() {
    every_workload_opens_the_clear_result::<Mersenne127>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_parties_open_the_clear_results_in_secp256k1() {
    every_workload_opens_the_clear_result::<Secp256k1Scalar>().await;
}

#[test]
fn the_dealt_shares_lie_on_one_polynomial_of_degree_t() {
    let seed = [9u8; 32];
    let shares: Vec<Vec<Mersenne127>> = (1..=N)
        .map(|p| bench::dealt_share(&seed, 1, 50, T, p))
        .collect();
    let clear = bench::clear_values::<Mersenne127>(&seed, 1, 50);
    for k in 0..50 {
        // Degree 1 through points 1 and 2 at 0: 2 s1 - s2; the same line at 3 and 4.
        let s = |p: usize| shares[p - 1][k];
        assert_eq!(s(1).double() - s(2), clear[k]);
        assert_eq!(s(3) - s(2), s(2) - s(1));
        assert_eq!(s(4) - s(3), s(2) - s(1));
    }
}
