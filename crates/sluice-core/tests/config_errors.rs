//! One test per configuration error class, each asserting the exact
//! line:column reported (and the hint where there is one).

#[path = "config_support.rs"]
mod support;

use support::{assert_at, load, one_error, HEAD};

#[test]
fn yaml_syntax_error() {
    let e = one_error("sources:\n  gen: {type: generator\nsinks: x\n");
    assert_at(&e, 3, 6, "invalid YAML");
}

#[test]
fn unknown_top_level_key_with_hint() {
    let e = load(&format!(
        "{HEAD}snks:\n  out:\n    type: console\n    inputs: [gen]\n"
    ))
    .unwrap_err();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_at(&e[0], 1, 1, "the pipeline defines no sink");
    assert_at(&e[1], 4, 1, "unknown key `snks`");
    assert_eq!(e[1].hint.as_deref(), Some("did you mean `sinks`?"));
}

#[test]
fn unknown_common_key_with_hint() {
    let e = one_error(&format!(
        "{HEAD}    queue:\n      max_event: 5\nsinks:\n  out:\n    type: console\n    inputs: [gen]\n"
    ));
    assert_at(&e, 5, 7, "unknown key `max_event`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `max_events`?"));
}

#[test]
fn unknown_component_option_with_hint() {
    let e = one_error(
        "sources:\n  logs:\n    type: file\n    inclde: [\"/var/log/*.log\"]\n    include: [a]\nsinks:\n  out: {type: console, inputs: [logs]}\n",
    );
    assert_at(&e, 4, 5, "unknown key `inclde`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `include`?"));
}

#[test]
fn unknown_component_type_with_hint() {
    let e = load(
        "sources:\n  logs:\n    type: fiel\n    include: [a]\nsinks:\n  out: {type: consol, inputs: [logs]}\n",
    ).unwrap_err();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_at(&e[0], 3, 11, "unknown source type `fiel`");
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `file`?"));
    assert_at(&e[1], 6, 15, "unknown sink type `consol`");
    assert_eq!(e[1].hint.as_deref(), Some("did you mean `console`?"));
}

#[test]
fn missing_type() {
    let e = one_error(&format!("{HEAD}sinks:\n  out:\n    inputs: [gen]\n"));
    assert_at(&e, 5, 3, "`out` has no `type:`");
}

#[test]
fn dangling_input_name_and_glob() {
    let text = format!("{HEAD}sinks:\n  out:\n    type: console\n    inputs: [gne, \"app_*\"]\n");
    let e = load(&text).unwrap_err();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_at(&e[0], 7, 14, "input `gne` is not a source");
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `gen`?"));
    assert_at(&e[1], 7, 19, "input `app_*` matches no source");
}

#[test]
fn glob_inputs_match() {
    let text = "sources:\n  app_a: {type: stdin}\n  app_b: {type: stdin}\nsinks:\n  out: {type: console, inputs: [\"app_*\"]}\n";
    let cfg = load(text).unwrap();
    assert_eq!(cfg.sinks["out"].inputs, vec!["app_*".to_string()]);
}

#[test]
fn self_referencing_inputs() {
    let text = format!(
        "{HEAD}sinks:\n  out:\n    type: console\n    inputs:\n      - gen\n      - out\n  other:\n    type: console\n    inputs: [out]\n"
    );
    let e = load(&text).unwrap_err();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_at(&e[0], 9, 9, "lists itself");
    assert_at(&e[1], 12, 14, "`out` is a sink");
}

#[test]
fn duplicate_name_in_one_file() {
    let e = one_error(&format!(
        "{HEAD}  gen:\n    type: stdin\nsinks:\n  out: {{type: console, inputs: [gen]}}\n"
    ));
    assert_at(&e, 4, 3, "duplicate key `gen`");
    assert!(e.message.contains("p.yaml:2:3"), "{e}");
}

#[test]
fn source_and_sink_with_one_name() {
    let e = one_error(&format!(
        "{HEAD}sinks:\n  gen: {{type: console, inputs: [gen]}}\n"
    ));
    assert_at(&e, 5, 3, "sink `gen` is defined twice");
    assert!(e.message.contains("p.yaml:2:3"), "{e}");
}

#[test]
fn invalid_regex_points_inside_the_condition() {
    let e = one_error(&format!(
        "{HEAD}sinks:\n  out:\n    type: console\n    inputs: [gen]\n    where: 'message =~ \"(unclosed\"'\n"
    ));
    assert_at(&e, 8, 24, "invalid regex");
}

#[test]
fn invalid_condition_syntax() {
    let e = one_error(&format!(
        "{HEAD}sinks:\n  out:\n    type: console\n    inputs: [gen]\n    where: message = 1\n"
    ));
    assert_at(&e, 8, 20, "unexpected character `=`");
    let e = one_error(&format!(
        "{HEAD}sinks:\n  out:\n    type: console\n    inputs: [gen]\n    where: mesage == 1\n"
    ));
    assert_at(&e, 8, 12, "unknown field `mesage`");
    assert!(e.message.contains("did you mean `message`?"), "{e}");
}

