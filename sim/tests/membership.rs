//! Multi-node behaviour of the real core, in virtual time. Every assertion names the seed.

use std::time::Duration;

use gossip_core::{EventKind, Status, Tags};
use sim::{Params, Sim, role};

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

/// `n` nodes, each joining through node 0 with a staggered start, run until converged.
fn cluster(seed: u64, n: usize) -> Sim {
    let mut sim = Sim::new(Params::new(seed));
    for i in 0..n {
        let r = if i % 2 == 0 {
            "appserver"
        } else {
            "frontserver"
        };
        let mut tags = role(r);
        tags.insert("idx".into(), i.to_string());
        let ix = sim.add_node(&format!("node{i}"), tags);
        if ix > 0 {
            sim.join(ix, 0);
        }
        sim.run_for(10 * MS);
    }
    let took = sim.run_until_true(10 * MS, 30 * S, Sim::converged);
    assert!(
        took.is_some(),
        "seed {seed}: {n} nodes did not converge in 30 s"
    );
    sim
}

#[test]
fn five_nodes_join_and_see_roles_and_tags() {
    let sim = cluster(1, 5);
    for ix in 0..5 {
        let members = sim.node(ix).unwrap().members();
        assert_eq!(members.len(), 5, "seed 1");
        for m in &members {
            assert!(m.id.role().is_some(), "seed 1: {} has no role", m.name());
        }
        // Each node reported a join for itself and every other member, exactly once.
        let joins = sim
            .events(ix)
            .iter()
            .filter(|(_, e)| e.kind == EventKind::Join)
            .count();
        assert_eq!(joins, 5, "seed 1: node{ix} joins");
    }
}

#[test]
fn late_joiner_learns_every_members_tags_by_full_state_sync() {
    let seed = 2;
    let mut sim = cluster(seed, 30);
    // Let every dissemination finish, so only a full-state exchange can teach the newcomer.
    sim.run_for(20 * S);
    let late = sim.add_node("late", role("proxyserver"));
    sim.join(late, 3);
    let took = sim.run_until_true(MS, 5 * S, Sim::converged);
    let took = took.unwrap_or_else(|| panic!("seed {seed}: late joiner did not converge"));
    assert!(took < 500 * MS, "seed {seed}: late joiner took {took:?}");
}

#[test]
fn tag_change_reaches_every_member_as_one_update() {
    let seed = 3;
    let mut sim = cluster(seed, 20);
    let mut tags = role("appserver");
    tags.insert("idx".into(), "0".into());
    tags.insert("version".into(), "2".into());
    sim.set_tags(0, tags.clone());
    let took = sim.run_until_true(MS, 5 * S, Sim::converged);
    let took = took.unwrap_or_else(|| panic!("seed {seed}: tag change did not converge"));
    assert!(took < S, "seed {seed}: tag change took {took:?}");
    for ix in 1..20 {
        let updates = sim
            .events(ix)
            .iter()
            .filter(|(_, e)| e.kind == EventKind::Update && e.member.name() == "node0")
            .count();
        assert_eq!(updates, 1, "seed {seed}: node{ix} updates for node0");
    }
    // And nobody flapped: no failure anywhere.
    sim.run_for(30 * S);
    for ix in 0..20 {
        assert!(
            sim.events(ix)
                .iter()
                .all(|(_, e)| e.kind != EventKind::Failed),
            "seed {seed}: node{ix} saw a failure after a tag change"
        );
    }
}

#[test]
fn leave_is_left_on_all_fifty_within_a_second() {
    for seed in [4, 40, 400] {
        let mut sim = cluster(seed, 50);
        sim.leave(7);
        let took = sim.run_until_true(MS, 5 * S, |s| s.all_see("node7", Status::Left));
        let took = took.unwrap_or_else(|| panic!("seed {seed}: leave never reached all"));
        assert!(took < S, "seed {seed}: leave took {took:?}");
        // Once the notices are acknowledged the agent exits; the node must stay left.
        sim.run_until_true(MS, 2 * S, |s| s.node(7).unwrap().notices_settled())
            .unwrap_or_else(|| panic!("seed {seed}: leave notices never settled"));
        sim.stop(7);
        sim.run_for(120 * S);
        assert!(
            sim.all_see("node7", Status::Left),
            "seed {seed}: node7 came back"
        );
        for ix in (0..50).filter(|&i| i != 7) {
            let kinds: Vec<EventKind> = sim
                .events(ix)
                .iter()
                .filter(|(_, e)| e.member.name() == "node7")
                .map(|(_, e)| e.kind)
                .collect();
            assert_eq!(
                kinds,
                [EventKind::Join, EventKind::Leave],
                "seed {seed}: node{ix}"
            );
        }
    }
}

