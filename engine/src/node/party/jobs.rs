//! The party daemon's side of a paid query (PROTOCOL.md, "Job flow"; messages in
//! [`crate::node::job`]).
//!
//! A job goes `quoted` (the request passed every check: signature, roster, dataset, the
//! chain's ACL, scope, `min_rows`, the plan's range check, fee, open jobs, `T`) -> `running`
//! (the service's output masks passed their check; the PRSS key agreement [`Setup`] runs, then
//! the evaluation [`EvalMachine`]) -> `delivered` (the sealed, signed output share went to the
//! service) -> `paid` (the service's funding names this party) -> `claimed`.
//!
//! Both machines are driven by replay: every delivered message and every fired deadline is
//! appended to the job's log and persisted before it is handled, and the machine is rebuilt
//! from its inputs and the log for each new event. The machines are deterministic in their
//! inputs (the setup's seed is derived from the party key and the roster, so the same
//! contributions are signed for every job), and the outbox keeps the first bytes signed for
//! each slot, so a replayed or restarted party re-sends what it sent, never a second version.

use super::*;
use crate::mpc::eval::{mask_outputs, EvalMachine};
use crate::mpc::evidence::{seal, sign_tagged, Delivery};
use crate::mpc::prss::Prss;
use crate::mpc::query::plan::{Node, Plan};
use crate::mpc::setup::{Setup, SetupOutput};
use crate::node::card::tagged_hash;
use crate::node::job::{
    admit_query, gate_bits_encoding, hashlock_key, plan_job, JobCancel, JobDelivery, JobPaid,
    JobPaidAnswer, JobRequest, JobRun, Quote, GATE_BITS_TAG,
};
use std::sync::Arc;

/// The reason recorded for a job its service cancelled.
const CANCELLED: &str = "cancelled by the service before it ran";
use crate::node::peer::{decode_round, encode_round};
use sha2::{Digest, Sha256};

/// Most jobs one service may have quoted here and not yet run.
pub const MAX_WAITING_QUOTES: usize = 2;

/// Most jobs a party has quoted and not yet finished, by default.
pub const DEFAULT_MAX_OPEN_JOBS: usize = 8;

/// A job as this party recorded it: what `party jobs` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobSummary {
    /// The job id, hex.
    pub job: String,
    /// `quoted`, `running`, `delivered`, `paid`, `claimed` or `failed`.
    pub state: String,
    /// The query text.
    pub query: String,
    /// The dataset id, hex.
    pub dataset_id: String,
    /// The fee, sats (the escrow carries `claim_fee_sat` on top).
    pub fee_sat: u64,
    /// The claim fee quoted, sats.
    pub claim_fee_sat: u64,
    /// `T`, the escrow's refund height.
    pub timeout: u32,
    /// The funding transaction, once paid.
    pub funding_txid: Option<String>,
    /// The claim, once broadcast.
    pub claim_txid: Option<String>,
    /// Why the job failed, if it did.
    pub reason: Option<String>,
}

/// Every job in the party store at `path`, in job-id order (read-only; works while the daemon
/// runs).
///
/// # Errors
/// The store cannot be opened or read.
pub fn job_summaries(path: &std::path::Path) -> Result<Vec<JobSummary>, StoreError> {
    let store = Store::open(path)?;
    let mut out = Vec::new();
    for key in store.jobs_with_prefix("job:")? {
        let Some(bytes) = store.job_state(&key)? else {
            continue;
        };
        let Ok(r) = serde_json::from_slice::<JobRecord>(&bytes) else {
            continue;
        };
        out.push(JobSummary {
            job: hex::encode(r.quote.job),
            state: r.state,
            query: r.request.query,
            dataset_id: r.request.dataset_id,
            fee_sat: r.quote.fee_sat,
            claim_fee_sat: r.quote.claim_fee_sat,
            timeout: r.request.timeout,
            funding_txid: r.paid.map(|p| p.funding_txid),
            claim_txid: r.claim_txid,
            reason: r.reason,
        });
    }
    Ok(out)
}

/// What a party persists of a job, as job state `job:HEX` (open until claimed or failed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct JobRecord {
    pub(super) request: JobRequest,
    /// The service's transport key, hex: only it may run or pay the job.
    pub(super) client_key: String,
    /// The dataset's store session, hex.
    pub(super) dataset: String,
    pub(super) quote: Quote,
    /// `quoted`, `running`, `delivered`, `paid`, `claimed`, `failed`.
    pub(super) state: String,
    #[serde(default)]
    pub(super) mask_session: Option<String>,
    #[serde(default)]
    pub(super) delivery: Option<JobDelivery>,
    #[serde(default)]
    pub(super) paid: Option<JobPaid>,
    #[serde(default)]
    pub(super) claim_txid: Option<String>,
    #[serde(default)]
    pub(super) reason: Option<String>,
    /// Order of quoting among this party's jobs (older first).
    #[serde(default)]
    pub(super) seq: u64,
    /// Whether the evaluation released something (no gate, or a gate opened), as the
    /// committee opened the gate bits (not as a delivery may show them): the queries that
    /// released something are the leakage rule's earlier queries. `None` in records from
    /// before it was kept (the delivered bits decide).
    #[serde(default)]
    pub(super) released: Option<bool>,
}

pub(super) fn job_key(job: &Hash32) -> String {
    format!("job:{}", hex::encode(job))
}

/// The journal of a job's key agreement.
pub(super) fn setup_journal(job: &Hash32) -> String {
    format!("jobsetup:{}", hex::encode(job))
}

/// The session id of a job's PRSS key agreement (its evaluation uses the job id).
pub(super) fn setup_session(job: &Hash32) -> Hash32 {
    tagged_hash("btcmpc/v1/job-setup", job)
}

/// The outbox slot of a job message: echo-broadcast messages by `(round, sub-round)`, setup
/// messages by their own round numbers (contributions by their signed round, confirmations
/// and accusations by attempt), so no two messages of one job share a slot.
pub(super) fn message_slot<F: PrimeField>(msg: &Message<F>) -> (u32, u8) {
    if let Some((_, r, s)) = Broadcast::<F>::slot_of(msg) {
        return (r, s);
    }
    match msg {
        Message::Contribution(c) => (c.header.round, 20),
        Message::Confirmations { attempt, .. } => (*attempt, 21),
        Message::Accusation { attempt, .. } => (*attempt, 22),
        _ => (0, 255),
    }
}

/// A degree refusal names the aggregate that has the degree: a column with gaps multiplies
/// each value by its presence bit, so `sum(a + b)` over gappy columns is degree 2.
fn explain_degree(refusal: String, plan: &Plan) -> String {
    if !refusal.starts_with("degree ") {
        return refusal;
    }
    match plan.opened.iter().max_by_key(|o| o.degree) {
        Some(o) => format!(
            "{refusal}: {} has degree {} (a product counts each factor: each comparison of a filter, two for `between`, and the presence bit of a column with empty cells)",
            o.label, o.degree
        ),
        None => refusal,
    }
}

