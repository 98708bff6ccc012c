//! The proxy settings at their edges.

use super::super::Config;
use super::super::tests::{from_args, invalid_setting};

const URL: &str = "http://127.0.0.1:9/proxy";

#[test]
fn proxies_are_off_by_default_and_each_url_is_its_own() {
    assert!(Config::default().proxy.is_none());
    let config = from_args(&["--proxy-rpc-url", URL]).unwrap();
    let proxy = config.proxy.unwrap();
    assert!(proxy.rpc.is_some());
    assert!(proxy.connect.is_none() && proxy.join.is_none() && proxy.subscribe.is_none());
    assert_eq!(proxy.timeout, std::time::Duration::from_secs(5));
    let names: Vec<&str> = proxy.headers.iter().map(|h| h.as_str()).collect();
    assert_eq!(
        names,
        [
            "cookie",
            "authorization",
            "origin",
            "user-agent",
            "accept-language"
        ]
    );
    let blank = from_args(&["--proxy-join-url", " ", "--proxy-headers", "X-Tenant"]).unwrap();
    assert!(blank.proxy.is_none(), "a blank URL is no proxy");
    // Without a proxy, the default timeout does not constrain the heartbeat.
    let quick = ["--heartbeat-interval", "1s", "--heartbeat-timeout", "2s"];
    assert!(from_args(&quick).is_ok());
}

#[test]
fn each_proxy_rule_holds_at_its_edge() {
    let cases: &[(&[&str], &[&str], &str)] = &[
        // (passes, fails, setting named)
        (
            &["--proxy-join-url", "https://backend.example/join"],
            &["--proxy-join-url", "ftp://backend.example/join"],
            "proxy_join_url",
        ),
        (
            &["--proxy-subscribe-url", URL],
            &["--proxy-subscribe-url", "/relative"],
            "proxy_subscribe_url",
        ),
        (
            &["--proxy-rpc-url", URL],
            &["--proxy-rpc-url", "http://"],
            "proxy_rpc_url",
        ),
        (
            &["--proxy-connect-url", URL],
            &["--proxy-connect-url", URL, "--jwt-secret", "s"],
            "proxy_connect_url",
        ),
        (
            &["--proxy-rpc-url", URL, "--proxy-timeout", "1ms"],
            &["--proxy-rpc-url", URL, "--proxy-timeout", "0s"],
            "proxy_timeout",
        ),
        (
            &["--proxy-rpc-url", URL, "--proxy-timeout", "30s"],
            &["--proxy-rpc-url", URL, "--proxy-timeout", "30001ms"],
            "proxy_timeout",
        ),
        (
            &[
                "--proxy-rpc-url",
                URL,
                "--proxy-timeout",
                "9999ms",
                "--heartbeat-interval",
                "5s",
                "--heartbeat-timeout",
                "10s",
            ],
            &[
                "--proxy-rpc-url",
                URL,
                "--proxy-timeout",
                "10s",
                "--heartbeat-interval",
                "5s",
                "--heartbeat-timeout",
                "10s",
            ],
            "proxy_timeout",
        ),
        (
            &[
                "--proxy-rpc-url",
                URL,
                "--proxy-headers",
                "x-tenant, Cookie",
            ],
            &["--proxy-rpc-url", URL, "--proxy-headers", "bad header"],
            "proxy_headers",
        ),
    ];
    for (passes, fails, setting) in cases {
        assert!(
            from_args(passes).is_ok(),
            "{passes:?}: {:?}",
            from_args(passes).err()
        );
        assert_eq!(invalid_setting(from_args(fails)), *setting, "{fails:?}");
    }
}
