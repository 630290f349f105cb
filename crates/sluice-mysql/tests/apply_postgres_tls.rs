//! TLS to PostgreSQL targets, against throwaway PostgreSQL servers
//! (`support/postgres.rs`) with certificates from a test CA: a MariaDB
//! binlog applied over `sslmode=verify-full` (the server refuses
//! plaintext TCP) and `verify` passes over TLS; `sslmode=require` against
//! a server without SSL, `verify-full` with the wrong CA and with a
//! certificate for another host fail with errors naming the host, the
//! mode and the cause; a server with `cert` authentication takes a client
//! certificate (`sslcert` / `sslkey`) and refuses none or a stranger's.

mod apply_common;
#[path = "support/postgres.rs"]
mod pg_server;
mod support;

use std::time::Duration;

use apply_common::*;
use pg_server::{PgServer, TestCa};
use serde_json::json;
use sluice_mysql::apply::target::Conn;
use sluice_mysql::apply::Dialect;
use sluice_mysql::verify;

async fn connect_err(url: &str) -> String {
    match Conn::connect(Dialect::Postgres, url).await {
        Ok(_) => panic!("{url}: connected"),
        Err(e) => {
            eprintln!("{url}: {}", e.message);
            e.message
        }
    }
}

/// verify's outcome: (equal, the report or the error).
async fn verify_text(opts: verify::VerifyOptions) -> (bool, String) {
    match verify::run(opts).await {
        Ok(r) => (r.is_equal(), printed(&r)),
        Err(e) => (false, format!("{e:#}")),
    }
}

