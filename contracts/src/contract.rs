//! The contracts of PROTOCOL.md as typed values, and their compiled form.

use std::str::FromStr;
use std::sync::Arc;

use bitcoin::hashes::sha256;
use bitcoin::key::TapTweak;
use bitcoin::secp256k1::{PublicKey, XOnlyPublicKey};
use bitcoin::taproot::{ControlBlock, LeafVersion, TapLeafHash, TapNodeHash};
use bitcoin::{Address, Network, ScriptBuf, Weight};
use miniscript::descriptor::TapTree;
use miniscript::policy::Concrete;
use miniscript::{Descriptor, Miniscript, Tap};

use crate::keys::secp;
use crate::{Error, Height, InternalKey};

/// Job escrow (claim-or-refund): `or(and(pk(receiver),sha256(hash)),and(pk(sender),after(timeout)))`.
///
/// The receiver (a compute party) claims at any height by revealing the preimage of `hash`;
/// the sender (the service) takes the coins back once the chain reaches `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimOrRefund {
    /// The party paid by the claim.
    pub receiver: PublicKey,
    /// The service refunded after the timeout.
    pub sender: PublicKey,
    /// `sha256(k)`; revealing `k` is what the claim pays for.
    pub hash: sha256::Hash,
    /// The refund is valid from this height on.
    pub timeout: Height,
    /// The taproot internal key.
    pub internal_key: InternalKey,
}

/// Party bond: `or(and(pk(party),after(exit)),thresh(k,pk(J_1),...,pk(J_m)))`, the threshold
/// compiled to one tapscript `multi_a` leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bond {
    /// The bonded party; it withdraws after `exit`.
    pub party: PublicKey,
    /// The other committee members, who can slash together.
    pub judges: Vec<PublicKey>,
    /// How many judges must sign a slash (`t + 1` in the protocol).
    pub k: usize,
    /// The party's exit is valid from this height on.
    pub exit: Height,
    /// The taproot internal key.
    pub internal_key: InternalKey,
}

/// Dataset anchor: a P2TR key-path output of the owner's anchor key, `tr(key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// The owner's anchor key.
    pub key: PublicKey,
}

/// Any contract of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contract {
    /// Job escrow.
    ClaimOrRefund(ClaimOrRefund),
    /// Party bond.
    Bond(Bond),
    /// Dataset anchor.
    Anchor(Anchor),
}

/// A spend path of a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PathKind {
    /// Escrow: receiver's signature and the preimage, any height.
    Claim,
    /// Escrow: sender's signature, from the timeout on.
    Refund,
    /// Bond: the party's signature, from the exit height on.
    Exit,
    /// Bond: `k` judges' signatures, any height.
    Slash,
    /// Taproot key path (the anchor; a cooperative internal key).
    KeyPath,
}

impl PathKind {
    /// The path's name as printed and written in files.
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Claim => "claim",
            PathKind::Refund => "refund",
            PathKind::Exit => "exit",
            PathKind::Slash => "slash",
            PathKind::KeyPath => "key",
        }
    }
}

impl std::fmt::Display for PathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A tapscript leaf of a contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// The leaf's Miniscript.
    pub miniscript: Miniscript<bitcoin::PublicKey, Tap>,
    /// Its script.
    pub script: ScriptBuf,
    /// Its leaf hash.
    pub leaf_hash: TapLeafHash,
    /// The control block proving it is in the output key.
    pub control_block: ControlBlock,
}

/// One way to spend a contract, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendPath {
    /// Which path.
    pub kind: PathKind,
    /// The tapscript leaf, `None` for the key path.
    pub leaf: Option<Leaf>,
    /// Keys that can sign on this path (x-only).
    pub signers: Vec<XOnlyPublicKey>,
    /// How many of `signers` must sign.
    pub threshold: usize,
    /// The hash whose preimage the path needs.
    pub hash: Option<sha256::Hash>,
    /// The nLockTime the spend needs at least.
    pub after: Option<Height>,
    /// The witness size of a spend on this path, in weight units (bytes), including the
    /// stack-item count, as our signers make it (64-byte `SIGHASH_DEFAULT` signatures): exact,
    /// and what the fee is computed from.
    pub witness_weight: Weight,
}

