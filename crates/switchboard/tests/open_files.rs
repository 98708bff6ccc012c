//! The binary raises its open-file soft limit to what `--max-connections` needs, as far as the
//! hard limit allows, and logs what it did; started under `prlimit` with a low soft limit, the
//! log and the process's own `/proc/PID/limits` show it.

#![allow(clippy::unwrap_used)]

mod common;

use common::Running;
use serde_json::Value;
use switchboard::process::open_files::MARGIN;

/// The soft and hard open-file limits in a `/proc/*/limits` file.
fn nofile(limits_path: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(limits_path).unwrap();
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// The start-up log line whose message starts with `prefix`.
fn startup_line<'a>(server: &'a Running, prefix: &str) -> &'a Value {
    server
        .startup
        .iter()
        .find(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|message| message.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no start-up line {prefix:?} in {:?}", server.startup))
}

fn limits_of(server: &Running) -> (u64, u64) {
    nofile(&format!("/proc/{}/limits", server.pid()))
}

#[tokio::test]
async fn a_low_soft_limit_is_raised_to_what_max_connections_needs() {
    let (_, hard) = nofile("/proc/self/limits");
    let needed = 1000 + MARGIN;
    assert!(hard >= needed, "the test needs a hard limit of {needed}");
    let server = Running::start_with_nofile(64, hard, &["--max-connections", "1000"]).await;
    let line = startup_line(&server, "raised the open-file limit");
    assert_eq!(line["level"], "INFO");
    let fields = &line["fields"];
    assert_eq!(
        (&fields["from"], &fields["to"]),
        (&64.into(), &needed.into())
    );
    assert_eq!(fields["needed"], needed);
    // Exactly the need, not the hard limit.
    assert_eq!(limits_of(&server), (needed, hard));
}

#[tokio::test]
async fn a_hard_limit_below_the_need_raises_as_far_as_it_goes_and_warns() {
    let server = Running::start_with_nofile(64, 512, &["--max-connections", "1000"]).await;
    let line = startup_line(&server, "the open-file limit is below");
    assert_eq!(line["level"], "WARN");
    let fields = &line["fields"];
    assert_eq!(fields["limit"], 512);
    assert_eq!(fields["hard_limit"], 512);
    assert_eq!(fields["needed"], 1000 + MARGIN);
    let message = fields["message"].as_str().unwrap();
    assert!(message.contains("--max-connections"), "{message}");
    assert_eq!(limits_of(&server), (512, 512));
}

#[tokio::test]
async fn a_limit_that_is_enough_is_left_alone() {
    let server = Running::start_with_nofile(2000, 2000, &["--max-connections", "100"]).await;
    let line = startup_line(&server, "the open-file limit is enough");
    assert_eq!(line["fields"]["limit"], 2000);
    assert_eq!(line["fields"]["needed"], 100 + MARGIN);
    assert_eq!(limits_of(&server), (2000, 2000));
}
