//! The file tail source through the real `sluice` binary: a writer appends
//! sequence-numbered lines and rotates by rename while the daemon is
//! killed with -9 at ten random moments and restarted each time; the file
//! sink ends up with every sequence number.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{free_port, read_lines, Daemon};

#[test]
fn kill_9_at_ten_moments_during_rotation_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let api = free_port();
    let yaml = format!(
        "data_dir: ./data\ncheckpoint_interval_ms: 100\napi: {{ listen: 127.0.0.1:{api} }}\n\
sources:\n  app:\n    type: file\n    include: [\"{}/*.log*\"]\n\
sinks:\n  out:\n    type: file\n    inputs: [app]\n    path: ./out/lines.txt\n",
        logs.display()
    );
    let total: u64 = 300_000;
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (logs, done) = (logs.clone(), done.clone());
        std::thread::spawn(move || {
            let path = logs.join("app.log");
            let mut f = std::fs::File::create(&path).unwrap();
            let mut rotation = 0;
            for seq in 0..total {
                writeln!(
                    f,
                    "seq={seq} some payload to make the line longer than a few bytes"
                )
                .unwrap();
                if seq % 25_000 == 24_999 {
                    rotation += 1;
                    std::fs::rename(&path, logs.join(format!("app.log.{rotation}"))).unwrap();
                    f = std::fs::File::create(&path).unwrap();
                }
                if seq % 1000 == 999 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut d = Daemon::start(dir.path(), &yaml, api);
    d.wait_healthy();
    let mut rng = 0x9e3779b97f4a7c15u64;
    for _ in 0..10 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(200 + rng % 600));
        d.kill9();
        d = Daemon::start(dir.path(), &yaml, api);
        d.wait_healthy();
    }
    writer.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    let seen = |dir: &std::path::Path| -> HashSet<u64> {
        read_lines(&dir.join("out"), ".txt")
            .iter()
            .filter_map(|l| l.strip_prefix("seq=")?.split(' ').next()?.parse().ok())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen(dir.path()).len() < total as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(60)), Some(0));
    let seen = seen(dir.path());
    let missing: Vec<u64> = (0..total).filter(|s| !seen.contains(s)).take(10).collect();
    assert!(missing.is_empty(), "lost lines, first {missing:?}");
}
