//! `sluice validate` through the binary: every pipeline shipped in
//! `pipelines/` validates, and a broken file exits 1 naming file:line:column.

mod support;

use std::process::Command;

#[test]
fn every_shipped_pipeline_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let out = Command::new(support::sluice_bin())
                .arg("validate")
                .arg(&path)
                .env("MYSQL_PASSWORD", "x")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} does not validate:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 1, "no pipelines found in {}", dir.display());
}

#[test]
fn an_unknown_key_exits_1_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "sources:\n  gen:\n    type: generator\nsinks:\n  out:\n    type: console\n    inputs: [gen]\n    encodng: json\n",
    )
    .unwrap();
    let out = Command::new(support::sluice_bin())
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.yaml:8:5"), "{stderr}");
    assert!(stderr.contains("encoding"), "no hint: {stderr}");
}
