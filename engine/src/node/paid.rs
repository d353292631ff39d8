//! A service's paid query from request to result (PROTOCOL.md, "Job flow"), as a record the
//! caller persists after every step ([`ServiceJob`]) and the steps that move it on.
//!
//! ```text
//! ServiceJob::new      plan the query, draw the output masks, sign the request  (nothing sent)
//! ServiceJob::quote    every party's signed quote                               (async)
//! ServiceJob::compute  deal and check the masks, run the job, collect deliveries (async)
//!   = deal_masks       deal the output masks; the parties check the dealing      (async)
//!   + run              key agreement, evaluation, sealed deliveries              (async)
//! ServiceJob::fund     one transaction paying each delivering party's escrow    (wallet)
//! ServiceJob::notify   tell the parties where their escrow outputs are          (async)
//! ServiceJob::poll     read each claim's revealed k_i from the chain            (chain)
//! ServiceJob::open     open c_i, decode with the culprit list, unmask, finish   (pure)
//! ServiceJob::refund   after T, take back every unclaimed escrow output         (wallet)
//! ```
//!
//! The caller saves the record before each step acts (the masks before anything is sent, the
//! escrows before the funding is broadcast), so a service killed at any step resumes from its
//! record: `btcmpc service settle` polls, opens and refunds every open job.

use std::time::Duration;

use bitcoin::secp256k1::PublicKey;
use bitcoin::{Amount, Network};
use btcmpc_contracts::ContractFile;
use btcmpc_wallet::{contract_status, ChainClient, FeeChoice, RoleWallet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::job::{
    escrow_contract, plan_job, JobDelivery, JobPaid, JobPaidAnswer, JobRequest, PaidOutput, Quote,
};
use super::judge::{
    bond_file, remember_bond, slash_terms, EvidenceRule, JobEvidence, JudgeAnswer, JudgeRequest,
    EVIDENCE_VERSION,
};
use super::manifest::Manifest;
use super::owner::StoreOptions;
use super::service::{majority_gates, open_result, JobResult, Service};
use super::transport::ChannelConfig;
use super::wire::{field_from_hex, field_to_hex};
use crate::mpc::csv::Schema;
use crate::mpc::dealing::Hash32;
use crate::mpc::echo::Equivocation;
use crate::mpc::evidence::{DeliveryItem, Sig, WrongOutputShare};
use crate::mpc::field::{Mersenne127, PrimeField, Secp256k1Scalar};
use crate::mpc::query::{parse, plan::plan_text, OutputValue, Plan};
use crate::mpc::round::PartyId;
use crate::mpc::shamir::Params;

/// How long a service asks again parties that are not ready yet (they have not read the
/// dataset's ACL since they started).
pub const QUOTE_RETRY: Duration = Duration::from_secs(20);

/// Version of the [`ServiceJob`] record.
pub const SERVICE_JOB_VERSION: u32 = 1;

/// A claim seen on chain: party `party` revealed `key` in `txid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSeen {
    /// The claiming party.
    pub party: u32,
    /// The claim transaction.
    pub txid: String,
    /// `k_i`, hex.
    pub key: String,
}

/// One finished output: its name and its exact decimal value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultValue {
    /// The output's name (the aggregate as written).
    pub name: String,
    /// The value, decimal text; `withheld (fewer than N rows)` for a withheld cell.
    pub value: String,
    /// Whether the leakage rule withheld the value (absent when false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withheld: bool,
}

/// Everything a service knows of one job; saved by the caller after every step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceJob {
    /// [`SERVICE_JOB_VERSION`].
    pub version: u32,
    /// The signed request.
    pub request: JobRequest,
    /// The dataset's field.
    pub field: String,
    /// The dataset's public schema (from its card).
    pub schema: Schema,
    /// The chain.
    pub network: Network,
    /// The committee's manifest ([`Manifest::to_value`]), so the job can be settled from its
    /// record alone.
    pub manifest: serde_json::Value,
    /// The output masks, hex, one per opened sum: drawn before anything is sent.
    pub masks: Vec<String>,
    /// Quotes taken, in party order.
    #[serde(default)]
    pub quotes: Vec<Quote>,
    /// Parties that did not quote, with why.
    #[serde(default)]
    pub refused: Vec<(u32, String)>,
    /// The store session that dealt the masks, hex.
    #[serde(default)]
    pub mask_session: Option<String>,
    /// Deliveries received (checked).
    #[serde(default)]
    pub deliveries: Vec<JobDelivery>,
    /// Parties that did not deliver, with why.
    #[serde(default)]
    pub silent: Vec<(u32, String)>,
    /// The funding (set before it is broadcast: the outputs' indices after).
    #[serde(default)]
    pub funding: Option<JobPaid>,
    /// Claims seen.
    #[serde(default)]
    pub claims: Vec<ClaimSeen>,
    /// The result, once opened.
    #[serde(default)]
    pub result: Option<Vec<ResultValue>>,
    /// Parties whose output share was wrong.
    #[serde(default)]
    pub culprits: Vec<u32>,
    /// Refunds broadcast: `(party, txid)`.
    #[serde(default)]
    pub refunds: Vec<(u32, String)>,
    /// Slashes of culprits' bonds broadcast, paying this service.
    #[serde(default)]
    pub slashes: Vec<SlashDone>,
    /// Why a culprit is not slashed yet: `(party, reason)`, the latest attempt's.
    #[serde(default)]
    pub unslashed: Vec<(u32, String)>,
    /// Equivocations the parties reported from the check of this job's masks.
    #[serde(default)]
    pub equivocations: Vec<Equivocation>,
    /// The receipts root of the mask check (hex): it ties the check's signed messages to
    /// this job for the judges.
    #[serde(default)]
    pub mask_receipts_root: Option<String>,
    /// The leakage rule's `min_rows` every quoting party plans the query under (absent in
    /// records of version-1 jobs, planned without gates).
    #[serde(default)]
    pub min_rows: Option<u64>,
    /// The earlier queries every quoting party named (the leakage rule's `earlier`).
    #[serde(default)]
    pub earlier: Vec<String>,
    /// The gate bits `2t + 1` delivering parties agree on, one per gate of the plan.
    #[serde(default)]
    pub gates: Vec<bool>,
    /// Parties that delivered other gate bits than `2t + 1` others, with what they delivered
    /// (they are not paid).
    #[serde(default)]
    pub gate_dissent: Vec<(u32, String)>,
}

