//! Mempool acceptance: Core's `MemPoolAccept` (PreChecks, TRUC, replacement, cluster limits,
//! script checks) against the best chain's tip.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bitcoin::{Amount, FeeRate, OutPoint, Transaction, TxOut, Txid};

use super::consensus::{self, Coin};
use super::mempool::MempoolTx;
use super::policy::{self, fee_for};
use super::{ChainState, Events};
use crate::types::{AcceptInfo, NodeEvent, Reject, ScriptHash};

/// An accepted (or, for a test, acceptable) transaction.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub entry: MempoolTx,
    pub replaced: Vec<MempoolTx>,
}

/// Core's sigop-adjusted virtual size (`-bytespersigop` = 20).
fn sigop_vsize(weight: u64, sigops: usize) -> u64 {
    weight.max(sigops as u64 * 20).div_ceil(4)
}

fn truc(reason: String) -> Reject {
    Reject::rejected_with("TRUC-violation", reason)
}

/// A node of a feerate diagram computation: fee, vsize, parents among the set.
struct DiagramTx {
    fee: i64,
    vsize: i64,
    parents: Vec<Txid>,
}

/// Chunks (fee, vsize) of a set of transactions split into clusters of at most 2.
fn chunks(set: &HashMap<Txid, DiagramTx>) -> Option<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    let mut done: HashSet<Txid> = HashSet::new();
    for (txid, t) in set {
        if done.contains(txid) {
            continue;
        }
        let children: Vec<&Txid> = set
            .iter()
            .filter(|(_, c)| c.parents.contains(txid))
            .map(|(id, _)| id)
            .collect();
        match (t.parents.len(), children.len()) {
            (0, 0) => {
                out.push((t.fee, t.vsize));
                done.insert(*txid);
            }
            (0, 1) => {
                let c = &set[children[0]];
                if c.parents.len() != 1 || set.iter().any(|(_, x)| x.parents.contains(children[0]))
                {
                    return None;
                }
                // Child pays a better rate than the parent: one chunk.
                if i128::from(c.fee) * i128::from(t.vsize) > i128::from(t.fee) * i128::from(c.vsize)
                {
                    out.push((t.fee + c.fee, t.vsize + c.vsize));
                } else {
                    out.push((t.fee, t.vsize));
                    out.push((c.fee, c.vsize));
                }
                done.insert(*txid);
                done.insert(*children[0]);
            }
            (1, _) => {} // handled from its parent
            _ => return None,
        }
    }
    if done.len() != set.len() {
        return None;
    }
    Some(out)
}

/// Cumulative (size, fee) points of chunks sorted by feerate, from (0, 0).
fn diagram(mut chunks: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    chunks.sort_by(|a, b| {
        (i128::from(b.0) * i128::from(a.1)).cmp(&(i128::from(a.0) * i128::from(b.1)))
    });
    let mut points = vec![(0i64, 0i64)];
    let (mut s, mut f) = (0i64, 0i64);
    for (fee, size) in chunks {
        s += size;
        f += fee;
        points.push((s, f));
    }
    points
}

/// The diagram's fee at size `x` as a fraction (num, den), extended flat past its end.
fn fee_at(points: &[(i64, i64)], x: i64) -> (i128, i128) {
    for w in points.windows(2) {
        let ((x0, f0), (x1, f1)) = (w[0], w[1]);
        if x <= x1 && x1 > x0 {
            let den = i128::from(x1 - x0);
            return (
                i128::from(f0) * den + i128::from(f1 - f0) * i128::from(x - x0),
                den,
            );
        }
    }
    (i128::from(points.last().map_or(0, |p| p.1)), 1)
}

