//! Client subcommands of the `sluice` binary, over the daemon's API:
//! `topics`, `groups`, `produce` (one record per stdin line) and `consume`.
//! `--api` (default `http://127.0.0.1:8686`, env `SLUICE_API`), the token from
//! `SLUICE_TOKEN`. Touches stdin/stdout and the network.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::{Client, ClientError, PullOptions};

#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Base URL of the daemon's API.
    #[arg(
        long,
        global = true,
        env = "SLUICE_API",
        default_value = "http://127.0.0.1:8686"
    )]
    pub api: String,
}

#[derive(Subcommand, Debug)]
pub enum TopicsCmd {
    /// List topics with offsets, bytes and group lag (default).
    List,
    /// Create a topic.
    Create {
        name: String,
        #[arg(long)]
        partitions: Option<u32>,
        /// Further settings as JSON, e.g. '{"limits":{"max_messages":1000,"on_full":"reject"}}'.
        #[arg(long)]
        settings: Option<String>,
    },
    /// Show one topic as JSON.
    Describe { name: String },
    /// Delete a topic and its groups.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum GroupsCmd {
    /// Groups of a topic (or of every topic) with their lag.
    List { topic: Option<String> },
    /// One group as JSON.
    Describe { topic: String, group: String },
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Key of every record.
    #[arg(long)]
    pub key: Option<String>,
    /// Header `name=value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    #[arg(long)]
    pub group: String,
    /// `stream` (publish/subscribe, default) or `queue` (competing consumers).
    #[arg(long, default_value = "stream")]
    pub mode: String,
    /// Where a new stream group starts: earliest or latest.
    #[arg(long, default_value = "earliest")]
    pub from: String,
    /// Keep waiting for new records instead of exiting at the end.
    #[arg(long)]
    pub follow: bool,
    /// Print each record as JSON (partition, offset, key, value, headers).
    #[arg(long)]
    pub json: bool,
    /// Stop after this many records.
    #[arg(long)]
    pub max: Option<u64>,
}

pub(crate) fn client(api: &ApiArgs) -> Result<Client, ClientError> {
    Client::new(
        &api.api,
        std::env::var("SLUICE_TOKEN").ok().filter(|t| !t.is_empty()),
    )
}

pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("error: cannot start the runtime: {e}"))
        .ok()
}

pub(crate) fn finish(r: Result<(), ClientError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.status == 0 { 4 } else { 1 })
        }
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// `sluice topics …`.
pub fn topics(api: &ApiArgs, cmd: Option<TopicsCmd>) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::from(4);
    };
    finish(rt.block_on(async {
        let c = client(api)?;
        match cmd.unwrap_or(TopicsCmd::List) {
            TopicsCmd::List => {
                let v = c.list_topics().await?;
                println!(
                    "{:<32} {:>5} {:>12} {:>12}  GROUPS (lag)",
                    "TOPIC", "PARTS", "RECORDS", "BYTES"
                );
                for t in v["topics"].as_array().into_iter().flatten() {
                    let groups: Vec<String> = t["groups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|g| {
                            format!(
                                "{}:{}({})",
                                g["group"].as_str().unwrap_or(""),
                                g["mode"].as_str().unwrap_or(""),
                                g["lag"]
                            )
                        })
                        .collect();
                    println!(
                        "{:<32} {:>5} {:>12} {:>12}  {}",
                        t["name"].as_str().unwrap_or(""),
                        t["partitions"].as_array().map_or(0, |a| a.len()),
                        t["records"],
                        t["bytes"],
                        groups.join(" ")
                    );
                }
            }
            TopicsCmd::Create {
                name,
                partitions,
                settings,
            } => {
                let mut s: Value = match settings {
                    Some(text) => serde_json::from_str(&text).map_err(|e| ClientError {
                        status: 0,
                        code: "usage".into(),
                        message: format!("--settings is not JSON: {e}"),
                        retry_after: None,
                    })?,
                    None => json!({}),
                };
                if let (Some(n), Some(m)) = (partitions, s.as_object_mut()) {
                    m.insert("partitions".into(), json!(n));
                }
                print_json(&c.create_topic(&name, &s).await?);
            }
            TopicsCmd::Describe { name } => print_json(&c.describe_topic(&name).await?),
            TopicsCmd::Delete { name } => print_json(&c.delete_topic(&name).await?),
        }
        Ok(())
    }))
}

