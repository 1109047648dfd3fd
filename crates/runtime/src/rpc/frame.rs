//! Framing of Serf's RPC: a connection carries msgpack values back to back, with no length
//! prefix. [`value_len`] finds where the value at the start of a buffer ends (without
//! decoding it), so a value is decoded only once all of it has arrived, and a peer cannot
//! make the agent hold more than [`FRAME_MAX`] bytes for one value.

/// The largest value accepted (a request header or body): Serf's requests are small, the
/// largest being an event or a query with its payload.
pub const FRAME_MAX: usize = 64 * 1024;

/// Why a buffer does not start with a msgpack value the agent accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The byte 0xc1, never used by msgpack.
    #[error("invalid msgpack byte 0xc1 at offset {0}")]
    Invalid(usize),
    /// The value is (or announces that it is) larger than [`FRAME_MAX`].
    #[error("a request larger than {FRAME_MAX} bytes")]
    TooLarge,
}

/// The length of the msgpack value at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn value_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let mut pos = 0usize;
    // Values still to walk over; every value takes at least one byte, so more of them
    // than bytes allowed means the value is too large.
    let mut pending: usize = 1;
    while pending > 0 {
        pending -= 1;
        let Some(&b) = buf.get(pos) else {
            return Ok(None);
        };
        let len_bytes = match b {
            0xc4 | 0xc7 | 0xd9 => 1,
            0xc5 | 0xc8 | 0xda | 0xdc | 0xde => 2,
            0xc6 | 0xc9 | 0xdb | 0xdd | 0xdf => 4,
            _ => 0,
        };
        if buf.len() < pos + 1 + len_bytes {
            return Ok(None);
        }
        let be = |buf: &[u8], at: usize, n: usize| -> Result<usize, FrameError> {
            Ok(buf[at..at + n]
                .iter()
                .fold(0usize, |acc, x| (acc << 8) | *x as usize))
        };
        // (bytes of the value's header and body when it is a scalar, children when not)
        let (skip, more): (usize, usize) = match b {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0),
            0x80..=0x8f => (1, 2 * (b as usize & 0x0f)),
            0x90..=0x9f => (1, b as usize & 0x0f),
            0xa0..=0xbf => (1 + (b as usize & 0x1f), 0),
            0xc1 => return Err(FrameError::Invalid(pos)),
            0xc4 | 0xd9 => (2 + be(buf, pos + 1, 1)?, 0),
            0xc5 | 0xda => (3 + be(buf, pos + 1, 2)?, 0),
            0xc6 | 0xdb => (5 + be(buf, pos + 1, 4)?, 0),
            0xc7 => (3 + be(buf, pos + 1, 1)?, 0),
            0xc8 => (4 + be(buf, pos + 1, 2)?, 0),
            0xc9 => (6 + be(buf, pos + 1, 4)?, 0),
            0xca => (5, 0),
            0xcb => (9, 0),
            0xcc | 0xd0 => (2, 0),
            0xcd | 0xd1 => (3, 0),
            0xce | 0xd2 => (5, 0),
            0xcf | 0xd3 => (9, 0),
            0xd4 => (3, 0),
            0xd5 => (4, 0),
            0xd6 => (6, 0),
            0xd7 => (10, 0),
            0xd8 => (18, 0),
            0xdc => (3, be(buf, pos + 1, 2)?),
            0xdd => (5, be(buf, pos + 1, 4)?),
            0xde => (3, 2 * be(buf, pos + 1, 2)?),
            0xdf => (5, 2 * be(buf, pos + 1, 4)?),
        };
        pos = pos.saturating_add(skip);
        pending = pending.saturating_add(more);
        if pos > FRAME_MAX || pending > FRAME_MAX {
            return Err(FrameError::TooLarge);
        }
    }
    Ok((pos <= buf.len()).then_some(pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Sample {
        command: String,
        seq: u64,
        tags: std::collections::BTreeMap<String, String>,
        list: Vec<i64>,
        #[serde(with = "crate::rpc::proto::bytes")]
        payload: Vec<u8>,
        f: f64,
        none: Option<u8>,
    }

    #[test]
    fn finds_the_end_of_each_value_and_waits_for_the_rest() {
        let v = Sample {
            command: "members-filtered".into(),
            seq: u64::MAX,
            tags: [("role".to_string(), "x".repeat(300))].into(),
            list: vec![-1, 200, -40000, 70000, -5_000_000_000],
            payload: vec![7; 70_000 / 2],
            f: 1.5,
            none: None,
        };
        let one = rmp_serde::to_vec_named(&v).unwrap();
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert_eq!(value_len(&two), Ok(Some(one.len())));
        for cut in [0, 1, 5, one.len() / 2, one.len() - 1] {
            assert_eq!(value_len(&one[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn refuses_what_is_too_large_or_invalid() {
        assert_eq!(value_len(&[0xc1]), Err(FrameError::Invalid(0)));
        // An array announcing 2^32-1 elements, a string of 16 MiB.
        assert_eq!(
            value_len(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::TooLarge)
        );
        assert_eq!(value_len(&[0xdb, 0x01, 0, 0, 0]), Err(FrameError::TooLarge));
        let big = rmp_serde::to_vec(&vec![0u8; FRAME_MAX]).unwrap();
        assert_eq!(value_len(&big), Err(FrameError::TooLarge));
    }
}
