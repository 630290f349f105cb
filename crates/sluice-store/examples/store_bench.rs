//! Store benchmark: append / read throughput of sluice-store against two baselines from
//! the same run — NATS JetStream (file storage, 127.0.0.1:4222, via async-nats) and the
//! disk's limit (a sequential write of the same bytes + fdatasync). Prints; never asserts.
//!
//! `cargo run --release -p sluice-store --features bench-nats --example store_bench [scale]`
//! (`scale` multiplies record counts, default 1.0). Env `NATS_URL` overrides the server.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_store::{FsyncPolicy, Record, Store, StoreOptions, TopicConfig};

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// CPU seconds (user + system) of this process so far, and peak RSS in MiB.
fn usage() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we pass; no other memory is touched.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        secs(ru.ru_utime) + secs(ru.ru_stime),
        ru.ru_maxrss as f64 / 1024.0,
    )
}

struct Phase {
    t0: Instant,
    cpu0: f64,
}

impl Phase {
    fn start() -> Phase {
        Phase {
            t0: Instant::now(),
            cpu0: usage().0,
        }
    }

    fn report(self, name: &str, records: u64, bytes: u64) -> f64 {
        let secs = self.t0.elapsed().as_secs_f64();
        let (cpu, rss) = usage();
        let rate = records as f64 / secs;
        println!(
            "{name:<44} {:>12.0} rec/s {:>9.1} MiB/s  wall {:>6.2}s  cpu {:>6.2}s  peak-rss {:>6.0} MiB",
            rate,
            bytes as f64 / secs / (1 << 20) as f64,
            secs,
            cpu - self.cpu0,
            rss
        );
        rate
    }
}

fn batch(size: usize, n: usize) -> Vec<Record> {
    let v = Bytes::from(vec![b'x'; size]);
    (0..n).map(|_| Record::new(v.clone())).collect()
}

fn frame_bytes(size: usize) -> u64 {
    36 + size as u64
}

