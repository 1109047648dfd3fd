//! Node identities: who a member is (name, advertised address, version) and what it advertises
//! (tags). Owns the validation of every name and tag that arrives from a peer.
//!
//! foca keys members by [`foca::Identity::Addr`]; ours is the node *name*, so two identities
//! with one name are the same member and the higher `(version, leaving)` wins. A restart takes
//! a fresh version (the driver passes the wall clock in milliseconds), a tag change bumps the
//! version by one, and a graceful leave switches to the same version with `leaving = true`
//! before declaring that identity down: every member can tell *left* from *failed* from the
//! identity alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use serde::{Deserialize, Serialize};

use crate::error::InvalidInput;

/// A member's tags: key to value, in key order (deterministic encoding and iteration).
pub type Tags = BTreeMap<String, String>;

/// The tag that `--role` sets.
pub const ROLE_TAG: &str = "role";

/// The highest identity version accepted from a peer (2^62; a node's first version is its
/// start time in ms, about 2^41): a member can always take a version above any other
/// identity of its name that it hears of, and no version arithmetic saturates.
pub const VERSION_MAX: u64 = 1 << 62;

/// Limits on what an identity may carry. Enforced on local input and on every decoded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest node name, in bytes.
    pub name_len_max: usize,
    /// Largest tag set, in bytes: the sum over tags of key length + value length + 2.
    pub tags_bytes_max: usize,
    /// Largest user event, in bytes: name plus payload (Serf's limit is 512).
    pub event_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            name_len_max: 128,
            tags_bytes_max: 1024,
            event_bytes_max: 1024,
        }
    }
}

/// What one tag counts towards [`Limits::tags_bytes_max`]: both strings plus a length byte
/// each (postcard varints take one byte below 128, more above, which this slightly
/// undercounts).
fn tag_bytes(k: &str, v: &str) -> usize {
    k.len().saturating_add(v.len()).saturating_add(2)
}

/// [`Shared::measure`] of `inner`: its name's length and its tags' size if it passes every
/// check but the limits'.
fn measure(inner: &IdInner) -> Option<(u32, u32)> {
    let unbounded = Limits {
        name_len_max: usize::MAX,
        tags_bytes_max: usize::MAX,
        event_bytes_max: usize::MAX,
    };
    validate_name(&inner.name, &unbounded).ok()?;
    validate_tags(&inner.tags, &unbounded).ok()?;
    let tags = inner
        .tags
        .iter()
        .fold(0usize, |t, (k, v)| t.saturating_add(tag_bytes(k, v)));
    Some((
        u32::try_from(inner.name.len()).ok()?,
        u32::try_from(tags).ok()?,
    ))
}

/// The name is valid when it is 1 to `name_len_max` bytes of ASCII letters, digits, `.`, `-`
/// and `_` (what a hostname or a container name may hold). Anything else is refused: names
/// reach handler environments, file names and templates.
pub fn validate_name(name: &str, limits: &Limits) -> Result<(), InvalidInput> {
    if name.is_empty() {
        return Err(InvalidInput::NameEmpty);
    }
    if name.len() > limits.name_len_max {
        return Err(InvalidInput::NameTooLong {
            len: name.len(),
            max: limits.name_len_max,
        });
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(InvalidInput::NameChar(c));
    }
    Ok(())
}

/// Tag keys follow the name rule; values may hold any printable character but no control
/// characters (no newline, tab or NUL can reach a handler's stdin line or environment).
pub fn validate_tags(tags: &Tags, limits: &Limits) -> Result<(), InvalidInput> {
    let mut total = 0usize;
    for (k, v) in tags {
        if k.is_empty() {
            return Err(InvalidInput::TagKeyEmpty);
        }
        if let Some(c) = k
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(InvalidInput::TagKeyChar {
                key: k.clone(),
                char: c,
            });
        }
        if let Some(c) = v.chars().find(|c| c.is_control()) {
            return Err(InvalidInput::TagValueChar {
                key: k.clone(),
                char: c,
            });
        }
        total = total.saturating_add(tag_bytes(k, v));
    }
    if total > limits.tags_bytes_max {
        return Err(InvalidInput::TagsTooBig {
            len: total,
            max: limits.tags_bytes_max,
        });
    }
    Ok(())
}

