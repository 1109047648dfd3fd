//! The sans-IO core of gossip-agent: SWIM membership through [foca], plus what Serf users
//! expect on top of it: node names, roles and tags carried in the identity, *left* told apart
//! from *failed*, full-state exchange on join and periodically (Serf's push-pull), direct
//! acknowledged notices for leaves and tag changes, and counters of dropped input.
//!
//! The core reads no clock, opens no socket and draws no thread randomness. [`Node`] is the
//! entry point; its documentation says how a driver feeds it and drains its effects.
//!
//! Modules:
//! - [`identity`]: who a member is and what it advertises; validation of peer data.
//! - [`wire`]: the packet envelope, our own messages, and the validating foca codec.
//! - [`member`]: statuses, snapshots and membership events.
//! - [`config`]: timing profiles and limits.
//! - [`coordinate`]: network coordinates (Vivaldi, as Serf keeps them) and probe round trips.
//! - [`crypt`]: the keyring and sealed (encrypted) packets.
//! - [`node`]: the state machine.
//! - [`clock`]: the Lamport clocks of user events and queries, bounded against forged times.
//! - [`user`]: user events: validation, deduplication.
//! - [`query`]: queries: what the core reports, and their bookkeeping.
//! - [`validate`]: anti-amplification: unvalidated sources get at most 3x what they sent.
//! - [`error`]: typed errors.
//! - `table`: the tables keyed by name key (member records, known identities).
//! - [`timers`]: the deadline queue that delivers timers in order (agent, simulator, tests).
//! - [`harness`]: what the fuzzers call.

pub mod clock;
pub mod config;
pub mod coordinate;
pub mod crypt;
pub mod error;
pub mod harness;
pub mod identity;
pub mod member;
pub mod node;
pub mod query;
mod table;
pub mod timers;
pub mod user;
pub mod validate;
pub mod wire;

pub use config::{CoreConfig, Profile, Suspicion};
pub use coordinate::Coordinate;
pub use error::{CommandError, DropReason, InvalidInput};
pub use identity::{Interner, Limits, NodeId, ROLE_TAG, Tags};
pub use member::{EventKind, MemberEvent, MemberInfo, Status};
pub use node::{KindTraffic, Node, Output, Stats, TimerEvent};
pub use query::{IncomingQuery, QueryOutput};
pub use timers::DeadlineQueue;
pub use user::UserEvent;
