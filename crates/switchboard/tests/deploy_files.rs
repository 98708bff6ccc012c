//! The files in `deploy/` agree with the binary: every variable and flag they use is a setting
//! (the binary's `--help` says which), the settings each file gives validate (`check-config`
//! with that file's environment), probe and scrape paths are routes of a running server, and
//! the shutdown timeout fits in every grace period. The files are read as text: they are ours
//! and regular, and a YAML parser would check no more than these invariants do.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::command;
use switchboard_testkit::{TestServer, http_get};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// Every file in `deploy/`, by its path there.
fn deploy_files() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for dir in ["", "kubernetes", "systemd"] {
        for entry in std::fs::read_dir(deploy(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let name = path.strip_prefix(deploy("")).unwrap().display().to_string();
                files.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    files
}

/// The binary's `--help`.
fn help() -> String {
    let output = command(&["--help"])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// The words of `text` that start with `prefix` and go on with `[A-Za-z0-9_-]`.
fn words(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .filter(|(at, _)| {
            !text[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(rest.len());
            format!("{prefix}{}", &rest[..end])
        })
        .filter(|word| word.len() > prefix.len())
        .collect()
}

/// The effective settings with `args` and the variables `envs`, from `check-config`; fails
/// the test when they do not validate.
fn effective(what: &str, args: &[&str], envs: &[(String, String)]) -> BTreeMap<String, String> {
    let mut all = vec!["check-config"];
    all.extend_from_slice(args);
    let output = command(&all)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (setting, rest) = line.split_once(" = ")?;
            let value = rest.split("  #").next().unwrap_or_default().trim();
            Some((setting.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

fn duration(text: &str) -> Duration {
    let text = text.trim().trim_matches('"');
    match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}")),
    }
}

/// The values of `key: value` lines (YAML) or `key=value` / `key value` lines, trimmed of
/// quotes, in order.
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(key)?;
            let rest = rest
                .strip_prefix(':')
                .or_else(|| rest.strip_prefix('='))
                .or_else(|| rest.strip_prefix(' '))?;
            Some(rest.trim().trim_matches('"').to_owned())
        })
        .collect()
}

fn one(text: &str, key: &str) -> String {
    let found = values(text, key);
    assert_eq!(found.len(), 1, "{key}: {found:?}");
    found.into_iter().next().unwrap()
}

/// `SWITCHBOARD_X: value` (YAML) or `SWITCHBOARD_X=value` lines (a Dockerfile's `ENV` lines
/// too, continued or not) that are not comments.
fn variables(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("ENV ").unwrap_or(line);
            line.strip_suffix('\\').unwrap_or(line).trim()
        })
        .filter(|line| line.starts_with("SWITCHBOARD_"))
        .filter_map(|line| {
            let at = line.find([':', '='])?;
            let value = line[at + 1..].trim().trim_matches('"');
            // Compose's `${NAME:-}`: unset in the shell, the default (empty: unset).
            let value = match value.strip_prefix("${") {
                Some(expansion) => expansion
                    .trim_end_matches('}')
                    .split_once(":-")
                    .map_or("", |(_, default)| default),
                None => value,
            };
            Some((line[..at].to_owned(), value.to_owned()))
        })
        .collect()
}

