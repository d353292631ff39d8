//! The manifest: a fully signed roster plus each party's bond (outpoint and exit height), and
//! the on-chain check every client runs before it trusts it (PROTOCOL.md, "Network and
//! committee", step 4).
//!
//! JSON shape (version 1), frozen by `tests/fixtures/node/manifest.json`:
//! `{"version": 1, "roster": ROSTER, "bonds": [{"party": 1, "outpoint": "TXID:VOUT", "exit": H}, ...]}`
//! (`bonds` is empty for an unbonded roster).

use std::path::Path;

use bitcoin::{OutPoint, Txid};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::card::{
    in_file, parse_json, parse_outpoint, pretty, read_bounded, BondRef, PartyCard, SetupError,
};
use super::chain::{confirmations, ChainError, ChainView, MAX_HISTORY};
use super::roster::Roster;

/// The manifest format version.
pub const MANIFEST_VERSION: u64 = 1;

/// Most transactions fetched from one bond script's history (a bond script is unique to its
/// party, roster and exit height, so an honest history holds the funding and at most a few
/// spends).
pub const MAX_BOND_HISTORY: usize = 64;

/// A roster with every party's bond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The fully signed roster.
    pub roster: Roster,
    /// Party `i`'s bond is `bonds[i - 1]` (empty for an unbonded roster).
    pub bonds: Vec<BondRef>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestJson {
    version: u64,
    roster: Value,
    bonds: Vec<BondEntryJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BondEntryJson {
    party: usize,
    outpoint: String,
    exit: u32,
}

impl Manifest {
    /// The manifest of a fully signed `roster` with the bonds recorded in `cards` (each card
    /// matched to its roster slot by party key; every party's card must carry its bond unless
    /// the roster is unbonded).
    ///
    /// # Errors
    /// An unsigned or malformed roster; a card not in the roster, or whose content differs from
    /// the roster's; a party without a bond.
    pub fn new(roster: Roster, cards: &[PartyCard]) -> Result<Manifest, SetupError> {
        roster.verify()?;
        let mut bonds: Vec<Option<BondRef>> = vec![None; roster.n()];
        for c in cards {
            c.verify()?;
            let i = roster.index_of(&c.party_key).ok_or_else(|| {
                SetupError::Indices(format!("card of {} is not in the roster", c.party_key))
            })?;
            let mut plain = c.clone();
            plain.bond = None;
            if plain != roster.cards[i - 1] {
                return Err(SetupError::Indices(format!(
                    "card of party {i} differs from the one in the roster"
                )));
            }
            if bonds[i - 1].is_some() {
                return Err(SetupError::Indices(format!("two cards for party {i}")));
            }
            bonds[i - 1] = c.bond;
        }
        let bonds = if roster.params.unbonded {
            Vec::new()
        } else {
            bonds
                .into_iter()
                .enumerate()
                .map(|(i, b)| {
                    b.ok_or_else(|| {
                        SetupError::Indices(format!(
                            "party {} has no bond in its card (run `party bond` first)",
                            i + 1
                        ))
                    })
                })
                .collect::<Result<_, _>>()?
        };
        let m = Manifest { roster, bonds };
        m.verify_structure()?;
        Ok(m)
    }

    /// The roster's signatures and one bond per party (none for an unbonded roster).
    ///
    /// # Errors
    /// As [`Roster::verify`]; [`SetupError::Indices`].
    pub fn verify_structure(&self) -> Result<(), SetupError> {
        self.roster.verify()?;
        let want = if self.roster.params.unbonded {
            0
        } else {
            self.roster.n()
        };
        if self.bonds.len() != want {
            return Err(SetupError::Indices(format!(
                "manifest has {} bonds for {want} bonded parties",
                self.bonds.len()
            )));
        }
        for (i, b) in self.bonds.iter().enumerate() {
            if self.bonds[..i].iter().any(|o| o.outpoint == b.outpoint) {
                return Err(SetupError::Indices(format!(
                    "party {} bond {} is also another party's",
                    i + 1,
                    b.outpoint
                )));
            }
        }
        Ok(())
    }

    /// The manifest as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(ManifestJson {
            version: MANIFEST_VERSION,
            roster: self.roster.to_value(),
            bonds: self
                .bonds
                .iter()
                .enumerate()
                .map(|(i, b)| BondEntryJson {
                    party: i + 1,
                    outpoint: b.outpoint.to_string(),
                    exit: b.exit,
                })
                .collect(),
        })
        .expect("a manifest always serializes")
    }

    /// The manifest as pretty JSON.
    pub fn to_json(&self) -> String {
        pretty(&self.to_value())
    }

    /// Read a manifest and verify its structure and signatures (not the chain).
    ///
    /// # Errors
    /// [`SetupError::Format`], [`SetupError::Version`], as [`Manifest::verify_structure`],
    /// [`SetupError::Indices`] when the bonds are not listed in party order 1..=n.
    pub fn from_value(v: Value) -> Result<Manifest, SetupError> {
        if let Some(version) = v.get("version").and_then(Value::as_u64) {
            if version != MANIFEST_VERSION {
                return Err(SetupError::Version {
                    what: "manifest",
                    version,
                    supported: MANIFEST_VERSION,
                });
            }
        }
        let j: ManifestJson = serde_json::from_value(v).map_err(|e| SetupError::Format {
            what: "manifest".into(),
            reason: e.to_string(),
        })?;
        let roster = Roster::from_value(j.roster)?;
        let bonds = j
            .bonds
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if b.party != i + 1 {
                    return Err(SetupError::Indices(format!(
                        "bond number {} is for party {}, expected party {}",
                        i + 1,
                        b.party,
                        i + 1
                    )));
                }
                Ok(BondRef {
                    outpoint: parse_outpoint("bond outpoint", &b.outpoint)?,
                    exit: b.exit,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let m = Manifest { roster, bonds };
        m.verify_structure()?;
        Ok(m)
    }

    /// Parse a manifest from JSON text.
    ///
    /// # Errors
    /// As [`Manifest::from_value`].
    pub fn from_json(text: &str) -> Result<Manifest, SetupError> {
        Manifest::from_value(parse_json("manifest", text)?)
    }

    /// Read a manifest file.
    ///
    /// # Errors
    /// [`SetupError::Io`] and as [`Manifest::from_value`].
    pub fn load(path: &Path) -> Result<Manifest, SetupError> {
        Manifest::from_json(&read_bounded(path)?).map_err(|e| in_file(path, e))
    }
}

/// Why a bond fails the on-chain check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BondFailure {
    /// The funding transaction is unknown to the chain view.
    #[error("funding transaction {0} not found")]
    NotFound(Txid),
    /// The outpoint's transaction has no such output.
    #[error("transaction has no output {0}")]
    NoSuchOutput(u32),
    /// The output does not pay this party's bond contract for this roster and exit height.
    #[error("output script {found} is not the bond contract {expected}")]
    WrongScript {
        /// The script found (hex).
        found: String,
        /// The bond contract's script (hex).
        expected: String,
    },
    /// The bond is smaller than the roster's minimum.
    #[error("value {value} sat is below the minimum bond {min} sat")]
    TooSmall {
        /// The bond value (sats).
        value: u64,
        /// The minimum (sats).
        min: u64,
    },
    /// The bond is not confirmed.
    #[error("not confirmed yet ({confirmations} of {needed} confirmations): wait for the next block (on regtest: `btcmpc --datadir NODE_DIR regtest mine 1`, NODE_DIR the datadir of `regtest up`)")]
    Unconfirmed {
        /// Its confirmations.
        confirmations: u32,
        /// How many are needed.
        needed: u32,
    },
    /// The bond has been spent.
    #[error("spent by {0}")]
    Spent(Txid),
    /// The exit height is too close.
    #[error("exit height {exit} is before tip {tip} + deadline horizon {horizon} + dispute window {window} = {needed}")]
    ExitTooClose {
        /// The bond's exit height.
        exit: u32,
        /// The tip.
        tip: u32,
        /// The roster's deadline horizon.
        horizon: u32,
        /// The roster's dispute window.
        window: u32,
        /// The least acceptable exit height.
        needed: u32,
    },
    /// The chain view failed or sent something out of bounds.
    #[error("{0}")]
    Chain(String),
}

