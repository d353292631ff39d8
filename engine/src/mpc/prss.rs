//! Pseudo-random secret sharing (PRSS) and pseudo-random zero sharing (PRZS).
//!
//! Cramer, Damgård and Ishai, "Share Conversion, Pseudorandom Secret-Sharing and Applications to
//! Secure Computation" (TCC 2005). For a committee of `n` parties with threshold `t`, every set
//! `A` of `n - t` parties shares one key `k_A` (so the maximal unqualified sets, of size `t`, are
//! exactly the complements). For each `A` let `f_A` be the polynomial of degree `t` with
//! `f_A(0) = 1` and `f_A(j) = 0` for the `t` parties `j` outside `A`:
//! `f_A(x) = prod_{j not in A} (j - x) / j`. With `r_A = PRF(k_A, job, purpose, counter)`:
//!
//! - random sharing of degree `t`: party `i` holds `sum_{A ∋ i} r_A f_A(i)`, a share of
//!   `r = sum_A r_A`;
//! - zero sharing of degree `2t` (PRZS): party `i` holds
//!   `sum_{A ∋ i} f_A(i) sum_{l=1..t} r_{A,l} i^l`, a share of 0 (every term vanishes at 0);
//! - double sharing (for Damgård-Nielsen): the degree-`t` random sharing `[r]_t` and
//!   `[r]_2t = [r]_t + PRZS`, a degree-`2t` sharing of the same `r` whose coefficients above `t`
//!   are pseudo-random.
//!
//! Why no coalition `T` of `t` parties can predict or bias these values: the complement
//! `A* = {1..n} \ T` is one of the sets, and `T` never sees `k_{A*}`. Its term `r_{A*} f_{A*}`
//! is pseudo-random to `T` and vanishes at every point of `T` (`f_{A*}(j) = 0` for `j ∈ T`), so
//! `T`'s shares are independent of it while the secret `r` contains it: `r` is pseudo-random
//! to `T` and `T`'s view is that of a random degree-`t` sharing. Nobody can bias `r` either:
//! `k_{A*}` is the hash of contributions from honest members only. The same argument gives
//! the PRZS terms `r_{A*, l}`.
//!
//! There is no PRZS of degree `t` in this construction (a degree-`t` polynomial vanishing at 0
//! and at the `t` points outside `A` is zero); output shares are re-randomized by the
//! Damgård-Nielsen re-sharing of [`crate::mpc::mult`] instead.
//!
//! Key agreement ([`KeyAgreement`]) runs once per roster: every member `i` of `A` sends a
//! random 32-byte contribution to the other members of `A` over its authenticated private
//! channel; `k_A = SHA256("btcmpc/v1/prss-key" || A || contributions in member order)`. Each
//! member then echo-broadcasts `SHA256(k_A)` to the members of `A`; any mismatch aborts, so all
//! members hold the same key (a member that sent different contributions to different members is
//! caught by the mismatch and, the contributions being signed, named by equivocation evidence).
//!
//! Each party holds `C(n-1, t)` keys: practical for `n <= 10` ([`MAX_PARTIES`]).
//!
//! The PRF is AES-128 in counter mode (NIST SP 800-38A, section 6.5): with
//! `h = SHA256("btcmpc/v1/prss" || k_A || job || purpose || counter)`, the key is `h[0..16]`
//! and the initial counter block `h[16..32]` (a 128-bit big-endian counter, incremented per
//! block). Its keystream is turned into field elements by [`PrimeField::fill_random`]
//! (deterministic for a given stream, so every member of `A` derives the same `r_A`). That
//! AES under a secret key is a pseudo-random permutation, hence (for fewer than `2^64` blocks
//! per key, far more than a job draws) a pseudo-random function, and AES-CTR a pseudo-random
//! generator, is the standard assumption (Bellare, Desai, Jokipii and Rogaway, "A Concrete
//! Security Treatment of Symmetric Encryption", FOCS 1997, for counter mode). AES-128 rather
//! than a ChaCha stream for speed: on processors with AES instructions (detected at run time by
//! the `aes` crate, with a constant-time bitsliced fallback) its keystream is cheaper, and
//! drawing the streams is a large part of a double sharing's cost (one party's double sharing
//! of 1 M values, n = 4, t = 1, took about 10% less time in secp256k1 and 25% less in 2^127-1
//! than with ChaCha12 on the 2-core development machine).

use aes::cipher::{KeyIvInit, StreamCipher};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::mpc::field::PrimeField;

/// Largest committee supported (the number of keys grows as `C(n-1, t)`).
pub const MAX_PARTIES: usize = 10;

/// Domain tag of the key derivation.
pub const KEY_TAG: &[u8] = b"btcmpc/v1/prss-key";
/// Domain tag of the PRF.
pub const PRF_TAG: &[u8] = b"btcmpc/v1/prss";

