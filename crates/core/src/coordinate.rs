//! Network coordinates: Serf's variant of Vivaldi, so the round-trip time between any two
//! members can be estimated without probing them.
//!
//! Every node keeps a coordinate of its own ([`Vivaldi`]): a point in a small Euclidean space
//! plus a height (the access link a node's packets cross to reach any other), an error
//! estimate and an adjustment term. Each direct probe a node sends anyway gives a round-trip
//! time sample; the member that acknowledges it sends its own coordinate with the ack, and
//! the prober moves its coordinate as a spring would, towards or away from the other's, by
//! the difference between the measured and the estimated time. This is Serf's `coordinate`
//! package (Dabek et al., "Vivaldi: a decentralized network coordinate system", SIGCOMM 2004,
//! with height vectors; Ledlie et al., "Network coordinates in the wild", NSDI 2007, for the
//! latency filter; the adjustment window and gravity towards the origin are Serf's), with
//! Serf's constants.
//!
//! Two differences, both for the wire: coordinates have [`DIMENSIONS`] = 4 dimensions (Serf: 8;
//! with a height, 4 fit structured latencies as well in the simulator, see `sim/README.md`),
//! and they travel as half-precision floats, [`WIRE_LEN`] = 14 bytes (a relative precision
//! of 1/2048). A coordinate from a peer is checked ([`Coordinate::check`]: finite, within
//! bounds) before anything uses or keeps it; a bad one is dropped and counted, never passed on.
//!
//! The randomness Vivaldi needs (a direction when two coordinates coincide) comes from the
//! caller's generator; nothing here reads a clock.

use std::time::Duration;

use rand::RngExt;

/// Dimensions of the Euclidean part.
pub const DIMENSIONS: usize = 4;
/// Bytes of a coordinate on the wire: each of its seven numbers as an IEEE half-precision
/// float, little-endian (vector, height, error, adjustment).
pub const WIRE_LEN: usize = 2 * (DIMENSIONS + 3);
/// Largest round trip a sample may show (Serf's `maxRTT`); longer ones are ignored.
pub const RTT_MAX: Duration = Duration::from_secs(10);

/// Largest magnitude of a vector component or adjustment accepted from a peer, in seconds.
const COMPONENT_MAX: f64 = 10.0;
/// Below this, Serf treats a length as zero.
const ZERO_THRESHOLD: f64 = 1.0e-6;

/// Serf's Vivaldi settings (`coordinate.DefaultConfig`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VivaldiConfig {
    /// Largest error estimate (also a new coordinate's).
    pub error_max: f64,
    /// How fast the error estimate follows the observed error.
    pub ce: f64,
    /// How far a sample moves the coordinate.
    pub cc: f64,
    /// Samples averaged into the adjustment term.
    pub adjustment_window: usize,
    /// Smallest height, in seconds.
    pub height_min: f64,
    /// Samples per member the latency filter takes the median of.
    pub latency_filter: usize,
    /// Gravity towards the origin (larger is weaker), in seconds.
    pub gravity_rho: f64,
}

impl Default for VivaldiConfig {
    fn default() -> Self {
        Self {
            error_max: 1.5,
            ce: 0.25,
            cc: 0.25,
            adjustment_window: 20,
            height_min: 10.0e-6,
            latency_filter: 3,
            gravity_rho: 150.0,
        }
    }
}

/// A network coordinate. Distances are in seconds, as Serf's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Coordinate {
    /// The Euclidean part.
    pub vec: [f64; DIMENSIONS],
    /// How wrong the node believes its coordinate is (0 = exact; at most 1.5).
    pub error: f64,
    /// Added to every distance from this node (may be negative).
    pub adjustment: f64,
    /// The height: time from the node to the Euclidean space, in seconds.
    pub height: f64,
}

/// Why a coordinate from a peer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CoordinateError {
    /// Not [`WIRE_LEN`] bytes.
    #[error("a coordinate is {WIRE_LEN} bytes")]
    Length,
    /// A component is infinite or not a number.
    #[error("a coordinate component is not finite")]
    NotFinite,
    /// A component is beyond the bounds a real network gives.
    #[error("a coordinate component is out of bounds")]
    OutOfBounds,
}

