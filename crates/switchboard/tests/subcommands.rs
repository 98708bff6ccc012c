//! The binary's subcommands as an operator runs them: `check-config`, `token` and
//! `healthcheck`, against real servers (child processes); and how the environment variables of
//! the settings behave at start (`SWITCHBOARD_<SETTING>`, `PORT`, the deprecated names).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{Running, command};
use serde_json::json;
use switchboard_testkit::{Client, free_port};

/// Runs the binary with `args` and exactly the settings variables `envs`; waits for its exit.
async fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = command(args);
    command
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::piped());
    tokio::process::Command::from(command)
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchboard-cli-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let output = run(
        &["check-config", "--jwt-secret", "flag-secret"],
        &[
            ("SWITCHBOARD_PORT", "4500"),
            ("SWITCHBOARD_REDIS_URL", "redis://:redis-secret@redis:6379"),
            ("API_KEY", "api-secret"),
        ],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for secret in ["flag-secret", "redis-secret", "api-secret"] {
        assert!(!text.contains(secret), "{secret} in:\n{text}");
    }
    for expected in [
        "port = 4500",
        "# env SWITCHBOARD_PORT",
        "redis_url = \"redis://:********@redis:6379\"",
        "# env API_KEY (deprecated: use SWITCHBOARD_API_KEY)",
        "heartbeat_interval = \"30s\"",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
}

#[tokio::test]
async fn check_config_exits_2_naming_a_bad_setting() {
    let output = run(&["check-config"], &[("SWITCHBOARD_MAX_CONNECTIONS", "0")]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stdout(&output).is_empty());
    let error = stderr(&output);
    assert!(
        error.contains("max_connections") && error.contains("SWITCHBOARD_MAX_CONNECTIONS"),
        "{error}"
    );
}

#[tokio::test]
async fn a_bad_log_level_or_rust_log_fails_at_start() {
    let output = run(&["--log-level", "verbose"], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    assert!(
        error.contains("log_level") && error.contains("verbose"),
        "{error}"
    );
    let output = run(&[], &[("RUST_LOG", "info,switchboard=loud")]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("RUST_LOG"), "{}", stderr(&output));
}

#[tokio::test]
async fn older_variables_work_with_a_warning_and_port_without_one() {
    let port = free_port().to_string();
    let mut server = Running::start(
        &[],
        &[
            ("PORT", &port),
            ("NODE_ID", "old-name"),
            ("SWITCHBOARD_HISTORY_SIZE", "3"),
        ],
    )
    .await;
    assert_eq!(server.addr.port().to_string(), port);
    let warnings: Vec<(String, String)> = server
        .startup
        .iter()
        .filter(|line| line["fields"]["message"] == "deprecated environment variable")
        .map(|line| {
            let field = |name: &str| line["fields"][name].as_str().unwrap().to_owned();
            (field("variable"), field("instead"))
        })
        .collect();
    assert_eq!(
        warnings,
        [("NODE_ID".to_owned(), "SWITCHBOARD_NODE_ID".to_owned())]
    );
    let client = Client::connect(&format!("ws://{}/", server.addr)).await;
    assert_eq!(client.connect["node"], "old-name");
    server.terminate().await;
    let status = server.wait_exit(switchboard_testkit::WAIT).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_minted_token_is_accepted_with_its_permissions() {
    let secret = [("SWITCHBOARD_JWT_SECRET", "mint-secret")];
    let output = run(
        &[
            "token", "--sub", "alice", "--rooms", "team-*", "--docs", "notes-*", "--ttl", "10m",
        ],
        &secret,
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output).trim().to_owned();
    let server = Running::start(&[], &secret).await;
    let mut alice = Client::connect(&format!("ws://{}/?token={token}", server.addr)).await;
    assert_eq!(alice.user_id(), "alice");
    assert_eq!(alice.join("team-a").await["payload"]["room"], "team-a");
    alice
        .send_type("join_room", json!({"room": "general"}))
        .await;
    alice.expect_error("FORBIDDEN").await;
    let doc = |name: &str| format!("ws://{}/yjs/{name}?token={token}", server.addr);
    assert!(
        tokio_tungstenite::connect_async(doc("notes-1"))
            .await
            .is_ok()
    );
    match tokio_tungstenite::connect_async(doc("secret")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("not refused: {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn token_refuses_clearly_without_a_signing_key() {
    let output = run(&["token", "--sub", "alice"], &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("authentication is off"),
        "{}",
        stderr(&output)
    );
    let output = run(
        &["token", "--sub", "not a name"],
        &[("SWITCHBOARD_JWT_SECRET", "s")],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid sub"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn with_only_a_public_key_token_signs_with_the_private_key_given() {
    use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};

    let dir = temp_dir();
    let key = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let (public, private) = (dir.join("public.pem"), dir.join("private.pem"));
    let public_pem = key.public_key().to_public_key_pem(LineEnding::LF).unwrap();
    std::fs::write(&public, public_pem).unwrap();
    std::fs::write(
        &private,
        key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let configured = [
        ("SWITCHBOARD_JWT_PUBLIC_KEY", public.to_str().unwrap()),
        ("SWITCHBOARD_JWT_ISSUER", "https://auth.example"),
    ];

    let output = run(&["token", "--sub", "bob"], &configured).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--private-key"),
        "{}",
        stderr(&output)
    );

    let other = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let wrong = dir.join("other.pem");
    std::fs::write(
        &wrong,
        other.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let args = [
        "token",
        "--sub",
        "bob",
        "--private-key",
        wrong.to_str().unwrap(),
    ];
    let output = run(&args, &configured).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid signature"),
        "{}",
        stderr(&output)
    );

    let args = [
        "token",
        "--sub",
        "bob",
        "--private-key",
        private.to_str().unwrap(),
    ];
    let output = run(&args, &configured).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output).trim().to_owned();
    let server = Running::start(&[], &configured).await;
    let bob = Client::connect(&format!("ws://{}/?token={token}", server.addr)).await;
    assert_eq!(bob.user_id(), "bob");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn healthcheck_is_0_for_a_healthy_node_and_1_otherwise() {
    let server = Running::start(&[], &[]).await;
    let port = server.addr.port().to_string();
    let output = run(
        &["healthcheck", "--host", "127.0.0.1", "--port", &port],
        &[],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("200"), "{}", stdout(&output));
    // The configured port from a variable, the wildcard host asked on the loopback address.
    let output = run(
        &["healthcheck"],
        &[("SWITCHBOARD_PORT", &port), ("SWITCHBOARD_HOST", "0.0.0.0")],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let url = format!("http://{}/ready", server.addr);
    assert!(
        run(&["healthcheck", "--url", &url], &[])
            .await
            .status
            .success()
    );

    let missing = format!("http://{}/no-such-page", server.addr);
    let output = run(&["healthcheck", "--url", &missing], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("404"), "{}", stderr(&output));

    drop(server);
    let closed = free_port().to_string();
    let output = run(
        &["healthcheck", "--host", "127.0.0.1", "--port", &closed],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&closed), "{}", stderr(&output));
}
