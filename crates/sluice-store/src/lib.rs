//! sluice-store: the embedded log store of sluice — an append-only, segmented,
//! checksummed log on local disk with topics, partitions and consumer groups, in the
//! manner of Kafka's log, embedded. No pipeline or network code lives here.
//!
//! ```text
//! <dir>/.lock, .clean_shutdown
//! <dir>/<topic>/topic.json                      TopicConfig
//! <dir>/<topic>/<partition>/<base>.log          frames (see frame.rs)
//! <dir>/<topic>/<partition>/<base>.index        sparse offset → position
//! <dir>/<topic>/<partition>/<base>.timeindex    max timestamp → offset
//! <dir>/<topic>/<partition>/log_start           first retained offset
//! <dir>/<topic>/groups/<group>.{stream,queue}.json
//! ```
//!
//! Start at [`Store::open`], then [`Store::create_topic`] / [`Store::topic`], and
//! [`Topic::append`] / [`Topic::read`] / [`Topic::wait_for`]; consumer groups via
//! [`Topic::stream_group`] and [`Topic::queue_group`].
//!
//! ```
//! use sluice_store::{Record, Store, StoreOptions, TopicConfig};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), StoreOptions::default())?;
//! let topic = store.get_or_create_topic("orders", TopicConfig::with_partitions(2))?;
//! // One write per partition; acknowledge upstream only once the covering fsync is done.
//! for receipt in topic.append_routed(vec![Record::with_key("id-1", "hello")])? {
//!     receipt.wait_durable_blocking()?; // or `.wait_durable().await` in async code
//! }
//! let p = topic.partition_for(Some(b"id-1"));
//! let group = topic.stream_group("billing")?;
//! let records = group.poll("member-1", p, 100, 1 << 20)?;
//! assert_eq!(records[0].value, "hello");
//! group.commit("member-1", p, records[0].offset + 1)?;
//! # Ok::<(), sluice_store::StoreError>(())
//! ```
//!
//! Threading: calls do blocking file I/O (cheap positioned reads and writes); from async
//! code call them via `spawn_blocking` or accept short blocking. The async waits
//! ([`AppendReceipt::wait_durable`], [`Topic::wait_for`], [`Topic::wait_for_any`],
//! [`QueueGroup::wait`]) need a tokio runtime with the time driver.

mod atomic_file;
mod config;
mod error;
mod frame;
mod index;
mod partition;
pub mod partitioner;
mod queue_group;
mod record;
mod segment;
mod store;
mod stream_group;
mod topic;
mod writer;

pub use config::{
    validate_name, FsyncPolicy, Limits, OnFull, Retention, StoreOptions, TopicConfig,
};
pub use error::{Result, StoreError};
pub use partition::{RecoveryEvent, RecoveryKind};
pub use queue_group::{LeasedRecord, QueueConfig, QueueGroup};
pub use record::{now_ms, Header, Record, StoredRecord};
pub use store::Store;
pub use stream_group::{StreamGroup, DEFAULT_STREAM_LEASE};
pub use topic::{GroupLag, PartitionStats, Topic, TopicStats};
pub use writer::AppendReceipt;