/// Whether `new` is at least `old` everywhere and better somewhere (Core's
/// `ImprovesFeerateDiagram`).
fn improves(old: &[(i64, i64)], new: &[(i64, i64)]) -> bool {
    let mut xs: Vec<i64> = old.iter().chain(new).map(|p| p.0).collect();
    xs.sort_unstable();
    xs.dedup();
    let mut better = false;
    for x in xs {
        let (on, od) = fee_at(old, x);
        let (nn, nd) = fee_at(new, x);
        let (l, r) = (nn * od, on * nd);
        if l < r {
            return false;
        }
        if l > r {
            better = true;
        }
    }
    better
}

/// Core's `MAX_PACKAGE_COUNT`.
pub const MAX_PACKAGE_COUNT: usize = 25;
/// Core's `MAX_PACKAGE_WEIGHT` (404,000 WU).
pub const MAX_PACKAGE_WEIGHT: u64 = 404_000;

/// What `testmempoolaccept` of a package found: a package-wide error (Core's `PCKG_POLICY`
/// reason, with its details after ", "), and per member its verdict, `None` when it was not
/// (fully) validated because another member or the package failed first.
#[derive(Debug, Clone)]
pub struct PackageVerdict {
    /// The package error, if any.
    pub package_error: Option<String>,
    /// Per member, in the order given.
    pub results: Vec<Option<Result<AcceptInfo, Reject>>>,
}

/// Core's `IsWellFormedPackage` (`policy/packages.cpp`) with `require_sorted`.
fn well_formed_package(txs: &[Transaction]) -> Result<(), &'static str> {
    if txs.len() > MAX_PACKAGE_COUNT {
        return Err("package-too-many-transactions");
    }
    let weight: u64 = txs.iter().map(|t| t.weight().to_wu()).sum();
    if txs.len() > 1 && weight > MAX_PACKAGE_WEIGHT {
        return Err("package-too-large");
    }
    let mut later: HashSet<Txid> = txs.iter().map(Transaction::compute_txid).collect();
    if later.len() != txs.len() {
        return Err("package-contains-duplicates");
    }
    // IsTopoSortedPackage: no member spends a member that comes after it.
    for tx in txs {
        later.remove(&tx.compute_txid());
        if tx
            .input
            .iter()
            .any(|i| later.contains(&i.previous_output.txid))
        {
            return Err("package-not-sorted");
        }
    }
    // IsConsistentPackage: no two members spend one output; no member without inputs.
    let mut seen: HashSet<OutPoint> = HashSet::new();
    for tx in txs {
        if tx.input.is_empty() || tx.input.iter().any(|i| seen.contains(&i.previous_output)) {
            return Err("conflict-in-package");
        }
        seen.extend(tx.input.iter().map(|i| i.previous_output));
    }
    Ok(())
}

impl ChainState {
    /// Core's `AcceptToMemoryPool` for the next block. `bypass_limits` (transactions of
    /// disconnected blocks) skips the fee, TRUC and cluster limits; `test_only` changes
    /// nothing.
    pub(crate) fn accept(
        &mut self,
        tx: &Transaction,
        bypass_limits: bool,
        test_only: bool,
        max_fee_rate: Option<FeeRate>,
    ) -> Result<Accepted, Reject> {
        self.accept_with(tx, bypass_limits, test_only, max_fee_rate, false)
    }

