//! The `switchboard` binary as users run it: configuration from flags, env vars and a TOML
//! file, start-up errors naming the setting, JSON logs, and graceful shutdown on SIGTERM.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Running, command, wait_for_log};
use switchboard_testkit::{
    Client, Ended, RawClient, TestPki, http_get, http_json, http_request, wait_until_async,
};

/// Runs the binary expecting it to fail at start; returns its stderr.
fn fails_to_start(args: &[&str], envs: &[(&str, &str)]) -> String {
    let output = command(args).envs(envs.iter().copied()).output().unwrap();
    assert!(
        !output.status.success(),
        "should have failed: {args:?} {envs:?}"
    );
    assert_eq!(output.status.code(), Some(2));
    String::from_utf8(output.stderr).unwrap()
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_in_time() {
    let mut server = Running::start(&["--shutdown-timeout", "3s"], &[]).await;
    let mut alice = Client::connect(&format!("ws://{}/?userId=alice", server.addr)).await;
    alice.join("general").await;
    let mut bob = Client::connect(&format!("ws://{}/ws?userId=bob", server.addr)).await;
    server.terminate().await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(
            client.ended().await,
            Ended::Closed {
                code: 1001,
                reason: "server shutting down".into()
            }
        );
    }
    let status = server.wait_exit(Duration::from_secs(3)).await;
    assert!(status.success(), "{status}");
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "no longer accepting"
    );
    wait_for_log(&mut server.logs, "shutdown complete").await;
}

