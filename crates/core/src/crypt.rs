//! Packet encryption: the keyring and the sealed packet format.
//!
//! With encryption on, every datagram is sealed with XChaCha20-Poly1305 (authenticated: a
//! packet that was altered, or sealed under a key we do not hold, does not open) under the
//! keyring's *primary* key, and opened with whichever key in the ring fits. Rotation is
//! Serf's: install a new key everywhere, make it primary everywhere, then remove the old one;
//! while both are installed, members on either key understand each other.
//!
//! A sealed packet is `"GX"`, a format version, a 24-byte nonce, then the ciphertext of the
//! plain packet (envelope included) and its 16-byte tag. The three header bytes are
//! authenticated too. The nonce comes from the caller (the agent draws it from a generator
//! seeded by the operating system): this module does no IO and draws no randomness.

use std::fmt;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// Bytes in a nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of the authentication tag.
const TAG_LEN: usize = 16;
/// First two bytes of a sealed packet.
pub const SEALED_MAGIC: [u8; 2] = *b"GX";
/// Version of the sealed format.
pub const SEALED_VERSION: u8 = 1;
const HEADER_LEN: usize = 3;
/// What sealing adds to a packet: header, nonce and tag.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// A 32-byte key, written as standard base64 (44 characters), as Serf writes its keys.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    /// The key with these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses base64 (standard alphabet, padded or not).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let bytes = base64_decode(text.trim()).ok_or(KeyError::Base64)?;
        let bytes: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyError::Length(b.len()))?;
        Ok(Self(bytes))
    }

    /// The key as padded standard base64.
    pub fn to_base64(&self) -> String {
        base64_encode(&self.0)
    }
}

impl fmt::Debug for Key {
    /// Never prints the key itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Why a key or a keyring change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64.
    #[error("not a base64 key")]
    Base64,
    /// Wrong length.
    #[error("a key is {KEY_LEN} bytes, this one is {0} (make one with gossip-agent keygen)")]
    Length(usize),
    /// `use` or `remove` of a key that is not in the ring.
    #[error("the key is not installed")]
    NotInstalled,
    /// `remove` of the primary key.
    #[error("the primary key cannot be removed; make another key primary first")]
    RemovePrimary,
    /// A keyring needs a key.
    #[error("the keyring is empty")]
    Empty,
}

/// Why a sealed packet did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// It is not sealed at all.
    #[error("not encrypted")]
    Plain,
    /// Sealed in a format version we do not know.
    #[error("sealed with format version {0}")]
    Version(u8),
    /// Shorter than header, nonce and tag.
    #[error("too short to be sealed")]
    Short,
    /// No key in the ring opens it: another cluster's key, or altered on the way.
    #[error("no key in the ring opens it")]
    NoKey,
}

/// True when `packet` starts like a sealed packet.
pub fn is_sealed(packet: &[u8]) -> bool {
    packet.starts_with(&SEALED_MAGIC)
}

/// The keys this node holds; the first is the primary one, used for sealing.
pub struct Keyring {
    keys: Vec<(Key, XChaCha20Poly1305)>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({} keys)", self.keys.len())
    }
}

impl Keyring {
    /// A ring of `keys`, the first primary; duplicates are dropped.
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Result<Self, KeyError> {
        let mut ring = Self { keys: Vec::new() };
        for k in keys {
            ring.install(k);
        }
        if ring.keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(ring)
    }

    /// The primary key.
    pub fn primary(&self) -> &Key {
        &self.keys[0].0
    }

