//! A service's paid jobs on disk ([`JobBook`]) and the steps that settle one after the parties
//! computed (PROTOCOL.md, "Job flow" and "Evidence and penalties"): tell unpaid-claim parties
//! where their escrow is, read the claims, open the result, send the evidence against each
//! blamed party to its judges and broadcast the slash they sign, refund after `T`.
//!
//! `btcmpc service query`, `service settle` and `service run` are these functions plus output;
//! a Rust program embedding the service role calls them directly:
//!
//! ```text
//! ServiceJob::{new, quote, compute, fund, notify}     (crate::node::paid)
//! wait_and_open(book, ..)   poll claims until every paid party claimed or `wait` passed,
//!                           open, punish                                        (chain, async)
//! settle_job(book, ..)      one round for a saved job: recover a funding saved too late,
//!                           re-notify, poll, open, punish, refund after T        (chain, async)
//! ```
//!
//! Every step saves the job record ([`JobBook::save`], atomic) before it returns, so a
//! service killed anywhere resumes from its record. The functions call the Electrum client,
//! which blocks: run them on a multi-threaded runtime (or inside `spawn_blocking`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use btcmpc_wallet::{ChainClient, FeeChoice, RoleWallet};

use super::card::{read_bounded, write_atomic};
use super::manifest::Manifest;
use super::paid::ServiceJob;
use super::service::Service;

