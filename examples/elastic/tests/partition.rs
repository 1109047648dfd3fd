//! A partition in Docker that outlasts failure detection *and* the reap timeout heals by
//! itself: four containers of the demo on a network, two of them `docker network disconnect`ed
//! until every side has declared the others failed and reaped them, then connected again at
//! their addresses. Every container must list all four alive within 10 s.
//!
//! Needs a Docker engine (see `e2e.rs`); without one it says so and passes, unless
//! `GOSSIP_REQUIRE_DOCKER=1`.

use std::time::{Duration, Instant};

use elastic_demo::{Demo, images};

/// How long members stay listed once failed, in the containers: short, so the test can wait
/// it out.
const REAP_SECS: u64 = 15;
const HOSTS: [&str; 4] = ["dnsserver", "proxyserver", "frontserver1", "appserver1"];
const CUT: [&str; 2] = ["frontserver1", "appserver1"];

#[test]
fn a_partition_longer_than_the_reap_timeout_heals_within_ten_seconds() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pid = std::process::id();
    let run = format!("gd-part-{pid}");
    let reap = format!("GOSSIP_REAP_AFTER={REAP_SECS}");
    // A fixed subnet, so a container comes back at its address; varied by pid against
    // collisions with another run's network.
    let subnet = format!("172.29.{}.0/24", pid % 250);
    let Some(demo) = rt.block_on(Demo::connect_or_skip(&run)) else {
        return;
    };
    let demo = demo.with_env(&[&reap]).with_subnet(&subnet);
    let d = demo.clone();
    let outcome = rt.block_on(async move { tokio::spawn(scenario(d)).await });
    let removed = rt.block_on(demo.down());
    eprintln!("cleanup: {removed:?}");
    match outcome {
        Ok(report) => println!("{report}"),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("scenario task: {e}"),
    }
    assert!(removed.is_ok(), "cleanup failed: {removed:?}");
}

/// Polls (every 200 ms, at most `limit`) until `host` lists exactly what `want` accepts.
async fn wait_view(
    demo: &Demo,
    host: &str,
    limit: Duration,
    want: impl Fn(&[(String, String, String)]) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(m) = demo.members(host).await
            && want(&m)
        {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// The last lines a container logged, for a failure message.
fn docker_logs(container: &str) -> String {
    std::process::Command::new("docker")
        .args(["logs", "--tail", "40", container])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
        })
        .unwrap_or_default()
}

fn all_alive(m: &[(String, String, String)]) -> bool {
    HOSTS
        .iter()
        .all(|h| m.iter().any(|(n, s, _)| n == h && s == "alive"))
}

async fn scenario(demo: Demo) -> String {
    let log = |s: &str| eprintln!("{s}");
    let target = images::workspace_dir().join("target/elastic-demo");
    let agent = images::agent_binary(&target, &log).expect("agent binary");
    images::ensure(demo.docker(), &agent, demo.variant, &log)
        .await
        .expect("images");
    demo.down().await.expect("clean start");
    demo.up().await.expect("up");
    for h in HOSTS {
        assert!(
            wait_view(&demo, h, Duration::from_secs(60), all_alive)
                .await
                .is_some(),
            "{h} never listed all four alive"
        );
    }
    let ips: Vec<_> = {
        let mut v = Vec::new();
        for h in CUT {
            v.push(demo.ip(h).await.expect("address"));
        }
        v
    };

    // The partition: each cut container alone, the other two together.
    let cut_at = Instant::now();
    for h in CUT {
        demo.disconnect(h).await.expect("disconnect");
    }
    // Failed, then reaped, on both sides: the dnsserver no longer lists the cut ones, and
    // each cut one lists nobody but itself.
    // A cut container alone sees every probe fail: Lifeguard's local health stretches its
    // suspicions (up to 9x), so its side takes longer.
    let limit = Duration::from_secs(REAP_SECS + 150);
    let gone =
        |m: &[(String, String, String)]| CUT.iter().all(|c| m.iter().all(|(n, _, _)| n != c));
    assert!(
        wait_view(&demo, "dnsserver", limit, gone).await.is_some(),
        "the dnsserver never reaped the cut containers"
    );
    for h in CUT {
        if wait_view(&demo, h, limit, |m| m.len() == 1).await.is_none() {
            panic!(
                "{h} never reaped the others: {:?}\n{:?}\n{}",
                demo.members(h).await,
                demo.exec(h, &["ip", "-4", "addr"]).await,
                docker_logs(&demo.container(h))
            );
        }
    }
    let partition = cut_at.elapsed();

    // Lifted: every container lists all four alive again.
    let lifted = Instant::now();
    for (h, ip) in CUT.iter().zip(&ips) {
        demo.reconnect(h, *ip).await.expect("reconnect");
    }
    let mut report = format!(
        "partition of {} containers from the other {} for {:.1} s (failure + reap at {REAP_SECS} s on both sides), then lifted:\n",
        CUT.len(),
        HOSTS.len() - CUT.len(),
        partition.as_secs_f64()
    );
    for h in HOSTS {
        let left = Duration::from_secs(10).saturating_sub(lifted.elapsed());
        let took = wait_view(&demo, h, left, all_alive).await;
        assert!(
            took.is_some(),
            "{h} did not list all four alive within 10 s of the partition's end: {:?}",
            demo.members(h).await
        );
        report.push_str(&format!(
            "- {h} lists all four alive {:.1} s after (poll interval 200 ms)\n",
            lifted.elapsed().as_secs_f64()
        ));
    }
    report
}