/// A bond that failed, naming its party.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("party {party} bond {outpoint}: {reason}")]
pub struct BondError {
    /// The party (1-based).
    pub party: usize,
    /// The bond outpoint.
    pub outpoint: OutPoint,
    /// Why it failed.
    pub reason: BondFailure,
}

/// One party's row of the bond table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BondRow {
    /// The party (1-based).
    pub party: usize,
    /// The party key.
    pub party_key: String,
    /// The bond.
    pub bond: BondRef,
    /// Its value, once found (sats): the output the bond's money is in now (the funding, or
    /// the remainder of the last slash).
    pub value_sat: Option<u64>,
    /// That output, when it is not the funding (the bond was slashed).
    pub live: Option<OutPoint>,
    /// Its confirmations, once found.
    pub confirmations: Option<u32>,
    /// `Ok` or why it fails.
    pub status: Result<(), BondFailure>,
}

/// The result of checking every bond of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BondReport {
    /// The tip the check used.
    pub tip: u32,
    /// One row per party, in party order.
    pub rows: Vec<BondRow>,
}

impl BondReport {
    /// The first failing bond, if any.
    pub fn first_failure(&self) -> Option<BondError> {
        self.rows.iter().find_map(|r| {
            r.status.as_ref().err().map(|reason| BondError {
                party: r.party,
                outpoint: r.bond.outpoint,
                reason: reason.clone(),
            })
        })
    }