#[test]
fn crash_is_failed_on_all_and_restart_is_alive_without_flapping() {
    let seed = 5;
    let mut sim = cluster(seed, 10);
    sim.crash(4);
    let took = sim.run_until_true(10 * MS, 30 * S, |s| s.all_see("node4", Status::Failed));
    let took = took.unwrap_or_else(|| panic!("seed {seed}: crash never detected"));
    // Probe period 1 s, suspicion 4 s at this size: detection within a few probe rounds.
    assert!(took < 12 * S, "seed {seed}: detection took {took:?}");
    let restart_at = sim.now();
    sim.restart(4, 0);
    let took = sim.run_until_true(MS, 5 * S, Sim::converged);
    let took = took.unwrap_or_else(|| panic!("seed {seed}: restart did not converge"));
    assert!(took < 2 * S, "seed {seed}: restart took {took:?}");
    sim.run_for(60 * S);
    assert!(
        sim.converged(),
        "seed {seed}: not converged a minute after restart"
    );
    for ix in (0..10).filter(|&i| i != 4) {
        let after: Vec<EventKind> = sim
            .events(ix)
            .iter()
            .filter(|(t, e)| *t >= restart_at && e.member.name() == "node4")
            .map(|(_, e)| e.kind)
            .collect();
        assert_eq!(
            after,
            [EventKind::Join],
            "seed {seed}: node{ix} after restart"
        );
    }
}

#[test]
fn quick_restart_before_detection_takes_its_place_silently() {
    let seed = 6;
    let mut sim = cluster(seed, 8);
    sim.crash(2);
    sim.run_for(100 * MS);
    let at = sim.now();
    sim.restart(2, 0);
    sim.run_until_true(MS, 5 * S, Sim::converged)
        .unwrap_or_else(|| panic!("seed {seed}: quick restart did not converge"));
    sim.run_for(30 * S);
    assert!(sim.converged(), "seed {seed}");
    for ix in (0..8).filter(|&i| i != 2) {
        let failed = sim
            .events(ix)
            .iter()
            .any(|(t, e)| *t >= at && e.member.name() == "node2" && e.kind == EventKind::Failed);
        assert!(!failed, "seed {seed}: node{ix} saw the restarted node fail");
    }
}

#[test]
fn same_seed_same_trace() {
    let run = |seed| {
        let mut sim = cluster(seed, 12);
        sim.set_tags(1, Tags::from([("role".into(), "x".into())]));
        sim.leave(2);
        sim.crash(3);
        sim.run_for(20 * S);
        sim.trace_hash()
    };
    assert_eq!(run(9), run(9), "seed 9: two runs diverged");
    assert_ne!(run(9), run(10), "different seeds should differ");
}

#[test]
fn no_false_failures_without_loss() {
    let seed = 7;
    let mut sim = cluster(seed, 40);
    sim.run_for(120 * S);
    for ix in 0..40 {
        assert!(
            sim.events(ix)
                .iter()
                .all(|(_, e)| e.kind != EventKind::Failed),
            "seed {seed}: node{ix} declared a live node failed"
        );
    }
}

#[test]
fn a_restarted_seed_without_join_target_is_found_again() {
    let seed = 8;
    let mut sim = cluster(seed, 10);
    sim.crash(0);
    sim.run_for(200 * MS);
    // Node 0 comes back under its name and joins nobody: its members find it.
    sim.restart_alone(0);
    let took = sim
        .run_until_true(10 * MS, 10 * S, Sim::converged)
        .unwrap_or_else(|| panic!("seed {seed}: restarted seed stayed alone"));
    assert!(took < 3 * S, "seed {seed}: took {took:?}");
}
