//! Benchmark of the file tail source (run with
//! `cargo run --release -p sluice-file --example tail_bench`):
//!
//! 1. 1 GiB of 200-byte lines in the page cache → a counting blackhole
//!    sink: MiB/s, CPU seconds per GiB, peak RSS, with `wc -l` on the same
//!    file in the same run as the baseline (median of 3 each).
//!    The same into a file (one write and flush per batch).
//! 2. Append → sink latency p50 / p99 at 10k lines/s.
//! 3. 1,000 files at 100 lines/s each (a writer child process): CPU share
//!    of one core and RSS of this process.
//!
//! `BENCH_DIR` picks the scratch directory (default: a temp dir), and
//! `BENCH_MIB` the size of the big file, `BENCH_ONLY` one phase
//! (`throughput`, `latency`, `many`), `GI` the `glob_interval_ms` of phase 3. Touches only its scratch directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sluice_core::config::{BatchConfig, ComponentOptions};
use sluice_core::process::ProcessStats;
use sluice_core::{
    BuildContext, Control, Pipeline, Resources, Sink, SinkBatch, SinkError, SinkSettings,
    SourceFactory,
};
use sluice_file::FileSourceFactory;

/// Counts records; in latency mode, also the age of each line.
#[derive(Default)]
struct Counter {
    records: AtomicU64,
    bytes: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    measure_latency: bool,
}

