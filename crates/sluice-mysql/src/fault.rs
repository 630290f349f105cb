//! Stream failures sorted into the ones a reconnect can cure (I/O, killed
//! connection, server restart) and the ones it cannot (purged binlog,
//! access denied, undecodable event), each with a message that names the
//! binlog position and, for rows, the table. Touches nothing but memory.

use std::fmt;

/// A change-stream failure.
#[derive(Debug)]
pub struct Fault {
    pub retryable: bool,
    pub message: String,
}

impl Fault {
    pub fn fatal(message: impl Into<String>) -> Fault {
        Fault {
            retryable: false,
            message: message.into(),
        }
    }

    pub fn retry(message: impl Into<String>) -> Fault {
        Fault {
            retryable: true,
            message: message.into(),
        }
    }

    /// Classifies a driver error; `at` says where the stream was.
    pub fn from_driver(e: &mysql_async::Error, at: &str) -> Fault {
        match e {
            mysql_async::Error::Server(s) => match s.code {
                1236 => Fault::fatal(format!(
                    "the server cannot serve the binlog from {at}: {} (the binlog was purged past the \
                     checkpoint, or the position does not exist; use `snapshot: when_needed` to re-snapshot)",
                    s.message
                )),
                1045 | 1044 | 1142 | 1227 | 1047 | 1064 => {
                    Fault::fatal(format!("server refused at {at}: {} (error {})", s.message, s.code))
                }
                _ => Fault::retry(format!("server error at {at}: {} (error {})", s.message, s.code)),
            },
            mysql_async::Error::Url(u) => Fault::fatal(format!("bad url: {u}")),
            other => Fault::retry(format!("connection lost at {at}: {other}")),
        }
    }

    /// Classifies an error from connecting or querying (anyhow-wrapped).
    pub fn from_anyhow(e: anyhow::Error, at: &str) -> Fault {
        match e.downcast_ref::<mysql_async::Error>() {
            Some(d) => Fault::from_driver(d, at),
            None => Fault::retry(format!("{at}: {e:#}")),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fault {}