impl Coordinate {
    /// A new node's coordinate: at the origin, least height, largest error.
    pub fn new(config: &VivaldiConfig) -> Self {
        Self {
            vec: [0.0; DIMENSIONS],
            error: config.error_max,
            adjustment: 0.0,
            height: config.height_min,
        }
    }

    /// Estimated round-trip time to `other` (Serf's `DistanceTo`).
    pub fn distance_to(&self, other: &Coordinate) -> Duration {
        Duration::from_secs_f64(
            self.distance_secs(other)
                .clamp(0.0, RTT_MAX.as_secs_f64() * 10.0),
        )
    }

    /// Estimated round-trip time to `other`, in seconds.
    pub fn distance_secs(&self, other: &Coordinate) -> f64 {
        let raw = self.raw_distance(other);
        let adjusted = raw + self.adjustment + other.adjustment;
        if adjusted > 0.0 { adjusted } else { raw }
    }

    fn raw_distance(&self, other: &Coordinate) -> f64 {
        magnitude(&diff(&self.vec, &other.vec)) + self.height + other.height
    }

    /// Every component finite (Serf's `IsValid`).
    pub fn is_finite(&self) -> bool {
        self.vec.iter().all(|c| c.is_finite())
            && self.error.is_finite()
            && self.adjustment.is_finite()
            && self.height.is_finite()
    }

    /// Whether a peer's coordinate may be used: finite, vector components and adjustment
    /// within 10 s, height from 0 to 10 s, error from 0 to 1.5.
    pub fn check(&self) -> Result<(), CoordinateError> {
        if !self.is_finite() {
            return Err(CoordinateError::NotFinite);
        }
        let within = |x: f64| x.abs() <= COMPONENT_MAX;
        if !self.vec.iter().all(|c| within(*c))
            || !within(self.adjustment)
            || !(0.0..=COMPONENT_MAX).contains(&self.height)
            || !(0.0..=VivaldiConfig::default().error_max).contains(&self.error)
        {
            return Err(CoordinateError::OutOfBounds);
        }
        Ok(())
    }

    /// The coordinate in its [`WIRE_LEN`] bytes.
    pub fn encode(&self) -> [u8; WIRE_LEN] {
        let mut out = [0u8; WIRE_LEN];
        let values = self
            .vec
            .iter()
            .chain([&self.height, &self.error, &self.adjustment]);
        for (chunk, v) in out.chunks_exact_mut(2).zip(values) {
            chunk.copy_from_slice(&half::f16::from_f64(*v).to_le_bytes());
        }
        out
    }

    /// A coordinate from its wire bytes, checked ([`Coordinate::check`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, CoordinateError> {
        if bytes.len() != WIRE_LEN {
            return Err(CoordinateError::Length);
        }
        let mut v = [0f64; DIMENSIONS + 3];
        for (x, chunk) in v.iter_mut().zip(bytes.chunks_exact(2)) {
            *x = half::f16::from_le_bytes([chunk[0], chunk[1]]).to_f64();
        }
        let mut vec = [0f64; DIMENSIONS];
        vec.copy_from_slice(&v[..DIMENSIONS]);
        let c = Self {
            vec,
            height: v[DIMENSIONS],
            error: v[DIMENSIONS + 1],
            adjustment: v[DIMENSIONS + 2],
        };
        c.check()?;
        Ok(c)
    }

    /// This coordinate as a peer sees it (rounded through the wire format).
    pub fn on_the_wire(&self) -> Self {
        Self::decode(&self.encode()).unwrap_or(*self)
    }

    fn apply_force(
        &self,
        config: &VivaldiConfig,
        force: f64,
        other: &Coordinate,
        rng: &mut impl rand::Rng,
    ) -> Self {
        let mut ret = *self;
        let (unit, mag) = unit_vector_at(&self.vec, &other.vec, rng);
        for (r, u) in ret.vec.iter_mut().zip(unit) {
            *r += u * force;
        }
        if mag > ZERO_THRESHOLD {
            ret.height =
                ((ret.height + other.height) * force / mag + ret.height).max(config.height_min);
        }
        ret
    }
}

/// One node's Vivaldi state: its coordinate, the adjustment window and the latency filter.
#[derive(Debug, Clone)]
pub struct Vivaldi {
    config: VivaldiConfig,
    coord: Coordinate,
    origin: Coordinate,
    adjustment_samples: Vec<f64>,
    adjustment_index: usize,
    resets: u64,
    updates: u64,
}

