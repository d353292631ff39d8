//! Signed echo-broadcast, as a pure state machine (messages in, messages out).
//!
//! Every value that must be common to all parties (check openings, degree-`2t` openings, abort
//! decisions, key confirmations) is sent by its sender to every party with a BIP340 Schnorr
//! signature over `(job, round, slot, sender, SHA256(payload))` ([`SignedHeader`]). Each
//! receiver then sends every other party an [`Echo`]: the payload hash it got from each sender.
//!
//! - All echoes agree (missing messages aside): the step goes on with the values received; a
//!   message a receiver did not get is an erasure for it.
//! - Two different hashes are reported for one sender: the step stops for that sender and every
//!   party forwards the signed header it holds ([`EchoRound::conflicts`]). Two validly signed
//!   headers for the same `(job, round, slot)` with different payload hashes are
//!   [`Equivocation`] evidence against the sender, verifiable offline by anyone with its key.
//!   If no such pair appears, an echo lied: the step aborts and nobody is blamed.
//!
//! Payloads are vectors of field elements hashed in one pass ([`payload_hash`]); nothing is
//! hashed or signed per element.
//!
//! [`EchoRound`] is one receiver's bookkeeping; [`Broadcast`] is the whole step as a
//! round-based machine (the three sub-rounds, messages kept until their sub-round, duplicates
//! and replays refused, the round deadline given by the driver), which the check and the
//! evaluation machines run inside ([`crate::mpc::round`] says what a driver does). This is
//! Bracha-style echo-broadcast reduced to the synchronous setting with signatures: consistency
//! among honest parties (or a signed proof against the sender), not termination without a
//! deadline.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::mpc::field::PrimeField;
use crate::mpc::round::{Message, Outgoing, PartyId, Recipient, RoundError, RoundId};
use crate::mpc::sig::{SigningKey, VerifyingKey};

/// Domain tag of the signed digest.
pub const SIGNED_TAG: &[u8] = b"btcmpc/v1/signed-message";
/// Domain tag of payload hashes.
pub const PAYLOAD_TAG: &[u8] = b"btcmpc/v1/payload";

/// Errors of echo-broadcast.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EchoError {
    /// A signature does not verify under the claimed sender's key.
    #[error("bad signature from party {sender} on round {round} slot {slot}")]
    BadSignature {
        /// Claimed sender.
        sender: u32,
        /// Round.
        round: u32,
        /// Slot.
        slot: u32,
    },
    /// A message for another job or round, or from an unknown party.
    #[error("message from party {sender} does not belong to this round (job or round differs, or unknown sender)")]
    WrongRound {
        /// Claimed sender.
        sender: u32,
    },
    /// The payload does not match the signed hash.
    #[error("payload from party {sender} does not match its signed hash")]
    PayloadMismatch {
        /// The sender.
        sender: u32,
    },
}

/// `SHA256(PAYLOAD_TAG || u64 len || canonical encodings)`, streamed in one pass.
pub fn payload_hash<F: PrimeField>(values: &[F]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(PAYLOAD_TAG);
    h.update((values.len() as u64).to_be_bytes());
    // ENCODED_LEN is at most 32 bytes (the four limbs of `to_limbs`).
    let width = F::ENCODED_LEN.max(1);
    let mut buf = [0u8; 4096];
    for chunk in values.chunks(buf.len() / width) {
        for (v, out) in chunk.iter().zip(buf.chunks_exact_mut(width)) {
            out.copy_from_slice(v.to_repr().as_ref());
        }
        h.update(&buf[..chunk.len() * width]);
    }
    h.finalize().into()
}

/// A signed statement "party `sender` sent the payload with hash `payload_hash` in
/// `(job, round, slot)`".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedHeader {
    /// Job identifier (or roster identifier for setup rounds).
    #[serde(with = "hex32")]
    pub job: [u8; 32],
    /// Round number within the job.
    pub round: u32,
    /// Slot within the round (the sender's index for all-to-all rounds).
    pub slot: u32,
    /// The sender's index.
    pub sender: u32,
    /// Hash of the payload ([`payload_hash`]).
    #[serde(with = "hex32")]
    pub payload_hash: [u8; 32],
    /// BIP340 signature over [`SignedHeader::digest`].
    #[serde(with = "hex64")]
    pub signature: [u8; 64],
}

