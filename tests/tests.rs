//! Integration tests: they spawn the built `gossip-agent` binary on loopback addresses.

mod util;

mod agent;
mod attacks;
mod cli;
mod coordinates;
mod dns;
mod handlers;
mod metrics;
mod release;
mod security;
mod serf;
mod serf_rpc;
mod streams;
mod supervise;
mod ui;
mod writers;
