//! What every protocol state machine of the engine shares: party identifiers, the wire
//! [`Message`], what a machine asks its driver to send ([`Outgoing`], [`Step`]) and the typed
//! refusals of a message ([`RoundError`]).
//!
//! # The machines and their drivers
//!
//! Every protocol of a party is a round-based state machine with no thread, queue, timer or
//! clock inside (the shape of FROST's round functions and LDK's message handlers):
//!
//! - [`crate::mpc::echo::Broadcast`]: one signed echo-broadcast (one value per party);
//! - [`crate::mpc::setup::Setup`]: PRSS key agreement with signed contributions, key
//!   confirmations and exclusion of equivocators;
//! - [`crate::mpc::check::CheckMachine`]: the store check and the mask check, with BGW
//!   complaint resolution;
//! - [`crate::mpc::eval::EvalMachine`]: evaluation of a plan with Damgård-Nielsen degree-`2t`
//!   openings and openings of degree-`t` shares to the committee (comparisons, gates).
//!
//! Each offers `start()`, `handle(from, msg)` and `deadline(round)`, all returning a
//! [`Step`]: the messages to send and, once, the output. A driver must:
//!
//! 1. **Deliver** every message from an authenticated peer with [`Machine::handle`]; a
//!    [`RoundError`] that [`is a refusal`](RoundError::is_refusal) leaves the machine as it was
//!    (log it and go on), any other error ends the machine.
//! 2. **Keep the deadline**: [`Machine::waiting`] names the round the machine waits in; when
//!    the synchronous network's deadline of that round passes, call [`Machine::deadline`]: the
//!    peers not heard from are erasures for that round. A stale deadline (the machine has moved
//!    on) is ignored, so a driver may call it freely.
//! 3. **Persist before sending**: every outgoing message is deterministic given the machine's
//!    inputs and the messages delivered to it so far (signatures are BIP340 with zero auxiliary
//!    randomness, secrets come from a persisted seed). A driver persists the inputs, every
//!    message it delivered (in order), and every message it sends before sending it; after a
//!    restart it re-creates the machine from the inputs, re-delivers the messages, and sends the
//!    persisted bytes again: the machine re-emits byte-identical messages for every slot, so a
//!    restarted party never signs a second version of a slot (never looks like an
//!    equivocator).
//!
//! The in-process committee (`crate::mpc::committee`, feature `test-support`) is a test driver
//! of these machines; the party daemon is the other.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::mpc::dealing::Hash32;
use crate::mpc::echo::{EchoError, SignedHeader};
use crate::mpc::field::PrimeField;
use crate::mpc::prss::PrssError;

/// A party of a committee of `n`: its 1-based evaluation point (party `i` holds the share at
/// `x = i`). Build one with [`PartyId::new`], checked against `n`.
///
/// Serialized as the plain integer; 0 does not deserialize. `Display` and `Debug` both print
/// the bare number, so messages and the derived `Debug` of the types that name parties (a
/// refusal's reason sent to the owner, a list of culprits) read `3`, `[2, 5]`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct PartyId(u32);

impl TryFrom<u32> for PartyId {
    type Error = &'static str;

    fn try_from(i: u32) -> Result<Self, Self::Error> {
        PartyId::from_wire(i).ok_or("party index 0 (indices start at 1)")
    }
}

impl From<PartyId> for u32 {
    fn from(p: PartyId) -> u32 {
        p.0
    }
}

impl PartyId {
    /// Party `i` of `n`.
    ///
    /// # Errors
    /// [`RoundError::BadParty`] unless `1 <= i <= n`.
    pub fn new(i: usize, n: usize) -> Result<Self, RoundError> {
        if i == 0 || i > n || i > u32::MAX as usize {
            return Err(RoundError::BadParty { index: i, n });
        }
        Ok(PartyId(i as u32))
    }

    /// A party index read from the wire (1-based, not yet checked against a committee size:
    /// a machine refuses an index above its `n`); `None` for 0.
    pub fn from_wire(i: u32) -> Option<Self> {
        (i != 0).then_some(PartyId(i))
    }

    /// Every party of a committee of `n`, ascending.
    pub fn all(n: usize) -> impl Iterator<Item = PartyId> {
        (1..=n.min(u32::MAX as usize) as u32).map(PartyId)
    }

    /// The evaluation point, `1..=n`.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The evaluation point as a `usize` (what [`crate::mpc::shamir`] takes).
    pub fn point(self) -> usize {
        self.0 as usize
    }

    /// The 0-based position in per-party vectors (`point - 1`).
    pub fn slot(self) -> usize {
        self.0 as usize - 1
    }
}

impl std::fmt::Display for PartyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Debug for PartyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

