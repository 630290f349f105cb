//! The rows of a held (prepared) XA transaction, bounded in memory: the
//! first rows are kept in memory while the decoder's budget allows, every
//! row after the first one that did not fit goes to an unnamed temporary
//! file (unlinked at creation, so it disappears with the buffer, also on a
//! crash) as length-prefixed JSON (`u32` little-endian length, then the
//! serialized [`RowChange`] with its floating-point column values as bit
//! patterns beside it, since JSON text does not bring every `f64` back
//! exactly). Rows come back in the order they were pushed, equal to what
//! went in, bit for bit. Touches memory and the spill directory.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_core::record::RowChange;

/// Where and how rows are spilled.
#[derive(Clone, Debug)]
pub struct SpillConfig {
    /// Rows of held XA transactions kept in memory per source.
    pub memory_rows: usize,
    /// Directory for the temporary files (`None`: the system's).
    pub dir: Option<PathBuf>,
}

impl Default for SpillConfig {
    fn default() -> Self {
        SpillConfig {
            memory_rows: 10_000,
            dir: None,
        }
    }
}

/// Rows pushed in order: a memory part, then (once one row did not fit)
/// a file part.
#[derive(Debug, Default)]
pub struct Spill {
    mem: VecDeque<RowChange>,
    file: Option<BufWriter<File>>,
    spilled: u64,
}

impl Spill {
    /// Appends a row; it stays in memory only when `room` and nothing was
    /// spilled yet (so the order is memory part, then file part).
    pub fn push(&mut self, mut row: RowChange, room: bool, dir: Option<&Path>) -> io::Result<()> {
        if room && self.file.is_none() {
            self.mem.push_back(row);
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let f = match dir {
                    Some(d) => tempfile::tempfile_in(d),
                    None => tempfile::tempfile(),
                }?;
                self.file.insert(BufWriter::new(f))
            }
        };
        let mut floats = Vec::new();
        for r in [&mut row.before, &mut row.after].into_iter().flatten() {
            r.values_mut().for_each(|v| floats_out(v, &mut floats));
        }
        let body = serde_json::to_vec(&(&row, &floats)).map_err(io::Error::other)?;
        let len = u32::try_from(body.len())
            .map_err(|_| io::Error::other(format!("row of {} bytes", body.len())))?;
        file.write_all(&len.to_le_bytes())?;
        file.write_all(&body)?;
        self.spilled += 1;
        Ok(())
    }

    /// Rows held in memory.
    pub fn in_memory(&self) -> usize {
        self.mem.len()
    }

    /// Rows in the file.
    pub fn spilled(&self) -> u64 {
        self.spilled
    }

    pub fn len(&self) -> u64 {
        self.mem.len() as u64 + self.spilled
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Turns the buffer into a reader of its rows, first to last.
    pub fn into_reader(self) -> io::Result<SpillReader> {
        let file = match self.file {
            Some(w) => {
                let mut f = w.into_inner().map_err(|e| e.into_error())?;
                f.seek(SeekFrom::Start(0))?;
                Some(BufReader::new(f))
            }
            None => None,
        };
        Ok(SpillReader {
            mem: self.mem,
            file,
            left: self.spilled,
            buf: Vec::new(),
        })
    }
}

/// Reads a [`Spill`]'s rows back, in order.
#[derive(Debug)]
pub struct SpillReader {
    mem: VecDeque<RowChange>,
    file: Option<BufReader<File>>,
    left: u64,
    buf: Vec<u8>,
}

impl SpillReader {
    /// The next row; `None` after the last.
    pub fn next_row(&mut self) -> io::Result<Option<RowChange>> {
        if let Some(r) = self.mem.pop_front() {
            return Ok(Some(r));
        }
        if self.left == 0 {
            return Ok(None);
        }
        let Some(f) = self.file.as_mut() else {
            return Err(io::Error::other("spilled rows without a file"));
        };
        let mut len = [0u8; 4];
        f.read_exact(&mut len)?;
        self.buf.resize(u32::from_le_bytes(len) as usize, 0);
        f.read_exact(&mut self.buf)?;
        let (mut row, floats): (RowChange, Vec<u64>) =
            serde_json::from_slice(&self.buf).map_err(io::Error::other)?;
        let mut bits = floats.into_iter();
        for r in [&mut row.before, &mut row.after].into_iter().flatten() {
            for v in r.values_mut() {
                floats_in(v, &mut bits)?;
            }
        }
        if bits.next().is_some() {
            return Err(io::Error::other("more float values than columns"));
        }
        self.left -= 1;
        if self.left == 0 {
            // Closing the unnamed file frees its space.
            self.file = None;
        }
        Ok(Some(row))
    }

    /// Rows still in memory.
    pub fn in_memory(&self) -> usize {
        self.mem.len()
    }

    /// Rows still in the file.
    pub fn spilled(&self) -> u64 {
        self.left
    }
}

/// Replaces every float in `v` by 0.0, its bits appended to `out`.
fn floats_out(v: &mut Value, out: &mut Vec<u64>) {
    match v {
        Value::Number(n) if n.is_f64() => {
            out.push(n.as_f64().unwrap_or(0.0).to_bits());
            *v = Value::from(0.0);
        }
        Value::Array(a) => a.iter_mut().for_each(|x| floats_out(x, out)),
        Value::Object(m) => m.values_mut().for_each(|x| floats_out(x, out)),
        _ => {}
    }
}

