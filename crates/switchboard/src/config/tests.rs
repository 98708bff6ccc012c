use super::*;

/// The configuration `switchboard ARGS` gives.
pub(super) fn from_args(args: &[&str]) -> Result<Config, ConfigError> {
    Config::load_from(std::iter::once("switchboard").chain(args.iter().copied()))
}

/// The setting a configuration error names; panics on anything else.
pub(super) fn invalid_setting(result: Result<Config, ConfigError>) -> &'static str {
    match result {
        Err(ConfigError::Invalid { setting, .. }) => setting,
        other => panic!("expected an invalid setting, got {other:?}"),
    }
}

#[test]
fn defaults_match_the_design() {
    let config = Config::default();
    assert_eq!(config.server.port, 3000);
    assert_eq!(config.server.host, "0.0.0.0");
    let limits = &config.hub.limits;
    assert_eq!(limits.max_connections, 10_000);
    assert_eq!(limits.max_connections_per_user, 5);
    assert_eq!(limits.max_frame_size, 1 << 20);
    assert_eq!(limits.max_content_length, 10_000);
    assert_eq!(
        limits.rate,
        Some(RateLimit {
            per_second: 10,
            burst: 20
        })
    );
    assert_eq!(config.hub.heartbeat.interval, Duration::from_secs(30));
    assert_eq!(config.hub.heartbeat.timeout, Duration::from_secs(60));
    assert_eq!(config.hub.cleanup_interval, Duration::from_secs(60));
    assert_eq!(config.hub.idle_timeout, Some(Duration::from_secs(300)));
    assert_eq!(config.log.format, LogFormat::Text);
}

#[test]
fn flags_set_every_kind_of_value() {
    let config = from_args(&[
        "--port",
        "4000",
        "--heartbeat-interval",
        "5s",
        "--heartbeat-timeout",
        "12s",
        "--max-frame-size",
        "64KiB",
        "--rate-limit",
        "0",
        "--app-heartbeat",
        "--idle-timeout",
        "0",
        "--log-format",
        "json",
    ])
    .unwrap();
    assert_eq!(config.server.port, 4000);
    assert_eq!(config.hub.heartbeat.interval, Duration::from_secs(5));
    assert_eq!(config.hub.heartbeat.timeout, Duration::from_secs(12));
    assert_eq!(config.hub.limits.max_frame_size, 64 << 10);
    assert_eq!(config.hub.limits.rate, None);
    assert!(config.hub.heartbeat.app_ping);
    assert_eq!(config.hub.idle_timeout, None);
    assert_eq!(config.log.format, LogFormat::Json);
}