/// The CSV column names a plan reads, in schema order (what the grant's scope must cover).
pub(super) fn plan_columns(plan: &Plan, schema: &crate::mpc::csv::Schema) -> Vec<String> {
    fn walk(n: &Node, out: &mut BTreeSet<usize>) {
        match n {
            Node::Column(c) => {
                out.insert(*c);
            }
            Node::Const(_) => {}
            Node::Add(a, b) | Node::Sub(a, b) | Node::Mul(a, b) => {
                walk(a, out);
                walk(b, out);
            }
            Node::Neg(a) | Node::Scale(a, _) => walk(a, out),
            Node::LessThanZero { value, .. } | Node::EqualsZero { value, .. } => walk(value, out),
        }
    }
    let mut fields = BTreeSet::new();
    for o in &plan.opened {
        walk(&o.node, &mut fields);
    }
    for g in &plan.gates {
        for t in &g.tests {
            walk(t.rows(), &mut fields);
        }
    }
    let mut names = BTreeSet::new();
    for f in fields {
        // The column whose field range holds field `f` (the last one starting at or before it).
        if let Some(c) = schema
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| c.first_field <= f)
            .max_by_key(|(_, c)| c.first_field)
        {
            names.insert(c.0);
        }
    }
    names
        .into_iter()
        .map(|i| schema.columns[i].name.clone())
        .collect()
}

pub(super) enum Job {
    S(JobSession<Secp256k1Scalar>),
    M(JobSession<Mersenne127>),
}

impl Job {
    /// The session of a job on a dataset in `field` (a field other than secp256k1 is 2^127-1:
    /// [`plan_in_field`] refuses any other first).
    fn in_field(field: &str, id: Hash32, rec: JobRecord, plan: Plan, client: Option<u64>) -> Job {
        match field {
            Secp256k1Scalar::NAME => Job::S(JobSession::new(id, rec, plan, client)),
            _ => Job::M(JobSession::new(id, rec, plan, client)),
        }
    }
}

/// [`plan_job`] in the field the dataset is stored in.
///
/// # Errors
/// An unknown field; the planner's refusal.
fn plan_in_field(
    field: &str,
    query: &str,
    schema: &crate::mpc::csv::Schema,
    min_rows: u64,
    earlier: &[String],
) -> Result<Plan, Refuse> {
    match field {
        Secp256k1Scalar::NAME => plan_job::<Secp256k1Scalar>(query, schema, min_rows, earlier),
        Mersenne127::NAME => plan_job::<Mersenne127>(query, schema, min_rows, earlier),
        other => Err(format!("dataset in unknown field {other}")),
    }
}

macro_rules! with_job {
    ($s:expr, $v:ident => $e:expr) => {
        match $s {
            Job::S($v) => $e,
            Job::M($v) => $e,
        }
    };
}
pub(super) use with_job;

pub(super) struct JobSession<F: PrimeField> {
    pub(super) id: Hash32,
    pub(super) record: JobRecord,
    pub(super) client: Option<u64>,
    plan: Arc<Plan>,
    /// Loaded when the job runs.
    columns: Arc<[Vec<F>]>,
    masks: Vec<F>,
    prss: Option<Arc<Prss<F>>>,
    ignored: BTreeSet<PartyId>,
    /// The key agreement's log (persisted in the store's journal `jobsetup:HEX`).
    setup_log: Vec<LogEntry>,
    /// The evaluation's log (journal `job:HEX`) until the machine is built from it; then only
    /// the entry being handed to the machine.
    eval_log: Vec<LogEntry>,
    /// The evaluation, kept across events (re-created from `eval_log` after a restart).
    machine: Option<EvalMachine<'static, F>>,
    pub(super) phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Quoted,
    Setup,
    Eval,
    Done,
}

impl Core {
    fn setup_seed(&self) -> Hash32 {
        let mut m = self.party_key.secret_bytes().to_vec();
        m.extend_from_slice(&self.roster_id);
        tagged_hash("btcmpc/v1/prss-seed", &m)
    }

