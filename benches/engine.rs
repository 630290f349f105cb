//! Engine benchmarks (issue 2), run with `cargo bench --bench engine`.
//! Prints figures and same-run baselines; asserts nothing.
//!
//! 1. generator → blackhole through `sluice run`: records/s and CPU seconds
//!    per million records; baseline: formatting the same lines in a bare
//!    loop (the generator's own cost, no pipeline).
//! 2. HTTP ingest (NDJSON, 1,000 records a request, keep-alive,
//!    4 connections) → blackhole: records/s and p99 request latency;
//!    baseline: the same load against a bare axum handler that discards
//!    the body, in its own process.
//! 3. Idle RSS and start-to-healthy time of the daemon.

/// The allocator the `sluice` binary uses, so figures match the daemon.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sluice_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for the child; returns (exit ok, CPU seconds, peak RSS MiB).
fn wait_with_rusage(child: &mut Child) -> (bool, f64, f64) {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        secs(usage.ru_utime) + secs(usage.ru_stime),
        usage.ru_maxrss as f64 / 1024.0,
    )
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (get(11) + get(12)) / ticks
}

fn proc_rss_mib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn start(dir: &Path, yaml: &str) -> Child {
    let cfg = dir.join("bench.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    Command::new(sluice_bin())
        .args(["--log-level", "warn", "run", "-c"])
        .arg(&cfg)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sluice")
}

fn wait_healthy(port: u16, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut buf = [0u8; 32];
            if let Ok(n) = std::io::Read::read(&mut s, &mut buf) {
                if buf[..n].starts_with(b"HTTP/1.1 200") {
                    return Some(t.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn bench_generator(dir: &Path) {
    let n: u64 = 10_000_000;
    println!("\n## generator → blackhole ({n} apache_common lines)");
    // Baseline: the same formatting in a bare loop, one core.
    let t = Instant::now();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut total = 0usize;
    for seq in 0..n {
        let i = (seq % 4) as usize;
        let _ = write!(
            buf,
            "10.{}.{}.{} - user{} [2026-11-28T04:00:00.000Z] \"GET {}/{seq}?ref=generator&session=a81f3c0d9e HTTP/1.1\" {} {} \"https://example.com/\" \"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101\"",
            seq % 256, (seq >> 8) % 256, (seq >> 16) % 256, seq % 1000,
            ["/api/items", "/api/orders", "/static/app.js", "/login"][i],
            if i == 3 { 302 } else { 200 }, 512 + seq % 4096
        );
        if buf.len() > (1 << 20) - 512 {
            total += buf.len();
            buf.clear();
        }
    }
    total += buf.len();
    let base = t.elapsed().as_secs_f64();
    println!(
        "baseline (format only, bare loop): {:.2} M lines/s, avg line {} B",
        n as f64 / base / 1e6,
        total as u64 / n
    );
    let yaml = format!(
        "data_dir: ./gen-data\napi: {{ enabled: false }}\nsources:\n  gen:\n    type: generator\n    count: {n}\nsinks:\n  null:\n    type: blackhole\n    inputs: [gen]\n    print_interval_secs: 0\n"
    );
    let _ = std::fs::remove_dir_all(dir.join("gen-data"));
    let t = Instant::now();
    let mut child = start(dir, &yaml);
    let (ok, cpu, rss) = wait_with_rusage(&mut child);
    let wall = t.elapsed().as_secs_f64();
    println!(
        "sluice: {:.2} M records/s, {:.2} CPU s per million records, peak RSS {:.1} MiB, exit ok: {ok}",
        n as f64 / wall / 1e6,
        cpu / (n as f64 / 1e6),
        rss
    );
    println!(
        "ratio to the bare formatting loop: {:.2}×",
        (n as f64 / wall) / (n as f64 / base)
    );
}

/// 4 keep-alive connections posting `requests` bodies each; returns
/// (records/s, p50 ms, p99 ms).
fn load(port: u16, path: &str, requests: usize, body: &'static [u8]) -> (f64, f64, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}{path}");
        let t = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(requests);
                    for _ in 0..requests {
                        let s = Instant::now();
                        let r = client.post(&url).body(body).send().await.expect("post");
                        assert!(r.status().is_success(), "status {}", r.status());
                        let _ = r.bytes().await;
                        lat.push(s.elapsed().as_secs_f64() * 1000.0);
                    }
                    lat
                })
            })
            .collect();
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let wall = t.elapsed().as_secs_f64();
        lat.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
        ((lat.len() * 1000) as f64 / wall, pct(0.5), pct(0.99))
    })
}