    /// [`ChainState::accept`]; with `package_prechecks` it runs only Core's `PreChecks` of a
    /// package member under `PackageTestAccept` (no replacement allowed, no cluster limits,
    /// no scripts: those come after, for the whole package) and adds the transaction to the
    /// (scratch) mempool so that later members find its outputs.
    fn accept_with(
        &mut self,
        tx: &Transaction,
        bypass_limits: bool,
        test_only: bool,
        max_fee_rate: Option<FeeRate>,
        package_prechecks: bool,
    ) -> Result<Accepted, Reject> {
        consensus::check_transaction(tx)?;
        if tx.is_coinbase() {
            return Err(Reject::rejected("coinbase"));
        }
        policy::check_standard(tx)?;
        if tx.base_size() < policy::MIN_STANDARD_TX_NONWITNESS_SIZE {
            return Err(Reject::rejected("tx-size-small"));
        }
        let tip_height = self.height();
        let next_height = tip_height + 1;
        let tip_mtp = self.mtp_at(tip_height);
        if !consensus::is_final_tx(tx, next_height, tip_mtp) {
            return Err(Reject::rejected("non-final"));
        }
        let txid = tx.compute_txid();
        let wtxid = tx.compute_wtxid();
        if self.mempool.by_wtxid.contains_key(&wtxid) {
            return Err(Reject::rejected("txn-already-in-mempool"));
        }
        if self.mempool.txs.contains_key(&txid) {
            return Err(Reject::rejected("txn-same-nonwitness-data-in-mempool"));
        }
        let mut conflicts: BTreeSet<Txid> = BTreeSet::new();
        for input in &tx.input {
            if let Some(c) = self.mempool.spends.get(&input.previous_output) {
                conflicts.insert(*c);
            }
        }
        if package_prechecks && !conflicts.is_empty() {
            // Core's PreChecks when `m_allow_replacement` is false (`PackageTestAccept`).
            return Err(Reject::rejected("bip125-replacement-disallowed"));
        }

        // Coins from the chain and the mempool.
        let mut coins: Vec<Coin> = Vec::with_capacity(tx.input.len());
        let mut parents: BTreeSet<Txid> = BTreeSet::new();
        for input in &tx.input {
            let op = input.previous_output;
            if let Some(parent) = self.mempool.txs.get(&op.txid) {
                if let Some(out) = parent.tx.output.get(op.vout as usize) {
                    parents.insert(op.txid);
                    coins.push(Coin {
                        txout: out.clone(),
                        height: next_height,
                        coinbase: false,
                    });
                    continue;
                }
            }
            match self.utxos.get(&op) {
                Some(c) => coins.push(c.clone()),
                None => {
                    let known = (0..tx.output.len() as u32)
                        .any(|v| self.utxos.contains_key(&OutPoint::new(txid, v)));
                    if known {
                        return Err(Reject::rejected("txn-already-known"));
                    }
                    return Err(Reject {
                        code: Reject::VERIFY_ERROR,
                        reason: "missing-inputs".into(),
                        details: None,
                    });
                }
            }
        }
        let coin_refs: Vec<&Coin> = coins.iter().collect();

        let heights: Vec<u32> = coins.iter().map(|c| c.height).collect();
        let lock = consensus::sequence_locks(tx, &heights, |h| i64::from(self.mtp_at(h)));
        if !consensus::sequence_lock_ok(lock, next_height, tip_mtp) {
            return Err(Reject::rejected("non-BIP68-final"));
        }
        let fee = consensus::check_tx_inputs(tx, &coin_refs, next_height)?;
        policy::check_inputs_standard(tx, &coin_refs)?;
        if tx.input.iter().any(|i| !i.witness.is_empty())
            && !policy::witness_standard(tx, &coin_refs)
        {
            return Err(Reject::rejected("bad-witness-nonstandard"));
        }
        let spent_outs: Vec<TxOut> = coins.iter().map(|c| c.txout.clone()).collect();
        let sigops = tx.total_sigop_cost(|op| {
            tx.input
                .iter()
                .position(|i| i.previous_output == *op)
                .map(|i| spent_outs[i].clone())
        });
        let weight = tx.weight().to_wu();
        let vsize = sigop_vsize(weight, sigops);
        if policy::dust_outputs(tx) == 1 && fee > Amount::ZERO {
            return Err(Reject::rejected_with(
                "dust",
                "tx with dust output must be 0-fee",
            ));
        }
        if sigops > policy::MAX_STANDARD_TX_SIGOPS_COST {
            return Err(Reject::rejected_with(
                "bad-txns-too-many-sigops",
                sigops.to_string(),
            ));
        }
        let mut sibling_eviction = false;
        if !bypass_limits {
            let min = fee_for(policy::MIN_RELAY_FEE_SAT_PER_KVB, vsize);
            if fee < min {
                return Err(Reject::rejected_with(
                    "min relay fee not met",
                    format!("{} < {}", fee.to_sat(), min.to_sat()),
                ));
            }
            if let Some(sibling) =
                self.truc_checks(tx, (txid, wtxid), &parents, &conflicts, vsize)?
            {
                conflicts.insert(sibling);
                sibling_eviction = true;
            }
        }
        let suffix = if sibling_eviction {
            " (including sibling eviction)"
        } else {
            ""
        };

        // Replacement.
        let mut all_conflicts: HashSet<Txid> = HashSet::new();
        if !conflicts.is_empty() {
            let mut clusters: Vec<HashSet<Txid>> = Vec::new();
            for c in &conflicts {
                if !clusters.iter().any(|cl| cl.contains(c)) {
                    clusters.push(self.mempool.cluster([*c], &HashSet::new()));
                }
            }
            if clusters.len() > policy::MAX_REPLACEMENT_CANDIDATES {
                return Err(Reject::rejected_with(
                    format!("too many potential replacements{suffix}"),
                    format!(
                        "rejecting replacement {txid}; too many conflicting clusters ({} > {})",
                        clusters.len(),
                        policy::MAX_REPLACEMENT_CANDIDATES
                    ),
                ));
            }
            for c in &conflicts {
                all_conflicts.extend(self.mempool.descendants(c));
            }
            for p in &parents {
                for a in self.mempool.ancestors(p) {
                    if conflicts.contains(&a) {
                        return Err(Reject::rejected_with(
                            "bad-txns-spends-conflicting-tx",
                            format!("{txid} spends conflicting transaction {a}"),
                        ));
                    }
                }
            }
            let (mut old_fees, mut _old_size) = (Amount::ZERO, 0u64);
            for t in &all_conflicts {
                if let Some(e) = self.mempool.txs.get(t) {
                    old_fees += e.fee;
                    _old_size += e.vsize;
                }
            }
            if fee < old_fees {
                return Err(Reject::rejected_with(
                    format!("insufficient fee{suffix}"),
                    format!(
                        "rejecting replacement {txid}, less fees than conflicting txs; {} < {}",
                        consensus::format_money(fee.to_sat()),
                        consensus::format_money(old_fees.to_sat())
                    ),
                ));
            }
            let relay = fee_for(policy::INCREMENTAL_RELAY_FEE_SAT_PER_KVB, vsize);
            if fee - old_fees < relay {
                return Err(Reject::rejected_with(
                    format!("insufficient fee{suffix}"),
                    format!(
                        "rejecting replacement {txid}, not enough additional fees to relay; {} < {}",
                        consensus::format_money((fee - old_fees).to_sat()),
                        consensus::format_money(relay.to_sat())
                    ),
                ));
            }
        }

        // Cluster limits (for a package: over the whole package, afterwards).
        let cluster = self
            .mempool
            .cluster(parents.iter().copied(), &all_conflicts);
        if !bypass_limits && !package_prechecks {
            let size: u64 = cluster
                .iter()
                .filter_map(|t| self.mempool.txs.get(t))
                .map(|e| e.vsize)
                .sum::<u64>()
                + vsize;
            if cluster.len() + 1 > policy::CLUSTER_COUNT_LIMIT
                || size > policy::CLUSTER_SIZE_LIMIT_VB
            {
                return Err(Reject::rejected_with("too-large-cluster", ""));
            }
        }
        if !conflicts.is_empty() {
            self.check_diagram(&all_conflicts, &parents, fee, vsize)?;
        }

        // Scripts (the consensus flags; see the README for the policy flags).
        if !package_prechecks {
            self.policy_script_checks(tx, &spent_outs)?;
        }

        let mut script_hashes: Vec<ScriptHash> = spent_outs
            .iter()
            .chain(tx.output.iter())
            .map(|o| ScriptHash::from_script(&o.script_pubkey))
            .collect();
        script_hashes.sort_unstable();
        script_hashes.dedup();
        let entry = MempoolTx {
            tx: Arc::new(tx.clone()),
            txid,
            wtxid,
            fee,
            vsize,
            weight,
            time: self.now(),
            height: tip_height,
            seq: 0,
            parents,
            children: BTreeSet::new(),
            script_hashes,
            sigops,
        };
        if let Some(max) = max_fee_rate {
            // Core's sendrawtransaction `maxfeerate` (sat/kvB), checked after all else.
            let max_fee = max.to_sat_per_kwu().saturating_mul(4).saturating_mul(vsize) / 1000;
            if max.to_sat_per_kwu() > 0 && fee.to_sat() > max_fee {
                return Err(Reject {
                    code: Reject::VERIFY_ERROR,
                    reason: "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)"
                        .into(),
                    details: None,
                });
            }
        }
        if test_only && !package_prechecks {
            return Ok(Accepted {
                entry,
                replaced: Vec::new(),
            });
        }
        let mut replaced = Vec::new();
        for c in &conflicts {
            replaced.extend(self.mempool.remove_with_descendants(c));
        }
        self.mempool.insert(entry.clone());
        Ok(Accepted { entry, replaced })
    }