    /// `JOB_REQUEST`: every check of PROTOCOL.md's step 2, then a signed quote (the same one
    /// again for a request already quoted).
    pub(super) fn on_job_request(&mut self, conn: u64, req: JobRequest) -> Result<(), Refuse> {
        let service = req.verify()?;
        let id = req.id();
        let key = self.client_key(conn)?;
        if let Some(j) = self.jobs.get_mut(&id) {
            let quoted = with_job!(j, j => {
                if j.record.client_key != hex::encode(key.0) {
                    return Err("this job belongs to another service connection key".into());
                }
                j.client = Some(conn);
                j.phase == Phase::Quoted
            });
            if quoted {
                self.refresh_quote(&id)?;
            }
            let quote = self
                .jobs
                .get(&id)
                .map(|j| with_job!(j, j => j.record.quote.clone()))
                .ok_or("this job is gone")?;
            self.reply_json(Some(conn), MessageType::JOB_QUOTE, &quote);
            return Ok(());
        }
        if req.roster != self.roster_id {
            return Err(format!(
                "job for roster {}, this party serves roster {}",
                hex::encode(req.roster),
                hex::encode(self.roster_id)
            ));
        }
        // A penalty for this job must be payable: refuse a payout for another chain.
        req.payout_script(self.network)?;
        // A service holds at most MAX_WAITING_QUOTES jobs quoted but not run yet: asking for
        // another drops its oldest, so quotes alone never fill this party's open jobs.
        let mut waiting: Vec<(u64, Hash32)> = self
            .jobs
            .iter()
            .filter(|(_, j)| {
                with_job!(j, j => j.phase == Phase::Quoted && j.record.request.service == req.service)
            })
            .map(|(id, j)| (with_job!(j, j => j.record.seq), *id))
            .collect();
        waiting.sort_unstable();
        while waiting.len() >= MAX_WAITING_QUOTES {
            let (_, old) = waiting.remove(0);
            if let Some(mut j) = self.jobs.remove(&old) {
                let rec = with_job!(&mut j, j => {
                    j.phase = Phase::Done;
                    j.record.state = "failed".into();
                    j.record.reason = Some(
                        "superseded: the service asked for other jobs before running this one".into(),
                    );
                    j.record.clone()
                });
                self.put_job(&rec).map_err(|e| e.to_string())?;
                info!(target: "btcmpc::party", job = %hex::encode(old), "quote dropped: the service asked for newer jobs");
            }
        }
        let open = self.counted_open_jobs();
        if open >= self.max_open_jobs {
            return Err(format!(
                "{open} jobs are open here, the most this party takes; try later"
            ));
        }
        if req.fee_sat < self.min_fee_sat {
            return Err(format!(
                "fee {} sat is below this party's fee of {} sat",
                req.fee_sat, self.min_fee_sat
            ));
        }
        let Some(min_rows) = self.min_rows else {
            return Err("this party follows no chain: it cannot read the dataset's ACL".into());
        };
        let (store_id, record, rows) = self.committed_dataset(&req.dataset_id)?;
        let view = self
            .acls
            .get(&store_id)
            .ok_or("this party has not read the dataset's ACL from the chain yet; ask again")?;
        // Bond exposure (PROTOCOL.md): the penalties of every job evidence could still come
        // from and of this one must stay within the bond, so each victim can be paid.
        if let Some(bond) = self.bond_value {
            let penalty = |fee: u64| fee.saturating_mul(self.penalty_multiplier);
            let exposed: u64 = self
                .jobs
                .values()
                .filter(|j| {
                    with_job!(j, j => {
                        let r = &j.record;
                        // Paid: evidence may come until the dispute window ends. Running or
                        // delivered and unpaid: it may still be paid until T, never after.
                        let until = if r.paid.is_some() {
                            r.request.timeout.saturating_add(self.dispute_window)
                        } else {
                            r.request.timeout
                        };
                        !matches!(r.state.as_str(), "failed" | "quoted") && until >= view.tip
                    })
                })
                .map(|j| with_job!(j, j => penalty(j.record.request.fee_sat)))
                .fold(0u64, u64::saturating_add);
            if exposed.saturating_add(penalty(req.fee_sat)) > bond {
                return Err(format!(
                    "bond exposure: the penalties of the open jobs ({exposed} sat) and of this one ({} sat) would exceed this party's bond of {bond} sat; try later",
                    penalty(req.fee_sat)
                ));
            }
        }
        // T must leave the computation, the funding's confirmations and the claim margin.
        let rules = btcmpc_wallet::ClaimRules::for_network(self.network);
        let earliest = view
            .tip
            .saturating_add(rules.margin)
            .saturating_add(rules.min_conf)
            .saturating_add(MIN_JOB_BLOCKS);
        // And T no further than the roster's deadline horizon: a far T would hold this job's
        // exposure (and the service's escrow) for that long.
        let latest = view.tip.saturating_add(self.deadline_horizon);
        if req.timeout > latest {
            return Err(format!(
                "timeout {} is too far: at tip {} this party takes T <= {latest} (the roster's deadline horizon, {} blocks)",
                req.timeout, view.tip, self.deadline_horizon
            ));
        }
        if req.timeout < earliest {
            return Err(format!(
                "timeout {} is too close: at tip {} this party needs T >= {earliest} (claim margin {}, {} confirmation(s), {MIN_JOB_BLOCKS} blocks to compute and fund)",
                req.timeout, view.tip, rules.margin, rules.min_conf
            ));
        }
        // The grant is checked before the query is planned (planning costs work in the size
        // of the query): a service that is not granted, revoked or expired costs nothing more.
        let names = record.begin.schema.column_names();
        let unplanned = AccessRequest {
            dataset_id: req.dataset_id.clone(),
            service: req.service.clone(),
            columns: Vec::new(),
            degree: 0,
            signature: String::new(),
        };
        authorize(view, &service, &unplanned, &names, rows, min_rows)?;
        // The leakage rule: this party's min_rows and the queries it answered earlier for this
        // service on this dataset (every distinct text, oldest first).
        // A new query is compared with every query released before it.
        let earlier = admit_query(
            &req.query,
            self.earlier_queries(&req.service, &req.dataset_id),
        )?;
        let schema = &record.begin.schema;
        let plan = plan_in_field(&record.begin.field, &req.query, schema, min_rows, &earlier)?;
        let ask = AccessRequest {
            dataset_id: req.dataset_id.clone(),
            service: req.service.clone(),
            columns: plan_columns(&plan, schema),
            degree: u8::try_from(plan.degree).unwrap_or(u8::MAX),
            signature: String::new(),
        };
        authorize(view, &service, &ask, &names, rows, min_rows)
            .map_err(|e| explain_degree(e, &plan))?;
        let k = hashlock_key(&self.party_key, &id);
        let key_hash: Hash32 = Sha256::digest(k).into();
        // The escrow carries the claim's fee at this party's rate assumption on top.
        let escrow = super::super::job::escrow_contract(
            self.network,
            service,
            self.party_key.public_key(),
            &key_hash,
            req.timeout,
        )?;
        let claim_fee_sat = super::super::job::claim_fee(&escrow, &k, self.claim_fee_rate)?;
        let mut quote = Quote {
            job: id,
            party: self.me.get(),
            key_hash,
            party_key: self.party_key.public_key().to_string(),
            fee_sat: req.fee_sat,
            claim_fee_sat,
            timeout: req.timeout,
            min_rows,
            earlier,
            signature: [0; 64],
        };
        quote.signature = schnorr_sign(&self.party_key, quote.digest());
        let rec = JobRecord {
            request: req,
            client_key: hex::encode(key.0),
            dataset: store_id,
            quote: quote.clone(),
            state: "quoted".into(),
            mask_session: None,
            delivery: None,
            paid: None,
            claim_txid: None,
            reason: None,
            released: None,
            seq: self
                .jobs
                .values()
                .map(|j| with_job!(j, j => j.record.seq))
                .max()
                .unwrap_or(0)
                + 1,
        };
        self.put_job(&rec).map_err(|e| e.to_string())?;
        let job = Job::in_field(&record.begin.field, id, rec, plan, Some(conn));
        self.jobs.insert(id, job);
        info!(target: "btcmpc::party", job = %hex::encode(id), "quoted");
        self.crash_point(FaultStep::Quote, false);
        self.reply_json(Some(conn), MessageType::JOB_QUOTE, &quote);
        Ok(())
    }