#[test]
fn flags_override_the_file() {
    let dir = std::env::temp_dir().join(format!("switchboard-config-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchboard.toml");
    std::fs::write(
        &path,
        "port = 4100\nmax_connections = 7\nheartbeat_interval = \"10s\"\nmax_frame_size = 2048\n\
         token_expiry_warning = \"20s\"\n",
    )
    .unwrap();
    let config = from_args(&["--config", path.to_str().unwrap(), "--port", "4200"]).unwrap();
    assert_eq!(config.server.port, 4200);
    assert_eq!(config.hub.limits.max_connections, 7);
    assert_eq!(config.hub.heartbeat.interval, Duration::from_secs(10));
    assert_eq!(config.hub.limits.max_frame_size, 2048);
    assert_eq!(config.auth.expiry.warning, Duration::from_secs(20));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn file_errors_name_the_key() {
    let dir = std::env::temp_dir().join(format!("switchboard-config-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "prot = 3000\n").unwrap();
    let error = from_args(&["--config", path.to_str().unwrap()]).unwrap_err();
    assert!(error.to_string().contains("prot"), "{error}");
    std::fs::write(&path, "port = \"three thousand\"\n").unwrap();
    let error = from_args(&["--config", path.to_str().unwrap()]).unwrap_err();
    assert!(error.to_string().contains("port"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
    let error = from_args(&["--config", "/nonexistent/switchboard.toml"]).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
}

#[test]
fn invalid_values_name_the_setting() {
    assert_eq!(
        invalid_setting(from_args(&["--heartbeat-timeout", "30s"])),
        "heartbeat_timeout"
    );
    assert_eq!(
        invalid_setting(from_args(&["--heartbeat-interval", "0s"])),
        "heartbeat_interval"
    );
    assert_eq!(
        invalid_setting(from_args(&["--max-connections", "0"])),
        "max_connections"
    );
    assert_eq!(
        invalid_setting(from_args(&["--max-frame-size", "100"])),
        "max_frame_size"
    );
    assert_eq!(
        invalid_setting(from_args(&["--max-queued-bytes", "1KiB"])),
        "max_queued_bytes"
    );
    assert_eq!(
        invalid_setting(from_args(&["--rate-limit-burst", "0"])),
        "rate_limit_burst"
    );
    assert_eq!(
        invalid_setting(from_args(&["--node-id", "has space"])),
        "node_id"
    );
    let message = from_args(&["--max-connections-per-user", "0"])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("--max-connections-per-user")
            && message.contains("MAX_CONNECTIONS_PER_USER"),
        "{message}"
    );
}

#[test]
fn malformed_flag_values_are_refused_by_the_parser() {
    for args in [
        &["--port", "70000"][..],
        &["--heartbeat-interval", "soon"],
        &["--max-frame-size", "big"],
        &["--log-format", "xml"],
    ] {
        let error = from_args(args).unwrap_err();
        assert!(matches!(error, ConfigError::Cli(_)), "{args:?}");
        assert!(error.to_string().contains(args[0]), "{error}");
    }
}

#[test]
fn authentication_is_off_without_a_key() {
    let config = Config::default();
    assert!(config.auth.jwt.is_none());
    assert_eq!(config.auth.timeout, Duration::from_secs(5));
    assert!(config.auth.allowed_origins.is_none() && config.auth.admin_key.is_none());
    let config = from_args(&["--jwt-secret", "s3cret", "--auth-timeout", "2s"]).unwrap();
    assert_eq!(
        config.auth.jwt.as_ref().map(|jwt| jwt.algorithm()),
        Some("HS256")
    );
    assert_eq!(config.auth.timeout, Duration::from_secs(2));
}

#[test]
fn invalid_auth_settings_name_the_setting() {
    let dir = std::env::temp_dir().join(format!("switchboard-config-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key.pem");
    std::fs::write(&key, "not a key").unwrap();
    let key = key.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--jwt-secret", "s", "--jwt-public-key", key],
            "jwt_public_key",
        ),
        (&["--jwt-public-key", key], "jwt_public_key"),
        (
            &["--jwt-public-key", "/nonexistent/key.pem"],
            "jwt_public_key",
        ),
        (&["--jwt-secret", ""], "jwt_secret"),
        (
            &["--jwt-secret", "s", "--jwt-algorithm", "RS256"],
            "jwt_algorithm",
        ),
        (
            &["--jwt-secret", "s", "--jwt-algorithm", "none"],
            "jwt_algorithm",
        ),
        (&["--jwt-issuer", "me"], "jwt_issuer"),
        (&["--jwt-audience", "app"], "jwt_audience"),
        (&["--jwt-algorithm", "HS256"], "jwt_algorithm"),
        (&["--auth-timeout", "0s"], "auth_timeout"),
        (&["--auth-timeout", "301s"], "auth_timeout"),
        (&["--token-expiry-grace", "25h"], "token_expiry_grace"),
        (&["--token-expiry-warning", "2d"], "token_expiry_warning"),
        (&["--allowed-origins", "*"], "allowed_origins"),
        (
            &["--allowed-origins", "https://a.example/"],
            "allowed_origins",
        ),
        (&["--allowed-origins", ""], "allowed_origins"),
    ];
    for (args, setting) in cases {
        assert_eq!(invalid_setting(from_args(args)), *setting, "{args:?}");
    }
    assert!(from_args(&["--auth-timeout", "300s"]).is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn abuse_limits_have_defaults_and_can_be_turned_off() {
    let config = Config::default();
    assert_eq!(config.server.max_connections_per_ip, None);
    assert_eq!(
        config.hub.limits.violations,
        Some(ViolationLimit {
            max: 50,
            window: Duration::from_secs(10)
        })
    );
    let config = from_args(&[
        "--max-connections-per-ip",
        "100",
        "--max-violations",
        "5",
        "--violation-window",
        "1m",
    ])
    .unwrap();
    assert_eq!(config.server.max_connections_per_ip, Some(100));
    assert_eq!(
        config.hub.limits.violations,
        Some(ViolationLimit {
            max: 5,
            window: Duration::from_secs(60)
        })
    );
    let config = from_args(&["--max-connections-per-ip", "0", "--max-violations", "0"]).unwrap();
    assert_eq!(config.server.max_connections_per_ip, None);
    assert_eq!(config.hub.limits.violations, None);
    assert_eq!(
        invalid_setting(from_args(&["--violation-window", "0s"])),
        "violation_window"
    );
    assert!(from_args(&["--max-violations", "65535"]).is_ok());
    assert_eq!(
        invalid_setting(from_args(&["--max-violations", "65536"])),
        "max_violations"
    );
    assert_eq!(
        invalid_setting(from_args(&["--handshake-timeout", "0s"])),
        "handshake_timeout"
    );
}

#[test]
fn document_limits_fit_the_queue_at_their_edges() {
    let config = Config::default();
    assert_eq!(config.hub.documents.max_size, 2 << 20);
    assert_eq!(
        config.hub.documents.rate,
        Some(RateLimit {
            per_second: 100,
            burst: 200
        })
    );
    // A smaller queue lowers the default instead of refusing a setting nobody gave.
    let small = from_args(&["--max-queued-bytes", "64KiB"]).unwrap();
    assert_eq!(small.hub.documents.max_size, 32 << 10);
    assert!(
        from_args(&[
            "--max-queued-bytes",
            "64KiB",
            "--max-document-size",
            "32KiB"
        ])
        .is_ok()
    );
    assert_eq!(
        invalid_setting(from_args(&[
            "--max-queued-bytes",
            "64KiB",
            "--max-document-size",
            "33KiB"
        ])),
        "max_document_size"
    );
    assert!(from_args(&["--max-document-size", "1KiB"]).is_ok());
    assert_eq!(
        invalid_setting(from_args(&["--max-document-size", "1023"])),
        "max_document_size"
    );
    let off = from_args(&["--document-rate-limit", "0"]).unwrap();
    assert_eq!(off.hub.documents.rate, None);
}

/// Every setting's `--long` flag, its help, and what the defaults table shows for it.
fn settings_in_help() -> Vec<(String, String, defaults::Shown)> {
    use clap::CommandFactory;
    Cli::command()
        .get_arguments()
        .filter(|arg| !matches!(arg.get_id().as_str(), "config" | "help" | "version"))
        .map(|arg| {
            let id = arg.get_id().as_str();
            let shown = defaults::shown(id).unwrap_or_else(|| panic!("no default for {id}"));
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            (arg.get_long().expect("a long flag").to_owned(), help, shown)
        })
        .collect()
}

#[test]
fn help_shows_the_default_of_every_setting() {
    let settings = settings_in_help();
    assert!(settings.len() > 40, "{settings:?}");
    for (flag, help, shown) in settings {
        let (defaults::Shown::Value(shown) | defaults::Shown::Text(shown)) = shown;
        let expected = format!("[default: {shown}]");
        assert!(help.ends_with(&expected), "--{flag}: {help}");
        assert_eq!(help.matches("[default:").count(), 1, "--{flag}: {help}");
    }
}

/// The configuration from flags alone (no environment), as `Debug` text.
fn from_flags_only(args: &[&str]) -> String {
    let invocation = invocation(args, &[]).unwrap();
    format!("{:?}", invocation.config().unwrap())
}

#[test]
fn the_default_help_shows_is_the_one_in_force() {
    let base = ["--node-id", "n"];
    let default = from_flags_only(&base);
    let mut checked = 0;
    for (flag, _, shown) in settings_in_help() {
        let defaults::Shown::Value(value) = shown else {
            continue;
        };
        let flag = format!("--{flag}");
        let given = from_flags_only(&[base[0], base[1], &flag, &value]);
        assert_eq!(given, default, "{flag} {value}");
        checked += 1;
    }
    assert!(checked > 30, "{checked}");
}

/// The invocation of `args` (after the program name) with exactly the variables `env`.
pub(super) fn invocation(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, ConfigError> {
    let env: std::collections::HashMap<String, OsString> = env
        .iter()
        .map(|(name, value)| ((*name).to_owned(), OsString::from(value)))
        .collect();
    Invocation::from_args_and_env(
        std::iter::once("switchboard").chain(args.iter().copied()),
        move |name| env.get(name).cloned(),
    )
}

fn config_with(args: &[&str], env: &[(&str, &str)]) -> Config {
    invocation(args, env).unwrap().config().unwrap()
}

/// A TOML file in a fresh directory; the directory is removed by the caller.
fn toml_file(text: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("switchboard-config-{}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn prefixed_variables_set_settings_of_every_kind() {
    let config = config_with(
        &[],
        &[
            ("SWITCHBOARD_PORT", "4000"),
            ("SWITCHBOARD_REDIS_URL", "redis://127.0.0.1:6390"),
            ("SWITCHBOARD_HISTORY_SIZE", "7"),
            ("SWITCHBOARD_HISTORY_TTL", "2m"),
            ("SWITCHBOARD_MAX_FRAME_SIZE", "64KiB"),
            ("SWITCHBOARD_APP_HEARTBEAT", "true"),
            ("SWITCHBOARD_LOG_FORMAT", "json"),
            ("SWITCHBOARD_TOKEN_EXPIRY_GRACE", "3s"),
            // A value that looks like a flag is still a value.
            ("SWITCHBOARD_JWT_SECRET", "--not-a-flag"),
        ],
    );
    assert_eq!(config.server.port, 4000);
    assert_eq!(
        config.cluster.map(|cluster| cluster.url).as_deref(),
        Some("redis://127.0.0.1:6390")
    );
    assert_eq!(config.hub.history.size, 7);
    assert_eq!(config.hub.history.ttl, Duration::from_secs(120));
    assert_eq!(config.hub.limits.max_frame_size, 64 << 10);
    assert!(config.hub.heartbeat.app_ping);
    assert_eq!(config.log.format, LogFormat::Json);
    assert!(config.auth.jwt.is_some());
    assert_eq!(config.auth.expiry.grace, Duration::from_secs(3));
}

#[test]
fn port_is_honoured_without_a_warning_and_the_older_names_with_one() {
    let invocation = invocation(
        &[],
        &[
            ("PORT", "4100"),
            ("HISTORY_SIZE", "9"),
            ("HOST", "127.0.0.1"),
        ],
    )
    .unwrap();
    let config = invocation.config().unwrap();
    assert_eq!(config.server.port, 4100);
    assert_eq!(config.server.host, "127.0.0.1");
    assert_eq!(config.hub.history.size, 9);
    let deprecated: Vec<(String, String)> = invocation
        .sources
        .deprecated()
        .into_iter()
        .map(|old| (old.variable, old.instead))
        .collect();
    assert_eq!(
        deprecated,
        [
            ("HOST".to_owned(), "SWITCHBOARD_HOST".to_owned()),
            (
                "HISTORY_SIZE".to_owned(),
                "SWITCHBOARD_HISTORY_SIZE".to_owned()
            ),
        ]
    );
    assert_eq!(
        invocation.sources.origin("port"),
        Origin::Env("PORT".into())
    );
}

#[test]
fn precedence_is_flag_then_prefixed_variable_then_older_variable_then_file() {
    let (dir, path) = toml_file(
        "port = 4001\nhistory_size = 1\nmax_connections = 1\nmax_rooms_per_connection = 1\n",
    );
    let file = path.to_str().unwrap();
    let invocation = invocation(
        &["--config", file, "--port", "4004"],
        &[
            ("SWITCHBOARD_PORT", "4003"),
            ("PORT", "4002"),
            ("SWITCHBOARD_HISTORY_SIZE", "3"),
            ("HISTORY_SIZE", "2"),
            ("MAX_CONNECTIONS", "2"),
        ],
    )
    .unwrap();
    let config = invocation.config().unwrap();
    assert_eq!(config.server.port, 4004, "the flag");
    assert_eq!(config.hub.history.size, 3, "the prefixed variable");
    assert_eq!(config.hub.limits.max_connections, 2, "the older variable");
    assert_eq!(config.hub.limits.max_rooms_per_connection, 1, "the file");
    assert_eq!(config.hub.limits.max_connections_per_user, 5, "the default");
    let origin = |setting| invocation.sources.origin(setting);
    assert_eq!(origin("port"), Origin::Flag);
    assert_eq!(
        origin("history_size"),
        Origin::Env("SWITCHBOARD_HISTORY_SIZE".into())
    );
    assert_eq!(
        origin("max_connections"),
        Origin::Env("MAX_CONNECTIONS".into())
    );
    assert_eq!(
        origin("max_rooms_per_connection"),
        Origin::File(path.clone())
    );
    assert_eq!(origin("max_connections_per_user"), Origin::Default);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_config_file_may_come_from_a_variable_and_empty_variables_are_unset() {
    let (dir, path) = toml_file("port = 4200\n");
    let config = config_with(
        &[],
        &[
            ("SWITCHBOARD_CONFIG", path.to_str().unwrap()),
            ("SWITCHBOARD_PORT", ""),
            ("SWITCHBOARD_REDIS_URL", ""),
        ],
    );
    assert_eq!(config.server.port, 4200);
    assert!(config.cluster.is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_values_in_variables_name_the_variable_and_the_flag() {
    for (variable, value, flag) in [
        ("SWITCHBOARD_PORT", "lots", "--port"),
        ("MAX_FRAME_SIZE", "big", "--max-frame-size"),
        ("SWITCHBOARD_LOG_FORMAT", "xml", "--log-format"),
        ("SWITCHBOARD_APP_HEARTBEAT", "maybe", "--app-heartbeat"),
    ] {
        let error = invocation(&[], &[(variable, value)]).unwrap_err();
        assert!(matches!(error, ConfigError::Env { .. }), "{error:?}");
        let message = error.to_string();
        assert!(
            message.contains(variable) && message.contains(flag) && !message.contains('\n'),
            "{message}"
        );
    }
    // Kubernetes gives every pod of a Service named `switchboard` SWITCHBOARD_PORT=tcp://…
    let message = invocation(&[], &[("SWITCHBOARD_PORT", "tcp://10.0.0.7:3000")])
        .unwrap_err()
        .to_string();
    assert!(message.contains("enableServiceLinks"), "{message}");
    // Values that parse but cannot work name the prefixed variable.
    let message = config_error_message(&[], &[("MAX_CONNECTIONS", "0")]);
    assert!(message.contains("SWITCHBOARD_MAX_CONNECTIONS"), "{message}");
}

fn config_error_message(args: &[&str], env: &[(&str, &str)]) -> String {
    invocation(args, env)
        .unwrap()
        .config()
        .unwrap_err()
        .to_string()
}

#[test]
fn a_bad_log_level_is_refused_naming_the_setting() {
    for level in [
        "verbose",
        "warning",
        "switchboard=loud",
        "info,,[",
        "info,switchboard",
    ] {
        assert_eq!(
            invalid_setting(from_args(&["--log-level", level])),
            "log_level",
            "{level}"
        );
    }
    for level in [
        "info",
        "WARN",
        "off",
        "info,switchboard=debug",
        "switchboard::hub=trace",
    ] {
        assert!(from_args(&["--log-level", level]).is_ok(), "{level}");
    }
}

#[test]
fn settings_may_follow_a_subcommand() {
    let invocation = invocation(&["check-config", "--port", "4300"], &[]).unwrap();
    assert!(matches!(invocation.command, Some(Command::CheckConfig)));
    assert_eq!(invocation.config().unwrap().server.port, 4300);
    let invocation = self::invocation(&["--port", "4301", "token", "--sub", "alice"], &[]).unwrap();
    assert!(matches!(invocation.command, Some(Command::Token(_))));
    assert_eq!(invocation.config().unwrap().server.port, 4301);
}

#[test]
fn the_effective_configuration_masks_secrets_and_reads_back_as_a_file() {
    let invocation = invocation(
        &["--jwt-secret", "hunter2", "--node-id", "n1"],
        &[
            ("SWITCHBOARD_PORT", "4400"),
            ("SWITCHBOARD_API_KEY", "api-secret"),
            ("ADMIN_KEY", "admin-secret"),
            (
                "SWITCHBOARD_REDIS_URL",
                "redis://app:redis-secret@redis:6379/0",
            ),
            (
                "SWITCHBOARD_BROKER_URL",
                "amqp://app:broker-secret@rabbit:5672/%2f",
            ),
        ],
    )
    .unwrap();
    let text = invocation.sources.effective();
    for secret in [
        "hunter2",
        "api-secret",
        "admin-secret",
        "redis-secret",
        "broker-secret",
    ] {
        assert!(!text.contains(secret), "{secret} in:\n{text}");
    }
    let line = |setting: &str| {
        text.lines()
            .find(|line| line.starts_with(&format!("{setting} = ")))
            .unwrap_or_else(|| panic!("no {setting} in:\n{text}"))
            .to_owned()
    };
    assert!(line("port").ends_with("# env SWITCHBOARD_PORT"), "{text}");
    assert!(line("jwt_secret").ends_with("# flag"), "{text}");
    assert!(
        line("admin_key").ends_with("# env ADMIN_KEY (deprecated: use SWITCHBOARD_ADMIN_KEY)"),
        "{text}"
    );
    assert!(line("redis_url").contains("redis://app:********@redis:6379/0"));
    assert!(line("broker_url").contains("amqp://app:********@rabbit:5672/%2f"));
    assert!(line("heartbeat_interval").ends_with("# default"), "{text}");
    // Read back as a config file, it gives the same configuration (secrets aside).
    let file: RawSettings = toml::from_str(&text).unwrap();
    let reread = Config::from_settings(file).unwrap();
    let config = invocation.config().unwrap();
    assert_eq!(format!("{:?}", reread.hub), format!("{:?}", config.hub));
    assert_eq!(
        format!("{:?}", reread.server),
        format!("{:?}", config.server)
    );
}

#[test]
fn webhooks_need_http_urls_a_secret_and_known_events() {
    assert!(Config::default().webhooks.is_none());
    let url = "http://127.0.0.1:9/hooks";
    let cases: &[(&[&str], &str)] = &[
        (&["--webhook-url", url], "webhook_secret"),
        (
            &["--webhook-url", url, "--webhook-secret", ""],
            "webhook_secret",
        ),
        (
            &[
                "--webhook-url",
                "ftp://b.example/h",
                "--webhook-secret",
                "s",
            ],
            "webhook_url",
        ),
        (
            &["--webhook-url", "/relative", "--webhook-secret", "s"],
            "webhook_url",
        ),
        (
            &[
                "--webhook-url",
                url,
                "--webhook-secret",
                "s",
                "--webhook-events",
                "room_occupied,room_closed",
            ],
            "webhook_events",
        ),
    ];
    for (args, setting) in cases {
        assert_eq!(invalid_setting(from_args(args)), *setting, "{args:?}");
    }
    let config = from_args(&[
        "--webhook-url",
        &format!("{url}, https://hooks.example.com/other"),
        "--webhook-secret",
        "s",
        "--webhook-events",
        " member_added ,client_message",
        "--webhook-client-types",
        "typing,,cursor",
    ])
    .unwrap();
    let webhooks = config.webhooks.unwrap();
    assert_eq!(webhooks.urls.len(), 2);
    let clustered = from_args(&[
        "--webhook-url",
        url,
        "--webhook-secret",
        "s",
        "--redis-url",
        "redis://127.0.0.1:6379",
    ]);
    assert!(clustered.unwrap().webhooks.is_some(), "once per cluster");
    assert_eq!(
        webhooks.events,
        [EventName::MemberAdded, EventName::ClientMessage]
    );
    assert_eq!(webhooks.client_types, ["typing", "cursor"]);
    assert!(
        !format!("{webhooks:?}").contains("\"s\""),
        "the secret is masked"
    );
    let all = from_args(&["--webhook-url", url, "--webhook-secret", "s"]).unwrap();
    assert_eq!(all.webhooks.unwrap().events, EventName::ALL);
    let none = from_args(&["--webhook-url", " , ", "--webhook-secret", "s"]).unwrap();
    assert!(none.webhooks.is_none(), "an empty list is no webhook");
}

/// Every validation rule at its edge: the last value that passes and the first that does not
/// (docs/configuration.md, "What a value must be").
#[test]
fn each_rule_holds_at_its_edge() {
    let long_id = "n".repeat(64);
    let too_long_id = "n".repeat(65);
    let long_prefix = "p".repeat(64);
    let too_long_prefix = "p".repeat(65);
    let cases: &[(&[&str], &[&str], &str)] = &[
        // (passes, fails, setting named)
        (&["--host", "127.0.0.1"], &["--host", " "], "host"),
        (
            &["--shutdown-timeout", "1ms"],
            &["--shutdown-timeout", "0s"],
            "shutdown_timeout",
        ),
        (
            &["--handshake-timeout", "1ms"],
            &["--handshake-timeout", "0s"],
            "handshake_timeout",
        ),
        (
            &["--cleanup-interval", "1ms"],
            &["--cleanup-interval", "0s"],
            "cleanup_interval",
        ),
        (
            &["--history-size", "10000"],
            &["--history-size", "10001"],
            "history_size",
        ),
        (
            &["--history-ttl", "1s"],
            &["--history-ttl", "999ms"],
            "history_ttl",
        ),
        (
            &[
                "--heartbeat-interval",
                "10s",
                "--heartbeat-timeout",
                "10001ms",
            ],
            &["--heartbeat-interval", "10s", "--heartbeat-timeout", "10s"],
            "heartbeat_timeout",
        ),
        (
            &["--idle-timeout", "60s", "--away-timeout", "59999ms"],
            &["--idle-timeout", "60s", "--away-timeout", "60s"],
            "away_timeout",
        ),
        (
            &["--idle-timeout", "0", "--away-timeout", "1h"],
            &["--away-timeout", "0s"],
            "away_timeout",
        ),
        (
            &["--max-name-length", "1024"],
            &["--max-name-length", "1025"],
            "max_name_length",
        ),
        (
            &["--max-name-length", "1"],
            &["--max-name-length", "0"],
            "max_name_length",
        ),
        (
            &["--max-rooms-per-connection", "1"],
            &["--max-rooms-per-connection", "0"],
            "max_rooms_per_connection",
        ),
        (
            &["--max-channels-per-connection", "1"],
            &["--max-channels-per-connection", "0"],
            "max_channels_per_connection",
        ),
        (
            &["--max-content-length", "1"],
            &["--max-content-length", "0"],
            "max_content_length",
        ),
        (
            &["--max-connections-per-user", "1"],
            &["--max-connections-per-user", "0"],
            "max_connections_per_user",
        ),
        (
            &["--max-presence-metadata", "2"],
            &["--max-presence-metadata", "1"],
            "max_presence_metadata",
        ),
        (
            &["--max-presence-metadata", "64KiB"],
            &["--max-presence-metadata", "65537"],
            "max_presence_metadata",
        ),
        (
            &["--max-frame-size", "125"],
            &["--max-frame-size", "124"],
            "max_frame_size",
        ),
        (
            &["--max-frame-size", "1GiB", "--max-queued-bytes", "2GiB"],
            &["--max-frame-size", "1073741825"],
            "max_frame_size",
        ),
        (
            &["--max-queued-bytes", "65536"],
            &["--max-queued-bytes", "65535"],
            "max_queued_bytes",
        ),
        (
            &["--rate-limit", "1", "--rate-limit-burst", "1"],
            &["--rate-limit", "1", "--rate-limit-burst", "0"],
            "rate_limit_burst",
        ),
        (
            &["--node-id", &long_id],
            &["--node-id", &too_long_id],
            "node_id",
        ),
        (
            &["--redis-url", "rediss://cache.example:6380"],
            &["--redis-url", "http://cache.example:6379"],
            "redis_url",
        ),
        (
            &["--redis-url", "redis://r", "--redis-prefix", &long_prefix],
            &[
                "--redis-url",
                "redis://r",
                "--redis-prefix",
                &too_long_prefix,
            ],
            "redis_prefix",
        ),
        (
            &["--redis-url", "redis://r", "--redis-prefix", "a-b_c.d:{e}"],
            &["--redis-url", "redis://r", "--redis-prefix", "a b"],
            "redis_prefix",
        ),
        (
            &["--redis-url", "redis://r", "--broker-url", "nats://n:4222"],
            &["--broker-url", "nats://n:4222"],
            "broker_url",
        ),
        (
            &[
                "--redis-url",
                "redis://r",
                "--broker-url",
                "amqps://u:p@h/vh",
            ],
            &["--redis-url", "redis://r", "--broker-url", "kafka://k:9092"],
            "broker_url",
        ),
        (
            &["--redis-url", "redis://r", "--node-ttl", "1s"],
            &["--redis-url", "redis://r", "--node-ttl", "999ms"],
            "node_ttl",
        ),
        (
            &["--redis-url", "redis://r", "--node-ttl", "10m"],
            &["--redis-url", "redis://r", "--node-ttl", "601s"],
            "node_ttl",
        ),
        (&[], &["--tls-cert", "/nonexistent/cert.pem"], "tls_key"),
        (&[], &["--tls-key", "/nonexistent/key.pem"], "tls_cert"),
        (
            &["--log-level", "warn,switchboard=debug"],
            &["--log-level", "verbose"],
            "log_level",
        ),
    ];
    for (passes, fails, setting) in cases {
        if let Err(error) = from_args(passes) {
            panic!("{passes:?} should pass: {error}");
        }
        assert_eq!(invalid_setting(from_args(fails)), *setting, "{fails:?}");
    }
    // A burst of 0 is refused only while rate limiting is on.
    assert!(from_args(&["--rate-limit", "0", "--rate-limit-burst", "0"]).is_ok());
}

#[test]
fn a_broker_url_names_the_broker_beside_redis() {
    use crate::broker::BrokerUrl;
    let broker = |args: &[&str]| from_args(args).unwrap().cluster.and_then(|c| c.broker);
    assert_eq!(broker(&["--redis-url", "redis://r"]), None);
    assert_eq!(
        broker(&["--redis-url", "redis://r", "--broker-url", "nats://n:4222"]),
        Some(BrokerUrl::Nats("nats://n:4222".into()))
    );
    assert_eq!(
        broker(&[
            "--redis-url",
            "redis://r",
            "--broker-url",
            "amqp://u:p@h:5672/%2f"
        ]),
        Some(BrokerUrl::Amqp("amqp://u:p@h:5672/%2f".into()))
    );
}

#[test]
fn redis_cluster_makes_the_url_a_seed_and_refuses_what_it_cannot_do() {
    let cluster = |args: &[&str]| from_args(args).unwrap().cluster.unwrap().cluster;
    assert!(!cluster(&["--redis-url", "redis://r"]), "off by default");
    assert!(cluster(&[
        "--redis-url",
        "redis://r:7000",
        "--redis-cluster"
    ]));
    assert!(!cluster(&[
        "--redis-url",
        "redis://r",
        "--redis-cluster",
        "false"
    ]));
    fn args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["--redis-url", "rediss://r:7000", "--redis-cluster"];
        args.extend_from_slice(extra);
        args
    }
    assert_eq!(
        invalid_setting(from_args(&args(&["--redis-prefix", "{app}:"]))),
        "redis_prefix"
    );
    let redis = |extra: &[&str]| from_args(&args(extra)).unwrap().cluster.unwrap();
    let with_nats = redis(&["--broker-url", "nats://n:4222"]);
    assert!(
        with_nats.cluster && with_nats.broker.is_some(),
        "the Redis Cluster as the state store, NATS as the broker"
    );
    let pki = switchboard_testkit::TestPki::generate();
    let ca = pki.cert.to_str().unwrap();
    let with_ca = redis(&["--redis-tls-ca", ca]);
    assert!(
        with_ca.cluster && with_ca.tls_ca.is_some(),
        "a private CA for every master"
    );
}

#[test]
fn redis_tls_ca_needs_rediss_and_a_pem_certificate() {
    let pki = switchboard_testkit::TestPki::generate();
    let ca = pki.cert.to_str().unwrap();
    let config = from_args(&["--redis-url", "rediss://r:6380", "--redis-tls-ca", ca]).unwrap();
    let redis = config.cluster.expect("cluster mode");
    assert_eq!(redis.tls_ca, Some(std::fs::read(&pki.cert).unwrap()));
    // The key file is PEM, but holds no certificate.
    let key = pki.key.to_str().unwrap();
    for fails in [
        ["--redis-url", "redis://r", "--redis-tls-ca", ca],
        [
            "--redis-url",
            "rediss://r",
            "--redis-tls-ca",
            "/nonexistent/ca.pem",
        ],
        ["--redis-url", "rediss://r", "--redis-tls-ca", key],
    ] {
        assert_eq!(
            invalid_setting(from_args(&fails)),
            "redis_tls_ca",
            "{fails:?}"
        );
    }
}

/// The variables are read by `env` (prefixed first, then the older name with a warning), never
/// by clap: a clap `env` would read the older name straight from the process, above
/// `SWITCHBOARD_<SETTING>` and without a warning (as `DATA_DIR` once did).
#[test]
fn no_setting_reads_its_variable_through_clap() {
    use clap::Args;
    let command = RawSettings::augment_args(clap::Command::new("switchboard"));
    let read_by_clap: Vec<String> = command
        .get_arguments()
        .filter(|arg| arg.get_env().is_some())
        .map(|arg| arg.get_id().to_string())
        .collect();
    assert!(read_by_clap.is_empty(), "{read_by_clap:?}");
}

#[test]
fn compression_is_on_by_default_and_set_by_flag_variable_or_file() {
    let compression = Config::default().hub.compression;
    assert!(compression.enabled);
    assert_eq!(compression.threshold, 1 << 10);
    let config = from_args(&["--compression", "false", "--compression-threshold", "0"]).unwrap();
    assert!(!config.hub.compression.enabled);
    assert_eq!(config.hub.compression.threshold, 0);
    let config = config_with(
        &[],
        &[
            ("SWITCHBOARD_COMPRESSION", "false"),
            ("SWITCHBOARD_COMPRESSION_THRESHOLD", "4KiB"),
        ],
    );
    assert!(!config.hub.compression.enabled);
    assert_eq!(config.hub.compression.threshold, 4 << 10);
    let (dir, file) = toml_file("compression = false\ncompression_threshold = \"256\"\n");
    let config = config_with(&["--config", file.to_str().unwrap()], &[]);
    assert!(!config.hub.compression.enabled);
    assert_eq!(config.hub.compression.threshold, 256);
    let _ = std::fs::remove_dir_all(dir);
    let bad = invocation(&["--compression-threshold", "lots"], &[]).and_then(|i| i.config());
    assert!(bad.is_err(), "a threshold must be a size");
}
