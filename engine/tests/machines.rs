//! The protocol machines driven directly, without the committee: delivery in any order,
//! duplicates, replays and foreign messages refused with typed errors, and a machine re-created
//! after a restart re-emitting byte-identical signed messages.

use std::collections::BTreeSet;

use btcmpc_engine::mpc::csv::Dataset;
use btcmpc_engine::mpc::dealing::deal;
use btcmpc_engine::mpc::echo::{payload_hash, Broadcast, SignedHeader, SUB_ECHOES, SUB_VALUES};
use btcmpc_engine::mpc::eval::{EvalMachine, Task};
use btcmpc_engine::mpc::field::{Mersenne127, PrimeField};
use btcmpc_engine::mpc::prss::Prss;
use btcmpc_engine::mpc::query::{parse, plan, Plan};
use btcmpc_engine::mpc::round::{
    Machine, Message, Outgoing, PartyId, Recipient, RoundError, RoundId,
};
use btcmpc_engine::mpc::setup::Setup;
use btcmpc_engine::mpc::shamir::{dealer_rng, Params};
use btcmpc_engine::mpc::sig::{SigningKey, VerifyingKey};

type F = Mersenne127;

const N: usize = 4;
const T: usize = 1;

fn keys() -> (Vec<SigningKey>, Vec<VerifyingKey>) {
    let sk: Vec<SigningKey> = (1..=N as u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]).unwrap())
        .collect();
    let vk = sk.iter().map(|k| *k.verifying_key()).collect();
    (sk, vk)
}

fn id(i: usize) -> PartyId {
    PartyId::new(i, N).unwrap()
}

/// Every message of `out` from `from`, as `(to, message)`.
fn expand(from: PartyId, out: Vec<Outgoing<F>>) -> Vec<(PartyId, Message<F>)> {
    let mut v = Vec::new();
    for o in out {
        match o.to {
            Recipient::All => {
                for p in PartyId::all(N).filter(|p| *p != from) {
                    v.push((p, o.msg.clone()));
                }
            }
            Recipient::One(p) => v.push((p, o.msg)),
        }
    }
    v
}

/// A record of one run: for each party, the messages delivered to it (in order) and the
/// messages it sent, as bytes.
#[derive(Default, Clone)]
struct Log {
    delivered: Vec<Vec<(PartyId, Message<F>)>>,
    sent: Vec<Vec<Vec<u8>>>,
}

fn bytes(out: &[Outgoing<F>]) -> Vec<Vec<u8>> {
    out.iter().map(|o| serde_json::to_vec(o).unwrap()).collect()
}

/// Runs the machines to the end: deliveries until idle (each party's batch reversed when
/// `reverse`, so later sub-rounds often arrive first), then the deadline. Every handle must
/// succeed. Returns the outputs and the log.
fn run<M: Machine<F>>(machines: &mut [M], reverse: bool) -> (Vec<M::Output>, Log)
where
    M::Output: Clone + std::fmt::Debug,
{
    let mut log = Log {
        delivered: vec![Vec::new(); N],
        sent: vec![Vec::new(); N],
    };
    let mut outputs: Vec<Option<M::Output>> = vec![None; N];
    let mut queues: Vec<Vec<(PartyId, Message<F>)>> = vec![Vec::new(); N];
    let post = |from: PartyId,
                out: Vec<Outgoing<F>>,
                log: &mut Log,
                queues: &mut Vec<Vec<(PartyId, Message<F>)>>| {
        log.sent[from.slot()].extend(bytes(&out));
        for (to, m) in expand(from, out) {
            queues[to.slot()].push((from, m));
        }
    };
    for (i, m) in machines.iter_mut().enumerate() {
        let step = m.start().unwrap();
        if let Some(o) = step.output {
            outputs[i] = Some(o);
        }
        post(id(i + 1), step.send, &mut log, &mut queues);
    }
    for _ in 0..100 {
        if queues.iter().all(Vec::is_empty) {
            let mut any = false;
            for (i, m) in machines.iter_mut().enumerate() {
                if let Some(r) = m.waiting() {
                    any = true;
                    let step = m.deadline(r).unwrap();
                    if let Some(o) = step.output {
                        outputs[i] = Some(o);
                    }
                    post(id(i + 1), step.send, &mut log, &mut queues);
                }
            }
            if !any {
                break;
            }
            continue;
        }
        for i in 0..N {
            let mut batch = std::mem::take(&mut queues[i]);
            if reverse {
                batch.reverse();
            }
            for (from, msg) in batch {
                log.delivered[i].push((from, msg.clone()));
                let step = machines[i].handle(from, msg).unwrap();
                if let Some(o) = step.output {
                    outputs[i] = Some(o);
                }
                post(id(i + 1), step.send, &mut log, &mut queues);
            }
        }
    }
    (
        outputs
            .into_iter()
            .map(|o| o.expect("every machine finished"))
            .collect(),
        log,
    )
}