    /// Core's `PolicyScriptChecks`: every input through the interpreter (cached by wtxid).
    fn policy_script_checks(
        &mut self,
        tx: &Transaction,
        spent_outs: &[TxOut],
    ) -> Result<(), Reject> {
        let wtxid = tx.compute_wtxid();
        if self.script_cache.contains(&wtxid) {
            return Ok(());
        }
        let txid = tx.compute_txid();
        if let Err((i, _)) = consensus::verify_scripts(tx, spent_outs, consensus::CONSENSUS_FLAGS) {
            // An encoding error is what Core's interpreter reports first.
            let text = match policy::check_ecdsa_encodings(tx, spent_outs) {
                Err((j, text)) if j == i => text.to_owned(),
                _ => consensus::script_error_text(tx, i, &spent_outs[i]),
            };
            return Err(Reject::rejected_with(
                format!("mempool-script-verify-flag-failed ({text})"),
                format!("input {i} of {txid} (wtxid {wtxid})"),
            ));
        }
        // Core's standard flags on top of the consensus ones, where they are cheap to
        // check without an interpreter.
        if let Err((i, text)) = policy::check_ecdsa_encodings(tx, spent_outs) {
            return Err(Reject::rejected_with(
                format!("mempool-script-verify-flag-failed ({text})"),
                format!("input {i} of {txid} (wtxid {wtxid})"),
            ));
        }
        self.script_cache.insert(wtxid);
        Ok(())
    }