/// Errors of PRSS setup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrssError {
    /// `t` and `n` do not describe a committee this module supports.
    #[error("bad committee n = {n}, t = {t}: need 1 <= t, 2t < n <= {MAX_PARTIES}")]
    BadCommittee {
        /// Parties.
        n: usize,
        /// Threshold.
        t: usize,
    },
    /// A party index outside `1..=n`.
    #[error("party index {index} is outside 1..={n}")]
    BadIndex {
        /// The index.
        index: u32,
        /// Parties.
        n: usize,
    },
    /// A contribution came from a party that is not a member of the set.
    #[error("party {from} sent a contribution for set {set}, of which it is not a member")]
    NotMember {
        /// The sender.
        from: u32,
        /// The set.
        set: usize,
    },
    /// A second, different contribution from the same member for the same set.
    #[error("party {from} sent two different contributions for set {set}")]
    Conflicting {
        /// The sender.
        from: u32,
        /// The set.
        set: usize,
    },
    /// A contribution is missing when the key is derived.
    #[error("no contribution from party {from} for set {set}")]
    Missing {
        /// The member that sent nothing.
        from: u32,
        /// The set.
        set: usize,
    },
    /// Members of a set derived different keys.
    #[error("key confirmation mismatch for set {set}: party {from} holds a different key")]
    KeyMismatch {
        /// The set.
        set: usize,
        /// The member whose confirmation differs.
        from: u32,
    },
}

/// All sets of `n - t` parties (1-based indices, increasing), in lexicographic order; the
/// position of a set in this list is its identifier.
///
/// # Errors
/// [`PrssError::BadCommittee`].
pub fn key_sets(n: usize, t: usize) -> Result<Vec<Vec<u32>>, PrssError> {
    if t == 0 || 2 * t >= n || n > MAX_PARTIES {
        return Err(PrssError::BadCommittee { n, t });
    }
    let size = n - t;
    let mut out = Vec::new();
    for mask in 0u32..(1 << n) {
        if mask.count_ones() as usize == size {
            out.push(
                (0..n as u32)
                    .filter(|i| mask >> i & 1 == 1)
                    .map(|i| i + 1)
                    .collect(),
            );
        }
    }
    out.sort();
    Ok(out)
}

/// A contribution of `from` to the key of set `set`, sent privately to the other members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    /// Index of the set ([`key_sets`]).
    pub set: usize,
    /// The sending member.
    pub from: u32,
    /// Recipient.
    pub to: u32,
    /// 32 random bytes.
    pub value: [u8; 32],
}

/// A key confirmation: `SHA256(k_A)` as derived by `from`, echoed to the other members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// Index of the set.
    pub set: usize,
    /// The confirming member.
    pub from: u32,
    /// `SHA256(k_A)`.
    pub key_hash: [u8; 32],
}

/// One party's side of the roster-time key agreement (a pure state machine).
#[derive(Debug)]
pub struct KeyAgreement {
    n: usize,
    t: usize,
    me: u32,
    sets: Vec<Vec<u32>>,
    /// For each set containing me: contributions indexed by member position.
    received: Vec<Vec<Option<[u8; 32]>>>,
    keys: Vec<Option<[u8; 32]>>,
    excluded: Vec<u32>,
}

impl KeyAgreement {
    /// Starts the agreement for party `me`; returns the state and the contributions to send.
    ///
    /// # Errors
    /// [`PrssError::BadCommittee`], [`PrssError::BadIndex`].
    pub fn new<R: RngCore + ?Sized>(
        n: usize,
        t: usize,
        me: u32,
        rng: &mut R,
    ) -> Result<(Self, Vec<Contribution>), PrssError> {
        let sets = key_sets(n, t)?;
        if me == 0 || me as usize > n {
            return Err(PrssError::BadIndex { index: me, n });
        }
        let mut received = Vec::with_capacity(sets.len());
        let mut out = Vec::new();
        for (s, members) in sets.iter().enumerate() {
            let mut slots = vec![None; members.len()];
            if let Some(pos) = members.iter().position(|m| *m == me) {
                let mut value = [0u8; 32];
                rng.fill_bytes(&mut value);
                slots[pos] = Some(value);
                for to in members.iter().filter(|m| **m != me) {
                    out.push(Contribution {
                        set: s,
                        from: me,
                        to: *to,
                        value,
                    });
                }
            }
            received.push(slots);
        }
        let keys = vec![None; sets.len()];
        Ok((
            KeyAgreement {
                n,
                t,
                me,
                sets,
                received,
                keys,
                excluded: Vec::new(),
            },
            out,
        ))
    }

    /// The sets, as [`key_sets`].
    pub fn sets(&self) -> &[Vec<u32>] {
        &self.sets
    }

    /// Excludes a member convicted earlier: its contribution to every set is fixed to 32 zero
    /// bytes (public), it is not expected to confirm, and nothing from it is accepted. The key
    /// of a set without corrupt members is still made of honest contributions only.
    pub fn exclude(&mut self, member: u32) {
        for (members, slots) in self.sets.iter().zip(self.received.iter_mut()) {
            if let Some(pos) = members.iter().position(|m| *m == member) {
                slots[pos] = Some([0u8; 32]);
            }
        }
        self.excluded.push(member);
    }

