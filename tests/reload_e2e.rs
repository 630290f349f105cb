//! Configuration reload through the real `sluice` binary, with a rate-
//! limited generator feeding file sinks: a sink's path changed on SIGHUP
//! while data flows (every record lands exactly once across the old and new
//! files, the source never restarts), an invalid file or a changed
//! `data_dir` rejected with the pipeline running on, `--watch-config`
//! picking up a changed source without a signal (it resumes from its
//! checkpoint), and a sink added then removed, as `/api/v1/components`
//! shows.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, http_get_status, sluice_bin, Daemon};

/// Generous limit for things that take well under a second here.
const WAIT: Duration = Duration::from_secs(60);

fn pipeline(api: u16, source_extra: &str, sinks: &str) -> String {
    format!(
        "data_dir: ./data\ncheckpoint_interval_ms: 50\napi: {{ listen: 127.0.0.1:{api} }}\n\
sources:\n  gen:\n    type: generator\n    format: json\n    rate_per_sec: 2000\n    batch_size: 50\n{source_extra}\
sinks:\n{sinks}"
    )
}

fn file_sink(name: &str, path: &str) -> String {
    format!("  {name}:\n    type: file\n    inputs: [gen]\n    path: {path}\n")
}

/// The `seq` of every generator line in `path`, in file order.
fn seqs(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let rest = l
                .strip_prefix("{\"seq\":")
                .unwrap_or_else(|| panic!("not a generator line: {l}"));
            rest[..rest.find(',').unwrap()].parse().unwrap()
        })
        .collect()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("sluice.log")).unwrap_or_default()
}

fn wait_log(dir: &Path, needle: &str) {
    wait_until(&format!("`{needle}` in the log"), || {
        log(dir).contains(needle)
    });
}

fn sighup(d: &Daemon) {
    unsafe {
        libc::kill(d.child.id() as i32, libc::SIGHUP);
    }
}

/// Writes the file the way an editor saving it does: a new file renamed
/// over the old one.
fn rewrite(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Asserts the files together hold 0..n exactly once; returns n.
fn assert_exactly_once(parts: &[&[u64]]) -> u64 {
    let mut all: Vec<u64> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "some record was written twice");
    assert_eq!(
        all,
        (0..n as u64).collect::<Vec<_>>(),
        "some record is missing"
    );
    n as u64
}

fn stop(mut d: Daemon) {
    d.sigterm();
    assert_eq!(d.wait(WAIT), Some(0), "clean stop");
}

/// The generator's checkpoint: the next sequence number.
fn checkpoint(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("data/checkpoints/gen.json")).unwrap();
    text.trim().parse().unwrap()
}

#[test]
fn reload_by_changing_a_sink_path_while_data_flows() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let mut d = Daemon::start(
        dir.path(),
        &pipeline(api, "", &file_sink("out", "./out-1.log")),
        api,
    );
    d.wait_healthy();
    let (one, two) = (dir.path().join("out-1.log"), dir.path().join("out-2.log"));
    wait_until("500 lines in out-1", || seqs(&one).len() >= 500);

    rewrite(
        &d.config,
        &pipeline(api, "", &file_sink("out", "./out-2.log")),
    );
    sighup(&d);
    wait_log(dir.path(), "configuration reloaded");
    assert!(
        log(dir.path()).contains(
            "rebuilt: sink `out`; rerouted: none; added: none; removed: none; unchanged: 1"
        ),
        "{}",
        log(dir.path())
    );
    wait_until("500 lines in out-2", || seqs(&two).len() >= 500);
    let frozen = seqs(&one).len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        seqs(&one).len(),
        frozen,
        "nothing more goes to the old path"
    );
    stop(d);

    let (a, b) = (seqs(&one), seqs(&two));
    let n = assert_exactly_once(&[&a, &b]);
    assert!(
        a.iter().max() < b.iter().min(),
        "the new file continues where the old one stopped"
    );
    assert_eq!(
        checkpoint(dir.path()),
        n,
        "the checkpoint covers every line"
    );
}

#[test]
fn an_invalid_config_on_sighup_is_rejected_and_the_pipeline_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let good = pipeline(api, "", &file_sink("out", "./out.log"));
    let mut d = Daemon::start(dir.path(), &good, api);
    d.wait_healthy();
    let out = dir.path().join("out.log");
    wait_until("200 lines", || seqs(&out).len() >= 200);

    // A misspelt key, on line 14, column 5.
    let bad = good.replace("    path: ./out.log", "    pathh: ./out-2.log");
    rewrite(&d.config, &bad);
    sighup(&d);
    let place = format!("{}:14:5", d.config.display());
    wait_log(dir.path(), "still running the previous configuration");
    let text = log(dir.path());
    assert!(
        text.lines()
            .any(|l| l.contains("reload rejected") && l.contains(&place) && l.contains("pathh")),
        "no error naming {place}:\n{text}"
    );
    let then = seqs(&out).len();
    wait_until("200 more lines", || seqs(&out).len() >= then + 200);
    assert_eq!(http_get_status(api, "/health"), Some(200));

    // A setting that cannot change at runtime.
    rewrite(
        &d.config,
        &good.replace("data_dir: ./data", "data_dir: ./elsewhere"),
    );
    sighup(&d);
    wait_log(dir.path(), "`data_dir` cannot change while sluice runs");
    let then = seqs(&out).len();
    wait_until("200 more lines", || seqs(&out).len() >= then + 200);
    assert!(!dir.path().join("out-2.log").exists());
    assert!(!dir.path().join("elsewhere").exists());
    stop(d);

    let n = assert_exactly_once(&[&seqs(&out)]);
    assert_eq!(checkpoint(dir.path()), n);
}

