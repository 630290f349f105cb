//! kill -9 of a pipeline process mid-stream (the `kafka_crash_helper`
//! example, standing in for the `sluice` binary until it registers the
//! Kafka components): numbers → kafka loses nothing; kafka → file loses
//! nothing and duplicates only what was not yet committed.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::kafka::read_all;
use support::pipeline::{assert_complete, tally};
use support::tansu::Tansu;

fn helper() -> PathBuf {
    // `cargo test --test kill9` alone does not build examples: build it.
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "sluice-kafka",
            "--example",
            "kafka_crash_helper",
        ])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cannot build the kafka_crash_helper example"
    );
    // target/<profile>/deps/<test> → target/<profile>/examples/<helper>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join("examples").join("kafka_crash_helper");
    assert!(
        p.exists(),
        "{} is missing: `cargo test` builds the examples",
        p.display()
    );
    p
}

/// The helper process, killed when dropped (also when a test fails).
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        kill9(self);
    }
}

fn spawn(args: &[&str]) -> Helper {
    Helper(
        Command::new(helper())
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn kill9(child: &mut Helper) {
    unsafe { libc::kill(child.0.id() as i32, libc::SIGKILL) };
    let _ = child.0.wait();
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn checkpoint(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("checkpoints/in.json"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn kill9_of_a_numbers_to_kafka_pipeline_loses_nothing() {
    let broker = Tansu::start();
    broker.create_topic("k9", 2);
    let data = tempfile::tempdir().unwrap();
    let count = 60_000u64;
    let args = [
        "produce",
        &broker.bootstrap(),
        "k9",
        data.path().to_str().unwrap(),
        &count.to_string(),
    ]
    .map(|s| s.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = spawn(&args);
    wait_until("progress", Duration::from_secs(120), || {
        checkpoint(data.path()) >= 15_000
    });
    kill9(&mut child);
    let at_kill = checkpoint(data.path());
    let mut child = spawn(&args);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "the restarted pipeline failed: {status}");
    assert_eq!(checkpoint(data.path()), count);
    let got = read_all(
        &broker.bootstrap(),
        "k9",
        count as usize * 2,
        Duration::from_secs(10),
    );
    let t = tally("k-", got.iter().map(|g| &g.value[..]));
    let dups = assert_complete(&t, count);
    eprintln!(
        "kill -9 at checkpoint {at_kill}: {} read back, {dups} duplicates",
        got.len()
    );
    // Only what was between the checkpoint and the broker is sent again.
    assert!(
        dups <= 10_000,
        "{dups} duplicates exceed the in-flight window"
    );
}
