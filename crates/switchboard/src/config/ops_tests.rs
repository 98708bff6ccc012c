//! Validation of the operating settings at their edges: the server API's access, the admin
//! listener, the trusted proxies, the memory limit.

use super::*;

fn from_args(args: &[&str]) -> Result<Config, ConfigError> {
    from_env(args, &[])
}

fn from_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    super::tests::invocation(args, env)?.config()
}

fn from_toml(text: &str) -> Result<Config, ConfigError> {
    Config::from_settings(toml::from_str(text).expect("valid TOML"))
}

fn refused(args: &[&str]) -> (&'static str, String) {
    match from_args(args) {
        Err(ConfigError::Invalid { setting, reason }) => (setting, reason),
        other => panic!("expected {args:?} to be refused, got {other:?}"),
    }
}

#[test]
fn the_api_is_closed_by_default_and_opens_with_a_key_or_insecure() {
    let api = from_args(&[]).unwrap().api;
    assert_eq!((api.key, api.insecure), (None, false));
    let api = from_args(&["--api-key", "k"]).unwrap().api;
    assert_eq!((api.key.as_deref(), api.insecure), (Some("k"), false));
    let api = from_args(&["--api-insecure"]).unwrap().api;
    assert_eq!((api.key, api.insecure), (None, true));
    let api = from_args(&["--api-insecure=false"]).unwrap().api;
    assert!(!api.insecure);
    // An empty key is no key: still closed.
    let api = from_args(&["--api-key", ""]).unwrap().api;
    assert_eq!((api.key, api.insecure), (None, false));
    let api = from_args(&["--api-key", "", "--api-insecure"]).unwrap().api;
    assert_eq!((api.key, api.insecure), (None, true));
}

#[test]
fn a_key_and_insecure_together_are_refused() {
    let (setting, reason) = refused(&["--api-key", "k", "--api-insecure"]);
    assert_eq!(setting, "api_insecure");
    assert!(reason.contains("api_key"), "{reason}");
    assert!(from_args(&["--api-key", "k", "--api-insecure=false"]).is_ok());
}

#[test]
fn api_insecure_comes_from_every_source() {
    assert!(
        from_env(&[], &[("SWITCHBOARD_API_INSECURE", "true")])
            .unwrap()
            .api
            .insecure
    );
    assert!(from_toml("api_insecure = true").unwrap().api.insecure);
    assert!(!from_toml("api_insecure = false").unwrap().api.insecure);
}

#[test]
fn the_admin_port_is_off_by_default_and_must_differ_from_the_port() {
    assert_eq!(from_args(&[]).unwrap().server.admin_port, None);
    let server = from_args(&["--port", "3000", "--admin-port", "3001"])
        .unwrap()
        .server;
    assert_eq!((server.port, server.admin_port), (3000, Some(3001)));
    let (setting, reason) = refused(&["--admin-port", "3000"]);
    assert_eq!(setting, "admin_port");
    assert!(reason.contains("3000"), "{reason}");
    refused(&["--port", "9090", "--admin-port", "9090"]);
    // Both ephemeral: two different free ports.
    let server = from_args(&["--port", "0", "--admin-port", "0"])
        .unwrap()
        .server;
    assert_eq!((server.port, server.admin_port), (0, Some(0)));
    assert!(from_args(&["--admin-port", "65536"]).is_err());
    let env = from_env(&[], &[("SWITCHBOARD_ADMIN_PORT", "9100")]).unwrap();
    assert_eq!(env.server.admin_port, Some(9100));
    assert_eq!(
        from_toml("admin_port = 9100").unwrap().server.admin_port,
        Some(9100)
    );
}

#[test]
fn trusted_proxies_parse_as_blocks_and_name_a_bad_one() {
    let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
    assert!(from_args(&[]).unwrap().server.trusted_proxies.is_empty());
    let proxies = from_args(&["--trusted-proxies", "10.0.0.0/8, 127.0.0.1,::1"])
        .unwrap()
        .server
        .trusted_proxies;
    for trusted in ["10.200.0.1", "127.0.0.1", "::1"] {
        assert!(proxies.contains(ip(trusted)), "{trusted}");
    }
    assert!(!proxies.contains(ip("127.0.0.2")));
    for bad in ["10.0.0.0/33", "proxy.internal", "10.1.0.0/8", "::/129"] {
        let (setting, reason) = refused(&["--trusted-proxies", bad]);
        assert_eq!(setting, "trusted_proxies", "{bad}");
        assert!(reason.contains(bad.split('/').next().unwrap()), "{reason}");
    }
    let env = from_env(&[], &[("SWITCHBOARD_TRUSTED_PROXIES", "192.168.0.0/16")]).unwrap();
    assert!(env.server.trusted_proxies.contains(ip("192.168.1.1")));
    let file = from_toml(r#"trusted_proxies = "172.16.0.0/12""#).unwrap();
    assert!(file.server.trusted_proxies.contains(ip("172.31.255.255")));
}

#[cfg(target_os = "linux")]
#[test]
fn max_memory_is_off_by_default_or_zero_and_at_least_16_mib() {
    let limit = |args: &[&str]| from_args(args).unwrap().hub.limits.max_memory;
    assert_eq!(limit(&[]), None);
    assert_eq!(limit(&["--max-memory", "0"]), None);
    assert_eq!(limit(&["--max-memory", "16MiB"]), Some(16 << 20));
    assert_eq!(limit(&["--max-memory", "2GiB"]), Some(2 << 30));
    assert_eq!(limit(&["--max-memory", "16777216"]), Some(16 << 20));
    for small in ["16777215", "1MiB", "1"] {
        let (setting, reason) = refused(&["--max-memory", small]);
        assert_eq!(setting, "max_memory");
        assert!(reason.contains("16MiB"), "{reason}");
    }
    assert!(from_args(&["--max-memory", "lots"]).is_err());
    let env = from_env(&[], &[("SWITCHBOARD_MAX_MEMORY", "1GiB")]).unwrap();
    assert_eq!(env.hub.limits.max_memory, Some(1 << 30));
    let file = from_toml("max_memory = \"512MiB\"").unwrap();
    assert_eq!(file.hub.limits.max_memory, Some(512 << 20));
}
