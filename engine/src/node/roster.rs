//! The roster: the committee (cards in party order, index 1..=n) and its parameters, signed by
//! every party (PROTOCOL.md, "Network and committee").
//!
//! Each party signs the roster id, the BIP340 tagged hash (tag `btcmpc/v1/roster`) of
//! [`Roster::signed_bytes`], which covers every parameter and every card with its signature.
//! Bonds are funded against a fully signed roster: party i's bond names the other members'
//! keys as judges, in party order, with `k = t + 1` ([`Roster::bond_contract`]).
//!
//! Slashable (bonded) rosters need `n >= 3t + 1`; `n = 2t + 1` is allowed only with
//! `unbonded: true` (test networks, where wrong shares are detected but not attributed).
//!
//! JSON shape (version 1) frozen by `tests/fixtures/node/roster.json`.

use std::path::Path;

use bitcoin::secp256k1::Keypair;
use bitcoin::{Network, Script};
use btcmpc_contracts::{Bond, Contract, Height, InternalKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::card::{
    field, network_name, parse_hex_array, parse_json, parse_network, pretty, read_bounded,
    schnorr_sign, schnorr_verify, tagged_hash, PartyCard, SetupError,
};

/// The roster format version.
pub const ROSTER_VERSION: u64 = 1;

/// Largest committee a roster may name.
pub const MAX_PARTIES: usize = 64;

/// The committee's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RosterParams {
    /// Threshold: any `t` parties together learn nothing.
    pub t: usize,
    /// Smallest bond a party must post, in sats.
    pub min_bond_sat: u64,
    /// Penalty = `penalty_multiplier x fee`.
    pub penalty_multiplier: u32,
    /// Blocks after a job's deadline during which evidence may be brought to the judges.
    pub dispute_window: u32,
    /// Fee rate of the canonical slash, in sat/vB.
    pub slash_fee_rate: u64,
    /// The longest job deadline the committee accepts, in blocks from the tip.
    pub deadline_horizon: u32,
    /// An unbonded test network (`n = 2t + 1` allowed, no bonds checked).
    pub unbonded: bool,
}

impl RosterParams {
    /// Default parameters for threshold `t` and minimum bond `min_bond_sat`: penalty
    /// multiplier 10, dispute window 144 blocks, slash fee 2 sat/vB, deadline horizon 144.
    pub fn new(t: usize, min_bond_sat: u64) -> RosterParams {
        RosterParams {
            t,
            min_bond_sat,
            penalty_multiplier: 10,
            dispute_window: 144,
            slash_fee_rate: 2,
            deadline_horizon: 144,
            unbonded: false,
        }
    }
}

/// A roster, signed by some or all of its parties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    /// The network.
    pub network: Network,
    /// The parameters.
    pub params: RosterParams,
    /// The cards, in party order (party `i` is `cards[i - 1]`), with their bond fields empty.
    pub cards: Vec<PartyCard>,
    /// Each party's signature on [`Roster::id`], in party order.
    pub signatures: Vec<Option<[u8; 64]>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterJson {
    version: u64,
    network: String,
    n: usize,
    t: usize,
    min_bond_sat: u64,
    penalty_multiplier: u32,
    dispute_window: u32,
    slash_fee_rate: u64,
    deadline_horizon: u32,
    unbonded: bool,
    cards: Vec<Value>,
    signatures: Vec<Option<String>>,
}

/// Check `n` against `t`: `1 <= t`, `n <= MAX_PARTIES`, `n >= 3t + 1` for a bonded network,
/// `n >= 2t + 1` for an unbonded one.
///
/// # Errors
/// [`SetupError::Threshold`].
pub fn check_threshold(n: usize, t: usize, unbonded: bool) -> Result<(), SetupError> {
    let bad = |reason: String| Err(SetupError::Threshold { n, t, reason });
    if t == 0 {
        return bad("t must be at least 1".into());
    }
    if n > MAX_PARTIES {
        return bad(format!("at most {MAX_PARTIES} parties"));
    }
    if unbonded {
        if n < 2 * t + 1 {
            return bad("an unbonded network needs n >= 2t+1".into());
        }
    } else if n < 3 * t + 1 {
        return bad(format!(
            "a slashable network needs n >= 3t+1 = {} (n = 2t+1 only with the unbonded test flag)",
            3 * t + 1
        ));
    }
    Ok(())
}

