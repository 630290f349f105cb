//! Benchmark of the message-queue API (`cargo bench --bench api`): HTTP
//! produce (batches of 1,000 × 100 B over 4 connections) and pull consume in
//! records/s, and produce → consume latency p50/p99 at 10k records/s, against
//! a `sluice run` daemon with only `data_dir` and `api`. Baseline in the same
//! run: NATS JetStream on 127.0.0.1:4222 through async-nats, same sizes.
//! Prints CPU seconds and peak RSS of each server. Never asserts times.
//! Touches a temporary directory, the daemon process and the NATS server.

/// The allocator the `sluice` binary uses, so figures match the daemon.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use sluice::client::{Client, PullOptions};

const RECORDS: usize = 1_000_000;
const BATCH: usize = 1_000;
const CONNS: usize = 4;
const VALUE: usize = 100;
const LAT_RATE: u64 = 10_000;
const LAT_SECS: u64 = 5;

/// CPU seconds (user + system) and peak RSS in MiB of a process.
fn usage(pid: u32) -> (f64, f64) {
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = after.split_whitespace().collect();
    let cpu = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu / tick, hwm / 1024.0)
}

fn pid_of(comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let c = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (c.trim() == comm).then_some(pid)
    })
}

fn start_daemon(dir: &Path, port: u16) -> Child {
    let yaml = format!("data_dir: ./data\napi:\n  listen: 127.0.0.1:{port}\n");
    std::fs::write(dir.join("p.yaml"), yaml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "-c", "p.yaml", "--log-level", "warn"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sluice")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p) as usize]
}

fn now_us(t0: Instant) -> u64 {
    t0.elapsed().as_micros() as u64
}

fn body(batch: usize, key_of: impl Fn(usize) -> String) -> Vec<u8> {
    let value = "x".repeat(VALUE);
    let mut out = Vec::with_capacity(batch * (VALUE + 40));
    for i in 0..batch {
        serde_json::to_writer(&mut out, &json!({"key": key_of(i), "value": value})).unwrap();
        out.push(b'\n');
    }
    out
}

/// Produce then pull-consume `RECORDS` on a new topic with the given fsync policy.
async fn sluice_throughput(base: &str, topic: &'static str, fsync: &str) -> (f64, f64) {
    let c = Client::new(base, None).unwrap();
    c.create_topic(topic, &json!({"partitions": CONNS, "fsync": fsync}))
        .await
        .unwrap();
    // Produce: 4 connections, batches of 1,000, each answered once durable.
    let body = Bytes::from(body(BATCH, |i| i.to_string()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let (c, body) = (Client::new(base, None).unwrap(), body.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..RECORDS / BATCH / CONNS {
                c.produce_raw(topic, body.to_vec()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let produce = RECORDS as f64 / start.elapsed().as_secs_f64();
    // Pull: 4 members of one stream group, 10,000 per pull, commits in the background.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for m in 0..CONNS {
        let c = Client::new(base, None).unwrap();
        tasks.push(tokio::spawn(async move {
            let member = format!("m{m}");
            let o = PullOptions {
                max: 10_000,
                wait_ms: 200,
                member: Some(member.clone()),
                ..Default::default()
            };
            let (mut n, mut empty) = (0usize, 0);
            let mut commits = tokio::task::JoinSet::new();
            while empty < 3 {
                let p = c.pull(topic, "readers", &o).await.unwrap();
                if p.records.is_empty() {
                    empty += 1;
                    continue;
                }
                n += p.records.len();
                let offs: Vec<(u32, u64)> = p
                    .commit
                    .iter()
                    .map(|v| {
                        (
                            v["partition"].as_u64().unwrap() as u32,
                            v["offset"].as_u64().unwrap(),
                        )
                    })
                    .collect();
                let (c, member) = (c.clone(), member.clone());
                commits
                    .spawn(async move { c.commit(topic, "readers", Some(&member), &offs).await });
                while commits.try_join_next().is_some() {}
            }
            while commits.join_next().await.is_some() {}
            n
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    // The last three empty polls of each member wait 200 ms: not consumption time.
    let consume = n as f64 / (start.elapsed().as_secs_f64() - 0.6).max(0.001);
    assert_eq!(n, RECORDS, "consumed everything");
    (produce, consume)
}

/// Throughput (group commit 20 ms, then fsync never) and latency at 10k/s.
async fn sluice_bench(base: &str, t0: Instant) -> [f64; 8] {
    let (p20, c20) = sluice_throughput(base, "bench-20ms", "20ms").await;
    let (pn, cn) = sluice_throughput(base, "bench-never", "never").await;
    let c = Client::new(base, None).unwrap();
    let mut lat = Vec::new();
    for (topic, fsync) in [("lat-never", "never"), ("lat-20ms", "20ms")] {
        c.create_topic(topic, &json!({"partitions": 1, "fsync": fsync}))
            .await
            .unwrap();
        lat.push(sluice_latency(base, topic, t0).await);
    }
    [pn, cn, lat[0].0, lat[0].1, p20, c20, lat[1].0, lat[1].1]
}

async fn sluice_latency(base: &str, topic: &'static str, t0: Instant) -> (f64, f64) {
    let c = Client::new(base, None).unwrap();
    let total = (LAT_RATE * LAT_SECS) as usize;
    let reader = {
        let c = c.clone();
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total);
            let o = PullOptions {
                max: 10_000,
                wait_ms: 1000,
                ..Default::default()
            };
            while lat.len() < total {
                let p = c.pull(topic, "lat", &o).await.unwrap();
                let now = now_us(t0);
                for r in &p.records {
                    let sent: u64 = r.key.as_deref().and_then(|k| k.parse().ok()).unwrap_or(now);
                    lat.push((now.saturating_sub(sent)) as f64 / 1000.0);
                }
                let offs: Vec<(u32, u64)> = p
                    .commit
                    .iter()
                    .map(|v| {
                        (
                            v["partition"].as_u64().unwrap() as u32,
                            v["offset"].as_u64().unwrap(),
                        )
                    })
                    .collect();
                if !offs.is_empty() {
                    let c = c.clone();
                    tokio::spawn(async move { c.commit(topic, "lat", None, &offs).await });
                }
            }
            lat
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 10 records every millisecond.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..total / 10 {
        tick.tick().await;
        let sent = now_us(t0);
        let b = body(10, |_| sent.to_string());
        let c = c.clone();
        sends.spawn(async move { c.produce_raw(topic, b).await.map(|_| ()) });
        while let Some(r) = sends.try_join_next() {
            r.unwrap().unwrap();
        }
    }
    while let Some(r) = sends.join_next().await {
        r.unwrap().unwrap();
    }
    let mut lat = reader.await.unwrap();
    (pct(&mut lat, 0.5), pct(&mut lat, 0.99))
}

async fn nats_bench(t0: Instant) -> Result<(f64, f64, f64, f64), async_nats::Error> {
    use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy, stream};
    let payload = Bytes::from("x".repeat(VALUE));
    let js = jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
    for s in ["SLUICE_BENCH", "SLUICE_LAT"] {
        let _ = js.delete_stream(s).await;
    }
    let st = js
        .create_stream(stream::Config {
            name: "SLUICE_BENCH".into(),
            subjects: vec!["sluicebench.>".into()],
            ..Default::default()
        })
        .await?;
    // Publish: 4 connections, 1,000 publishes in flight per batch, awaited together.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CONNS {
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let js = jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
            for _ in 0..RECORDS / BATCH / CONNS {
                let mut acks = Vec::with_capacity(BATCH);
                for _ in 0..BATCH {
                    acks.push(std::future::IntoFuture::into_future(
                        js.publish(format!("sluicebench.{w}"), payload.clone())
                            .await?,
                    ));
                }
                for a in futures::future::join_all(acks).await {
                    a?;
                }
            }
            Ok::<_, async_nats::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let publish = RECORDS as f64 / start.elapsed().as_secs_f64();
    // Pull: one durable consumer, fetches of 10,000 over 4 connections, ack all per fetch.
    let cfg = pull::Config {
        durable_name: Some("readers".into()),
        ack_policy: AckPolicy::All,
        max_ack_pending: -1,
        ..Default::default()
    };
    st.create_consumer(cfg).await?;
    let start = Instant::now();
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let total = total.clone();
        tasks.push(tokio::spawn(async move {
            let js = jetstream::new(async_nats::connect("127.0.0.1:4222").await?);
            let consumer: jetstream::consumer::PullConsumer = js
                .get_stream("SLUICE_BENCH")
                .await?
                .get_consumer("readers")
                .await?;
            while total.load(std::sync::atomic::Ordering::SeqCst) < RECORDS {
                let mut batch = consumer
                    .fetch()
                    .max_messages(10_000)
                    .expires(Duration::from_millis(200))
                    .messages()
                    .await?;
                let mut last = None;
                let mut n = 0;
                while let Some(m) = batch.next().await {
                    last = Some(m?);
                    n += 1;
                }
                total.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                if let Some(m) = last {
                    m.ack().await?;
                }
            }
            Ok::<_, async_nats::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let consume = RECORDS as f64 / start.elapsed().as_secs_f64();
    // Latency at 10k/s: 10 publishes per ms; a pull consumer's message stream.
    let lst = js
        .create_stream(stream::Config {
            name: "SLUICE_LAT".into(),
            subjects: vec!["sluicelat".into()],
            ..Default::default()
        })
        .await?;
    let consumer = lst
        .create_consumer(pull::Config {
            durable_name: Some("lat".into()),
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await?;
    let n = (LAT_RATE * LAT_SECS) as usize;
    let reader = tokio::spawn(async move {
        let mut msgs = consumer.messages().await?;
        let mut lat = Vec::with_capacity(n);
        while lat.len() < n {
            let Some(m) = msgs.next().await else { break };
            let m = m?;
            let sent: u64 = std::str::from_utf8(&m.payload[..20])
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            lat.push(now_us(t0).saturating_sub(sent) as f64 / 1000.0);
        }
        Ok::<_, async_nats::Error>(lat)
    });
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut acks = tokio::task::JoinSet::new();
    for _ in 0..n / 10 {
        tick.tick().await;
        let sent = now_us(t0);
        let mut p = format!("{sent:>20}").into_bytes();
        p.resize(VALUE, b'x');
        let p = Bytes::from(p);
        for _ in 0..10 {
            let f = js.publish("sluicelat", p.clone()).await?;
            acks.spawn(std::future::IntoFuture::into_future(f));
        }
        while acks.try_join_next().is_some() {}
    }
    while acks.join_next().await.is_some() {}
    let mut lat = reader.await??;
    for s in ["SLUICE_BENCH", "SLUICE_LAT"] {
        let _ = js.delete_stream(s).await;
    }
    Ok((publish, consume, pct(&mut lat, 0.5), pct(&mut lat, 0.99)))
}

fn main() {
    sluice::allocator::tune();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut daemon = start_daemon(dir.path(), port);
    let base = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    rt.block_on(async {
        let c = Client::new(&base, None).unwrap();
        for _ in 0..600 {
            if c.list_topics().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    println!("sluice API benchmark: {RECORDS} records of {VALUE} B, batches of {BATCH}, {CONNS} connections");
    let me = std::process::id();
    let (c0, _) = usage(me);
    let [s_prod, s_cons, ln50, ln99, p20, c20, l50, l99] = rt.block_on(sluice_bench(&base, t0));
    let (s_cpu, s_rss) = usage(daemon.id());
    let (c1, _) = usage(me);
    let _ = daemon.kill();
    let _ = daemon.wait();
    let nats_pid = pid_of("nats-server");
    let (n0, _) = nats_pid.map_or((0.0, 0.0), usage);
    let nats = rt.block_on(nats_bench(t0));
    let (n1, n_rss) = nats_pid.map_or((0.0, 0.0), usage);
    let (c2, c_rss) = usage(me);
    println!();
    println!("{:<36} {:>14} {:>14}", "", "sluice HTTP", "NATS JetStream");
    let (np, nc, n50, n99) = match &nats {
        Ok(v) => *v,
        Err(e) => {
            println!("JetStream baseline failed: {e}");
            (f64::NAN, f64::NAN, f64::NAN, f64::NAN)
        }
    };
    println!(
        "{:<36} {:>14.0} {:>14.0}",
        "produce records/s (fsync never)", s_prod, np
    );
    println!(
        "{:<36} {:>14.0} {:>14}",
        "produce records/s (fsync 20ms)", p20, "-"
    );
    println!(
        "{:<36} {:>14.0} {:>14}",
        "pull consume records/s (fsync 20ms)", c20, "-"
    );
    println!(
        "{:<36} {:>14.0} {:>14.0}",
        "pull consume records/s (fsync never)", s_cons, nc
    );
    println!(
        "{:<36} {:>14.2} {:>14.2}",
        "latency p50 ms @10k/s (fsync never)", ln50, n50
    );
    println!(
        "{:<36} {:>14.2} {:>14.2}",
        "latency p99 ms @10k/s (fsync never)", ln99, n99
    );
    println!(
        "{:<36} {:>14.2} {:>14}",
        "latency p50 ms @10k/s (fsync 20ms)", l50, "-"
    );
    println!(
        "{:<36} {:>14.2} {:>14}",
        "latency p99 ms @10k/s (fsync 20ms)", l99, "-"
    );
    println!(
        "{:<36} {:>14.1} {:>14.1}",
        "server CPU s (whole run)",
        s_cpu,
        n1 - n0
    );
    println!(
        "{:<36} {:>14.0} {:>14.0}",
        "server peak RSS MiB", s_rss, n_rss
    );
    println!(
        "{:<36} {:>14.1} {:>14.1}",
        "bench client CPU s",
        c1 - c0,
        c2 - c1
    );
    println!("bench client peak RSS MiB: {c_rss:.0}; NATS RSS is the server's lifetime peak");
    println!("JetStream acknowledges before fsync (sync_interval 2 min by default): compare it with `fsync never`");
    println!("goals: produce >= 300k/s, consume >= 500k/s, p99 <= 5 ms at 10k/s");
}
