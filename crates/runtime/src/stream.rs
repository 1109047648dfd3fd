//! The fan-out of events to streams: Serf's RPC `stream`, `GET /v1/stream` and
//! `gossip-agent stream`. The agent publishes every member event, user event and query it
//! sees; each subscriber has a filter and a bounded queue. A subscriber that reads too slowly
//! loses records (counted, and told in its stream): publishing never waits.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use gossip_core::{EventKind, MemberInfo};
use gossip_handlers::EventFilter;
use tokio::sync::mpsc;

/// Records queued for one subscriber at most (Serf's figure).
pub const QUEUE_MAX: usize = 512;

/// What a stream carries.
#[derive(Debug, Clone)]
pub enum Record {
    /// A member event (one member per record).
    Member {
        /// What happened.
        kind: EventKind,
        /// To whom.
        member: MemberInfo,
    },
    /// A user event.
    User {
        /// Its name.
        name: String,
        /// Its Lamport time.
        ltime: u64,
        /// Its payload.
        payload: Vec<u8>,
        /// Serf's coalesce flag.
        coalesce: bool,
    },
    /// A query for this node: a subscriber may answer it (Serf's `respond`) until `deadline`.
    Query {
        /// The asking node's gossip address (where the answer goes).
        origin: SocketAddr,
        /// The asking node's name.
        origin_name: String,
        /// Its Lamport time.
        ltime: u64,
        /// Its name.
        name: String,
        /// Its payload.
        payload: Vec<u8>,
        /// When answers are no longer taken.
        deadline: Instant,
    },
}

struct Subscriber {
    id: u64,
    filter: EventFilter,
    tx: mpsc::Sender<Arc<Record>>,
    dropped: Arc<AtomicU64>,
}

/// The fan-out: subscribers and their queues.
#[derive(Default)]
pub struct Hub {
    subscribers: Mutex<Vec<Subscriber>>,
    next: AtomicU64,
    dropped: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hub({} subscribers)", self.subscribers())
    }
}

/// One subscriber's end: records in order, and how many were dropped. Dropping it
/// unsubscribes.
pub struct Subscription {
    /// The records.
    pub rx: mpsc::Receiver<Arc<Record>>,
    dropped: Arc<AtomicU64>,
    id: u64,
    hub: Weak<Hub>,
}

impl Subscription {
    /// Records dropped since the last call (the subscriber fell more than [`QUEUE_MAX`]
    /// behind).
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.lock().retain(|s| s.id != self.id);
        }
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A new subscriber to what `filter` accepts.
    pub fn subscribe(self: &Arc<Self>, filter: EventFilter) -> Subscription {
        let (tx, rx) = mpsc::channel(QUEUE_MAX);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        self.lock().push(Subscriber {
            id,
            filter,
            tx,
            dropped: dropped.clone(),
        });
        Subscription {
            rx,
            dropped,
            id,
            hub: Arc::downgrade(self),
        }
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.lock().len()
    }

    /// Records dropped, over every subscriber since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Hands `record` to every subscriber whose filter accepts it, without waiting.
    pub fn publish(&self, record: Record) {
        let subs = self.lock();
        if subs.is_empty() {
            return;
        }
        let record = Arc::new(record);
        for s in subs.iter() {
            let wanted = match &*record {
                Record::Member { kind, member } => s.filter.accepts_member(*kind, member),
                Record::User { name, .. } => s.filter.accepts_user(name),
                Record::Query { name, .. } => s.filter.accepts_query(name),
            };
            if wanted && s.tx.try_send(record.clone()).is_err() {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, ltime: u64) -> Record {
        Record::User {
            name: name.into(),
            ltime,
            payload: Vec::new(),
            coalesce: false,
        }
    }

    #[test]
    fn each_subscriber_gets_what_its_filter_accepts_and_a_slow_one_loses_the_rest() {
        let hub = Arc::new(Hub::default());
        let mut deploys = hub.subscribe(EventFilter::parse("user:deploy").unwrap());
        let slow = hub.subscribe(EventFilter::parse("*").unwrap());
        for i in 0..(QUEUE_MAX as u64 + 10) {
            hub.publish(user("deploy", i));
            hub.publish(user("other", i));
            // The first subscriber keeps up.
            let r = deploys.rx.try_recv().expect("a record");
            assert!(matches!(&*r, Record::User { ltime, .. } if *ltime == i));
        }
        assert!(deploys.rx.try_recv().is_err(), "only deploy events");
        assert_eq!(deploys.take_dropped(), 0);
        assert_eq!(
            slow.take_dropped(),
            2 * (QUEUE_MAX as u64 + 10) - QUEUE_MAX as u64
        );
        assert_eq!(slow.take_dropped(), 0, "told once");
        assert_eq!(hub.subscribers(), 2);
        drop(slow);
        drop(deploys);
        assert_eq!(hub.subscribers(), 0, "dropping unsubscribes");
    }
}