/// A member's identity. Cheap to clone and 8 bytes (one `Arc`): every node holds one per
/// member several times over (foca's member list, the member table, the directory), so at
/// 10,000 members in the simulator its size counts 3 x 10^8 times. Its foca address (the
/// name's key) is the first field behind the pointer: foca finds members through an index,
/// not by scanning, and in the simulator every node shares one copy of each identity, so the
/// keys read are few and stay in cache. (Until foca had its index, the key was inline, 16
/// bytes an identity, because foca's linear scans read one per member.)
#[derive(Clone)]
pub struct NodeId {
    inner: Arc<Shared>,
}

/// The shared part of a [`NodeId`]: its name key, content and the content's fingerprint.
struct Shared {
    /// The name's key ([`NameKey::of`]).
    key: NameKey,
    /// FNV-1a over the whole content (name, address, version, flag, tags), so equality is a
    /// few integer comparisons instead of comparing names and tag maps.
    fingerprint: u64,
    /// The name's length and the tags' size (as [`validate_tags`] counts it) when every
    /// check that does not depend on [`Limits`] passes (characters, empty name or key);
    /// `None` otherwise. Validating against some limits is then two comparisons: in the
    /// simulator every node checks each shared identity against its own limits.
    measure: Option<(u32, u32)>,
    content: IdInner,
}

impl std::ops::Deref for Shared {
    type Target = IdInner;

    fn deref(&self) -> &IdInner {
        &self.content
    }
}

/// Hashes a [`NameKey`] (or a fingerprint) to itself: it is already a hash (FNV-1a), so
/// hashing it again would add nothing but time. For a pair, the second is mixed in.
#[derive(Debug, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for keys other than a `u64`; fold them in (FNV-1a).
        let mut h = Fnv(self.0);
        h.write(bytes);
        self.0 = h.0;
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(29) ^ n;
    }
}

/// Identities shared between the nodes of one process. The simulator runs thousands of nodes
/// in one process, each holding every member's identity: through one interner each identity
/// is built once and shared, instead of once per node (its name, address and tags take
/// about 750 bytes). The agent runs one node and needs none. Sharing changes no decision:
/// the shared copy is the same identity.
///
/// Holds weak references, so identities no node holds any more are freed; their entries are
/// swept when the table has doubled since the last sweep.
#[derive(Clone, Default)]
pub struct Interner(Arc<Mutex<InternTable>>);

#[derive(Default)]
struct InternTable {
    /// Looked up, never iterated for a decision.
    by_content: HashMap<(NameKey, u64), Weak<Shared>, BuildHasherDefault<KeyHasher>>,
    /// The identity shared last for each name: what a node meets first is mostly that one,
    /// found by comparing fields, without computing the decoded copy's fingerprint.
    last: HashMap<NameKey, Weak<Shared>, BuildHasherDefault<KeyHasher>>,
    sweep_at: usize,
}