impl SignedHeader {
    /// The digest that is signed.
    pub fn digest(
        job: &[u8; 32],
        round: u32,
        slot: u32,
        sender: u32,
        payload_hash: &[u8; 32],
    ) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(SIGNED_TAG);
        h.update(job);
        h.update(round.to_be_bytes());
        h.update(slot.to_be_bytes());
        h.update(sender.to_be_bytes());
        h.update(payload_hash);
        h.finalize().into()
    }

    /// Signs a payload hash.
    pub fn sign(
        key: &SigningKey,
        job: [u8; 32],
        round: u32,
        slot: u32,
        sender: u32,
        payload_hash: [u8; 32],
    ) -> Self {
        let d = Self::digest(&job, round, slot, sender, &payload_hash);
        SignedHeader {
            job,
            round,
            slot,
            sender,
            payload_hash,
            signature: key.sign_digest(&d),
        }
    }

    /// Verifies the signature under `key`.
    ///
    /// # Errors
    /// [`EchoError::BadSignature`].
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), EchoError> {
        let bad = EchoError::BadSignature {
            sender: self.sender,
            round: self.round,
            slot: self.slot,
        };
        let d = Self::digest(
            &self.job,
            self.round,
            self.slot,
            self.sender,
            &self.payload_hash,
        );
        if key.verify_digest(&d, &self.signature) {
            Ok(())
        } else {
            Err(bad)
        }
    }
}

/// Two validly signed, conflicting messages of one sender for the same `(job, round, slot)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// One message.
    pub first: SignedHeader,
    /// The other.
    pub second: SignedHeader,
}

impl Equivocation {
    /// The accused party.
    pub fn sender(&self) -> u32 {
        self.first.sender
    }

    /// Whether this is valid evidence against the holder of `key`: same job, round, slot and
    /// sender, different payload hashes, both signatures valid.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let (a, b) = (&self.first, &self.second);
        a.job == b.job
            && a.round == b.round
            && a.slot == b.slot
            && a.sender == b.sender
            && a.payload_hash != b.payload_hash
            && a.verify(key).is_ok()
            && b.verify(key).is_ok()
    }
}

/// The payload hashes a receiver got, one per sender (index `sender - 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo {
    /// The echoing party.
    pub from: u32,
    /// Hash received from each sender, `None` if nothing arrived.
    pub hashes: Vec<Option<[u8; 32]>>,
}

/// One receiver's state for one echo-broadcast round.
#[derive(Debug, Clone)]
pub struct EchoRound {
    me: u32,
    job: [u8; 32],
    round: u32,
    keys: Vec<VerifyingKey>,
    got: Vec<Option<SignedHeader>>,
    echoes: Vec<Option<Echo>>,
    evidence: Vec<Equivocation>,
}

impl EchoRound {
    /// A round of `keys.len()` parties (party `i` has key `keys[i - 1]`).
    pub fn new(me: u32, job: [u8; 32], round: u32, keys: Vec<VerifyingKey>) -> Self {
        let n = keys.len();
        EchoRound {
            me,
            job,
            round,
            keys,
            got: vec![None; n],
            echoes: vec![None; n],
            evidence: Vec::new(),
        }
    }

    fn key(&self, sender: u32) -> Option<&VerifyingKey> {
        self.keys.get((sender as usize).checked_sub(1)?)
    }

    pub(crate) fn check(&self, h: &SignedHeader) -> Result<(), EchoError> {
        if h.job != self.job || h.round != self.round || h.slot != h.sender {
            return Err(EchoError::WrongRound { sender: h.sender });
        }
        let key = self
            .key(h.sender)
            .ok_or(EchoError::WrongRound { sender: h.sender })?;
        h.verify(key)
    }

