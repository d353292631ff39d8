//! Witness sizes of Miniscript spends, computed the way Bitcoin Core computes them.
//!
//! rust-miniscript 12's `max_satisfaction_size` (and `max_weight_to_satisfy`, built on it) is
//! wrong for `thresh`: it counts the satisfaction of every sub where it should count the
//! dissatisfaction of the `n - k` subs left out, and one satisfied sub too many, so it is above
//! the truth for some policies and below it for others (rust-miniscript#476 and its follow-ups).
//! This module ports Bitcoin Core's `Node::CalcWitnessSize` (src/script/miniscript.h), which
//! walks the fragment tree once and keeps, for every node, the largest satisfaction and the
//! largest dissatisfaction: the result is the largest witness of any satisfaction of the script,
//! so never below what a finalizer produces. With the signature sizes our signers produce it is
//! exact for scripts with one way to be satisfied (every leaf of our contracts).

use std::ops::Add;

use miniscript::miniscript::decode::Terminal;
use miniscript::{Miniscript, MiniscriptKey, ScriptContext};

/// Signature sizes, in bytes, each including the sighash byte where one is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigSizes {
    /// An ECDSA signature (segwit v0): 72 is the largest standard one (DER with a 33-byte `r`
    /// and a low `s`, plus the sighash byte), what Core assumes.
    pub ecdsa: usize,
    /// A Schnorr signature (tapscript): 64 with `SIGHASH_DEFAULT`, 65 with an explicit sighash
    /// byte.
    pub schnorr: usize,
}

impl SigSizes {
    /// The bound for any signer: 72-byte ECDSA, 65-byte Schnorr (Core's assumption).
    pub const ANY_SIGHASH: SigSizes = SigSizes {
        ecdsa: 72,
        schnorr: 65,
    };
    /// What our signers produce: Schnorr signatures with `SIGHASH_DEFAULT` (64 bytes).
    pub const SIGHASH_DEFAULT: SigSizes = SigSizes {
        ecdsa: 72,
        schnorr: 64,
    };
}

/// The largest value over the ways to (dis)satisfy a node, `None` when there is no way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MaxInt(Option<usize>);

impl MaxInt {
    const NONE: MaxInt = MaxInt(None);
    fn of(n: usize) -> MaxInt {
        MaxInt(Some(n))
    }
    /// Either way (Core's `operator|`).
    fn or(self, other: MaxInt) -> MaxInt {
        match (self.0, other.0) {
            (Some(a), Some(b)) => MaxInt(Some(a.max(b))),
            (a, b) => MaxInt(a.or(b)),
        }
    }
}

impl Add for MaxInt {
    type Output = MaxInt;
    fn add(self, other: MaxInt) -> MaxInt {
        MaxInt(self.0.zip(other.0).map(|(a, b)| a + b))
    }
}

impl Add<usize> for MaxInt {
    type Output = MaxInt;
    fn add(self, other: usize) -> MaxInt {
        MaxInt(self.0.map(|a| a + other))
    }
}

/// What each kind of witness element costs: its size in bytes with its length prefix (for
/// sizes), or 1 (for element counts).
#[derive(Debug, Clone, Copy)]
struct Costs {
    sig: usize,
    pubkey: usize,
    preimage: usize,
    one: usize,
    empty: usize,
}