    /// A job quoted but not run, asked for again: if a query of the same service on the same
    /// dataset was answered or started since, or this party's `min_rows` changed (a restart
    /// with another setting), the quote's leakage rule is out of date (a run would be
    /// refused). The quote is then made again under the rule as it is now (the plan
    /// with it, signed and stored), so that a service that found the committee's quotes
    /// disagreeing can ask again and get quotes that agree. Nothing was paid or computed yet.
    ///
    /// # Errors
    /// The query is no longer admitted, or does not plan, under the rule as it is now.
    fn refresh_quote(&mut self, id: &Hash32) -> Result<(), Refuse> {
        let Some(j) = self.jobs.get(id) else {
            return Ok(());
        };
        let (mut rec, client) = with_job!(j, j => (j.record.clone(), j.client));
        let rule_now = admit_query(
            &rec.request.query,
            self.earlier_queries(&rec.request.service, &rec.request.dataset_id),
        )?;
        let min_rows = self
            .min_rows
            .ok_or("this party follows no chain: it cannot read the dataset's ACL")?;
        if rule_now == rec.quote.earlier && min_rows == rec.quote.min_rows {
            return Ok(());
        }
        let (_, record, _) = self.committed_dataset(&rec.request.dataset_id)?;
        let schema = &record.begin.schema;
        rec.quote.earlier = rule_now;
        rec.quote.min_rows = min_rows;
        rec.quote.signature = schnorr_sign(&self.party_key, rec.quote.digest());
        let field = &record.begin.field;
        let plan = plan_in_field(
            field,
            &rec.request.query,
            schema,
            min_rows,
            &rec.quote.earlier,
        )?;
        self.put_job(&rec).map_err(|e| e.to_string())?;
        self.jobs
            .insert(*id, Job::in_field(field, *id, rec, plan, client));
        info!(target: "btcmpc::party", job = %hex::encode(id), "quoted again: the leakage rule changed since the first quote");
        Ok(())
    }

    /// The queries this party delivered an answer to for `service` on `dataset_id`, or is
    /// evaluating now, oldest first, each text once, all of them (a new query is refused once there are
    /// [`MAX_EARLIER`](crate::node::job::MAX_EARLIER)): those that released something
    /// (no gate, or at least one gate open). A query whose every cell was withheld released
    /// only its gate bits and no value to subtract from, so it does not constrain later
    /// queries (counting it withheld an exact repeat of an answered query near it).
    fn earlier_queries(&self, service: &str, dataset_id: &str) -> Vec<String> {
        let mut answered: Vec<(u64, String)> = self
            .jobs
            .values()
            .filter_map(|j| {
                with_job!(j, j => {
                    let r = &j.record;
                    let released = r.delivery.as_ref().is_some_and(|d| {
                        r.released
                            .unwrap_or(d.gates.is_empty() || d.gates.iter().any(|g| *g))
                    });
                    // A job under way may release: it counts until it is delivered (then by
                    // what it released) or fails, so two queries run at once are compared.
                    let in_flight = r.delivery.is_none() && r.state == "running";
                    ((released || in_flight)
                        && r.request.service == service
                        && r.request.dataset_id == dataset_id)
                        .then(|| (r.seq, r.request.query.clone()))
                })
            })
            .collect();
        answered.sort();
        let mut seen = BTreeSet::new();
        let mut out: Vec<String> = answered
            .into_iter()
            .rev()
            .filter(|(_, q)| seen.insert(q.clone()))
            .map(|(_, q)| q)
            .collect();
        out.reverse();
        out
    }

    pub(super) fn put_job(&mut self, rec: &JobRecord) -> Result<(), StoreError> {
        let open = !matches!(rec.state.as_str(), "claimed" | "failed");
        if !matches!(rec.state.as_str(), "quoted" | "running") {
            // Delivered or failed: the machines' outcome is recorded, their logs and the
            // messages they signed are done with (the machines never run or send again).
            self.store.delete_journal(&setup_journal(&rec.quote.job))?;
            self.store.delete_journal(&job_key(&rec.quote.job))?;
            self.store.delete_outbox(&setup_journal(&rec.quote.job))?;
            self.store.delete_outbox(&job_key(&rec.quote.job))?;
        }
        if !open {
            // The output masks are of no use once the job is over.
            if let Some(m) = &rec.mask_session {
                self.store.delete_dataset(m)?;
            }
        }
        self.store.put_job_state(
            &job_key(&rec.quote.job),
            &serde_json::to_vec(rec).expect(
                "a job record serializes: derived Serialize of strings, numbers, lists and options",
            ),
            open,
        )
    }

    /// `JOB_CANCEL`: the service that asked for a quoted job withdraws it; the job stops
    /// counting against `max_open_jobs`. A job already running or delivered is not stopped
    /// (its masks are dealt and its delivery may be paid).
    pub(super) fn on_job_cancel(&mut self, conn: u64, m: JobCancel) -> Result<(), Refuse> {
        let key = self.client_key(conn)?;
        let Some(job) = self.jobs.get_mut(&m.job) else {
            return Err(format!("no job {} here", hex::encode(m.job)));
        };
        let rec = with_job!(job, j => {
            if j.record.client_key != hex::encode(key.0) {
                return Err("this job belongs to another service connection key".into());
            }
            if j.phase == Phase::Quoted {
                j.phase = Phase::Done;
                j.record.state = "failed".into();
                j.record.reason = Some(CANCELLED.into());
                Some(j.record.clone())
            } else if j.record.reason.as_deref() == Some(CANCELLED) {
                None // cancelled before: the same answer again
            } else {
                return Err("this job is running or done: it cannot be cancelled".into());
            }
        });
        if let Some(rec) = rec {
            self.put_job(&rec).map_err(|e| e.to_string())?;
            info!(target: "btcmpc::party", job = %hex::encode(m.job), "cancelled by the service");
        }
        self.reply_json(Some(conn), MessageType::JOB_CANCEL, &m);
        Ok(())
    }

