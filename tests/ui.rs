//! The web page at `/ui/`, driven in headless Chromium (Debian's `chromium` and
//! `chromium-driver`) through WebDriver, spoken here over HTTP: the members show, a killed
//! member's row turns *failed* and a new member appears without a reload, the page logs no
//! console error, fits a phone's width, and says plainly when the agent is gone. The
//! screenshot it takes is the README's (`target/ui-screenshot.png`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::util::{Agent, Proc, free_port, free_tcp_port, test_net};

/// One WebDriver command: `method path` with a JSON body; the answer's `value`. HTTP/1.1,
/// as chromedriver refuses 1.0.
fn wd(driver: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(driver).expect("chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps the connection open: read the head, then Content-Length bytes (or
    // the chunks, up to the last).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    let body = loop {
        let n = s.read(&mut chunk).expect("chromedriver's answer");
        assert!(n > 0, "chromedriver closed without an answer");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        let Some((head, rest)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let lower = head.to_ascii_lowercase();
        let length = lower.lines().find_map(|l| {
            l.strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        });
        match length {
            Some(len) if rest.len() >= len => break rest[..len].to_string(),
            Some(_) => continue,
            None if lower.contains("transfer-encoding: chunked") && rest.contains("\r\n0\r\n") => {
                break dechunk(rest);
            }
            None => continue,
        }
    };
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["value"].clone()
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A browser session, ended (the browser closed) when dropped.
struct Browser {
    driver: SocketAddr,
    session: String,
    /// The browser's process, which must be gone before chromedriver is stopped.
    pid: Option<i32>,
    _chromedriver: Proc,
}

impl Browser {
    fn start(dir: &std::path::Path) -> Self {
        let port = free_tcp_port();
        let driver: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let chromedriver = Proc::start(
            "chromedriver",
            &[&format!("--port={port}")],
            &dir.join("chromedriver.log"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(driver).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = dir.join("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,760",
                         format!("--user-data-dir={}", profile.display())],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = wd(driver, "POST", "/session", Some(caps));
        let session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        let pid = v["capabilities"]["goog:processID"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok());
        Self {
            driver,
            session,
            pid,
            _chromedriver: chromedriver,
        }
    }

    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        wd(
            self.driver,
            method,
            &format!("/session/{}/{what}", self.session),
            body,
        )
    }

    fn script(&self, js: &str) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    /// Polls `js` (at most 20 s) until `ok` holds for its value; the last value otherwise.
    fn wait(&self, js: &str, ok: impl Fn(&Value) -> bool) -> Result<Value, Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.script(js);
            if ok(&v) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(v);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = wd(
            self.driver,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        // The session's end closes the browser, but not at once: wait for it (bounded),
        // else it outlives chromedriver.
        if let Some(pid) = self.pid {
            let proc_dir = format!("/proc/{pid}");
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::path::Path::new(&proc_dir).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if std::path::Path::new(&proc_dir).exists() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Rows of the members table: `name=status`.
const ROWS: &str = "return [...document.querySelectorAll('tr[data-name]')]\
    .map(r => r.dataset.name + '=' + r.querySelector('.status').textContent);";

fn has(v: &Value, row: &str) -> bool {
    v.as_array()
        .is_some_and(|a| a.iter().any(|r| r.as_str() == Some(row)))
}

fn agent(dir: &std::path::Path, i: u8, role: &str, join: Option<&Agent>) -> Agent {
    let net = test_net();
    let ip = format!("127.79.{net}.{i}");
    let gossip: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
    let rpc: SocketAddr = format!("{ip}:7373").parse().unwrap();
    let j = join.map(|a| a.gossip.to_string());
    let mut extra = vec!["--role", role];
    if let Some(j) = &j {
        extra.extend(["--join", j.as_str()]);
    }
    Agent::start(&format!("m{i}"), gossip, rpc, &extra, dir)
}

#[test]
fn the_page_follows_the_cluster_live_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent(dir.path(), 1, "proxy", None);
    let _b = agent(dir.path(), 2, "web", Some(&a));
    let c = agent(dir.path(), 3, "web", Some(&a));
    let browser = Browser::start(dir.path());
    browser.cmd(
        "POST",
        "url",
        Some(json!({"url": format!("http://{}/ui/", a.rpc)})),
    );
    let rows = browser.wait(ROWS, |v| {
        ["m1=alive", "m2=alive", "m3=alive"]
            .iter()
            .all(|r| has(v, r))
    });
    assert!(rows.is_ok(), "{rows:?}");
    // A mark a reload would wipe.
    browser.script("window.__notReloaded = true; return null;");

    // A kill: the row turns failed; a join: a new row. No reload in between.
    c.kill();
    let failed = browser.wait(ROWS, |v| has(v, "m3=failed"));
    assert!(failed.is_ok(), "{failed:?}");
    let _d = agent(dir.path(), 4, "web", Some(&a));
    let joined = browser.wait(ROWS, |v| has(v, "m4=alive"));
    assert!(joined.is_ok(), "{joined:?}");
    assert_eq!(
        browser.script("return window.__notReloaded === true;"),
        json!(true)
    );
    let counts = browser.script("return document.getElementById('counts').textContent;");
    assert!(
        counts.as_str().is_some_and(|t| t.contains("1 failed")),
        "{counts}"
    );
    let events = browser.wait(
        "return document.getElementById('events').textContent;",
        |v| {
            v.as_str()
                .is_some_and(|t| t.contains("failed: m3") && t.contains("join: m4"))
        },
    );
    assert!(events.is_ok(), "{events:?}");

    // The README's screenshot, then a phone's width: nothing wider than the screen.
    let png = browser.cmd("GET", "screenshot", None);
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().expect("base64"))
        .expect("a PNG");
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshot.png");
    std::fs::write(&shot, &png).unwrap();
    browser.cmd(
        "POST",
        "window/rect",
        Some(json!({"width": 390, "height": 844})),
    );
    let fits = browser.wait(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
        |v| v == &json!(true),
    );
    assert!(fits.is_ok(), "wider than a phone's screen");

    // No console error while the agent was there.
    let log = browser.cmd("POST", "se/log", Some(json!({"type": "browser"})));
    let errors: Vec<&Value> = log
        .as_array()
        .map(|l| l.iter().filter(|e| e["level"] == "SEVERE").collect())
        .unwrap_or_default();
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // The agent gone: the page says so.
    a.kill();
    let banner = browser.wait(
        "const b = document.getElementById('banner'); \
         return b.classList.contains('show') ? b.textContent : '';",
        |v| {
            v.as_str()
                .is_some_and(|t| t.contains("Cannot reach the agent"))
        },
    );
    assert!(banner.is_ok(), "{banner:?}");
}
