//! The documentation and the binary agree: every setting `switchboard --help` lists has a row
//! in docs/configuration.md with its flag and `SWITCHBOARD_` variable, and every metric
//! `/metrics` exports is in the metric list of docs/operations.md. The links of the Markdown
//! files and the OpenAPI file are checked by `scripts/check_links.py` and
//! `scripts/check_openapi.py` (run by `scripts/test.sh`).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use switchboard_testkit::{TestServer, http_request};

fn doc(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The settings `--help` lists, as (flag, variable): the `--flag` lines of the Settings
/// section, each with the `[env: …]` its help names.
fn settings_in_help() -> Vec<(String, String)> {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let settings = help
        .split_once("Settings:")
        .expect("--help has a Settings section")
        .1;
    // Each option is a `      --flag <VALUE>` line followed by its help, up to the next one.
    let mut found = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in settings.lines() {
        let trimmed = line.trim_start();
        if line.starts_with("      --") {
            found.extend(current.take());
            let flag = trimmed.split([' ', '[']).next().unwrap().to_owned();
            current = Some((flag, String::new()));
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(trimmed);
            text.push(' ');
        }
    }
    found.extend(current);
    found
        .into_iter()
        .map(|(flag, text)| {
            let variable = text
                .split("[env: ")
                .nth(1)
                .and_then(|rest| rest.split(']').next())
                .unwrap_or_else(|| panic!("{flag}: --help names no [env: …]"))
                .to_owned();
            (flag, variable)
        })
        .collect()
}

#[test]
fn every_setting_is_in_the_configuration_doc() {
    let settings = settings_in_help();
    assert!(settings.len() > 40, "too few settings found: {settings:?}");
    let table = doc("configuration.md");
    let mut missing = Vec::new();
    for (flag, variable) in &settings {
        let expected = format!("SWITCHBOARD_{}", flag[2..].replace('-', "_").to_uppercase());
        assert_eq!(variable, &expected, "{flag}: unexpected variable in --help");
        let row_start = format!("| `{flag}` |");
        let row = table.lines().find(|line| line.starts_with(&row_start));
        match row {
            Some(row) if row.contains(&format!("`{variable}`")) => {}
            Some(_) => missing.push(format!("{flag}: its row does not name `{variable}`")),
            None => missing.push(format!("{flag} ({variable}): no row `| `{flag}` | …`")),
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md is missing settings the binary has:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_configuration_doc_lists_no_setting_the_binary_lacks() {
    let flags: Vec<String> = settings_in_help()
        .into_iter()
        .map(|(flag, _)| flag)
        .collect();
    let unknown: Vec<String> = doc("configuration.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `--"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("--{name}"))
        .filter(|flag| !flags.contains(flag))
        .collect();
    assert!(
        unknown.is_empty(),
        "docs/configuration.md has rows for flags `switchboard --help` does not list: {unknown:?}"
    );
}

#[tokio::test]
async fn every_exported_metric_is_in_the_metric_list() {
    let server = TestServer::start().await;
    let (status, body) = http_request(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = body
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    assert!(names.len() > 10, "too few metrics: {names:?}");
    let list = doc("operations.md");
    let missing: Vec<&&str> = names
        .iter()
        .filter(|name| !list.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics missing from the table in docs/operations.md: {missing:?}"
    );
    // And the other way: every metric in the table is exported, except the one only a
    // cluster node has (tested in metrics.rs, with a real Redis).
    let listed: Vec<&str> = list
        .lines()
        .filter_map(|line| line.strip_prefix("| `switchboard_"))
        .filter_map(|rest| rest.split('`').next())
        .collect();
    let not_exported: Vec<&&str> = listed
        .iter()
        .filter(|name| **name != "cluster_nodes")
        .filter(|name| !names.contains(&format!("switchboard_{name}").as_str()))
        .collect();
    assert!(
        not_exported.is_empty(),
        "docs/operations.md lists metrics /metrics does not export: {not_exported:?}"
    );
}
