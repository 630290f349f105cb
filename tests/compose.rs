//! `docker-compose.yml` without a Docker engine: the file parses (with
//! saphyr-parser, as the pipeline loader does), every service has an image
//! or a build whose Dockerfile builds the `sluice` binary, every file it
//! mounts exists in the repository, every mounted pipeline passes
//! `sluice validate` with the environment compose gives that service, the
//! URLs and brokers name services and users that exist, and MySQL runs
//! with the binlog settings the `mysql` source requires.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use saphyr_parser::{Event, Parser};
use serde_json::{Map, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// YAML (one document, no anchors needed) → JSON, scalars as strings.
fn yaml_to_json(text: &str) -> Value {
    let mut parser = Parser::new_from_str(text);
    let mut next = move || -> Event<'_> {
        match parser.next_event() {
            Some(Ok((ev, _))) => ev,
            Some(Err(e)) => panic!("docker-compose.yml: invalid YAML: {e}"),
            None => panic!("docker-compose.yml: unexpected end"),
        }
    };
    fn node<'a>(ev: Event<'a>, next: &mut dyn FnMut() -> Event<'a>) -> Value {
        match ev {
            Event::Scalar(t, ..) => Value::String(t.to_string()),
            Event::SequenceStart(..) => {
                let mut items = Vec::new();
                loop {
                    match next() {
                        Event::SequenceEnd => return Value::Array(items),
                        ev => items.push(node(ev, next)),
                    }
                }
            }
            Event::MappingStart(..) => {
                let mut map = Map::new();
                loop {
                    let key = match next() {
                        Event::MappingEnd => return Value::Object(map),
                        Event::Scalar(t, ..) => t.to_string(),
                        other => panic!("docker-compose.yml: non-scalar key {other:?}"),
                    };
                    let v = node(next(), next);
                    assert!(
                        map.insert(key.clone(), v).is_none(),
                        "docker-compose.yml: key {key} twice"
                    );
                }
            }
            other => panic!("docker-compose.yml: unsupported YAML ({other:?})"),
        }
    }
    loop {
        match next() {
            Event::StreamStart | Event::DocumentStart(_) => {}
            ev => return node(ev, &mut next),
        }
    }
}

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml"))
        .expect("docker-compose.yml at the repository root");
    yaml_to_json(&text)
}

/// A service's environment after compose's own `${VAR:-default}`
/// interpolation with nothing set in the shell (the defaults).
fn environment(service: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    match &service["environment"] {
        Value::Object(m) => {
            for (k, v) in m {
                let v = v.as_str().unwrap_or_default();
                let v = sluice_core::config::interpolate(v, &|_| None)
                    .unwrap_or_else(|(_, e)| panic!("environment {k}: {e}"));
                env.insert(k.clone(), v);
            }
        }
        Value::Null => {}
        other => panic!("environment must be a mapping here, not {other}"),
    }
    env
}

/// Bind mounts of a service: (repository path, container path).
fn bind_mounts(service: &Value) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for v in service["volumes"].as_array().into_iter().flatten() {
        let spec = v.as_str().expect("short volume syntax");
        let mut parts = spec.split(':');
        let (src, dst) = (parts.next().unwrap(), parts.next().expect("volume target"));
        if src.starts_with("./") {
            out.push((repo().join(src), dst.to_string()));
        }
    }
    out
}

fn services(c: &Value) -> &Map<String, Value> {
    c["services"].as_object().expect("services")
}

#[test]
fn every_service_has_an_image_or_a_build_of_the_sluice_binary() {
    let c = compose();
    let s = services(&c);
    for name in ["mysql", "kafka", "sluice-logs", "sluice-binlog"] {
        assert!(s.contains_key(name), "no service {name}");
    }
    for (name, svc) in s {
        let build = &svc["build"];
        assert!(
            svc["image"].is_string() || !build.is_null(),
            "{name}: neither image nor build"
        );
        if let Some(ctx) = build.as_str() {
            let dockerfile = repo().join(ctx).join("Dockerfile");
            let text = std::fs::read_to_string(&dockerfile)
                .unwrap_or_else(|e| panic!("{name}: {}: {e}", dockerfile.display()));
            assert!(
                text.lines()
                    .any(|l| l.starts_with("FROM ") && l.contains(" AS build")),
                "{name}: the Dockerfile has no build stage"
            );
            assert!(
                text.contains("cargo build --release --locked --bin sluice"),
                "{name}: the Dockerfile does not build the sluice binary"
            );
            assert!(
                text.contains("COPY --from=build /src/target/release/sluice"),
                "{name}: the final stage does not take the sluice binary"
            );
        }
        for dep in svc["depends_on"]
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
        {
            assert!(
                s.contains_key(dep),
                "{name} depends on unknown service {dep}"
            );
        }
        for v in svc["volumes"].as_array().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if !src.starts_with('.') && !src.starts_with('/') {
                assert!(
                    c["volumes"]
                        .as_object()
                        .is_some_and(|m| m.contains_key(src)),
                    "{name}: named volume {src} is not declared"
                );
            }
        }
    }
}

