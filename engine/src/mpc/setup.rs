//! Roster-time PRSS key agreement as a round-based machine ([`Setup`]).
//!
//! Construction (replicated secret sharing of PRF keys, Cramer-Damgård-Ishai, "Share
//! conversion, pseudorandom secret-sharing and applications to secure computation", TCC 2005;
//! see [`crate::mpc::prss`]): for every set `A` of `n - t` parties, each member contributes 32
//! random bytes to the others, and `k_A` is the hash of all contributions. Each attempt has
//! three sub-rounds:
//!
//! 0. **Contributions**: private, each signed (BIP340) over its hash for
//!    `(roster, setup round of (attempt, set), sender)`; an honest member signs one value per
//!    set and attempt.
//! 1. **Confirmations**: every party sends every other `SHA256(k_A)` for each set it is in.
//! 2. **Accusations**: every party sends every other the signed contributions it received for
//!    the sets whose confirmations disagree with its key (maybe none). Two validly signed,
//!    different contributions of one sender for one set are [`Equivocation`] evidence.
//!
//! If nobody saw a disagreement the keys are final. Otherwise the convicted senders are
//! excluded (their contributions fixed to zero, public: [`KeyAgreement::exclude`]) and a new
//! attempt runs with fresh contributions (its own round numbers, so nothing of an earlier
//! attempt reads as equivocation). A disagreement without an equivocator ends the setup with
//! [`RoundError::Setup`].
//!
//! What a driver persists to resume: the inputs of [`Setup::new`] (the seed included: the
//! contributions of attempt `a` are drawn from `SHA256(tag || seed || a)`) and the messages
//! delivered; re-created and re-fed, the machine signs the same contributions again.

use std::collections::BTreeSet;

use crate::mpc::sig::{SigningKey, VerifyingKey};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use crate::mpc::dealing::Hash32;
use crate::mpc::echo::{Equivocation, SignedHeader};
use crate::mpc::field::PrimeField;
use crate::mpc::prss::{Confirmation, Contribution, KeyAgreement, Prss};
use crate::mpc::round::{
    Machine, Message, Outgoing, PartyId, Recipient, RoundError, RoundId, SignedContribution, Step,
};

/// Round numbers of the signed contributions: `SETUP_ROUND + (attempt << 12) + set`.
pub const SETUP_ROUND: u32 = 1 << 20;
/// Domain tag of the contribution hash that is signed.
pub const CONTRIBUTION_TAG: &[u8] = b"btcmpc/v1/prss-contribution";
/// Domain tag of the per-attempt randomness.
pub const SEED_TAG: &[u8] = b"btcmpc/v1/prss-setup-seed";

const SUB_CONTRIBUTIONS: u8 = 0;
const SUB_CONFIRMATIONS: u8 = 1;
const SUB_ACCUSATIONS: u8 = 2;

/// The round number a contribution of `set` is signed for in `attempt`.
pub fn setup_round(attempt: u32, set: u32) -> u32 {
    SETUP_ROUND + (attempt << 12) + set
}

/// `SHA256(CONTRIBUTION_TAG || value)`, what a contribution's header signs.
pub fn contribution_hash(value: &Hash32) -> Hash32 {
    Sha256::new()
        .chain_update(CONTRIBUTION_TAG)
        .chain_update(value)
        .finalize()
        .into()
}

/// What a setup ends with.
#[derive(Debug, Clone)]
pub struct SetupOutput<F> {
    /// This party's PRSS generator; `None` if this party was itself excluded.
    pub prss: Option<Prss<F>>,
    /// Parties excluded as equivocators.
    pub excluded: BTreeSet<PartyId>,
    /// The evidence against them.
    pub evidence: Vec<Equivocation>,
}