    /// Records a contribution addressed to this party.
    ///
    /// # Errors
    /// [`PrssError::NotMember`] if the set is unknown or the sender or this party is not in it;
    /// [`PrssError::Conflicting`] for a second, different value.
    pub fn receive(&mut self, c: &Contribution) -> Result<(), PrssError> {
        if self.excluded.contains(&c.from) {
            return Err(PrssError::NotMember {
                from: c.from,
                set: c.set,
            });
        }
        let members = self.sets.get(c.set).ok_or(PrssError::NotMember {
            from: c.from,
            set: c.set,
        })?;
        if !members.contains(&self.me) {
            return Err(PrssError::NotMember {
                from: self.me,
                set: c.set,
            });
        }
        let pos = members
            .iter()
            .position(|m| *m == c.from)
            .ok_or(PrssError::NotMember {
                from: c.from,
                set: c.set,
            })?;
        let slot = &mut self.received[c.set][pos];
        match slot {
            Some(v) if *v != c.value => Err(PrssError::Conflicting {
                from: c.from,
                set: c.set,
            }),
            _ => {
                *slot = Some(c.value);
                Ok(())
            }
        }
    }

    /// Derives the keys of every set containing this party and returns the confirmations to
    /// echo to the other members.
    ///
    /// # Errors
    /// [`PrssError::Missing`] naming a member whose contribution did not arrive.
    pub fn derive(&mut self) -> Result<Vec<Confirmation>, PrssError> {
        let mut out = Vec::new();
        for (s, members) in self.sets.iter().enumerate() {
            if !members.contains(&self.me) {
                continue;
            }
            let mut h = Sha256::new();
            h.update(KEY_TAG);
            h.update((self.n as u32).to_be_bytes());
            h.update((self.t as u32).to_be_bytes());
            for m in members {
                h.update(m.to_be_bytes());
            }
            for (m, v) in members.iter().zip(&self.received[s]) {
                let v = v.ok_or(PrssError::Missing { from: *m, set: s })?;
                h.update(v);
            }
            let key: [u8; 32] = h.finalize().into();
            self.keys[s] = Some(key);
            let key_hash: [u8; 32] = Sha256::digest(key).into();
            out.push(Confirmation {
                set: s,
                from: self.me,
                key_hash,
            });
        }
        Ok(out)
    }

