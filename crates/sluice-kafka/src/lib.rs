//! sluice-kafka: the Kafka sink and source of sluice, on librdkafka.
//!
//! * [`KafkaSinkFactory`] (`type: kafka` sink, [`sink`]): a record is
//!   acknowledged to its source only on its broker delivery report;
//!   `acks=all`, idempotent producer, no message timeout by default.
//! * [`KafkaSourceFactory`] (`type: kafka` source, [`source`]): consumer
//!   group member committing only acknowledged offsets ([`offsets`]).
//!
//! Modules: [`options`] (the pipeline keys), [`client`] (librdkafka config,
//! logging, healthcheck), [`headers`] (message headers of a record; keys
//! come from `sluice_core::key`), [`delivery`] (delivery reports). Depends on `sluice-core`
//! only; the binary registers the factories.

pub mod client;
pub mod delivery;
pub mod headers;
pub mod offsets;
pub mod options;
pub mod sink;
pub mod source;

pub use sink::{KafkaSink, KafkaSinkFactory};
pub use source::{KafkaSource, KafkaSourceFactory};
