//! Every input the fuzzers (`fuzz/`) ever found a crash with, kept under
//! `fuzz/regressions/TARGET/`, replayed through the same harness: none may panic again.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        eprintln!("replaying {}", path.display());
        run(&data);
        n += 1;
    }
    n
}

#[test]
fn packet_regressions() {
    replay("packet", gossip_handlers::harness::peer_packet);
    // And the harness itself holds on simple inputs.
    gossip_handlers::harness::peer_packet(b"");
    gossip_handlers::harness::peer_packet(b"GA\x02\x01garbage");
}

#[test]
fn sealed_regressions() {
    replay("sealed", gossip_handlers::harness::peer_sealed);
    gossip_handlers::harness::peer_sealed(b"\x00GA\x02\x01garbage");
    gossip_handlers::harness::peer_sealed(b"GX\x01");
}

#[test]
fn peer_strings_regressions() {
    replay("peer_strings", gossip_handlers::harness::peer_strings);
    gossip_handlers::harness::peer_strings(b"web1\0zone\0eu 1\0deploy\0payload\0appserver");
    gossip_handlers::harness::peer_strings(b"bad name\0k\0v\nx\0ev\0p\0r");
}