    /// The sets whose confirmations (from every member other than this party and the
    /// excluded) differ from this party's key, ascending; empty when all agree.
    ///
    /// # Errors
    /// [`PrssError::Missing`] if a member did not confirm.
    pub fn mismatches(&self, confirmations: &[Confirmation]) -> Result<Vec<usize>, PrssError> {
        let mut out = Vec::new();
        self.each_confirmation(confirmations, |set, _, agrees| {
            if !agrees && out.last() != Some(&set) {
                out.push(set);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Walks the confirmation expected from every member of every set this party holds a key
    /// for (other than itself and the excluded), in set order, calling `f(set, from, agrees)`;
    /// stops at the first error of `f`.
    ///
    /// # Errors
    /// [`PrssError::Missing`] if a member did not confirm; whatever `f` returns.
    fn each_confirmation(
        &self,
        confirmations: &[Confirmation],
        mut f: impl FnMut(usize, u32, bool) -> Result<(), PrssError>,
    ) -> Result<(), PrssError> {
        for (s, members) in self.sets.iter().enumerate() {
            let Some(key) = self.keys[s] else { continue };
            let mine: [u8; 32] = Sha256::digest(key).into();
            for m in members
                .iter()
                .filter(|m| **m != self.me && !self.excluded.contains(m))
            {
                let c = confirmations
                    .iter()
                    .find(|c| c.set == s && c.from == *m)
                    .ok_or(PrssError::Missing { from: *m, set: s })?;
                f(s, *m, c.key_hash == mine)?;
            }
        }
        Ok(())
    }

    /// Checks the other members' confirmations and returns the keys.
    ///
    /// # Errors
    /// [`PrssError::KeyMismatch`] for a confirmation that differs from this party's key;
    /// [`PrssError::Missing`] if a member did not confirm.
    pub fn finish<F: PrimeField>(
        self,
        confirmations: &[Confirmation],
    ) -> Result<Prss<F>, PrssError> {
        self.each_confirmation(confirmations, |set, from, agrees| {
            if agrees {
                Ok(())
            } else {
                Err(PrssError::KeyMismatch { set, from })
            }
        })?;
        let keys = self
            .sets
            .iter()
            .zip(&self.keys)
            .filter_map(|(m, k)| k.map(|k| (m.clone(), k)))
            .collect();
        Prss::new(self.n, self.t, self.me, keys)
    }
}

/// The keys of one party: `(members of the set, key)` for every set containing it.
pub type SetKeys = Vec<(Vec<u32>, [u8; 32])>;

/// One key of this party with its precomputed coefficients.
#[derive(Clone)]
struct SetKey<F> {
    /// The set's position in [`key_sets`].
    set: usize,
    key: [u8; 32],
    /// `g_A(me)`, as an integer and as a field element.
    g: (i64, F),
    /// `f_A(me) = g_A(me) / c_A` with `c_A = prod_{j not in A} j`: the share of a sharing of
    /// `r_A` itself (not of `c_A r_A`), for [`Prss::random_int`].
    f: F,
}

impl<F> std::fmt::Debug for SetKey<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SetKey(set {}, ..)", self.set)
    }
}

/// What a stream of PRSS values is used for (domain separation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    /// Random sharings.
    Random = 1,
    /// Zero sharings of degree `2t`.
    Zero = 2,
    /// Double sharings.
    Double = 3,
    /// Random integers ([`Prss::random_int`]).
    RandomInt = 4,
}

/// The keystream of AES-128 in counter mode (the PRF, see the module docs) as a source of
/// random bytes: key `seed[0..16]`, initial counter block `seed[16..32]`. Every read continues
/// the keystream where the previous one stopped, whatever the lengths.
struct Stream(ctr::Ctr128BE<aes::Aes128>);

impl Stream {
    fn new(seed: &[u8; 32]) -> Self {
        let (key, iv) = seed.split_at(16);
        Stream(ctr::Ctr128BE::<aes::Aes128>::new(key.into(), iv.into()))
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stream(AES-128-CTR, ..)")
    }
}

impl RngCore for Stream {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0);
        self.0.apply_keystream(dest);
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Elements generated per batch (bounds the scratch buffers).
const CHUNK: usize = 1024;

/// `v * x` for a small positive integer `x` (a party index, at most [`MAX_PARTIES`]), by
/// doublings and additions (a multiplication costs several additions in the 256-bit field).
#[inline]
fn times_index<F: PrimeField>(v: F, x: u32) -> F {
    let mut acc = v;
    for bit in (0..31 - x.leading_zeros()).rev() {
        acc = acc.double();
        if x >> bit & 1 == 1 {
            acc += v;
        }
    }
    acc
}

/// `out[i] += x[i] * k` for a small signed integer `k` (`kf = k`), choosing the way to
/// multiply once for the whole slice (`|k| <= 4` by additions, otherwise by `kf`).
#[inline]
fn add_scaled<'a, F: PrimeField + 'a>(
    out: &mut [F],
    x: impl Iterator<Item = &'a F>,
    k: i64,
    kf: F,
) {
    let pairs = out.iter_mut().zip(x);
    match k {
        0 => {}
        1 => pairs.for_each(|(o, v)| *o += *v),
        -1 => pairs.for_each(|(o, v)| *o -= *v),
        2 => pairs.for_each(|(o, v)| *o += v.double()),
        -2 => pairs.for_each(|(o, v)| *o -= v.double()),
        3 => pairs.for_each(|(o, v)| *o += v.double() + *v),
        -3 => pairs.for_each(|(o, v)| *o -= v.double() + *v),
        4 => pairs.for_each(|(o, v)| *o += v.double().double()),
        -4 => pairs.for_each(|(o, v)| *o -= v.double().double()),
        _ => pairs.for_each(|(o, v)| *o += *v * kf),
    }
}

/// One party's PRSS keys: produces its shares of random, zero and double sharings.
///
/// Implementation note: instead of `f_A(x) = prod (j - x) / j` the shares use the integer
/// polynomial `g_A(x) = prod_{j not in A} (j - x)` (`f_A` times the non-zero constant
/// `c_A = prod j`), so every coefficient is a small integer and no full multiplication is
/// needed. The secret becomes `r = sum_A c_A r_A`, still pseudo-random to any `t` parties since
/// `c_{A*} != 0`; `g_A` vanishes outside `A` exactly like `f_A`.
#[derive(Debug, Clone)]
pub struct Prss<F> {
    n: usize,
    t: usize,
    me: u32,
    keys: Vec<SetKey<F>>,
}

impl<F: PrimeField> Prss<F> {
    /// Builds the generator of party `me` from the keys of the sets containing it.
    ///
    /// # Errors
    /// [`PrssError::BadCommittee`], [`PrssError::BadIndex`], [`PrssError::NotMember`] if a
    /// set does not contain `me` or is not one of [`key_sets`].
    pub fn new(n: usize, t: usize, me: u32, keys: SetKeys) -> Result<Self, PrssError> {
        let sets = key_sets(n, t)?;
        if me == 0 || me as usize > n {
            return Err(PrssError::BadIndex { index: me, n });
        }
        let x = i64::from(me);
        let mut out = Vec::with_capacity(keys.len());
        for (members, key) in keys {
            let set = match sets.iter().position(|s| *s == members) {
                Some(set) if !members.contains(&me) => {
                    return Err(PrssError::NotMember { from: me, set })
                }
                None => return Err(PrssError::BadCommittee { n, t }),
                Some(set) => set,
            };
            // g_A(x) = prod_{j not in A} (j - x): |g| < n^t <= 10^3 for n <= 10, t <= 3.
            let g: i64 = (1..=n as i64)
                .filter(|j| !members.contains(&(*j as u32)))
                .map(|j| j - x)
                .product();
            let c: i64 = (1..=n as i64)
                .filter(|j| !members.contains(&(*j as u32)))
                .product();
            let f = F::from_i64(g)
                * F::from_i64(c)
                    .inverse()
                    .ok_or(PrssError::BadCommittee { n, t })?;
            out.push(SetKey {
                set,
                key,
                g: (g, F::from_i64(g)),
                f,
            });
        }
        if out.len() != binomial(n - 1, t) {
            return Err(PrssError::BadCommittee { n, t });
        }
        Ok(Prss {
            n,
            t,
            me,
            keys: out,
        })
    }

    /// This party's index.
    pub fn me(&self) -> u32 {
        self.me
    }

    /// Committee size.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Threshold.
    pub fn t(&self) -> usize {
        self.t
    }