    /// Core's `testmempoolaccept` of several transactions (`ProcessNewPackage` with
    /// `test_accept`, `MemPoolAccept::AcceptMultipleTransactions`): the package checks of
    /// `IsWellFormedPackage` (count, total weight, duplicates, parents first, no two members
    /// spending one output), then `PreChecks` of every member in order against the mempool
    /// and the members before it (no replacement), the cluster limits over the whole
    /// package, then the scripts of every member. Stops at the first failure: a package
    /// error leaves every result empty, a member's failure leaves the members after it
    /// unvalidated. The mempool is left as it was.
    pub(crate) fn test_accept_package(&mut self, txs: &[Transaction]) -> PackageVerdict {
        let mut verdict = PackageVerdict {
            package_error: None,
            results: vec![None; txs.len()],
        };
        if let Err(reason) = well_formed_package(txs) {
            verdict.package_error = Some(reason.to_string());
            return verdict;
        }
        let saved = std::mem::take(&mut self.mempool);
        self.mempool = saved.clone_entries();
        let outcome = self.package_checks(txs, &mut verdict);
        self.mempool = saved;
        if let Err(e) = outcome {
            verdict.package_error = Some(e);
        }
        verdict
    }

    /// The contextual part of [`ChainState::test_accept_package`], on a scratch mempool.
    /// `Err` is a package error (Core's `PCKG_POLICY`).
    fn package_checks(
        &mut self,
        txs: &[Transaction],
        verdict: &mut PackageVerdict,
    ) -> Result<(), String> {
        let mut accepted = Vec::with_capacity(txs.len());
        for (i, tx) in txs.iter().enumerate() {
            match self.accept_with(tx, false, true, None, true) {
                Ok(a) => accepted.push(a.entry),
                Err(r) => {
                    verdict.results[i] = Some(Err(r));
                    return Ok(());
                }
            }
        }
        for e in &accepted {
            let cluster = self.mempool.cluster([e.txid], &HashSet::new());
            let size: u64 = cluster
                .iter()
                .filter_map(|t| self.mempool.txs.get(t))
                .map(|e| e.vsize)
                .sum();
            if cluster.len() > policy::CLUSTER_COUNT_LIMIT || size > policy::CLUSTER_SIZE_LIMIT_VB {
                return Err("too-large-cluster".into());
            }
        }
        for (i, (tx, e)) in txs.iter().zip(&accepted).enumerate() {
            let spent: Vec<TxOut> = tx
                .input
                .iter()
                .map(|input| {
                    let op = input.previous_output;
                    self.mempool
                        .txs
                        .get(&op.txid)
                        .and_then(|p| p.tx.output.get(op.vout as usize).cloned())
                        .or_else(|| self.utxos.get(&op).map(|c| c.txout.clone()))
                        .expect("PreChecks found every input of a package member")
                })
                .collect();
            if let Err(r) = self.policy_script_checks(tx, &spent) {
                verdict.results[i] = Some(Err(r));
                return Ok(());
            }
            verdict.results[i] = Some(Ok(AcceptInfo {
                txid: e.txid,
                wtxid: e.wtxid,
                vsize: e.vsize,
                fee: e.fee,
            }));
        }
        Ok(())
    }