impl Roster {
    /// An unsigned roster of `cards` (in this order) with `params`. Each card is verified and
    /// its bond field dropped.
    ///
    /// # Errors
    /// A card that does not verify or is for another network, duplicate keys, and
    /// [`check_threshold`].
    pub fn new(
        network: Network,
        params: RosterParams,
        cards: Vec<PartyCard>,
    ) -> Result<Roster, SetupError> {
        let cards: Vec<PartyCard> = cards
            .into_iter()
            .map(|mut c| {
                c.bond = None;
                c
            })
            .collect();
        let roster = Roster {
            network,
            params,
            signatures: vec![None; cards.len()],
            cards,
        };
        roster.check_structure()?;
        Ok(roster)
    }

    /// Committee size.
    pub fn n(&self) -> usize {
        self.cards.len()
    }

    /// Everything but the roster signatures: sizes, thresholds, cards, keys.
    ///
    /// # Errors
    /// As [`Roster::new`].
    pub fn check_structure(&self) -> Result<(), SetupError> {
        let n = self.n();
        check_threshold(n, self.params.t, self.params.unbonded)?;
        if self.signatures.len() != n {
            return Err(SetupError::Indices(format!(
                "roster has {n} cards but {} signature slots",
                self.signatures.len()
            )));
        }
        if self.params.slash_fee_rate == 0 || self.params.slash_fee_rate > 10_000 {
            return Err(field(
                "slash_fee_rate",
                &self.params.slash_fee_rate.to_string(),
                "must be 1 to 10000 sat/vB",
            ));
        }
        if !self.params.unbonded && self.params.min_bond_sat == 0 {
            return Err(field(
                "min_bond_sat",
                "0",
                "a bonded network needs a minimum bond",
            ));
        }
        for (i, c) in self.cards.iter().enumerate() {
            c.verify()?;
            if c.network != self.network {
                return Err(SetupError::Indices(format!(
                    "party {} card is for {}, the roster for {}",
                    i + 1,
                    network_name(c.network),
                    network_name(self.network)
                )));
            }
            for (j, o) in self.cards[..i].iter().enumerate() {
                if o.party_key.x_only_public_key().0 == c.party_key.x_only_public_key().0 {
                    return Err(SetupError::DuplicateKey {
                        which: "party",
                        key: c.party_key.to_string(),
                        first: j + 1,
                        second: i + 1,
                    });
                }
                if o.transport_key == c.transport_key {
                    return Err(SetupError::DuplicateKey {
                        which: "transport",
                        key: hex::encode(c.transport_key),
                        first: j + 1,
                        second: i + 1,
                    });
                }
            }
        }
        Ok(())
    }

