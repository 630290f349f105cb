//! Kafka benchmark: 1M records of 200 B through the sluice Kafka sink into
//! tansu (sqlite engine) against a bare rdkafka producer loop with the same
//! settings, then kafka → blackhole through the sluice source against a
//! bare rdkafka consumer loop. Prints records/s, CPU seconds of this
//! process and of the broker, and peak RSS. Never asserts.
//!
//! `cargo run --release -p sluice-kafka --example kafka_bench -- [records] [sink batch] [broker]`
//! where `broker` is `tansu` (the default), `mock` (librdkafka's in-process
//! mock cluster: client overhead only) or `host:port` of a running cluster
//! with topics `bench-bare` and `bench-sluice`.

#[allow(dead_code)]
#[path = "../tests/support/tansu.rs"]
mod tansu;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use sluice_core::config::{BatchConfig, ComponentOptions, QueueConfig};
use sluice_core::{
    AckTracker, BuildContext, Control, Pipeline, Record, Sink, SinkBatch, SinkError, SinkFactory,
    SinkSettings, Source, SourceContext, SourceFactory,
};

const SIZE: usize = 200;

fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn peak_rss_mib() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}

/// CPU seconds of another process (the broker).
fn proc_cpu(pid: Option<u32>) -> f64 {
    let Some(stat) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
    else {
        return 0.0;
    };
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let get = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / ticks
}

fn write_payload(n: u64, out: &mut impl std::io::Write) {
    let _ = write!(out, "{n:012} ");
    let _ = out.write_all(&[b'x'; SIZE - 13]);
}

struct Figures {
    name: &'static str,
    records: u64,
    secs: f64,
    cpu: f64,
    broker_cpu: f64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.records as f64 / self.secs
    }
    fn print(&self) {
        println!(
            "{:<28} {:>9} records in {:>6.2}s = {:>9.0} records/s, {:>6.2} CPU s here, {:>6.2} CPU s broker",
            self.name, self.records, self.secs, self.rate(), self.cpu, self.broker_cpu
        );
    }
}

fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "0")
        .set("linger.ms", "5")
        .set("compression.codec", "none")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    c
}

fn bare_producer(bootstrap: &str, topic: &str, count: u64, pid: Option<u32>) -> Figures {
    let producer: BaseProducer = producer_config(bootstrap).create().unwrap();
    let (t0, c0, b0) = (Instant::now(), cpu_seconds(), proc_cpu(pid));
    let mut buf = Vec::with_capacity(SIZE);
    for n in 0..count {
        buf.clear();
        write_payload(n, &mut buf);
        loop {
            match producer.send(BaseRecord::<(), [u8]>::to(topic).payload(&buf[..])) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(600)).unwrap();
    Figures {
        name: "bare rdkafka producer",
        records: count,
        secs: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
        broker_cpu: proc_cpu(pid) - b0,
    }
}

/// Emits `count` records of 200 B in batches of 1000, one buffer per batch.
struct BenchSource {
    count: u64,
    done: Arc<AtomicU64>,
}

#[async_trait]
impl Source for BenchSource {
    async fn run(self: Box<Self>, cx: SourceContext) -> anyhow::Result<()> {
        let mut tracker = AckTracker::new();
        let mut n = 0;
        while n < self.count {
            let end = (n + 1000).min(self.count);
            let mut buf = BytesMut::with_capacity(SIZE * (end - n) as usize);
            for i in n..end {
                let mut w = (&mut buf).writer();
                write_payload(i, &mut w);
            }
            let buf = buf.freeze();
            let records = (0..(end - n) as usize)
                .map(|i| Record::from_value(buf.slice(i * SIZE..(i + 1) * SIZE)))
                .collect();
            cx.output.send(records, tracker.track(end)).await?;
            n = end;
            if let Some(p) = tracker.poll() {
                self.done.store(p, Ordering::Release);
            }
        }
        while let Some(p) = tracker.next().await {
            self.done.store(p, Ordering::Release);
        }
        Ok(())
    }
}

/// Counts and acknowledges.
struct Blackhole(Arc<AtomicU64>);

#[async_trait]
impl Sink for Blackhole {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        self.0.fetch_add(batch.events as u64, Ordering::Release);
        Ok(())
    }
}

fn build_cx<'a>(
    dir: &'a std::path::Path,
    resources: &'a sluice_core::Resources,
) -> BuildContext<'a> {
    BuildContext {
        name: "bench",
        data_dir: dir,
        resources,
    }
}

fn settings(input: &str, max_events: usize) -> SinkSettings {
    SinkSettings {
        inputs: vec![input.into()],
        batch: BatchConfig {
            max_events,
            max_bytes: 64 << 20,
            timeout_ms: 5,
        },
        buffer: QueueConfig {
            max_events: max_events * 2,
            max_bytes: 256 << 20,
            ..QueueConfig::default()
        },
        ..SinkSettings::default()
    }
}

