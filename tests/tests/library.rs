//! Every role through the library, in one process, on the regtest harness (the embedded node,
//! or a real bitcoind + electrs when `BITCOIND_EXE` and `ELECTRS_EXE` are set): four party
//! daemons bond against a signed roster, an owner stores a CSV with gaps and grants a service
//! on chain, and the service pays for `sum(income), count(income)` and gets the exact answer;
//! each party's wallet receives its fee. Nothing here shells out to `btcmpc`.

use std::time::{Duration, Instant};

use bitcoin::{Amount, FeeRate, Network};
use btcmpc_engine::mpc::csv::{Dataset, ReadOptions};
use btcmpc_engine::mpc::field::{PrimeField, Secp256k1Scalar};
use btcmpc_engine::node::acl::{self, Record, Scope};
use btcmpc_engine::node::acl_ops::{extend_anchor, fund_bond, store_dataset};
use btcmpc_engine::node::card::{BondRef, PartyCard};
use btcmpc_engine::node::chain::{ChainView, ElectrumView};
use btcmpc_engine::node::manifest::{verify_manifest, Manifest};
use btcmpc_engine::node::noise::StaticKeypair;
use btcmpc_engine::node::owner::{Owner, StoreOptions};
use btcmpc_engine::node::paid::ServiceJob;
use btcmpc_engine::node::party::{ChainSource, Party, PartyConfig};
use btcmpc_engine::node::roster::{Roster, RosterParams};
use btcmpc_engine::node::service::Service;
use btcmpc_engine::node::settle::{report_notice, wait_and_open, JobBook};
use btcmpc_engine::node::wire::StoreCommit;
use btcmpc_regtest::harness::TestEnv;
use btcmpc_regtest::ports::PortLease;
use btcmpc_wallet::{ChainClient, FeeChoice, RoleWallet};

const WAIT: Duration = Duration::from_secs(60);
const MIN_BOND: u64 = 100_000;
const FEE_SAT: u64 = 3_000;

fn fee() -> FeeChoice {
    FeeChoice::Explicit(FeeRate::from_sat_per_vb_u32(2))
}

/// A loopback port held until the lease is dropped ([`btcmpc_regtest::ports`]).
fn lease_port() -> PortLease {
    PortLease::new().expect("a loopback port to lease")
}

struct World {
    env: TestEnv,
    chain: ChainClient,
    dir: tempfile::TempDir,
}

impl World {
    fn wallet(&self, name: &str, sats: u64) -> anyhow::Result<RoleWallet> {
        let (mut w, _) = RoleWallet::create(&self.dir.path().join(name), Network::Regtest, None)?;
        self.env.fund(&w.next_address()?, Amount::from_sat(sats))?;
        self.settle()?;
        w.sync(&self.chain)?;
        Ok(w)
    }

    fn settle(&self) -> anyhow::Result<()> {
        self.env.wait_for_height(self.env.tip_height()?, WAIT)?;
        Ok(())
    }

    fn mine(&self, n: u32) -> anyhow::Result<()> {
        self.env.mine(n)?;
        self.settle()
    }
}

/// 300 rows: `income` has a gap every 7th row and is never 0 (its range says so: the leakage
/// rule counts its rows by presence alone); `age` is complete.
fn csv() -> (Vec<u8>, i64, u64) {
    let mut s = String::from("id,income:int:1..100000,age:int:0..120\n");
    let (mut sum, mut present) = (0i64, 0u64);
    for r in 0..300i64 {
        let income = if r % 7 == 3 {
            String::new()
        } else {
            sum += 100 * (r + 1);
            present += 1;
            (100 * (r + 1)).to_string()
        };
        s.push_str(&format!("{r},{income},{}\n", 18 + r % 60));
    }
    (s.into_bytes(), sum, present)
}