async fn one(url: &str, sql: &str) -> Option<String> {
    let mut c = Conn::connect(Dialect::Postgres, url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let rows = c.rows(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.first().and_then(|r| r.first().cloned()).flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_over_verify_full_tls_then_verify_passes() {
    let ca = TestCa::new("sluice test CA");
    let server = PgServer::start(Some(&ca.server_cert(&["localhost", "127.0.0.1"])));
    let ca_file = ca.write(&server.dir().join("ca.pem"));
    let url = server.url(&format!("?sslmode=verify-full&sslrootcert={ca_file}"));
    // Our connection is TLS; plaintext TCP is refused by pg_hba.
    let ssl = one(
        &url,
        "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(ssl.as_deref(), Some("true"));
    let e = connect_err(&server.url("?sslmode=disable")).await;
    assert!(
        e.contains(&format!("127.0.0.1:{} (sslmode=disable)", server.port))
            && e.contains("pg_hba.conf"),
        "{e}"
    );

    let primary = primary();
    let dir = tempfile::tempdir().unwrap();
    let start = master_pos(&primary).await;
    primary.exec(SCHEMA).await;
    let sinks = vec![(
        "pg_tls",
        "postgres",
        json!({"url": url, "create_tables": true, "source_url": primary.url(),
               "parallelism": 2}),
    )];
    let (control, task) = spawn(pipeline(dir.path(), &primary, &start, &sinks));
    // Steps 0..100 hold no DDL.
    workload(&primary, 5, 0, 100, Duration::ZERO).await;
    let r = wait_equal(
        &verify_opts(&primary, &url, "shop"),
        Duration::from_secs(120),
    )
    .await;
    if !r.is_equal() && task.is_finished() {
        panic!("the pipeline stopped: {:?}", task.await);
    }
    assert!(r.is_equal(), "{}", printed(&r));
    let n = one(
        &url,
        "SELECT COUNT(*) || '/' || COUNT(DISTINCT seq) FROM shop.ledger",
    )
    .await;
    assert_eq!(n.as_deref(), Some("100/100"));
    control.shutdown.cancel();
    task.await.unwrap().expect("pipeline ends cleanly");

    // verify against the same server over plaintext fails, naming it.
    let (equal, text) = verify_text(verify_opts(
        &primary,
        &server.url("?sslmode=disable"),
        "shop",
    ))
    .await;
    assert!(!equal && text.contains("pg_hba.conf"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_against_a_server_without_ssl_fails_clearly() {
    let server = PgServer::start(None);
    let e = connect_err(&server.url("?sslmode=require")).await;
    assert!(
        e.contains(&format!(
            "PostgreSQL 127.0.0.1:{} (sslmode=require)",
            server.port
        )) && e.contains("does not support SSL"),
        "{e}"
    );
    // key=value form, verify-full: same.
    let kv = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        server.port,
        server.dir().join("missing-ca.pem").display()
    );
    let e = connect_err(&kv).await;
    assert!(e.contains("missing-ca.pem"), "{e}");
    // prefer (the default) connects without TLS.
    let ssl = one(
        &server.url(""),
        "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(ssl.as_deref(), Some("false"));
    let primary = primary();
    primary.exec(SCHEMA).await;
    let (equal, text) = verify_text(verify_opts(
        &primary,
        &server.url("?sslmode=require"),
        "shop",
    ))
    .await;
    assert!(
        !equal && text.contains("does not support SSL"),
        "verify: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_and_wrong_host_fail_clearly() {
    let ca = TestCa::new("sluice test CA");
    let other = TestCa::new("some other CA");
    // A certificate for another host name only.
    let server = PgServer::start(Some(&ca.server_cert(&["db.invalid"])));
    let right = ca.write(&server.dir().join("ca.pem"));
    let wrong = other.write(&server.dir().join("other-ca.pem"));

    let e = connect_err(&server.url(&format!("?sslmode=verify-full&sslrootcert={wrong}"))).await;
    assert!(
        e.contains(&format!(
            "PostgreSQL 127.0.0.1:{} (sslmode=verify-full)",
            server.port
        )) && e.contains("not trusted")
            && e.contains(&wrong),
        "{e}"
    );
    let e = connect_err(&server.url(&format!("?sslmode=verify-ca&sslrootcert={wrong}"))).await;
    assert!(
        e.contains("(sslmode=verify-ca)") && e.contains("not trusted"),
        "{e}"
    );
    let e = connect_err(&server.url(&format!("?sslmode=verify-full&sslrootcert={right}"))).await;
    assert!(
        e.contains("(sslmode=verify-full)") && e.contains("does not name the host `127.0.0.1`"),
        "{e}"
    );
    // verify-ca checks the chain only; require (no CA) encrypts only.
    for q in [
        format!("?sslmode=verify-ca&sslrootcert={right}"),
        "?sslmode=require".to_string(),
    ] {
        let ssl = one(
            &server.url(&q),
            "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .await;
        assert_eq!(ssl.as_deref(), Some("true"), "{q}");
    }
    // require with a CA file verifies the chain (as libpq does).
    let e = connect_err(&server.url(&format!("?sslmode=require&sslrootcert={wrong}"))).await;
    assert!(e.contains("not trusted"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_authentication() {
    let ca = TestCa::new("sluice test CA");
    let other = TestCa::new("some other CA");
    let mut cert = ca.server_cert(&["localhost", "127.0.0.1"]);
    // `hostssl … cert`: the client's certificate is its password.
    cert.client_ca_pem = Some(ca.pem());
    let server = PgServer::start(Some(&cert));
    let dir = server.dir().to_path_buf();
    let ca_file = ca.write(&dir.join("ca.pem"));
    let write_pair = |name: &str, (c, k): (String, String)| {
        let (cf, kf) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cf, c).unwrap();
        std::fs::write(&kf, k).unwrap();
        (cf.display().to_string(), kf.display().to_string())
    };
    let (crt, key) = write_pair("postgres", ca.client_cert("postgres"));
    let (bad_crt, bad_key) = write_pair("stranger", other.client_cert("postgres"));
    let base = format!("?sslmode=verify-full&sslrootcert={ca_file}");

    let e = connect_err(&server.url(&base)).await;
    assert!(
        e.contains(&format!("127.0.0.1:{}", server.port)) && e.contains("certificate"),
        "{e}"
    );
    let e = connect_err(&server.url(&format!("{base}&sslcert={bad_crt}&sslkey={bad_key}"))).await;
    assert!(
        e.contains("refused the client certificate") && e.contains(&bad_crt),
        "{e}"
    );
    let e = connect_err(&server.url(&format!("{base}&sslcert={crt}"))).await;
    assert!(e.contains("sslkey is not"), "{e}");

    let url = server.url(&format!("{base}&sslcert={crt}&sslkey={key}"));
    let dn = one(
        &url,
        "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await;
    assert!(
        dn.as_deref().is_some_and(|d| d.contains("CN=postgres")),
        "{dn:?}"
    );
    // The sink's connection: the position table is created over it.
    let mut c = Conn::connect(Dialect::Postgres, &url).await.unwrap();
    c.ensure_position_table("sluice", "sluice_apply_position")
        .await
        .unwrap();
    let n = one(
        &url,
        "SELECT count(*)::text FROM information_schema.tables WHERE table_name = 'sluice_apply_position'",
    )
    .await;
    assert_eq!(n.as_deref(), Some("1"));
}