/// One party's side of the key agreement (see the module docs).
pub struct Setup<F> {
    n: usize,
    t: usize,
    me: PartyId,
    roster: Hash32,
    keys: Vec<VerifyingKey>,
    signer: SigningKey,
    seed: Hash32,
    attempt: u32,
    sub: u8,
    excluded: BTreeSet<PartyId>,
    evidence: Vec<Equivocation>,
    ka: Option<KeyAgreement>,
    mail: Vec<SignedContribution>,
    got: BTreeSet<(u32, PartyId)>,
    confirmations: Vec<Confirmation>,
    mismatched: Vec<usize>,
    accused: Vec<SignedContribution>,
    any_mismatch: bool,
    heard: [BTreeSet<PartyId>; 3],
    early: Vec<(PartyId, Message<F>)>,
    done: bool,
}

impl<F> std::fmt::Debug for Setup<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("me", &self.me)
            .field("attempt", &self.attempt)
            .field("sub", &self.sub)
            .field("excluded", &self.excluded)
            .finish_non_exhaustive()
    }
}

impl<F: PrimeField> Setup<F> {
    /// The setup of party `me` of the committee with keys `keys` (`keys[i - 1]` for party
    /// `i`), threshold `t`, roster identifier `roster`; `seed` is this party's secret
    /// randomness (persist it).
    ///
    /// # Errors
    /// [`RoundError::BadParty`] if `me` is not in the committee; [`RoundError::Prss`] for an
    /// unsupported `n`, `t`.
    pub fn new(
        me: PartyId,
        t: usize,
        roster: Hash32,
        keys: Vec<VerifyingKey>,
        signer: SigningKey,
        seed: Hash32,
    ) -> Result<Self, RoundError> {
        let n = keys.len();
        PartyId::new(me.point(), n)?;
        crate::mpc::prss::key_sets(n, t)?;
        Ok(Setup {
            n,
            t,
            me,
            roster,
            keys,
            signer,
            seed,
            attempt: 0,
            sub: SUB_CONTRIBUTIONS,
            excluded: BTreeSet::new(),
            evidence: Vec::new(),
            ka: None,
            mail: Vec::new(),
            got: BTreeSet::new(),
            confirmations: Vec::new(),
            mismatched: Vec::new(),
            accused: Vec::new(),
            any_mismatch: false,
            heard: Default::default(),
            early: Vec::new(),
            done: false,
        })
    }