#[test]
fn a_rust_program_runs_every_role_through_the_library() -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let chain = ChainClient::connect(&env.electrum_url(), Duration::from_secs(10))?;
    let w = World {
        env,
        chain,
        dir: tempfile::tempdir()?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;

    // Setup: four parties, each with a wallet, a party key, a transport key and a card.
    let mut wallets = Vec::new();
    let mut keys = Vec::new();
    let mut cards = Vec::new();
    let mut ports = Vec::new();
    for i in 1..=4 {
        let mut wallet = w.wallet(&format!("party{i}"), 1_000_000)?;
        let (_, key) = wallet.contract_key(None, "party key")?;
        let kp = wallet.contract_keypair_for(&key)?.expect("its own key");
        let transport = StaticKeypair::generate()?;
        let lease = lease_port();
        let endpoint = format!("127.0.0.1:{}", lease.port());
        ports.push(lease);
        cards.push(PartyCard::new(
            Network::Regtest,
            &kp,
            transport.public().0,
            &endpoint,
            FEE_SAT,
            4,
        )?);
        wallets.push(wallet);
        keys.push((kp, transport));
    }
    // The roster every party signs, then each party's bond against it (the others judge).
    let mut roster = Roster::new(
        Network::Regtest,
        RosterParams::new(1, MIN_BOND),
        cards.clone(),
    )?;
    for (kp, _) in &keys {
        roster.sign(kp)?;
    }
    let exit = w.env.tip_height()? + 1_000;
    for (i, wallet) in wallets.iter_mut().enumerate() {
        let (outpoint, _) = fund_bond(
            wallet,
            &w.chain,
            &roster,
            i + 1,
            Amount::from_sat(300_000),
            exit,
            fee(),
        )?;
        cards[i].bond = Some(BondRef { outpoint, exit });
    }
    w.mine(1)?;
    let manifest = Manifest::new(roster, &cards)?;
    let view = ElectrumView::new(&w.chain);
    let table = verify_manifest(&manifest, &view)?;
    table.ok()?;

    // The party daemons, in this process; each claims into its own wallet.
    drop(wallets);
    let config_with = |i: usize,
                       kp: bitcoin::secp256k1::Keypair,
                       transport: StaticKeypair,
                       min_rows: u64|
     -> anyhow::Result<PartyConfig> {
        Ok(PartyConfig {
            manifest: manifest.clone(),
            party_key: kp,
            transport,
            listen: manifest.roster.cards[i].endpoint.parse()?,
            store_path: w.dir.path().join(format!("party{}.sqlite", i + 1)),
            round_timeout: Duration::from_secs(5),
            max_store_values: 1_000_000,
            fault: None,
            channel: Default::default(),
            idle_session: Duration::from_secs(30),
            chain: Some(ChainSource {
                url: w.env.electrum_url(),
                network: Network::Regtest,
                allow_plaintext: false,
                poll: Duration::from_secs(1),
                acl_min_conf: 1,
                min_rows,
            }),
            wallet: Some(w.dir.path().join(format!("party{}", i + 1))),
            min_fee_sat: FEE_SAT,
            max_open_jobs: 4,
            claim_fee_rate: 2,
        })
    };
    let config_of = |i: usize, kp: bitcoin::secp256k1::Keypair, transport: StaticKeypair| {
        config_with(i, kp, transport, 100)
    };
    let kept_keys = keys.clone();
    let mut parties = Vec::new();
    for (i, (kp, transport)) in keys.into_iter().enumerate() {
        parties.push(rt.block_on(Party::start(config_of(i, kp, transport)?))?);
    }

    // The owner stores the CSV with every party and publishes the STORE record.
    let (bytes, sum, present) = csv();
    let dataset = Dataset::from_bytes_with(&bytes, &ReadOptions::default())?;
    let owner = Owner::new(manifest.clone(), StaticKeypair::generate()?);
    let options = StoreOptions::new("survey");
    let shared = rt.block_on(owner.store_shares::<Secp256k1Scalar>(&dataset, &options, None))?;
    assert_eq!(shared.holders, vec![1, 2, 3, 4]);
    let mut owner_wallet = w.wallet("owner", 1_000_000)?;
    let owner_dir = w.dir.path().join("owner-data");
    let columns = dataset.schema.column_names();
    let d = store_dataset(
        &mut owner_wallet,
        &w.chain,
        &owner_dir,
        "survey",
        &columns,
        shared.receipts_root,
        fee(),
    )?;
    let mut session = [0u8; 32];
    hex_decode(&shared.session, &mut session)?;
    let commit = StoreCommit {
        session,
        store_outpoint: d.store_outpoint.clone(),
        anchor_key: d.anchor_key.clone(),
        dataset_id: d.dataset_id.clone(),
    };
    let committed = rt.block_on(owner.commit(
        &shared.holders,
        &commit,
        options.channel,
        options.party_timeout,
    ))?;
    assert_eq!(committed, vec![1, 2, 3, 4]);
    w.mine(1)?;

    // The service, and the owner's GRANT spending the dataset's anchor.
    let mut service_wallet = w.wallet("service", 2_000_000)?;
    let (_, service_key) = service_wallet.contract_key(None, "service key")?;
    let service = Service::new(
        service_wallet
            .contract_keypair_for(&service_key)?
            .expect("its own key"),
        StaticKeypair::generate()?,
    );
    let state = acl::start(&view, d.store_outpoint()?, d.anchor_key()?, 1)?;
    let current = state.current().expect("an open anchor");
    extend_anchor(
        &mut owner_wallet,
        &w.chain,
        &d.anchor_key()?,
        current,
        &Record::Grant {
            service: service.key(),
            scope: Scope::all(),
        },
        fee(),
    )?;
    w.mine(1)?;

    // The paid query: quotes, the computation, one funding paying every escrow, the claims.
    let book = JobBook::new(&w.dir.path().join("service-data"));
    let payout = service_wallet.next_address()?.to_string();
    let mut job = ServiceJob::new(
        &service,
        &manifest,
        &d.dataset_id,
        Secp256k1Scalar::NAME,
        dataset.schema.clone(),
        "sum(income), count(income)",
        FEE_SAT,
        view.tip()? + 60,
        Network::Regtest,
        &payout,
    )
    .map_err(anyhow::Error::msg)?;
    book.save(&job)?;
    let each = Duration::from_secs(30);
    // The parties read the GRANT on their next ACL poll: quote retries "ask again" itself.
    let start = Instant::now();
    loop {
        match rt.block_on(job.quote(&service, &manifest, Default::default(), each)) {
            Ok(()) => break,
            Err(e) if start.elapsed() < WAIT && e.contains("not granted") => {
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => anyhow::bail!("quotes: {e}"),
        }
    }
    assert_eq!(job.quotes.len(), 4);
    let mut job_options = StoreOptions::new("job-masks");
    job_options.party_timeout = each;
    rt.block_on(job.compute(&service, &manifest, &job_options, each))
        .map_err(anyhow::Error::msg)?;
    book.save(&job)?;
    service_wallet.sync(&w.chain)?;
    job.fund(&manifest, &mut service_wallet, &w.chain, fee())
        .map_err(anyhow::Error::msg)?;
    book.save(&job)?;
    let mut said = Vec::new();
    report_notice(
        rt.block_on(job.notify(&service, &manifest, Default::default(), each)),
        &mut |l| said.push(l),
    );
    assert!(said.is_empty(), "every party accepts the funding: {said:?}");
    w.mine(1)?;
    let mut progress = |_: String| {};
    rt.block_on(wait_and_open(
        &book,
        &service,
        &mut service_wallet,
        &mut job,
        &manifest,
        &w.chain,
        WAIT,
        &mut progress,
    ))?;

    // The exact answer, and the record on disk says so too.
    let result = job.result.clone().expect("the result is open");
    let value = |name: &str| {
        result
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.value.clone())
    };
    assert_eq!(value("sum(income)"), Some(sum.to_string()), "{result:?}");
    assert_eq!(value("count(income)"), Some(present.to_string()));
    assert!(job.blamed().is_empty());
    assert_eq!(book.load(&job.id_hex())?.result, job.result);

    // Each party's claim paid its own wallet its fee: the escrow output carries the fee plus
    // the quoted claim fee, so the claim nets exactly the fee, or the fee less what the party
    // added when its claim had to be fee-bumped (a slow block on a loaded machine).
    w.mine(1)?;
    let funding = job.funding.as_ref().expect("the job was paid");
    for i in 1..=4 {
        let escrow = funding
            .outputs
            .iter()
            .find(|o| o.party == i)
            .expect("every party was paid")
            .sats;
        let quoted = job.quotes.iter().find(|q| q.party == i).unwrap();
        let mut wallet =
            RoleWallet::open(&w.dir.path().join(format!("party{i}")), Network::Regtest)?;
        wallet.sync(&w.chain)?;
        let claims: Vec<(i64, u64)> = wallet
            .history()
            .iter()
            .filter_map(|t| Some((t.net.to_sat(), t.fee?.to_sat())))
            .filter(|(net, fee)| *net > 0 && net + *fee as i64 == escrow as i64)
            .collect();
        assert_eq!(claims.len(), 1, "party {i}: one claim of its escrow output");
        let (net, fee) = claims[0];
        assert!(fee >= quoted.claim_fee_sat, "party {i}: claim fee {fee}");
        assert_eq!(
            net,
            FEE_SAT as i64 - (fee - quoted.claim_fee_sat) as i64,
            "party {i} received its {FEE_SAT} sat fee, less any bump"
        );
    }

    // A quote kept while another query of the same service runs: asked for again, every party
    // quotes it again under the leakage rule as it is now (naming the query that ran), so the
    // job runs; the quote first made would be refused at the run as out of date.
    let job_for = |query: &str| {
        ServiceJob::new(
            &service,
            &manifest,
            &d.dataset_id,
            Secp256k1Scalar::NAME,
            dataset.schema.clone(),
            query,
            FEE_SAT,
            view.tip().map_err(|e| e.to_string())? + 60,
            Network::Regtest,
            &payout,
        )
    };
    // Quotes, asked again while a party that just started has not read the ACL yet.
    let ask = |job: &mut ServiceJob| -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            match rt.block_on(job.quote(&service, &manifest, Default::default(), each)) {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() < WAIT && e.contains("ask again") => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => anyhow::bail!("quotes: {e}"),
            }
        }
    };
    let first = "sum(income), count(income)".to_string();
    let mut kept = job_for("sum(income)").map_err(anyhow::Error::msg)?;
    ask(&mut kept)?;
    assert!(kept.quotes.iter().all(|q| q.earlier == [first.clone()]));
    let mut between = job_for("mean(income)").map_err(anyhow::Error::msg)?;
    ask(&mut between)?;
    job_options.name = "between-masks".into();
    rt.block_on(between.compute(&service, &manifest, &job_options, each))
        .map_err(anyhow::Error::msg)?;
    ask(&mut kept)?;
    for q in &kept.quotes {
        assert_eq!(
            q.earlier,
            [first.clone(), "mean(income)".to_string()],
            "party {} quotes again under the rule as it is now",
            q.party
        );
    }
    job_options.name = "kept-masks".into();
    rt.block_on(kept.compute(&service, &manifest, &job_options, each))
        .map_err(anyhow::Error::msg)?;
    assert_eq!(kept.deliveries.len(), 4);

    // Masks dealt for a quoted job, then another query of the service runs, the job is asked
    // for again (quoted again, its plan too) and a party restarts before the run: the masks
    // dealt before still fit, the restarted party runs under the rule it quoted last, and
    // the job is delivered by every party.
    let mut late = job_for("count(income)").map_err(anyhow::Error::msg)?;
    ask(&mut late)?;
    job_options.name = "late-masks".into();
    rt.block_on(late.deal_masks(&service, &manifest, &job_options))
        .map_err(anyhow::Error::msg)?;
    let mut other = job_for("mean(income), sum(income)").map_err(anyhow::Error::msg)?;
    ask(&mut other)?;
    job_options.name = "other-masks".into();
    rt.block_on(other.compute(&service, &manifest, &job_options, each))
        .map_err(anyhow::Error::msg)?;
    ask(&mut late)?;
    let rule = [
        first.clone(),
        "sum(income)".to_string(),
        "mean(income)".to_string(),
        "mean(income), sum(income)".to_string(),
    ];
    for q in &late.quotes {
        assert_eq!(q.earlier, rule, "party {}", q.party);
    }
    let second = parties.remove(1);
    rt.block_on(second.shutdown())?;
    let (kp, transport) = kept_keys[1].clone();
    parties.insert(1, rt.block_on(Party::start(config_of(1, kp, transport)?))?);
    // Asked again after the restart: the same quote (nothing changed).
    let before = late.quotes.clone();
    ask(&mut late)?;
    let signed = |qs: &[btcmpc_engine::node::job::Quote]| {
        let mut v: Vec<(u32, [u8; 64])> = qs.iter().map(|q| (q.party, q.signature)).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(
        signed(&late.quotes),
        signed(&before),
        "the re-made quote survives the restart as it was signed"
    );
    rt.block_on(late.run(&service, &manifest, &job_options, each))
        .map_err(anyhow::Error::msg)?;
    assert_eq!(late.deliveries.len(), 4);

    // The leakage rule's min_rows as the party is configured now: a job quoted under a lower
    // min_rows, asked for again after every party was restarted with a higher one, must be
    // quoted under the higher one (or refused), never run under the lower one.
    let restart_all = |parties: &mut Vec<Party>, min_rows: u64| -> anyhow::Result<()> {
        for (i, p) in std::mem::take(parties).into_iter().enumerate() {
            rt.block_on(p.shutdown())?;
            let (kp, transport) = kept_keys[i].clone();
            parties.push(rt.block_on(Party::start(config_with(i, kp, transport, min_rows)?))?);
        }
        Ok(())
    };
    restart_all(&mut parties, 5)?;
    // Nine rows (ages 18 and 19, one income missing): released at min_rows 5, not at 100.
    let mut small = job_for("sum(income) where age < 20").map_err(anyhow::Error::msg)?;
    ask(&mut small)?;
    assert!(small.quotes.iter().all(|q| q.min_rows == 5));
    restart_all(&mut parties, 100)?;
    ask(&mut small)?;
    for q in &small.quotes {
        assert_eq!(
            q.min_rows, 100,
            "party {} restarted with min_rows 100 still quotes the job under {} ({:?})",
            q.party, q.min_rows, q.earlier
        );
    }
    // A quote run without being asked for again after the setting changed is refused at the
    // run, before any share is touched.
    let mut stale = job_for("sum(income) where age < 30").map_err(anyhow::Error::msg)?;
    ask(&mut stale)?;
    restart_all(&mut parties, 5)?;
    job_options.name = "stale-masks".into();
    let e = rt
        .block_on(stale.compute(&service, &manifest, &job_options, each))
        .expect_err("a quote under min_rows 100 is not run by parties now at 5");
    assert!(e.contains("min_rows is 5 now, the quote's 100"), "{e}");

    for p in parties {
        rt.block_on(p.shutdown())?;
    }
    Ok(())
}

fn hex_decode(text: &str, out: &mut [u8; 32]) -> anyhow::Result<()> {
    anyhow::ensure!(text.len() == 64, "session {text:?} is not 64 hex digits");
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)?;
    }
    Ok(())
}