/// A slash of a culprit's bond, paying this service (PROTOCOL.md, "Evidence and penalties").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlashDone {
    /// The convicted party.
    pub party: u32,
    /// The slash transaction.
    pub txid: String,
    /// What it pays this service, sats.
    pub sats: u64,
    /// The judges whose signatures it carries.
    pub judges: Vec<u32>,
}

macro_rules! in_field {
    ($field:expr, $F:ident => $e:expr) => {
        match $field {
            Secp256k1Scalar::NAME => {
                type $F = Secp256k1Scalar;
                $e
            }
            Mersenne127::NAME => {
                type $F = Mersenne127;
                $e
            }
            other => Err(format!("unknown field {other:?}")),
        }
    };
}

impl ServiceJob {
    /// Plans `query` over the dataset (so a query the parties would refuse for its ranges is
    /// refused here first), draws one random mask per opened sum and signs the request.
    ///
    /// # Errors
    /// The query's parse or plan error; an unknown field.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        service: &Service,
        manifest: &Manifest,
        dataset_id: &str,
        field: &str,
        schema: Schema,
        query: &str,
        fee_sat: u64,
        timeout: u32,
        network: Network,
        payout: &str,
    ) -> Result<ServiceJob, String> {
        let masks = in_field!(field, F => {
            let plan = plan_for::<F>(query, &schema)?;
            let mut rng = rand::thread_rng();
            Ok::<_, String>(
                (0..plan.opened.len())
                    .map(|_| field_to_hex(&F::random(&mut rng)))
                    .collect::<Vec<_>>(),
            )
        })?;
        let request = service.job_request(
            manifest.roster.id(),
            dataset_id,
            query,
            fee_sat,
            timeout,
            payout,
        );
        request.verify()?;
        request.payout_script(network)?;
        Ok(ServiceJob {
            version: SERVICE_JOB_VERSION,
            request,
            field: field.to_string(),
            schema,
            network,
            manifest: manifest.to_value(),
            masks,
            quotes: Vec::new(),
            refused: Vec::new(),
            mask_session: None,
            deliveries: Vec::new(),
            silent: Vec::new(),
            funding: None,
            claims: Vec::new(),
            result: None,
            culprits: Vec::new(),
            refunds: Vec::new(),
            slashes: Vec::new(),
            unslashed: Vec::new(),
            equivocations: Vec::new(),
            mask_receipts_root: None,
            min_rows: None,
            earlier: Vec::new(),
            gates: Vec::new(),
            gate_dissent: Vec::new(),
        })
    }

    /// The result of a query that opens no secret sum (for example `count()` over a dataset
    /// without gaps: the row count is public, in the dataset card): there is nothing for the
    /// parties to compute and nothing to pay. `None` when the query needs the parties.
    ///
    /// # Errors
    /// A query that does not plan or finish.
    pub fn public_result(&self) -> Result<Option<Vec<ResultValue>>, String> {
        if !self.masks.is_empty() {
            return Ok(None);
        }
        let values = in_field!(self.field.as_str(), F => {
            let plan = plan_for::<F>(&self.request.query, &self.schema)?;
            plan.finish(&[]).map_err(|e| e.to_string())
        })?;
        Ok(Some(
            values
                .iter()
                .map(|o| ResultValue {
                    name: o.name.clone(),
                    value: o.decimal.clone(),
                    withheld: o.withheld,
                })
                .collect(),
        ))
    }

    /// Whether the query multiplies secret values (degree 2: `var`, `cov`, products), whose
    /// correctness version 1 does not guarantee against a corrupt party (PROTOCOL.md, "Trust":
    /// the additive attack on a degree reduction goes undetected).
    ///
    /// # Errors
    /// A query that does not plan.
    pub fn uses_products(&self) -> Result<bool, String> {
        query_uses_products(&self.field, &self.schema, &self.request.query)
    }

    /// The committee's manifest, from the record.
    ///
    /// # Errors
    /// A record whose manifest does not parse.
    pub fn committee(&self) -> Result<Manifest, String> {
        Manifest::from_value(self.manifest.clone()).map_err(|e| e.to_string())
    }

    /// The job id, hex.
    pub fn id_hex(&self) -> String {
        hex::encode(self.request.id())
    }

    /// Asks every party for its quote. In this version every party must quote (the masks are
    /// dealt to the whole committee).
    ///
    /// # Errors
    /// The refusals, one per party, in one line.
    pub async fn quote(
        &mut self,
        service: &Service,
        manifest: &Manifest,
        config: ChannelConfig,
        timeout: Duration,
    ) -> Result<(), String> {
        // A party that has not read the dataset's ACL yet (it just started) says "ask again";
        // a party that has not yet seen the end of this service's previous query names fewer
        // earlier queries than the others. The same request is then sent again (a party that
        // quoted answers with the same quote, made again if its earlier queries changed since),
        // for at most QUOTE_RETRY.
        let start = std::time::Instant::now();
        let answers = loop {
            let answers = service
                .quotes(manifest, &self.request, config, timeout)
                .await;
            let transient = answers
                .iter()
                .any(|(_, a)| a.as_ref().is_err_and(|e| e.contains("ask again")))
                || only_earlier_differ(&answers);
            if !transient || start.elapsed() >= QUOTE_RETRY {
                break answers;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        self.quotes.clear();
        self.refused.clear();
        for (p, a) in answers {
            match a {
                Ok(q) => self.quotes.push(q),
                Err(e) => self.refused.push((p, e)),
            }
        }
        if !self.refused.is_empty() {
            return Err(by_reason(&self.refused));
        }
        self.adopt_rule()
    }

    /// Takes the leakage rule the quotes name (every quoting party must name the same
    /// `min_rows` and earlier queries, or the parties would evaluate different plans) and
    /// plans the query under it, as the parties do.
    ///
    /// # Errors
    /// Quotes that disagree (naming each party's rule), a bound a quote breaks, a query that
    /// does not plan under the rule.
    pub fn adopt_rule(&mut self) -> Result<(), String> {
        let (min_rows, earlier) = common_rule(&self.quotes)?;
        self.min_rows = Some(min_rows);
        self.earlier = earlier;
        let opened = in_field!(self.field.as_str(), F => {
            self.plan::<F>().map(|p| p.opened.len())
        })?;
        if opened != self.masks.len() {
            return Err(format!(
                "the plan under the leakage rule opens {opened} sums, {} masks were drawn",
                self.masks.len()
            ));
        }
        Ok(())
    }

    /// The plan the parties evaluate: under the quoted leakage rule ([`plan_job`]), or without
    /// gates for a record from before the rule was quoted.
    fn plan<F: PrimeField>(&self) -> Result<Plan, String> {
        match self.min_rows {
            Some(m) => plan_job::<F>(&self.request.query, &self.schema, m, &self.earlier),
            None => plan_for::<F>(&self.request.query, &self.schema),
        }
    }

    /// Withdraws the job at every party that quoted it (it was never run): they stop holding
    /// its place among their open jobs.
    ///
    /// # Errors
    /// The parties that did not cancel, with their reasons (one line).
    pub async fn cancel(
        &mut self,
        service: &Service,
        manifest: &Manifest,
        config: ChannelConfig,
        timeout: Duration,
    ) -> Result<(), String> {
        let parties: Vec<u32> = self.quotes.iter().map(|q| q.party).collect();
        let answers = service
            .cancel(manifest, self.request.id(), &parties, config, timeout)
            .await;
        let failed: Vec<(u32, String)> = answers
            .into_iter()
            .filter_map(|(p, a)| a.err().map(|e| (p, e)))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(by_reason(&failed))
        }
    }

    /// Deals the masks (the parties check the dealing), runs the job and keeps every checked
    /// delivery. Needs `2t + 1` deliveries to go on (PROTOCOL.md, step 5).
    ///
    /// # Errors
    /// The masks' check failing, or too few deliveries (naming the silent parties).
    pub async fn compute(
        &mut self,
        service: &Service,
        manifest: &Manifest,
        options: &StoreOptions,
        timeout: Duration,
    ) -> Result<(), String> {
        self.deal_masks(service, manifest, options).await?;
        self.run(service, manifest, options, timeout).await
    }

    /// The first half of [`ServiceJob::compute`]: deals the output masks to the committee
    /// and waits for the parties' check of the dealing; a job whose masks were dealt already
    /// (its record names the session) is left as it is.
    ///
    /// # Errors
    /// The masks' check failing.
    pub async fn deal_masks(
        &mut self,
        service: &Service,
        manifest: &Manifest,
        options: &StoreOptions,
    ) -> Result<(), String> {
        if self.mask_session.is_some() {
            return Ok(());
        }
        let job = self.request.id();
        let report = in_field!(self.field.as_str(), F => {
            let masks = self.masks_in::<F>()?;
            service
                .deal_masks::<F>(manifest, &job, &masks, options)
                .await
                .map_err(|e| format!("the parties' check of the masks: {e}"))
        })?;
        self.mask_session = Some(report.session.clone());
        self.mask_receipts_root = Some(hex::encode(report.receipts_root));
        self.equivocations = report.equivocations.clone();
        Ok(())
    }

    /// The second half of [`ServiceJob::compute`], after [`ServiceJob::deal_masks`]: runs the
    /// job (key agreement, evaluation, sealed deliveries) and keeps every checked delivery.
    /// Needs `2t + 1` deliveries to go on (PROTOCOL.md, step 5).
    ///
    /// # Errors
    /// Masks not dealt yet, or too few deliveries (naming the silent parties).
    pub async fn run(
        &mut self,
        service: &Service,
        manifest: &Manifest,
        options: &StoreOptions,
        timeout: Duration,
    ) -> Result<(), String> {
        let session = hex32(
            self.mask_session
                .as_deref()
                .ok_or("the output masks are not dealt yet")?,
        )?;
        let answers = service
            .run(manifest, &self.quotes, session, options.channel, timeout)
            .await;
        self.deliveries.clear();
        self.silent.clear();
        self.gate_dissent.clear();
        for (p, a) in answers {
            match a {
                Ok(d) => self.deliveries.push(d),
                Err(e) => self.silent.push((p, e)),
            }
        }
        let t = manifest.roster.params.t;
        // The gate bits: those 2t + 1 deliveries agree on; a party delivering others is named
        // and not paid.
        let gates = in_field!(self.field.as_str(), F => self.plan::<F>().map(|p| p.gates.len()))?;
        let delivered: Vec<(u32, &[bool])> = self
            .deliveries
            .iter()
            .map(|d| (d.party, &d.gates[..]))
            .collect();
        if delivered.len() > 2 * t {
            let (bits, dissent) = majority_gates(gates, t, &delivered)?;
            self.gates = bits;
            self.deliveries
                .retain(|d| !dissent.iter().any(|(p, _)| *p == d.party));
            self.silent.extend(dissent.iter().cloned());
            self.gate_dissent = dissent;
        }
        if self.deliveries.len() < 2 * t + 1 {
            return Err(format!(
                "{} deliveries, {} needed to pay: {}",
                self.deliveries.len(),
                2 * t + 1,
                by_reason(&self.silent)
            ));
        }
        Ok(())
    }

    /// The escrow contract of every delivering party, rebuilt from its quote.
    ///
    /// # Errors
    /// A bad key in the request or a roster without the party.
    pub fn escrows(&self, manifest: &Manifest) -> Result<Vec<(u32, ContractFile)>, String> {
        let service: PublicKey = self
            .request
            .service
            .parse()
            .map_err(|_| "bad service key".to_string())?;
        let mut out = Vec::new();
        for d in &self.deliveries {
            let q = self
                .quotes
                .iter()
                .find(|q| q.party == d.party)
                .ok_or("a delivery without a quote")?;
            let card = manifest
                .roster
                .cards
                .get(d.party as usize - 1)
                .ok_or("a party outside the roster")?;
            out.push((
                d.party,
                escrow_contract(
                    self.network,
                    service,
                    card.party_key,
                    &q.key_hash,
                    q.timeout,
                )?,
            ));
        }
        Ok(out)
    }

    /// Funds one transaction paying each delivering party its quoted fee to its escrow
    /// output (PROTOCOL.md, step 5). Call it once: a second call would pay again (the record
    /// says whether it ran).
    ///
    /// # Errors
    /// Funds, fee and broadcast errors, in one line.
    pub fn fund(
        &mut self,
        manifest: &Manifest,
        wallet: &mut RoleWallet,
        chain: &ChainClient,
        fee: FeeChoice,
    ) -> Result<(), String> {
        self.fund_with_values(manifest, wallet, chain, fee, |_, q| q.escrow_sat())
    }

    /// [`ServiceJob::fund`] with each escrow output's value chosen by `value(party, quote)`,
    /// sats. Anything below [`Quote::escrow_sat`] is refused by that party: it never claims,
    /// and the output is refunded after T (tests use this to show it).
    ///
    /// # Errors
    /// As [`ServiceJob::fund`].
    pub fn fund_with_values(
        &mut self,
        manifest: &Manifest,
        wallet: &mut RoleWallet,
        chain: &ChainClient,
        fee: FeeChoice,
        value: impl Fn(u32, &Quote) -> u64,
    ) -> Result<(), String> {
        if self.funding.is_some() {
            return Err("this job is already funded".into());
        }
        let escrows = self.escrows(manifest)?;
        let id8 = &self.id_hex()[..16];
        // Each escrow output carries the quoted fee plus the party's claim fee (PROTOCOL.md,
        // step 5), so the party is paid its fee net.
        let value = |p: u32| -> Result<u64, String> {
            self.quotes
                .iter()
                .find(|q| q.party == p)
                .map(|q| value(p, q))
                .ok_or_else(|| format!("no quote of party {p}"))
        };
        let items: Vec<(String, String, bitcoin::ScriptBuf, Amount)> = escrows
            .iter()
            .map(|(p, f)| {
                Ok((
                    format!("job-{id8}-party-{p}"),
                    f.to_json(),
                    f.compiled().script_pubkey().clone(),
                    Amount::from_sat(value(*p)?),
                ))
            })
            .collect::<Result<_, String>>()?;
        let outpoints = wallet
            .fund_contracts(chain, &items, fee)
            .map_err(|e| e.to_string())?;
        let txid = outpoints
            .first()
            .map(|o| o.txid.to_string())
            .ok_or("the job has no escrow output to fund")?;
        self.funding = Some(JobPaid {
            job: self.request.id(),
            funding_txid: txid,
            outputs: escrows
                .iter()
                .zip(&outpoints)
                .zip(&items)
                .map(|(((p, _), o), item)| PaidOutput {
                    party: *p,
                    vout: o.vout,
                    sats: item.3.to_sat(),
                })
                .collect(),
            quotes: self
                .quotes
                .iter()
                .filter(|q| escrows.iter().any(|(p, _)| *p == q.party))
                .cloned()
                .collect(),
        });
        Ok(())
    }

    /// After a crash between the funding's broadcast and the record's save: finds the funding
    /// of this job's escrow outputs on chain (or among this wallet's own kept transactions)
    /// and records it. Every delivering party's escrow script is unique to this job (its
    /// `H_i`), so an output paying it in a transaction paying every one of them is ours.
    /// Returns whether a funding was recovered.
    ///
    /// # Errors
    /// Network and wallet errors.
    pub fn recover_funding(
        &mut self,
        manifest: &Manifest,
        wallet: &RoleWallet,
        chain: &ChainClient,
    ) -> Result<bool, String> {
        if self.funding.is_some() || self.deliveries.is_empty() {
            return Ok(false);
        }
        let escrows = self.escrows(manifest)?;
        let mut found: Vec<(u32, bitcoin::OutPoint, u64)> = Vec::new();
        for (party, file) in &escrows {
            let status = wallet
                .contract_status(chain, file)
                .map_err(|e| e.to_string())?;
            match status
                .outputs
                .iter()
                .find(|o| o.value.to_sat() >= self.request.fee_sat)
            {
                Some(o) => found.push((*party, o.outpoint, o.value.to_sat())),
                None => return Ok(false),
            }
        }
        let txid = found[0].1.txid;
        if found.iter().any(|(_, o, _)| o.txid != txid) {
            return Err("this job's escrow outputs are paid by different transactions".into());
        }
        self.funding = Some(JobPaid {
            job: self.request.id(),
            funding_txid: txid.to_string(),
            outputs: found
                .iter()
                .map(|(p, o, sats)| PaidOutput {
                    party: *p,
                    vout: o.vout,
                    sats: *sats,
                })
                .collect(),
            quotes: self
                .quotes
                .iter()
                .filter(|q| escrows.iter().any(|(p, _)| *p == q.party))
                .cloned()
                .collect(),
        });
        Ok(true)
    }

    /// Paid parties whose claim is not seen yet while a claim is still allowed
    /// (`tip + claim_margin <= T`): the ones to tell (again) where their escrow output is.
    pub fn to_notify(&self, tip: u32) -> Vec<u32> {
        let rules = btcmpc_wallet::ClaimRules::for_network(self.network);
        if tip.saturating_add(rules.margin) > self.request.timeout {
            return Vec::new();
        }
        self.unclaimed()
    }

    /// Tells every paid party where its escrow output is; one answer per party.
    pub async fn notify(
        &self,
        service: &Service,
        manifest: &Manifest,
        config: ChannelConfig,
        timeout: Duration,
    ) -> Vec<(u32, Result<JobPaidAnswer, String>)> {
        match &self.funding {
            Some(paid) => service.paid(manifest, paid, config, timeout).await,
            None => Vec::new(),
        }
    }

    /// Reads the chain for claims of the escrow outputs: each claim's witness reveals `k_i`
    /// (checked against `H_i`). Returns how many claims are known.
    ///
    /// # Errors
    /// Network errors.
    pub fn poll(&mut self, manifest: &Manifest, chain: &ChainClient) -> Result<usize, String> {
        let Some(paid) = self.funding.clone() else {
            return Ok(0);
        };
        let txid: bitcoin::Txid = paid
            .funding_txid
            .parse()
            .map_err(|_| "bad funding txid".to_string())?;
        for (party, file) in self.escrows(manifest)? {
            if self.claims.iter().any(|c| c.party == party) {
                continue;
            }
            let Some(out) = paid.outputs.iter().find(|o| o.party == party) else {
                continue;
            };
            let outpoint = bitcoin::OutPoint {
                txid,
                vout: out.vout,
            };
            let status = contract_status(chain, file.compiled(), Some(outpoint))
                .map_err(|e| e.to_string())?;
            let Some(spend) = status
                .outputs
                .iter()
                .find(|o| o.outpoint == outpoint)
                .and_then(|o| o.spend.as_ref())
            else {
                continue;
            };
            if let Some(k) = spend.preimage {
                let h: [u8; 32] = Sha256::digest(k).into();
                let quoted = self.quotes.iter().find(|q| q.party == party);
                if quoted.is_some_and(|q| q.key_hash == h) {
                    self.claims.push(ClaimSeen {
                        party,
                        txid: spend.txid.to_string(),
                        key: hex::encode(k),
                    });
                }
            }
        }
        Ok(self.claims.len())
    }

    /// Opens every claimed delivery, decodes (naming wrong shares), removes the masks and
    /// finishes the plan.
    ///
    /// # Errors
    /// Too few claims, inconsistent shares, a plan that does not finish.
    pub fn open(&mut self, manifest: &Manifest) -> Result<Vec<ResultValue>, String> {
        let params = Params::new(manifest.roster.n(), manifest.roster.params.t)
            .map_err(|e| e.to_string())?;
        let job = self.request.id();
        let mut claimed = Vec::new();
        for c in &self.claims {
            let Some(d) = self.deliveries.iter().find(|d| d.party == c.party) else {
                continue;
            };
            let sealed = hex::decode(&d.sealed).map_err(|_| "a sealed share is not hex")?;
            claimed.push((c.party, sealed, hex32(&c.key)?));
        }
        let opened: JobResult = in_field!(self.field.as_str(), F => {
            let plan = self.plan::<F>()?;
            let masks = self.masks_in::<F>()?;
            open_result::<F>(params, &plan, &masks, &self.gates, &job, &claimed)
        })?;
        let result: Vec<ResultValue> = opened
            .result
            .iter()
            .map(|o: &OutputValue| ResultValue {
                name: o.name.clone(),
                value: o.decimal.clone(),
                withheld: o.withheld,
            })
            .collect();
        self.result = Some(result.clone());
        self.culprits = opened.culprits.iter().map(|p| p.get()).collect();
        Ok(result)
    }

    /// Parties paid whose claim is not seen.
    pub fn unclaimed(&self) -> Vec<u32> {
        self.funding
            .as_ref()
            .map(|p| {
                p.outputs
                    .iter()
                    .map(|o| o.party)
                    .filter(|p| !self.claims.iter().any(|c| c.party == *p))
                    .filter(|p| !self.refunds.iter().any(|r| r.0 == *p))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Once the tip reaches `T`, refunds every escrow output still unclaimed to the wallet.
    /// Returns the refunds broadcast now.
    ///
    /// # Errors
    /// Network and wallet errors.
    pub fn refund(
        &mut self,
        manifest: &Manifest,
        wallet: &mut RoleWallet,
        chain: &ChainClient,
        fee: FeeChoice,
    ) -> Result<Vec<(u32, String)>, String> {
        let (tip, _) = chain.tip().map_err(|e| e.to_string())?;
        if tip < self.request.timeout {
            return Ok(Vec::new());
        }
        self.poll(manifest, chain)?;
        let mut done = Vec::new();
        for (party, file) in self.escrows(manifest)? {
            if !self.unclaimed().contains(&party) {
                continue;
            }
            let txid = wallet
                .refund(chain, &file, fee)
                .map_err(|e| format!("refund of party {party}'s escrow: {e}"))?;
            self.refunds.push((party, txid.to_string()));
            done.push((party, txid.to_string()));
        }
        Ok(done)
    }

    /// Whether nothing is left to do for this job at tip `tip`: it stopped before payment, or
    /// every escrow output is claimed or refunded, its result is open (or no party claimed, so
    /// no key and no result can ever come), and every culprit is slashed (or the dispute
    /// window, `dispute_window` blocks after T, is over).
    pub fn is_settled(&self, tip: u32, dispute_window: u32) -> bool {
        if self.funding.is_none() {
            return true;
        }
        let window_over = tip > self.request.timeout.saturating_add(dispute_window);
        (self.result.is_some() || self.claims.is_empty())
            && self.unclaimed().is_empty()
            && (self.unpunished().is_empty() || window_over)
    }

    /// Parties that signed two conflicting messages in this job.
    pub fn equivocators(&self) -> Vec<u32> {
        self.equivocations
            .iter()
            .map(Equivocation::sender)
            .collect()
    }

    /// Every party blamed (wrong output share or equivocation), ascending.
    pub fn blamed(&self) -> Vec<u32> {
        let mut b: Vec<u32> = self
            .culprits
            .iter()
            .copied()
            .chain(self.equivocators())
            .collect();
        b.sort_unstable();
        b.dedup();
        b
    }

    /// Blamed parties whose bond is not slashed yet.
    pub fn unpunished(&self) -> Vec<u32> {
        self.blamed()
            .into_iter()
            .filter(|c| !self.slashes.iter().any(|s| s.party == *c))
            .collect()
    }

    /// The evidence against `culprit` under the wrong-output-share rule: its signed delivery
    /// and the key its claim revealed, and the same for every other claimed party that is not
    /// itself a culprit (at least `2t + 1` are needed). Reveals only masked output shares and
    /// the query.
    ///
    /// # Errors
    /// A culprit that did not claim, too few other claims, a record that does not parse.
    pub fn evidence(&self, manifest: &Manifest, culprit: u32) -> Result<JobEvidence, String> {
        if let Some(e) = self.equivocations.iter().find(|e| e.sender() == culprit) {
            return Ok(JobEvidence {
                version: EVIDENCE_VERSION,
                request: self.request.clone(),
                rule: EvidenceRule::Equivocation {
                    equivocation: e.clone(),
                    mask_receipts_root: match &self.mask_receipts_root {
                        Some(r) => Some(hex32(r)?),
                        None => None,
                    },
                },
            });
        }
        let item = |party: u32| -> Result<DeliveryItem, String> {
            let d = self
                .deliveries
                .iter()
                .find(|d| d.party == party)
                .ok_or_else(|| format!("party {party} delivered nothing"))?;
            let c = self
                .claims
                .iter()
                .find(|c| c.party == party)
                .ok_or_else(|| format!("party {party} has not claimed"))?;
            Ok(DeliveryItem {
                index: PartyId::from_wire(party).ok_or("party index 0")?,
                key_hash: d.key_hash,
                ciphertext: hex::decode(&d.sealed)
                    .map_err(|_| format!("party {party}'s sealed share is not hex"))?,
                signature: Sig(d.signature),
                key: hex32(&c.key)?,
            })
        };
        let accused = item(culprit)?;
        let others: Vec<DeliveryItem> = self
            .claims
            .iter()
            .map(|c| c.party)
            .filter(|p| !self.culprits.contains(p))
            .map(item)
            .collect::<Result<_, _>>()?;
        let t = manifest.roster.params.t;
        if others.len() < 2 * t + 1 {
            return Err(format!(
                "{} honest claims, the evidence needs 2t + 1 = {}",
                others.len(),
                2 * t + 1
            ));
        }
        let params = Params::new(manifest.roster.n(), t).map_err(|e| e.to_string())?;
        Ok(JobEvidence {
            version: EVIDENCE_VERSION,
            request: self.request.clone(),
            rule: EvidenceRule::WrongOutputShare(WrongOutputShare {
                field: self.field.clone(),
                job_id: self.request.id(),
                params,
                accused,
                others,
            }),
        })
    }

    /// Asks the other parties, one after the other, to judge `evidence` and sign the canonical
    /// slash, passing each the slash signed so far, until `k = t + 1` signatures are collected.
    /// Returns the last answer (the PSBT with the most signatures), the judges who signed it,
    /// and each refusal.
    pub async fn collect_slash(
        &self,
        service: &Service,
        manifest: &Manifest,
        evidence: &JobEvidence,
        config: ChannelConfig,
        timeout: Duration,
    ) -> (Option<JudgeAnswer>, Vec<u32>, Vec<(u32, String)>) {
        let accused = evidence.accused();
        let mut last: Option<JudgeAnswer> = None;
        let mut signed = Vec::new();
        let mut refused = Vec::new();
        for judge in (1..=manifest.roster.n() as u32).filter(|j| *j != accused) {
            let req = JudgeRequest {
                evidence: evidence.clone(),
                psbt: last.as_ref().map(|a| a.psbt.clone()),
            };
            match service.judge(manifest, judge, &req, config, timeout).await {
                Ok(a) => {
                    let done = a.signatures >= a.needed;
                    signed.push(judge);
                    last = Some(a);
                    if done {
                        break;
                    }
                }
                Err(e) => refused.push((judge, e)),
            }
        }
        (last, signed, refused)
    }

    /// Finalizes and broadcasts the slash `answer` of `culprit`'s bond after checking it is
    /// the canonical slash for this job's terms on this service's own chain view
    /// ([`RoleWallet::broadcast_slash`]); records it.
    ///
    /// # Errors
    /// Too few signatures, a PSBT that is not the canonical slash, network errors.
    pub fn broadcast_slash(
        &mut self,
        manifest: &Manifest,
        culprit: u32,
        answer: &JudgeAnswer,
        judges: Vec<u32>,
        wallet: &mut RoleWallet,
        chain: &ChainClient,
    ) -> Result<SlashDone, String> {
        let file = bond_file(manifest, culprit).map_err(|e| e.to_string())?;
        remember_bond(wallet, manifest, culprit, &file).map_err(|e| e.to_string())?;
        let terms = slash_terms(&self.request, manifest).map_err(|e| e.to_string())?;
        let psbt = btcmpc_contracts::decode_carrier(&answer.psbt)
            .map_err(|e| format!("the judges' slash PSBT: {e}"))?;
        let (txid, summary) = wallet
            .broadcast_slash(chain, &file, &terms, &psbt)
            .map_err(|e| format!("the slash of party {culprit}'s bond: {e}"))?;
        let done = SlashDone {
            party: culprit,
            txid: txid.to_string(),
            sats: summary.paid.to_sat(),
            judges,
        };
        self.unslashed.retain(|(p, _)| *p != culprit);
        self.slashes.push(done.clone());
        Ok(done)
    }

    fn masks_in<F: PrimeField>(&self) -> Result<Vec<F>, String> {
        self.masks
            .iter()
            .map(|m| field_from_hex::<F>(m).map_err(|e| e.to_string()))
            .collect()
    }
}

/// Whether `query` over a dataset of `schema` in `field` multiplies secret values (see
/// [`ServiceJob::uses_products`]).
///
/// # Errors
/// A query that does not plan; an unknown field.
pub fn query_uses_products(field: &str, schema: &Schema, query: &str) -> Result<bool, String> {
    in_field!(field, F => plan_for::<F>(query, schema).map(|p| p.uses_products()))
}

fn plan_for<F: PrimeField>(query: &str, schema: &Schema) -> Result<Plan, String> {
    let parsed = parse(query).map_err(|e| format!("query: {e}"))?;
    plan_text::<F>(query, &parsed, schema).map_err(|e| format!("query: {e}"))
}

fn hex32(text: &str) -> Result<Hash32, String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| format!("{text:?} is not 64 hex digits"))?;
    Ok(out)
}

/// `(party, reason)` answers as one line, parties with the same reason together:
/// `parties 1, 2, 4: degree 2 is above ...; party 3: ...` (first appearance order).
pub fn by_reason(answers: &[(u32, String)]) -> String {
    let mut groups: Vec<(&str, Vec<u32>)> = Vec::new();
    for (p, e) in answers {
        match groups.iter_mut().find(|(r, _)| *r == e.as_str()) {
            Some((_, ps)) => ps.push(*p),
            None => groups.push((e.as_str(), vec![*p])),
        }
    }
    groups
        .iter()
        .map(|(r, ps)| {
            let list = ps.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
            let word = if ps.len() == 1 { "party" } else { "parties" };
            format!("{word} {list}: {r}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether every party quoted, all with the same `min_rows`, and only their earlier queries
/// differ: a party that has not yet recorded the end of an earlier query catches up, so the
/// quotes are asked for again.
fn only_earlier_differ(answers: &[(u32, Result<Quote, String>)]) -> bool {
    let quotes: Vec<&Quote> = answers
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok())
        .collect();
    let Some(first) = quotes.first() else {
        return false;
    };
    quotes.len() == answers.len()
        && quotes.iter().all(|q| q.min_rows == first.min_rows)
        && quotes.iter().any(|q| q.earlier != first.earlier)
}

/// The leakage rule every quote names: its `min_rows` and earlier queries, when all quotes
/// name the same (the parties would otherwise plan different gates).
///
/// # Errors
/// No quotes, a quote whose rule breaks a bound ([`Quote::check_rule`]), or quotes that
/// disagree, naming each party's rule.
pub fn common_rule(quotes: &[Quote]) -> Result<(u64, Vec<String>), String> {
    let Some(first) = quotes.first() else {
        return Err("no quotes".into());
    };
    for q in quotes {
        q.check_rule()?;
    }
    if quotes
        .iter()
        .any(|q| q.min_rows != first.min_rows || q.earlier != first.earlier)
    {
        return Err(format!(
            "the parties would plan this query under different leakage rules ({}): their \
                 min_rows or the earlier queries they answered for this service differ, so \
                 their gates would differ; the job is not run",
            quotes
                .iter()
                .map(|q| format!(
                    "party {}: min_rows {}, {} earlier quer{}",
                    q.party,
                    q.min_rows,
                    q.earlier.len(),
                    if q.earlier.len() == 1 { "y" } else { "ies" }
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    Ok((first.min_rows, first.earlier.clone()))
}

#[cfg(test)]
mod tests {
    use super::{by_reason, common_rule, only_earlier_differ};
    use crate::node::job::Quote;

    fn quote(party: u32, min_rows: u64, earlier: &[&str]) -> Quote {
        Quote {
            job: [1; 32],
            party,
            key_hash: [2; 32],
            party_key: String::new(),
            fee_sat: 5_000,
            claim_fee_sat: 300,
            timeout: 500,
            min_rows,
            earlier: earlier.iter().map(|q| q.to_string()).collect(),
            signature: [0; 64],
        }
    }

    #[test]
    fn quotes_that_name_different_leakage_rules_stop_the_job_naming_each_rule() {
        let same = [
            quote(1, 10, &["count()"]),
            quote(2, 10, &["count()"]),
            quote(3, 10, &["count()"]),
        ];
        assert_eq!(common_rule(&same), Ok((10, vec!["count()".to_string()])));
        // Party 2 answered one more query for this service.
        let earlier = [
            quote(1, 10, &["count()"]),
            quote(2, 10, &["count()", "sum(x)"]),
            quote(3, 10, &["count()"]),
        ];
        let e = common_rule(&earlier).unwrap_err();
        assert!(e.contains("different leakage rules"), "{e}");
        assert!(e.contains("party 2: min_rows 10, 2 earlier queries"), "{e}");
        assert!(e.contains("party 1: min_rows 10, 1 earlier query;"), "{e}");
        // Another min_rows.
        let min = [quote(1, 10, &[]), quote(2, 5, &[])];
        let e = common_rule(&min).unwrap_err();
        assert!(e.contains("party 2: min_rows 5, 0 earlier queries"), "{e}");
        // A bound broken, and no quotes at all.
        let long = "x".repeat(crate::node::job::MAX_QUERY_LEN + 1);
        let e = common_rule(&[quote(1, 10, &[long.as_str()])]).unwrap_err();
        assert!(e.contains("party 1 names an earlier query of"), "{e}");
        assert_eq!(common_rule(&[]), Err("no quotes".to_string()));
    }

    #[test]
    fn only_a_lagging_earlier_list_is_asked_again() {
        let ok = |q: Quote| (q.party, Ok(q));
        // One party has not yet recorded the end of the previous query: ask again.
        let lagging = [
            ok(quote(1, 10, &["count()"])),
            ok(quote(2, 10, &[])),
            ok(quote(3, 10, &["count()"])),
        ];
        assert!(only_earlier_differ(&lagging));
        // Agreeing quotes, another min_rows (a setting, not a lag), a refusal: not again.
        let same = [
            ok(quote(1, 10, &["count()"])),
            ok(quote(2, 10, &["count()"])),
        ];
        assert!(!only_earlier_differ(&same));
        let min = [ok(quote(1, 10, &["count()"])), ok(quote(2, 5, &[]))];
        assert!(!only_earlier_differ(&min));
        let refused = [
            ok(quote(1, 10, &["count()"])),
            ok(quote(2, 10, &[])),
            (3, Err("fee too low".to_string())),
        ];
        assert!(!only_earlier_differ(&refused));
        assert!(!only_earlier_differ(&[]));
    }

    #[test]
    fn refusals_with_one_reason_are_named_once() {
        let a = [
            (1, "degree 2 is above 1".to_string()),
            (2, "bond busy".to_string()),
            (3, "degree 2 is above 1".to_string()),
            (4, "degree 2 is above 1".to_string()),
        ];
        assert_eq!(
            by_reason(&a),
            "parties 1, 3, 4: degree 2 is above 1; party 2: bond busy"
        );
        assert_eq!(by_reason(&[]), "");
    }
}
