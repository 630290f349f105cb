//! `sluice verify` through the binary against the machine's MariaDB
//! (127.0.0.1:3306): equal tables exit 0; a changed, a missing and an extra
//! row exit 1 and are named by primary key.

mod support;

use std::process::Command;

fn sql(statements: &str) {
    let out = Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "-e",
            statements,
        ])
        .output()
        .expect("the mariadb client (apt-get install mariadb-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn verify_exits_0_when_equal_and_names_the_keys_that_differ() {
    let tag = std::process::id();
    let (src, dst) = (format!("vsrc_{tag}"), format!("vdst_{tag}"));
    let mut rows = String::new();
    for i in 1..=2000 {
        rows.push_str(&format!("({i}, 'name-{i}', {}.5),", i * 3));
    }
    rows.pop();
    for db in [&src, &dst] {
        sql(&format!(
            "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}; \
             CREATE TABLE {db}.items (id INT PRIMARY KEY, name VARCHAR(32), price DECIMAL(10,2)); \
             INSERT INTO {db}.items VALUES {rows};"
        ));
    }
    let url = "mysql://root@127.0.0.1:3306";
    let run = || {
        Command::new(support::sluice_bin())
            .args(["verify", "--source", url, "--target", url])
            .args([
                "--tables",
                &format!("{src}.*"),
                "--database-map",
                &format!("{src}={dst}"),
            ])
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    sql(&format!(
        "UPDATE {dst}.items SET name = 'corrupted' WHERE id = 17; DELETE FROM {dst}.items WHERE id = 1234; \
         INSERT INTO {dst}.items VALUES (9999, 'extra', 1.00);"
    ));
    let out = run();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    for key in ["17", "1234", "9999"] {
        assert!(text.contains(key), "key {key} not named:\n{text}");
    }
    sql(&format!("DROP DATABASE {src}; DROP DATABASE {dst};"));
}
