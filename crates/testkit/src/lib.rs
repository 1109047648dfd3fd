//! What the tests, the benchmarks and the demo driver share, so none of them writes it again.
//!
//! - [`host`]: programs the host must have, installed from Debian's packages when missing.

pub mod host;
