//! The `mars` binary as a person uses it: the README's two terminals.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MARS: &str = env!("CARGO_BIN_EXE_mars");

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn mars(args: &[&str]) -> Output {
    Command::new(MARS)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Kills the node when the test ends, however it ends.
struct Running(Child);
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_terminals_node_publish_discover_ping() {
    let addr = format!("127.0.0.1:{}", free_port());
    let node = Running(
        Command::new(MARS)
            .args(["node", "--listen", &addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Wait until it answers.
    #[allow(clippy::disallowed_methods)]
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = mars(&["ping", &addr]);
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.starts_with("pong from did:mesh:z"), "{text}");
            break;
        }
        #[allow(clippy::disallowed_methods)]
        let late = Instant::now() > deadline;
        assert!(!late, "the node never answered");
        std::thread::sleep(Duration::from_millis(200));
    }

    let dir = std::env::temp_dir().join(format!("mars-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("me.key");
    let _ = std::fs::remove_file(&key);
    let out = mars(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success());
    let did = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(did.starts_with("did:mesh:z"), "{did}");
    let out = mars(&["id", "--key", key.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), did);
    // keygen refuses to overwrite.
    assert!(
        !mars(&["keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );

    let out = mars(&[
        "publish",
        "--seed",
        &addr,
        "--type",
        "compute/inference/text-generation",
        "--endpoint",
        "https://agent.example/v1",
        "--param",
        "model=m1",
        "--key",
        key.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&did), "{text}");
    assert!(
        text.contains("compute/inference/text-generation") && text.contains("1 replica(s)"),
        "{text}"
    );

    let out = mars(&["discover", "--seed", &addr, "--type", "compute"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&did) && text.contains("https://agent.example/v1"),
        "{text}"
    );

    let out = mars(&[
        "discover",
        "--seed",
        &addr,
        "--type",
        "compute/inference",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["provider"], did.as_str());
    assert_eq!(json[0]["endpoint"], "https://agent.example/v1");
    assert_eq!(json[0]["type"], "compute/inference/text-generation");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_are_one_line_with_a_non_zero_exit() {
    let dead = format!("127.0.0.1:{}", free_port());
    let out = mars(&["discover", "--seed", &dead, "--type", "compute"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: no route"), "{err}");

    let out = mars(&["id", "--key", "/nonexistent/key"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: cannot read key file"));

    let out = mars(&[
        "publish",
        "--seed",
        &dead,
        "--type",
        "compute//x",
        "--endpoint",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: --type"));
}