impl Default for Vivaldi {
    fn default() -> Self {
        Self::new(VivaldiConfig::default())
    }
}

impl Vivaldi {
    /// A node at the origin.
    pub fn new(config: VivaldiConfig) -> Self {
        Self {
            config,
            coord: Coordinate::new(&config),
            origin: Coordinate::new(&config),
            adjustment_samples: vec![0.0; config.adjustment_window],
            adjustment_index: 0,
            resets: 0,
            updates: 0,
        }
    }

    /// The coordinate now.
    pub fn coordinate(&self) -> Coordinate {
        self.coord
    }

    /// Times the coordinate went bad (not finite) and was reset to the origin.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Samples applied.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Applies one sample: `other`'s coordinate and the round trip to it, after the caller's
    /// latency filter (`rtt` is the median of the member's last few samples, see
    /// [`LatencyFilter`]). Serf's `Client.Update`: Vivaldi, adjustment, gravity, and a reset
    /// should the result not be finite. `other` must have passed [`Coordinate::check`].
    pub fn update(&mut self, other: &Coordinate, rtt: Duration, rng: &mut impl rand::Rng) {
        let rtt = rtt.as_secs_f64();
        self.update_vivaldi(other, rtt, rng);
        self.update_adjustment(other, rtt);
        self.update_gravity(rng);
        if !self.coord.is_finite() {
            self.resets += 1;
            self.coord = Coordinate::new(&self.config);
        }
        self.updates += 1;
    }

    fn update_vivaldi(&mut self, other: &Coordinate, rtt: f64, rng: &mut impl rand::Rng) {
        let c = &self.config;
        let dist = self.coord.distance_secs(other);
        let rtt = rtt.max(ZERO_THRESHOLD);
        let wrongness = (dist - rtt).abs() / rtt;
        let total_error = (self.coord.error + other.error).max(ZERO_THRESHOLD);
        let weight = self.coord.error / total_error;
        self.coord.error =
            (c.ce * weight * wrongness + self.coord.error * (1.0 - c.ce * weight)).min(c.error_max);
        let force = c.cc * weight * (rtt - dist);
        self.coord = self.coord.apply_force(c, force, other, rng);
    }

    fn update_adjustment(&mut self, other: &Coordinate, rtt: f64) {
        let window = self.adjustment_samples.len();
        if window == 0 {
            return;
        }
        self.adjustment_samples[self.adjustment_index] = rtt - self.coord.raw_distance(other);
        self.adjustment_index = (self.adjustment_index + 1) % window;
        let sum: f64 = self.adjustment_samples.iter().sum();
        self.coord.adjustment = sum / (2.0 * window as f64);
    }

    fn update_gravity(&mut self, rng: &mut impl rand::Rng) {
        let dist = self.origin.distance_secs(&self.coord);
        let force = -(dist / self.config.gravity_rho).powi(2);
        self.coord = self
            .coord
            .apply_force(&self.config, force, &self.origin, rng);
    }
}

/// The last few round-trip samples of one member; Vivaldi takes their median, so one slow
/// ack (a scheduling hiccup) does not throw the coordinate off (Ledlie et al.).
#[derive(Debug, Clone, Copy, Default)]
pub struct LatencyFilter {
    samples: [f64; 3],
    len: usize,
    next: usize,
}

impl LatencyFilter {
    /// Adds a sample and returns the median of those kept.
    pub fn push(&mut self, rtt: Duration) -> Duration {
        let size = self.samples.len();
        self.samples[self.next] = rtt.as_secs_f64();
        self.next = (self.next + 1) % size;
        self.len = (self.len + 1).min(size);
        let mut sorted = self.samples;
        let kept = &mut sorted[..self.len];
        kept.sort_by(f64::total_cmp);
        Duration::from_secs_f64(kept[self.len / 2])
    }
}

/// Bounds (seconds) of the probe round-trip histogram's buckets.
pub const RTT_BUCKETS: [f64; 16] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5,
];

/// Round trips of direct probes, as a histogram over [`RTT_BUCKETS`] (not cumulative: each
/// observation in the first bucket whose bound holds it; those past the last bound only in
/// `count`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttHistogram {
    /// Observations per bucket.
    pub buckets: [u64; RTT_BUCKETS.len()],
    /// Observations.
    pub count: u64,
    /// Their sum, in nanoseconds.
    pub sum_nanos: u64,
}