/// Puts back the floats [`floats_out`] took, in the same order.
fn floats_in(v: &mut Value, bits: &mut impl Iterator<Item = u64>) -> io::Result<()> {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = bits
                .next()
                .map(f64::from_bits)
                .and_then(serde_json::Number::from_f64)
                .ok_or_else(|| io::Error::other("a float value without its bits"))?;
            *v = Value::Number(f);
        }
        Value::Array(a) => {
            for x in a {
                floats_in(x, bits)?;
            }
        }
        Value::Object(m) => {
            for x in m.values_mut() {
                floats_in(x, bits)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::record::{ChangeSource, Op, TransactionInfo};

    fn row(i: u64, f: f64) -> RowChange {
        let mut after = serde_json::Map::new();
        after.insert("id".into(), i.into());
        after.insert("f".into(), serde_json::Number::from_f64(f).unwrap().into());
        after.insert("s".into(), format!("ü\"\n{i}").into());
        after.insert("n".into(), serde_json::Value::Null);
        after.insert(
            "json".into(),
            serde_json::json!({"a": [f, 1, {"b": f / 3.0}], "c": "x"}),
        );
        after.insert("neg".into(), (-(i as i64) - 1).into());
        after.insert("big".into(), (u64::MAX - i).into());
        RowChange {
            op: Op::Create,
            before: None,
            after: Some(after),
            source: ChangeSource {
                connector: "mysql".into(),
                server_id: 1,
                gtid: Some("0-1-7".into()),
                file: "bin.000001".into(),
                pos: 4 + i,
                row: i as u32,
                ts_ms: 1,
                db: "x".into(),
                table: "t".into(),
                snapshot: false,
            },
            ts_ms: 2,
            transaction: Some(TransactionInfo {
                id: "0-1-7".into(),
                total_order: i + 1,
                data_collection_order: i + 1,
                last: false,
            }),
            primary_key: vec!["id".into()],
            ddl: None,
        }
    }

    fn floats(i: u64) -> f64 {
        let hard = [
            0.1 + 0.2,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            -0.0,
            1.0 / 3.0,
            // Largest subnormal; one ulp above 2^53.
            f64::from_bits(0x000F_FFFF_FFFF_FFFF),
            9_007_199_254_740_994.0,
        ];
        match hard.get(i as usize) {
            Some(f) => *f,
            // Varied bit patterns, all finite.
            None => f64::from_bits(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 2),
        }
    }

    fn fill(limit: usize, n: u64) -> (Spill, Vec<RowChange>) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill::default();
        let rows: Vec<RowChange> = (0..n).map(|i| row(i, floats(i))).collect();
        for r in &rows {
            let room = s.in_memory() < limit;
            s.push(r.clone(), room, Some(dir.path())).unwrap();
            assert!(s.in_memory() <= limit);
        }
        (s, rows)
    }

    fn read_all(s: Spill) -> Vec<RowChange> {
        let mut r = s.into_reader().unwrap();
        let mut out = Vec::new();
        while let Some(x) = r.next_row().unwrap() {
            out.push(x);
        }
        assert_eq!(r.next_row().unwrap(), None);
        out
    }

    #[test]
    fn round_trip_keeps_order_and_bits() {
        let (s, rows) = fill(5, 300);
        assert_eq!((s.in_memory(), s.spilled(), s.len()), (5, 295, 300));
        let back = read_all(s);
        assert_eq!(back, rows);
        for (a, b) in back.iter().zip(&rows) {
            let f = |r: &RowChange| r.after.as_ref().unwrap()["f"].as_f64().unwrap().to_bits();
            assert_eq!(f(a), f(b));
            let g = |r: &RowChange| {
                r.after.as_ref().unwrap()["json"]["a"][2]["b"]
                    .as_f64()
                    .unwrap()
                    .to_bits()
            };
            assert_eq!(g(a), g(b));
        }
    }

    #[test]
    fn empty_and_memory_only() {
        let (s, _) = fill(5, 0);
        assert!(s.is_empty());
        assert!(read_all(s).is_empty());
        let (s, rows) = fill(0, 3);
        assert_eq!((s.in_memory(), s.spilled()), (0, 3));
        assert_eq!(read_all(s), rows);
    }

    #[test]
    fn exactly_at_the_limit_nothing_spills() {
        let (s, rows) = fill(10, 10);
        assert_eq!((s.in_memory(), s.spilled()), (10, 0));
        assert_eq!(read_all(s), rows);
        let (s, rows) = fill(10, 11);
        assert_eq!((s.in_memory(), s.spilled()), (10, 1));
        assert_eq!(read_all(s), rows);
    }

    #[test]
    fn once_spilling_rows_stay_in_the_file() {
        // Room comes back (another transaction released): order still holds.
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill::default();
        let rows: Vec<RowChange> = (0..6).map(|i| row(i, 1.5)).collect();
        for (i, r) in rows.iter().enumerate() {
            s.push(r.clone(), i != 2, Some(dir.path())).unwrap();
        }
        assert_eq!((s.in_memory(), s.spilled()), (2, 4));
        let mut reader = s.into_reader().unwrap();
        assert_eq!(reader.next_row().unwrap().as_ref(), Some(&rows[0]));
        assert_eq!((reader.in_memory(), reader.spilled()), (1, 4));
        let mut rest = Vec::new();
        while let Some(x) = reader.next_row().unwrap() {
            rest.push(x);
        }
        assert_eq!(rest, rows[1..]);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let mut s = Spill::default();
        let err = s
            .push(row(0, 1.0), false, Some(Path::new("/nonexistent/spill")))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