    /// `JOB_RUN`: checks the mask dealing and starts the job (or re-sends the delivery).
    pub(super) fn on_job_run(&mut self, conn: u64, run: JobRun) -> Result<(), Refuse> {
        let key = self.client_key(conn)?;
        let Some(mut job) = self.jobs.remove(&run.job) else {
            return Err(format!("no quoted job {}", hex::encode(run.job)));
        };
        let r = with_job!(&mut job, j => self.run_job(conn, key, j, &run));
        let id = run.job;
        self.jobs.insert(id, job);
        r?;
        self.drain_job_early(&setup_session(&id))
            .map_err(|e| e.to_string())?;
        self.drain_job_early(&id).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The jobs counted against `max_open_jobs`: every job not done, except a quote whose `T`
    /// has passed (it can never be run or paid).
    pub(super) fn counted_open_jobs(&self) -> usize {
        let tip = self.acls.values().map(|v| v.tip).max().unwrap_or(0);
        self.jobs
            .values()
            .filter(|j| {
                with_job!(j, j => j.phase != Phase::Done
                    && !(j.phase == Phase::Quoted && j.record.request.timeout <= tip))
            })
            .count()
    }

    /// The dataset of job `id` if it is delivered and not yet paid (the first funding notice
    /// releases the key: the grant is checked on a fresh reading first).
    pub(super) fn unpaid_job_dataset(&self, id: &Hash32) -> Option<String> {
        let j = self.jobs.get(id)?;
        with_job!(j, j => (j.record.delivery.is_some() && j.record.paid.is_none())
            .then(|| j.record.dataset.clone()))
    }

    /// The dataset of job `id` if it is quoted and not yet run (a run is a new admission).
    pub(super) fn quoted_job_dataset(&self, id: &Hash32) -> Option<String> {
        let j = self.jobs.get(id)?;
        with_job!(j, j => (j.phase == Phase::Quoted && j.record.delivery.is_none())
            .then(|| j.record.dataset.clone()))
    }

    /// The access check of the quote, again, on the ACL as read now.
    fn recheck_access<F: PrimeField>(&self, j: &JobSession<F>) -> Result<(), Refuse> {
        let Some(min_rows) = self.min_rows else {
            return Err("this party follows no chain: it cannot read the dataset's ACL".into());
        };
        let req = &j.record.request;
        let service = req.verify()?;
        let (_, record, rows) = self.committed_dataset(&req.dataset_id)?;
        let view = self
            .acls
            .get(&j.record.dataset)
            .ok_or("this party has not read the dataset's ACL from the chain yet; ask again")?;
        let schema = &record.begin.schema;
        let names = schema.column_names();
        let ask = AccessRequest {
            dataset_id: req.dataset_id.clone(),
            service: req.service.clone(),
            columns: plan_columns(&j.plan, schema),
            degree: u8::try_from(j.plan.degree).unwrap_or(u8::MAX),
            signature: String::new(),
        };
        authorize(view, &service, &ask, &names, rows, min_rows)
    }

    fn run_job<F: PrimeField>(
        &mut self,
        conn: u64,
        key: TransportKey,
        j: &mut JobSession<F>,
        run: &JobRun,
    ) -> Result<(), Refuse> {
        if j.record.client_key != hex::encode(key.0) {
            return Err("this job belongs to another service connection key".into());
        }
        j.client = Some(conn);
        if let Some(d) = &j.record.delivery {
            if !self.fault(Fault::Withhold) {
                self.reply_json(Some(conn), MessageType::RESULT, d);
            }
            return Ok(());
        }
        if j.record.state == "failed" {
            return Err(format!(
                "this job failed here: {}",
                j.record.reason.clone().unwrap_or_default()
            ));
        }
        if j.phase != Phase::Quoted {
            return Ok(()); // running: the delivery follows
        }
        // The leakage rule's min_rows is this party's setting now (a restart may change it).
        if self.min_rows != Some(j.record.quote.min_rows) {
            return Err(format!(
                "this party's min_rows is {} now, the quote's {}: {}; ask for a new quote (nothing is paid)",
                self.min_rows.map_or("unset".into(), |m| m.to_string()),
                j.record.quote.min_rows,
                crate::node::job::STALE_RULE
            ));
        }
        // The grant is checked again on the chain's latest reading: a REVOKE seen between the
        // quote and the run stops the job before any share is touched.
        self.recheck_access(j)?;
        // The leakage rule of the quote must still be the party's: a query of this service on
        // this dataset that was answered, or started, after this quote was not compared with
        // this one (two queries run at once would each pass the rule without the other).
        let rule_now = admit_query(
            &j.record.request.query,
            self.earlier_queries(&j.record.request.service, &j.record.request.dataset_id),
        )?;
        if rule_now != j.record.quote.earlier {
            return Err(format!("another query of this service on this dataset was answered or started after this job was quoted, so {}: ask for a new quote (nothing is paid)", crate::node::job::STALE_RULE));
        }
        let mask_id = session_hex(&run.mask_session);
        let d = self
            .store
            .datasets()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|d| d.id == mask_id)
            .ok_or_else(|| format!("no mask dealing {mask_id} here"))?;
        let mr: SessionRecord = serde_json::from_slice(&d.meta).map_err(|e| e.to_string())?;
        if mr.begin.job != Some(j.id) {
            return Err("that dealing is not this job's output masks".into());
        }
        if mr.owner()? != key {
            return Err("the masks were dealt by another connection key".into());
        }
        if mr.state != "checked" {
            return Err("the check of the output masks has not passed here".into());
        }
        if mr.begin.field != F::NAME
            || mr.begin.schema.fields.len() != 1
            || mr.begin.schema.rows != j.plan.opened.len()
        {
            return Err(format!(
                "the masks must be one {} column of {} values",
                F::NAME,
                j.plan.opened.len()
            ));
        }
        j.masks = self
            .store
            .read_column::<F>(&mask_id, 0)
            .map_err(|e| e.to_string())?;
        j.record.mask_session = Some(mask_id);
        j.record.state = "running".into();
        self.put_job(&j.record).map_err(|e| e.to_string())?;
        self.load_columns(j)?;
        j.phase = Phase::Setup;
        self.job_sessions.insert(setup_session(&j.id), j.id);
        self.job_sessions.insert(j.id, j.id);
        info!(target: "btcmpc::party", job = %hex::encode(j.id), "job running: key agreement");
        self.step_job(j, None).map_err(|e| e.to_string())
    }