impl SpendPath {
    /// The keys of [`SpendPath::signers`] as the contract names them (full keys, with their
    /// parity), in the same order: read from the path's leaf. Empty for the key path, whose
    /// internal key is known x-only.
    pub fn signer_keys(&self) -> Vec<bitcoin::secp256k1::PublicKey> {
        let Some(leaf) = &self.leaf else {
            return Vec::new();
        };
        self.signers
            .iter()
            .filter_map(|x| {
                leaf.miniscript
                    .iter_pk()
                    .find(|k| k.inner.x_only_public_key().0 == *x)
                    .map(|k| k.inner)
            })
            .collect()
    }
}

impl Contract {
    /// `claim-or-refund`, `bond` or `anchor`.
    pub fn kind(&self) -> &'static str {
        match self {
            Contract::ClaimOrRefund(_) => "claim-or-refund",
            Contract::Bond(_) => "bond",
            Contract::Anchor(_) => "anchor",
        }
    }

    /// The contract's Miniscript policy, as in PROTOCOL.md.
    pub fn policy(&self) -> Concrete<bitcoin::PublicKey> {
        Concrete::from_str(&self.policy_text())
            .expect("the policy text built from typed values always parses")
    }

    /// The policy as text, exactly as PROTOCOL.md writes it (Miniscript's `Display` of a
    /// policy adds `1@` branch probabilities).
    pub fn policy_text(&self) -> String {
        match self {
            Contract::ClaimOrRefund(c) => format!(
                "or({},{})",
                claim_branch(&c.receiver, &c.hash),
                timelocked_branch(&c.sender, c.timeout)
            ),
            Contract::Bond(b) => format!(
                "or({},{})",
                timelocked_branch(&b.party, b.exit),
                judges_branch(b.k, &b.judges)
            ),
            Contract::Anchor(a) => format!("pk({})", a.key),
        }
    }

    /// The taproot descriptor.
    ///
    /// # Errors
    /// As [`Contract::compile`].
    pub fn descriptor(&self) -> Result<Descriptor<bitcoin::PublicKey>, Error> {
        Ok(self.compile()?.descriptor)
    }

    /// The output script.
    ///
    /// # Errors
    /// As [`Contract::compile`].
    pub fn script_pubkey(&self) -> Result<ScriptBuf, Error> {
        Ok(self.compile()?.script_pubkey)
    }

    /// The address on `network`.
    ///
    /// # Errors
    /// As [`Contract::compile`].
    pub fn address(&self, network: Network) -> Result<Address, Error> {
        Ok(self.compile()?.address(network))
    }

    /// Check the parameters and compile the contract once: descriptor, taproot spend data and
    /// every spend path. Builders, signers and the finalizer work on the result, so do this
    /// once per contract, not once per spend.
    ///
    /// Each branch of the top-level `or` becomes its own leaf at depth 1 (what
    /// `compile_tr` does for two equally likely branches), in policy order; branches are
    /// compiled with the Miniscript compiler, and the bond's judge threshold is a `multi_a`
    /// leaf for every `k` (the compiler would pick `and_v` chains or a key path for some `k`).
    ///
    /// # Errors
    /// [`Error::InvalidThreshold`], [`Error::DuplicateJudge`], [`Error::PartyIsJudge`] for a bad
    /// bond; [`Error::Compile`] if Miniscript refuses a branch.
    pub fn compile(&self) -> Result<CompiledContract, Error> {
        let internal = match self {
            Contract::ClaimOrRefund(c) => c.internal_key.public_key(),
            Contract::Bond(b) => {
                check_bond(b)?;
                b.internal_key.public_key()
            }
            Contract::Anchor(a) => a.key,
        };
        let tree = match self {
            Contract::ClaimOrRefund(c) => Some(TapTree::combine(
                TapTree::Leaf(Arc::new(compile_branch(&claim_branch(
                    &c.receiver,
                    &c.hash,
                ))?)),
                TapTree::Leaf(Arc::new(compile_branch(&timelocked_branch(
                    &c.sender, c.timeout,
                ))?)),
            )),
            Contract::Bond(b) => Some(TapTree::combine(
                TapTree::Leaf(Arc::new(compile_branch(&timelocked_branch(
                    &b.party, b.exit,
                ))?)),
                TapTree::Leaf(Arc::new(multi_a(b.k, &b.judges)?)),
            )),
            Contract::Anchor(_) => None,
        };
        let descriptor = Descriptor::new_tr(bitcoin::PublicKey::new(internal), tree)
            .map_err(|e| compile_error(&e))?;
        let Descriptor::Tr(tr) = &descriptor else {
            unreachable!("new_tr builds a Tr descriptor")
        };
        let spend_info = tr.spend_info();
        let mut paths = Vec::new();
        let cooperative = match self {
            Contract::ClaimOrRefund(c) => matches!(c.internal_key, InternalKey::Cooperative(_)),
            Contract::Bond(b) => matches!(b.internal_key, InternalKey::Cooperative(_)),
            Contract::Anchor(_) => true,
        };
        if cooperative {
            paths.push(SpendPath {
                kind: PathKind::KeyPath,
                leaf: None,
                signers: vec![internal.x_only_public_key().0],
                threshold: 1,
                hash: None,
                after: None,
                // count (1) + length (1) + a SIGHASH_DEFAULT signature (64)
                witness_weight: crate::witness::key_path_witness_weight(
                    crate::SigSizes::SIGHASH_DEFAULT,
                ),
            });
        }
        let kinds: &[PathKind] = match self {
            Contract::ClaimOrRefund(_) => &[PathKind::Claim, PathKind::Refund],
            Contract::Bond(_) => &[PathKind::Exit, PathKind::Slash],
            Contract::Anchor(_) => &[],
        };
        for ((depth, ms), kind) in tr.iter_scripts().zip(kinds.iter().copied()) {
            let script = ms.encode();
            let control_block = spend_info
                .control_block(&(script.clone(), LeafVersion::TapScript))
                .expect("every leaf of the descriptor has a control block");
            let witness_weight = leaf_witness_weight(ms, depth)?;
            let (signers, threshold, hash, after) = match (self, kind) {
                (Contract::ClaimOrRefund(c), PathKind::Claim) => {
                    (vec![x_only(&c.receiver)], 1, Some(c.hash), None)
                }
                (Contract::ClaimOrRefund(c), _) => {
                    (vec![x_only(&c.sender)], 1, None, Some(c.timeout))
                }
                (Contract::Bond(b), PathKind::Exit) => {
                    (vec![x_only(&b.party)], 1, None, Some(b.exit))
                }
                (Contract::Bond(b), _) => (b.judges.iter().map(x_only).collect(), b.k, None, None),
                (Contract::Anchor(_), _) => unreachable!("an anchor has no leaves"),
            };
            paths.push(SpendPath {
                kind,
                leaf: Some(Leaf {
                    miniscript: ms.clone(),
                    leaf_hash: TapLeafHash::from_script(&script, LeafVersion::TapScript),
                    script,
                    control_block,
                }),
                signers,
                threshold,
                hash,
                after,
                witness_weight,
            });
        }
        let script_pubkey = descriptor.script_pubkey();
        Ok(CompiledContract {
            contract: self.clone(),
            internal_key: internal.x_only_public_key().0,
            merkle_root: spend_info.merkle_root(),
            output_key: spend_info.output_key().to_x_only_public_key(),
            descriptor,
            script_pubkey,
            paths,
        })
    }
}