    /// Accepts a message whose payload hashes to `computed`.
    ///
    /// # Errors
    /// [`EchoError::WrongRound`], [`EchoError::BadSignature`], [`EchoError::PayloadMismatch`]:
    /// the message is then ignored (an erasure).
    pub fn receive(&mut self, h: SignedHeader, computed: &[u8; 32]) -> Result<(), EchoError> {
        self.check(&h)?;
        if h.payload_hash != *computed {
            return Err(EchoError::PayloadMismatch { sender: h.sender });
        }
        self.record(h);
        Ok(())
    }

    pub(crate) fn record(&mut self, h: SignedHeader) {
        let slot = &mut self.got[h.sender as usize - 1];
        match slot {
            Some(old) if old.payload_hash != h.payload_hash => {
                let ev = Equivocation {
                    first: old.clone(),
                    second: h,
                };
                if !self.evidence.iter().any(|e| e.sender() == ev.sender()) {
                    self.evidence.push(ev);
                }
            }
            Some(_) => {}
            None => *slot = Some(h),
        }
    }

    /// This party's echo.
    pub fn echo(&self) -> Echo {
        Echo {
            from: self.me,
            hashes: self
                .got
                .iter()
                .map(|g| g.as_ref().map(|h| h.payload_hash))
                .collect(),
        }
    }

    /// Records another party's echo (ignored if malformed).
    pub fn receive_echo(&mut self, e: Echo) {
        if e.hashes.len() == self.keys.len() && e.from >= 1 && e.from as usize <= self.keys.len() {
            let i = e.from as usize - 1;
            self.echoes[i] = Some(e);
        }
    }

    /// Senders for which two different hashes were seen (in this party's messages or in any
    /// echo). Their messages must not be used; forward [`EchoRound::held`] for them.
    pub fn conflicts(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for s in 0..self.keys.len() {
            let mut seen: Option<[u8; 32]> = self.got[s].as_ref().map(|h| h.payload_hash);
            let mut conflict = false;
            for e in self.echoes.iter().flatten() {
                if let Some(h) = e.hashes[s] {
                    match seen {
                        Some(x) if x != h => conflict = true,
                        None => seen = Some(h),
                        _ => {}
                    }
                }
            }
            if conflict || self.evidence.iter().any(|e| e.sender() == s as u32 + 1) {
                out.push(s as u32 + 1);
            }
        }
        out
    }

    /// The signed header this party holds from `sender`, to forward during conflict resolution.
    pub fn held(&self, sender: u32) -> Option<&SignedHeader> {
        self.got.get((sender as usize).checked_sub(1)?)?.as_ref()
    }

    /// Takes a header forwarded during conflict resolution; returns new evidence if it
    /// conflicts with the one held.
    pub fn receive_forwarded(&mut self, h: SignedHeader) -> Option<Equivocation> {
        if self.check(&h).is_err() {
            return None;
        }
        let before = self.evidence.len();
        let i = h.sender as usize - 1;
        if self.got[i].is_none() {
            self.got[i] = Some(h);
            return None;
        }
        self.record(h);
        (self.evidence.len() > before).then(|| self.evidence[before].clone())
    }

    /// Equivocation evidence gathered so far.
    pub fn evidence(&self) -> &[Equivocation] {
        &self.evidence
    }
}

/// Sub-round of a [`Broadcast`]: the signed values.
pub const SUB_VALUES: u8 = 0;
/// Sub-round of a [`Broadcast`]: the echoes.
pub const SUB_ECHOES: u8 = 1;
/// Sub-round of a [`Broadcast`]: the forwarded headers.
pub const SUB_FORWARDS: u8 = 2;
const SUB_DONE: u8 = 3;

/// What a finished [`Broadcast`] agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastOutput<F> {
    /// `(sender, value)` for every sender whose value arrived and was not in conflict, this
    /// party's own included, ascending.
    pub values: Vec<(PartyId, Arc<Vec<F>>)>,
    /// Equivocation evidence gathered (each against a different sender).
    pub evidence: Vec<Equivocation>,
    /// Senders seen in conflict (their values are dropped: erasures), evidence or not.
    pub conflicts: Vec<PartyId>,
}