    /// The canonical encoding every party signs: `version (1) | len(network) (1) | network |
    /// n (2, BE) | t (2) | min_bond_sat (8) | penalty_multiplier (4) | dispute_window (4) |
    /// slash_fee_rate (8) | deadline_horizon (4) | unbonded (1)`, then for each card in order
    /// `len (2) | card.signed_bytes() | card signature (64)`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let p = &self.params;
        let net = network_name(self.network).as_bytes();
        let mut b = Vec::with_capacity(64 + self.cards.len() * 200);
        b.push(ROSTER_VERSION as u8);
        b.push(net.len() as u8);
        b.extend_from_slice(net);
        b.extend_from_slice(&(self.cards.len() as u16).to_be_bytes());
        b.extend_from_slice(&(p.t as u16).to_be_bytes());
        b.extend_from_slice(&p.min_bond_sat.to_be_bytes());
        b.extend_from_slice(&p.penalty_multiplier.to_be_bytes());
        b.extend_from_slice(&p.dispute_window.to_be_bytes());
        b.extend_from_slice(&p.slash_fee_rate.to_be_bytes());
        b.extend_from_slice(&p.deadline_horizon.to_be_bytes());
        b.push(u8::from(p.unbonded));
        for c in &self.cards {
            let cb = c.signed_bytes();
            b.extend_from_slice(&(cb.len() as u16).to_be_bytes());
            b.extend_from_slice(&cb);
            b.extend_from_slice(&c.signature);
        }
        b
    }

    /// The roster id: tagged hash (`btcmpc/v1/roster`) of [`Roster::signed_bytes`].
    pub fn id(&self) -> [u8; 32] {
        tagged_hash("btcmpc/v1/roster", &self.signed_bytes())
    }

    /// The 1-based index of the party whose key is `key`.
    pub fn index_of(&self, key: &bitcoin::secp256k1::PublicKey) -> Option<usize> {
        self.cards
            .iter()
            .position(|c| c.party_key == *key)
            .map(|i| i + 1)
    }

    /// Add party `keypair`'s signature. Returns its index.
    ///
    /// # Errors
    /// [`SetupError::Wallet`] when the key is not in the roster; as
    /// [`Roster::check_structure`].
    pub fn sign(&mut self, keypair: &Keypair) -> Result<usize, SetupError> {
        self.check_structure()?;
        let index = self.index_of(&keypair.public_key()).ok_or_else(|| {
            SetupError::Wallet(format!(
                "party key {} is not in this roster",
                keypair.public_key()
            ))
        })?;
        self.signatures[index - 1] = Some(schnorr_sign(keypair, self.id()));
        Ok(index)
    }

    /// Verify the structure and every signature present; returns the indices still unsigned.
    ///
    /// # Errors
    /// As [`Roster::check_structure`]; [`SetupError::BadSignature`] naming the party.
    pub fn verify_partial(&self) -> Result<Vec<usize>, SetupError> {
        self.check_structure()?;
        let id = self.id();
        let mut missing = Vec::new();
        for (i, (c, s)) in self.cards.iter().zip(&self.signatures).enumerate() {
            match s {
                None => missing.push(i + 1),
                Some(sig) if !schnorr_verify(&c.party_key, id, sig) => {
                    return Err(SetupError::BadSignature {
                        what: format!("roster signature of party {}", i + 1),
                        key: c.party_key.to_string(),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(missing)
    }

    /// Verify that the roster is well formed and signed by every party.
    ///
    /// # Errors
    /// As [`Roster::verify_partial`]; [`SetupError::Unsigned`] naming the missing parties.
    pub fn verify(&self) -> Result<(), SetupError> {
        let missing = self.verify_partial()?;
        if !missing.is_empty() {
            return Err(SetupError::Unsigned { missing });
        }
        Ok(())
    }

    /// Party `index`'s bond (1-based): `or(and(pk(P_i),after(exit)),thresh(t+1,J...))` with the
    /// other members' keys as judges in party order, internal key BIP341's NUMS `H`.
    ///
    /// # Errors
    /// [`SetupError::Indices`] for an index outside `1..=n`; [`SetupError::Field`] for an exit
    /// height outside `1..500_000_000`.
    pub fn bond_contract(&self, index: usize, exit: u32) -> Result<Contract, SetupError> {
        if index == 0 || index > self.n() {
            return Err(SetupError::Indices(format!(
                "party index {index} is outside 1..={}",
                self.n()
            )));
        }
        let exit = Height::new(exit)
            .map_err(|e| field("exit height", &exit.to_string(), e.to_string()))?;
        Ok(Contract::Bond(Bond {
            party: self.cards[index - 1].party_key,
            judges: self
                .cards
                .iter()
                .enumerate()
                .filter(|(i, _)| i + 1 != index)
                .map(|(_, c)| c.party_key)
                .collect(),
            k: self.params.t + 1,
            exit,
            internal_key: InternalKey::Nums,
        }))
    }

    /// The output script of party `index`'s bond with exit height `exit`.
    ///
    /// # Errors
    /// As [`Roster::bond_contract`]; a contract that does not compile.
    pub fn bond_script(&self, index: usize, exit: u32) -> Result<bitcoin::ScriptBuf, SetupError> {
        let c = self.bond_contract(index, exit)?;
        c.script_pubkey()
            .map_err(|e| SetupError::Indices(format!("bond of party {index}: {e}")))
    }

    /// Whether `script` is party `index`'s bond for `exit`.
    pub fn is_bond_script(&self, index: usize, exit: u32, script: &Script) -> bool {
        self.bond_script(index, exit)
            .is_ok_and(|s| s.as_script() == script)
    }

    /// The roster as a JSON value.
    pub fn to_value(&self) -> Value {
        let p = &self.params;
        serde_json::to_value(RosterJson {
            version: ROSTER_VERSION,
            network: network_name(self.network).into(),
            n: self.n(),
            t: p.t,
            min_bond_sat: p.min_bond_sat,
            penalty_multiplier: p.penalty_multiplier,
            dispute_window: p.dispute_window,
            slash_fee_rate: p.slash_fee_rate,
            deadline_horizon: p.deadline_horizon,
            unbonded: p.unbonded,
            cards: self.cards.iter().map(PartyCard::to_value).collect(),
            signatures: self.signatures.iter().map(|s| s.map(hex::encode)).collect(),
        })
        .expect("a roster always serializes")
    }

    /// The roster as pretty JSON.
    pub fn to_json(&self) -> String {
        pretty(&self.to_value())
    }

    /// Read a roster (signed or not) and check its structure and the signatures present.
    ///
    /// # Errors
    /// [`SetupError::Format`], [`SetupError::Version`], and as [`Roster::verify_partial`].
    pub fn from_value(v: Value) -> Result<Roster, SetupError> {
        if let Some(version) = v.get("version").and_then(Value::as_u64) {
            if version != ROSTER_VERSION {
                return Err(SetupError::Version {
                    what: "roster",
                    version,
                    supported: ROSTER_VERSION,
                });
            }
        }
        let j: RosterJson = serde_json::from_value(v).map_err(|e| SetupError::Format {
            what: "roster".into(),
            reason: e.to_string(),
        })?;
        if j.cards.len() != j.n {
            return Err(SetupError::Indices(format!(
                "roster says n = {} but has {} cards",
                j.n,
                j.cards.len()
            )));
        }
        if j.cards.len() > MAX_PARTIES {
            return Err(SetupError::Threshold {
                n: j.cards.len(),
                t: j.t,
                reason: format!("at most {MAX_PARTIES} parties"),
            });
        }
        let cards = j
            .cards
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let card = PartyCard::from_value(c).map_err(|e| SetupError::Format {
                    what: format!("roster card of party {}", i + 1),
                    reason: e.to_string(),
                })?;
                if card.bond.is_some() {
                    return Err(SetupError::Format {
                        what: format!("roster card of party {}", i + 1),
                        reason: "a roster card carries no bond".into(),
                    });
                }
                Ok(card)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let signatures = j
            .signatures
            .iter()
            .map(|s| {
                s.as_deref()
                    .map(|s| parse_hex_array::<64>("roster signature", s))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let roster = Roster {
            network: parse_network(&j.network)?,
            params: RosterParams {
                t: j.t,
                min_bond_sat: j.min_bond_sat,
                penalty_multiplier: j.penalty_multiplier,
                dispute_window: j.dispute_window,
                slash_fee_rate: j.slash_fee_rate,
                deadline_horizon: j.deadline_horizon,
                unbonded: j.unbonded,
            },
            cards,
            signatures,
        };
        roster.verify_partial()?;
        Ok(roster)
    }

    /// Parse a roster from JSON text (see [`Roster::from_value`]).
    ///
    /// # Errors
    /// As [`Roster::from_value`].
    pub fn from_json(text: &str) -> Result<Roster, SetupError> {
        Roster::from_value(parse_json("roster", text)?)
    }

    /// Read a roster file (see [`Roster::from_value`]).
    ///
    /// # Errors
    /// [`SetupError::Io`] and as [`Roster::from_value`].
    pub fn load(path: &Path) -> Result<Roster, SetupError> {
        Roster::from_json(&read_bounded(path)?).map_err(|e| super::card::in_file(path, e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::node::card::tests::{card, keypair};

    pub(crate) fn signed_roster(n: u8, t: usize) -> Roster {
        let cards = (1..=n).map(card).collect();
        let mut r = Roster::new(Network::Regtest, RosterParams::new(t, 100_000), cards).unwrap();
        for s in 1..=n {
            r.sign(&keypair(s)).unwrap();
        }
        r
    }

    #[test]
    fn every_party_signs_and_the_roster_verifies() {
        let cards = (1..=4).map(card).collect();
        let mut r = Roster::new(Network::Regtest, RosterParams::new(1, 100_000), cards).unwrap();
        assert!(
            matches!(r.verify(), Err(SetupError::Unsigned { ref missing }) if *missing == vec![1, 2, 3, 4])
        );
        for s in [1, 3, 4] {
            r.sign(&keypair(s)).unwrap();
        }
        let back = Roster::from_json(&r.to_json()).unwrap();
        assert!(
            matches!(back.verify(), Err(SetupError::Unsigned { ref missing }) if *missing == vec![2])
        );
        r.sign(&keypair(2)).unwrap();
        Roster::from_json(&r.to_json()).unwrap().verify().unwrap();
        // An outsider cannot sign.
        assert!(matches!(r.sign(&keypair(9)), Err(SetupError::Wallet(_))));
    }

    #[test]
    fn tampered_roster_is_refused() {
        let r = signed_roster(4, 1);
        for (f, v) in [
            ("min_bond_sat", Value::from(1)),
            ("dispute_window", Value::from(1)),
            ("deadline_horizon", Value::from(1)),
            ("penalty_multiplier", Value::from(1)),
        ] {
            let mut j = r.to_value();
            j[f] = v;
            let err = Roster::from_value(j).unwrap_err();
            assert!(matches!(err, SetupError::BadSignature { .. }), "{f}: {err}");
        }
        // Swapping two cards changes the indices, so every signature breaks.
        let mut j = r.to_value();
        j["cards"].as_array_mut().unwrap().swap(0, 1);
        assert!(matches!(
            Roster::from_value(j),
            Err(SetupError::BadSignature { .. })
        ));
        // A signature moved to another slot.
        let mut j = r.to_value();
        j["signatures"].as_array_mut().unwrap().swap(0, 1);
        assert!(matches!(
            Roster::from_value(j),
            Err(SetupError::BadSignature { .. })
        ));
    }

    #[test]
    fn thresholds_and_duplicates() {
        let cards: Vec<PartyCard> = (1..=3).map(card).collect();
        let err =
            Roster::new(Network::Regtest, RosterParams::new(1, 1), cards.clone()).unwrap_err();
        assert!(err.to_string().contains("3t+1"), "{err}");
        let mut p = RosterParams::new(1, 1);
        p.unbonded = true;
        Roster::new(Network::Regtest, p, cards.clone()).unwrap();
        let two: Vec<PartyCard> = (1..=2).map(card).collect();
        assert!(Roster::new(Network::Regtest, p, two).is_err());
        let mut dup = cards.clone();
        dup.push(card(1));
        let err = Roster::new(Network::Regtest, RosterParams::new(1, 1), dup).unwrap_err();
        assert!(
            matches!(
                err,
                SetupError::DuplicateKey {
                    which: "party",
                    first: 1,
                    second: 4,
                    ..
                }
            ),
            "{err}"
        );
        let mut other = cards;
        let mut c = card(5);
        c.network = Network::Signet;
        other.push(c);
        assert!(Roster::new(Network::Regtest, RosterParams::new(1, 1), other).is_err());
    }

    #[test]
    fn bond_names_the_others_with_k_t_plus_one() {
        let r = signed_roster(4, 1);
        let Contract::Bond(b) = r.bond_contract(2, 500).unwrap() else {
            panic!("bond")
        };
        assert_eq!(b.party, keypair(2).public_key());
        assert_eq!(
            b.judges,
            [1, 3, 4].map(|s| keypair(s).public_key()).to_vec()
        );
        assert_eq!(b.k, 2);
        assert!(r.bond_contract(5, 500).is_err());
        assert!(r.bond_contract(0, 500).is_err());
    }

    #[test]
    fn roster_format_is_frozen() {
        let r = signed_roster(4, 1);
        if std::env::var_os("BTCMPC_WRITE_FIXTURES").is_some() {
            std::fs::write(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/node/roster.json"
                ),
                r.to_json(),
            )
            .unwrap();
        }
        let fixture = include_str!("../../tests/fixtures/node/roster.json");
        assert_eq!(r.to_json(), fixture);
        Roster::from_json(fixture).unwrap().verify().unwrap();
    }
}
