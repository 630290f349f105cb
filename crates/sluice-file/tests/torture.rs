//! Torture: a writer appends sequence-numbered lines at 20k+ lines/s for
//! 500k lines, rotating every 50k lines, while the source follows through
//! a real pipeline. Rename rotation: every number exactly once.
//! Copytruncate: every number at least once (the rotated copies are
//! followed too; see the README for the race copytruncate has by nature).
//! The two take turns so each writer gets the machine.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TOTAL: usize = 500_000;
const ROTATE_EVERY: usize = 50_000;
const CHUNK: usize = 250;

#[derive(Clone, Copy)]
enum Rotation {
    Rename,
    CopyTruncate,
}

/// Writes `TOTAL` lines at about 40k lines/s; returns the lines per second.
fn writer(log: PathBuf, rotation: Rotation) -> f64 {
    let dir = log.parent().unwrap().to_path_buf();
    let start = Instant::now();
    let mut f = std::fs::File::create(&log).unwrap();
    let mut rotated = 0;
    let mut i = 0;
    while i < TOTAL {
        let mut buf = String::with_capacity(CHUNK * 24);
        for n in i..i + CHUNK {
            buf.push_str(&format!("s-{n}\n"));
        }
        f.write_all(buf.as_bytes()).unwrap();
        i += CHUNK;
        if i % ROTATE_EVERY == 0 && i < TOTAL {
            rotated += 1;
            let to = dir.join(format!("app.log.{rotated}"));
            match rotation {
                Rotation::Rename => {
                    std::fs::rename(&log, &to).unwrap();
                    f = std::fs::File::create(&log).unwrap();
                }
                Rotation::CopyTruncate => {
                    std::fs::copy(&log, &to).unwrap();
                    f.set_len(0).unwrap();
                    f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
                }
            }
        }
        // Pace at ~40k lines/s: one chunk every 6 ms on average.
        let due = start + Duration::from_micros((i as u64) * 25);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    TOTAL as f64 / start.elapsed().as_secs_f64()
}

async fn torture(rotation: Rotation, include: impl Fn(&Path) -> String) -> (Collected, f64) {
    let _turn = TURN.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, b"").unwrap();
    let mut run = start(&dir.path().join("data"), opts(&include(&log)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rate = tokio::task::spawn_blocking({
        let log = log.clone();
        move || writer(log, rotation)
    })
    .await
    .unwrap();
    // Checking for every number is costly: look twice a second.
    let end = Instant::now() + Duration::from_secs(60);
    while !(run.got.len() >= TOTAL && has_all(&run.got, "s", 0..TOTAL)) {
        assert!(
            Instant::now() < end,
            "received {} of {TOTAL}",
            run.got.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    run.stop().await.unwrap();
    (run.got.clone(), rate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_under_load_delivers_every_line_exactly_once() {
    let (got, rate) = torture(Rotation::Rename, |log| log.display().to_string()).await;
    eprintln!("writer: {rate:.0} lines/s");
    assert!(rate >= 20_000.0, "writer too slow: {rate:.0} lines/s");
    assert_exactly_once(&got, "s", 0..TOTAL);
    assert_eq!(got.len(), TOTAL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_under_load_delivers_every_line_at_least_once() {
    let (got, rate) = torture(Rotation::CopyTruncate, |log| format!("{}*", log.display())).await;
    eprintln!("writer: {rate:.0} lines/s");
    assert!(rate >= 20_000.0, "writer too slow: {rate:.0} lines/s");
    assert_at_least_once(&got, "s", 0..TOTAL);
}