/// The signed contribution of one member to the key of one PRSS set
/// ([`crate::mpc::setup`]); sent privately to each other member, forwarded as evidence when the
/// keys of the set disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedContribution {
    /// Index of the set ([`crate::mpc::prss::key_sets`]).
    pub set: u32,
    /// The recipient.
    pub to: PartyId,
    /// The 32 contributed bytes.
    #[serde(with = "crate::mpc::echo::hex32")]
    pub value: Hash32,
    /// The sender's signature over the contribution's hash, for
    /// `(roster, setup round of (attempt, set), sender)`.
    pub header: SignedHeader,
}

/// Every message a party sends another. Plain data (serde), field vectors as values, so a
/// driver can persist, sign and re-send the exact bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "F: PrimeField")]
#[non_exhaustive]
pub enum Message<F> {
    /// Echo-broadcast, first sub-round: the sender's signed value.
    Value {
        /// Signature over `(job, round, sender, payload hash)`.
        header: SignedHeader,
        /// The values.
        payload: Arc<Vec<F>>,
    },
    /// Echo-broadcast, second sub-round: the payload hash received from each sender
    /// (`hashes[i - 1]` for party `i`, `None`: nothing arrived).
    Echo {
        /// The broadcast's job.
        #[serde(with = "crate::mpc::echo::hex32")]
        job: Hash32,
        /// Its round.
        round: u32,
        /// One entry per party.
        hashes: Vec<Option<Hash32>>,
    },
    /// Echo-broadcast, third sub-round: the signed headers held from the senders seen in
    /// conflict (maybe none).
    Forward {
        /// The broadcast's job.
        #[serde(with = "crate::mpc::echo::hex32")]
        job: Hash32,
        /// Its round.
        round: u32,
        /// Headers held.
        headers: Vec<SignedHeader>,
    },
    /// Setup: a private signed key contribution.
    Contribution(SignedContribution),
    /// Setup: `(set, SHA256(key))` for every set containing the sender, in `attempt`.
    Confirmations {
        /// The attempt (0, then 1 after each exclusion).
        attempt: u32,
        /// `(set, key hash)`.
        keys: Vec<(u32, Hash32)>,
    },
    /// Setup: the signed contributions the sender received for the sets whose confirmations
    /// disagreed with its key (maybe none).
    Accusation {
        /// The attempt.
        attempt: u32,
        /// Contributions received.
        contributions: Vec<SignedContribution>,
    },
}

impl<F> Message<F> {
    /// A short name of the message kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Value { .. } => "value",
            Message::Echo { .. } => "echo",
            Message::Forward { .. } => "forward",
            Message::Contribution(_) => "contribution",
            Message::Confirmations { .. } => "confirmations",
            Message::Accusation { .. } => "accusation",
        }
    }
}

/// Who a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recipient {
    /// Every other party of the committee.
    All,
    /// One party.
    One(PartyId),
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "F: PrimeField")]
pub struct Outgoing<F> {
    /// Where to.
    pub to: Recipient,
    /// What.
    pub msg: Message<F>,
}

/// A round of a machine, what [`Machine::waiting`] names and [`Machine::deadline`] takes.
/// `round` is the protocol's round (the evaluation round, the setup attempt, the check's
/// round); `sub` the sub-round within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RoundId {
    /// Protocol round.
    pub round: u32,
    /// Sub-round.
    pub sub: u8,
}

/// What a machine returns after an event: messages to send, and its output once finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<F, O> {
    /// Messages to send, in order.
    pub send: Vec<Outgoing<F>>,
    /// The machine's output, given exactly once.
    pub output: Option<O>,
}

impl<F, O> Step<F, O> {
    /// Nothing to do.
    pub fn none() -> Self {
        Step {
            send: Vec::new(),
            output: None,
        }
    }

    /// Messages to send, no output yet.
    pub fn send(send: Vec<Outgoing<F>>) -> Self {
        Step { send, output: None }
    }
}

/// A round-based protocol machine (see the module docs for what a driver does).
pub trait Machine<F> {
    /// What the machine ends with.
    type Output;

    /// Starts the protocol: the first messages (and the output, if no round is needed).
    ///
    /// # Errors
    /// A protocol failure (never a refusal).
    fn start(&mut self) -> Result<Step<F, Self::Output>, RoundError>;

    /// Delivers a message from `from` (authenticated by the transport).
    ///
    /// # Errors
    /// A refusal ([`RoundError::is_refusal`]) leaves the machine unchanged; any other error is
    /// a protocol failure that ends it.
    fn handle(
        &mut self,
        from: PartyId,
        msg: Message<F>,
    ) -> Result<Step<F, Self::Output>, RoundError>;