/// (largest satisfaction, largest dissatisfaction) of a node, as Core's `CalcWitnessSize`.
fn walk<Pk: MiniscriptKey, Ctx: ScriptContext>(
    ms: &Miniscript<Pk, Ctx>,
    c: &Costs,
) -> (MaxInt, MaxInt) {
    let sub = |m: &Miniscript<Pk, Ctx>| walk(m, c);
    match &ms.node {
        Terminal::False => (MaxInt::NONE, MaxInt::of(0)),
        Terminal::True | Terminal::After(_) | Terminal::Older(_) => (MaxInt::of(0), MaxInt::NONE),
        Terminal::PkK(_) => (MaxInt::of(c.sig), MaxInt::of(c.empty)),
        Terminal::PkH(_) | Terminal::RawPkH(_) => {
            (MaxInt::of(c.sig + c.pubkey), MaxInt::of(c.empty + c.pubkey))
        }
        Terminal::Sha256(_)
        | Terminal::Hash256(_)
        | Terminal::Ripemd160(_)
        | Terminal::Hash160(_) => (MaxInt::of(c.preimage), MaxInt::NONE),
        Terminal::AndOr(x, y, z) => {
            let (xs, xd) = sub(x);
            let (ys, _) = sub(y);
            let (zs, zd) = sub(z);
            ((xs + ys).or(xd + zs), xd + zd)
        }
        Terminal::AndV(x, y) => (sub(x).0 + sub(y).0, MaxInt::NONE),
        Terminal::AndB(x, y) => {
            let ((xs, xd), (ys, yd)) = (sub(x), sub(y));
            (xs + ys, xd + yd)
        }
        Terminal::OrB(x, z) => {
            let ((xs, xd), (zs, zd)) = (sub(x), sub(z));
            ((xd + zs).or(xs + zd), xd + zd)
        }
        Terminal::OrC(x, z) => {
            let ((xs, xd), (zs, _)) = (sub(x), sub(z));
            (xs.or(xd + zs), MaxInt::NONE)
        }
        Terminal::OrD(x, z) => {
            let ((xs, xd), (zs, zd)) = (sub(x), sub(z));
            (xs.or(xd + zs), xd + zd)
        }
        Terminal::OrI(x, z) => {
            let ((xs, xd), (zs, zd)) = (sub(x), sub(z));
            ((xs + c.one).or(zs + c.empty), (xd + c.one).or(zd + c.empty))
        }
        Terminal::Multi(t) => (
            MaxInt::of(t.k() * c.sig + c.empty),
            MaxInt::of((t.k() + 1) * c.empty),
        ),
        Terminal::MultiA(t) => (
            MaxInt::of(t.k() * c.sig + (t.n() - t.k()) * c.empty),
            MaxInt::of(t.n() * c.empty),
        ),
        Terminal::Alt(x) | Terminal::Swap(x) | Terminal::Check(x) | Terminal::ZeroNotEqual(x) => {
            sub(x)
        }
        Terminal::DupIf(x) => (sub(x).0 + c.one, MaxInt::of(c.empty)),
        Terminal::Verify(x) => (sub(x).0, MaxInt::NONE),
        Terminal::NonZero(x) => (sub(x).0, MaxInt::of(c.empty)),
        Terminal::Thresh(t) => {
            // sats[j]: the largest witness of the subs so far with exactly j of them satisfied.
            let mut sats = vec![MaxInt::of(0)];
            for s in t.iter() {
                let (ss, sd) = sub(s);
                let mut next = Vec::with_capacity(sats.len() + 1);
                next.push(sats[0] + sd);
                for j in 1..sats.len() {
                    next.push((sats[j] + sd).or(sats[j - 1] + ss));
                }
                next.push(sats[sats.len() - 1] + ss);
                sats = next;
            }
            (sats[t.k()], sats[0])
        }
    }
}

/// The largest satisfaction of `ms`: (bytes of its stack elements with their length prefixes,
/// number of stack elements), the script and control block not included. `None` when the
/// script cannot be satisfied.
pub(crate) fn max_satisfaction<Pk: MiniscriptKey, Ctx: ScriptContext>(
    ms: &Miniscript<Pk, Ctx>,
    sigs: SigSizes,
) -> Option<(usize, usize)> {
    let tap = matches!(Ctx::sig_type(), miniscript::SigType::Schnorr);
    let (sig, pubkey) = if tap {
        (sigs.schnorr, 32)
    } else {
        (sigs.ecdsa, 33)
    };
    let sizes = Costs {
        sig: 1 + sig,
        pubkey: 1 + pubkey,
        preimage: 1 + 32,
        one: 2,
        empty: 1,
    };
    let counts = Costs {
        sig: 1,
        pubkey: 1,
        preimage: 1,
        one: 1,
        empty: 1,
    };
    Some((walk(ms, &sizes).0 .0?, walk(ms, &counts).0 .0?))
}

fn varint(n: usize) -> usize {
    bitcoin::VarInt(n as u64).size()
}

/// The largest witness of a segwit v0 spend of witness script `ms`, in bytes (= weight units):
/// the element count, the satisfaction, and the script.
pub(crate) fn wsh_witness_size<Pk: MiniscriptKey>(
    ms: &Miniscript<Pk, miniscript::Segwitv0>,
    sigs: SigSizes,
) -> Option<usize> {
    let (size, count) = max_satisfaction(ms, sigs)?;
    let script = ms.script_size();
    Some(varint(count + 1) + size + varint(script) + script)
}

/// The largest witness of a tapscript spend of leaf `ms` at `depth`, in bytes (= weight
/// units): the element count, the satisfaction, the script and the control block.
pub(crate) fn tap_leaf_witness_size<Pk: MiniscriptKey>(
    ms: &Miniscript<Pk, miniscript::Tap>,
    depth: u8,
    sigs: SigSizes,
) -> Option<usize> {
    let (size, count) = max_satisfaction(ms, sigs)?;
    let script = ms.script_size();
    let control_block = 33 + 32 * usize::from(depth);
    Some(varint(count + 2) + size + varint(script) + script + varint(control_block) + control_block)
}

/// The witness of a taproot key-path spend: the count and one signature.
pub(crate) const fn key_path_witness_size(sigs: SigSizes) -> usize {
    1 + 1 + sigs.schnorr
}

/// The witness weight of a taproot key-path input (a BIP86 wallet output, a contract's
/// cooperative key): the stack-item count, the signature's length and a signature of
/// `sigs.schnorr` bytes, in weight units. 67 with [`SigSizes::ANY_SIGHASH`], what a fee input's
/// [`FeeInput::satisfaction_weight`](crate::FeeInput::satisfaction_weight) is for a BIP86 output.
pub const fn key_path_witness_weight(sigs: SigSizes) -> bitcoin::Weight {
    bitcoin::Weight::from_wu(key_path_witness_size(sigs) as u64)
}
