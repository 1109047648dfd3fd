//! The agent's side of gossip encryption: every outgoing datagram sealed and every incoming
//! one opened with the keyring ([`gossip_core::crypt`]), nonces drawn from a generator seeded
//! by the operating system, the keyring file kept in step with rotations, and the key
//! commands that travel to every member as internal queries (`keys --install/--use/--remove/
//! --list`, as Serf's).
//!
//! A packet that does not open (no key fits, not encrypted, unknown format) is dropped and
//! counted, and the agent says why in its log, at most every few seconds per reason: a node
//! started with the wrong key sees at once that nobody answers because of the key.
//!
//! A member that restarts holding only an older key still in the ring (it missed a rotation
//! while down, serf#579) is answered under the key it used, so it can rejoin; it moves to the
//! primary key as soon as a `keys --install` reaches it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gossip_core::crypt::{self, Key, Keyring, NONCE_LEN, OpenError};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::config::KeyringConfig;

/// Query names starting with this are the agent's own and never reach handlers; users may
/// not send events or queries under it.
pub const RESERVED_PREFIX: &str = "_ga-";
/// The key commands' query names: this followed by `install`, `use`, `remove` or `list`.
pub const KEYS_QUERY: &str = "_ga-keys:";

/// How often one kind of drop is logged at warn level.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Counters of packets encryption refused.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CryptStats {
    /// Keys in the ring (0: encryption off).
    pub keys: usize,
    /// Dropped: a gossip-agent packet that is not encrypted, while this agent requires it.
    pub dropped_unencrypted: u64,
    /// Dropped: neither a gossip-agent packet nor a sealed one (noise), before any work per
    /// source.
    #[serde(default)]
    pub dropped_junk: u64,
    /// Dropped: encrypted, and no key in the ring (or no ring at all) opens it.
    pub dropped_wrong_key: u64,
    /// Dropped: an encrypted format this agent does not know, or truncated.
    pub dropped_bad_format: u64,
}

/// A key command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyOp {
    /// Add a key to every ring.
    Install,
    /// Make an installed key the primary one everywhere.
    Use,
    /// Remove a key (not the primary) everywhere.
    Remove,
    /// Report every member's keys.
    List,
}

impl KeyOp {
    /// Its name in the query name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Install => "install",
            Self::Use => "use",
            Self::Remove => "remove",
            Self::List => "list",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Self::Install, Self::Use, Self::Remove, Self::List]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// Rate-limited warnings, one clock per reason.
#[derive(Debug, Default)]
pub struct Warnings {
    last: BTreeMap<&'static str, Instant>,
}

impl Warnings {
    /// Logs `msg` at warn level unless `reason` was logged in the last few seconds (then at
    /// debug level).
    pub fn warn(&mut self, reason: &'static str, from: SocketAddr, msg: &str) {
        let now = Instant::now();
        let due = self
            .last
            .get(reason)
            .is_none_or(|t| now.duration_since(*t) >= WARN_EVERY);
        if due {
            self.last.insert(reason, now);
            tracing::warn!(%from, reason, "{msg}");
        } else {
            tracing::debug!(%from, reason, "{msg}");
        }
    }
}

/// Encryption state of a running agent.
pub struct Crypt {
    ring: Keyring,
    file: Option<PathBuf>,
    rng: StdRng,
    /// Peers whose last packet opened under a key other than our primary one (at most
    /// [`PEER_KEYS_MAX`]).
    peer_keys: BTreeMap<SocketAddr, Key>,
    stats: CryptStats,
    /// Senders lately answered with a sealed empty datagram (see [`Crypt::open`]).
    rebuffed: Rebuffed,
}

/// How many peers on an older key [`Crypt`] remembers (past it, the lowest address is
/// forgotten: it is answered under the primary key, which it learns at the next rotation).
const PEER_KEYS_MAX: usize = 4096;

/// Slots of the table of recently rebuffed senders.
const REBUFF_SLOTS: usize = 512;

/// At most this many rebuffs a second, whatever the number of senders.
const REBUFFS_PER_SEC: u32 = 64;