    fn load_columns<F: PrimeField>(&self, j: &mut JobSession<F>) -> Result<(), Refuse> {
        let d = self
            .store
            .datasets()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|d| d.id == j.record.dataset)
            .ok_or("the dataset is gone")?;
        let mut columns = Vec::with_capacity(d.columns as usize);
        for c in 0..d.columns {
            columns.push(
                self.store
                    .read_column::<F>(&j.record.dataset, c)
                    .map_err(|e| e.to_string())?,
            );
        }
        j.columns = columns.into();
        Ok(())
    }

    /// Rebuilds the job's current machine from its log and hands it `event` (appended to the
    /// log first; `None` starts the phase); sends what it asks for and moves on when it ends.
    fn step_job<F: PrimeField>(
        &mut self,
        j: &mut JobSession<F>,
        event: Option<LogEntry>,
    ) -> Result<(), PartyError> {
        let fresh = event.is_none();
        match j.phase {
            Phase::Setup => {
                if let Some(e) = event {
                    self.store
                        .append_journal(&setup_journal(&j.id), e.0, &e.1)?;
                    j.setup_log.push(e);
                }
                self.setup_step(j, fresh)
            }
            Phase::Eval => {
                let fed = event.is_some();
                if let Some(e) = event {
                    self.store.append_journal(&job_key(&j.id), e.0, &e.1)?;
                    // A live machine has absorbed every earlier entry: only the new one is
                    // kept here (the journal keeps them all for a restart). Holding every
                    // round's messages took most of a filtered job's memory.
                    if j.machine.is_some() {
                        j.eval_log.clear();
                    }
                    j.eval_log.push(e);
                }
                self.eval_step(j, fresh, fed)
            }
            Phase::Quoted | Phase::Done => Ok(()),
        }
    }

    /// The PRSS key agreement of this party, as every job runs it (same seed, same signed
    /// contributions).
    fn setup_machine<F: PrimeField>(&self) -> Result<Setup<F>, crate::mpc::round::RoundError> {
        Setup::<F>::new(
            self.me,
            self.params.t(),
            self.roster_id,
            self.verifying.clone(),
            self.signer.clone(),
            self.setup_seed(),
        )
    }

    fn setup_step<F: PrimeField>(
        &mut self,
        j: &mut JobSession<F>,
        fresh: bool,
    ) -> Result<(), PartyError> {
        let mut m = self
            .setup_machine::<F>()
            .map_err(|e| PartyError::Manifest(e.to_string()))?;
        let (send, out) = replay(&mut m, self.params.n(), &j.setup_log, fresh);
        let sid = setup_session(&j.id);
        let key = format!("jobsetup:{}", hex::encode(j.id));
        for o in send {
            self.send_out(&key, &sid, o, None)?;
        }
        match out {
            Some(Ok(SetupOutput {
                prss: Some(prss),
                excluded,
                ..
            })) => {
                j.prss = Some(Arc::new(prss));
                j.ignored = excluded;
                j.phase = Phase::Eval;
                info!(target: "btcmpc::party", job = %hex::encode(j.id), "key agreement done: evaluating");
                // The evaluation starts now, with nothing delivered to it yet.
                self.eval_step(j, true, false)
            }
            Some(Ok(_)) => self.fail_job(j, "this party was excluded at setup"),
            Some(Err(e)) => self.fail_job(j, &format!("key agreement: {e}")),
            None => {
                if let Some(r) = m.waiting() {
                    self.arm_timer(sid, r);
                }
                Ok(())
            }
        }
    }

    /// Hands the evaluation the last logged event (`fed`) or starts it: the machine lives
    /// across events, so each message is handled once and each round's local part runs once;
    /// it is re-created from the log only when the daemon has none (the start of the phase, a
    /// restart), which replays the log once.
    fn eval_step<F: PrimeField>(
        &mut self,
        j: &mut JobSession<F>,
        fresh: bool,
        fed: bool,
    ) -> Result<(), PartyError> {
        let Some(prss) = j.prss.clone() else {
            return Ok(());
        };
        let n = self.params.n();
        let (send, out) = match (j.machine.as_mut(), fed) {
            (Some(m), true) => match j.eval_log.last() {
                Some(e) => feed(m, n, e),
                None => (Vec::new(), None),
            },
            // The machine is built once per phase (and after a restart, from the journal); a
            // live one has nothing to replay.
            (Some(_), false) => (Vec::new(), None),
            _ => {
                let mut m = match EvalMachine::new_shared(
                    prss,
                    j.id,
                    j.plan.clone(),
                    j.columns.clone(),
                    self.verifying.clone(),
                    self.signer.clone(),
                    j.ignored.clone(),
                ) {
                    Ok(m) => m,
                    Err(e) => {
                        let reason = format!("evaluation: {e}");
                        return self.fail_job(j, &reason);
                    }
                };
                if self.fault(Fault::WrongProduct) {
                    m.lie_in_openings(F::ONE);
                }
                let r = replay(&mut m, n, &j.eval_log, fresh);
                j.machine = Some(m);
                j.eval_log = Vec::new();
                r
            }
        };
        let (waiting, evidence) = match j.machine.as_ref() {
            Some(m) => (m.waiting(), m.evidence().to_vec()),
            None => (None, Vec::new()),
        };
        if !evidence.is_empty() {
            let bytes = serde_json::to_vec(&evidence).expect(
                "equivocation evidence serializes: derived Serialize of signed message headers",
            );
            self.store.put_job_state(
                &format!("evidence:job-{}", hex::encode(j.id)),
                &bytes,
                false,
            )?;
        }
        let key = job_key(&j.id);
        let id = j.id;
        for o in send {
            self.send_out(&key, &id, o, None)?;
        }
        match out {
            // Withheld sums (a gate whose bit opened to 0) are already 0 here, so their
            // masked shares carry only the mask; `evaluation.gates` holds the public gate bits.
            Some(Ok(evaluation)) => self.deliver_output(j, &evaluation.values, &evaluation.gates),
            Some(Err(e)) => self.fail_job(j, &format!("evaluation: {e}")),
            None => {
                if let Some(r) = waiting {
                    self.arm_timer(id, r);
                }
                Ok(())
            }
        }
    }

    fn deliver_output<F: PrimeField>(
        &mut self,
        j: &mut JobSession<F>,
        aggregates: &[F],
        gates: &[bool],
    ) -> Result<(), PartyError> {
        let mut y = match mask_outputs(aggregates, &j.masks) {
            Ok(y) => y,
            Err(e) => return self.fail_job(j, &format!("masking: {e}")),
        };
        if self.fault(Fault::WrongOutputShare) {
            for v in y.iter_mut() {
                *v += F::ONE;
            }
        }
        let k = hashlock_key(&self.party_key, &j.id);
        let sealed = seal(&j.id, self.me, &k, &y);
        let d = Delivery {
            job_id: j.id,
            index: self.me,
            key_hash: j.record.quote.key_hash,
            ciphertext_hash: Sha256::digest(&sealed).into(),
        };
        let sig = d.sign(&self.signer);
        j.record.released = Some(gates.is_empty() || gates.iter().any(|g| *g));
        let mut gates = gates.to_vec();
        if self.fault(Fault::WrongGateBit) {
            if let Some(b) = gates.first_mut() {
                *b = !*b;
            }
        }
        let gates_signature = if gates.is_empty() {
            String::new()
        } else {
            let enc = gate_bits_encoding(&j.id, self.me.get(), &gates);
            hex::encode(sign_tagged(&self.signer, GATE_BITS_TAG, &enc).0)
        };
        let delivery = JobDelivery {
            job: j.id,
            party: self.me.get(),
            key_hash: d.key_hash,
            sealed: hex::encode(&sealed),
            signature: sig.0,
            gates,
            gates_signature,
        };
        self.crash_point(FaultStep::Deliver, true);
        j.record.delivery = Some(delivery.clone());
        j.record.state = "delivered".into();
        j.phase = Phase::Done;
        j.columns = Vec::new().into();
        j.machine = None;
        self.put_job(&j.record)?;
        self.crash_point(FaultStep::Deliver, false);
        info!(target: "btcmpc::party", job = %hex::encode(j.id), "output share sealed and delivered");
        if !self.fault(Fault::Withhold) {
            self.reply_json(j.client, MessageType::RESULT, &delivery);
        }
        Ok(())
    }

    fn fail_job<F: PrimeField>(
        &mut self,
        j: &mut JobSession<F>,
        reason: &str,
    ) -> Result<(), PartyError> {
        warn!(target: "btcmpc::party", job = %hex::encode(j.id), "job failed: {reason}");
        j.record.state = "failed".into();
        j.record.reason = Some(reason.to_string());
        j.phase = Phase::Done;
        j.columns = Vec::new().into();
        j.machine = None;
        self.put_job(&j.record)?;
        self.reply(
            j.client.unwrap_or(u64::MAX),
            MessageType::ERROR,
            format!("job failed: {reason}").into_bytes(),
        );
        Ok(())
    }

    /// Whether messages of `session` (a job's setup or evaluation) can be handled now.
    pub(super) fn job_started(&self, session: &Hash32) -> Option<bool> {
        let job = self.job_sessions.get(session)?;
        let j = self.jobs.get(job)?;
        let phase = with_job!(j, j => j.phase);
        Some(if session == job {
            matches!(phase, Phase::Eval | Phase::Done)
        } else {
            phase != Phase::Quoted
        })
    }

    /// A peer message for a job session (which has started here).
    pub(super) fn deliver_job(
        &mut self,
        from: PartyId,
        session: Hash32,
        raw: Vec<u8>,
    ) -> Result<(), PartyError> {
        self.job_event(session, LogEntry(from.get(), raw))
    }

    /// A deadline of a job's machine.
    pub(super) fn job_deadline(
        &mut self,
        session: Hash32,
        round: RoundId,
    ) -> Result<(), PartyError> {
        self.job_event(session, LogEntry(0, encode_round(round)))
    }

    /// Hands a logged event to the job's machine of `session` if that phase is the current
    /// one (a late event of a finished phase is dropped).
    fn job_event(&mut self, session: Hash32, entry: LogEntry) -> Result<(), PartyError> {
        let Some(&id) = self.job_sessions.get(&session) else {
            return Ok(());
        };
        let Some(mut job) = self.jobs.remove(&id) else {
            return Ok(());
        };
        let r = with_job!(&mut job, j => {
            let current = if session == id { Phase::Eval } else { Phase::Setup };
            if j.phase == current {
                self.step_job(j, Some(entry))
            } else {
                Ok(())
            }
        });
        self.jobs.insert(id, job);
        r?;
        // The setup may have finished: evaluation messages that waited can go in now.
        self.drain_job_early(&id)
    }

    fn drain_job_early(&mut self, session: &Hash32) -> Result<(), PartyError> {
        if self.job_started(session) != Some(true) {
            return Ok(());
        }
        let Some(early) = self.early.remove(session) else {
            return Ok(());
        };
        for (from, bytes, _) in &early {
            if let Some(b) = self.early_bytes.get_mut(from) {
                *b = b.saturating_sub(bytes.len());
            }
        }
        for (from, bytes, _) in early {
            if let Ok(m) = PeerMessage::decode(&bytes) {
                self.deliver_job(from, m.session, m.message)?;
            }
        }
        Ok(())
    }

    /// `JOB_PAID`: records the funding for the claim worker, which checks it against this
    /// party's own chain view before it reveals anything.
    pub(super) fn on_job_paid(&mut self, conn: u64, paid: JobPaid) -> Result<(), Refuse> {
        let key = self.client_key(conn)?;
        let me = self.me.get();
        // The key is released only to a service still granted: a REVOKE seen before the first
        // funding notice (on a fresh ACL reading) stops the job here. This party never claims;
        // the service's escrow comes back to it at T.
        let first_notice = self.jobs.get(&paid.job).is_some_and(|job| {
            with_job!(job, j => j.record.paid.is_none()
                && j.record.delivery.is_some()
                && j.record.client_key == hex::encode(key.0))
        });
        if first_notice {
            let access = match self.jobs.get(&paid.job) {
                Some(job) => with_job!(job, j => self.recheck_access(j)),
                None => Ok(()),
            };
            if let Err(why) = access {
                let reason = format!(
                    "{why}: this party will not release its key for this job (the escrow is refunded to the service at T)"
                );
                if let Some(job) = self.jobs.get_mut(&paid.job) {
                    let rec = with_job!(job, j => {
                        j.phase = Phase::Done;
                        j.record.state = "failed".into();
                        j.record.reason = Some(reason.clone());
                        j.record.clone()
                    });
                    self.put_job(&rec).map_err(|e| e.to_string())?;
                }
                info!(target: "btcmpc::party", job = %hex::encode(paid.job), "not claiming: {why}");
                return Err(reason);
            }
        }
        let Some(job) = self.jobs.get_mut(&paid.job) else {
            return Err(format!("no job {}", hex::encode(paid.job)));
        };
        let (rec, answer) = with_job!(job, j => {
            if j.record.client_key != hex::encode(key.0) {
                return Err("this job belongs to another service connection key".into());
            }
            if j.record.delivery.is_none() {
                return Err("this party has not delivered for this job".into());
            }
            if paid.outputs.len() > self.params.n() || paid.quotes.len() > self.params.n() {
                return Err("more escrow outputs or quotes than parties".into());
            }
            if !paid.outputs.iter().any(|o| o.party == me) {
                return Err("the funding pays no escrow output to this party".into());
            }
            if let Some(old) = &j.record.paid {
                if *old != paid {
                    return Err("this job was already paid by another funding".into());
                }
            } else {
                j.record.paid = Some(paid.clone());
                j.record.state = "paid".into();
            }
            let answer = JobPaidAnswer {
                job: j.id,
                party: me,
                state: if j.record.claim_txid.is_some() { "claimed".into() } else { "claiming".into() },
                claim_txid: j.record.claim_txid.clone(),
                reason: None,
            };
            (j.record.clone(), answer)
        });
        self.put_job(&rec).map_err(|e| e.to_string())?;
        self.crash_point(FaultStep::Paid, false);
        self.reply_json(Some(conn), MessageType::JOB_PAID, &answer);
        Ok(())
    }

    /// The claim worker's report.
    pub(super) fn on_claimed(&mut self, job: Hash32, result: Result<String, String>) {
        let Some(j) = self.jobs.get_mut(&job) else {
            return;
        };
        let rec = with_job!(j, j => {
            match &result {
                Ok(txid) => {
                    j.record.claim_txid = Some(txid.clone());
                    j.record.state = "claimed".into();
                }
                Err(reason) => {
                    j.record.state = "failed".into();
                    j.record.reason = Some(reason.clone());
                }
            }
            j.record.clone()
        });
        if let Err(e) = self.put_job(&rec) {
            warn!(target: "btcmpc::party", "cannot record the claim: {e}");
        }
    }

    /// Jobs found in the store after a restart: rebuilt, their machines replayed.
    pub(super) fn resume_jobs(&mut self) -> Result<(), PartyError> {
        for key in self.store.jobs_with_prefix("job:")? {
            let Some(bytes) = self.store.job_state(&key)? else {
                continue;
            };
            let Ok(rec) = serde_json::from_slice::<JobRecord>(&bytes) else {
                warn!(target: "btcmpc::party", %key, "unreadable job record; not resumed");
                continue;
            };
            let id = rec.quote.job;
            let field = self
                .store
                .datasets()?
                .into_iter()
                .find(|d| d.id == rec.dataset)
                .and_then(|d| serde_json::from_slice::<SessionRecord>(&d.meta).ok())
                .map(|r| r.begin.field);
            let Some(field) = field else { continue };
            let job = match field.as_str() {
                Secp256k1Scalar::NAME => self.resume_job::<Secp256k1Scalar>(rec).map(Job::S),
                Mersenne127::NAME => self.resume_job::<Mersenne127>(rec).map(Job::M),
                _ => continue,
            };
            match job {
                Ok(job) => {
                    self.job_sessions.insert(setup_session(&id), id);
                    self.job_sessions.insert(id, id);
                    self.jobs.insert(id, job);
                    let mut job = self.jobs.remove(&id).expect("inserted above");
                    let r = with_job!(&mut job, j => if matches!(j.phase, Phase::Setup | Phase::Eval) {
                        self.step_job(j, None)
                    } else {
                        Ok(())
                    });
                    self.jobs.insert(id, job);
                    r?;
                }
                Err(e) => warn!(target: "btcmpc::party", %key, "cannot resume the job: {e}"),
            }
        }
        Ok(())
    }

    fn resume_job<F: PrimeField>(&mut self, rec: JobRecord) -> Result<JobSession<F>, Refuse> {
        let schema = self
            .store
            .datasets()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|d| d.id == rec.dataset)
            .and_then(|d| serde_json::from_slice::<SessionRecord>(&d.meta).ok())
            .map(|r| r.begin.schema)
            .ok_or("the dataset is gone")?;
        // The plan the job was quoted with (the quote names the leakage rule).
        let plan = plan_job::<F>(
            &rec.request.query,
            &schema,
            rec.quote.min_rows,
            &rec.quote.earlier,
        )?;
        let id = rec.quote.job;
        let mut j = JobSession::new(id, rec, plan, None);
        let journal = |key: String| -> Result<Vec<LogEntry>, Refuse> {
            Ok(self
                .store
                .journal(&key)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|(from, bytes)| LogEntry(from, bytes))
                .collect())
        };
        j.setup_log = journal(setup_journal(&id))?;
        j.eval_log = journal(job_key(&id))?;
        j.phase = match j.record.state.as_str() {
            "quoted" => Phase::Quoted,
            "running" => Phase::Setup,
            _ => Phase::Done,
        };
        if j.phase == Phase::Setup {
            let mask_id = j.record.mask_session.clone().unwrap_or_default();
            j.masks = self
                .store
                .read_column::<F>(&mask_id, 0)
                .map_err(|e| e.to_string())?;
            self.load_columns(&mut j)?;
            // The setup log replays to its output (if it finished), then the evaluation's.
            let mut m = self.setup_machine::<F>().map_err(|e| e.to_string())?;
            let (_, out) = replay(&mut m, self.params.n(), &j.setup_log, true);
            if let Some(Ok(SetupOutput {
                prss: Some(prss),
                excluded,
                ..
            })) = out
            {
                j.prss = Some(Arc::new(prss));
                j.ignored = excluded;
                j.phase = Phase::Eval;
            }
        }
        Ok(j)
    }
}

