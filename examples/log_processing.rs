//! Scenario 5, log processing: an application writes log files (rotating
//! them); sluice tails them with `pipelines/log-processing.yaml`, stores
//! every event in the embedded store (topic `app-logs`) and sends the
//! ERROR/FATAL events to Kafka (topic `app-errors`); a pulling consumer
//! reads `app-logs` over the HTTP API and counts events per level per
//! minute. The program checks the counts against what it wrote and the
//! Kafka topic against the error events it wrote.
//!
//! ```sh
//! cargo run --release --example log_processing                 # starts a tansu broker
//! cargo run --release --example log_processing -- --kafka 127.0.0.1:9092
//! ```
//!
//! Touches a temporary directory (logs, the daemon's data), the Kafka
//! brokers, a loopback port, and the `tansu` process it may start.

#[path = "data_common/daemon.rs"]
mod daemon;
#[path = "data_common/kafka.rs"]
mod kafka;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::client::{Client, PullOptions};

/// The levels the application writes, in table order.
const LEVELS: [&str; 5] = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
const GROUP: &str = "level-counter";

/// What to run.
pub struct Options {
    /// Kafka bootstrap servers; `None` starts a throwaway tansu broker.
    pub kafka: Option<String>,
    /// Log events to write.
    pub events: usize,
    /// Events per log file before it is rotated.
    pub rotate_every: usize,
    /// Only run the consumer against this running daemon (e.g. the
    /// `sluice-logs` service of docker-compose.yml) with this token.
    pub consume: Option<(String, Option<String>)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            kafka: None,
            events: 3000,
            rotate_every: 700,
            consume: None,
        }
    }
}

/// (minute, level) → events.
pub type Counts = BTreeMap<(String, String), u64>;

/// What the scenario wrote and what came out.
pub struct Outcome {
    pub written: Counts,
    pub counted: Counts,
    /// The ERROR/FATAL events written, sorted.
    pub written_errors: Vec<String>,
    /// The messages in the Kafka topic, sorted.
    pub kafka_errors: Vec<String>,
    pub files: usize,
    pub lines: usize,
}

/// A small deterministic generator (xorshift64*), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The `i`th event: (minute, level, full text; continuation lines of a
/// stack trace joined with `\n`). Timestamps are 70 ms apart from
/// 2026-11-28 09:00:00, so 3,000 events span four minutes.
fn event(rng: &mut Rng, i: usize) -> (String, &'static str, String) {
    let ms = i as u64 * 70;
    let (h, m, s) = (9 + ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60);
    let minute = format!("2026-11-28 {h:02}:{m:02}");
    let ts = format!("{minute}:{s:02}.{:03}", ms % 1000);
    let level = match rng.below(100) {
        0..=14 => "DEBUG",
        15..=74 => "INFO",
        75..=89 => "WARN",
        90..=97 => "ERROR",
        _ => "FATAL",
    };
    let id = rng.below(100_000);
    let text = match level {
        "DEBUG" => format!("{ts} DEBUG [cart] cache miss for user {id}"),
        "INFO" => format!(
            "{ts} INFO  [http] GET /products/{id} 200 in {}ms",
            rng.below(90) + 1
        ),
        "WARN" => format!(
            "{ts} WARN  [db] slow query on orders took {}ms",
            rng.below(4000) + 500
        ),
        "ERROR" => format!(
            "{ts} ERROR [checkout] payment declined for order {id}\n\
             \x20   at shop.checkout.Payment.charge(Payment.java:{})\n\
             \x20   at shop.checkout.Checkout.pay(Checkout.java:42)",
            rng.below(300)
        ),
        _ => format!("{ts} FATAL [worker] connection pool exhausted, worker {id} exits"),
    };
    (minute, level, text)
}

