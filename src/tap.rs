//! `sluice tap COMPONENT [--where EXPR] [--limit N]`: prints a live sample of
//! the records passing a component of a running daemon, one JSON object a
//! line, over the API (`/api/v1/components/{name}/tap`; the filter runs in
//! the daemon). Touches stdout, stderr and the network.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use crate::cli::{client, finish, runtime, ApiArgs};
use crate::client::ClientError;

#[derive(Args, Debug)]
pub struct TapArgs {
    /// A source or sink name.
    pub component: String,
    /// Only records for which this condition (the pipeline `where` language) holds.
    #[arg(long = "where", value_name = "EXPR")]
    pub condition: Option<String>,
    /// Exit after this many records.
    #[arg(long)]
    pub limit: Option<u64>,
}

fn io_error(e: std::io::Error) -> ClientError {
    ClientError {
        status: 0,
        code: "stdout".into(),
        message: e.to_string(),
        retry_after: None,
    }
}

/// What one line of the stream means for the terminal.
#[derive(Debug, PartialEq)]
pub enum Line<'a> {
    Record(&'a str),
    /// The daemon skipped this many batches (the listener fell behind).
    Missed(u64),
    KeepAlive,
}

pub fn classify(line: &str) -> Line<'_> {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() {
        return Line::KeepAlive;
    }
    if line.starts_with("{\"missed\":") {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if let Some(n) = v["missed"].as_u64() {
                return Line::Missed(n);
            }
        }
    }
    Line::Record(line)
}

/// `sluice tap`.
pub fn tap(api: &ApiArgs, a: TapArgs) -> ExitCode {
    if a.limit == Some(0) {
        eprintln!("error: --limit must be at least 1");
        return ExitCode::from(2);
    }
    let Some(rt) = runtime() else {
        return ExitCode::from(4);
    };
    finish(rt.block_on(async {
        let c = client(api)?;
        let mut resp = c.tap(&a.component, a.condition.as_deref(), a.limit).await?;
        let mut out = std::io::stdout().lock();
        let mut pending: Vec<u8> = Vec::new();
        let mut printed = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            pending.extend_from_slice(&chunk);
            while let Some(nl) = memchr::memchr(b'\n', &pending) {
                let raw: Vec<u8> = pending.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&raw[..raw.len() - 1]);
                match classify(&text) {
                    Line::Record(r) => {
                        writeln!(out, "{r}").map_err(io_error)?;
                        printed += 1;
                    }
                    Line::Missed(n) => eprintln!("(missed {n} batches: too slow to keep up)"),
                    Line::KeepAlive => {}
                }
            }
            out.flush().map_err(io_error)?;
            if a.limit.is_some_and(|l| printed >= l) {
                return Ok(());
            }
        }
        if a.limit.is_none_or(|l| printed < l) {
            eprintln!("the tap of `{}` ended (component stopped)", a.component);
        }
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_told_apart() {
        assert_eq!(classify(""), Line::KeepAlive);
        assert_eq!(classify("{\"missed\":3}"), Line::Missed(3));
        assert_eq!(
            classify("{\"component\":\"a\"}"),
            Line::Record("{\"component\":\"a\"}")
        );
    }
}