/// A contract compiled once: descriptor, output script, taproot data and spend paths.
#[derive(Debug, Clone)]
pub struct CompiledContract {
    contract: Contract,
    descriptor: Descriptor<bitcoin::PublicKey>,
    script_pubkey: ScriptBuf,
    internal_key: XOnlyPublicKey,
    merkle_root: Option<TapNodeHash>,
    output_key: XOnlyPublicKey,
    paths: Vec<SpendPath>,
}

impl CompiledContract {
    /// The contract's parameters.
    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// The taproot descriptor (its `Display` includes the checksum).
    pub fn descriptor(&self) -> &Descriptor<bitcoin::PublicKey> {
        &self.descriptor
    }

    /// The output script.
    pub fn script_pubkey(&self) -> &ScriptBuf {
        &self.script_pubkey
    }

    /// The address on `network`.
    pub fn address(&self, network: Network) -> Address {
        Address::from_script(&self.script_pubkey, network)
            .expect("a P2TR script always has an address")
    }

    /// The internal key (x-only).
    pub fn internal_key(&self) -> XOnlyPublicKey {
        self.internal_key
    }

    /// The taproot merkle root, `None` for a key-path-only output.
    pub fn merkle_root(&self) -> Option<TapNodeHash> {
        self.merkle_root
    }