/// Senders lately rebuffed: a direct-mapped table (a slot per hash of the address, under a
/// key drawn at start), so that noting and checking a sender is O(1) and the table never
/// grows, however many senders an attacker forges (a sender whose slot is taken by another
/// may be rebuffed again sooner, nothing worse); and a global budget per second.
struct Rebuffed {
    hasher: std::collections::hash_map::RandomState,
    slots: Box<[Option<(SocketAddr, Instant)>]>,
    second: Option<Instant>,
    in_second: u32,
}

impl Rebuffed {
    fn new() -> Self {
        Self {
            hasher: std::collections::hash_map::RandomState::new(),
            slots: vec![None; REBUFF_SLOTS].into_boxed_slice(),
            second: None,
            in_second: 0,
        }
    }

    /// True (and noted) when `to` may be rebuffed now.
    fn allow(&mut self, to: SocketAddr, now: Instant) -> bool {
        use std::hash::BuildHasher;
        let slot = (self.hasher.hash_one(to) as usize) % REBUFF_SLOTS;
        if let Some((addr, at)) = self.slots[slot]
            && addr == to
            && now.duration_since(at) < WARN_EVERY
        {
            return false;
        }
        if self
            .second
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            self.second = Some(now);
            self.in_second = 0;
        }
        if self.in_second >= REBUFFS_PER_SEC {
            return false;
        }
        self.in_second += 1;
        self.slots[slot] = Some((to, now));
        true
    }
}

/// What [`Crypt::open`] made of a datagram.
#[derive(Debug)]
pub enum Opened {
    /// The plain packet.
    Plain(Vec<u8>),
    /// Dropped (counted and logged).
    Dropped,
    /// Dropped, and this sealed empty datagram should go back to the sender.
    Rebuff(Vec<u8>),
}

impl Crypt {
    /// Builds the ring; writes the keyring file when there is one (creating it from
    /// `--encrypt` the first time).
    pub fn start(cfg: &KeyringConfig) -> Result<Self, std::io::Error> {
        let ring = Keyring::new(cfg.keys.iter().cloned()).map_err(std::io::Error::other)?;
        let c = Self {
            ring,
            file: cfg.file.clone(),
            rng: rand::make_rng(),
            peer_keys: BTreeMap::new(),
            stats: CryptStats::default(),
            rebuffed: Rebuffed::new(),
        };
        c.save()?;
        Ok(c)
    }

    fn save(&self) -> std::io::Result<()> {
        match &self.file {
            Some(p) => KeyringConfig::save(p, &self.ring.keys().cloned().collect::<Vec<_>>()),
            None => Ok(()),
        }
    }

    /// Counters, with the number of keys.
    pub fn stats(&self) -> CryptStats {
        CryptStats {
            keys: self.ring.keys().count(),
            ..self.stats.clone()
        }
    }

    /// Seals a datagram for `to`.
    pub fn seal(&mut self, to: SocketAddr, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill_bytes(&mut nonce);
        self.ring.seal(self.peer_keys.get(&to), nonce, plain)
    }