async fn run_pipeline(
    source: Box<dyn Source>,
    sink: Box<dyn Sink>,
    max_events: usize,
    done: impl Fn() -> bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pipeline::new(dir.path());
    let queue = QueueConfig {
        max_events: max_events * 2,
        max_bytes: 256 << 20,
        ..QueueConfig::default()
    };
    p.add_source("src", "bench", source, queue);
    p.add_sink("out", "bench", sink, settings("src", max_events));
    let control = Control::default();
    let task = tokio::spawn(p.run(control.clone()));
    while !done() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    control.shutdown.cancel();
    task.await.unwrap().unwrap();
}

async fn sluice_sink(
    bootstrap: &str,
    topic: &str,
    count: u64,
    batch: usize,
    pid: Option<u32>,
) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let resources = Default::default();
    let sink = sluice_kafka::KafkaSinkFactory
        .build(
            &build_cx(dir.path(), &resources),
            &ComponentOptions::from_json(serde_json::json!({
                "brokers": [bootstrap], "topic": topic, "key": "none", "healthcheck": false
            })),
        )
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let source = BenchSource {
        count,
        done: done.clone(),
    };
    let (t0, c0, b0) = (Instant::now(), cpu_seconds(), proc_cpu(pid));
    run_pipeline(Box::new(source), sink, batch, || {
        done.load(Ordering::Acquire) == count
    })
    .await;
    Figures {
        name: "sluice kafka sink",
        records: count,
        secs: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
        broker_cpu: proc_cpu(pid) - b0,
    }
}

fn bare_consumer(bootstrap: &str, topic: &str, count: u64, pid: Option<u32>) -> Figures {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-bare")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let (t0, c0, b0) = (Instant::now(), cpu_seconds(), proc_cpu(pid));
    let mut n = 0u64;
    let mut bytes = 0usize;
    let mut report = Instant::now();
    while n < count {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                bytes += m.payload_len();
                n += 1;
            }
            Some(Err(e)) => eprintln!("bare consumer: {e}"),
            None => {}
        }
        if report.elapsed() > Duration::from_secs(10) {
            eprintln!("bare consumer: {n} of {count} so far");
            report = Instant::now();
        }
    }
    std::hint::black_box(bytes);
    Figures {
        name: "bare rdkafka consumer",
        records: count,
        secs: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
        broker_cpu: proc_cpu(pid) - b0,
    }
}

async fn sluice_source(bootstrap: &str, topic: &str, count: u64, pid: Option<u32>) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let resources = Default::default();
    let source = sluice_kafka::KafkaSourceFactory
        .build(
            &build_cx(dir.path(), &resources),
            &ComponentOptions::from_json(serde_json::json!({
                "brokers": [bootstrap], "topics": [topic], "group": "bench-sluice",
                "healthcheck": false
            })),
        )
        .unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let (t0, c0, b0) = (Instant::now(), cpu_seconds(), proc_cpu(pid));
    let s = seen.clone();
    run_pipeline(
        source,
        Box::new(Blackhole(seen.clone())),
        10_000,
        move || s.load(Ordering::Acquire) >= count,
    )
    .await;
    Figures {
        name: "sluice kafka source",
        records: count,
        secs: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
        broker_cpu: proc_cpu(pid) - b0,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let which = args.get(3).map(String::as_str).unwrap_or("tansu");
    let mut _tansu = None;
    let mut _mock = None;
    let (bootstrap, pid) = match which {
        "tansu" => {
            let broker = tansu::Tansu::start();
            for t in ["bench-bare", "bench-sluice"] {
                broker.create_topic(t, 1);
            }
            let b = (broker.bootstrap(), broker.pid());
            _tansu = Some(broker);
            b
        }
        "mock" => {
            let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
            for t in ["bench-bare", "bench-sluice"] {
                cluster.create_topic(t, 1, 1).unwrap();
            }
            let b = (cluster.bootstrap_servers(), None);
            _mock = Some(cluster);
            b
        }
        other => (other.to_string(), None),
    };
    println!("kafka_bench: {count} records of {SIZE} B, broker {which} at {bootstrap}, sink batch {batch}");

    let b = bootstrap.clone();
    let bare = tokio::task::spawn_blocking(move || bare_producer(&b, "bench-bare", count, pid))
        .await
        .unwrap();
    bare.print();
    let ours = sluice_sink(&bootstrap, "bench-sluice", count, batch, pid).await;
    ours.print();
    println!(
        "  sink / bare producer: {:.2}x records/s",
        ours.rate() / bare.rate()
    );

    if which == "mock" {
        // The mock cluster stalls long fetches; it measures producers only.
        println!("peak RSS of this process: {:.0} MiB", peak_rss_mib());
        return;
    }
    let b = bootstrap.clone();
    let bare_c = tokio::task::spawn_blocking(move || bare_consumer(&b, "bench-bare", count, pid))
        .await
        .unwrap();
    bare_c.print();
    let ours_c = sluice_source(&bootstrap, "bench-sluice", count, pid).await;
    ours_c.print();
    println!(
        "  source / bare consumer: {:.2}x records/s",
        ours_c.rate() / bare_c.rate()
    );
    println!("peak RSS of this process: {:.0} MiB", peak_rss_mib());
}