/// Blocks a job needs at least between its quote and `T`, besides the claim margin and the
/// funding's confirmations: to compute, deliver and fund.
pub const MIN_JOB_BLOCKS: u32 = 3;

impl<F: PrimeField> JobSession<F> {
    fn new(id: Hash32, record: JobRecord, plan: Plan, client: Option<u64>) -> Self {
        JobSession {
            id,
            record,
            client,
            plan: Arc::new(plan),
            columns: Vec::new().into(),
            masks: Vec::new(),
            prss: None,
            ignored: BTreeSet::new(),
            setup_log: Vec::new(),
            eval_log: Vec::new(),
            machine: None,
            phase: Phase::Quoted,
        }
    }
}

/// Hands one logged event (a message, or a deadline from sender 0) to a live machine: the
/// messages it sends and its output, if the event produced one (as [`replay`] for one entry).
#[allow(clippy::type_complexity)]
fn feed<F: PrimeField, M: Machine<F>>(
    m: &mut M,
    n: usize,
    entry: &LogEntry,
) -> (
    Vec<Outgoing<F>>,
    Option<Result<M::Output, crate::mpc::round::RoundError>>,
) {
    let LogEntry(from, raw) = entry;
    let r = if *from == 0 {
        match decode_round(raw) {
            Some(round) => m.deadline(round),
            None => return (Vec::new(), None),
        }
    } else {
        let Ok(p) = PartyId::new(*from as usize, n) else {
            return (Vec::new(), None);
        };
        let Ok(msg) = decode_message::<F>(raw) else {
            return (Vec::new(), None);
        };
        m.handle(p, msg)
    };
    match r {
        Ok(s) => (s.send, s.output.map(Ok)),
        Err(e) if e.is_refusal() => (Vec::new(), None),
        Err(e) => (Vec::new(), Some(Err(e))),
    }
}