#[tokio::test]
async fn a_client_that_ignores_the_close_does_not_hold_up_the_exit() {
    let mut server = Running::start(&["--shutdown-timeout", "1s"], &[]).await;
    // Never reads, never answers the close.
    let _stuck = RawClient::connect(server.addr, "/?userId=stuck").await;
    let started = Instant::now();
    server.terminate().await;
    server.wait_exit(Duration::from_secs(4)).await;
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn a_draining_node_answers_probes_503_and_refuses_upgrades_until_it_exits() {
    let mut server = Running::start(&["--shutdown-timeout", "30s"], &[]).await;
    // Holds the drain open: it never answers the close (the server waits for it a while).
    let stuck = RawClient::connect(server.addr, "/?userId=stuck").await;
    server.terminate().await;
    wait_until_async("/ready says draining", || async {
        http_get(server.addr, "/ready").await == (503, r#"{"status":"draining"}"#.into())
    })
    .await;
    assert_eq!(http_get(server.addr, "/health").await.0, 200);
    let upgrade = "GET /?userId=late HTTP/1.1\r\nHost: test\r\nConnection: Upgrade, close\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let (status, body) = http_request(server.addr, upgrade).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    let sse = "GET /sse?userId=late HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    assert_eq!(
        http_request(server.addr, sse).await.0,
        503,
        "nor an SSE stream"
    );
    drop(stuck);
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "the listener closes with the drain"
    );
}

#[tokio::test]
async fn settings_come_from_env_vars_and_a_toml_file() {
    let dir = std::env::temp_dir().join(format!("sb-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("switchboard.toml");
    std::fs::write(
        &file,
        "heartbeat_interval = \"7s\"\nheartbeat_timeout = \"20s\"\nnode_id = \"from-file\"\n",
    )
    .unwrap();
    let server = Running::start(
        &["--config", file.to_str().unwrap()],
        &[("NODE_ID", "from-env"), ("PORT", "0")],
    )
    .await;
    let client = Client::connect(&format!("ws://{}/", server.addr)).await;
    assert_eq!(client.connect["heartbeatInterval"], 7000, "from the file");
    assert_eq!(client.connect["node"], "from-env", "env beats the file");
    drop(server);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn invalid_settings_fail_at_start_naming_the_setting() {
    let stderr = fails_to_start(
        &["--heartbeat-interval", "30s", "--heartbeat-timeout", "10s"],
        &[],
    );
    assert!(
        stderr.contains("heartbeat_timeout") && stderr.contains("--heartbeat-timeout"),
        "{stderr}"
    );
    let stderr = fails_to_start(&[], &[("MAX_CONNECTIONS", "0")]);
    assert!(stderr.contains("MAX_CONNECTIONS"), "{stderr}");
    let stderr = fails_to_start(&["--port", "99999"], &[]);
    assert!(stderr.contains("--port"), "{stderr}");
    let stderr = fails_to_start(&[], &[("MAX_FRAME_SIZE", "lots")]);
    assert!(stderr.contains("--max-frame-size"), "{stderr}");
    let stderr = fails_to_start(&["--config", "/nonexistent.toml"], &[]);
    assert!(stderr.contains("/nonexistent.toml"), "{stderr}");
    let stderr = fails_to_start(&[], &[("ALLOWED_ORIGINS", "*")]);
    assert!(stderr.contains("ALLOWED_ORIGINS"), "{stderr}");
    let stderr = fails_to_start(&["--jwt-public-key", "/nonexistent.pem"], &[]);
    assert!(
        stderr.contains("--jwt-public-key") && stderr.contains("/nonexistent.pem"),
        "{stderr}"
    );
}

#[tokio::test]
async fn authentication_settings_come_from_env_vars() {
    let secret = "binary-test-secret";
    let server = Running::start(
        &[],
        &[
            ("JWT_SECRET", secret),
            ("ADMIN_KEY", "admin"),
            ("ALLOWED_ORIGINS", "https://app.example"),
        ],
    )
    .await;
    let claims =
        serde_json::json!({"sub": "zoe", "exp": jsonwebtoken::get_current_timestamp() + 60});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let client = Client::connect(&format!("ws://{}/?userId=x&token={token}", server.addr)).await;
    assert_eq!(client.user_id(), "zoe");
    let (status, _) = http_json(server.addr, "GET", "/stats", None, &[]).await;
    assert_eq!(status, 401);
    let key = [("X-API-Key", "admin")];
    let (status, stats) = http_json(server.addr, "GET", "/stats", None, &key).await;
    assert_eq!((status, stats["connections"].as_u64()), (200, Some(1)));
}

#[test]
fn bad_tls_files_fail_at_start_naming_the_setting() {
    let pki = TestPki::generate();
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let stderr = fails_to_start(
        &["--tls-cert", "/nonexistent/cert.pem", "--tls-key", key],
        &[],
    );
    assert!(
        stderr.contains("--tls-cert") && stderr.contains("/nonexistent/cert.pem"),
        "{stderr}"
    );
    let stderr = fails_to_start(
        &["--tls-cert", cert, "--tls-key", "/nonexistent/key.pem"],
        &[],
    );
    assert!(
        stderr.contains("--tls-key") && stderr.contains("/nonexistent/key.pem"),
        "{stderr}"
    );
    // A certificate where the key should be, and the reverse.
    let stderr = fails_to_start(&["--tls-cert", cert, "--tls-key", cert], &[]);
    assert!(
        stderr.contains("TLS_KEY") && stderr.contains("no PEM private key"),
        "{stderr}"
    );
    let stderr = fails_to_start(&["--tls-cert", key, "--tls-key", key], &[]);
    assert!(
        stderr.contains("TLS_CERT") && stderr.contains("no PEM certificate"),
        "{stderr}"
    );
    // Only one of the two.
    let stderr = fails_to_start(&[], &[("TLS_CERT", cert)]);
    assert!(stderr.contains("--tls-key"), "{stderr}");
    // A key that belongs to another certificate.
    let other = TestPki::generate();
    let other_key = other.key.to_str().unwrap();
    let stderr = fails_to_start(&["--tls-cert", cert, "--tls-key", other_key], &[]);
    assert!(
        stderr.contains("--tls-key") && stderr.contains("does not match"),
        "{stderr}"
    );
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = command(&["--host", "127.0.0.1", "--port", &port])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("cannot listen on") && stderr.contains(&port),
        "{stderr}"
    );
}

#[test]
fn help_lists_every_setting() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap_or_default()
        + &String::from_utf8(output.stderr).unwrap();
    for flag in [
        "--port",
        "--host",
        "--config",
        "--max-connections",
        "--max-connections-per-user",
        "--heartbeat-interval",
        "--heartbeat-timeout",
        "--cleanup-interval",
        "--idle-timeout",
        "--rate-limit",
        "--max-frame-size",
        "--max-content-length",
        "--shutdown-timeout",
        "--log-format",
        "--jwt-secret",
        "--jwt-public-key",
        "--jwt-algorithm",
        "--auth-timeout",
        "--allowed-origins",
        "--admin-key",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[tokio::test]
async fn debug_logs_record_connects_joins_and_disconnects_as_json() {
    let mut server = Running::start(&["--log-level", "switchboard=debug"], &[]).await;
    let mut client = Client::connect(&format!("ws://{}/?userId=logged", server.addr)).await;
    let connected = wait_for_log(&mut server.logs, "connected").await;
    assert_eq!(connected["fields"]["user"], "logged");
    client.join("general").await;
    let join = wait_for_log(&mut server.logs, "join").await;
    assert_eq!(join["fields"]["room"], "general");
    drop(client);
    wait_for_log(&mut server.logs, "disconnected").await;
}

#[tokio::test]
async fn text_logs_to_a_pipe_have_no_colour_codes() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut child = tokio::process::Command::from(command(&[
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--log-format",
        "text",
    ]))
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let startup = tokio::time::timeout(switchboard_testkit::WAIT, async {
        let mut startup = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            let listening = line.contains("switchboard listening");
            startup.push(line);
            if listening {
                return startup;
            }
        }
        panic!("the log ended before the server listened: {startup:?}");
    })
    .await
    .expect("no log line \"switchboard listening\"");
    assert!(
        startup.iter().all(|line| !line.contains('\u{1b}')),
        "escape codes in {startup:?}"
    );
    assert!(
        startup.iter().any(|line| line.contains(" INFO ")),
        "{startup:?}"
    );
}