/// Writes the events into `dir/app.log`, renaming it to `app.N.log` every
/// `rotate_every` events (rename rotation, logback-style names that still
/// match `*.log`), in small paced chunks like a live application.
fn write_logs(dir: &Path, o: &Options) -> std::io::Result<(Counts, Vec<String>, usize, usize)> {
    let mut rng = Rng(0x5eed_1095);
    let mut written = Counts::new();
    let mut errors = Vec::new();
    let (mut files, mut lines) = (1, 0);
    let live = dir.join("app.log");
    let mut f = std::fs::File::create(&live)?;
    for i in 0..o.events {
        if i > 0 && i % o.rotate_every == 0 {
            f.sync_all()?;
            std::fs::rename(&live, dir.join(format!("app.{files}.log")))?;
            f = std::fs::File::create(&live)?;
            files += 1;
        }
        let (minute, level, text) = event(&mut rng, i);
        writeln!(f, "{text}")?;
        lines += text.lines().count();
        *written.entry((minute, level.to_string())).or_default() += 1;
        if level == "ERROR" || level == "FATAL" {
            errors.push(text);
        }
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    f.sync_all()?;
    errors.sort();
    Ok((written, errors, files, lines))
}

/// The pulling consumer: reads `app-logs` in stream group `level-counter`
/// over the API, counts events per (minute, level) and commits what it
/// counted. Returns once `expected` (set when the writer is done) events
/// are counted and a further second brings nothing, or after 120 s.
async fn count_levels(client: &Client, expected: &AtomicU64) -> Result<Counts, String> {
    let mut counts = Counts::new();
    let mut total = 0u64;
    let opts = PullOptions {
        max: 1000,
        wait_ms: 1000,
        from: Some("earliest".into()),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pulled = match client.pull("app-logs", GROUP, &opts).await {
            Ok(p) => p,
            // The store sink creates the topic with its first event.
            Err(e) if e.status == 404 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => return Err(format!("pull app-logs: {e}")),
        };
        let done = pulled.records.is_empty() && total >= expected.load(Ordering::Acquire);
        for r in &pulled.records {
            // encoding: json → {"message": the event, "path", "offset", …}
            let msg = r.value["message"]
                .as_str()
                .ok_or_else(|| format!("record {}-{} has no message", r.partition, r.offset))?;
            let mut words = msg.split_whitespace();
            let (date, time, level) = (words.next(), words.next(), words.next());
            let (Some(date), Some(time), Some(level)) = (date, time, level) else {
                return Err(format!("not a log event: {msg:?}"));
            };
            let minute = format!("{date} {}", time.get(..5).unwrap_or(time));
            *counts.entry((minute, level.to_string())).or_default() += 1;
            total += 1;
        }
        let offsets: Vec<(u32, u64)> = pulled
            .commit
            .iter()
            .filter_map(|c| Some((c["partition"].as_u64()? as u32, c["offset"].as_u64()?)))
            .collect();
        if !offsets.is_empty() {
            client
                .commit("app-logs", GROUP, None, &offsets)
                .await
                .map_err(|e| format!("commit: {e}"))?;
        }
        if done || Instant::now() > deadline {
            return Ok(counts);
        }
    }
}

/// Runs the whole scenario in `work` (logs in `work/logs`, the daemon's
/// data in `work/data`).
pub async fn scenario(work: &Path, o: &Options) -> Result<Outcome, String> {
    let tansu = match &o.kafka {
        Some(_) => None,
        None => Some(kafka::Tansu::start()?),
    };
    let brokers = match (&o.kafka, &tansu) {
        (Some(b), _) => b.clone(),
        (None, t) => t.as_ref().map(kafka::Tansu::bootstrap).unwrap_or_default(),
    };
    match &tansu {
        Some(t) => t.create_topic("app-errors", 2)?,
        None => kafka::create_topic(&brokers, "app-errors", 2).await?,
    }
    let logs = work.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let token = format!("example-{}", std::process::id());
    let d = daemon::InProcess::start(
        &[daemon::shipped_pipeline("log-processing.yaml")],
        &[
            ("APP_LOG_DIR", logs.display().to_string()),
            ("KAFKA_BROKERS", brokers.clone()),
            ("SLUICE_DATA_DIR", work.join("data").display().to_string()),
            ("SLUICE_TOKEN", token.clone()),
        ],
    )
    .await?;
    let client = Client::new(&d.api, Some(token)).map_err(|e| e.to_string())?;

    let opts = Options {
        kafka: None,
        events: o.events,
        rotate_every: o.rotate_every,
        consume: None,
    };
    // The consumer counts while the application writes; once the writer
    // is done, its total tells the consumer when it has seen everything.
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let e = expected.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let r = write_logs(&logs, &opts);
        let total = r.as_ref().map(|w| w.0.values().sum()).unwrap_or(0);
        e.store(total, Ordering::Release);
        r
    });
    let counted = count_levels(&client, &expected).await?;
    let (written, written_errors, files, lines) = writer
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("writing the logs: {e}"))?;

    // A graceful stop drains the Kafka sink before the topic is read back.
    d.stop().await?;
    let b = brokers.clone();
    let raw = tokio::task::spawn_blocking(move || kafka::read_topic(&b, "app-errors"))
        .await
        .map_err(|e| e.to_string())??;
    let mut kafka_errors = raw
        .iter()
        .map(|v| {
            serde_json::from_slice::<serde_json::Value>(v)
                .ok()
                .and_then(|j| j["message"].as_str().map(str::to_string))
                .ok_or_else(|| format!("Kafka record is not a JSON log event: {v:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    kafka_errors.sort();
    Ok(Outcome {
        written,
        counted,
        written_errors,
        kafka_errors,
        files,
        lines,
    })
}

/// The per-minute table of `counts`.
fn print_table(counts: &Counts) {
    print!("{:<18}", "minute");
    for l in LEVELS {
        print!("{l:>7}");
    }
    println!("{:>8}", "total");
    let minutes: std::collections::BTreeSet<&String> = counts.keys().map(|(m, _)| m).collect();
    for m in minutes {
        print!("{m:<18}");
        let mut sum = 0;
        for l in LEVELS {
            let n = counts
                .get(&(m.clone(), l.to_string()))
                .copied()
                .unwrap_or(0);
            sum += n;
            print!("{n:>7}");
        }
        println!("{sum:>8}");
    }
}

/// `--consume API_URL`: counts what a running daemon has in `app-logs`
/// (up to the moment a pull comes back empty) and prints the table.
fn consume_only(
    rt: &tokio::runtime::Runtime,
    api: &str,
    token: Option<String>,
) -> std::process::ExitCode {
    let counted = rt.block_on(async {
        let client = Client::new(api, token).map_err(|e| e.to_string())?;
        count_levels(&client, &AtomicU64::new(0)).await
    });
    match counted {
        Ok(c) => {
            println!("events per level per minute in app-logs on {api} (group {GROUP}; run again for the new ones):");
            print_table(&c);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--kafka" => o.kafka = Some(value("--kafka")?),
            "--consume" => {
                o.consume = Some((value("--consume")?, std::env::var("SLUICE_TOKEN").ok()))
            }
            "--events" => {
                o.events = value("--events")?
                    .parse()
                    .map_err(|e| format!("--events: {e}"))?
            }
            "-h" | "--help" => {
                println!(
                    "usage: log_processing [--kafka HOST:PORT] [--events N]\n       \
                     log_processing --consume API_URL   (only count what a running daemon \
                     stored in app-logs; token from SLUICE_TOKEN)"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other} (try --help)")),
        }
    }
    Ok(o)
}

fn main() -> std::process::ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("SLUICE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let work = tempfile::Builder::new()
        .prefix("sluice-logs-")
        .tempdir()
        .expect("temporary directory");
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    if let Some((api, token)) = &o.consume {
        return consume_only(&rt, api, token.clone());
    }
    let out = match rt.block_on(scenario(work.path(), &o)) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let total: u64 = out.written.values().sum();
    println!(
        "wrote {total} events ({} lines) into {} files (rename rotation), in {}",
        out.lines,
        out.files,
        PathBuf::from(work.path()).join("logs").display()
    );
    println!("\nevents per level per minute, counted by the pulling consumer (store topic app-logs, group {GROUP}):");
    print_table(&out.counted);
    let counts_ok = out.counted == out.written;
    let kafka_ok = out.kafka_errors == out.written_errors;
    println!(
        "\nconsumer counts equal what was written: {}",
        if counts_ok { "yes" } else { "NO" }
    );
    println!(
        "Kafka topic app-errors holds {} records; the ERROR/FATAL events written: {} — {}",
        out.kafka_errors.len(),
        out.written_errors.len(),
        if kafka_ok {
            "the same events"
        } else {
            "DIFFERENT"
        }
    );
    if counts_ok && kafka_ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_level_counts_equal_what_was_written_and_kafka_holds_exactly_the_errors() {
        let work = tempfile::tempdir().unwrap();
        let o = Options {
            events: 1500,
            rotate_every: 400,
            ..Options::default()
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let out = rt
            .block_on(scenario(work.path(), &o))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out.written.values().sum::<u64>(), 1500);
        assert_eq!(out.files, 4, "the logs were rotated");
        assert!(out.lines > 1500, "some events span several lines");
        for l in LEVELS {
            assert!(
                out.written.keys().any(|(_, lv)| lv == l),
                "no {l} event written"
            );
        }
        assert_eq!(out.counted, out.written);
        assert!(!out.written_errors.is_empty());
        assert_eq!(out.kafka_errors, out.written_errors);
    }
}
