//! The component registry: every source and sink type the binary knows,
//! built-in ones here and those of the component crates. The only place
//! that knows every component.

mod blackhole;
mod console;
mod file_sink;
mod generator;
mod http_source;
mod stdin;
mod store_settings;
mod store_sink;
mod store_source;

pub use store_settings::TopicSettings;

use sluice_core::Registry;

/// The registry of every component type.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.add_source(generator::GeneratorFactory);
    r.add_source(stdin::StdinFactory);
    r.add_source(http_source::HttpSourceFactory);
    r.add_source(store_source::StoreSourceFactory);
    r.add_source(sluice_mysql::MysqlSourceFactory);
    r.add_source(sluice_file::FileSourceFactory);
    r.add_source(sluice_kafka::KafkaSourceFactory);
    r.add_sink(blackhole::BlackholeFactory);
    r.add_sink(store_sink::StoreSinkFactory);
    r.add_sink(sluice_kafka::KafkaSinkFactory);
    r.add_sink(sluice_mysql::apply::MysqlApplyFactory);
    r.add_sink(sluice_mysql::apply::PostgresApplyFactory);
    r.add_sink(console::ConsoleFactory);
    r.add_sink(file_sink::FileSinkFactory);
    r
}
