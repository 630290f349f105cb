//! `sluice top`: a live terminal table of a running daemon's components
//! (records/s in and out, queue fill, lag, retries, errors, drops, snapshot
//! progress), refreshed from `/api/v1/components` every `--interval`, local
//! or remote (`--api`, token from `SLUICE_TOKEN`). Keys: `q`/Esc/Ctrl-C quit,
//! `s`/`S` next/previous sort column, `r` reverse. Touches the terminal and
//! the network; drawing lives in `view.rs`.

pub mod view;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use crate::cli::{client, finish, runtime, ApiArgs};
use crate::client::ClientError;
use view::{App, Key};

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Refresh period (e.g. `1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

/// Longest wait for one `/api/v1/components` answer.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

fn key_of(code: KeyCode, modifiers: KeyModifiers) -> Key {
    match code {
        KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
        KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
        KeyCode::Char('s') | KeyCode::Right | KeyCode::Tab => Key::NextSort,
        KeyCode::Char('S') | KeyCode::Left | KeyCode::BackTab => Key::PrevSort,
        KeyCode::Char('r') => Key::Reverse,
        _ => Key::Other,
    }
}

/// `sluice top`.
pub fn top(api: &ApiArgs, args: TopArgs) -> ExitCode {
    if args.interval.is_zero() {
        eprintln!("error: --interval must be more than zero");
        return ExitCode::from(2);
    }
    let Some(rt) = runtime() else {
        return ExitCode::from(4);
    };
    let c = match client(api) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(4);
        }
    };
    let fetch = || {
        rt.block_on(async {
            match tokio::time::timeout(FETCH_TIMEOUT, c.components()).await {
                Ok(r) => r,
                Err(_) => Err(ClientError {
                    status: 0,
                    code: "timeout".into(),
                    message: format!("no answer within {} s", FETCH_TIMEOUT.as_secs()),
                    retry_after: None,
                }),
            }
        })
    };
    // Fail before taking over the terminal when the daemon is not there.
    let first = match fetch() {
        Ok(v) => v,
        Err(e) => return finish(Err(e)),
    };
    let mut app = App::new(c.base());
    app.update(&first, Instant::now());
    let mut terminal = match ratatui::try_init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot use the terminal: {e}");
            return ExitCode::from(4);
        }
    };
    let result = (|| -> std::io::Result<()> {
        let mut next = Instant::now() + args.interval;
        while !app.quit {
            terminal.draw(|f| view::render(f, &app))?;
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait)? {
                if let Event::Key(k) = event::read()? {
                    if k.kind != KeyEventKind::Release {
                        app.key(key_of(k.code, k.modifiers));
                    }
                }
                continue;
            }
            match fetch() {
                Ok(v) => app.update(&v, Instant::now()),
                Err(e) => app.failed(e.to_string()),
            }
            next = Instant::now() + args.interval;
        }
        Ok(())
    })();
    ratatui::restore();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: terminal: {e}");
            ExitCode::from(4)
        }
    }
}

#[cfg(test)]
mod tests;
