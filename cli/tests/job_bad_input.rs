//! A paid query with bad input is refused with one clear line and nothing is paid: a fee below
//! the parties' price, a deadline too close, a wallet that cannot pay, a party offline.

use serde_json::Value;

mod support;
use support::net::Net;

fn balance(net: &Net, who: &str) -> Value {
    net.cli.json(who, &["wallet", "balance"])
}

#[test]
fn bad_queries_are_refused_by_name_and_cost_nothing() {
    let mut net = Net::new();
    let card = net.granted_dataset(120);
    let before = balance(&net, "service");
    let ask = |fee: &str, deadline: &str| {
        net.cli.fails(
            "service",
            &[
                "service",
                "query",
                &card,
                "sum(income)",
                "--fee",
                fee,
                "--deadline",
                deadline,
                "--party-timeout",
                "10",
            ],
        )
    };
    // Below every party's price (party run --min-fee, 1000 sat by default).
    let err = ask("999sat", "+30");
    assert!(err.contains("below this party's fee of 1000 sat"), "{err}");
    // T too close for the claim margin, a confirmation and the computation.
    let err = ask("1000sat", "+3");
    assert!(err.contains("too close"), "{err}");
    // More than the wallet holds: refused before any party is asked.
    let err = ask("1btc", "+30");
    assert!(err.contains("this wallet holds"), "{err}");
    assert_eq!(balance(&net, "service"), before, "nothing was paid");
    // A party offline at request time: the job is refused, naming it.
    net.daemons[3] = None;
    let err = ask("1000sat", "+30");
    assert!(err.contains("party 4"), "{err}");
    assert_eq!(balance(&net, "service"), before, "nothing was paid");
    // An unknown job to settle, and a card that is not a dataset card.
    let bogus = net.cli.path("not-a-card.json");
    std::fs::write(&bogus, "{\"name\": 3}").unwrap();
    let err = net.cli.fails(
        "service",
        &[
            "service",
            "query",
            &bogus,
            "sum(income)",
            "--fee",
            "1000sat",
        ],
    );
    assert!(err.contains("not-a-card.json"), "{err}");
}