    /// The deadline of `round` passed: peers not heard from in it are erasures.
    ///
    /// # Errors
    /// A protocol failure (too few parties left, ...).
    fn deadline(&mut self, round: RoundId) -> Result<Step<F, Self::Output>, RoundError>;

    /// The round the machine waits in, `None` once finished.
    fn waiting(&self) -> Option<RoundId>;
}

/// Refusals of a message and failures of a protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoundError {
    /// A party index outside `1..=n`.
    #[error("party index {index} is outside 1..={n}")]
    BadParty {
        /// The index.
        index: usize,
        /// Committee size.
        n: usize,
    },
    /// A message of another job or of a kind this machine does not take.
    #[error("{kind} message from party {from} does not belong to this protocol")]
    Foreign {
        /// The sender.
        from: PartyId,
        /// Message kind.
        kind: &'static str,
    },
    /// A message for a round this machine has left (a replay or a straggler).
    #[error("{kind} message from party {from} is for past round {round}.{sub}")]
    PastRound {
        /// The sender.
        from: PartyId,
        /// Message kind.
        kind: &'static str,
        /// Its round.
        round: u32,
        /// Its sub-round.
        sub: u8,
    },
    /// A message for a round more than one ahead of this machine's.
    #[error("{kind} message from party {from} is for round {round}, too far ahead")]
    TooEarly {
        /// The sender.
        from: PartyId,
        /// Message kind.
        kind: &'static str,
        /// Its round.
        round: u32,
    },
    /// A second message from the same sender for the same sub-round.
    #[error("duplicate {kind} message from party {from} for round {round}.{sub}")]
    Duplicate {
        /// The sender.
        from: PartyId,
        /// Message kind.
        kind: &'static str,
        /// The round.
        round: u32,
        /// The sub-round.
        sub: u8,
    },
    /// A message from a party excluded or convicted earlier, or from this party itself.
    #[error("message from party {from}, which takes no part in this round")]
    NotParticipant {
        /// The sender.
        from: PartyId,
    },
    /// A malformed message (wrong length, sender field that is not the sender...).
    #[error("malformed {kind} message from party {from}: {reason}")]
    Malformed {
        /// The sender.
        from: PartyId,
        /// Message kind.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A signed header that does not verify or does not match its payload.
    #[error(transparent)]
    Echo(#[from] EchoError),
    /// The machine has finished.
    #[error("the protocol has finished; {kind} message from party {from} ignored")]
    Finished {
        /// The sender.
        from: PartyId,
        /// Message kind.
        kind: &'static str,
    },
    /// Key agreement failed.
    #[error(transparent)]
    Prss(#[from] PrssError),
    /// Setup failed without an equivocator to exclude.
    #[error("key agreement failed: {0}")]
    Setup(String),
    /// The protocol cannot go on (a driver gave up on it).
    #[error("the protocol stalled: {0}")]
    Stalled(String),
    /// The batch check could not run.
    #[error(transparent)]
    Check(#[from] crate::mpc::check::CheckError),
    /// Evaluation failed (inconsistent or too few degree-`2t` openings...).
    #[error(transparent)]
    Eval(#[from] crate::mpc::eval::EvalError),
}

impl RoundError {
    /// Whether this refuses one message and leaves the machine as it was (the driver logs it
    /// and goes on); otherwise the protocol failed.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            RoundError::BadParty { .. }
                | RoundError::Foreign { .. }
                | RoundError::PastRound { .. }
                | RoundError::TooEarly { .. }
                | RoundError::Duplicate { .. }
                | RoundError::NotParticipant { .. }
                | RoundError::Malformed { .. }
                | RoundError::Echo(_)
                | RoundError::Finished { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn party_ids_are_checked_against_n() {
        assert_eq!(
            PartyId::new(0, 4),
            Err(RoundError::BadParty { index: 0, n: 4 })
        );
        assert_eq!(
            PartyId::new(5, 4),
            Err(RoundError::BadParty { index: 5, n: 4 })
        );
        let p = PartyId::new(4, 4).unwrap();
        assert_eq!((p.get(), p.point(), p.slot()), (4, 4, 3));
        assert_eq!(
            PartyId::all(3).map(PartyId::get).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(serde_json::to_string(&p).unwrap(), "4");
        assert_eq!(serde_json::from_str::<PartyId>("4").unwrap(), p);
        assert!(serde_json::from_str::<PartyId>("0").is_err());
        assert_eq!((format!("{p}"), format!("{p:?}")), ("4".into(), "4".into()));
        assert_eq!(format!("{:?}", [p, p]), "[4, 4]");
    }
}
