//! Kafka headers of a record: the record's own headers, then (with
//! `metadata_headers`) what the source knows about it — `path` and `host`
//! of a log line, `database`, `table` and `op` of a row change. A record
//! with neither gets no header list at all (no allocation).
//! Touches only memory.

use rdkafka::message::{Header, OwnedHeaders};
use sluice_core::record::{Meta, Record};

/// The headers to send with `record`, if any.
pub fn headers_of(record: &Record, metadata: bool) -> Option<OwnedHeaders> {
    let own = record.headers.as_ref().map_or(0, |h| h.len());
    let meta = match (&record.meta, metadata) {
        (Meta::Log(_), true) => 2,
        (Meta::Row(_), true) => 3,
        _ => 0,
    };
    if own + meta == 0 {
        return None;
    }
    let mut out = OwnedHeaders::new_with_capacity(own + meta);
    if let Some(h) = &record.headers {
        for (k, v) in h.iter() {
            out = out.insert(Header {
                key: k,
                value: Some(&v[..]),
            });
        }
    }
    if metadata {
        let add = |out: OwnedHeaders, key: &str, value: &str| {
            out.insert(Header {
                key,
                value: Some(value.as_bytes()),
            })
        };
        match &record.meta {
            Meta::Log(l) => {
                out = add(out, "path", &l.path);
                out = add(out, "host", &l.host);
            }
            Meta::Row(r) => {
                out = add(out, "database", &r.source.db);
                out = add(out, "table", &r.source.table);
                out = add(out, "op", r.op.as_str());
            }
            Meta::None => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rdkafka::message::Headers;
    use sluice_core::record::LogMeta;

    use super::*;

    #[test]
    fn own_then_metadata_headers() {
        let mut r = Record::from_value("x");
        assert!(headers_of(&r, true).is_none());
        r.headers = Some(Arc::new(vec![("trace".into(), "abc".into())]));
        r.meta = Meta::Log(LogMeta {
            path: "/var/log/a.log".into(),
            host: "h1".into(),
            offset: 0,
            truncated: false,
        });
        let h = headers_of(&r, true).unwrap();
        let got: Vec<(String, Vec<u8>)> = h
            .iter()
            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
            .collect();
        assert_eq!(got[0], ("trace".into(), b"abc".to_vec()));
        assert_eq!(got[1], ("path".into(), b"/var/log/a.log".to_vec()));
        assert_eq!(got[2], ("host".into(), b"h1".to_vec()));
        assert_eq!(headers_of(&r, false).unwrap().count(), 1);
    }
}