fn setups(seeds: u8) -> Vec<Setup<F>> {
    let (sk, vk) = keys();
    (1..=N)
        .map(|i| {
            Setup::new(
                id(i),
                T,
                [9; 32],
                vk.clone(),
                sk[i - 1].clone(),
                [seeds + i as u8; 32],
            )
            .unwrap()
        })
        .collect()
}

fn prss() -> Vec<Prss<F>> {
    let (out, _) = run(&mut setups(0), false);
    out.into_iter().map(|o| o.prss.unwrap()).collect()
}

#[test]
fn setup_agrees_in_any_delivery_order() {
    let (a, _) = run(&mut setups(0), false);
    let (b, _) = run(&mut setups(0), true);
    for (x, y) in a.iter().zip(&b) {
        assert!(x.excluded.is_empty() && x.evidence.is_empty());
        let (x, y) = (x.prss.as_ref().unwrap(), y.prss.as_ref().unwrap());
        assert_eq!(x.random(&[1; 32], 0, 3), y.random(&[1; 32], 0, 3));
    }
    // The parties' shares of one PRSS random value lie on one degree-t polynomial.
    let shares: Vec<(usize, F)> = a
        .iter()
        .enumerate()
        .map(|(i, o)| (i + 1, o.prss.as_ref().unwrap().random(&[1; 32], 0, 1)[0]))
        .collect();
    assert!(btcmpc_engine::mpc::shamir::on_one_polynomial(&shares, T).unwrap());
}

#[test]
fn a_restarted_setup_signs_the_same_contributions() {
    let (_, log) = run(&mut setups(0), true);
    // Party 2 restarts: re-created from its inputs and re-fed what it received.
    let mut again = setups(0).remove(1);
    let mut sent = bytes(&again.start().unwrap().send);
    for (from, m) in &log.delivered[1] {
        sent.extend(bytes(&again.handle(*from, m.clone()).unwrap().send));
    }
    assert_eq!(sent, log.sent[1][..sent.len()]);
    assert_eq!(sent.len(), log.sent[1].len());
    // Another seed is another party: different contributions.
    let other = bytes(&setups(50).remove(1).start().unwrap().send);
    assert_ne!(other, log.sent[1][..other.len()]);
}

struct Job {
    plan: Plan,
    columns: Vec<Vec<Vec<F>>>,
    prss: Vec<Prss<F>>,
}

/// A two-round plan (`x * y` reduced, then the top product) over dealt shares.
fn job() -> Job {
    let d = Dataset::parse("x,y,z\n1,2,3\n4,5,6\n-7,8,9.5\n").unwrap();
    let plan = plan::<F>(&parse("sum(x * y * z), mean(x)").unwrap(), &d.schema).unwrap();
    let dealt = deal(
        Params::new(N, T).unwrap(),
        &d.to_field::<F>(),
        &mut dealer_rng(),
    );
    Job {
        plan,
        columns: dealt.into_iter().map(|p| p.columns).collect(),
        prss: prss(),
    }
}