/// How long the parties get to answer a repeated funding notice.
pub const NOTICE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one judge gets to answer an evidence request.
pub const JUDGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the job book and of settlement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettleError {
    /// A job id that is not 64 hex digits (never a path).
    #[error("job id {0:?} is not 64 hex digits")]
    BadJobId(String),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A step of the job failed (its reason).
    #[error("{0}")]
    Job(String),
    /// The wallet failed.
    #[error(transparent)]
    Wallet(#[from] btcmpc_wallet::WalletError),
}

/// What a settlement step reports as it goes (for a progress line): never needed for
/// correctness.
pub type Say<'a> = &'a mut (dyn FnMut(String) + Send);

/// A service's job records: `DIR/jobs/JOB.json`, and the evidence it sent:
/// `DIR/evidence/JOB-partyI.json`.
#[derive(Debug, Clone)]
pub struct JobBook {
    dir: PathBuf,
}

impl JobBook {
    /// The book of the service whose data directory is `dir`.
    pub fn new(dir: &Path) -> Self {
        JobBook {
            dir: dir.to_path_buf(),
        }
    }

    /// Checks that `id` is a job id (64 hex digits).
    ///
    /// # Errors
    /// [`SettleError::BadJobId`].
    pub fn check_id(id: &str) -> Result<(), SettleError> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SettleError::BadJobId(id.to_string()));
        }
        Ok(())
    }

    /// The record file of job `id`.
    ///
    /// # Errors
    /// [`SettleError::BadJobId`].
    pub fn path(&self, id: &str) -> Result<PathBuf, SettleError> {
        Self::check_id(id)?;
        Ok(self.dir.join("jobs").join(format!("{id}.json")))
    }

    /// Where the evidence against `party` in job `id` is kept (outside `jobs/`, whose files
    /// are job records).
    pub fn evidence_path(&self, id: &str, party: u32) -> PathBuf {
        self.dir
            .join("evidence")
            .join(format!("{id}-party{party}.json"))
    }

    /// Saves `job` atomically (temporary file, fsync, rename), mode 0600.
    ///
    /// # Errors
    /// [`SettleError::File`].
    pub fn save(&self, job: &ServiceJob) -> Result<(), SettleError> {
        let path = self.path(&job.id_hex())?;
        let json = serde_json::to_string_pretty(job).map_err(|e| SettleError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_file(&path, json.as_bytes())
    }

    /// Loads job `id`.
    ///
    /// # Errors
    /// [`SettleError::BadJobId`]; [`SettleError::File`] for a missing or unreadable record.
    pub fn load(&self, id: &str) -> Result<ServiceJob, SettleError> {
        let path = self.path(id)?;
        let text = read_bounded(&path).map_err(|e| SettleError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| SettleError::File {
            path,
            reason: format!("not a job record: {e}"),
        })
    }

    /// Every job id in the book, sorted (files that are not `HEX64.json` are skipped); none
    /// before the first job is recorded (no `jobs` directory yet).
    ///
    /// # Errors
    /// [`SettleError::File`] when the `jobs` directory exists but cannot be listed.
    pub fn ids(&self) -> Result<Vec<String>, SettleError> {
        let dir = self.dir.join("jobs");
        let failed = |e: std::io::Error| SettleError::File {
            path: dir.clone(),
            reason: e.to_string(),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(failed(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(failed)?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|id| Self::check_id(id).is_ok())
            {
                ids.push(id.to_string());
            }
        }
        ids.sort();
        Ok(ids)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), SettleError> {
    let fail = |reason: String| SettleError::File {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    write_atomic(path, bytes, 0o600).map_err(|e| fail(e.to_string()))
}

/// Tells every paid party whose claim is not seen (while a claim is still allowed) where its
/// escrow output is; a party that missed the first notice (it or the service crashed) learns
/// it here. Parties answer the same notice the same way, so sending it again is harmless.
/// Refusals and unreachable parties are told to `say`.
///
/// # Errors
/// The chain's tip cannot be read.
pub async fn notify_unclaimed(
    service: &Service,
    job: &ServiceJob,
    manifest: &Manifest,
    chain: &ChainClient,
    each: Duration,
    say: Say<'_>,
) -> Result<(), SettleError> {
    let (tip, _) = chain.tip().map_err(|e| SettleError::Job(e.to_string()))?;
    let parties = job.to_notify(tip);
    if parties.is_empty() {
        return Ok(());
    }
    let answers = job
        .notify(service, manifest, Default::default(), each)
        .await;
    report_notice(
        answers
            .into_iter()
            .filter(|(p, _)| parties.contains(p))
            .collect(),
        say,
    );
    Ok(())
}

/// Tells `say` which parties refused a funding notice or were not reached.
pub fn report_notice(answers: Vec<(u32, Result<super::job::JobPaidAnswer, String>)>, say: Say<'_>) {
    for (p, a) in answers {
        match a {
            Ok(a) if a.state == "refused" => say(format!(
                "party {p} refuses the funding: {}",
                a.reason.unwrap_or_default()
            )),
            Ok(_) => {}
            Err(e) => say(format!("party {p} was not told of its escrow: {e}")),
        }
    }
}

/// Polls the chain for the parties' claims until every paid party claimed or `wait` passed
/// (every 500 ms; a progress line to `say` every 10 s), opens the result once more than `t`
/// parties claimed, and punishes every blamed party ([`punish`]) for what is left of `wait`.
/// Returns the time the opening took.
///
/// # Errors
/// The chain, the wallet or the job book failed. A result that cannot be opened yet is said,
/// not an error (the next settlement tries again).
#[allow(clippy::too_many_arguments)]
pub async fn wait_and_open(
    book: &JobBook,
    service: &Service,
    wallet: &mut RoleWallet,
    job: &mut ServiceJob,
    manifest: &Manifest,
    chain: &ChainClient,
    wait: Duration,
    say: Say<'_>,
) -> Result<Duration, SettleError> {
    let start = Instant::now();
    let mut told = start;
    loop {
        let before = job.claims.len();
        job.poll(manifest, chain).map_err(SettleError::Job)?;
        if job.claims.len() != before {
            book.save(job)?;
        }
        if job.unclaimed().is_empty() || start.elapsed() >= wait {
            break;
        }
        // Say what is awaited: the parties claim only once the funding has a confirmation.
        if told.elapsed() >= Duration::from_secs(10) {
            told = Instant::now();
            say(format!(
                "waiting for the parties' claims: {} of {} claimed ({} s of --wait {} s); a claim needs the escrow funding confirmed (on regtest: mine a block)",
                job.claims.len(),
                job.claims.len() + job.unclaimed().len(),
                start.elapsed().as_secs(),
                wait.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let opening = Instant::now();
    if job.result.is_none() && job.claims.len() > manifest.roster.params.t {
        match job.open(manifest) {
            Ok(_) => book.save(job)?,
            Err(e) => say(format!("cannot open the result yet: {e}")),
        }
    }
    let took = opening.elapsed();
    let left = wait.saturating_sub(start.elapsed());
    punish(book, service, wallet, job, manifest, chain, left).await?;
    Ok(took)
}

/// Sends the evidence against every blamed party not slashed yet to its judges (the other
/// parties) and broadcasts the canonical slash once `k` of them signed it. Judges need the
/// claims confirmed: refusals are retried every second until `wait` passed (a later
/// settlement tries again). The evidence is kept at [`JobBook::evidence_path`]; why a culprit
/// is not slashed yet is recorded in [`ServiceJob::unslashed`].
///
/// # Errors
/// The wallet or the job book failed.
pub async fn punish(
    book: &JobBook,
    service: &Service,
    wallet: &mut RoleWallet,
    job: &mut ServiceJob,
    manifest: &Manifest,
    chain: &ChainClient,
    wait: Duration,
) -> Result<(), SettleError> {
    let start = Instant::now();
    for culprit in job.unpunished() {
        let evidence = match job.evidence(manifest, culprit) {
            Ok(e) => e,
            Err(e) => {
                job.unslashed.retain(|u| u.0 != culprit);
                job.unslashed.push((culprit, format!("no evidence: {e}")));
                book.save(job)?;
                continue;
            }
        };
        let path = book.evidence_path(&job.id_hex(), culprit);
        let json = serde_json::to_string_pretty(&evidence).map_err(|e| SettleError::File {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_file(&path, json.as_bytes())?;
        loop {
            let (answer, judges, refused) = job
                .collect_slash(
                    service,
                    manifest,
                    &evidence,
                    Default::default(),
                    JUDGE_TIMEOUT,
                )
                .await;
            let reason = match answer {
                Some(a) if a.signatures >= a.needed => {
                    wallet.sync(chain)?;
                    match job.broadcast_slash(manifest, culprit, &a, judges, wallet, chain) {
                        Ok(_) => {
                            book.save(job)?;
                            break;
                        }
                        Err(e) => e,
                    }
                }
                _ => refused
                    .iter()
                    .map(|(j, e)| format!("judge {j}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            job.unslashed.retain(|u| u.0 != culprit);
            job.unslashed.push((culprit, reason));
            book.save(job)?;
            if start.elapsed() >= wait {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(())
}

/// What one round of [`settle_job`] did.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The job record after the round.
    pub job: ServiceJob,
    /// Its committee.
    pub manifest: Manifest,
    /// Refunds broadcast in this round: `(party, txid)`.
    pub refunds: Vec<(u32, String)>,
}

/// One settlement round of saved job `id` (what `service settle` does for each job): recover
/// a funding broadcast but never saved, re-notify unclaimed parties, read claims, open, punish,
/// and refund every unclaimed escrow output once the tip reaches `T`. With `open_only`, a job
/// already settled ([`ServiceJob::is_settled`]) is skipped (`None`). `wallet` must be synced.
///
/// # Errors
/// A bad id or record; the chain, the wallet or the job book failed.
#[allow(clippy::too_many_arguments)]
pub async fn settle_job(
    book: &JobBook,
    service: &Service,
    wallet: &mut RoleWallet,
    chain: &ChainClient,
    fee: FeeChoice,
    id: &str,
    open_only: bool,
    say: Say<'_>,
) -> Result<Option<Settled>, SettleError> {
    let mut job = book.load(id)?;
    let manifest = job.committee().map_err(SettleError::Job)?;
    let (tip, _) = chain.tip().map_err(|e| SettleError::Job(e.to_string()))?;
    if open_only && job.is_settled(tip, manifest.roster.params.dispute_window) {
        return Ok(None);
    }
    // A crash between the funding's broadcast and the record's save.
    if job
        .recover_funding(&manifest, wallet, chain)
        .map_err(SettleError::Job)?
    {
        book.save(&job)?;
    }
    notify_unclaimed(service, &job, &manifest, chain, NOTICE_TIMEOUT, &mut *say).await?;
    wait_and_open(
        book,
        service,
        wallet,
        &mut job,
        &manifest,
        chain,
        Duration::ZERO,
        say,
    )
    .await?;
    let refunds = job
        .refund(&manifest, wallet, chain, fee)
        .map_err(SettleError::Job)?;
    book.save(&job)?;
    Ok(Some(Settled {
        job,
        manifest,
        refunds,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_hex_and_never_paths() {
        let dir = tempfile::tempdir().unwrap();
        let book = JobBook::new(dir.path());
        assert!(matches!(
            book.path("../../etc/passwd"),
            Err(SettleError::BadJobId(_))
        ));
        assert!(matches!(
            book.path(&"g".repeat(64)),
            Err(SettleError::BadJobId(_))
        ));
        let id = "ab".repeat(32);
        assert_eq!(
            book.path(&id).unwrap(),
            dir.path().join("jobs").join(format!("{id}.json"))
        );
        // No job yet: no `jobs` directory, no ids. A `jobs` that cannot be listed is an error
        // naming it, not an empty book.
        assert_eq!(book.ids().unwrap(), Vec::<String>::new());
        std::fs::write(dir.path().join("jobs"), "not a directory").unwrap();
        let e = book.ids().unwrap_err().to_string();
        assert!(e.contains("jobs"), "{e}");
        std::fs::remove_file(dir.path().join("jobs")).unwrap();
        // Only job records are listed.
        std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
        std::fs::write(dir.path().join("jobs").join(format!("{id}.json")), "{}").unwrap();
        std::fs::write(dir.path().join("jobs").join("notes.json"), "{}").unwrap();
        assert_eq!(book.ids().unwrap(), vec![id.clone()]);
        // A record that does not parse is named.
        let e = book.load(&id).unwrap_err().to_string();
        assert!(e.contains("not a job record"), "{e}");
        assert!(matches!(
            book.load(&"cd".repeat(32)),
            Err(SettleError::File { .. })
        ));
    }
}