    /// The tweaked output key (x-only).
    pub fn output_key(&self) -> XOnlyPublicKey {
        self.output_key
    }

    /// Every spend path.
    pub fn spend_paths(&self) -> &[SpendPath] {
        &self.paths
    }

    /// The spend path of `kind`, if the contract has it.
    pub fn path(&self, kind: PathKind) -> Option<&SpendPath> {
        self.paths.iter().find(|p| p.kind == kind)
    }

    /// Which path a finished witness took, if it is one of ours.
    pub fn path_of_witness(&self, witness: &bitcoin::Witness) -> Option<PathKind> {
        if witness.len() == 1 {
            return self.path(PathKind::KeyPath).map(|p| p.kind);
        }
        let script = witness.taproot_leaf_script()?.script;
        self.paths
            .iter()
            .find(|p| {
                p.leaf
                    .as_ref()
                    .is_some_and(|l| l.script.as_script() == script)
            })
            .map(|p| p.kind)
    }
}

fn x_only(pk: &PublicKey) -> XOnlyPublicKey {
    pk.x_only_public_key().0
}

fn claim_branch(receiver: &PublicKey, hash: &sha256::Hash) -> String {
    format!("and(pk({receiver}),sha256({hash}))")
}

fn timelocked_branch(key: &PublicKey, after: Height) -> String {
    format!("and(pk({key}),after({after}))")
}

fn judges_branch(k: usize, judges: &[PublicKey]) -> String {
    let keys: Vec<String> = judges.iter().map(|j| format!("pk({j})")).collect();
    format!("thresh({k},{})", keys.join(","))
}

fn check_bond(b: &Bond) -> Result<(), Error> {
    if b.k == 0 || b.k > b.judges.len() {
        return Err(Error::InvalidThreshold {
            k: b.k,
            judges: b.judges.len(),
        });
    }
    for (i, j) in b.judges.iter().enumerate() {
        if *j == b.party || x_only(j) == x_only(&b.party) {
            return Err(Error::PartyIsJudge {
                key: b.party.to_string(),
            });
        }
        if b.judges[..i].iter().any(|o| x_only(o) == x_only(j)) {
            return Err(Error::DuplicateJudge { key: j.to_string() });
        }
    }
    Ok(())
}

fn compile_error(e: &dyn std::fmt::Display) -> Error {
    Error::Compile {
        target: "tr",
        reason: e.to_string(),
    }
}

fn compile_branch(policy: &str) -> Result<Miniscript<bitcoin::PublicKey, Tap>, Error> {
    let policy = Concrete::<bitcoin::PublicKey>::from_str(policy).map_err(|e| compile_error(&e))?;
    policy.compile::<Tap>().map_err(|e| compile_error(&e))
}

fn multi_a(k: usize, judges: &[PublicKey]) -> Result<Miniscript<bitcoin::PublicKey, Tap>, Error> {
    let keys: Vec<String> = judges.iter().map(ToString::to_string).collect();
    Miniscript::from_str(&format!("multi_a({k},{})", keys.join(","))).map_err(|e| compile_error(&e))
}