fn start_watching(dir: &Path, yaml: &str, api: u16) -> Daemon {
    let config = dir.join("pipeline.yaml");
    std::fs::write(&config, yaml).unwrap();
    let log = std::fs::File::create(dir.join("sluice.log")).unwrap();
    let child = Command::new(sluice_bin())
        .args(["run", "--watch-config", "-c"])
        .arg(&config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start sluice");
    Daemon {
        child,
        config,
        api_port: api,
    }
}

#[test]
fn watch_config_restarts_a_changed_source_from_its_checkpoint_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let sinks = file_sink("out", "./out.log");
    let mut d = start_watching(dir.path(), &pipeline(api, "", &sinks), api);
    d.wait_healthy();
    wait_log(dir.path(), "watching 1 pipeline file");
    let out = dir.path().join("out.log");
    wait_until("500 lines", || seqs(&out).len() >= 500);

    // Written in place (truncate, then write), as `echo >` does.
    std::fs::write(&d.config, pipeline(api, "", &sinks).replace("2000", "3000")).unwrap();
    wait_log(dir.path(), "configuration reloaded");
    let text = log(dir.path());
    assert!(text.contains("(a pipeline file changed)"), "{text}");
    assert!(
        text.contains(
            "rebuilt: source `gen`; rerouted: none; added: none; removed: none; unchanged: 1"
        ),
        "{text}"
    );
    assert_eq!(
        text.matches("configuration reloaded").count(),
        1,
        "one reload for one save"
    );
    let then = seqs(&out).len();
    wait_until("500 more lines", || seqs(&out).len() >= then + 500);
    stop(d);

    // Restarted from zero, it would have written 0, 1, … again.
    let n = assert_exactly_once(&[&seqs(&out)]);
    assert_eq!(checkpoint(dir.path()), n);
}

/// GET → body (the daemon answers `Connection: close`).
fn get_body(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

/// `(kind, name)` of every component `/api/v1/components` lists.
fn components(api: u16) -> Vec<(String, String)> {
    let body = get_body(api, "/api/v1/components");
    let start = body.find(['[', '{']).unwrap_or(0);
    let v: serde_json::Value = serde_json::Deserializer::from_str(&body[start..])
        .into_iter()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("not JSON: {body}"));
    let list = v
        .as_array()
        .or_else(|| v.get("components").and_then(|c| c.as_array()))
        .unwrap_or_else(|| panic!("no component list: {v}"));
    let mut out: Vec<(String, String)> = list
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_sink_added_then_removed_by_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let one = file_sink("out", "./out.log");
    let mut d = Daemon::start(dir.path(), &pipeline(api, "", &one), api);
    d.wait_healthy();
    let (out, copy) = (dir.path().join("out.log"), dir.path().join("copy.log"));
    wait_until("200 lines", || seqs(&out).len() >= 200);
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        components(api),
        vec![pair("sink", "out"), pair("source", "gen")]
    );

    let two = format!("{one}{}", file_sink("copy", "./copy.log"));
    rewrite(&d.config, &pipeline(api, "", &two));
    sighup(&d);
    wait_log(dir.path(), "added: sink `copy`");
    wait_until("300 lines in copy", || seqs(&copy).len() >= 300);
    assert_eq!(
        components(api),
        vec![
            pair("sink", "copy"),
            pair("sink", "out"),
            pair("source", "gen")
        ]
    );

    rewrite(&d.config, &pipeline(api, "", &one));
    sighup(&d);
    wait_log(dir.path(), "removed: sink `copy`");
    assert_eq!(
        components(api),
        vec![pair("sink", "out"), pair("source", "gen")]
    );
    let frozen = seqs(&copy).len();
    let then = seqs(&out).len();
    wait_until("300 more lines in out", || seqs(&out).len() >= then + 300);
    assert_eq!(
        seqs(&copy).len(),
        frozen,
        "a removed sink writes nothing more"
    );
    stop(d);

    let n = assert_exactly_once(&[&seqs(&out)]);
    assert_eq!(checkpoint(dir.path()), n);
    // The copy holds one contiguous stretch: from when it was added to
    // when it was removed.
    let c = seqs(&copy);
    assert_eq!(c, (c[0]..c[0] + c.len() as u64).collect::<Vec<_>>());
}
