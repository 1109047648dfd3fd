//! A latency model with structure, for network coordinates: nodes sit at points in a few
//! regions of a plane (a region's points within a radius of its centre), each behind an
//! access link of its own, and every datagram's one-way latency is half the pair's round trip
//! with jitter around it. The pair's *true* round trip ([`Topology::rtt`]) is what the
//! coordinates should estimate: the distance between the points plus both access links (the
//! jitter averages out).

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// The shape of the simulated network.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Regions (data centres, continents).
    pub regions: usize,
    /// Region centres are uniform in a square of this side (round-trip time).
    pub spread: Duration,
    /// A node is within this distance (round-trip time) of its region's centre.
    pub radius: Duration,
    /// Each node's access link adds this much to every round trip, drawn uniformly per node.
    pub access_min: Duration,
    /// Upper end of the access range.
    pub access_max: Duration,
    /// Each datagram's latency is its share of the round trip times 1 +- this, uniformly.
    pub jitter: f64,
}

impl Default for Topology {
    /// Four regions up to 150 ms apart, nodes within 5 ms of their centre, 0.1 to 1 ms
    /// access links, 10 % jitter.
    fn default() -> Self {
        Self {
            regions: 4,
            spread: Duration::from_millis(150),
            radius: Duration::from_millis(5),
            access_min: Duration::from_micros(100),
            access_max: Duration::from_millis(1),
            jitter: 0.1,
        }
    }
}

/// Where one node sits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    /// Its region.
    pub region: usize,
    /// Its point, in seconds of round trip.
    pub x: f64,
    /// Its point, in seconds of round trip.
    pub y: f64,
    /// Its access link, in seconds of round trip.
    pub access: f64,
}

/// A topology's regions, and the randomness that places nodes in them (apart from the
/// simulator's own, so placing nodes changes no other draw).
#[derive(Debug, Clone)]
pub struct Layout {
    topology: Topology,
    centres: Vec<(f64, f64)>,
    rng: SmallRng,
}

impl Layout {
    /// Draws the region centres from `seed`.
    pub fn new(topology: Topology, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x746f_706f_6c6f_6779);
        let side = topology.spread.as_secs_f64();
        let centres = (0..topology.regions.max(1))
            .map(|_| (rng.random_range(0.0..=side), rng.random_range(0.0..=side)))
            .collect();
        Self {
            topology,
            centres,
            rng,
        }
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A place for a new node: a random region, a random point within its radius.
    pub fn place(&mut self) -> Place {
        let region = self.rng.random_range(0..self.centres.len());
        let (cx, cy) = self.centres[region];
        let r = self.topology.radius.as_secs_f64() * self.rng.random::<f64>().sqrt();
        let angle = self.rng.random_range(0.0..std::f64::consts::TAU);
        let access = self
            .rng
            .random_range(self.topology.access_min..=self.topology.access_max)
            .as_secs_f64();
        Place {
            region,
            x: cx + r * angle.cos(),
            y: cy + r * angle.sin(),
            access,
        }
    }
}

impl Topology {
    /// The true round trip between two places, in seconds.
    pub fn rtt(a: &Place, b: &Place) -> f64 {
        ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt() + a.access + b.access
    }

    /// One datagram's one-way latency between two places.
    pub fn one_way(&self, a: &Place, b: &Place, rng: &mut SmallRng) -> Duration {
        let j = if self.jitter > 0.0 {
            rng.random_range(-self.jitter..=self.jitter)
        } else {
            0.0
        };
        Duration::from_secs_f64((Self::rtt(a, b) / 2.0 * (1.0 + j)).max(0.0))
    }
}
