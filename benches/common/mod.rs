//! Helpers shared by the root crate's benchmarks: numeric settings from
//! the environment and this process's CPU time and peak RSS. Touches
//! nothing but the process's own accounting.

/// The environment variable `name` as a number, else `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (user + system CPU seconds, peak RSS in KiB) of this process.
pub fn usage() -> (f64, i64) {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_maxrss)
}

/// A pipeline built from `yaml` as the daemon builds one: written to
/// `dir/pipeline.yaml`, loaded through the real registry, with the
/// embedded store opened under its `data_dir` (returned too).
pub fn pipeline_from_yaml(
    dir: &std::path::Path,
    yaml: &str,
) -> (sluice_core::Pipeline, std::sync::Arc<sluice_store::Store>) {
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, yaml).unwrap();
    let registry = sluice::components::registry();
    let cfg = match sluice_core::config::load(&[&file], &registry) {
        Ok(c) => c,
        Err(e) => panic!("bench pipeline does not load: {e:?}"),
    };
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let resources = sluice_core::Resources::default();
    let store = std::sync::Arc::new(
        sluice_store::Store::open(
            cfg.data_dir.join("store"),
            sluice_store::StoreOptions::default(),
        )
        .unwrap(),
    );
    resources.insert(store.clone());
    match sluice_core::Pipeline::from_config(&cfg, &registry, resources) {
        Ok(p) => (p, store),
        Err(e) => panic!("bench pipeline does not build: {e:?}"),
    }
}