#[test]
fn reject_on_a_source_that_cannot_answer() {
    let e = one_error(
        "sources:\n  logs:\n    type: file\n    include: [a]\n    queue: { max_events: 10, when_full: reject }\nsinks:\n  out: {type: console, inputs: [logs]}\n",
    );
    assert_at(&e, 5, 41, "`when_full: reject` needs a source that answers");
    let ok = load("sources:\n  in:\n    type: http\n    listen: 127.0.0.1:8080\n    queue: { max_events: 10, when_full: reject }\nsinks:\n  out: {type: console, inputs: [in]}\n");
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn reject_on_a_sink_buffer() {
    let e = one_error(&format!(
        "{HEAD}sinks:\n  out:\n    type: console\n    inputs: [gen]\n    buffer:\n      when_full: reject\n"
    ));
    assert_at(&e, 9, 18, "not a policy for a sink buffer");
}

#[test]
fn sink_without_inputs() {
    let e = one_error(&format!("{HEAD}sinks:\n  out:\n    type: console\n"));
    assert_at(&e, 5, 3, "has no `inputs`");
    let e = one_error(&format!(
        "{HEAD}sinks:\n  out:\n    type: console\n    inputs: []\n"
    ));
    assert_at(&e, 7, 13, "has no `inputs`");
}

#[test]
fn wrong_type_of_component_option() {
    let e = one_error(
        "sources:\n  db:\n    type: mysql\n    url: \"mysql://r@h\"\n    server_id: [1]\nsinks:\n  out: {type: console, inputs: [db]}\n",
    );
    assert_at(&e, 5, 16, "expected u32, found a list");
}

#[test]
fn wrong_type_of_common_key() {
    let e = load(&format!(
        "{HEAD}    queue: 5\nsinks:\n  out: {{type: console, inputs: [gen], on_error: [stop], batch: {{timeout_ms: true}}}}\n"
    ))
    .unwrap_err();
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_at(&e[0], 4, 12, "expected a mapping, found an integer");
    assert_at(&e[1], 6, 49, "expected a single value, found a list");
    assert_at(
        &e[2],
        6,
        77,
        "expected a duration such as `500ms`, `10s` or milliseconds, found a boolean",
    );
}

#[test]
fn out_of_range_number() {
    let e = one_error(
        "sources:\n  db:\n    type: mysql\n    url: \"mysql://r@h\"\n    server_id: 99999999999\nsinks:\n  out: {type: console, inputs: [db]}\n",
    );
    assert_at(&e, 5, 16, "invalid value 99999999999");
}

#[test]
fn missing_component_option_at_component() {
    let e = one_error(
        "sources:\n  db:\n    type: mysql\n    server_id: 4\nsinks:\n  out: {type: console, inputs: [db]}\n",
    );
    assert_at(&e, 2, 3, "missing key `url`");
}

#[test]
fn unknown_enum_value_with_hint() {
    let e = load(&format!(
        "{HEAD}    format: jsn\nsinks:\n  out: {{type: console, inputs: [gen], on_error: dead_leter}}\n"
    ))
    .unwrap_err();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_at(&e[0], 4, 13, "unknown value `jsn`");
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `json`?"));
    assert_at(&e[1], 6, 49, "unknown value `dead_leter`");
    assert_eq!(e[1].hint.as_deref(), Some("did you mean `dead_letter`?"));
}

#[test]
fn invalid_duration_and_size() {
    let e = load(&format!(
        "{HEAD}    interval_ms: 10 parsecs\nsinks:\n  out:\n    type: console\n    inputs: [gen]\n    buffer: {{max_bytes: 12 furlongs}}\n"
    ))
    .unwrap_err();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_at(&e[0], 4, 18, "invalid duration `10 parsecs`");
    assert_at(&e[1], 9, 25, "invalid size `12 furlongs`");
}

#[test]
fn zero_capacity() {
    let e = one_error(&format!(
        "{HEAD}    queue: {{max_events: 0}}\nsinks:\n  out: {{type: console, inputs: [gen]}}\n"
    ));
    assert_at(&e, 4, 25, "`max_events` must be at least 1");
}

#[test]
fn missing_environment_variable() {
    let e = one_error(
        "sources:\n  db:\n    type: mysql\n    url: mysql://r:${SLUICE_TEST_UNSET_PW}@h\n    server_id: 4\nsinks:\n  out: {type: console, inputs: [db]}\n",
    );
    assert_at(&e, 4, 20, "`SLUICE_TEST_UNSET_PW` is not set");
    let e = one_error(
        "sources:\n  db:\n    type: mysql\n    url: \"${SLUICE_TEST_UNSET_URL:?set the replica url}\"\n    server_id: 4\nsinks:\n  out: {type: console, inputs: [db]}\n",
    );
    assert_at(&e, 4, 11, "required: set the replica url");
}

#[test]
fn a_failed_interpolation_is_reported_once() {
    let e = load(&format!(
        "{HEAD}    queue: {{max_bytes: \"${{SLUICE_T_UNSET_A}}\"}}\nsinks:\n  out:\n    type: console\n    inputs: [gen, \"${{SLUICE_T_UNSET_B}}\"]\n"
    ))
    .unwrap_err();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_at(&e[0], 4, 25, "`SLUICE_T_UNSET_A` is not set");
    assert_at(&e[1], 8, 20, "`SLUICE_T_UNSET_B` is not set");
    let e = one_error(&format!(
        "{HEAD}sinks:\n  out:\n    type: ${{SLUICE_T_UNSET_C}}\n    inputs: [gen]\n    where: ${{SLUICE_T_UNSET_D:-message =~ \"x\"}}\n"
    ));
    assert_at(&e, 6, 11, "`SLUICE_T_UNSET_C` is not set");
}

#[test]
fn api_beyond_loopback_needs_a_token() {
    let e = one_error(&format!(
        "api:\n  listen: 0.0.0.0:8686\n{HEAD}sinks:\n  out: {{type: console, inputs: [gen]}}\n"
    ));
    assert_at(&e, 2, 11, "without `auth_token`");
    // An empty token (`${TOKEN:-}` with TOKEN unset) is no token.
    let e = one_error(&format!(
        "api:\n  listen: 0.0.0.0:8686\n  auth_token: \"\"\n{HEAD}sinks:\n  out: {{type: console, inputs: [gen]}}\n"
    ));
    assert_at(&e, 2, 11, "without `auth_token`");
    let e = one_error(&format!(
        "api:\n  listen: localhost\n{HEAD}sinks:\n  out: {{type: console, inputs: [gen]}}\n"
    ));
    assert_at(&e, 2, 11, "invalid socket address");
}

#[test]
fn secrets_never_appear_in_errors() {
    std::env::set_var("SLUICE_TEST_SECRET_PW", "hunter2-secret");
    let text = "api:\n  auth_token: [\"tok-3141\"]\nsources:\n  db:\n    type: mysql\n    url: \"mysql://r:${SLUICE_TEST_SECRET_PW}@h\"\n    server_id: hunter2-secret\n    password: {nested: hunter2-secret}\nsinks:\n  out: {type: console, inputs: [db]}\n";
    let errors = load(text).unwrap_err();
    // One error per component: serde stops at a component's first error.
    assert_eq!(errors.len(), 2, "{errors:#?}");
    for e in &errors {
        let shown = format!("{e} {e:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("3141"),
            "{shown}"
        );
    }
    assert_at(&errors[0], 2, 15, "expected a string");
    assert_at(&errors[1], 7, 16, "expected u32, found a string");
}

#[test]
fn secrets_are_scrubbed_from_component_errors() {
    std::env::set_var("SLUICE_T_DB_PASSWORD", "pa55word-xyz");
    let text = "sources:\n  db:\n    type: mysql\n    url: \"tcp://r:${SLUICE_T_DB_PASSWORD}@h\"\n    server_id: 1\nsinks:\n  out: {type: console, inputs: [db]}\n";
    let e = one_error(text);
    assert_at(&e, 4, 10, "invalid url `tcp://r:<hidden>@h`");
    let text = "sources:\n  db:\n    type: mysql\n    url: \"tcp://r:opensesame@h\"\n    password: opensesame\n    server_id: 1\nsinks:\n  out: {type: console, inputs: [db]}\n";
    let e = one_error(text);
    assert_at(&e, 4, 10, "invalid url `tcp://r:<hidden>@h`");
}

#[test]
fn a_duplicate_key_does_not_hide_other_errors() {
    let e = load(&format!(
        "{HEAD}    count: 1\n    count: 2\nsinks:\n  out: {{type: consol, inputs: [gen]}}\n"
    ))
    .unwrap_err();
    assert_eq!(e.len(), 2, "{e:#?}");
    assert_at(
        &e[0],
        5,
        5,
        "duplicate key `count` (first defined at p.yaml:4:5)",
    );
    assert_at(&e[1], 7, 15, "unknown sink type");
}

#[test]
fn every_error_is_returned_in_order() {
    let text = "data_dri: x\nsources:\n  a: {type: nope}\n  b: {type: file}\nsinks:\n  c: {type: console, inputs: [zz]}\n  d: {type: console}\n";
    let e = load(text).unwrap_err();
    let places: Vec<(usize, usize)> = e
        .iter()
        .map(|e| (e.location.line, e.location.column))
        .collect();
    assert_eq!(
        places,
        vec![(1, 1), (3, 13), (4, 3), (6, 31), (7, 3)],
        "{e:#?}"
    );
}