/// Rebuilds a machine's state from its log: starts it, hands it every logged message and
/// deadline in order. Returns the messages of the last event (of the start when `fresh` and
/// the log is empty; the earlier ones went out when they happened) and the output, if any
/// event produced one.
#[allow(clippy::type_complexity)]
fn replay<F: PrimeField, M: Machine<F>>(
    m: &mut M,
    n: usize,
    log: &[LogEntry],
    fresh: bool,
) -> (
    Vec<Outgoing<F>>,
    Option<Result<M::Output, crate::mpc::round::RoundError>>,
) {
    let mut last: Vec<Outgoing<F>> = Vec::new();
    let mut out = None;
    let mut absorb = |r: Result<Step<F, M::Output>, crate::mpc::round::RoundError>,
                      last: &mut Vec<Outgoing<F>>| match r {
        Ok(s) => {
            *last = s.send;
            if let Some(o) = s.output {
                out = Some(Ok(o));
            }
        }
        Err(e) if e.is_refusal() => last.clear(),
        Err(e) => {
            last.clear();
            if out.is_none() {
                out = Some(Err(e));
            }
        }
    };
    let r = m.start();
    absorb(r, &mut last);
    for LogEntry(from, raw) in log {
        let r = if *from == 0 {
            match decode_round(raw) {
                Some(round) => m.deadline(round),
                None => continue,
            }
        } else {
            let Ok(p) = PartyId::new(*from as usize, n) else {
                continue;
            };
            let Ok(msg) = decode_message::<F>(raw) else {
                continue;
            };
            m.handle(p, msg)
        };
        absorb(r, &mut last);
    }
    if !fresh && log.is_empty() {
        last.clear();
    }
    (last, out)
}