fn sluice_append_read(
    dir: &Path,
    size: usize,
    parts: u32,
    total: u64,
) -> Result<(f64, f64), BoxErr> {
    let store = Store::open(
        dir.join(format!("s{size}-{parts}")),
        StoreOptions::default(),
    )?;
    let topic = store.create_topic("bench", TopicConfig::with_partitions(parts))?;
    let per = total / parts as u64 / 1000;
    let ph = Phase::start();
    std::thread::scope(|s| -> Result<(), BoxErr> {
        let hs: Vec<_> = (0..parts)
            .map(|p| {
                let topic = topic.clone();
                s.spawn(move || -> Result<(), sluice_store::StoreError> {
                    let b = batch(size, 1000);
                    let mut last = None;
                    for _ in 0..per {
                        last = Some(topic.append(p, &b)?);
                    }
                    if let Some(r) = last {
                        r.wait_durable_blocking()?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in hs {
            h.join().map_err(|_| "append thread panicked")??;
        }
        Ok(())
    })?;
    let n = per * 1000 * parts as u64;
    let a = ph.report(
        &format!("sluice append {size} B x{parts} part (fsync 20ms)"),
        n,
        n * size as u64,
    );
    let ph = Phase::start();
    let got = std::thread::scope(|s| {
        let hs: Vec<_> = (0..parts)
            .map(|p| {
                let topic = topic.clone();
                s.spawn(move || -> Result<u64, sluice_store::StoreError> {
                    let (mut off, mut n, mut bytes) = (0u64, 0u64, 0u64);
                    loop {
                        let v = topic.read(p, off, 1000, 4 << 20)?;
                        let Some(l) = v.last() else { break };
                        off = l.offset + 1;
                        n += v.len() as u64;
                        bytes += v.iter().map(|r| r.value.len() as u64).sum::<u64>();
                    }
                    std::hint::black_box(bytes);
                    Ok(n)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| "read thread panicked")
                    .map(|r| r.unwrap_or(0))
            })
            .sum::<Result<u64, _>>()
    })?;
    let r = ph.report(
        &format!("sluice read   {size} B x{parts} part"),
        got,
        got * size as u64,
    );
    if got != n {
        println!("  !! read back {got} of {n} records");
    }
    drop(topic);
    drop(store);
    let _ = std::fs::remove_dir_all(dir.join(format!("s{size}-{parts}")));
    Ok((a, r))
}

fn sluice_fsync_always(
    dir: &Path,
    size: usize,
    batch_len: usize,
    appends: usize,
) -> Result<(), BoxErr> {
    let store = Store::open(
        dir.join(format!("always-{batch_len}")),
        StoreOptions::default(),
    )?;
    let cfg = TopicConfig {
        fsync: FsyncPolicy::Always,
        ..TopicConfig::default()
    };
    let topic = store.create_topic("bench", cfg)?;
    let b = batch(size, batch_len);
    let mut lat = Vec::with_capacity(appends);
    let ph = Phase::start();
    for _ in 0..appends {
        let t = Instant::now();
        topic.append(0, &b)?;
        lat.push(t.elapsed());
    }
    let n = (appends * batch_len) as u64;
    ph.report(
        &format!("sluice fsync=always {size} B, batch {batch_len}"),
        n,
        n * size as u64,
    );
    lat.sort();
    let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "  append latency: p50 {:?}  p99 {:?}  max {:?}",
        pct(0.5),
        pct(0.99),
        lat[lat.len() - 1]
    );
    drop(topic);
    drop(store);
    let _ = std::fs::remove_dir_all(dir.join(format!("always-{batch_len}")));
    Ok(())
}

fn disk_limit(dir: &Path, bytes: u64) -> Result<f64, BoxErr> {
    let path: PathBuf = dir.join("disk-baseline.bin");
    let mut f = File::create(&path)?;
    let chunk = vec![b'y'; 1 << 20];
    let ph = Phase::start();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_data()?;
    let secs = ph.t0.elapsed().as_secs_f64();
    ph.report("disk: sequential write + fdatasync", 0, bytes);
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(bytes as f64 / secs)
}

async fn nats(size: usize, total: u64) -> Result<(f64, f64), BoxErr> {
    use async_nats::jetstream::{self, consumer, stream};
    use futures::StreamExt;
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client);
    let name = "SLUICE_BENCH";
    let _ = js.delete_stream(name).await;
    let st = js
        .create_stream(stream::Config {
            name: name.into(),
            subjects: vec!["sluicebench.>".into()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    let payload = Bytes::from(vec![b'x'; size]);
    let ph = Phase::start();
    let mut acks = VecDeque::new();
    for _ in 0..total {
        acks.push_back(js.publish("sluicebench.x", payload.clone()).await?);
        if acks.len() >= 8192 {
            if let Some(a) = acks.pop_front() {
                a.await?;
            }
        }
    }
    for a in acks {
        a.await?;
    }
    let a = ph.report(
        &format!("jetstream publish {size} B (file, async acks)"),
        total,
        total * size as u64,
    );
    let c = st
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let ph = Phase::start();
    let mut msgs = c.stream().max_messages_per_batch(1000).messages().await?;
    let mut n = 0u64;
    while n < total {
        match tokio::time::timeout(Duration::from_secs(10), msgs.next()).await {
            Ok(Some(m)) => {
                m?;
                n += 1;
            }
            _ => break,
        }
    }
    let r = ph.report(
        &format!("jetstream read {size} B (pull, no ack)"),
        n,
        n * size as u64,
    );
    let _ = js.delete_stream(name).await;
    Ok((a, r))
}

fn main() -> Result<(), BoxErr> {
    let scale: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let dir = std::env::temp_dir().join(format!("sluice-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "sluice-store benchmark (scale {scale}); dir {}",
        dir.display()
    );
    for (size, n, nats_n) in [
        (100usize, 2_000_000f64, 300_000f64),
        (1024, 500_000.0, 150_000.0),
    ] {
        let n = (n * scale) as u64;
        let nats_n = (nats_n * scale) as u64;
        println!("\n== {size} B records, batches of 1000 ==");
        // The shared VM disk's speed varies a lot from run to run, so every measurement is
        // taken three times, interleaved, and the best of each is compared.
        let (mut disk, mut best) = (0f64, 0f64);
        for trial in 0..3 {
            println!("-- trial {}", trial + 1);
            disk = disk.max(disk_limit(&dir, n * frame_bytes(size))?);
            for parts in [1u32, 4] {
                let (a, _) = sluice_append_read(&dir, size, parts, n)?;
                best = best.max(a);
            }
        }
        println!(
            "  best: sluice append {best:.0} rec/s = {:.1} MiB/s on disk; disk limit {:.1} MiB/s",
            best * frame_bytes(size) as f64 / (1 << 20) as f64,
            disk / (1 << 20) as f64
        );
        match rt.block_on(nats(size, nats_n)) {
            Ok((ja, _)) => println!(
                "  ratio: sluice best append / jetstream = {:.1}x; sluice on-disk MiB/s / disk limit = {:.0}%",
                best / ja,
                100.0 * best * frame_bytes(size) as f64 / disk
            ),
            Err(e) => println!("  jetstream baseline failed: {e}"),
        }
    }
    println!("\n== fsync: always, one producer ==");
    sluice_fsync_always(&dir, 100, 1, (2000.0 * scale) as usize)?;
    sluice_fsync_always(&dir, 100, 1000, (300.0 * scale) as usize)?;
    let (_, rss) = usage();
    println!("\npeak RSS {rss:.0} MiB");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