/// The witness of a script-path spend (count, satisfaction, script, control block), as our
/// signers make it: Schnorr signatures with `SIGHASH_DEFAULT` (64 bytes). Every leaf of our
/// contracts has one satisfaction, so this is exact.
fn leaf_witness_weight(
    ms: &Miniscript<bitcoin::PublicKey, Tap>,
    depth: u8,
) -> Result<Weight, Error> {
    let size = crate::witness::tap_leaf_witness_size(ms, depth, crate::SigSizes::SIGHASH_DEFAULT)
        .ok_or_else(|| compile_error(&format!("{ms} cannot be satisfied")))?;
    Ok(Weight::from_wu(size as u64))
}

/// The tweak a key-path signer applies: BIP341's `taproot_tweak_seckey`.
pub(crate) fn tweak_keypair(
    keypair: &bitcoin::secp256k1::Keypair,
    merkle_root: Option<TapNodeHash>,
) -> bitcoin::secp256k1::Keypair {
    keypair.tap_tweak(secp(), merkle_root).to_keypair()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::secp256k1::SecretKey;

    fn pk(seed: u8) -> PublicKey {
        PublicKey::from_secret_key(secp(), &SecretKey::from_slice(&[seed; 32]).unwrap())
    }

    fn bond(judges: Vec<PublicKey>, k: usize) -> Contract {
        Contract::Bond(Bond {
            party: pk(1),
            judges,
            k,
            exit: Height::new(10).unwrap(),
            internal_key: InternalKey::Nums,
        })
    }

    #[test]
    fn bad_bonds_are_refused() {
        assert!(matches!(
            bond(vec![pk(2)], 0).compile(),
            Err(Error::InvalidThreshold { k: 0, judges: 1 })
        ));
        assert!(matches!(
            bond(vec![pk(2), pk(3)], 3).compile(),
            Err(Error::InvalidThreshold { k: 3, judges: 2 })
        ));
        assert!(matches!(
            bond(vec![pk(2), pk(2)], 1).compile(),
            Err(Error::DuplicateJudge { .. })
        ));
        assert!(matches!(
            bond(vec![pk(2), pk(1)], 1).compile(),
            Err(Error::PartyIsJudge { .. })
        ));
        assert!(bond(vec![], 0).compile().is_err());
    }

    #[test]
    fn every_k_gives_a_multi_a_leaf_and_no_key_path() {
        for k in 1..=3 {
            let c = bond(vec![pk(2), pk(3), pk(4)], k).compile().unwrap();
            let slash = c.path(PathKind::Slash).unwrap();
            let ms = slash.leaf.as_ref().unwrap().miniscript.to_string();
            assert!(ms.starts_with(&format!("multi_a({k},")), "{ms}");
            assert!(c.path(PathKind::KeyPath).is_none());
            assert_eq!(c.internal_key(), crate::nums_h().x_only_public_key().0);
        }
    }

    #[test]
    fn escrow_matches_the_policy_compiler() {
        // Our leaf-per-branch construction is what `compile_tr` builds for this policy, up to
        // the order of the two leaves.
        let c = Contract::ClaimOrRefund(ClaimOrRefund {
            receiver: pk(1),
            sender: pk(2),
            hash: sha256::Hash::hash(b"k"),
            timeout: Height::new(700).unwrap(),
            internal_key: InternalKey::Nums,
        });
        let ours = c.compile().unwrap();
        let theirs = c
            .policy()
            .compile_tr(Some(bitcoin::PublicKey::new(crate::nums_h())))
            .unwrap();
        let Descriptor::Tr(theirs) = theirs else {
            panic!("tr")
        };
        let mut a: Vec<String> = theirs.iter_scripts().map(|(_, m)| m.to_string()).collect();
        let mut b: Vec<String> = ours
            .spend_paths()
            .iter()
            .map(|p| p.leaf.as_ref().unwrap().miniscript.to_string())
            .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }
}
