//! `elastic-demo`: the elastic demo's driver. `run` plays the whole demo and cleans up; `up`,
//! `scale`, `curl`, `members` and `down` do it step by step.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use elastic_demo::{Demo, Result, Variant, images};

/// The elastic demo: dnsserver, proxyserver, frontservers and appservers in Docker, kept in
/// step by gossip-agent.
#[derive(Parser)]
#[command(name = "elastic-demo")]
struct Cli {
    /// Name of the deployment: labels, network and container names derive from it
    #[arg(long, default_value = "gossip-demo", global = true)]
    run: String,
    /// Which images: `agent` (gossip-agent's writers and supervision) or `serf` (the original
    /// Serf-contract shell scripts, with gossip-agent installed as `serf`)
    #[arg(long, default_value = "agent", global = true, value_parser = ["agent", "serf"])]
    variant: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the images, start four containers, scale up to 2 frontservers and 3 appservers,
    /// scale down again, showing the proxy's answers at each step; then remove everything
    Run,
    /// Build the images of the variant (the Debian base is cached)
    Images,
    /// Build the images and start dnsserver, proxyserver, frontserver1 and appserver1
    Up,
    /// Scale to app=N front=M (docker run / docker stop)
    Scale {
        /// `app=N` and/or `front=M`
        #[arg(required = true)]
        counts: Vec<String>,
    },
    /// `curl localhost/hello` inside the proxyserver, N times
    Curl {
        /// How many requests
        #[arg(default_value_t = 10)]
        n: usize,
    },
    /// The members as the dnsserver's agent lists them
    Members,
    /// Remove every container and the network of the deployment
    Down,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn say(s: &str) {
    println!("==> {s}");
}

async fn build(demo: &Demo) -> Result<()> {
    // What the host lacks is found (and installed, or named) before anything is built.
    images::check_host(demo.docker()).await?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| images::workspace_dir().join("target"));
    let agent = images::agent_binary(&target, &say)?;
    images::ensure(demo.docker(), &agent, demo.variant, &say).await
}

async fn run(cli: Cli) -> Result<()> {
    let variant = if cli.variant == "serf" {
        Variant::SerfScripts
    } else {
        Variant::Agent
    };
    let demo = Demo::connect(&cli.run).await?.with_variant(variant);
    match cli.command {
        Cmd::Run => {
            build(&demo).await?;
            let result = play(&demo).await;
            say("removing everything the demo created");
            let removed = demo.down().await?;
            say(&format!("removed {removed} containers and the network"));
            result
        }
        Cmd::Images => build(&demo).await,
        Cmd::Up => {
            build(&demo).await?;
            demo.up().await?;
            show(
                &demo
                    .wait_for_answers(&["frontserver1"], &["appserver1"], Duration::from_secs(60))
                    .await?[..4],
            );
            Ok(())
        }
        Cmd::Scale { counts } => {
            let hosts = demo.hosts().await?;
            let count = |role: &str| hosts.values().filter(|r| r.as_str() == role).count();
            let (mut app, mut front) = (count("appserver"), count("frontserver"));
            for c in &counts {
                match c.split_once('=') {
                    Some(("app", n)) => app = n.parse().map_err(|_| bad(c))?,
                    Some(("front", n)) => front = n.parse().map_err(|_| bad(c))?,
                    _ => return Err(bad(c)),
                }
            }
            if app == 0 || front == 0 {
                return Err(elastic_demo::DemoError::Other(
                    "keep at least one of each".into(),
                ));
            }
            for line in demo.scale(app, front).await? {
                say(&line);
            }
            Ok(())
        }
        Cmd::Curl { n } => {
            show(&demo.curl(n).await?);
            Ok(())
        }
        Cmd::Members => {
            for (name, status, role) in demo.members("dnsserver").await? {
                println!("{name:<14} {status:<8} {role}");
            }
            Ok(())
        }
        Cmd::Down => {
            let n = demo.down().await?;
            say(&format!("removed {n} containers and the network"));
            Ok(())
        }
    }
}

fn bad(c: &str) -> elastic_demo::DemoError {
    elastic_demo::DemoError::Other(format!("{c:?}: expected app=N or front=M"))
}

fn show(lines: &[String]) {
    for l in lines {
        println!("    {l}");
    }
}

/// Which servers a window of answers came from.
fn spread(answers: &[String]) -> String {
    let mut fronts = std::collections::BTreeSet::new();
    let mut apps = std::collections::BTreeSet::new();
    for (f, a) in answers.iter().filter_map(|l| elastic_demo::parse_answer(l)) {
        fronts.insert(f);
        apps.insert(a);
    }
    let join = |s: std::collections::BTreeSet<String>| s.into_iter().collect::<Vec<_>>().join(", ");
    format!(
        "{} answers came from {} and {}",
        answers.len(),
        join(fronts),
        join(apps)
    )
}

async fn play(demo: &Demo) -> Result<()> {
    demo.down().await?;
    let t = Instant::now();
    say("starting dnsserver, proxyserver, frontserver1, appserver1");
    demo.up().await?;
    let answers = demo
        .wait_for_answers(&["frontserver1"], &["appserver1"], Duration::from_secs(60))
        .await?;
    say(&format!(
        "serving after {:.1} s; curl localhost/hello on the proxy:",
        t.elapsed().as_secs_f64()
    ));
    show(&answers[..4]);

    let t = Instant::now();
    say("scaling up: docker run frontserver2, appserver2, appserver3");
    demo.scale(3, 2).await?;
    let answers = demo
        .wait_for_answers(
            &["frontserver1", "frontserver2"],
            &["appserver1", "appserver2", "appserver3"],
            Duration::from_secs(30),
        )
        .await?;
    say(&format!(
        "every new server answering {:.1} s after the first docker run:",
        t.elapsed().as_secs_f64()
    ));
    show(&answers[..12]);
    say(&spread(&answers));

    let t = Instant::now();
    say("scaling down: docker stop frontserver2, appserver2, appserver3");
    demo.scale(1, 1).await?;
    let answers = demo
        .wait_for_answers(&["frontserver1"], &["appserver1"], Duration::from_secs(30))
        .await?;
    say(&format!(
        "back to one of each {:.1} s after the first docker stop:",
        t.elapsed().as_secs_f64()
    ));
    show(&answers[..4]);
    say("members, as the dnsserver lists them:");
    for (name, status, role) in demo.members("dnsserver").await? {
        println!("    {name:<14} {status:<8} {role}");
    }
    Ok(())
}