/// `sluice groups …`.
pub fn groups(api: &ApiArgs, cmd: Option<GroupsCmd>) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::from(4);
    };
    finish(rt.block_on(async {
        let c = client(api)?;
        match cmd.unwrap_or(GroupsCmd::List { topic: None }) {
            GroupsCmd::List { topic } => {
                let topics: Vec<String> = match topic {
                    Some(t) => vec![t],
                    None => c.list_topics().await?["topics"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t["name"].as_str().map(str::to_string))
                        .collect(),
                };
                println!(
                    "{:<32} {:<24} {:<6} {:>10}",
                    "TOPIC", "GROUP", "MODE", "LAG"
                );
                for t in topics {
                    let v = c.list_groups(&t).await?;
                    for g in v["groups"].as_array().into_iter().flatten() {
                        println!(
                            "{:<32} {:<24} {:<6} {:>10}",
                            t,
                            g["group"].as_str().unwrap_or(""),
                            g["mode"].as_str().unwrap_or(""),
                            g["lag"]
                        );
                    }
                }
            }
            GroupsCmd::Describe { topic, group } => {
                print_json(&c.describe_group(&topic, &group).await?)
            }
        }
        Ok(())
    }))
}

/// `sluice produce TOPIC`: one record per stdin line, in batches of up to 1000.
pub fn produce(api: &ApiArgs, a: ProduceArgs) -> ExitCode {
    let mut headers = serde_json::Map::new();
    for h in &a.headers {
        let Some((k, v)) = h.split_once('=') else {
            eprintln!("error: --header takes name=value, not {h:?}");
            return ExitCode::from(2);
        };
        headers.insert(k.to_string(), json!(v));
    }
    let Some(rt) = runtime() else {
        return ExitCode::from(4);
    };
    finish(rt.block_on(async {
        let c = client(api)?;
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        let mut total = 0usize;
        loop {
            let mut batch = Vec::new();
            for line in lines.by_ref() {
                let line = line.map_err(|e| ClientError {
                    status: 0,
                    code: "stdin".into(),
                    message: e.to_string(),
                    retry_after: None,
                })?;
                let mut r = json!({ "value": line });
                if let Some(k) = &a.key {
                    r["key"] = json!(k);
                }
                if !headers.is_empty() {
                    r["headers"] = Value::Object(headers.clone());
                }
                batch.push(r);
                if batch.len() >= 1000 {
                    break;
                }
            }
            if batch.is_empty() {
                break;
            }
            loop {
                match c.produce(&a.topic, &batch).await {
                    Ok(_) => break,
                    Err(e) if e.status == 429 => {
                        let s = e.retry_after.unwrap_or(1);
                        tokio::time::sleep(std::time::Duration::from_secs(s)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            total += batch.len();
        }
        eprintln!("produced {total} records to {}", a.topic);
        Ok(())
    }))
}

/// `sluice consume TOPIC --group G`: prints values (or JSON records), then
/// commits (stream) or acks (queue) what it printed.
pub fn consume(api: &ApiArgs, a: ConsumeArgs) -> ExitCode {
    let queue = match a.mode.as_str() {
        "stream" => false,
        "queue" => true,
        m => {
            eprintln!("error: --mode is stream or queue, not {m:?}");
            return ExitCode::from(2);
        }
    };
    let Some(rt) = runtime() else {
        return ExitCode::from(4);
    };
    finish(rt.block_on(async {
        let c = client(api)?;
        let mut seen = 0u64;
        let mut out = std::io::stdout().lock();
        loop {
            let left = a.max.map_or(1000, |m| m.saturating_sub(seen).min(1000)) as usize;
            if left == 0 {
                break;
            }
            let o = PullOptions {
                queue,
                max: left,
                wait_ms: if a.follow { 30_000 } else { 0 },
                from: Some(a.from.clone()),
                ..Default::default()
            };
            let p = c.pull(&a.topic, &a.group, &o).await?;
            if p.records.is_empty() {
                if a.follow {
                    continue;
                }
                break;
            }
            for r in &p.records {
                if a.json {
                    let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default());
                } else {
                    let _ = out.write_all(&r.value_bytes());
                    let _ = out.write_all(b"\n");
                }
            }
            let _ = out.flush();
            seen += p.records.len() as u64;
            if queue {
                let leases: Vec<String> =
                    p.records.iter().filter_map(|r| r.lease.clone()).collect();
                c.settle(&a.topic, &a.group, &leases, true).await?;
            } else {
                let offs: Vec<(u32, u64)> = p
                    .commit
                    .iter()
                    .filter_map(|v| Some((v["partition"].as_u64()? as u32, v["offset"].as_u64()?)))
                    .collect();
                c.commit(&a.topic, &a.group, None, &offs).await?;
            }
        }
        Ok(())
    }))
}