    /// Core's `SingleTRUCChecks`; returns a sibling whose eviction may be considered under the
    /// replacement rules (TRUC sibling eviction).
    fn truc_checks(
        &self,
        tx: &Transaction,
        (txid, wtxid): (Txid, bitcoin::Wtxid),
        parents: &BTreeSet<Txid>,
        conflicts: &BTreeSet<Txid>,
        vsize: u64,
    ) -> Result<Option<Txid>, Reject> {
        for p in parents {
            let e = &self.mempool.txs[p];
            if tx.version.0 != 3 && e.tx.version.0 == 3 {
                return Err(truc(format!(
                    "non-version=3 tx {txid} (wtxid={wtxid}) cannot spend from version=3 tx {p} (wtxid={})",
                    e.wtxid
                )));
            }
            if tx.version.0 == 3 && e.tx.version.0 != 3 {
                return Err(truc(format!(
                    "version=3 tx {txid} (wtxid={wtxid}) cannot spend from non-version=3 tx {p} (wtxid={})",
                    e.wtxid
                )));
            }
        }
        if tx.version.0 != 3 {
            return Ok(None);
        }
        if vsize > policy::TRUC_MAX_VSIZE {
            return Err(truc(format!(
                "version=3 tx {txid} (wtxid={wtxid}) is too big: {vsize} > {} virtual bytes",
                policy::TRUC_MAX_VSIZE
            )));
        }
        let too_many_ancestors = || {
            truc(format!(
                "tx {txid} (wtxid={wtxid}) would have too many ancestors"
            ))
        };
        if parents.len() + 1 > 2 {
            return Err(too_many_ancestors());
        }
        let Some(p) = parents.iter().next() else {
            return Ok(None);
        };
        let parent = &self.mempool.txs[p];
        if self.mempool.ancestors(p).len() + 1 > 2 {
            return Err(too_many_ancestors());
        }
        if vsize > policy::TRUC_CHILD_MAX_VSIZE {
            return Err(truc(format!(
                "version=3 child tx {txid} (wtxid={wtxid}) is too big: {vsize} > {} virtual bytes",
                policy::TRUC_CHILD_MAX_VSIZE
            )));
        }
        let mut descendants = self.mempool.descendants(p);
        descendants.remove(p);
        let child_will_be_replaced = descendants.iter().any(|d| conflicts.contains(d));
        if !descendants.is_empty() && !child_will_be_replaced {
            let sibling = descendants.iter().next().copied();
            let consider = descendants.len() == 1
                && sibling.is_some_and(|s| self.mempool.ancestors(&s).len() == 2);
            if consider {
                return Ok(sibling);
            }
            return Err(truc(format!(
                "tx {p} (wtxid={}) would exceed descendant count limit",
                parent.wtxid
            )));
        }
        Ok(None)
    }

