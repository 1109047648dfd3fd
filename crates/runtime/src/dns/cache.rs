//! Answers to `A` and `AAAA` questions, kept as bytes until the member table changes: the
//! hot path (a role asked for again and again) costs a header, a copy and a shuffle instead
//! of parsing and encoding a message. Only what [`crate::dns::answer`] produced is kept; the
//! question section is copied from each query (its letter case included, for resolvers that
//! randomise it), and the address records, all of one size, are shuffled in place.

use std::collections::HashMap;
use std::sync::Arc;

use gossip_handlers::Snapshot;

/// Entries kept at most; the cache is emptied when full (and whenever membership changes).
const ENTRIES_MAX: usize = 1024;

/// One question's answer, without its header and question.
struct Entry {
    /// Header flags of the answer, RD aside (copied from each query).
    flags: u16,
    /// Answer, authority and additional record counts.
    counts: [u16; 3],
    /// The records.
    body: Vec<u8>,
    /// The size of one answer record when they are all address records of one size (they
    /// are shuffled then).
    record: Option<usize>,
}

/// The parts of a query the cache needs.
pub struct Question {
    /// The query's ID.
    pub id: u16,
    /// Whether it asked for recursion.
    pub rd: bool,
    /// End of the question section (the header and question are copied from the query).
    pub end: usize,
    key: Vec<u8>,
}

/// The cache, for one version of the member table.
#[derive(Default)]
pub struct Cache {
    /// The member table the entries were answered from (held, so that a new table can never
    /// take its address).
    version: Option<Arc<Snapshot>>,
    entries: HashMap<Vec<u8>, Entry>,
    rng: u64,
}

/// Reads a plain query: one question of type A or AAAA, class IN, no compression, and at
/// most an OPT record. `None`: not for the cache.
pub fn question(bytes: &[u8], udp: bool) -> Option<Question> {
    if bytes.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([bytes[2], bytes[3]]);
    let count = |i: usize| u16::from_be_bytes([bytes[4 + 2 * i], bytes[5 + 2 * i]]);
    // A query (QR 0), opcode 0, one question, nothing else but maybe one OPT record.
    if flags & 0xF800 != 0 || count(0) != 1 || count(1) != 0 || count(2) != 0 || count(3) > 1 {
        return None;
    }
    let mut key = Vec::with_capacity(48);
    let mut at = 12;
    loop {
        let len = *bytes.get(at)? as usize;
        if len & 0xC0 != 0 {
            return None;
        }
        key.push(len as u8);
        at += 1;
        if len == 0 {
            break;
        }
        let label = bytes.get(at..at + len)?;
        key.extend(label.iter().map(u8::to_ascii_lowercase));
        at += len;
    }
    let tail = bytes.get(at..at + 4)?;
    let (qtype, qclass) = (
        u16::from_be_bytes([tail[0], tail[1]]),
        u16::from_be_bytes([tail[2], tail[3]]),
    );
    if !matches!(qtype, 1 | 28) || qclass != 1 {
        return None;
    }
    key.extend_from_slice(tail);
    let end = at + 4;
    // The OPT record: root name, type 41, its class is the payload size.
    let payload = if count(3) == 1 {
        let opt = bytes.get(end..end + 11)?;
        if opt[0] != 0 || opt[1..3] != [0, 41] {
            return None;
        }
        let rdlen = u16::from_be_bytes([opt[9], opt[10]]) as usize;
        if bytes.len() != end + 11 + rdlen {
            return None;
        }
        u16::from_be_bytes([opt[3], opt[4]])
    } else if bytes.len() != end {
        return None;
    } else {
        0
    };
    key.extend_from_slice(&payload.to_be_bytes());
    key.push(udp as u8);
    Some(Question {
        id: u16::from_be_bytes([bytes[0], bytes[1]]),
        rd: flags & 0x0100 != 0,
        end,
        key,
    })
}

impl Cache {
    /// Forgets everything when the member table is not `current` any more.
    pub fn at(&mut self, current: &Arc<Snapshot>) {
        if !self
            .version
            .as_ref()
            .is_some_and(|v| Arc::ptr_eq(v, current))
        {
            self.version = Some(current.clone());
            self.entries.clear();
        }
    }

    /// The answer to `q` (asked as `query`), when kept, and whether it is NXDOMAIN.
    pub fn get(&mut self, q: &Question, query: &[u8]) -> Option<(Vec<u8>, bool)> {
        let e = self.entries.get(&q.key)?;
        let mut out = Vec::with_capacity(q.end + e.body.len());
        out.extend_from_slice(&q.id.to_be_bytes());
        out.extend_from_slice(&(e.flags | if q.rd { 0x0100 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        for c in e.counts {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out.extend_from_slice(&query[12..q.end]);
        let start = out.len();
        out.extend_from_slice(&e.body);
        if let Some(size) = e.record {
            // Fisher-Yates over the fixed-size answer records (xorshift: not a decision of
            // the protocol core, only load spreading).
            let n = e.counts[0] as usize;
            for i in (1..n).rev() {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                let j = (self.rng % (i as u64 + 1)) as usize;
                if i != j {
                    let (a, b) = (start + i * size, start + j * size);
                    for k in 0..size {
                        out.swap(a + k, b + k);
                    }
                }
            }
        }
        Some((out, e.flags & 0x000F == 3))
    }

    /// Keeps `answer`, the full answer to `q` produced by the resolver of names.
    pub fn put(&mut self, q: Question, answer: &[u8]) {
        if answer.len() < q.end || answer.get(4..6) != Some(&[0, 1]) {
            return;
        }
        if self.rng == 0 {
            self.rng = 0x9E37_79B9_7F4A_7C15 ^ q.id as u64;
        }
        let flags = u16::from_be_bytes([answer[2], answer[3]]) & !0x0100;
        let count = |i: usize| u16::from_be_bytes([answer[6 + 2 * i], answer[7 + 2 * i]]);
        let counts = [count(0), count(1), count(2)];
        let body = answer[q.end..].to_vec();
        // Address records pointing at the question's name: 2 + 10 + 4 (A) or 16 (AAAA).
        let qtype = u16::from_be_bytes([q.key[q.key.len() - 7], q.key[q.key.len() - 6]]);
        let size = if qtype == 1 { 16 } else { 28 };
        let n = counts[0] as usize;
        let uniform = body.len() >= n * size
            && (0..n).all(|i| {
                let r = &body[i * size..(i + 1) * size];
                r[0..4] == [0xC0, 0x0C, (qtype >> 8) as u8, qtype as u8]
            });
        if self.entries.len() >= ENTRIES_MAX {
            self.entries.clear();
        }
        self.entries.insert(
            q.key,
            Entry {
                flags,
                counts,
                body,
                record: (uniform && n > 1).then_some(size),
            },
        );
    }
}