    /// Every key, the primary first.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter().map(|(k, _)| k)
    }

    /// True when `key` is in the ring.
    pub fn contains(&self, key: &Key) -> bool {
        self.keys.iter().any(|(k, _)| k == key)
    }

    /// Adds `key` (not primary, unless the ring was empty). False when it was there already.
    pub fn install(&mut self, key: Key) -> bool {
        if self.contains(&key) {
            return false;
        }
        let cipher = XChaCha20Poly1305::new((&key.0).into());
        self.keys.push((key, cipher));
        true
    }

    /// Makes an installed `key` the primary one. False when it was already.
    pub fn use_key(&mut self, key: &Key) -> Result<bool, KeyError> {
        let i = self
            .keys
            .iter()
            .position(|(k, _)| k == key)
            .ok_or(KeyError::NotInstalled)?;
        if i == 0 {
            return Ok(false);
        }
        let entry = self.keys.remove(i);
        self.keys.insert(0, entry);
        Ok(true)
    }

    /// Removes `key`, which must not be the primary one. False when it was not installed.
    pub fn remove(&mut self, key: &Key) -> Result<bool, KeyError> {
        match self.keys.iter().position(|(k, _)| k == key) {
            None => Ok(false),
            Some(0) => Err(KeyError::RemovePrimary),
            Some(i) => {
                self.keys.remove(i);
                Ok(true)
            }
        }
    }

    /// Seals `plain` under `key` (the primary one when `None`, or when `key` is no longer
    /// installed), with `nonce`, which must never repeat under the same key.
    pub fn seal(&self, key: Option<&Key>, nonce: [u8; NONCE_LEN], plain: &[u8]) -> Vec<u8> {
        let cipher = key
            .and_then(|k| self.keys.iter().find(|(x, _)| x == k))
            .unwrap_or(&self.keys[0]);
        let header = [SEALED_MAGIC[0], SEALED_MAGIC[1], SEALED_VERSION];
        let sealed = cipher
            .1
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &header,
                },
            )
            .expect("XChaCha20-Poly1305 seals any length below 256 GiB");
        let mut out = Vec::with_capacity(OVERHEAD + plain.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a sealed packet with whichever key fits; returns the plain packet and the
    /// position of that key in the ring (0: the primary).
    pub fn open(&self, packet: &[u8]) -> Result<(Vec<u8>, usize), OpenError> {
        if !is_sealed(packet) {
            return Err(OpenError::Plain);
        }
        if packet.len() < OVERHEAD {
            return Err(OpenError::Short);
        }
        if packet[2] != SEALED_VERSION {
            return Err(OpenError::Version(packet[2]));
        }
        let (header, rest) = packet.split_at(HEADER_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::from_slice(nonce);
        for (i, (_, cipher)) in self.keys.iter().enumerate() {
            let payload = Payload {
                msg: sealed,
                aad: header,
            };
            if let Ok(plain) = cipher.decrypt(nonce, payload) {
                return Ok((plain, i));
            }
        }
        Err(OpenError::NoKey)
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, padded or not; `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero, as a canonical encoder leaves them.
    if acc != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; KEY_LEN])
    }

    #[test]
    fn keys_parse_from_base64_of_32_bytes_only() {
        let k = key(7);
        assert_eq!(Key::parse(&k.to_base64()).unwrap(), k);
        assert_eq!(k.to_base64().len(), 44);
        assert_eq!(Key::parse("not base64!"), Err(KeyError::Base64));
        assert_eq!(
            Key::parse(&base64_encode(&[1; 16])),
            Err(KeyError::Length(16))
        );
        assert_eq!(format!("{k:?}"), "Key(..)");
    }

    #[test]
    fn a_packet_opens_with_any_installed_key_and_no_other() {
        let mut ring = Keyring::new([key(1)]).unwrap();
        let sealed = ring.seal(None, [9; NONCE_LEN], b"GA hello");
        assert!(is_sealed(&sealed));
        assert_eq!(sealed.len(), 8 + OVERHEAD);
        assert_eq!(ring.open(&sealed).unwrap(), (b"GA hello".to_vec(), 0));

        let other = Keyring::new([key(2)]).unwrap();
        assert_eq!(other.open(&sealed), Err(OpenError::NoKey));

        // Rotation: install 2, use 2; a packet under 1 still opens (position 1).
        assert!(ring.install(key(2)));
        assert!(!ring.install(key(2)));
        assert!(ring.use_key(&key(2)).unwrap());
        assert_eq!(ring.open(&sealed).unwrap().1, 1);
        let new = ring.seal(None, [8; NONCE_LEN], b"x");
        assert_eq!(other.open(&new).unwrap().0, b"x");
        // Sealing under a chosen (older) key, for a peer that only has that one.
        let old_only = Keyring::new([key(1)]).unwrap();
        let echo = ring.seal(Some(&key(1)), [7; NONCE_LEN], b"y");
        assert_eq!(old_only.open(&echo).unwrap().0, b"y");

        assert_eq!(ring.remove(&key(2)), Err(KeyError::RemovePrimary));
        assert_eq!(ring.remove(&key(1)), Ok(true));
        assert_eq!(ring.remove(&key(1)), Ok(false));
        assert_eq!(ring.use_key(&key(3)), Err(KeyError::NotInstalled));
        assert_eq!(ring.open(&sealed), Err(OpenError::NoKey));
        assert_eq!(Keyring::new([]).unwrap_err(), KeyError::Empty);
    }

    #[test]
    fn altered_short_plain_and_unknown_versions_are_refused() {
        let ring = Keyring::new([key(1)]).unwrap();
        let sealed = ring.seal(None, [0; NONCE_LEN], b"payload");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x20;
            assert!(ring.open(&bad).is_err(), "flipped byte {i} still opened");
        }
        assert_eq!(ring.open(b"GA\x02\x01"), Err(OpenError::Plain));
        assert_eq!(ring.open(b"GX\x01"), Err(OpenError::Short));
        let mut v2 = sealed.clone();
        v2[2] = 2;
        assert_eq!(ring.open(&v2), Err(OpenError::Version(2)));
    }

    proptest! {
        #[test]
        fn base64_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let text = base64_encode(&bytes);
            prop_assert_eq!(base64_decode(&text), Some(bytes.clone()));
            prop_assert_eq!(base64_decode(text.trim_end_matches('=')), Some(bytes));
        }

        #[test]
        fn seal_open_round_trips(
            plain in proptest::collection::vec(any::<u8>(), 0..1500),
            nonce in any::<[u8; NONCE_LEN]>(),
            k in any::<[u8; KEY_LEN]>(),
        ) {
            let ring = Keyring::new([Key::from_bytes(k)]).unwrap();
            let sealed = ring.seal(None, nonce, &plain);
            prop_assert_eq!(ring.open(&sealed).unwrap(), (plain, 0));
        }

        #[test]
        fn arbitrary_bytes_never_open_or_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let ring = Keyring::new([key(1)]).unwrap();
            let mut p = b"GX\x01".to_vec();
            p.extend(bytes);
            prop_assert!(ring.open(&p).is_err());
        }
    }
}
