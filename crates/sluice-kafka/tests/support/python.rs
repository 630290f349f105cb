//! The independent client: PyPI `confluent-kafka` driven through `python3`.
//! Touches the brokers under test.

use std::process::Command;

fn run(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python (confluent-kafka) failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Produces `"<prefix><n:08>"` for n in 0..count, idempotent, acks=all.
pub fn produce(bootstrap: &str, topic: &str, prefix: &str, count: u64) {
    const SCRIPT: &str = r#"
import sys
from confluent_kafka import Producer
bootstrap, topic, prefix, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
failed = []
def report(err, msg):
    if err is not None:
        failed.append(str(err))
for n in range(count):
    while True:
        try:
            p.produce(topic, value=("%s%08d" % (prefix, n)).encode(), key=str(n % 7).encode(),
                      headers=[("origin", b"python")], on_delivery=report)
            break
        except BufferError:
            p.poll(0.05)
    p.poll(0)
left = p.flush(60)
if failed or left:
    sys.exit("failed=%d left=%d first=%s" % (len(failed), left, failed[:1]))
"#;
    run(SCRIPT, &[bootstrap, topic, prefix, &count.to_string()]);
}

/// Consumes `topic` in group `group` until `expected` messages or `idle_s`
/// seconds without one; commits; returns (key, value, headers) per message.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    group: &str,
    expected: usize,
    idle_s: u64,
) -> Vec<serde_json::Value> {
    const SCRIPT: &str = r#"
import sys, json, time, base64
from confluent_kafka import Consumer
bootstrap, topic, group, expected, idle = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "enable.auto.commit": False})
c.subscribe([topic])
n, last = 0, time.time()
while n < expected and time.time() - last < idle:
    m = c.poll(0.5)
    if m is None:
        continue
    if m.error():
        print(json.dumps({"error": str(m.error())}), file=sys.stderr)
        continue
    last = time.time()
    n += 1
    print(json.dumps({
        "key": None if m.key() is None else m.key().decode("utf-8", "replace"),
        "value": m.value().decode("utf-8", "replace"),
        "headers": {k: (v or b"").decode("utf-8", "replace") for k, v in (m.headers() or [])},
    }))
c.commit(asynchronous=False) if n else None
c.close()
"#;
    run(
        SCRIPT,
        &[
            bootstrap,
            topic,
            group,
            &expected.to_string(),
            &idle_s.to_string(),
        ],
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}