fn bare_axum_server(port: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(|_body: axum::body::Bytes| async { "{\"accepted\":1000}" }),
        );
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(l, app).await.unwrap();
    });
}

fn bench_http(dir: &Path) {
    let requests = 500;
    println!("\n## http ingest → blackhole (NDJSON, 1,000 × ~100 B records a request, 4 keep-alive connections, {} requests)", requests * 4);
    let body: &'static [u8] = Box::leak(
        (0..1000)
            .map(|i| format!("{{\"seq\":{i},\"user\":\"user-{i}\",\"event\":\"signup\",\"plan\":\"free\",\"padding\":\"abcdefghij\"}}\n"))
            .collect::<String>()
            .into_bytes()
            .into_boxed_slice(),
    );
    let port = free_port();
    let mut bare = Command::new(std::env::current_exe().unwrap())
        .args(["--bare-server", &port.to_string()])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = proc_cpu_seconds(bare.id());
    let (b_rps, b_p50, b_p99) = load(port, "/", requests, body);
    let b_cpu = proc_cpu_seconds(bare.id()) - cpu0;
    let _ = bare.kill();
    let _ = bare.wait();
    println!("baseline bare axum handler: {:.0} records/s, p50 {b_p50:.2} ms, p99 {b_p99:.2} ms, server CPU {b_cpu:.2} s", b_rps);

    let (api, http) = (free_port(), free_port());
    let yaml = format!(
        "data_dir: ./http-data\napi: {{ listen: 127.0.0.1:{api} }}\nsources:\n  ingest:\n    type: http\n    listen: 127.0.0.1:{http}\nsinks:\n  null:\n    type: blackhole\n    inputs: [ingest]\n    print_interval_secs: 0\n"
    );
    let mut child = start(dir, &yaml);
    wait_healthy(api, Duration::from_secs(10)).expect("sluice healthy");
    let cpu0 = proc_cpu_seconds(child.id());
    let (s_rps, s_p50, s_p99) = load(http, "/", requests, body);
    let s_cpu = proc_cpu_seconds(child.id()) - cpu0;
    let rss = proc_rss_mib(child.id(), "VmHWM:");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    println!("sluice http → blackhole:    {:.0} records/s, p50 {s_p50:.2} ms, p99 {s_p99:.2} ms, CPU {s_cpu:.2} s, peak RSS {rss:.1} MiB", s_rps);
    println!("ratio to the bare handler: {:.2}×", s_rps / b_rps);
}

fn bench_idle(dir: &Path) {
    println!("\n## start-to-healthy and idle RSS (http source → blackhole, 5 starts)");
    let mut times = Vec::new();
    let mut rss = 0.0;
    for _ in 0..5 {
        let (api, http) = (free_port(), free_port());
        let yaml = format!(
            "data_dir: ./idle-data\napi: {{ listen: 127.0.0.1:{api} }}\nsources:\n  ingest:\n    type: http\n    listen: 127.0.0.1:{http}\nsinks:\n  null:\n    type: blackhole\n    inputs: [ingest]\n"
        );
        let mut child = start(dir, &yaml);
        let t = wait_healthy(api, Duration::from_secs(10)).expect("healthy");
        times.push(t.as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_secs(1));
        rss = proc_rss_mib(child.id(), "VmRSS:");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "start-to-healthy: median {:.1} ms (min {:.1}, max {:.1}); idle RSS {rss:.1} MiB",
        times[2], times[0], times[4]
    );
}

fn main() {
    sluice::allocator::tune();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--bare-server") {
        bare_axum_server(args[i + 1].parse().unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    println!(
        "# sluice engine benchmarks ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    bench_generator(dir.path());
    bench_http(dir.path());
    bench_idle(dir.path());
}