/// One signed echo-broadcast of `(job, round)` as a round-based machine: every party sends one
/// vector of field elements, signed; three sub-rounds ([`SUB_VALUES`], [`SUB_ECHOES`],
/// [`SUB_FORWARDS`]) as the module docs describe.
///
/// Driver contract: [`Broadcast::start`] once, then [`Broadcast::handle`] every message and
/// [`Broadcast::deadline`] when the deadline of [`Broadcast::waiting`] passes, each returning
/// the messages to send; [`Broadcast::output`] once [`Broadcast::is_done`]. A message of a
/// later sub-round of the same round is kept until this party gets there; one of a sub-round
/// it has left is refused ([`RoundError::PastRound`]); a second one for a sub-round
/// ([`RoundError::Duplicate`]) is refused whatever it holds (a conflicting signed value is kept
/// as evidence all the same).
#[derive(Debug, Clone)]
pub struct Broadcast<F> {
    me: PartyId,
    n: usize,
    job: [u8; 32],
    round: u32,
    ignored: BTreeSet<PartyId>,
    echo: EchoRound,
    payloads: Vec<Option<Arc<Vec<F>>>>,
    sub: u8,
    started: bool,
    heard: [Vec<bool>; 3],
    early: Vec<(PartyId, Message<F>)>,
}

impl<F: PrimeField> Broadcast<F> {
    /// A broadcast of `(job, round)` among `keys.len()` parties (party `i` has `keys[i - 1]`);
    /// parties in `ignored` (excluded or convicted earlier) are neither waited for nor heard.
    pub fn new(
        me: PartyId,
        job: [u8; 32],
        round: u32,
        keys: Vec<VerifyingKey>,
        ignored: BTreeSet<PartyId>,
    ) -> Self {
        let n = keys.len();
        Broadcast {
            me,
            n,
            job,
            round,
            ignored,
            echo: EchoRound::new(me.get(), job, round, keys),
            payloads: vec![None; n],
            sub: SUB_VALUES,
            started: false,
            heard: [vec![false; n], vec![false; n], vec![false; n]],
            early: Vec::new(),
        }
    }

    /// The broadcast's round.
    pub fn round(&self) -> u32 {
        self.round
    }

    /// Stops waiting for `party` (found absent from an earlier broadcast of the same step): it
    /// is neither waited for nor heard from now on, and a value it sent is dropped from the
    /// output (an erasure). Returns the messages of the sub-rounds this completes. This
    /// party itself is never ignored.
    pub fn ignore(&mut self, party: PartyId) -> Vec<Outgoing<F>> {
        if party == self.me || !self.ignored.insert(party) {
            return Vec::new();
        }
        self.early.retain(|(from, _)| *from != party);
        self.advance()
    }

    /// Signs and sends this party's value (a second call sends nothing).
    pub fn start(&mut self, key: &SigningKey, payload: Vec<F>) -> Vec<Outgoing<F>> {
        if self.started {
            return Vec::new();
        }
        self.started = true;
        let me = self.me.get();
        let hash = payload_hash(&payload);
        let header = SignedHeader::sign(key, self.job, self.round, me, me, hash);
        let payload = Arc::new(payload);
        // Our own value: hashed once, just above.
        self.echo.record(header.clone());
        self.payloads[self.me.slot()] = Some(payload.clone());
        let mut out = vec![Outgoing {
            to: Recipient::All,
            msg: Message::Value { header, payload },
        }];
        out.extend(self.advance());
        out
    }

    /// The sub-round waited in, `None` once done.
    pub fn waiting(&self) -> Option<RoundId> {
        (self.sub < SUB_DONE).then_some(RoundId {
            round: self.round,
            sub: self.sub,
        })
    }

    /// Whether all three sub-rounds are over.
    pub fn is_done(&self) -> bool {
        self.sub == SUB_DONE
    }