    /// Core's feerate-diagram check, exact for clusters of at most two transactions.
    fn check_diagram(
        &self,
        all_conflicts: &HashSet<Txid>,
        parents: &BTreeSet<Txid>,
        fee: Amount,
        vsize: u64,
    ) -> Result<(), Reject> {
        let start: Vec<Txid> = all_conflicts
            .iter()
            .chain(parents.iter())
            .copied()
            .collect();
        let affected = self.mempool.cluster(start, &HashSet::new());
        let node = |t: &Txid, within: &HashSet<Txid>| {
            let e = &self.mempool.txs[t];
            DiagramTx {
                fee: e.fee.to_sat() as i64,
                vsize: e.vsize as i64,
                parents: e
                    .parents
                    .iter()
                    .filter(|p| within.contains(*p))
                    .copied()
                    .collect(),
            }
        };
        let old: HashMap<Txid, DiagramTx> =
            affected.iter().map(|t| (*t, node(t, &affected))).collect();
        let remaining: HashSet<Txid> = affected.difference(all_conflicts).copied().collect();
        let mut new: HashMap<Txid, DiagramTx> = remaining
            .iter()
            .map(|t| (*t, node(t, &remaining)))
            .collect();
        // The replacement under a placeholder id that no mempool transaction has.
        let placeholder = Txid::from_raw_hash(bitcoin::hashes::Hash::all_zeros());
        new.insert(
            placeholder,
            DiagramTx {
                fee: fee.to_sat() as i64,
                vsize: vsize as i64,
                parents: parents.iter().copied().collect(),
            },
        );
        let (Some(old_chunks), Some(new_chunks)) = (chunks(&old), chunks(&new)) else {
            return Err(Reject::rejected_with(
                "replacement-failed",
                "replacement of a cluster of more than 2 transactions is not supported by this node",
            ));
        };
        if !improves(&diagram(old_chunks), &diagram(new_chunks)) {
            return Err(Reject::rejected_with(
                "replacement-failed",
                "insufficient feerate: does not improve feerate diagram",
            ));
        }
        Ok(())
    }

    /// Core's `CTxMemPool::Expire(now - expiry)`: removes every entry that entered before the
    /// cutoff (strictly), with its descendants. Returns what was removed.
    pub(crate) fn expire_mempool(&mut self) -> Vec<MempoolTx> {
        let cutoff = self.now().saturating_sub(policy::MEMPOOL_EXPIRY_SECS);
        let old: Vec<Txid> = self
            .mempool
            .txs
            .values()
            .filter(|e| e.time < cutoff)
            .map(|e| e.txid)
            .collect();
        let mut removed = Vec::new();
        for t in old {
            removed.extend(self.mempool.remove_with_descendants(&t));
        }
        if !removed.is_empty() {
            tracing::info!(target: "btcmpc_regtest::chain", expired = removed.len(), "mempool entries expired");
        }
        removed
    }

