//! Rebuilds the agent when `release/hot-functions.txt` changes: `cargo release-agent` hands
//! that file to the linker (see `.cargo/config.toml`), and Cargo does not otherwise know the
//! executable depends on it.

fn main() {
    println!("cargo:rerun-if-changed=release/hot-functions.txt");
}
