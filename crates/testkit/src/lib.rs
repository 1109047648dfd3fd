//! What the tests, the benchmarks and the demo driver share, so none of them writes it again.
//!
//! - [`host`]: programs the host must have, installed from Debian's packages when missing.
//! - [`http`]: one small HTTP/1.0 client (blocking and async).
//! - [`members`]: member builders for unit tests, and the member list of a running agent.

pub mod host;
pub mod http;
pub mod members;