    fn stream(key: &[u8; 32], job: &[u8; 32], purpose: Purpose, counter: u64) -> Stream {
        let mut h = Sha256::new();
        h.update(PRF_TAG);
        h.update(key);
        h.update(job);
        h.update([purpose as u8]);
        h.update(counter.to_be_bytes());
        Stream::new(&h.finalize().into())
    }

    /// This party's shares of `len` random degree-`t` sharings for `(job, counter)`.
    pub fn random(&self, job: &[u8; 32], counter: u64, len: usize) -> Vec<F> {
        let mut out = vec![F::ZERO; len];
        let mut r = vec![F::ZERO; CHUNK.min(len)];
        for k in &self.keys {
            let mut rng = Self::stream(&k.key, job, Purpose::Random, counter);
            for o in out.chunks_mut(CHUNK) {
                let r = &mut r[..o.len()];
                F::fill_random(&mut rng, r);
                add_scaled(o, r.iter(), k.g.0, k.g.1);
            }
        }
        out
    }

    /// This party's shares of `len` random **integers** for `(job, counter)`: sharing `k`
    /// shares `r = sum_A r_A` with every `r_A` a uniform integer in `[0, 2^bits)`, so `r` is an
    /// integer in `[0, C(n, t) 2^bits)` (no reduction mod `p` when `p` is larger). The term of
    /// the set `A*` no coalition of `t` parties holds is uniform to that coalition: `r` hides
    /// any value below `2^bits` added to it up to statistical distance `2^-bits` per unit of
    /// that value's range (the PRSS of random integers of Cramer, Damgård and Ishai, TCC 2005,
    /// section 6; Catrina and de Hoogh's `PRandInt`, SCN 2010, section 2). `bits <= 64`.
    ///
    /// Costs one field multiplication per set key and value (`f_A(me)` is a full field element),
    /// against a square root per bit for a sum of shared random bits.
    pub fn random_int(&self, job: &[u8; 32], counter: u64, len: usize, bits: u32) -> Vec<F> {
        let bits = bits.min(64);
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let mut out = vec![F::ZERO; len];
        for k in &self.keys {
            let mut rng = Self::stream(&k.key, job, Purpose::RandomInt, counter);
            for o in out.iter_mut() {
                *o += F::from_u64(rng.next_u64() & mask) * k.f;
            }
        }
        out
    }

    /// This party's shares of `len` zero sharings of degree `2t` for `(job, counter)`.
    pub fn zero_2t(&self, job: &[u8; 32], counter: u64, len: usize) -> Vec<F> {
        let mut out = vec![F::ZERO; len];
        self.sharings(Purpose::Zero, job, counter, None, &mut out);
        out
    }

    /// This party's shares of `len` double sharings `([r]_t, [r]_2t)` for `(job, counter)`.
    pub fn double(&self, job: &[u8; 32], counter: u64, len: usize) -> (Vec<F>, Vec<F>) {
        let mut rt = vec![F::ZERO; len];
        let mut r2t = vec![F::ZERO; len];
        self.sharings(Purpose::Double, job, counter, Some(&mut rt), &mut r2t);
        (rt, r2t)
    }

    /// Adds this party's shares of the degree-`2t` zero sharings `sum_{A ∋ me} g_A(x)
    /// sum_{m=1..t} z_{A,m} x^m` (`x = me`) to `zero`, and with `rt` its shares
    /// `sum_{A ∋ me} g_A(x) r_A` of degree-`t` random sharings to both `rt` and `zero` (a double
    /// sharing). Each set's stream gives, per chunk of at most `CHUNK` positions, the chunk's
    /// `r_A` (with `rt` only) and then `t` values `z_{A,1..t}` per position.
    ///
    /// The sums `S_m = sum_A g_A z_{A,m}` take additions only (`|g_A|` is small); the share
    /// `x (S_1 + x (S_2 + ... + x S_t))` is then formed once per position by Horner's rule,
    /// where multiplying by `x` is a few doublings and additions. The result is the same field
    /// element as the definition's, summed in another order.
    fn sharings(
        &self,
        purpose: Purpose,
        job: &[u8; 32],
        counter: u64,
        mut rt: Option<&mut [F]>,
        zero: &mut [F],
    ) {
        let t = self.t;
        let len = zero.len();
        let c = CHUNK.min(len);
        let mut r = vec![F::ZERO; if rt.is_some() { c } else { 0 }];
        let mut z = vec![F::ZERO; c * t];
        let mut sums = vec![F::ZERO; c * t];
        // One stream per set, each read chunk by chunk in turn.
        let mut streams: Vec<_> = self
            .keys
            .iter()
            .map(|k| Self::stream(&k.key, job, purpose, counter))
            .collect();
        for start in (0..len).step_by(CHUNK) {
            let end = (start + CHUNK).min(len);
            let c = end - start;
            // sums[(m - 1) c + i] = S_m at position start + i.
            let sums = &mut sums[..c * t];
            sums.fill(F::ZERO);
            let z = &mut z[..c * t];
            for (k, stream) in self.keys.iter().zip(streams.iter_mut()) {
                if let Some(rt) = rt.as_deref_mut() {
                    let r = &mut r[..c];
                    F::fill_random(stream, r);
                    add_scaled(&mut rt[start..end], r.iter(), k.g.0, k.g.1);
                }
                F::fill_random(stream, z);
                for (m, s) in sums.chunks_exact_mut(c).enumerate() {
                    add_scaled(s, z[m..].iter().step_by(t), k.g.0, k.g.1);
                }
            }
            for (i, o) in zero[start..end].iter_mut().enumerate() {
                let mut acc = sums[(t - 1) * c + i];
                for m in (0..t - 1).rev() {
                    acc = times_index(acc, self.me) + sums[m * c + i];
                }
                *o += times_index(acc, self.me);
            }
            if let Some(rt) = rt.as_deref() {
                for (o, r) in zero[start..end].iter_mut().zip(&rt[start..end]) {
                    *o += *r;
                }
            }
        }
    }
}

fn binomial(n: usize, k: usize) -> usize {
    (0..k).fold(1, |acc, i| acc * (n - i) / (i + 1))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mpc::field::{Mersenne127, Secp256k1Scalar};
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// Runs the key agreement among all parties honestly.
    pub(crate) fn agree<F: PrimeField>(n: usize, t: usize, seed: u64) -> Vec<Prss<F>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut states = Vec::new();
        let mut mail = Vec::new();
        for me in 1..=n as u32 {
            let (s, out) = KeyAgreement::new(n, t, me, &mut rng).unwrap();
            states.push(s);
            mail.extend(out);
        }
        for c in &mail {
            states[c.to as usize - 1].receive(c).unwrap();
        }
        let confirmations: Vec<_> = states
            .iter_mut()
            .flat_map(|s| s.derive().unwrap())
            .collect();
        states
            .into_iter()
            .map(|s| s.finish(&confirmations).unwrap())
            .collect()
    }