    fn expected(&self) -> impl Iterator<Item = PartyId> + '_ {
        PartyId::all(self.n).filter(move |p| *p != self.me && !self.ignored.contains(p))
    }

    /// `(job, round, sub)` of a broadcast message, `None` for other kinds.
    pub fn slot_of(msg: &Message<F>) -> Option<([u8; 32], u32, u8)> {
        match msg {
            Message::Value { header, .. } => Some((header.job, header.round, SUB_VALUES)),
            Message::Echo { job, round, .. } => Some((*job, *round, SUB_ECHOES)),
            Message::Forward { job, round, .. } => Some((*job, *round, SUB_FORWARDS)),
            _ => None,
        }
    }

    /// Delivers a message; returns the messages to send.
    ///
    /// # Errors
    /// Refusals only ([`RoundError::is_refusal`]): [`RoundError::NotParticipant`],
    /// [`RoundError::Foreign`], [`RoundError::PastRound`], [`RoundError::TooEarly`],
    /// [`RoundError::Duplicate`], [`RoundError::Malformed`], [`RoundError::Echo`].
    pub fn handle(
        &mut self,
        from: PartyId,
        msg: Message<F>,
    ) -> Result<Vec<Outgoing<F>>, RoundError> {
        if from == self.me || from.point() > self.n || self.ignored.contains(&from) {
            return Err(RoundError::NotParticipant { from });
        }
        let kind = msg.kind();
        let (job, round, sub) = Self::slot_of(&msg).ok_or(RoundError::Foreign { from, kind })?;
        if job != self.job {
            return Err(RoundError::Foreign { from, kind });
        }
        if round < self.round {
            return Err(RoundError::PastRound {
                from,
                kind,
                round,
                sub,
            });
        }
        if round > self.round {
            return Err(RoundError::TooEarly { from, kind, round });
        }
        if self.heard[sub as usize][from.slot()] {
            if let Message::Value { header, payload } = &msg {
                // A second signed value for the slot: evidence if it differs.
                if header.sender == from.get()
                    && self.echo.check(header).is_ok()
                    && header.payload_hash == payload_hash(payload)
                {
                    self.echo.record(header.clone());
                }
            }
            return Err(RoundError::Duplicate {
                from,
                kind,
                round,
                sub,
            });
        }
        if sub < self.sub {
            return Err(RoundError::PastRound {
                from,
                kind,
                round,
                sub,
            });
        }
        self.validate(from, &msg)?;
        if sub > self.sub {
            self.heard[sub as usize][from.slot()] = true;
            self.early.push((from, msg));
            return Ok(Vec::new());
        }
        self.process(from, msg)?;
        Ok(self.advance())
    }

    /// Cheap shape checks, before a message is kept for later.
    fn validate(&self, from: PartyId, msg: &Message<F>) -> Result<(), RoundError> {
        let kind = msg.kind();
        let bad = |reason: String| RoundError::Malformed { from, kind, reason };
        match msg {
            Message::Value { header, .. }
                if header.sender != from.get() || header.slot != header.sender =>
            {
                Err(bad(format!(
                    "header names sender {} slot {}",
                    header.sender, header.slot
                )))
            }
            Message::Echo { hashes, .. } if hashes.len() != self.n => Err(bad(format!(
                "{} hashes for {} parties",
                hashes.len(),
                self.n
            ))),
            Message::Forward { headers, .. } if headers.len() > self.n => Err(bad(format!(
                "{} headers for {} parties",
                headers.len(),
                self.n
            ))),
            _ => Ok(()),
        }
    }

    fn process(&mut self, from: PartyId, msg: Message<F>) -> Result<(), RoundError> {
        match msg {
            Message::Value { header, payload } => {
                let computed = payload_hash(&payload);
                self.echo.receive(header, &computed)?;
                self.payloads[from.slot()] = Some(payload);
                self.heard[0][from.slot()] = true;
            }
            Message::Echo { hashes, .. } => {
                self.echo.receive_echo(Echo {
                    from: from.get(),
                    hashes,
                });
                self.heard[1][from.slot()] = true;
            }
            Message::Forward { headers, .. } => {
                for h in headers {
                    self.echo.receive_forwarded(h);
                }
                self.heard[2][from.slot()] = true;
            }
            other => {
                return Err(RoundError::Foreign {
                    from,
                    kind: other.kind(),
                })
            }
        }
        Ok(())
    }

    /// The deadline of `round` passed: moves on without the missing messages. Stale deadlines
    /// are ignored.
    pub fn deadline(&mut self, round: RoundId) -> Vec<Outgoing<F>> {
        if !self.started || self.waiting() != Some(round) {
            return Vec::new();
        }
        let mut out = self.next_sub();
        out.extend(self.advance());
        out
    }

    /// Moves through every sub-round already complete.
    fn advance(&mut self) -> Vec<Outgoing<F>> {
        let mut out = Vec::new();
        while self.started && self.sub < SUB_DONE {
            let sub = self.sub as usize;
            if !self.expected().all(|p| self.heard[sub][p.slot()]) {
                break;
            }
            out.extend(self.next_sub());
        }
        out
    }

    fn next_sub(&mut self) -> Vec<Outgoing<F>> {
        let msg = match self.sub {
            SUB_VALUES => Message::Echo {
                job: self.job,
                round: self.round,
                hashes: self.echo.echo().hashes,
            },
            SUB_ECHOES => Message::Forward {
                job: self.job,
                round: self.round,
                headers: self
                    .echo
                    .conflicts()
                    .into_iter()
                    .filter_map(|s| self.echo.held(s).cloned())
                    .collect(),
            },
            _ => {
                self.sub = SUB_DONE;
                return Vec::new();
            }
        };
        self.sub += 1;
        let sub = self.sub;
        let early = std::mem::take(&mut self.early);
        for (from, m) in early {
            if Self::slot_of(&m).map(|s| s.2) == Some(sub) {
                if let Err(e) = self.process(from, m) {
                    tracing::debug!(%from, error = %e, "kept message refused");
                }
            } else {
                self.early.push((from, m));
            }
        }
        vec![Outgoing {
            to: Recipient::All,
            msg,
        }]
    }

    /// Whether `sender`'s value reached this party (its own included), whether or not the
    /// output keeps it (a conflict or [`Broadcast::ignore`] drops it from there).
    pub fn received(&self, sender: PartyId) -> bool {
        self.payloads
            .get(sender.slot())
            .is_some_and(|p| p.is_some())
    }

    /// The signed header this party holds for `sender`'s value (its own included), if any:
    /// the evidence behind a value it decoded.
    pub fn header(&self, sender: PartyId) -> Option<&SignedHeader> {
        self.echo.held(sender.get())
    }

    /// What the parties agreed, once [`Broadcast::is_done`] (`None` before).
    pub fn output(&self) -> Option<BroadcastOutput<F>> {
        if !self.is_done() {
            return None;
        }
        let conflicts: Vec<PartyId> = self
            .echo
            .conflicts()
            .into_iter()
            .filter_map(|s| PartyId::new(s as usize, self.n).ok())
            .collect();
        Some(BroadcastOutput {
            values: self
                .payloads
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let id = PartyId::new(i + 1, self.n).ok()?;
                    (!conflicts.contains(&id) && !self.ignored.contains(&id))
                        .then(|| Some((id, p.clone()?)))?
                })
                .collect(),
            evidence: self.echo.evidence().to_vec(),
            conflicts,
        })
    }
}