fn evals(job: &Job) -> Vec<EvalMachine<'_, F>> {
    let (sk, vk) = keys();
    (0..N)
        .map(|i| {
            EvalMachine::new(
                &job.prss[i],
                [7; 32],
                Task::Plan {
                    plan: &job.plan,
                    columns: &job.columns[i],
                },
                vk.clone(),
                sk[i].clone(),
                BTreeSet::new(),
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn evaluation_agrees_in_any_delivery_order_and_after_a_restart() {
    let job = job();
    let (a, log) = run(&mut evals(&job), false);
    let (b, _) = run(&mut evals(&job), true);
    assert_eq!(a, b);
    // The results are shares of the clear evaluation.
    let params = Params::new(N, T).unwrap();
    let want = job.plan.eval_clear(
        &Dataset::parse("x,y,z\n1,2,3\n4,5,6\n-7,8,9.5\n")
            .unwrap()
            .values,
    );
    for (k, want) in want.iter().enumerate() {
        let shares: Vec<(usize, F)> = a
            .iter()
            .enumerate()
            .map(|(i, v)| (i + 1, v.values[k]))
            .collect();
        let got = btcmpc_engine::mpc::shamir::reconstruct(params, &shares).unwrap();
        assert_eq!(
            btcmpc_engine::mpc::query::num::to_signed(got),
            *want,
            "opened sum {k}"
        );
    }
    // Party 3 restarts mid-job: its re-created machine, re-fed, signs byte-identical messages
    // for every slot (never a second version).
    let mut again = evals(&job).remove(2);
    let mut sent = bytes(&again.start().unwrap().send);
    let mut output = None;
    for (from, m) in &log.delivered[2] {
        let step = again.handle(*from, m.clone()).unwrap();
        sent.extend(bytes(&step.send));
        output = output.or(step.output);
    }
    assert_eq!(sent, log.sent[2]);
    assert_eq!(output.as_ref(), Some(&a[2]));
    assert!(log.sent[2].len() >= 6, "two rounds of value, echo, forward");
    // A message of round 0 replayed once the machine is in round 1 is refused.
    let mut fresh = evals(&job).remove(2);
    fresh.start().unwrap();
    let mut first = None;
    for (from, m) in &log.delivered[2] {
        first = first.or(Some((*from, m.clone())));
        fresh.handle(*from, m.clone()).unwrap();
        if fresh.waiting().is_some_and(|r| r.round == 1) {
            break;
        }
    }
    let (from, m) = first.unwrap();
    assert!(matches!(
        fresh.handle(from, m),
        Err(RoundError::PastRound { round: 0, .. })
    ));
    // And every message once it has finished.
    let (from, m) = log.delivered[2].last().unwrap().clone();
    assert!(matches!(
        again.handle(from, m),
        Err(RoundError::Finished { .. })
    ));
}

#[test]
fn duplicates_replays_and_foreign_messages_are_refused() {
    let job = job();
    let mut ms = evals(&job);
    let starts: Vec<Vec<(PartyId, Message<F>)>> = ms
        .iter_mut()
        .enumerate()
        .map(|(i, m)| expand(id(i + 1), m.start().unwrap().send))
        .collect();
    let value_from = |s: usize| -> Message<F> {
        starts[s - 1]
            .iter()
            .find(|(to, _)| *to == id(1))
            .unwrap()
            .1
            .clone()
    };
    let m1 = &mut ms[0];
    assert_eq!(
        m1.waiting(),
        Some(RoundId {
            round: 0,
            sub: SUB_VALUES
        })
    );
    m1.handle(id(2), value_from(2)).unwrap();
    assert!(matches!(
        m1.handle(id(2), value_from(2)),
        Err(RoundError::Duplicate {
            round: 0,
            sub: 0,
            ..
        })
    ));
    // A message from itself, or relabelled as from another sender, is refused.
    assert!(matches!(
        m1.handle(id(1), value_from(2)),
        Err(RoundError::NotParticipant { .. })
    ));
    assert!(matches!(
        m1.handle(id(3), value_from(2)),
        Err(RoundError::Malformed { .. })
    ));
    // A tampered payload does not match its signed hash.
    let Message::Value { header, payload } = value_from(3) else {
        panic!("a value")
    };
    let mut p = (*payload).clone();
    p[0] += F::ONE;
    let err = m1
        .handle(
            id(3),
            Message::Value {
                header: header.clone(),
                payload: p.into(),
            },
        )
        .unwrap_err();
    assert!(
        err.is_refusal() && matches!(err, RoundError::Echo(_)),
        "{err}"
    );
    // An echo of round 0 before the values are all in is kept, a second one refused.
    let echo = Message::Echo {
        job: [7; 32],
        round: 0,
        hashes: vec![None; N],
    };
    assert!(m1.handle(id(4), echo.clone()).unwrap().send.is_empty());
    assert!(matches!(
        m1.handle(id(4), echo),
        Err(RoundError::Duplicate {
            round: 0,
            sub: 1,
            ..
        })
    ));
    // Another job, a far round.
    let foreign = Message::Echo {
        job: [8; 32],
        round: 0,
        hashes: vec![None; N],
    };
    assert!(matches!(
        m1.handle(id(2), foreign),
        Err(RoundError::Foreign { .. })
    ));
    let far = Message::Echo {
        job: [7; 32],
        round: 5,
        hashes: vec![None; N],
    };
    assert!(matches!(
        m1.handle(id(2), far),
        Err(RoundError::TooEarly { round: 5, .. })
    ));
    // The machine is unchanged by the refusals: the run completes with the right shares.
    m1.handle(id(3), value_from(3)).unwrap();
    m1.handle(id(4), value_from(4)).unwrap();
    assert_eq!(
        m1.waiting(),
        Some(RoundId {
            round: 0,
            sub: SUB_ECHOES
        })
    );
    // A value of round 0 once the machine has left it: a replay.
    let stale = value_from(2);
    let err = m1.handle(id(2), stale).unwrap_err();
    assert!(
        matches!(
            err,
            RoundError::Duplicate {
                round: 0,
                sub: 0,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_broadcast_refuses_past_sub_rounds_and_keeps_evidence_of_a_second_value() {
    let (sk, vk) = keys();
    let mut b = Broadcast::<F>::new(id(1), [3; 32], 9, vk.clone(), BTreeSet::new());
    let out = b.start(&sk[0], vec![F::ONE]);
    assert_eq!(out.len(), 1);
    assert!(b.start(&sk[0], vec![F::ONE]).is_empty(), "started once");
    let value = |s: usize, v: u64, round: u32| {
        let p = vec![F::from_u64(v)];
        let h = SignedHeader::sign(
            &sk[s - 1],
            [3; 32],
            round,
            s as u32,
            s as u32,
            payload_hash(&p),
        );
        Message::Value {
            header: h,
            payload: p.into(),
        }
    };
    b.handle(id(2), value(2, 5, 9)).unwrap();
    // A second, different signed value from party 2: refused, kept as evidence.
    assert!(matches!(
        b.handle(id(2), value(2, 6, 9)),
        Err(RoundError::Duplicate { .. })
    ));
    // Another round of the same job.
    assert!(matches!(
        b.handle(id(3), value(3, 1, 8)),
        Err(RoundError::PastRound { round: 8, .. })
    ));
    assert!(matches!(
        b.handle(id(3), value(3, 1, 10)),
        Err(RoundError::TooEarly { round: 10, .. })
    ));
    // The deadline of the values passes without party 3 and 4: they are erasures.
    let stale = RoundId {
        round: 9,
        sub: SUB_ECHOES,
    };
    assert!(b.deadline(stale).is_empty(), "a stale deadline is ignored");
    let echo = b.deadline(RoundId {
        round: 9,
        sub: SUB_VALUES,
    });
    assert_eq!(echo.len(), 1);
    assert!(matches!(
        b.handle(id(3), value(3, 1, 9)),
        Err(RoundError::PastRound {
            round: 9,
            sub: 0,
            ..
        })
    ));
    b.deadline(RoundId {
        round: 9,
        sub: SUB_ECHOES,
    });
    b.deadline(RoundId { round: 9, sub: 2 });
    let out = b.output().unwrap();
    assert_eq!(out.conflicts, [id(2)]);
    assert_eq!(out.evidence.len(), 1);
    assert!(out.evidence[0].verify(&vk[1]));
    assert_eq!(out.values, vec![(id(1), vec![F::ONE].into())]);
}