    /// Lagrange interpolation at `at` through points `(x, y)`.
    fn interpolate<F: PrimeField>(points: &[(u32, F)], at: F) -> F {
        let mut acc = F::ZERO;
        for (i, (xi, yi)) in points.iter().enumerate() {
            let xi = F::from_u64(u64::from(*xi));
            let mut l = F::ONE;
            for (j, (xj, _)) in points.iter().enumerate() {
                if i != j {
                    let xj = F::from_u64(u64::from(*xj));
                    l *= (at - xj) * (xi - xj).inverse().unwrap();
                }
            }
            acc += l * *yi;
        }
        acc
    }

    /// Whether the points lie on one polynomial of degree `<= d`.
    fn degree_at_most<F: PrimeField>(points: &[(u32, F)], d: usize) -> bool {
        let base = &points[..=d];
        points[d + 1..]
            .iter()
            .all(|(x, y)| interpolate(base, F::from_u64(u64::from(*x))) == *y)
    }

    fn sharings<F: PrimeField>(n: usize, t: usize) {
        let parties = agree::<F>(n, t, 7);
        let job = [3u8; 32];
        let len = 5;
        let rand: Vec<Vec<F>> = parties.iter().map(|p| p.random(&job, 0, len)).collect();
        let zero: Vec<Vec<F>> = parties.iter().map(|p| p.zero_2t(&job, 0, len)).collect();
        let dbl: Vec<(Vec<F>, Vec<F>)> = parties.iter().map(|p| p.double(&job, 0, len)).collect();
        for k in 0..len {
            let pts = |v: &dyn Fn(usize) -> F| -> Vec<(u32, F)> {
                (0..n).map(|i| (i as u32 + 1, v(i))).collect()
            };
            let r = pts(&|i| rand[i][k]);
            assert!(degree_at_most(&r, t), "random sharing has degree t");
            assert!(
                !degree_at_most(&r, t - 1),
                "and not less (with overwhelming probability)"
            );
            let z = pts(&|i| zero[i][k]);
            assert!(degree_at_most(&z, 2 * t));
            assert_eq!(interpolate(&z[..=2 * t], F::ZERO), F::ZERO);
            if n > 2 * t + 1 {
                assert!(!degree_at_most(&z, t), "zero sharing uses degree 2t");
            }
            let a = pts(&|i| dbl[i].0[k]);
            let b = pts(&|i| dbl[i].1[k]);
            assert!(degree_at_most(&a, t));
            assert_eq!(
                interpolate(&a[..=t], F::ZERO),
                interpolate(&b[..=2 * t], F::ZERO),
                "both halves of a double sharing share one secret"
            );
            assert_ne!(interpolate(&a[..=t], F::ZERO), F::ZERO);
        }
        // Fresh values per counter and per job.
        assert_ne!(parties[0].random(&job, 1, 1), parties[0].random(&job, 0, 1));
        assert_ne!(
            parties[0].random(&[4u8; 32], 0, 1),
            parties[0].random(&job, 0, 1)
        );
    }