impl Interner {
    /// An empty interner, to share between nodes ([`crate::Node::share_identities`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// How many identities it holds entries for (live or not yet swept).
    pub fn len(&self) -> usize {
        self.table().by_content.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn table(&self) -> MutexGuard<'_, InternTable> {
        // The table holds no invariant a panic halfway could break.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared copy of the identity with this key and fingerprint, if some node holds it.
    pub(crate) fn get(&self, key: NameKey, fingerprint: u64) -> Option<NodeId> {
        let inner = self
            .table()
            .by_content
            .get(&(key, fingerprint))?
            .upgrade()?;
        debug_assert_eq!(inner.key, key);
        Some(NodeId { inner })
    }

    /// The identity shared last under `key`, if some node holds it and `is_it` says it is
    /// the one wanted.
    pub(crate) fn last_if(
        &self,
        key: NameKey,
        is_it: impl FnOnce(&NodeId) -> bool,
    ) -> Option<NodeId> {
        let inner = self.table().last.get(&key)?.upgrade()?;
        let id = NodeId { inner };
        is_it(&id).then_some(id)
    }

    /// Shares `id` from now on.
    pub(crate) fn put(&self, id: &NodeId) {
        let mut t = self.table();
        t.by_content
            .insert((id.key(), id.fingerprint()), Arc::downgrade(&id.inner));
        t.last.insert(id.key(), Arc::downgrade(&id.inner));
        if t.by_content.len() > t.sweep_at {
            t.by_content.retain(|_, w| w.strong_count() > 0);
            t.last.retain(|_, w| w.strong_count() > 0);
            t.sweep_at = (t.by_content.len() * 2).max(1024);
        }
    }
}

impl fmt::Debug for Interner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interner({} identities)", self.len())
    }
}

/// The key foca groups identities by: a stable 64-bit hash (FNV-1a) of the node name,
/// computed locally from the name (never taken from the wire). Two names that collide would be
/// treated as one member; at 10,000 names the odds are about 3 in a trillion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameKey(pub u64);

impl NameKey {
    /// The key of `name`.
    pub fn of(name: &str) -> Self {
        Self::of_bytes(name.as_bytes())
    }

    /// The key of the name whose bytes are `name`.
    fn of_bytes(name: &[u8]) -> Self {
        let mut h = Fnv::new();
        h.write(name);
        Self(h.0)
    }
}

/// FNV-1a, 64 bits: stable across processes, builds and platforms (std's hasher is not). The
/// one hash of the workspace: name keys, identity and payload fingerprints, notice tags, the
/// simulator's trace, the demo's image tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv {
    /// FNV-1a's offset basis.
    pub fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    /// Folds `bytes` in.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash of `bytes` alone.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut h = Self::new();
        h.write(bytes);
        h.0
    }
}

impl fmt::Write for Fnv {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write(s.as_bytes());
        Ok(())
    }
}

/// Hashes `addr` in its text form (`Display`'s bytes). An IPv4 address is written by hand:
/// through `fmt`, it cost about 1,200 instructions, a tenth of a simulated cluster's
/// formation (every decoded identity is fingerprinted).
fn write_addr(h: &mut Fnv, addr: SocketAddr) {
    /// Writes `v` in decimal at the start of `out`, returning the digits' count.
    fn decimal(out: &mut [u8], mut v: u32) -> usize {
        let mut digits = [0u8; 10];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for (i, d) in digits[..n].iter().rev().enumerate() {
            out[i] = *d;
        }
        n
    }
    match addr {
        SocketAddr::V4(a) => {
            // "255.255.255.255:65535" is 21 bytes.
            let mut buf = [0u8; 21];
            let mut n = 0;
            for (i, octet) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                n += decimal(&mut buf[n..], u32::from(octet));
            }
            buf[n] = b':';
            n += 1;
            n += decimal(&mut buf[n..], u32::from(a.port()));
            h.write(&buf[..n]);
        }
        SocketAddr::V6(_) => {
            use fmt::Write as _;
            // Writing into the hash cannot fail.
            let _ = write!(h, "{addr}");
        }
    }
}

/// FNV-1a over an identity's content, in its encoding order. The address is hashed in its
/// text form, written straight into the hash (no allocation).
fn fingerprint<'a>(
    name: &[u8],
    addr: SocketAddr,
    version: u64,
    leaving: bool,
    tags: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> u64 {
    let mut h = Fnv::new();
    h.write(name);
    write_addr(&mut h, addr);
    h.write(&version.to_le_bytes());
    h.write(&[u8::from(leaving)]);
    for (k, v) in tags {
        h.write(&(k.len() as u64).to_le_bytes());
        h.write(k);
        h.write(&(v.len() as u64).to_le_bytes());
        h.write(v);
    }
    h.0
}

