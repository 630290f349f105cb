//! `sluice top` driven in a pseudo-terminal against a running daemon: it
//! draws every component with live rates, answers the sort key, quits on
//! `q` with exit code 0 and gives the terminal back (leaves the alternate
//! screen). Without a daemon it fails before touching the terminal.

mod support;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{free_port, sluice_bin, Daemon};

struct Pty {
    master: std::fs::File,
    slave: OwnedFd,
}

fn open_pty() -> Pty {
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: 24,
        ws_col: 150,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    unsafe {
        Pty {
            master: std::fs::File::from_raw_fd(master),
            slave: OwnedFd::from_raw_fd(slave),
        }
    }
}

/// Collects everything the program writes to the terminal.
fn reader(master: &std::fs::File) -> Arc<Mutex<Vec<u8>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut m = master.try_clone().unwrap();
    let s = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = m.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    seen
}

const ROWS: usize = 24;
const COLS: usize = 150;

/// What the terminal shows after `bytes`: a tiny emulator that honours
/// cursor moves (`CSI row;col H`) and ignores every other escape sequence.
fn screen(bytes: &[u8]) -> Vec<String> {
    let mut grid = vec![vec![' '; COLS]; ROWS];
    let (mut row, mut col) = (0usize, 0usize);
    let text = String::from_utf8_lossy(bytes);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() != Some(&'[') {
                    chars.next();
                    continue;
                }
                chars.next();
                let mut params = String::new();
                let mut fin = ' ';
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() || c == '~' {
                        fin = c;
                        break;
                    }
                    params.push(c);
                }
                if fin == 'H' {
                    let mut it = params.split(';').map(|n| n.parse::<usize>().unwrap_or(1));
                    row = it.next().unwrap_or(1).saturating_sub(1).min(ROWS - 1);
                    col = it.next().unwrap_or(1).saturating_sub(1);
                }
            }
            '\r' => col = 0,
            '\n' => row = (row + 1).min(ROWS - 1),
            c if (c as u32) < 0x20 => {}
            c => {
                if col < COLS {
                    grid[row][col] = c;
                }
                col += 1;
            }
        }
    }
    grid.into_iter().map(|r| r.into_iter().collect()).collect()
}

/// Waits until the screen shows every one of `what`; returns the screen.
fn wait_for(seen: &Arc<Mutex<Vec<u8>>>, what: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = screen(&seen.lock().unwrap());
        let text = lines.join("\n");
        if what.iter().all(|w| text.contains(w)) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what:?} on the terminal; it shows:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn top_draws_live_figures_sorts_and_quits_in_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let mut d = Daemon::start(
        dir.path(),
        &format!(
            "data_dir: ./data\napi: {{ listen: 127.0.0.1:{api} }}\nsources:\n  demo_src:\n    type: generator\n    rate_per_sec: 1000\nsinks:\n  sink_a:\n    type: blackhole\n    inputs: [demo_src]\n"
        ),
        api,
    );
    d.wait_healthy();
    let pty = open_pty();
    let fd = |f: &OwnedFd| Stdio::from(f.try_clone().unwrap());
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["top", "--interval", "200ms", "--api"])
        .arg(format!("http://127.0.0.1:{api}"))
        .env("TERM", "xterm-256color")
        .stdin(fd(&pty.slave))
        .stdout(fd(&pty.slave))
        .stderr(fd(&pty.slave));
    unsafe {
        // The pty becomes the child's controlling terminal (`/dev/tty`).
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY as _, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(pty.slave);
    let seen = reader(&pty.master);
    wait_for(
        &seen,
        &[
            "sluice top",
            "demo_src",
            "sink_a",
            "generator",
            "blackhole",
            "OUT/s",
            "sort: out/s ↓",
        ],
    );
    // A later refresh shows rates (the first one cannot): about 1000/s.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = screen(&seen.lock().unwrap());
        let row = lines
            .iter()
            .find(|l| l.starts_with("demo_src "))
            .cloned()
            .unwrap_or_default();
        let rates: Vec<f64> = row
            .split_whitespace()
            .filter_map(|w| w.parse::<f64>().ok().filter(|_| w.contains('.')))
            .collect();
        if rates.len() == 2 && rates.iter().all(|r| *r > 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no rates drawn: {row:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut master = pty.master.try_clone().unwrap();
    master.write_all(b"s").unwrap();
    wait_for(&seen, &["sort: queue ↓"]);
    master.write_all(b"r").unwrap();
    wait_for(&seen, &["sort: queue ↑"]);
    master.write_all(b"q").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "top did not quit on q");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // The terminal is given back: the alternate screen is left.
    let raw = String::from_utf8_lossy(&seen.lock().unwrap()).to_string();
    assert!(
        raw.contains("\x1b[?1049l"),
        "the alternate screen was not left"
    );
    d.sigterm();
    assert_eq!(d.wait(Duration::from_secs(30)), Some(0));
}

#[test]
fn top_without_a_daemon_fails_before_taking_the_terminal() {
    let port = free_port();
    let out = Command::new(sluice_bin())
        .args(["top", "--api", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error:"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\x1b[?1049h"));
}