    fn others(&self) -> impl Iterator<Item = PartyId> + '_ {
        PartyId::all(self.n).filter(move |p| *p != self.me && !self.excluded.contains(p))
    }

    /// Starts attempt `self.attempt`: fresh contributions.
    fn begin(&mut self) -> Result<Vec<Outgoing<F>>, RoundError> {
        let mut rng = ChaCha20Rng::from_seed(
            Sha256::new()
                .chain_update(SEED_TAG)
                .chain_update(self.seed)
                .chain_update(self.attempt.to_be_bytes())
                .finalize()
                .into(),
        );
        let (mut ka, out) = KeyAgreement::new(self.n, self.t, self.me.get(), &mut rng)?;
        for x in &self.excluded {
            ka.exclude(x.get());
        }
        self.ka = Some(ka);
        self.sub = SUB_CONTRIBUTIONS;
        self.mail.clear();
        self.got.clear();
        self.confirmations.clear();
        self.mismatched.clear();
        self.accused.clear();
        self.any_mismatch = false;
        self.heard = Default::default();
        let mut send = Vec::new();
        let mut signed: Vec<(usize, SignedHeader)> = Vec::new();
        for c in out {
            let Ok(to) = PartyId::new(c.to as usize, self.n) else {
                continue;
            };
            if self.excluded.contains(&to) {
                continue;
            }
            let header = match signed.iter().find(|x| x.0 == c.set) {
                Some(x) => x.1.clone(),
                None => {
                    let h = SignedHeader::sign(
                        &self.signer,
                        self.roster,
                        setup_round(self.attempt, c.set as u32),
                        self.me.get(),
                        self.me.get(),
                        contribution_hash(&c.value),
                    );
                    signed.push((c.set, h.clone()));
                    h
                }
            };
            send.push(Outgoing {
                to: Recipient::One(to),
                msg: Message::Contribution(SignedContribution {
                    set: c.set as u32,
                    to,
                    value: c.value,
                    header,
                }),
            });
        }
        Ok(send)
    }

    /// `(attempt, sub)` of a setup message.
    fn slot_of(msg: &Message<F>) -> Option<(u32, u8)> {
        match msg {
            Message::Contribution(c) => Some((
                c.header.round.checked_sub(SETUP_ROUND)? >> 12,
                SUB_CONTRIBUTIONS,
            )),
            Message::Confirmations { attempt, .. } => Some((*attempt, SUB_CONFIRMATIONS)),
            Message::Accusation { attempt, .. } => Some((*attempt, SUB_ACCUSATIONS)),
            _ => None,
        }
    }

    /// Whether `c` is a contribution for this roster and `attempt` whose header signs its
    /// value; with `signature`, also whether the signature verifies under the sender's key.
    /// Contributions from the transport's authenticated sender are not verified one by one:
    /// signatures only matter as evidence, and [`Equivocation::verify`] checks them then.
    fn valid(&self, c: &SignedContribution, attempt: u32, signature: bool) -> bool {
        let h = &c.header;
        h.job == self.roster
            && h.slot == h.sender
            && h.round == setup_round(attempt, c.set)
            && h.payload_hash == contribution_hash(&c.value)
            && (!signature
                || self
                    .keys
                    .get((h.sender as usize).wrapping_sub(1))
                    .is_some_and(|k| h.verify(k).is_ok()))
    }

    fn process(&mut self, from: PartyId, msg: Message<F>) -> Result<(), RoundError> {
        let kind = msg.kind();
        let malformed = |reason: &str| RoundError::Malformed {
            from,
            kind,
            reason: reason.into(),
        };
        match msg {
            Message::Contribution(c) => {
                if c.to != self.me || c.header.sender != from.get() {
                    return Err(malformed("not from its sender to this party"));
                }
                if !self.valid(&c, self.attempt, false) {
                    return Err(malformed("hash or round does not match"));
                }
                if self.got.contains(&(c.set, from)) {
                    return Err(RoundError::Duplicate {
                        from,
                        kind,
                        round: self.attempt,
                        sub: SUB_CONTRIBUTIONS,
                    });
                }
                let ka = self
                    .ka
                    .as_mut()
                    .ok_or(RoundError::Finished { from, kind })?;
                ka.receive(&Contribution {
                    set: c.set as usize,
                    from: from.get(),
                    to: self.me.get(),
                    value: c.value,
                })
                .map_err(|e| malformed(&e.to_string()))?;
                self.got.insert((c.set, from));
                self.mail.push(c);
            }
            Message::Confirmations { keys, .. } => {
                if keys.len() > crate::mpc::prss::key_sets(self.n, self.t)?.len() {
                    return Err(malformed("more confirmations than sets"));
                }
                self.confirmations
                    .extend(keys.into_iter().map(|(set, key_hash)| Confirmation {
                        set: set as usize,
                        from: from.get(),
                        key_hash,
                    }));
                self.heard[1].insert(from);
            }
            Message::Accusation { contributions, .. } => {
                if !contributions.is_empty() {
                    self.any_mismatch = true;
                }
                let attempt = self.attempt;
                let valid: Vec<SignedContribution> = contributions
                    .into_iter()
                    .filter(|c| self.valid(c, attempt, true))
                    .take(self.n * self.n * 256)
                    .collect();
                self.accused.extend(valid);
                self.heard[2].insert(from);
            }
            _ => return Err(RoundError::Foreign { from, kind }),
        }
        Ok(())
    }

    /// Whether every message of the current sub-round arrived.
    fn complete(&self) -> bool {
        match self.sub {
            SUB_CONTRIBUTIONS => {
                let Some(ka) = &self.ka else { return false };
                ka.sets().iter().enumerate().all(|(s, members)| {
                    !members.contains(&self.me.get())
                        || members.iter().all(|m| {
                            let Ok(p) = PartyId::new(*m as usize, self.n) else {
                                return true;
                            };
                            p == self.me
                                || self.excluded.contains(&p)
                                || self.got.contains(&(s as u32, p))
                        })
                })
            }
            sub => self.others().all(|p| self.heard[sub as usize].contains(&p)),
        }
    }

    /// Ends the current sub-round (complete or past its deadline).
    fn next_sub(&mut self) -> Result<Step<F, SetupOutput<F>>, RoundError> {
        let attempt = self.attempt;
        match self.sub {
            SUB_CONTRIBUTIONS => {
                let ka = self
                    .ka
                    .as_mut()
                    .ok_or_else(|| RoundError::Setup("no agreement".into()))?;
                let keys: Vec<(u32, Hash32)> = ka
                    .derive()?
                    .into_iter()
                    .map(|c| (c.set as u32, c.key_hash))
                    .collect();
                self.sub = SUB_CONFIRMATIONS;
                Ok(Step::send(vec![Outgoing {
                    to: Recipient::All,
                    msg: Message::Confirmations { attempt, keys },
                }]))
            }
            SUB_CONFIRMATIONS => {
                let ka = self
                    .ka
                    .as_ref()
                    .ok_or_else(|| RoundError::Setup("no agreement".into()))?;
                self.mismatched = ka.mismatches(&self.confirmations)?;
                if !self.mismatched.is_empty() {
                    self.any_mismatch = true;
                }
                let contributions = self
                    .mail
                    .iter()
                    .filter(|c| self.mismatched.contains(&(c.set as usize)))
                    .cloned()
                    .collect();
                self.sub = SUB_ACCUSATIONS;
                Ok(Step::send(vec![Outgoing {
                    to: Recipient::All,
                    msg: Message::Accusation {
                        attempt,
                        contributions,
                    },
                }]))
            }
            _ => self.conclude(),
        }
    }

    /// After the accusations: the keys, or exclusion and a new attempt.
    fn conclude(&mut self) -> Result<Step<F, SetupOutput<F>>, RoundError> {
        if !self.any_mismatch {
            let ka = self
                .ka
                .take()
                .ok_or_else(|| RoundError::Setup("no agreement".into()))?;
            let prss = ka.finish::<F>(&self.confirmations)?;
            self.done = true;
            return Ok(Step {
                send: Vec::new(),
                output: Some(SetupOutput {
                    prss: Some(prss),
                    excluded: self.excluded.clone(),
                    evidence: self.evidence.clone(),
                }),
            });
        }
        let pool: Vec<&SignedContribution> = self.mail.iter().chain(&self.accused).collect();
        let mut convicted = BTreeSet::new();
        for (i, c) in pool.iter().enumerate() {
            let Ok(sender) = PartyId::new(c.header.sender as usize, self.n) else {
                continue;
            };
            if convicted.contains(&sender) || self.excluded.contains(&sender) {
                continue;
            }
            if let Some(d) = pool[i + 1..].iter().find(|d| {
                d.set == c.set
                    && d.header.sender == c.header.sender
                    && d.header.payload_hash != c.header.payload_hash
            }) {
                let ev = Equivocation {
                    first: c.header.clone(),
                    second: d.header.clone(),
                };
                if ev.verify(&self.keys[sender.slot()]) {
                    convicted.insert(sender);
                    self.evidence.push(ev);
                }
            }
        }
        if convicted.is_empty() {
            return Err(RoundError::Setup(format!(
                "key confirmations disagree in attempt {} without an equivocator",
                self.attempt
            )));
        }
        self.excluded.extend(convicted);
        if self.excluded.contains(&self.me) {
            self.done = true;
            return Ok(Step {
                send: Vec::new(),
                output: Some(SetupOutput {
                    prss: None,
                    excluded: self.excluded.clone(),
                    evidence: self.evidence.clone(),
                }),
            });
        }
        if self.excluded.len() > self.t {
            return Err(RoundError::Setup(format!(
                "{} equivocators exceed t = {}",
                self.excluded.len(),
                self.t
            )));
        }
        self.attempt += 1;
        let send = self.begin()?;
        Ok(Step::send(send))
    }

    /// Moves through every complete sub-round, delivering kept messages as it goes.
    fn advance(
        &mut self,
        mut step: Step<F, SetupOutput<F>>,
    ) -> Result<Step<F, SetupOutput<F>>, RoundError> {
        loop {
            // Kept messages of the current (attempt, sub).
            let now = (self.attempt, self.sub);
            let early = std::mem::take(&mut self.early);
            for (from, m) in early {
                if Self::slot_of(&m) == Some(now) && !self.excluded.contains(&from) {
                    if let Err(e) = self.process(from, m) {
                        tracing::debug!(%from, error = %e, "kept setup message refused");
                    }
                } else if Self::slot_of(&m).is_some_and(|s| s > now) {
                    self.early.push((from, m));
                }
            }
            if self.done || !self.complete() {
                return Ok(step);
            }
            let next = self.next_sub()?;
            step.send.extend(next.send);
            if next.output.is_some() {
                step.output = next.output;
                return Ok(step);
            }
        }
    }
}

