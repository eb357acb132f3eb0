//! `mars hub` as operators run it: a process on loopback, killed with
//! SIGKILL mid-load and restarted (nothing acknowledged may be lost),
//! stopped with SIGTERM (exit 0), and two hubs finding each other.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MARS: &str = env!("CARGO_BIN_EXE_mars");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mars-hub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `mars hub` process and the address from its start-up line.
struct HubProcess {
    child: Child,
    addr: SocketAddr,
    line: String,
    stderr: Arc<Mutex<String>>,
    /// Reads stderr until the process closes it.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl HubProcess {
    fn start(data_dir: &Path, extra: &[&str]) -> HubProcess {
        let mut child = Command::new(MARS)
            .args(["hub", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mars hub starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no start-up line; stderr:\n{}", stderr.lock().unwrap()));
        // "mars hub did:mesh:… listening on 127.0.0.1:PORT (advertised as …), …"
        let addr = line
            .split(" listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected start-up line: {line}"));
        HubProcess {
            child,
            addr,
            line,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Everything the process wrote to stderr, once it has exited and the
    /// reader has caught up (checking earlier raced the reader thread).
    fn stderr_after_exit(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.stderr.lock().unwrap().clone()
    }

    fn loaded(&self) -> usize {
        self.line
            .split(" descriptors loaded")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no descriptor count in: {}", self.line))
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mars publish` of one capability through `seed`: its id if at least one
/// replica acknowledged it (exit 0), else `None`.
fn publish(seed: SocketAddr, type_path: &str) -> Option<String> {
    let out = Command::new(MARS)
        .args(["publish", "--seed", &seed.to_string(), "--type", type_path])
        .args(["--endpoint", "https://agent.example/v1", "--ttl", "3600"])
        .output()
        .expect("mars publish runs");
    if !out.status.success() {
        return None;
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    // "published <id> as <did>"
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("published "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
}

/// Ids `mars discover` finds at `type_path` through `seed`.
fn discover(seed: SocketAddr, type_path: &str) -> Vec<String> {
    let out = Command::new(MARS)
        .args(["discover", "--seed", &seed.to_string(), "--type", type_path])
        .args(["--json", "--limit", "100"])
        .output()
        .expect("mars discover runs");
    assert!(
        out.status.success(),
        "discover {type_path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn sigkill_mid_load_loses_nothing_acknowledged() {
    let dir = temp_dir("sigkill");
    let mut hub = HubProcess::start(&dir, &["--no-peering"]);
    assert_eq!(hub.loaded(), 0);
    let seed = hub.addr;

    // Four publishers in parallel; the hub dies while they are at work.
    const PER_THREAD: usize = 8;
    let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let attempted = Arc::new(Mutex::new(0usize));
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..4 {
        let acked = Arc::clone(&acked);
        let attempted = Arc::clone(&attempted);
        let killed = Arc::clone(&killed);
        let in_flight = Arc::clone(&in_flight);
        threads.push(std::thread::spawn(move || {
            for i in 0..PER_THREAD {
                // Those started after the kill could not have been acknowledged.
                if killed.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let ty = format!("test/durable/t{t}i{i}");
                *attempted.lock().unwrap() += 1;
                in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if let Some(id) = publish(seed, &ty) {
                    acked.lock().unwrap().push((ty, id));
                }
                in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    // Kill once a third has been acknowledged, while publishes are in
    // flight.
    let mut waited = 0;
    while acked.lock().unwrap().len() < 4 * PER_THREAD / 3
        || in_flight.load(std::sync::atomic::Ordering::SeqCst) == 0
    {
        waited += 1;
        assert!(
            waited < 6000, // two minutes
            "publishing stalled; hub stderr:\n{}",
            hub.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    hub.child.kill().expect("SIGKILL");
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    hub.child.wait().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    // Publishes were in flight at the kill (the loop above waited for
    // one); those whose STOREs the hub had already acknowledged count as
    // acknowledged, the others failed.
    let acked = acked.lock().unwrap().clone();
    let attempted = *attempted.lock().unwrap();
    assert!(acked.len() >= 4 * PER_THREAD / 3 && acked.len() <= attempted);

    // Restart on the same data dir: every acknowledged descriptor is served.
    let hub = HubProcess::start(&dir, &["--no-peering"]);
    assert!(
        hub.loaded() >= acked.len(),
        "{} loaded, {} acknowledged",
        hub.loaded(),
        acked.len()
    );
    for (ty, id) in &acked {
        let found = discover(hub.addr, ty);
        assert!(
            found.contains(id),
            "{ty}: acknowledged {id} is gone after SIGKILL (found {found:?})"
        );
    }
    drop(hub);
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[test]
fn sigterm_stops_cleanly_and_keeps_the_key_and_the_store() {
    let dir = temp_dir("sigterm");
    let mut hub = HubProcess::start(&dir, &["--no-peering"]);
    let did = hub.line.split_whitespace().nth(2).unwrap().to_owned();
    let id = publish(hub.addr, "test/graceful").expect("published");
    let pid = hub.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let code = hub.child.wait().unwrap();
    let stderr = hub.stderr_after_exit();
    assert!(code.success(), "exit {code:?}; stderr:\n{stderr}");
    assert!(stderr.contains("hub stopped"), "stderr:\n{stderr}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("hub.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }

    let hub = HubProcess::start(&dir, &["--no-peering"]);
    assert_eq!(hub.line.split_whitespace().nth(2).unwrap(), did, "same key");
    assert_eq!(hub.loaded(), 1);
    assert_eq!(discover(hub.addr, "test/graceful"), vec![id]);
    drop(hub);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bad_config_is_one_clear_line() {
    let dir = temp_dir("badconfig");
    let path = dir.join("hub.toml");
    std::fs::write(&path, "[storage]\nmap_size = 3\n").unwrap();
    let out = Command::new(MARS)
        .args(["hub", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("map_size"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}