    /// Random integers: every sharing has degree `t`, and its secret is exactly the integer
    /// sum of the sets' values computed the naive way (each set's `r_A` drawn from the key of
    /// one of its members), below `C(n, t) 2^bits`.
    fn integers<F: PrimeField>(n: usize, t: usize, bits: u32) {
        let parties = agree::<F>(n, t, 11);
        let job = [5u8; 32];
        let len = 6;
        let shares: Vec<Vec<F>> = parties
            .iter()
            .map(|p| p.random_int(&job, 9, len, bits))
            .collect();
        // Naive: r = sum over the sets A of r_A, r_A from the stream of any member's key.
        let sets = key_sets(n, t).unwrap();
        let mut naive = vec![0u128; len];
        for set in &sets {
            let holder = &parties[set[0] as usize - 1];
            let index = sets.iter().position(|s| s == set).unwrap();
            let key = holder.keys.iter().find(|k| k.set == index).unwrap();
            let mut rng = Prss::<F>::stream(&key.key, &job, Purpose::RandomInt, 9);
            for v in naive.iter_mut() {
                *v += u128::from(rng.next_u64() & ((1u64 << bits) - 1));
            }
        }
        for (k, want) in naive.iter().enumerate() {
            let pts: Vec<(u32, F)> = (0..n).map(|i| (i as u32 + 1, shares[i][k])).collect();
            assert!(degree_at_most(&pts, t), "an integer sharing has degree t");
            let secret = interpolate(&pts[..=t], F::ZERO);
            assert_eq!(secret, F::from_u128(*want));
            assert!(*want < (binomial(n, t) as u128) << bits);
        }
        assert_ne!(naive[0], naive[1], "fresh values per position");
    }

    /// Party `me`'s shares of `len` double, zero and random sharings straight
    /// from the definition, with field arithmetic only: for every set `A` containing `me`, in
    /// the order of [`key_sets`], `g_A(me) = prod_{j not in A} (j - me)` computed in `F`, and
    /// the set's values drawn from its stream chunk by chunk (`CHUNK` values at a time: the
    /// `r_A` of the chunk, then its `t` values `z_{A,l}` per position).
    fn naive<F: PrimeField>(p: &Prss<F>, job: &[u8; 32], counter: u64, len: usize) -> Naive<F> {
        let (n, t, me) = (p.n, p.t, p.me);
        let x = F::from_u64(u64::from(me));
        let sets = key_sets(n, t).unwrap();
        let mut rt = vec![F::ZERO; len];
        let mut r2t = vec![F::ZERO; len];
        let mut zero = vec![F::ZERO; len];
        let mut random = vec![F::ZERO; len];
        let mut count = 0;
        for (index, set) in sets.iter().enumerate() {
            if !set.contains(&me) {
                continue;
            }
            count += 1;
            let key = &p.keys.iter().find(|k| k.set == index).unwrap().key;
            let g: F = (1..=n as u64)
                .filter(|j| !set.contains(&(*j as u32)))
                .map(|j| F::from_u64(j) - x)
                .fold(F::ONE, |acc, v| acc * v);
            let mut double = Prss::<F>::stream(key, job, Purpose::Double, counter);
            let mut zeros = Prss::<F>::stream(key, job, Purpose::Zero, counter);
            let mut randoms = Prss::<F>::stream(key, job, Purpose::Random, counter);
            for start in (0..len).step_by(CHUNK) {
                let end = (start + CHUNK).min(len);
                let mut r = vec![F::ZERO; end - start];
                let mut z = vec![F::ZERO; (end - start) * t];
                let mut z0 = vec![F::ZERO; (end - start) * t];
                let mut r0 = vec![F::ZERO; end - start];
                F::fill_random(&mut double, &mut r);
                F::fill_random(&mut double, &mut z);
                F::fill_random(&mut zeros, &mut z0);
                F::fill_random(&mut randoms, &mut r0);
                for i in start..end {
                    let k = i - start;
                    rt[i] += g * r[k];
                    r2t[i] += g * r[k];
                    random[i] += g * r0[k];
                    for l in 1..=t {
                        let xl = x.pow_u64(l as u64);
                        r2t[i] += g * xl * z[k * t + l - 1];
                        zero[i] += g * xl * z0[k * t + l - 1];
                    }
                }
            }
        }
        assert_eq!(count, binomial(n - 1, t), "one key per set containing me");
        Naive {
            rt,
            r2t,
            zero,
            random,
        }
    }

    /// The outputs of [`naive`].
    struct Naive<F> {
        rt: Vec<F>,
        r2t: Vec<F>,
        zero: Vec<F>,
        random: Vec<F>,
    }

    fn same_as_naive<F: PrimeField>(n: usize, t: usize) {
        let parties = agree::<F>(n, t, 13);
        let job = [9u8; 32];
        // Across a chunk boundary, and a short run.
        for (counter, len) in [(0, CHUNK + 7), (5, 3)] {
            for p in &parties {
                let want = naive(p, &job, counter, len);
                let (rt, r2t) = p.double(&job, counter, len);
                assert_eq!(rt, want.rt, "[r]_t of party {} for n {n}, t {t}", p.me);
                assert_eq!(r2t, want.r2t, "[r]_2t of party {} for n {n}, t {t}", p.me);
                let zero = p.zero_2t(&job, counter, len);
                assert_eq!(zero, want.zero, "zero of party {} for n {n}, t {t}", p.me);
                let random = p.random(&job, counter, len);
                assert_eq!(
                    random, want.random,
                    "random of party {} for n {n}, t {t}",
                    p.me
                );
            }
        }
        assert!(parties[0].double(&job, 0, 0).0.is_empty());
    }