    /// Opens a datagram from `from`. What does not open is counted and logged; a sender
    /// with another key or none at all is also answered, at most once in 10 s (and 64 times a
    /// second in all), with a sealed empty datagram (43 bytes; only for datagrams of 16 bytes
    /// or more, so a forged sender gains little by it), so that it too can say in its log why
    /// nobody lets it in. A datagram that is neither sealed nor a gossip-agent packet is noise:
    /// dropped and counted before any work per source.
    pub fn open(&mut self, from: SocketAddr, packet: &[u8], warnings: &mut Warnings) -> Opened {
        if !crypt::is_sealed(packet) && !packet.starts_with(&gossip_core::wire::MAGIC) {
            self.stats.dropped_junk += 1;
            return Opened::Dropped;
        }
        match self.ring.open(packet) {
            Ok((plain, 0)) => {
                self.peer_keys.remove(&from);
                Opened::Plain(plain)
            }
            Ok((plain, i)) => {
                if let Some(k) = self.ring.keys().nth(i) {
                    if self.peer_keys.len() >= PEER_KEYS_MAX && !self.peer_keys.contains_key(&from)
                    {
                        self.peer_keys.pop_first();
                    }
                    self.peer_keys.insert(from, k.clone());
                }
                Opened::Plain(plain)
            }
            Err(OpenError::Plain) => {
                self.stats.dropped_unencrypted += 1;
                warnings.warn(
                    "unencrypted",
                    from,
                    "dropped an unencrypted packet: this agent requires encryption (is the \
                     sender running without --encrypt?)",
                );
                self.rebuff(from, packet.len())
            }
            Err(OpenError::NoKey) => {
                self.stats.dropped_wrong_key += 1;
                warnings.warn(
                    "wrong key",
                    from,
                    "dropped a packet no key in our keyring opens: the sender uses another \
                     key (or it was altered on the way)",
                );
                self.rebuff(from, packet.len())
            }
            Err(e @ (OpenError::Short | OpenError::Version(_))) => {
                self.stats.dropped_bad_format += 1;
                warnings.warn(
                    "bad format",
                    from,
                    &format!("dropped an encrypted packet: {e}"),
                );
                Opened::Dropped
            }
        }
    }

    fn rebuff(&mut self, to: SocketAddr, their_len: usize) -> Opened {
        if their_len < 16 || !self.rebuffed.allow(to, Instant::now()) {
            return Opened::Dropped;
        }
        Opened::Rebuff(self.seal(to, &[]))
    }

    /// Applies a key command from the query `name` (see [`KEYS_QUERY`]) with `payload`;
    /// returns the answer for the asking node.
    pub fn apply(&mut self, op: KeyOp, payload: &[u8]) -> KeyAnswer {
        match self.try_apply(op, payload) {
            Ok(a) => a,
            Err(e) => KeyAnswer::Error(e.to_string()),
        }
    }

    fn try_apply(&mut self, op: KeyOp, payload: &[u8]) -> Result<KeyAnswer, KeyCommandError> {
        if op == KeyOp::List {
            return Ok(KeyAnswer::Keys(
                self.ring.keys().map(Key::to_base64).collect(),
            ));
        }
        let text = std::str::from_utf8(payload).map_err(|_| KeyCommandError::NotText)?;
        let key = Key::parse(text)?;
        let changed = match op {
            KeyOp::Install => self.ring.install(key),
            KeyOp::Use => self.ring.use_key(&key)?,
            KeyOp::Remove => {
                let removed = self.ring.remove(&key)?;
                self.peer_keys.retain(|_, k| *k != key);
                removed
            }
            KeyOp::List => unreachable!("answered above"),
        };
        if changed {
            tracing::info!(
                op = op.as_str(),
                keys = self.ring.keys().count(),
                "keyring changed"
            );
            if let Err(e) = self.save() {
                tracing::error!(error = %e, "keyring file not saved; the change holds until restart");
                return Err(KeyCommandError::NotSaved(e));
            }
        }
        Ok(KeyAnswer::Done { changed })
    }
}

/// Why a member could not carry out a key command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyCommandError {
    /// The key sent is not text.
    #[error("the key is not text")]
    NotText,
    /// Not a key, or a change the ring refuses (not installed, the primary).
    #[error(transparent)]
    Key(#[from] gossip_core::crypt::KeyError),
    /// Encryption is off on that member.
    #[error("encryption is not enabled on this agent")]
    NoEncryption,
    /// An internal query this build does not know.
    #[error("unknown internal query {0:?}")]
    Unknown(String),
    /// Applied, but the keyring file could not be written.
    #[error("applied, but the keyring file was not saved: {0}")]
    NotSaved(#[source] std::io::Error),
}

/// A member's answer to a key command, as it travels back (JSON in the query's answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAnswer {
    /// Done; `changed` is false when there was nothing to do.
    Done {
        /// Whether the keyring changed.
        changed: bool,
    },
    /// The member's keys, the primary first (`list`).
    Keys(Vec<String>),
    /// It failed, and why.
    Error(String),
}