/// An identity as it lies in a received packet, borrowed from the packet's bytes: enough to
/// find the copy a node already holds (name key and fingerprint) without building a new one.
/// Decoding a known identity this way allocates only the small list of tag pairs; the
/// owned identity ([`IdRef::to_owned`]) is built only for identities not held yet.
///
/// Its encoding is [`NodeId`]'s: postcard writes a map as a length and then the pairs, as it
/// writes a sequence of pairs, and a string as a length and its bytes, as it writes bytes.
/// Strings are borrowed as bytes: a copy that matches a held identity byte for byte is
/// UTF-8 because that one is, so the check is left to [`IdRef::to_owned`] (it was 2.5 % of
/// a 1,000-node formation).
#[derive(Debug, Deserialize)]
pub(crate) struct IdRef<'a> {
    #[serde(borrow)]
    name: &'a [u8],
    addr: SocketAddr,
    version: u64,
    leaving: bool,
    #[serde(borrow)]
    tags: Vec<(&'a [u8], &'a [u8])>,
}

impl IdRef<'_> {
    /// The key of the name (as [`NameKey::of`] computes it: the hash is of its bytes).
    pub(crate) fn key(&self) -> NameKey {
        NameKey::of_bytes(self.name)
    }

    /// The content fingerprint, as [`NodeId`] computes it. Tags are hashed in the order they
    /// came: a sender's tags in another order than their sorted one (only a hostile or broken
    /// sender writes that) hash differently, so such an identity is never taken for a stored
    /// one; it is decoded in full instead.
    pub(crate) fn fingerprint(&self) -> u64 {
        fingerprint(
            self.name,
            self.addr,
            self.version,
            self.leaving,
            self.tags.iter().copied(),
        )
    }

    /// True when this is `id`, field by field (name, address, version, flag, and the tags
    /// in the order they came, so unsorted tags never match, as with the fingerprint).
    /// Cheaper than the fingerprint, which hashes every byte one at a time, and exact.
    pub(crate) fn is(&self, id: &NodeId) -> bool {
        let c = &id.inner;
        self.name == c.name.as_bytes()
            && self.addr == c.addr
            && self.version == c.version
            && self.leaving == c.leaving
            && self.tags.len() == c.tags.len()
            && self
                .tags
                .iter()
                .zip(c.tags.iter())
                .all(|((k, v), (k2, v2))| *k == k2.as_bytes() && *v == v2.as_bytes())
    }

    /// The owned identity, exactly as decoding a [`NodeId`] from the same bytes gives it
    /// (tags into a map: for a repeated key the last value wins), or the error when a name,
    /// key or value is not UTF-8. Not validated otherwise.
    pub(crate) fn to_owned(&self) -> Result<NodeId, InvalidInput> {
        fn text(b: &[u8]) -> Result<&str, InvalidInput> {
            std::str::from_utf8(b).map_err(|_| InvalidInput::NotUtf8)
        }
        let mut tags = Tags::new();
        for (k, v) in &self.tags {
            tags.insert(text(k)?.to_string(), text(v)?.to_string());
        }
        Ok(NodeId::from_inner(IdInner {
            name: text(self.name)?.into(),
            addr: self.addr,
            version: self.version,
            leaving: self.leaving,
            tags,
        }))
    }
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct IdInner {
    name: Arc<str>,
    addr: SocketAddr,
    version: u64,
    leaving: bool,
    tags: Tags,
}

impl NodeId {
    /// A new identity. Validates the name and tags against `limits`.
    pub fn new(
        name: &str,
        addr: SocketAddr,
        version: u64,
        tags: Tags,
        limits: &Limits,
    ) -> Result<Self, InvalidInput> {
        validate_name(name, limits)?;
        validate_tags(&tags, limits)?;
        Ok(Self::from_inner(IdInner {
            name: name.into(),
            addr,
            version,
            leaving: false,
            tags,
        }))
    }