impl RttHistogram {
    /// Counts one round trip.
    pub fn observe(&mut self, rtt: Duration) {
        let s = rtt.as_secs_f64();
        if let Some(i) = RTT_BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_nanos = self
            .sum_nanos
            .saturating_add(u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX));
    }

    /// The sum of the observations, in seconds.
    pub fn sum_secs(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }

    /// (bound, observations in that bucket) for each bound, as Prometheus's encoders take.
    pub fn by_bound(&self) -> Vec<(f64, u64)> {
        RTT_BUCKETS.iter().copied().zip(self.buckets).collect()
    }
}

fn diff(a: &[f64; DIMENSIONS], b: &[f64; DIMENSIONS]) -> [f64; DIMENSIONS] {
    let mut d = [0.0; DIMENSIONS];
    for ((d, a), b) in d.iter_mut().zip(a).zip(b) {
        *d = a - b;
    }
    d
}

fn magnitude(v: &[f64; DIMENSIONS]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The unit vector from `b` towards `a` and the distance between them; a random direction
/// (and distance 0) when they coincide.
fn unit_vector_at(
    a: &[f64; DIMENSIONS],
    b: &[f64; DIMENSIONS],
    rng: &mut impl rand::Rng,
) -> ([f64; DIMENSIONS], f64) {
    let mut d = diff(a, b);
    let mag = magnitude(&d);
    if mag > ZERO_THRESHOLD {
        return (d.map(|x| x / mag), mag);
    }
    for x in d.iter_mut() {
        *x = rng.random::<f64>() - 0.5;
    }
    let mag = magnitude(&d);
    if mag > ZERO_THRESHOLD {
        return (d.map(|x| x / mag), 0.0);
    }
    let mut unit = [0.0; DIMENSIONS];
    unit[0] = 1.0;
    (unit, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn two_nodes_learn_their_distance() {
        let mut rng = SmallRng::seed_from_u64(1);
        let (mut a, mut b) = (Vivaldi::default(), Vivaldi::default());
        let rtt = Duration::from_millis(20);
        for _ in 0..200 {
            let cb = b.coordinate().on_the_wire();
            a.update(&cb, rtt, &mut rng);
            let ca = a.coordinate().on_the_wire();
            b.update(&ca, rtt, &mut rng);
        }
        let est = a.coordinate().distance_secs(&b.coordinate());
        assert!((est - 0.020).abs() < 0.002, "estimated {est}");
        assert!(a.coordinate().error < 0.2, "{:?}", a.coordinate());
    }

    #[test]
    fn wire_round_trip_keeps_three_digits() {
        let c = Coordinate {
            vec: [0.0123, -0.5, 1.0e-5, 3.25],
            error: 0.4,
            adjustment: -0.000_3,
            height: 0.000_08,
        };
        let back = Coordinate::decode(&c.encode()).unwrap();
        for (x, y) in c.vec.iter().zip(back.vec) {
            assert!((x - y).abs() <= x.abs() / 1000.0 + 1e-7, "{x} {y}");
        }
        assert!((c.height - back.height).abs() < 1e-7);
    }

    #[test]
    fn bad_coordinates_are_refused() {
        let mut bytes = Coordinate::new(&VivaldiConfig::default()).encode();
        assert!(Coordinate::decode(&bytes).is_ok());
        bytes[0..2].copy_from_slice(&half::f16::NAN.to_le_bytes());
        assert_eq!(Coordinate::decode(&bytes), Err(CoordinateError::NotFinite));
        bytes[0..2].copy_from_slice(&half::f16::from_f64(500.0).to_le_bytes());
        assert_eq!(
            Coordinate::decode(&bytes),
            Err(CoordinateError::OutOfBounds)
        );
        assert_eq!(
            Coordinate::decode(&bytes[1..]),
            Err(CoordinateError::Length)
        );
    }

    #[test]
    fn the_latency_filter_takes_the_median() {
        let mut f = LatencyFilter::default();
        let ms = Duration::from_millis;
        assert_eq!(f.push(ms(10)), ms(10));
        assert_eq!(f.push(ms(500)), ms(500));
        assert_eq!(f.push(ms(12)), ms(12));
        assert_eq!(f.push(ms(11)), ms(12));
    }
}