impl<F: PrimeField> Machine<F> for Setup<F> {
    type Output = SetupOutput<F>;

    fn start(&mut self) -> Result<Step<F, SetupOutput<F>>, RoundError> {
        if self.ka.is_some() || self.done {
            return Ok(Step::none());
        }
        let send = self.begin()?;
        self.advance(Step::send(send))
    }

    fn handle(
        &mut self,
        from: PartyId,
        msg: Message<F>,
    ) -> Result<Step<F, SetupOutput<F>>, RoundError> {
        let kind = msg.kind();
        if from == self.me || from.point() > self.n || self.excluded.contains(&from) {
            return Err(RoundError::NotParticipant { from });
        }
        if self.done {
            return Err(RoundError::Finished { from, kind });
        }
        let (attempt, sub) = Self::slot_of(&msg).ok_or(RoundError::Foreign { from, kind })?;
        if (attempt, sub) < (self.attempt, self.sub) {
            let dup = match sub {
                SUB_CONTRIBUTIONS => false,
                s => attempt == self.attempt && self.heard[s as usize].contains(&from),
            };
            return Err(if dup {
                RoundError::Duplicate {
                    from,
                    kind,
                    round: attempt,
                    sub,
                }
            } else {
                RoundError::PastRound {
                    from,
                    kind,
                    round: attempt,
                    sub,
                }
            });
        }
        if attempt > self.attempt + 1 {
            return Err(RoundError::TooEarly {
                from,
                kind,
                round: attempt,
            });
        }
        if (attempt, sub) > (self.attempt, self.sub) {
            if self.early.len() >= 4 * self.n * self.n * 256 {
                return Err(RoundError::TooEarly {
                    from,
                    kind,
                    round: attempt,
                });
            }
            if sub != SUB_CONTRIBUTIONS
                && self
                    .early
                    .iter()
                    .any(|(f, m)| *f == from && Self::slot_of(m) == Some((attempt, sub)))
            {
                return Err(RoundError::Duplicate {
                    from,
                    kind,
                    round: attempt,
                    sub,
                });
            }
            self.early.push((from, msg));
            return Ok(Step::none());
        }
        if sub != SUB_CONTRIBUTIONS && self.heard[sub as usize].contains(&from) {
            return Err(RoundError::Duplicate {
                from,
                kind,
                round: attempt,
                sub,
            });
        }
        self.process(from, msg)?;
        self.advance(Step::none())
    }

    fn deadline(&mut self, round: RoundId) -> Result<Step<F, SetupOutput<F>>, RoundError> {
        if self.waiting() != Some(round) || self.ka.is_none() {
            return Ok(Step::none());
        }
        let step = self.next_sub()?;
        if step.output.is_some() {
            return Ok(step);
        }
        self.advance(step)
    }

    fn waiting(&self) -> Option<RoundId> {
        (!self.done).then_some(RoundId {
            round: self.attempt,
            sub: self.sub,
        })
    }
}
