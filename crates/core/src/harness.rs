//! Entry points for the fuzzers (`fuzz/`) and for the regression tests that replay what they
//! found: each takes arbitrary bytes, must never panic, and returns what the node made of
//! them so that callers can check it further. Also the crafted datagrams the attack tests send
//! ([`announce`], [`notice`], [`sync_request`]).

use std::net::SocketAddr;

use crate::crypt::{Key, Keyring, NONCE_LEN};
use crate::{CoreConfig, Node, Output, Tags};

/// The peer every fuzzed datagram comes from.
pub const PEER: &str = "10.0.0.2:7946";

/// A fresh node fed `data` as one datagram from [`PEER`]; every output it produced.
pub fn packet(data: &[u8]) -> Vec<Output> {
    let mut tags = Tags::new();
    tags.insert("role".into(), "fuzz".into());
    let Ok(mut node) = Node::new(
        "fuzz",
        "10.0.0.1:7946".parse().expect("literal address"),
        1,
        tags,
        CoreConfig::default(),
        7,
    ) else {
        unreachable!("a valid identity")
    };
    let from: SocketAddr = PEER.parse().expect("literal address");
    let _ = node.handle_packet(std::time::Duration::ZERO, from, data);
    std::iter::from_fn(|| node.poll()).collect()
}

/// The encrypted path. With a first byte of 0 the rest is a plain packet, sealed and opened
/// again (so the fuzzer reaches the decoder behind decryption); otherwise the bytes are
/// opened as they are, which must fail cleanly unless they were sealed under the key.
pub fn sealed(data: &[u8]) -> Vec<Output> {
    let ring = Keyring::new([Key::from_bytes([42; 32])]).expect("one key");
    let datagram = match data.split_first() {
        Some((0, plain)) => ring.seal(None, [1; NONCE_LEN], plain),
        _ => data.to_vec(),
    };
    match ring.open(&datagram) {
        Ok((plain, _)) => packet(&plain),
        Err(_) => Vec::new(),
    }
}

/// A foca Announce from `src` to `dst`, both named in full, as a datagram.
pub fn announce(src: &crate::NodeId, dst: &crate::NodeId) -> Vec<u8> {
    use foca::Codec;
    let mut codec = crate::wire::ValidatingCodec::new(crate::Limits::default());
    let mut out = Vec::new();
    crate::wire::put_envelope(&mut out, crate::wire::Kind::Foca);
    codec
        .encode_header(
            &foca::Header {
                src: src.clone(),
                src_incarnation: 0,
                dst: dst.clone(),
                message: foca::Message::Announce,
            },
            &mut out,
        )
        .expect("a header fits a Vec");
    out
}

/// A notice that `member` is alive, from nobody in particular, as a datagram.
pub fn notice(member: &crate::NodeId) -> Vec<u8> {
    crate::wire::encode(
        crate::wire::Kind::Notice,
        &crate::wire::Notice {
            seq: 1,
            member: foca::Member::alive(member.clone()),
            from: None,
            relay: true,
            forward: Vec::new(),
        },
    )
}

/// The smallest full-state request: no member, an answer wanted (8 bytes).
pub fn sync_request() -> Vec<u8> {
    let mut out = Vec::new();
    crate::wire::put_envelope(&mut out, crate::wire::Kind::Sync);
    out.extend_from_slice(&[1, 0, 0, 0]);
    out
}

/// A query `name` from a member called `origin`, as a datagram.
pub fn query(origin: &str, name: &str, ltime: u64) -> Vec<u8> {
    crate::wire::encode(
        crate::wire::Kind::Query,
        &crate::wire::QueryMsg {
            seq: 1,
            ltime,
            origin_name: origin.into(),
            origin_version: 1,
            name: name.into(),
            payload: Vec::new(),
        },
    )
}

/// The echo of a challenge datagram (the same cookie), or `None` if it is not a challenge.
pub fn echo(challenge: &[u8]) -> Option<Vec<u8>> {
    let (kind, cookie) = crate::wire::open_envelope(challenge, usize::MAX).ok()?;
    if kind != crate::wire::Kind::Challenge {
        return None;
    }
    let mut out = Vec::new();
    crate::wire::put_envelope(&mut out, crate::wire::Kind::ChallengeEcho);
    out.extend_from_slice(cookie);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A join from the peer, as it would send it.
    fn join_packet() -> Vec<u8> {
        let mut peer = Node::new(
            "peer",
            PEER.parse().unwrap(),
            1,
            Tags::new(),
            CoreConfig::default(),
            3,
        )
        .unwrap();
        peer.join(&["10.0.0.1:7946".parse().unwrap()]).unwrap();
        std::iter::from_fn(|| peer.poll())
            .find_map(|o| match o {
                Output::Transmit { data, .. } => Some(data),
                _ => None,
            })
            .expect("a join packet")
    }

    #[test]
    fn the_sealed_path_reaches_the_decoder_like_the_plain_one() {
        let p = join_packet();
        let plain = packet(&p);
        assert!(
            plain.iter().any(|o| matches!(o, Output::Event(_))),
            "{plain:?}"
        );
        let mut sealed_input = vec![0u8];
        sealed_input.extend(&p);
        assert_eq!(sealed(&sealed_input), plain);
        assert!(sealed(&p).is_empty());
    }
}
