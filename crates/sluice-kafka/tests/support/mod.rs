//! Test support: a real Kafka-protocol broker (tansu), the independent
//! client (confluent-kafka), a topic reader and test pipelines.
#![allow(dead_code)]

pub mod kafka;
pub mod pipeline;
pub mod python;
pub mod scenarios;
pub mod tansu;
