//! sluice-core: records, the config model, bounded queues, the router,
//! acknowledgements, checkpoints, metrics and the Source/Sink traits. Every
//! component crate depends on this one and on nothing else of ours.

pub mod ack;
pub mod checkpoint;
pub mod component;
pub mod condition;
pub mod config;
pub mod encode;
pub mod engine;
pub mod key;
pub mod metrics;
pub mod process;
pub mod queue;
pub mod record;
pub mod schema;
pub mod tap;
pub mod template;

pub use ack::{AckRef, AckStatus, AckTracker};
pub use component::{
    BuildContext, Registry, Resources, Sink, SinkBatch, SinkError, SinkFactory, Source,
    SourceContext, SourceFactory,
};
pub use engine::{Control, Pipeline, PipelineHandle, PipelineState, ReloadReport, SinkSettings};
pub use record::{Batch, Meta, Record};