    fn from_inner(inner: IdInner) -> Self {
        Self {
            inner: Arc::new(Shared {
                key: NameKey::of(&inner.name),
                measure: measure(&inner),
                fingerprint: fingerprint(
                    inner.name.as_bytes(),
                    inner.addr,
                    inner.version,
                    inner.leaving,
                    inner.tags.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
                ),
                content: inner,
            }),
        }
    }

    /// The content fingerprint (see [`IdRef::fingerprint`]).
    pub(crate) fn fingerprint(&self) -> u64 {
        self.inner.fingerprint
    }

    /// The key of the name (what foca groups identities by).
    pub fn key(&self) -> NameKey {
        self.inner.key
    }

    /// The low 32 bits of the content fingerprint: with the name key, what a compact
    /// reference on the wire names this identity by.
    pub fn short_fingerprint(&self) -> u32 {
        self.inner.fingerprint as u32
    }

    /// An identity with this one's name and address but no version, tags or flag: what a
    /// reference to an identity of ours that we no longer know decodes to (a peer still
    /// addressing who we were before a restart).
    pub(crate) fn former(&self) -> Self {
        Self::from_inner(IdInner {
            name: self.inner.name.clone(),
            addr: self.inner.addr,
            version: 0,
            leaving: false,
            tags: Tags::new(),
        })
    }

    /// True when both are the same copy (one allocation), not merely equal.
    #[cfg(test)]
    pub(crate) fn same_copy(&self, other: &NodeId) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The node name: unique in the cluster.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The advertised gossip address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The identity version: start time in ms at boot, plus one per tag change or rejoin.
    pub fn version(&self) -> u64 {
        self.inner.version
    }

    /// True for the identity a node switches to when it leaves gracefully.
    pub fn is_leaving(&self) -> bool {
        self.inner.leaving
    }

    /// The advertised tags.
    pub fn tags(&self) -> &Tags {
        &self.inner.tags
    }

    /// The `role` tag, if any.
    pub fn role(&self) -> Option<&str> {
        self.inner.tags.get(ROLE_TAG).map(String::as_str)
    }

    /// The same member with new tags and the next version.
    pub fn with_tags(&self, tags: Tags) -> Self {
        Self::from_inner(IdInner {
            name: self.inner.name.clone(),
            addr: self.inner.addr,
            version: self.inner.version.saturating_add(1),
            leaving: false,
            tags,
        })
    }

    /// The same member with version `version` (tags, address unchanged; not leaving).
    pub fn with_version(&self, version: u64) -> Self {
        Self::from_inner(IdInner {
            name: self.inner.name.clone(),
            addr: self.inner.addr,
            version,
            leaving: false,
            tags: self.inner.tags.clone(),
        })
    }

    /// The identity this node switches to before announcing its leave.
    pub fn as_leaving(&self) -> Self {
        Self::from_inner(IdInner {
            name: self.inner.name.clone(),
            addr: self.inner.addr,
            version: self.inner.version,
            leaving: true,
            tags: self.inner.tags.clone(),
        })
    }

    /// What decides between two identities of one name: version, then leaving.
    pub(crate) fn rank(&self) -> (u64, bool) {
        (self.inner.version, self.inner.leaving)
    }

    /// Checks a decoded identity against `limits`.
    pub(crate) fn validate(&self, limits: &Limits) -> Result<(), InvalidInput> {
        if self.inner.version > VERSION_MAX {
            return Err(InvalidInput::VersionTooHigh(self.inner.version));
        }
        if let Some((name, tags)) = self.inner.measure
            && name as usize <= limits.name_len_max
            && tags as usize <= limits.tags_bytes_max
        {
            return Ok(());
        }
        // Refused, or not measured: the checks in full, for the error they name.
        validate_name(&self.inner.name, limits)?;
        validate_tags(&self.inner.tags, limits)
    }
}