pub(crate) mod hex32 {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let b = hex::decode(&s).map_err(D::Error::custom)?;
        b.try_into()
            .map_err(|_| D::Error::custom("expected 32 bytes of hex"))
    }
}

mod hex64 {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let s = String::deserialize(d)?;
        let b = hex::decode(&s).map_err(D::Error::custom)?;
        b.try_into()
            .map_err(|_| D::Error::custom("expected 64 bytes of hex"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::field::Mersenne127;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn keys(n: usize) -> (Vec<SigningKey>, Vec<VerifyingKey>) {
        let mut rng = StdRng::seed_from_u64(5);
        let sk: Vec<SigningKey> = (0..n).map(|_| SigningKey::random(&mut rng)).collect();
        let vk = sk.iter().map(|k| *k.verifying_key()).collect();
        (sk, vk)
    }

    #[test]
    fn honest_round_agrees() {
        let (sk, vk) = keys(4);
        let job = [1u8; 32];
        let payloads: Vec<Vec<Mersenne127>> =
            (0..4).map(|i| vec![Mersenne127::from_u64(i); 3]).collect();
        let mut rounds: Vec<EchoRound> = (1..=4)
            .map(|me| EchoRound::new(me, job, 7, vk.clone()))
            .collect();
        for (s, p) in payloads.iter().enumerate() {
            let h = payload_hash(p);
            let msg = SignedHeader::sign(&sk[s], job, 7, s as u32 + 1, s as u32 + 1, h);
            for r in rounds.iter_mut() {
                r.receive(msg.clone(), &h).unwrap();
            }
        }
        let echoes: Vec<Echo> = rounds.iter().map(EchoRound::echo).collect();
        for r in rounds.iter_mut() {
            for e in &echoes {
                r.receive_echo(e.clone());
            }
            assert!(r.conflicts().is_empty());
        }
    }

    #[test]
    fn equivocation_is_proved_and_checked_offline() {
        let (sk, vk) = keys(4);
        let job = [2u8; 32];
        let a = vec![Mersenne127::from_u64(1)];
        let b = vec![Mersenne127::from_u64(2)];
        let (ha, hb) = (payload_hash(&a), payload_hash(&b));
        assert_ne!(ha, hb);
        // Party 3 sends `a` to parties 1 and 2, `b` to party 4.
        let ma = SignedHeader::sign(&sk[2], job, 1, 3, 3, ha);
        let mb = SignedHeader::sign(&sk[2], job, 1, 3, 3, hb);
        let mut rounds: Vec<EchoRound> = (1..=4)
            .map(|me| EchoRound::new(me, job, 1, vk.clone()))
            .collect();
        for (i, r) in rounds.iter_mut().enumerate() {
            let (m, h) = if i == 3 { (&mb, &hb) } else { (&ma, &ha) };
            r.receive(m.clone(), h).unwrap();
        }
        let echoes: Vec<Echo> = rounds.iter().map(EchoRound::echo).collect();
        for r in rounds.iter_mut() {
            for e in &echoes {
                r.receive_echo(e.clone());
            }
            assert_eq!(r.conflicts(), [3]);
        }
        // Resolution: everyone forwards what it holds from party 3.
        let held: Vec<SignedHeader> = rounds.iter().map(|r| r.held(3).unwrap().clone()).collect();
        for r in rounds.iter_mut() {
            for h in &held {
                r.receive_forwarded(h.clone());
            }
            let ev = &r.evidence()[0];
            assert_eq!(ev.sender(), 3);
            assert!(ev.verify(&vk[2]));
            assert!(!ev.verify(&vk[1]), "not evidence against anyone else");
        }
        // Tampered evidence does not verify; evidence survives JSON.
        let mut ev = rounds[0].evidence()[0].clone();
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(serde_json::from_str::<Equivocation>(&json).unwrap(), ev);
        ev.second.payload_hash = ev.first.payload_hash;
        assert!(!ev.verify(&vk[2]));
        let mut ev2 = rounds[0].evidence()[0].clone();
        ev2.second.round = 2;
        assert!(!ev2.verify(&vk[2]));
    }

    #[test]
    fn forged_and_misplaced_messages_are_refused() {
        let (sk, vk) = keys(4);
        let job = [3u8; 32];
        let p = vec![Mersenne127::from_u64(9)];
        let h = payload_hash(&p);
        let mut r = EchoRound::new(1, job, 4, vk);
        // Signed by party 2 but claiming to be party 3.
        let mut forged = SignedHeader::sign(&sk[1], job, 4, 3, 3, h);
        assert!(matches!(
            r.receive(forged.clone(), &h),
            Err(EchoError::BadSignature { sender: 3, .. })
        ));
        forged.signature[0] ^= 1;
        assert!(r.receive(forged, &h).is_err());
        let other_round = SignedHeader::sign(&sk[1], job, 5, 2, 2, h);
        assert!(matches!(
            r.receive(other_round, &h),
            Err(EchoError::WrongRound { sender: 2 })
        ));
        let ok = SignedHeader::sign(&sk[1], job, 4, 2, 2, h);
        assert!(matches!(
            r.receive(ok.clone(), &[0u8; 32]),
            Err(EchoError::PayloadMismatch { sender: 2 })
        ));
        r.receive(ok, &h).unwrap();
        let unknown = SignedHeader::sign(&sk[1], job, 4, 9, 9, h);
        assert!(r.receive(unknown, &h).is_err());
    }
}
