//! Fuzz target: arbitrary member names, tags, event names and payloads through the core's
//! validation, then handler invocations and writers (see gossip_handlers::harness).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gossip_handlers::harness::peer_strings(data);
});