impl PartialEq for NodeId {
    /// The same copy, or the same name key and content fingerprint: the same identity. The
    /// fields are read only for identities held in different copies (a node, its directory
    /// and, in the simulator, every node share one copy of each identity, so that is rare).
    /// Two versions of one member's identity with one 64-bit fingerprint are the only way to
    /// be wrong: about 1 in 10^19 per pair.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.inner.key == other.inner.key
                && self.inner.fingerprint == other.inner.fingerprint)
    }
}

impl Eq for NodeId {}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}#{}{}",
            self.inner.name,
            self.inner.addr,
            self.inner.version,
            if self.inner.leaving { "(leaving)" } else { "" }
        )
    }
}

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.content.serialize(s)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Structural decoding only; semantic validation (charset, sizes) happens in the codec,
        // which knows the configured limits.
        IdInner::deserialize(d).map(Self::from_inner)
    }
}

impl foca::Identity for NodeId {
    type Addr = NameKey;

    fn renew(&self) -> Option<Self> {
        // A node that left must stay gone: never rejoin by itself.
        if self.inner.leaving {
            return None;
        }
        Some(Self::from_inner(IdInner {
            name: self.inner.name.clone(),
            addr: self.inner.addr,
            version: self
                .inner
                .version
                .checked_add(1)
                .filter(|v| *v <= VERSION_MAX)?,
            leaving: false,
            tags: self.inner.tags.clone(),
        }))
    }

    fn addr(&self) -> NameKey {
        self.inner.key
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.rank() > adversary.rank()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;
    use proptest::prelude::*;

    /// The address's hash as it was defined: `Display`'s bytes, through `fmt`.
    fn addr_hash_by_fmt(addr: SocketAddr) -> u64 {
        let mut h = Fnv::new();
        h.write(addr.to_string().as_bytes());
        h.0
    }

    fn addr_hash(addr: SocketAddr) -> u64 {
        let mut h = Fnv::new();
        write_addr(&mut h, addr);
        h.0
    }

    #[test]
    fn address_hash_is_display_text_at_the_edges() {
        for a in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "127.0.0.1:7946",
            "10.0.100.9:80",
            "1.20.3.40:10000",
            "[::1]:7946",
            "[fe80::1%2]:7946",
            "[::ffff:10.0.0.1]:1",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            assert_eq!(addr_hash(addr), addr_hash_by_fmt(addr), "{a}");
        }
    }

    proptest! {
        #[test]
        fn address_hash_is_display_text(octets in any::<[u8; 4]>(), port in any::<u16>()) {
            let addr = SocketAddr::from((octets, port));
            prop_assert_eq!(addr_hash(addr), addr_hash_by_fmt(addr));
        }
    }

    proptest! {
        /// The measured shortcut accepts and refuses exactly what the checks in full do, and
        /// a refusal names the same error.
        #[test]
        fn validating_by_measure_is_validating_in_full(
            name in "[a-z.\\-_]{0,12}|[a-z\\x00 é]{1,4}",
            tags in proptest::collection::btree_map(
                "[a-z_]{0,6}|[a-z\\n]{1,3}", "[a-z é]{0,10}|[a-z\\t]{1,3}", 0..4),
            name_slack in -2i64..3,
            tags_slack in -2i64..3,
        ) {
            let id = NodeId::from_inner(IdInner {
                name: name.as_str().into(),
                addr: "127.0.0.1:7946".parse().unwrap(),
                version: 1,
                leaving: false,
                tags: tags.clone(),
            });
            // Limits at and around what the identity takes, where an off-by-one would show.
            let total: usize = tags.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            let around = |n: usize, slack: i64| usize::try_from(n as i64 + slack).unwrap_or(0);
            let limits = Limits {
                name_len_max: around(name.len(), name_slack),
                tags_bytes_max: around(total, tags_slack),
                ..Limits::default()
            };
            let full = validate_name(&name, &limits).and_then(|()| validate_tags(&tags, &limits));
            prop_assert_eq!(id.validate(&limits), full);
        }
    }

