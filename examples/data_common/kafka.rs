//! Kafka for the log-processing example: a throwaway `tansu` broker
//! (Kafka protocol, sqlite storage in a temporary directory, on a free
//! loopback port) when no `--kafka` is given, topic creation, and an
//! independent read-back of a whole topic with librdkafka. Touches its
//! temporary directory, the `tansu` process it starts and the brokers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A `tansu` broker of our own, killed when dropped.
pub struct Tansu {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// The `tansu` binary: `$TANSU_BIN`, `~/.cargo/bin/tansu`, or on `PATH`.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return p.into();
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cargo/bin/tansu");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("tansu")
}

impl Tansu {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Result<Tansu, String> {
        let dir = tempfile::Builder::new()
            .prefix("sluice-tansu-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let port = super::daemon::free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("tansu.log"))
            .map_err(|e| format!("tansu log file: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(binary())
            .current_dir(dir.path())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start the tansu broker ({}): {e}; install it with \
                     `cargo install tansu --locked --features dynostore,libsql` \
                     (scripts/install-deps does), or pass --kafka HOST:PORT",
                    binary().display()
                )
            })?;
        let t = Tansu { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "tansu did not listen on {port} within 30 s: {}",
                    std::fs::read_to_string(t.dir.path().join("tansu.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(t)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with tansu's own command (it does not create
    /// topics on first use).
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<(), String> {
        let out = Command::new(binary())
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .map_err(|e| format!("tansu topic create {name}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "tansu topic create {name}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates `topic` on a Kafka cluster unless it exists.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| format!("Kafka admin client for {brokers}: {e}"))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let res = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| format!("creating Kafka topic {topic} on {brokers}: {e}"))?;
    for r in res {
        match r {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("creating Kafka topic {t} on {brokers}: {e}")),
        }
    }
    Ok(())
}

/// Every message value of `topic`, read from the beginning up to the end
/// offsets it has now (blocking; run it off the async workers).
pub fn read_topic(brokers: &str, topic: &str) -> Result<Vec<Vec<u8>>, String> {
    let timeout = Duration::from_secs(15);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-example-readback")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| format!("Kafka consumer for {brokers}: {e}"))?;
    let md = c
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assign = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for p in parts {
        let (lo, hi) = c
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| format!("offsets of {topic}/{p}: {e}"))?;
        if hi > lo {
            assign
                .add_partition_offset(topic, p, Offset::Offset(lo))
                .map_err(|e| e.to_string())?;
            ends.insert(p, hi);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    c.assign(&assign)
        .map_err(|e| format!("assign {topic}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("reading {topic} did not reach its end within 60 s"));
        }
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(|e| format!("reading {topic}: {e}"))?;
        out.push(m.payload().unwrap_or_default().to_vec());
        if ends
            .get(&m.partition())
            .is_some_and(|&hi| m.offset() + 1 >= hi)
        {
            ends.remove(&m.partition());
        }
    }
    Ok(out)
}