    #[test]
    fn random_double_and_zero_sharings_match_the_definition() {
        for (n, t) in [(3, 1), (4, 1), (5, 2), (7, 2), (7, 3), (10, 3)] {
            same_as_naive::<Mersenne127>(n, t);
        }
        for (n, t) in [(4, 1), (5, 2), (7, 3)] {
            same_as_naive::<Secp256k1Scalar>(n, t);
        }
    }

    #[test]
    fn the_stream_is_aes_128_ctr() {
        // NIST SP 800-38A, F.5.1 (CTR-AES128.Encrypt): keystream = ciphertext XOR plaintext.
        let mut seed = [0u8; 32];
        seed[..16].copy_from_slice(&hex::decode("2b7e151628aed2a6abf7158809cf4f3c").unwrap());
        seed[16..].copy_from_slice(&hex::decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff").unwrap());
        let xor = |a: &str, b: &str| -> Vec<u8> {
            let (a, b) = (hex::decode(a).unwrap(), hex::decode(b).unwrap());
            a.iter().zip(&b).map(|(x, y)| x ^ y).collect()
        };
        let mut want = xor(
            "6bc1bee22e409f96e93d7e117393172a",
            "874d6191b620e3261bef6864990db6ce",
        );
        want.extend(xor(
            "ae2d8a571e03ac9c9eb76fac45af8e51",
            "9806f66b7970fdff8617187bb9fffdff",
        ));
        let mut whole = [0u8; 32];
        Stream::new(&seed).fill_bytes(&mut whole);
        assert_eq!(whole.to_vec(), want);
        // Reads of any lengths continue the keystream.
        let mut s = Stream::new(&seed);
        let mut pieces = s.next_u64().to_le_bytes().to_vec();
        pieces.extend(s.next_u32().to_le_bytes());
        let mut rest = [0u8; 20];
        s.fill_bytes(&mut rest);
        pieces.extend(rest);
        assert_eq!(pieces, want);
    }

    #[test]
    fn random_integers_are_the_sum_of_the_sets_values() {
        for (n, t) in [(3, 1), (4, 1), (5, 2), (7, 2), (10, 3)] {
            integers::<Mersenne127>(n, t, 41);
        }
        integers::<Secp256k1Scalar>(4, 1, 41);
        integers::<Secp256k1Scalar>(7, 3, 63);
    }

    #[test]
    fn sharings_have_the_right_degree_and_secret() {
        for (n, t) in [(3, 1), (4, 1), (5, 1), (5, 2), (7, 2), (7, 3), (10, 3)] {
            sharings::<Mersenne127>(n, t);
        }
        sharings::<Secp256k1Scalar>(4, 1);
        sharings::<Secp256k1Scalar>(7, 2);
    }

    #[test]
    fn a_coalition_misses_exactly_one_key() {
        // The t parties of T hold keys of every set except the complement of T.
        let sets = key_sets(7, 2).unwrap();
        assert_eq!(sets.len(), 21);
        let coalition = [2u32, 5];
        let unknown: Vec<_> = sets
            .iter()
            .filter(|s| coalition.iter().all(|c| !s.contains(c)))
            .collect();
        assert_eq!(unknown, [&vec![1, 3, 4, 6, 7]]);
        assert_eq!(key_sets(4, 1).unwrap()[0], [1, 2, 3]);
        assert!(key_sets(4, 2).is_err());
        assert!(key_sets(11, 1).is_err());
        assert!(key_sets(4, 0).is_err());
    }

    #[test]
    fn conflicting_contributions_are_caught() {
        let mut rng = StdRng::seed_from_u64(1);
        let n = 4;
        let mut states = Vec::new();
        let mut mail = Vec::new();
        for me in 1..=n as u32 {
            let (s, out) = KeyAgreement::new(n, 1, me, &mut rng).unwrap();
            states.push(s);
            mail.extend(out);
        }
        // Party 2 sends a different contribution to party 3 for every set.
        for c in mail.iter_mut() {
            if c.from == 2 && c.to == 3 {
                c.value[0] ^= 1;
            }
        }
        for c in &mail {
            states[c.to as usize - 1].receive(c).unwrap();
        }
        let confirmations: Vec<_> = states
            .iter_mut()
            .flat_map(|s| s.derive().unwrap())
            .collect();
        let results: Vec<_> = states
            .into_iter()
            .map(|s| s.finish::<Mersenne127>(&confirmations))
            .collect();
        // Parties 1 and 4 see party 3's confirmation differ (party 3 sees theirs differ).
        assert!(matches!(
            results[0],
            Err(PrssError::KeyMismatch { from: 3, .. })
        ));
        assert!(matches!(results[2], Err(PrssError::KeyMismatch { .. })));
        // A second different value from the same member is refused at once.
        let (mut s, _) = KeyAgreement::new(4, 1, 1, &mut rng).unwrap();
        let c = Contribution {
            set: 0,
            from: 2,
            to: 1,
            value: [1; 32],
        };
        s.receive(&c).unwrap();
        let mut d = c.clone();
        d.value = [2; 32];
        assert_eq!(
            s.receive(&d),
            Err(PrssError::Conflicting { from: 2, set: 0 })
        );
        // Set 3 is {2, 3, 4}: party 1 is not a member.
        let e = Contribution {
            set: 3,
            from: 2,
            to: 1,
            value: [1; 32],
        };
        assert!(matches!(s.receive(&e), Err(PrssError::NotMember { .. })));
    }
}