    pub(crate) fn test_accept(&mut self, tx: &Transaction) -> Result<AcceptInfo, Reject> {
        let a = self.accept(tx, false, true, None)?;
        Ok(AcceptInfo {
            txid: a.entry.txid,
            wtxid: a.entry.wtxid,
            vsize: a.entry.vsize,
            fee: a.entry.fee,
        })
    }

    pub(crate) fn send(
        &mut self,
        tx: &Transaction,
        max_fee_rate: Option<FeeRate>,
    ) -> Result<(Txid, Events), Reject> {
        let txid = tx.compute_txid();
        if (0..tx.output.len() as u32).any(|v| self.utxos.contains_key(&OutPoint::new(txid, v))) {
            return Err(Reject {
                code: Reject::VERIFY_ALREADY_IN_UTXO_SET,
                reason: "Transaction outputs already in utxo set".into(),
                details: None,
            });
        }
        if self.mempool.txs.contains_key(&txid) {
            return Ok((txid, Vec::new()));
        }
        let map_err = |e: Reject| {
            if e.reason == "missing-inputs" {
                Reject {
                    code: Reject::VERIFY_ERROR,
                    reason: "bad-txns-inputs-missingorspent".into(),
                    details: None,
                }
            } else {
                e
            }
        };
        let a = self
            .accept(tx, false, false, max_fee_rate)
            .map_err(map_err)?;
        let mut touched: BTreeSet<ScriptHash> = a.entry.script_hashes.iter().copied().collect();
        let mut events = Vec::new();
        for r in a.replaced {
            touched.extend(r.script_hashes.iter().copied());
            events.push(NodeEvent::TxRemoved {
                txid: r.txid,
                script_hashes: r.script_hashes,
            });
        }
        // Core's LimitMempoolSize after an acceptance: entries older than the expiry go, with
        // their descendants (`CTxMemPool::Expire`).
        for r in self.expire_mempool() {
            touched.extend(r.script_hashes.iter().copied());
            events.push(NodeEvent::TxRemoved {
                txid: r.txid,
                script_hashes: r.script_hashes,
            });
        }
        events.push(NodeEvent::TxAdded {
            txid,
            script_hashes: a.entry.script_hashes,
        });
        events.push(NodeEvent::ScriptHashesChanged(
            touched.into_iter().collect(),
        ));
        Ok((txid, events))
    }
}

#[cfg(test)]
mod tests {
    use super::{diagram, fee_at, improves};

    /// The naive oracle: compare both diagrams at every integer size, in floating point.
    fn naive_improves(old: &[(i64, i64)], new: &[(i64, i64)]) -> bool {
        let end = old.last().unwrap().0.max(new.last().unwrap().0);
        let at = |d: &[(i64, i64)], x: i64| {
            let (n, den) = fee_at(d, x);
            n as f64 / den as f64
        };
        let mut better = false;
        for x in 0..=end {
            let (o, n) = (at(old, x), at(new, x));
            if n < o - 1e-9 {
                return false;
            }
            if n > o + 1e-9 {
                better = true;
            }
        }
        better
    }

    #[test]
    fn diagram_comparison_matches_the_naive_oracle() {
        let mut seed = 0x1234_5678_u64;
        let mut next = |m: i64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((seed >> 33) as i64 % m) + 1
        };
        for _ in 0..2_000 {
            let old: Vec<(i64, i64)> = (0..next(3)).map(|_| (next(500), next(60))).collect();
            let new: Vec<(i64, i64)> = (0..next(3)).map(|_| (next(500), next(60))).collect();
            let (d_old, d_new) = (diagram(old.clone()), diagram(new.clone()));
            assert_eq!(
                improves(&d_old, &d_new),
                naive_improves(&d_old, &d_new),
                "{old:?} -> {new:?}"
            );
        }
    }

    #[test]
    fn diagram_sorts_chunks_by_fee_rate() {
        let d = diagram(vec![(100, 100), (1_000, 100), (50, 10)]);
        assert_eq!(d, vec![(0, 0), (100, 1_000), (110, 1_050), (210, 1_150)]);
    }
}