    fn id(name: &str, version: u64) -> NodeId {
        NodeId::new(
            name,
            "127.0.0.1:7946".parse().unwrap(),
            version,
            Tags::new(),
            &Limits::default(),
        )
        .unwrap()
    }

    #[test]
    fn newer_version_wins_and_leaving_beats_same_version() {
        let a = id("a", 10);
        let b = a.with_tags(Tags::from([("role".into(), "web".into())]));
        assert!(b.win_addr_conflict(&a));
        assert!(!a.win_addr_conflict(&b));
        let gone = b.as_leaving();
        assert!(gone.win_addr_conflict(&b));
        assert_eq!(gone.renew(), None, "a leaving identity never rejoins");
        let restarted = id("a", 1000);
        assert!(restarted.win_addr_conflict(&gone));
    }

    #[test]
    fn a_borrowed_decode_names_the_same_identity() {
        let l = Limits::default();
        let tags = Tags::from([("role".into(), "app".into()), ("zone".into(), "eu".into())]);
        let id = NodeId::new("web1", "10.0.0.4:7946".parse().unwrap(), 7, tags, &l).unwrap();
        let bytes = postcard::to_stdvec(&id).unwrap();
        let r: IdRef<'_> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!((r.key(), r.fingerprint()), (id.key(), id.fingerprint()));
        assert!(r.is(&id));
        let differing = [
            id.with_tags(Tags::from([("role".into(), "app".into())])),
            NodeId::new(
                "web1",
                id.addr(),
                7,
                Tags::from([("role".into(), "app".into()), ("zone".into(), "us".into())]),
                &l,
            )
            .unwrap(),
            id.as_leaving(),
            NodeId::new(
                "web1",
                "10.0.0.5:7946".parse().unwrap(),
                7,
                id.tags().clone(),
                &l,
            )
            .unwrap(),
            NodeId::new("web1", id.addr(), 8, id.tags().clone(), &l).unwrap(),
            NodeId::new("web2", id.addr(), 7, id.tags().clone(), &l).unwrap(),
        ];
        for other in &differing {
            assert!(!r.is(other), "{other:?}");
        }
        let owned = r.to_owned().unwrap();
        assert_eq!(owned, id);
        assert_eq!(owned.tags(), id.tags());
        assert_eq!(owned.addr(), id.addr());

        // The same content with its tags out of order (only a broken or hostile sender
        // writes that) is not taken for the stored identity; built in full it is the same.
        let unsorted = postcard::to_stdvec(&(
            "web1",
            id.addr(),
            7u64,
            false,
            vec![("zone", "eu"), ("role", "app")],
        ))
        .unwrap();
        let r: IdRef<'_> = postcard::from_bytes(&unsorted).unwrap();
        assert_ne!(r.fingerprint(), id.fingerprint());
        assert!(!r.is(&id));
        assert_eq!(r.to_owned().unwrap(), id);
    }

    #[test]
    fn names_and_tags_are_checked() {
        let l = Limits::default();
        assert!(validate_name("app-1.example_x", &l).is_ok());
        assert!(validate_name("", &l).is_err());
        assert!(validate_name("a;rm -rf", &l).is_err());
        assert!(validate_name(&"x".repeat(129), &l).is_err());
        let bad = Tags::from([("k".into(), "v\nSERF_EVENT=x".into())]);
        assert!(validate_tags(&bad, &l).is_err());
        let big = Tags::from([("k".into(), "v".repeat(1100))]);
        assert!(validate_tags(&big, &l).is_err());
        let ok = Tags::from([("port".into(), "8080 $(x) `y`".into())]);
        assert!(validate_tags(&ok, &l).is_ok());
    }
}