#[test]
fn every_variable_and_flag_the_files_use_is_a_setting() {
    let help = help();
    let known_variables = words(&help, "SWITCHBOARD_");
    let known_flags = words(&help, "--");
    assert!(known_variables.contains("SWITCHBOARD_REDIS_URL"), "{help}");
    for (file, text) in deploy_files() {
        for variable in words(&text, "SWITCHBOARD_") {
            assert!(
                known_variables.contains(&variable),
                "deploy/{file} uses {variable}, which is not a setting"
            );
        }
        if file == "compose.yaml" {
            for (service, args) in compose_nodes(&text) {
                for flag in args.iter().filter(|arg| arg.starts_with("--")) {
                    assert!(
                        known_flags.contains(flag),
                        "{service} in {file} uses {flag}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_image_serves_the_default_port_as_a_non_root_user_with_signals_and_a_healthcheck() {
    let dockerfile = read("Dockerfile");
    let defaults = effective("no settings", &[], &[]);
    assert_eq!(one(&dockerfile, "EXPOSE"), defaults["port"]);
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let user = one(last_stage, "USER");
    let uid = user.split(':').next().unwrap();
    assert!(uid.parse::<u32>().unwrap() > 0, "USER {user}");
    // Exec form: the process is PID 1 and receives SIGTERM itself.
    assert_eq!(one(last_stage, "ENTRYPOINT"), "[\"switchboard\"]");
    assert!(
        last_stage.contains("CMD [\"switchboard\", \"healthcheck\"]"),
        "{last_stage}"
    );
    assert!(
        command(&["healthcheck", "--help"])
            .status()
            .unwrap()
            .success()
    );
    assert!(dockerfile.contains("cargo build --release --locked -p switchboard"));

    let envs = variables(last_stage);
    let settings = effective("Dockerfile", &[], &envs);
    assert_eq!(settings["host"], "0.0.0.0");
    // `docker stop` waits 10 s before SIGKILL.
    assert!(duration(&settings["shutdown_timeout"]) < Duration::from_secs(10));

    let deployment = read("kubernetes/deployment.yaml");
    assert_eq!(one(&deployment, "runAsUser"), uid);
    assert_eq!(one(&deployment, "containerPort"), defaults["port"]);
}

/// The compose file's node services and their `command` arrays.
fn compose_nodes(compose: &str) -> Vec<(String, Vec<String>)> {
    let mut nodes = Vec::new();
    let mut service = None;
    for line in compose.lines() {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            service = (!name.starts_with(' ')).then(|| name.to_owned());
        }
        if let (Some(name), Some(args)) = (&service, line.trim().strip_prefix("command: "))
            && name.starts_with("switchboard-")
        {
            nodes.push((name.clone(), serde_json::from_str(args).unwrap()));
        }
    }
    nodes
}

#[test]
fn compose_runs_three_distinct_cluster_nodes_behind_nginx() {
    let compose = read("compose.yaml");
    let envs = variables(&compose);
    let nodes = compose_nodes(&compose);
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let mut ids = BTreeSet::new();
    for (service, args) in &nodes {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let settings = effective(service, &args, &envs);
        assert_eq!(settings["redis_url"], "redis://redis:6379", "{service}");
        assert!(
            ids.insert(settings["node_id"].clone()),
            "{service}: same node id"
        );
        let grace = duration(&one(&compose, "stop_grace_period"));
        assert!(grace > duration(&settings["shutdown_timeout"]), "{service}");
    }
    assert!(compose.contains("redis:\n    image: redis:"));

    // nginx's upstreams are the node services on the port they listen on.
    let nginx = read("nginx.compose.conf");
    let port = effective("defaults", &[], &[])["port"].clone();
    let upstreams: Vec<String> = values(&nginx, "server")
        .into_iter()
        .filter(|value| value.ends_with(';'))
        .collect();
    let expected: Vec<String> = nodes
        .iter()
        .map(|(service, _)| format!("{service}:{port};"))
        .collect();
    assert_eq!(upstreams, expected);
    assert!(compose.contains("./nginx.compose.conf:/etc/nginx/nginx.conf"));
}

#[test]
fn the_nginx_configs_are_sticky_unbuffered_and_agree() {
    let shipped = read("nginx.conf");
    let compose = read("nginx.compose.conf");
    let body = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|line| !line.starts_with('#') && !line.trim().starts_with("server "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        body(&shipped),
        body(&compose),
        "the two differ beyond upstreams"
    );
    let heartbeat_timeout = duration(&effective("defaults", &[], &[])["heartbeat_timeout"]);
    assert!(shipped.contains("ip_hash;"));
    for location in ["location / {", "location /sse {"] {
        let block = shipped
            .split(location)
            .nth(1)
            .unwrap_or_else(|| panic!("{location}"));
        let block = block.split('}').next().unwrap();
        assert!(block.contains("proxy_buffering off;"), "{location}");
        assert!(block.contains("proxy_http_version 1.1;"), "{location}");
        let read_timeout = one(block, "proxy_read_timeout");
        assert!(
            duration(read_timeout.trim_end_matches(';')) > heartbeat_timeout,
            "{location}"
        );
    }
}

#[test]
fn kubernetes_drains_before_the_grace_period_ends_and_names_nodes_after_pods() {
    let deployment = read("kubernetes/deployment.yaml");
    let configmap = read("kubernetes/configmap.yaml");
    let mut envs = variables(&configmap);
    envs.push((
        "SWITCHBOARD_NODE_ID".into(),
        "switchboard-7d9f8b6c5d-x2x4q".into(),
    ));
    let settings = effective("the ConfigMap", &[], &envs);
    let grace = duration(&one(&deployment, "terminationGracePeriodSeconds"));
    let pre_stop = duration(&one(&deployment, "seconds"));
    let shutdown = duration(&settings["shutdown_timeout"]);
    assert!(
        grace > pre_stop + shutdown,
        "grace {grace:?} <= preStop {pre_stop:?} + shutdown {shutdown:?}"
    );
    let node_id = deployment
        .split("- name: SWITCHBOARD_NODE_ID")
        .nth(1)
        .unwrap();
    assert!(
        node_id
            .split("- name:")
            .next()
            .unwrap()
            .contains("fieldPath: metadata.name"),
        "the node id comes from the pod's name"
    );
    // The Service is named switchboard: its service links would set SWITCHBOARD_PORT.
    assert_eq!(one(&deployment, "enableServiceLinks"), "false");
    assert!(deployment.contains("runAsNonRoot: true"));
    for key in ["requests", "limits"] {
        assert!(deployment.contains(&format!("{key}:\n")), "resources {key}");
    }

    let kustomization = read("kubernetes/kustomization.yaml");
    let listed: BTreeSet<String> = kustomization
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .filter(|item| item.ends_with(".yaml"))
        .map(str::to_owned)
        .collect();
    let present: BTreeSet<String> = deploy_files()
        .into_keys()
        .filter_map(|file| file.strip_prefix("kubernetes/").map(str::to_owned))
        .filter(|file| file != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ServiceMonitor",
    ] {
        let kinds: Vec<String> = present
            .iter()
            .flat_map(|file| values(&read(&format!("kubernetes/{file}")), "kind"))
            .collect();
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
}

#[tokio::test]
async fn probe_and_scrape_paths_are_routes() {
    let server = TestServer::start().await;
    let mut paths = BTreeSet::new();
    for (file, text) in deploy_files() {
        if file.starts_with("kubernetes/") {
            paths.extend(values(&text, "path"));
        }
    }
    assert_eq!(
        paths,
        BTreeSet::from(["/health".into(), "/metrics".into(), "/ready".into()])
    );
    for path in paths {
        let (status, body) = http_get(server.addr, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

#[test]
fn the_systemd_unit_outlasts_the_drain_and_is_sandboxed() {
    let unit = read("systemd/switchboard.service");
    let envs = variables(&read("systemd/switchboard.env"));
    let settings = effective("systemd/switchboard.env", &[], &envs);
    let stop = duration(&one(&unit, "TimeoutStopSec"));
    assert!(stop > duration(&settings["shutdown_timeout"]));
    assert_eq!(one(&unit, "KillSignal"), "SIGTERM");
    let nofile: usize = one(&unit, "LimitNOFILE").parse().unwrap();
    let max_connections: usize = settings["max_connections"].parse().unwrap();
    assert!(nofile > max_connections, "LimitNOFILE {nofile}");
    assert_eq!(
        one(&unit, "EnvironmentFile"),
        "-/etc/switchboard/switchboard.env"
    );
    for (key, value) in [
        ("Restart", "on-failure"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("DynamicUser", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert_eq!(one(&unit, key), value, "{key}");
    }
}
