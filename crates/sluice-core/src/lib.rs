//! sluice-core: records, config model, queue, router, acknowledgements, checkpoints, metrics and the Source/Sink traits.
