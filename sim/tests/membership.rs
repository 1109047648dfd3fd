//! Multi-node behaviour of the real core, in virtual time. Every assertion names the seed.

use std::time::Duration;

use gossip_core::{EventKind, Status, Tags};
use sim::{Params, Sim, role};

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

/// `n` nodes, each joining through node 0 with a staggered start, run until converged.
fn cluster(seed: u64, n: usize) -> Sim {
    cluster_with(Params::new(seed), n)
}

/// [`cluster`] with other parameters.
fn cluster_with(params: Params, n: usize) -> Sim {
    let seed = params.seed;
    let mut sim = Sim::new(params);
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

/// Every member reports a crashed member suspect before it reports it failed, also those
/// that learnt of the suspicion from others (foca schedules its suspicion timer only where
/// the probe failed): DNS answers and writers leave suspects out at once.
#[test]
fn every_member_reports_the_suspicion_before_the_failure() {
    let seed = 15;
    let mut sim = cluster(seed, 10);
    sim.crash(4);
    sim.run_until_true(10 * MS, 30 * S, |s| s.all_see("node4", Status::Failed))
        .unwrap_or_else(|| panic!("seed {seed}: crash never detected"));
    for ix in (0..10).filter(|&i| i != 4) {
        let failed_at = sim
            .events(ix)
            .iter()
            .find(|(_, e)| e.member.name() == "node4" && e.kind == EventKind::Failed)
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("seed {seed}: node{ix} saw no failure"));
        let suspect_at = sim
            .status_log
            .iter()
            .find(|(n, _, m)| *n == ix && m.name() == "node4" && m.status == Status::Suspect)
            .map(|(_, t, _)| *t);
        assert!(
            suspect_at.is_some_and(|t| t < failed_at),
            "seed {seed}: node{ix} reported node4 suspect at {suspect_at:?}, failed at {failed_at:?}"
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

#[test]
fn a_partition_longer_than_the_failure_and_reap_timeouts_heals_within_ten_seconds() {
    for seed in [61u64, 62, 63] {
        let mut p = Params::new(seed);
        p.config.reap_after = 30 * S;
        let n = 20;
        let mut sim = cluster_with(p, n);
        let groups: Vec<u32> = (0..n).map(|i| u32::from(i >= n / 2)).collect();
        sim.partition(&groups, false);
        // Failure detection, then the reap: each half forgets the other entirely.
        sim.run_for(60 * S);
        let far = format!("node{}", n - 1);
        assert!(
            sim.node(0)
                .unwrap()
                .members()
                .iter()
                .all(|m| m.name() != far),
            "seed {seed}: {far} was not reaped on node0 during the partition"
        );
        assert!(
            sim.node(0).unwrap().lost_members().contains(&far),
            "seed {seed}: node0 does not keep trying {far}"
        );
        sim.heal();
        let took = sim
            .run_until_true(10 * MS, 10 * S, Sim::converged)
            .unwrap_or_else(|| panic!("seed {seed}: the halves did not merge within 10 s"));
        eprintln!("seed {seed}: merged {took:?} after the partition was lifted");
        // Once merged, nobody is lost any more.
        sim.run_for(20 * S);
        for ix in 0..n {
            assert!(
                sim.node(ix).unwrap().lost_members().is_empty(),
                "seed {seed}: node{ix} still tries {:?} (merged in {took:?})",
                sim.node(ix).unwrap().lost_members()
            );
        }
        assert!(sim.converged(), "seed {seed}: split again after merging");
    }
}

/// A tag change while cut off (a health check turning critical because its backend is
/// unreachable, as in the Docker partition test) must not stop failure detection: foca waits
/// for a message to the new identity before probing again, which never comes.
#[test]
fn a_node_cut_off_that_changes_its_tags_still_detects_the_others_failed() {
    for seed in [71u64, 72] {
        let mut sim = cluster(seed, 4);
        sim.partition(&[0, 0, 0, 1], false);
        sim.run_for(1500 * MS);
        let mut tags = role("appserver");
        tags.insert("health".into(), "critical".into());
        sim.set_tags(3, tags);
        let detected = sim.run_until_true(100 * MS, 60 * S, |s| {
            s.node(3)
                .unwrap()
                .members()
                .iter()
                .filter(|m| m.name() != "node3")
                .all(|m| m.status == Status::Failed)
        });
        assert!(
            detected.is_some(),
            "seed {seed}: node3 still lists {:?}",
            sim.node(3)
                .unwrap()
                .members()
                .iter()
                .map(|m| (m.name().to_string(), m.status))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn user_events_reach_every_member_once_under_loss_and_duplication() {
    for seed in [21u64, 22, 23] {
        let mut sim = cluster(seed, 40);
        sim.set_network_faults(0.10, 0.10);
        let mut sent = Vec::new();
        for (i, from) in [0usize, 7, 19, 7].into_iter().enumerate() {
            let name = format!("deploy{}", i % 3);
            let ltime = sim.user_event(from, &name, format!("v{i}").as_bytes());
            sent.push((ltime, name, format!("v{i}").into_bytes()));
            sim.run_for(50 * MS);
        }
        sim.run_for(3 * S);
        for ix in sim.up() {
            let mut got: Vec<(u64, String, Vec<u8>)> = sim
                .user_log
                .iter()
                .filter(|(n, _, _, _)| *n == ix)
                .map(|(_, _, _, e)| (e.ltime, e.name.clone(), e.payload.clone()))
                .collect();
            got.sort();
            let mut want = sent.clone();
            want.sort();
            assert_eq!(got, want, "seed {seed}: node{ix} got each event once");
        }
        // Lamport times grow: node 7's second event comes after its first.
        assert!(sent[3].0 > sent[1].0, "seed {seed}: {sent:?}");
    }
}

#[test]
fn force_leave_turns_a_failed_member_into_a_left_one_everywhere() {
    let seed = 31;
    let mut sim = cluster(seed, 12);
    assert!(
        !sim.force_leave(0, "node5"),
        "seed {seed}: node5 is alive: no-op"
    );
    sim.crash(5);
    let status = |sim: &Sim, ix: usize| {
        sim.node(ix)
            .unwrap()
            .members()
            .into_iter()
            .find(|m| m.name() == "node5")
            .map(|m| m.status)
    };
    let failed = sim.run_until_true(10 * MS, 30 * S, |s| {
        (0..12)
            .filter(|&i| i != 5)
            .all(|i| status(s, i) == Some(Status::Failed))
    });
    assert!(failed.is_some(), "seed {seed}: node5 not failed everywhere");
    assert!(sim.force_leave(0, "node5"), "seed {seed}");
    let left = sim.run_until_true(MS, 2 * S, |s| {
        (0..12)
            .filter(|&i| i != 5)
            .all(|i| status(s, i) == Some(Status::Left))
    });
    let left = left.unwrap_or_else(|| panic!("seed {seed}: not left everywhere"));
    assert!(left < 500 * MS, "seed {seed}: took {left:?}");
    for ix in (0..12).filter(|&i| i != 5) {
        let leaves = sim
            .events(ix)
            .iter()
            .filter(|(_, e)| e.kind == EventKind::Leave && e.member.name() == "node5")
            .count();
        assert_eq!(leaves, 1, "seed {seed}: node{ix} reported one leave");
    }
}

#[test]
fn a_query_reaches_its_targets_once_and_their_answers_come_back() {
    use gossip_core::QueryOutput;
    for seed in [41u64, 42] {
        let mut sim = cluster(seed, 20);
        sim.set_network_faults(0.10, 0.10);
        let targets: Vec<usize> = (0..8).collect(); // node 0, the asker, included
        let id = sim.query(0, "uptime", b"now", &targets, 10 * S);
        let mut answered = 0;
        let mut done_at = None;
        for _ in 0..2000 {
            sim.run_for(5 * MS);
            let incoming: Vec<(usize, std::net::SocketAddr, u64, String)> = sim.query_log
                [answered..]
                .iter()
                .filter_map(|(ix, _, q)| match q {
                    QueryOutput::Incoming(q) => Some((*ix, q.origin, q.ltime, q.name.clone())),
                    _ => None,
                })
                .collect();
            answered = sim.query_log.len();
            for (ix, origin, ltime, name) in incoming {
                sim.respond(
                    ix,
                    origin,
                    ltime,
                    format!("{name} from node{ix}").as_bytes(),
                );
            }
            done_at = sim
                .query_log
                .iter()
                .find_map(|(ix, t, q)| (*ix == 0 && *q == QueryOutput::Done { id }).then_some(*t));
            if done_at.is_some() {
                break;
            }
        }
        let done_at = done_at.unwrap_or_else(|| panic!("seed {seed}: query never done"));
        let at0 = |f: &dyn Fn(&QueryOutput) -> Option<String>| -> Vec<String> {
            let mut v: Vec<String> = sim
                .query_log
                .iter()
                .filter(|(ix, _, _)| *ix == 0)
                .filter_map(|(_, _, q)| f(q))
                .collect();
            v.sort();
            v
        };
        let want: Vec<String> = (0..8).map(|i| format!("node{i}")).collect();
        let acks = at0(&|q| match q {
            QueryOutput::Ack { from, .. } => Some(from.clone()),
            _ => None,
        });
        assert_eq!(acks, want, "seed {seed}: one ack per target");
        let answers = at0(&|q| match q {
            QueryOutput::Response { from, payload, .. } => {
                Some(format!("{from}: {}", String::from_utf8_lossy(payload)))
            }
            _ => None,
        });
        let want_answers: Vec<String> = (0..8)
            .map(|i| format!("node{i}: uptime from node{i}"))
            .collect();
        assert_eq!(answers, want_answers, "seed {seed}: one answer per target");
        assert!(
            done_at < 5 * S,
            "seed {seed}: done early, when all answered: {done_at:?}"
        );
        for ix in 0..20 {
            let got = sim
                .query_log
                .iter()
                .filter(|(i, _, q)| *i == ix && matches!(q, QueryOutput::Incoming(_)))
                .count();
            assert_eq!(
                got,
                usize::from(ix < 8),
                "seed {seed}: node{ix} handled it once"
            );
        }
    }
}

/// `n` nodes that all start within `window`, each joining through one of three seeds: joiners
/// that do not know of each other when they announce themselves.
fn storm(params: Params, n: usize, window: Duration) -> Sim {
    let mut sim = Sim::new(params);
    for i in 0..n {
        let ix = sim.add_node(&format!("node{i}"), role("appserver"));
        if ix > 0 {
            // The seeds join node 0, the others one of the seeds.
            sim.join(ix, if ix < 3 { 0 } else { ix % 3 });
        }
        sim.run_for(window / n as u32);
    }
    sim
}

#[test]
fn a_join_storm_converges_within_seconds() {
    for seed in [21, 22, 23] {
        // 300 nodes in half a second: each joiner tells every member it knows directly, and
        // the digest exchange a second after its join's answer brings it those that joined
        // alongside it.
        let mut sim = storm(Params::new(seed), 300, 500 * MS);
        let took = sim.run_until_true(50 * MS, 30 * S, Sim::converged);
        let took = took.unwrap_or_else(|| {
            panic!(
                "seed {seed}: no convergence in 30 s: {:?}",
                sim.disagreements(5)
            )
        });
        assert!(took < 3 * S, "seed {seed}: converged after {took:?}");
    }
}

#[test]
fn beyond_the_notice_fanout_changes_and_events_are_passed_on() {
    for seed in [31, 32] {
        // Direct notices to 8 members only (more when 64 each would not cover the rest):
        // each passes it on to its share of the rest.
        let mut params = Params::new(seed);
        params.config.notice_fanout = 8;
        let mut sim = storm(params, 120, 2 * S);
        sim.run_until_true(50 * MS, 60 * S, Sim::converged)
            .unwrap_or_else(|| panic!("seed {seed}: no convergence: {:?}", sim.disagreements(5)));
        let mut tags = role("frontserver");
        tags.insert("v".into(), "2".into());
        sim.set_tags(5, tags);
        let v = sim.version(5);
        sim.run_until_true(10 * MS, 10 * S, |s| {
            s.up()
                .iter()
                .all(|&ix| ix == 5 || s.view(ix, "node5").is_some_and(|m| m.id.version() == v))
        })
        .unwrap_or_else(|| panic!("seed {seed}: the tag change did not reach all"));
        // A user event reaches every member once, also those no direct notice reached.
        let ltime = sim.user_event(3, "deploy", b"v2");
        sim.run_for(2 * S);
        for ix in sim.up() {
            let got = sim
                .user_log
                .iter()
                .filter(|(n, _, _, e)| *n == ix && e.ltime == ltime && e.name == "deploy")
                .count();
            assert_eq!(
                got, 1,
                "seed {seed}: node{ix} ran the user event {got} times"
            );
        }
        // A quarter of the members die at once; before anyone notices, node 6 leaves. Some
        // of the members it tells directly are dead, so their shares are told directly.
        for ix in 60..90 {
            sim.crash(ix);
        }
        sim.leave(6);
        sim.run_until_true(10 * MS, 3 * S, |s| s.all_see("node6", Status::Left))
            .unwrap_or_else(|| panic!("seed {seed}: the leave did not reach all live members"));
        sim.stop(6);
        sim.leave(9);
        sim.run_until_true(10 * MS, 10 * S, |s| s.all_see("node9", Status::Left))
            .unwrap_or_else(|| panic!("seed {seed}: the leave did not reach all"));
        sim.stop(9);
        sim.crash(11);
        sim.run_until_true(100 * MS, 30 * S, |s| s.all_see("node11", Status::Failed))
            .unwrap_or_else(|| panic!("seed {seed}: the failure did not reach all"));
        assert_eq!(sim.false_failures, 0, "seed {seed}");
    }
}

#[test]
fn a_refuted_suspicion_does_not_make_the_suspect_renew() {
    for seed in [41u64, 42] {
        // At 20 % loss probes fail often and most suspicions are refuted in time. A refuted
        // suspect must keep its identity: nobody declared it down (foca still sent it its
        // "you are down" courtesy message when the stale suspicion timer fired).
        let mut sim = cluster(seed, 60);
        let versions: Vec<u64> = (0..60).map(|ix| sim.version(ix)).collect();
        sim.set_network_faults(0.2, 0.0);
        sim.run_for(120 * S);
        for (ix, v) in versions.into_iter().enumerate() {
            assert_eq!(
                sim.version(ix),
                v,
                "seed {seed}: node{ix} renewed its identity"
            );
        }
        assert_eq!(sim.false_failures, 0, "seed {seed}");
    }
}

/// Anti-amplification must never cost a live member its membership: a member whose first
/// datagram to another (its join notice) arrived before it was known stayed limited there;
/// once the allowance was spent, probes and notices to it were held behind a challenge sent
/// once, whose echo was itself held by the other side's limit. At 30 % loss, 17 of 30 seeds
/// of this scenario declared a live member failed before the fix (notice senders vouched for
/// once applied, echoes never held, challenges repeated); none after.
#[test]
fn heavy_loss_declares_no_live_member_failed() {
    // Three of the seeds that failed (the others took too long for a debug build's test).
    for seed in [2u64, 4, 7] {
        let mut sim = cluster(seed, 60);
        let versions: Vec<u64> = (0..60).map(|ix| sim.version(ix)).collect();
        sim.set_network_faults(0.3, 0.0);
        sim.run_for(120 * S);
        assert_eq!(
            sim.false_failures, 0,
            "seed {seed}: {:?}",
            sim.false_failure_log
        );
        for (ix, v) in versions.into_iter().enumerate() {
            assert_eq!(
                sim.version(ix),
                v,
                "seed {seed}: node{ix} renewed its identity"
            );
        }
    }
}

/// A joiner must reach every member even when its join's answer completes after it
/// announced itself: here a node joining through it first (as in a join storm, a later joiner
/// that heard of it from the seed) makes it active, and the seed, slow, answers late. Before
/// the joiner also told the members it learned from that answer, they heard of it only
/// through periodic push-pulls: seen as about a second of 100 agents' join storm on loopback.
#[test]
fn a_joiner_tells_members_it_learns_after_announcing() {
    for seed in [41u64, 42, 43] {
        let mut sim = cluster(seed, 40);
        sim.run_for(20 * S);
        let w = sim.add_watch("joiner", EventKind::Join, 0);
        sim.set_slow(0, Some(300 * MS));
        let joiner = sim.add_node("joiner", role("appserver"));
        let next = sim.add_node("next", role("appserver"));
        sim.join(joiner, 0);
        sim.run_for(MS);
        sim.join(next, joiner);
        let everyone = sim.len();
        let took = sim.run_until_true(MS, 10 * S, |s| s.watch(w).time_to(1.0, everyone).is_some());
        let took = took.unwrap_or_else(|| {
            panic!(
                "seed {seed}: {} of {everyone} heard of the joiner in 10 s",
                sim.witnesses(w)
            )
        });
        // The slow seed answers the join 0-600 ms late; members then hear within a round
        // trip. Before: 1.49 to 1.74 s for these seeds (the second push-pull round).
        assert!(
            took < S,
            "seed {seed}: every member heard of the joiner after {took:?}"
        );
    }
}
