//! Network coordinates on the simulator (issue 27): accuracy on a network with regions, the
//! probe round trips behind them, determinism, and coordinates from peers that are refused.

use std::time::Duration;

use gossip_core::Tags;
use gossip_core::coordinate::{self, Coordinate, WIRE_LEN};
use gossip_core::identity::NameKey;
use gossip_core::wire::{self, Kind};
use sim::coordinates::{AccuracyConfig, run};
use sim::latency::Topology;
use sim::{Params, Sim};

const S: Duration = Duration::from_secs(1);

fn regional(seed: u64) -> Params {
    let mut p = Params::new(seed);
    p.topology = Some(Topology::default());
    p.record_packets = true;
    p
}

fn cluster(n: usize, params: Params) -> Sim {
    let mut sim = Sim::new(params);
    for i in 0..n {
        let ix = sim.add_node(&format!("n{i}"), Tags::new());
        if ix > 0 {
            sim.join(ix, 0);
        }
    }
    sim
}

#[test]
fn coordinates_estimate_round_trips_within_20_percent_with_loss() {
    let mut cfg = AccuracyConfig::new(100);
    cfg.seed = 3;
    cfg.loss = 0.05;
    cfg.duration = Duration::from_secs(120);
    let r = run(&cfg);
    let last = r.last();
    assert!(
        last.median <= 0.2,
        "seed {}: median relative error {:.3} (p90 {:.3})",
        cfg.seed,
        last.median,
        last.p90
    );
    assert!(r.samples_per_node_s > 0.5, "seed {}: {r:?}", cfg.seed);
}

#[test]
fn the_nearest_member_is_estimated_nearest() {
    let seed = 5;
    let mut sim = cluster(30, regional(seed));
    sim.run_for(120 * S);
    let a = sim.node(0).unwrap();
    let place = |i| *sim.place(i).unwrap();
    // The member truly nearest to n0 and the farthest: n0's estimates (through the
    // coordinates it holds for them, as `rtt` and `order = "nearest"` use) rank them so.
    let by_truth = |i: usize| Topology::rtt(&place(0), &place(i));
    let nearest = (1..30)
        .min_by(|x, y| by_truth(*x).total_cmp(&by_truth(*y)))
        .unwrap();
    let farthest = (1..30)
        .max_by(|x, y| by_truth(*x).total_cmp(&by_truth(*y)))
        .unwrap();
    let est = |i: usize| {
        a.rtt_to(sim.name(i))
            .expect("n0 holds a coordinate of everyone")
    };
    assert!(
        est(nearest) < est(farthest),
        "seed {seed}: nearest {} estimated {:?}, farthest {} estimated {:?}",
        sim.name(nearest),
        est(nearest),
        sim.name(farthest),
        est(farthest)
    );
    // Probe round trips were measured, and their mean is about the network's.
    let h = a.stats().probe_rtt;
    assert!(h.count > 50, "seed {seed}: {h:?}");
    let mean = h.sum_secs() / h.count as f64;
    let truth: f64 = (1..30).map(by_truth).sum::<f64>() / 29.0;
    assert!(
        (mean - truth).abs() < truth * 0.3,
        "seed {seed}: mean probe rtt {mean} against {truth}"
    );
}

#[test]
fn one_seed_gives_one_set_of_coordinates() {
    let coords = |seed| {
        let mut sim = cluster(10, regional(seed));
        sim.run_for(30 * S);
        (0..10)
            .map(|i| sim.node(i).unwrap().coordinate())
            .collect::<Vec<_>>()
    };
    assert_eq!(coords(7), coords(7));
}

#[test]
fn bad_coordinates_from_peers_are_refused_and_never_passed_on() {
    let mut sim = cluster(3, regional(9));
    sim.run_for(20 * S);
    let (a, b) = (sim.addr(0), sim.addr(1));
    let held = sim.node(0).unwrap().coordinate_of("n1").unwrap();
    let ack = sim
        .packets
        .iter()
        .rev()
        .find(|(_, from, to, d)| {
            *from == b && *to == a && Kind::of_packet(d) == Some(Kind::FocaCoord)
        })
        .map(|(_, _, _, d)| d.clone())
        .expect("n1 acked a probe of n0's, with its coordinate");
    let before = sim.node(0).unwrap().stats().coordinates_refused;
    // The ack again, its coordinate not finite.
    let mut forged = ack.clone();
    let nan = half_bits(f64::NAN);
    forged[wire::ENVELOPE_LEN..wire::ENVELOPE_LEN + 2].copy_from_slice(&nan);
    sim.inject(0, b, &forged);
    // A list of coordinates claiming n2 sits 500 s away.
    let mut far = Coordinate::new(&coordinate::VivaldiConfig::default());
    far.vec[0] = 1.0;
    let mut bytes = far.encode();
    bytes[0..2].copy_from_slice(&half_bits(500.0));
    let mut list = Vec::new();
    wire::put_envelope(&mut list, Kind::Coordinates);
    list.push(0);
    list.push(1);
    list.extend_from_slice(&NameKey::of("n2").0.to_le_bytes());
    list.extend_from_slice(&bytes);
    sim.inject(0, b, &list);
    let n0 = sim.node(0).unwrap();
    assert_eq!(n0.stats().coordinates_refused, before + 2);
    assert_eq!(n0.coordinate_of("n1"), Some(held), "n1's coordinate kept");
    assert!(n0.coordinate_of("n2").unwrap().check().is_ok());
    // Nothing n0 sends afterwards carries a coordinate that is not finite or in bounds.
    let since = sim.now();
    sim.run_for(120 * S);
    for (_, _, _, d) in sim
        .packets
        .iter()
        .filter(|(t, from, _, _)| *t >= since && *from == a)
    {
        match Kind::of_packet(d) {
            Some(Kind::FocaCoord) => {
                Coordinate::decode(&d[wire::ENVELOPE_LEN..wire::ENVELOPE_LEN + WIRE_LEN])
                    .expect("a good coordinate");
            }
            Some(Kind::Coordinates) => {
                let body = &d[wire::ENVELOPE_LEN + 2..];
                for e in body.chunks(8 + WIRE_LEN) {
                    Coordinate::decode(&e[8..]).expect("a good coordinate");
                }
            }
            _ => {}
        }
    }
}

/// `x` as an IEEE half-precision float, little-endian.
fn half_bits(x: f64) -> [u8; 2] {
    let mut c = Coordinate::new(&coordinate::VivaldiConfig::default());
    c.vec[0] = x;
    let b = c.encode();
    [b[0], b[1]]
}
