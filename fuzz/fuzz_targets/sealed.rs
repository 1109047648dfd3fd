//! Fuzz target: arbitrary bytes as a datagram from a peer, behind decryption, then whatever the node
//! reports through handler invocations and writers (see gossip_handlers::harness).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gossip_handlers::harness::peer_sealed(data);
});