impl KeyAnswer {
    /// The bytes of the answer.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a key answer serializes")
    }

    /// An answer from its bytes (an unreadable one is an error answer saying so).
    pub fn decode(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Self::Error("unreadable answer to a key command".into()))
    }
}

/// The key command a query name asks for, if it is one.
pub fn key_op(query_name: &str) -> Option<Option<KeyOp>> {
    query_name.strip_prefix(KEYS_QUERY).map(KeyOp::parse)
}

/// True when `packet` is encrypted (for an agent without keys, to say why it drops it).
pub fn is_sealed(packet: &[u8]) -> bool {
    crypt::is_sealed(packet)
}

/// Checks that `text` is a key (base64 of 32 bytes).
pub fn check_key(text: &str) -> Result<(), String> {
    Key::parse(text).map(|_| ()).map_err(|e| e.to_string())
}

/// A new random key, as `gossip-agent keygen` prints it.
pub fn keygen() -> String {
    let mut rng: StdRng = rand::make_rng();
    let mut bytes = [0u8; crypt::KEY_LEN];
    rng.fill_bytes(&mut bytes);
    Key::from_bytes(bytes).to_base64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crypt() -> Crypt {
        Crypt::start(&KeyringConfig {
            keys: vec![Key::from_bytes([5; 32])],
            file: None,
            encrypt_ignored: false,
        })
        .unwrap()
    }

    fn source(i: u32) -> SocketAddr {
        SocketAddr::from((
            (0x7f00_0000 | (i & 0xff_ffff)).to_be_bytes(),
            7000 + (i % 50) as u16,
        ))
    }

    /// Datagrams from many forged sources cost the same as from one: the table of rebuffed
    /// senders is bounded and O(1), rebuffs are budgeted per second, and noise is dropped
    /// before any work per source. (The table used to be rescanned for every new sender
    /// past 4,096: 323 us a datagram.)
    #[test]
    fn many_forged_sources_cost_little_and_keep_nothing() {
        let mut c = crypt();
        let mut w = Warnings::default();
        let mut unencrypted = vec![0u8; 16];
        unencrypted[..2].copy_from_slice(&gossip_core::wire::MAGIC);
        let started = Instant::now();
        let mut rebuffs = 0;
        for i in 0..100_000 {
            if let Opened::Rebuff(_) = c.open(source(i), &unencrypted, &mut w) {
                rebuffs += 1;
            }
            assert!(matches!(
                c.open(source(i), &[0xab; 16], &mut w),
                Opened::Dropped
            ));
        }
        let took = started.elapsed();
        assert!(rebuffs <= 2 * REBUFFS_PER_SEC, "{rebuffs} rebuffs");
        assert_eq!(c.stats.dropped_junk, 100_000);
        assert_eq!(c.stats.dropped_unencrypted, 100_000);
        assert_eq!(c.rebuffed.slots.len(), REBUFF_SLOTS);
        // Generous: about 0.1 s here; the rescanning table took tens of seconds.
        assert!(
            took < Duration::from_secs(5),
            "200,000 datagrams took {took:?}"
        );
    }

    #[test]
    fn a_sender_is_rebuffed_once_in_a_while() {
        let mut c = crypt();
        let mut w = Warnings::default();
        let other = Crypt::start(&KeyringConfig {
            keys: vec![Key::from_bytes([6; 32])],
            file: None,
            encrypt_ignored: false,
        })
        .unwrap()
        .seal(source(1), b"GA\x03\x00hello");
        assert!(matches!(
            c.open(source(1), &other, &mut w),
            Opened::Rebuff(_)
        ));
        assert!(matches!(c.open(source(1), &other, &mut w), Opened::Dropped));
        assert!(matches!(
            c.open(source(2), &other, &mut w),
            Opened::Rebuff(_)
        ));
        assert_eq!(c.stats.dropped_wrong_key, 3);
    }
}