    /// `Ok` when every bond passed.
    ///
    /// # Errors
    /// The first failing bond.
    pub fn ok(&self) -> Result<(), BondError> {
        self.first_failure().map_or(Ok(()), Err)
    }

    /// The table as JSON: `{"tip": H, "ok": BOOL, "bonds": [{"party", "party_key", "outpoint",
    /// "exit", "value_sat", "live_outpoint", "confirmations", "ok", "reason"}]}`
    /// (`live_outpoint`: where a slashed bond's money is now, else null).
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "tip": self.tip,
            "ok": self.first_failure().is_none(),
            "bonds": self.rows.iter().map(|r| serde_json::json!({
                "party": r.party,
                "party_key": r.party_key,
                "outpoint": r.bond.outpoint.to_string(),
                "exit": r.bond.exit,
                "value_sat": r.value_sat,
                "live_outpoint": r.live.map(|o| o.to_string()),
                "confirmations": r.confirmations,
                "ok": r.status.is_ok(),
                "reason": r.status.as_ref().err().map(ToString::to_string),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Bonds need this many confirmations.
pub const BOND_MIN_CONF: u32 = 1;

/// Check every bond of `manifest` against `chain` (PROTOCOL.md, "Network and committee"): the
/// output pays exactly party i's bond contract for this roster and its exit height (judges =
/// the other members, `k = t + 1`), holds at least the minimum bond, is confirmed
/// ([`BOND_MIN_CONF`]) and unspent (mempool spends included), and
/// `exit >= tip + deadline_horizon + dispute_window`.
///
/// The structure and signatures are checked first; the chain check returns a row per party
/// whatever fails, and [`BondReport::ok`] gives the first failure.
///
/// # Errors
/// [`SetupError`] when the manifest itself does not verify; [`ChainError`] when the tip cannot
/// be read.
pub fn verify_manifest(
    manifest: &Manifest,
    chain: &impl ChainView,
) -> Result<BondReport, VerifyManifestError> {
    manifest.verify_structure()?;
    let tip = chain.tip()?;
    let roster = &manifest.roster;
    let rows = manifest
        .bonds
        .iter()
        .enumerate()
        .map(|(i, bond)| {
            let mut row = BondRow {
                party: i + 1,
                party_key: roster.cards[i].party_key.to_string(),
                bond: *bond,
                value_sat: None,
                live: None,
                confirmations: None,
                status: Ok(()),
            };
            row.status = check_bond(roster, i + 1, bond, tip, chain, &mut row);
            row
        })
        .collect();
    Ok(BondReport { tip, rows })
}

/// Failure of [`verify_manifest`] before any bond is checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyManifestError {
    /// The manifest does not verify.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The chain view failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

fn check_bond(
    roster: &Roster,
    party: usize,
    bond: &BondRef,
    tip: u32,
    chain: &impl ChainView,
    row: &mut BondRow,
) -> Result<(), BondFailure> {
    let chain_err = |e: ChainError| BondFailure::Chain(e.to_string());
    let op = bond.outpoint;
    let expected = roster
        .bond_script(party, bond.exit)
        .map_err(|e| BondFailure::Chain(e.to_string()))?;
    let tx = chain
        .transaction(&op.txid)
        .map_err(chain_err)?
        .ok_or(BondFailure::NotFound(op.txid))?;
    let out = tx
        .output
        .get(op.vout as usize)
        .ok_or(BondFailure::NoSuchOutput(op.vout))?;
    row.value_sat = Some(out.value.to_sat());
    if out.script_pubkey != expected {
        return Err(BondFailure::WrongScript {
            found: out.script_pubkey.to_hex_string(),
            expected: expected.to_hex_string(),
        });
    }
    let hist = chain.history(&expected).map_err(chain_err)?;
    if hist.len() > MAX_BOND_HISTORY.min(MAX_HISTORY) {
        return Err(BondFailure::Chain(format!(
            "{} transactions touch the bond script (at most {MAX_BOND_HISTORY} are read)",
            hist.len()
        )));
    }
    let funding = hist
        .iter()
        .find(|h| h.txid == op.txid)
        .ok_or(BondFailure::NotFound(op.txid))?;
    let confs = confirmations(tip, funding.height);
    row.confirmations = Some(confs);
    // Follow the bond's money through slashes: a canonical slash returns the rest to the same
    // bond script, from which later victims are paid; any other spend ends the bond.
    let mut live = op;
    let mut value = out.value.to_sat();
    'follow: for _ in 0..=hist.len() {
        for h in hist.iter().filter(|h| h.txid != live.txid) {
            let Some(spender) = chain.transaction(&h.txid).map_err(chain_err)? else {
                continue;
            };
            if spender.input.iter().any(|i| i.previous_output == live) {
                let Some(vout) = spender
                    .output
                    .iter()
                    .position(|o| o.script_pubkey == expected)
                else {
                    return Err(BondFailure::Spent(h.txid));
                };
                live = bitcoin::OutPoint {
                    txid: h.txid,
                    vout: vout as u32,
                };
                value = spender.output[vout].value.to_sat();
                continue 'follow;
            }
        }
        break;
    }
    row.value_sat = Some(value);
    row.live = (live != op).then_some(live);
    let min = roster.params.min_bond_sat;
    if value < min {
        return Err(BondFailure::TooSmall { value, min });
    }
    if confs < BOND_MIN_CONF {
        return Err(BondFailure::Unconfirmed {
            confirmations: confs,
            needed: BOND_MIN_CONF,
        });
    }
    let p = &roster.params;
    let needed = tip
        .saturating_add(p.deadline_horizon)
        .saturating_add(p.dispute_window);
    if bond.exit < needed {
        return Err(BondFailure::ExitTooClose {
            exit: bond.exit,
            tip,
            horizon: p.deadline_horizon,
            window: p.dispute_window,
            needed,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::node::roster::tests::signed_roster;
    use std::str::FromStr;

    /// A manifest of [`signed_roster`]`(4, 1)` with a bond per party.
    pub(crate) fn manifest() -> Manifest {
        let roster = signed_roster(4, 1);
        let cards: Vec<PartyCard> = roster
            .cards
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut c = c.clone();
                c.bond = Some(BondRef {
                    outpoint: OutPoint::from_str(&format!("{}:{i}", "ab".repeat(32))).unwrap(),
                    exit: 1000,
                });
                c
            })
            .collect();
        Manifest::new(roster, &cards).unwrap()
    }

    #[test]
    fn manifest_round_trips_and_is_frozen() {
        let m = manifest();
        if std::env::var_os("BTCMPC_WRITE_FIXTURES").is_some() {
            std::fs::write(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/node/manifest.json"
                ),
                m.to_json(),
            )
            .unwrap();
        }
        let fixture = include_str!("../../tests/fixtures/node/manifest.json");
        assert_eq!(m.to_json(), fixture);
        assert_eq!(Manifest::from_json(fixture).unwrap(), m);
    }

    #[test]
    fn bad_manifests_are_refused() {
        let m = manifest();
        // Bonds out of order.
        let mut v = m.to_value();
        v["bonds"].as_array_mut().unwrap().swap(0, 1);
        assert!(matches!(
            Manifest::from_value(v),
            Err(SetupError::Indices(_))
        ));
        // A missing bond.
        let mut v = m.to_value();
        v["bonds"].as_array_mut().unwrap().pop();
        assert!(matches!(
            Manifest::from_value(v),
            Err(SetupError::Indices(_))
        ));
        // An unsigned roster.
        let mut v = m.to_value();
        v["roster"]["signatures"][2] = Value::Null;
        assert!(
            matches!(Manifest::from_value(v), Err(SetupError::Unsigned { ref missing }) if *missing == vec![3])
        );
        // A tampered roster.
        let mut v = m.to_value();
        v["roster"]["min_bond_sat"] = Value::from(1);
        assert!(matches!(
            Manifest::from_value(v),
            Err(SetupError::BadSignature { .. })
        ));
        // A card that is not the roster's.
        let mut roster = signed_roster(4, 1);
        let outsider = crate::node::card::tests::card(9);
        roster.signatures[0] = None;
        assert!(Manifest::new(roster, &[outsider]).is_err());
    }
}
