//! `sluice status`: a one-shot summary of a running daemon's components
//! (records in and out, queue fill, drops, errors, lag, snapshot progress),
//! as a table or `--json`, over the API. Touches stdout and the network.

use std::process::ExitCode;

use serde_json::Value;

use crate::cli::{client, finish, runtime, ApiArgs};

/// Renders `/api/v1/components` as a table.
pub fn table(components: &Value) -> String {
    let mut out = format!(
        "{:<20} {:<6} {:<10} {:>12} {:>12} {:>13} {:>9} {:>7} {:>10}\n",
        "COMPONENT", "KIND", "TYPE", "IN", "OUT", "QUEUE", "DROPPED", "ERRORS", "LAG"
    );
    for c in components["components"].as_array().into_iter().flatten() {
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        let dropped = n("dropped_queue_full") + n("rejected_queue_full") + n("dropped_on_error");
        let queue = format!("{}/{}", n("queue_events"), n("queue_max_events"));
        out.push_str(&format!(
            "{:<20} {:<6} {:<10} {:>12} {:>12} {:>13} {:>9} {:>7} {:>10}\n",
            c["name"].as_str().unwrap_or("?"),
            c["kind"].as_str().unwrap_or("?"),
            c["type"].as_str().unwrap_or("?"),
            n("records_in"),
            n("records_out"),
            queue,
            dropped,
            n("errors"),
            c["checkpoint_lag"].as_i64().unwrap_or(0),
        ));
        if let Some(s) = c.get("snapshot").filter(|s| !s.is_null()) {
            out.push_str(&format!(
                "  snapshot: {} of ~{} rows, {} rows/s{}\n",
                s["rows_done"],
                s["rows_estimated"],
                s["rows_per_sec"],
                if s["finished"].as_bool() == Some(true) {
                    ", finished".to_string()
                } else {
                    format!(", ETA {} s", s["eta_secs"])
                }
            ));
        }
    }
    out
}

/// `sluice status [--json]`.
pub fn status(api: &ApiArgs, json: bool) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::from(4);
    };
    finish(rt.block_on(async {
        let v = client(api)?.components().await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print!("{}", table(&v));
        }
        Ok(())
    }))
}