#[test]
fn every_mounted_file_exists_and_every_mounted_pipeline_validates() {
    let c = compose();
    let mut pipelines = 0;
    for (name, svc) in services(&c) {
        let mounts = bind_mounts(svc);
        for (src, _) in &mounts {
            assert!(
                src.exists(),
                "{name}: mounts {} which is not in the repository",
                src.display()
            );
        }
        let Some(cmd) = svc["command"].as_array() else {
            continue;
        };
        let args: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
        if svc["build"].is_null() || args.first() != Some(&"run") {
            continue;
        }
        // `run -c FILE…`: each FILE is a mounted repository file.
        let env = environment(svc);
        for w in args.windows(2).filter(|w| w[0] == "-c") {
            let (file, _) = mounts
                .iter()
                .find(|(_, dst)| dst == w[1])
                .unwrap_or_else(|| panic!("{name}: {} is not mounted from the repository", w[1]));
            let out = Command::new(support::sluice_bin())
                .arg("validate")
                .arg(file)
                .env_clear()
                .envs(&env)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: {} does not validate with the service's environment {env:?}:\n{}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            pipelines += 1;
        }
    }
    assert_eq!(
        pipelines, 2,
        "the two scenario pipelines are mounted and run"
    );
}

/// `mysql://user:password@host:port…` → (user, password, host, port).
fn mysql_url(url: &str) -> (String, String, String, String) {
    let rest = url.strip_prefix("mysql://").expect("a mysql:// URL");
    let (cred, hostpart) = rest.split_once('@').expect("credentials in the URL");
    let (user, pass) = cred.split_once(':').expect("user:password");
    let hostport = hostpart.split('/').next().unwrap();
    let (host, port) = hostport.split_once(':').expect("host:port");
    (user.into(), pass.into(), host.into(), port.into())
}

#[test]
fn urls_and_brokers_name_services_users_and_listeners_that_exist() {
    let c = compose();
    let s = services(&c);
    let init = std::fs::read_to_string(repo().join("docker/mysql/init.sql")).unwrap();
    let binlog = environment(&s["sluice-binlog"]);
    for var in ["PRIMARY_URL", "REPLICA_URL"] {
        let (user, pass, host, port) = mysql_url(&binlog[var]);
        assert!(s.contains_key(&host), "{var}: no service {host}");
        assert_eq!(port, "3306", "{var}");
        assert!(
            init.contains(&format!(
                "CREATE USER '{user}'@'%' IDENTIFIED WITH mysql_native_password BY '{pass}'"
            )),
            "{var}: docker/mysql/init.sql does not create {user} with that password"
        );
    }
    let logs = environment(&s["sluice-logs"]);
    let (host, port) = logs["KAFKA_BROKERS"].split_once(':').unwrap();
    assert!(s.contains_key(host), "KAFKA_BROKERS: no service {host}");
    let kafka = environment(&s[host]);
    assert!(
        kafka["KAFKA_ADVERTISED_LISTENERS"].contains(&format!("//{host}:{port}")),
        "Kafka does not advertise {host}:{port}"
    );
    assert!(
        kafka["KAFKA_PROCESS_ROLES"].contains("controller"),
        "Kafka is not a KRaft controller itself"
    );
    // The API beyond loopback needs a token, and the default one is set.
    assert!(!logs["SLUICE_TOKEN"].is_empty());
}

#[test]
fn mysql_has_the_binlog_the_source_requires() {
    let c = compose();
    let mysql = &services(&c)["mysql"];
    assert!(mysql["image"].as_str().unwrap().starts_with("mysql:8"));
    let args: Vec<&str> = mysql["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for need in [
        "--binlog-format=ROW",
        "--binlog-row-image=FULL",
        "--binlog-row-metadata=FULL",
        "--gtid-mode=ON",
        "--enforce-gtid-consistency=ON",
    ] {
        assert!(args.contains(&need), "mysql is not started with {need}");
    }
    let mounts = bind_mounts(mysql);
    assert!(
        mounts
            .iter()
            .any(|(src, dst)| src.ends_with("docker/mysql/init.sql")
                && dst.starts_with("/docker-entrypoint-initdb.d/")),
        "the init SQL is not mounted into /docker-entrypoint-initdb.d"
    );
}