struct CountSink(Arc<Counter>);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[async_trait]
impl Sink for CountSink {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        let c = &self.0;
        if c.measure_latency {
            let now = now_us();
            let mut lat = c.latencies_us.lock().unwrap();
            for (_, r) in batch.records() {
                let ts = std::str::from_utf8(&r.value[..r.value.len().min(16)])
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if let Some(ts) = ts {
                    lat.push(now.saturating_sub(ts));
                }
            }
        }
        c.records.fetch_add(batch.events as u64, Ordering::Relaxed);
        let bytes: usize = batch
            .parts
            .iter()
            .flat_map(|b| b.records.iter())
            .map(|r| r.value.len() + 1)
            .sum();
        c.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Writes every record as a line to a file, one write per batch, then
/// flushes (what a file sink does before acknowledging), and counts.
struct FileOut {
    file: std::fs::File,
    buf: Vec<u8>,
    counter: Arc<Counter>,
}

#[async_trait]
impl Sink for FileOut {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        self.buf.clear();
        for (_, r) in batch.records() {
            self.buf.extend_from_slice(&r.value);
            self.buf.push(b'\n');
        }
        self.file
            .write_all(&self.buf)
            .map_err(SinkError::retryable)?;
        self.file.flush().map_err(SinkError::retryable)?;
        self.counter
            .records
            .fetch_add(batch.events as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn pipeline(data: &Path, opts: serde_json::Value, counter: Arc<Counter>) -> Pipeline {
    pipeline_into(data, opts, Box::new(CountSink(counter)))
}

fn pipeline_into(data: &Path, opts: serde_json::Value, sink: Box<dyn Sink>) -> Pipeline {
    let resources = Resources::default();
    let cx = BuildContext {
        name: "bench",
        data_dir: data,
        resources: &resources,
    };
    let source = FileSourceFactory
        .build(&cx, &ComponentOptions::from_json(opts))
        .expect("options");
    let mut p = Pipeline::new(data);
    p.add_source("bench", "file", source, Default::default());
    p.add_sink(
        "out",
        "out",
        sink,
        SinkSettings {
            inputs: vec!["bench".into()],
            batch: BatchConfig {
                max_events: 10_000,
                max_bytes: 8 << 20,
                timeout_ms: 0,
            },
            ..Default::default()
        },
    );
    p
}

/// Resets VmHWM so that each phase reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", b"5");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn make_big_file(path: &Path, mib: u64) -> u64 {
    let mut f = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(path).unwrap());
    let lines = (mib << 20) / 200;
    let pad = "x".repeat(200);
    for i in 0..lines {
        let head = format!("{i:012} ");
        f.write_all(head.as_bytes()).unwrap();
        f.write_all(&pad.as_bytes()[..199 - head.len()]).unwrap();
        f.write_all(b"\n").unwrap();
    }
    f.flush().unwrap();
    lines
}

fn wc_l(path: &Path) -> f64 {
    let t = Instant::now();
    let out = std::process::Command::new("wc")
        .arg("-l")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    t.elapsed().as_secs_f64()
}

async fn throughput(dir: &Path, mib: u64) {
    let big = dir.join("big/app.log");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    let lines = make_big_file(&big, mib);
    let size = std::fs::metadata(&big).unwrap().len();
    let gib = size as f64 / (1u64 << 30) as f64;
    wc_l(&big); // warm the page cache
    let mut wc = Vec::new();
    let (mut secs, mut cpu, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..3 {
        wc.push(wc_l(&big));
        let data = dir.join(format!("data-tp-{run}"));
        let counter = Arc::new(Counter::default());
        let p = pipeline(
            &data,
            serde_json::json!({"include": [big.display().to_string()]}),
            counter.clone(),
        );
        reset_peak_rss();
        let before = ProcessStats::read();
        let t = Instant::now();
        let control = Control::default();
        let c2 = control.clone();
        let task = tokio::spawn(async move { p.run(c2).await });
        while counter.records.load(Ordering::Relaxed) < lines {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let elapsed = t.elapsed().as_secs_f64();
        let after = ProcessStats::read();
        control.shutdown.cancel();
        task.await.unwrap().unwrap();
        secs.push(elapsed);
        cpu.push((after.cpu_seconds - before.cpu_seconds) / gib);
        rss.push(after.peak_rss_bytes as f64 / (1 << 20) as f64);
        let _ = std::fs::remove_dir_all(&data);
    }
    let s = median(secs);
    let w = median(wc);
    println!(
        "== 1 file of {:.2} GiB, 200-byte lines, page cache → blackhole (median of 3)",
        gib
    );
    println!(
        "sluice file source: {:.3} s, {:.0} MiB/s, {:.2} CPU s/GiB, peak RSS {:.1} MiB",
        s,
        size as f64 / (1 << 20) as f64 / s,
        median(cpu),
        median(rss)
    );
    println!(
        "baseline wc -l:     {:.3} s, {:.0} MiB/s",
        w,
        size as f64 / (1 << 20) as f64 / w
    );
    let mut file_secs = Vec::new();
    for run in 0..3 {
        let data = dir.join(format!("data-fo-{run}"));
        let out = dir.join("out.log");
        let counter = Arc::new(Counter::default());
        let sink = FileOut {
            file: std::fs::File::create(&out).unwrap(),
            buf: Vec::new(),
            counter: counter.clone(),
        };
        let opts = serde_json::json!({"include": [big.display().to_string()]});
        let p = pipeline_into(&data, opts, Box::new(sink));
        let t = Instant::now();
        let control = Control::default();
        let c2 = control.clone();
        let task = tokio::spawn(async move { p.run(c2).await });
        while counter.records.load(Ordering::Relaxed) < lines {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        file_secs.push(t.elapsed().as_secs_f64());
        control.shutdown.cancel();
        task.await.unwrap().unwrap();
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_dir_all(&data);
    }
    let f = median(file_secs);
    println!(
        "sluice → file (one write per batch): {:.3} s, {:.0} MiB/s",
        f,
        size as f64 / (1 << 20) as f64 / f
    );
    let _ = std::fs::remove_file(&big);
}

async fn latency(dir: &Path) {
    let d = dir.join("lat");
    std::fs::create_dir_all(&d).unwrap();
    let log = d.join("app.log");
    std::fs::write(&log, b"").unwrap();
    let counter = Arc::new(Counter {
        measure_latency: true,
        ..Default::default()
    });
    let p = pipeline(
        &dir.join("data-lat"),
        serde_json::json!({"include": [log.display().to_string()]}),
        counter.clone(),
    );
    let control = Control::default();
    let c2 = control.clone();
    let task = tokio::spawn(async move { p.run(c2).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 10k lines/s for 5 s, one write per millisecond of 10 lines (each
    // stamped when written), plus idle pauses to catch reader back-off.
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let start = Instant::now();
        let mut written = 0u64;
        for ms in 0..5000u64 {
            if ms == 2000 {
                std::thread::sleep(Duration::from_secs(2));
            }
            let mut buf = String::new();
            for _ in 0..10 {
                buf.push_str(&format!("{} latency probe line\n", now_us()));
            }
            f.write_all(buf.as_bytes()).unwrap();
            written += 10;
            let due = start
                + Duration::from_millis(ms + 1)
                + if ms >= 2000 {
                    Duration::from_secs(2)
                } else {
                    Duration::ZERO
                };
            if let Some(w) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
        }
        written
    });
    let written = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    while counter.records.load(Ordering::Relaxed) < written {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    control.shutdown.cancel();
    task.await.unwrap().unwrap();
    let mut lat = std::mem::take(&mut *counter.latencies_us.lock().unwrap());
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!(
        "== append → sink latency at 10k lines/s, {} lines (2 s idle pause midway)",
        lat.len()
    );
    println!(
        "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
}

/// Child process: appends 10 lines every 100 ms to each of `n` files.
fn many_writer(dir: &Path, n: usize, secs: u64) {
    let mut files: Vec<_> = (0..n)
        .map(|i| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("f{i}.log")))
                .unwrap()
        })
        .collect();
    let start = Instant::now();
    let mut tick = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        // Spread the files over the 100 ms: one slice every 10 ms.
        let slice = (tick % 10) as usize;
        for (i, f) in files
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| i % 10 == slice)
        {
            let mut buf = String::new();
            for _ in 0..10 {
                buf.push_str(&format!(
                    "file {i} {} some payload for a log line of moderate size\n",
                    now_us()
                ));
            }
            f.write_all(buf.as_bytes()).unwrap();
        }
        tick += 1;
        let due = start + Duration::from_millis(tick * 10);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
    }
}

async fn many_files(dir: &Path) {
    let d = dir.join("many");
    std::fs::create_dir_all(&d).unwrap();
    let secs = 10;
    let counter = Arc::new(Counter::default());
    let glob = format!("{}/*.log", d.display());
    let gi: u64 = std::env::var("GI")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let p = pipeline(
        &dir.join("data-many"),
        serde_json::json!({"include": [glob], "glob_interval_ms": gi}),
        counter.clone(),
    );
    let control = Control::default();
    let c2 = control.clone();
    reset_peak_rss();
    let task = tokio::spawn(async move { p.run(c2).await });
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--many-writer")
        .arg(&d)
        .arg(secs.to_string())
        .spawn()
        .unwrap();
    // Measure the steady state: skip the first 2 s (files appear).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (before, t, r0) = (
        ProcessStats::read(),
        Instant::now(),
        counter.records.load(Ordering::Relaxed),
    );
    tokio::time::sleep(Duration::from_secs(secs - 3)).await;
    let (after, wall, r1) = (
        ProcessStats::read(),
        t.elapsed().as_secs_f64(),
        counter.records.load(Ordering::Relaxed),
    );
    child.wait().unwrap();
    control.shutdown.cancel();
    task.await.unwrap().unwrap();
    println!("== 1,000 files at 100 lines/s each (writer in a child process)");
    println!(
        "{:.0} lines/s delivered, CPU {:.1} % of one core, RSS {:.1} MiB (peak {:.1} MiB)",
        (r1 - r0) as f64 / wall,
        100.0 * (after.cpu_seconds - before.cpu_seconds) / wall,
        after.rss_bytes as f64 / (1 << 20) as f64,
        after.peak_rss_bytes as f64 / (1 << 20) as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--many-writer") {
        many_writer(Path::new(&args[2]), 1000, args[3].parse().unwrap());
        return;
    }
    let scratch = std::env::var("BENCH_DIR").map(PathBuf::from).ok();
    let tmp = tempfile::tempdir_in(scratch.unwrap_or_else(std::env::temp_dir)).unwrap();
    let mib: u64 = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    rt.block_on(async {
        if only.is_empty() || only == "throughput" {
            throughput(tmp.path(), mib).await;
        }
        if only.is_empty() || only == "latency" {
            latency(tmp.path()).await;
        }
        if only.is_empty() || only == "many" {
            many_files(tmp.path()).await;
        }
    });
}
