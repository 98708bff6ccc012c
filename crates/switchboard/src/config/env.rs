//! Environment variables of the settings. Each setting is `SWITCHBOARD_<SETTING>`
//! (`SWITCHBOARD_REDIS_URL`). `PORT`, which platforms (Heroku, Cloud Run, Render) set, stays;
//! the older unprefixed names (`REDIS_URL`) still work for one release and are reported as
//! [`Deprecated`], so that the server warns at start. An empty variable counts as unset.
//!
//! Precedence: flag > `SWITCHBOARD_<SETTING>` > `PORT` or the older name > file > default.
//!
//! The variables are read here rather than by clap, through a lookup function (the process's
//! environment, or a map in tests), and each value is parsed as its flag would be, so a bad
//! value fails the same way and the error names the variable.

use std::ffi::OsString;

use clap::{Args, FromArgMatches};

use super::{ConfigError, RawSettings};

/// The prefix of every setting's variable.
pub const PREFIX: &str = "SWITCHBOARD_";

/// The one unprefixed variable that is not deprecated: platforms set it.
const PLATFORM_PORT: &str = "port";

/// The variable of `setting` (its TOML name): `SWITCHBOARD_REDIS_URL` for `redis_url`.
pub(super) fn prefixed(setting: &str) -> String {
    format!("{PREFIX}{}", setting.to_ascii_uppercase())
}

/// The older, unprefixed variable of `setting`: `REDIS_URL` for `redis_url`.
pub(super) fn unprefixed(setting: &str) -> String {
    setting.to_ascii_uppercase()
}

/// An older variable that was set: it still works, and the server warns at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deprecated {
    /// The variable as set, e.g. `REDIS_URL`.
    pub variable: String,
    /// The variable to set instead, e.g. `SWITCHBOARD_REDIS_URL`.
    pub instead: String,
}

/// The settings one family of variables gave.
#[derive(Debug, Default)]
pub(super) struct EnvLayer {
    /// Their values.
    pub(super) settings: RawSettings,
    /// The settings (TOML names) they gave, in declaration order.
    pub(super) given: Vec<String>,
}

impl EnvLayer {
    /// Reads the variable `name(setting)` of every setting through `lookup`.
    pub(super) fn read(
        lookup: &dyn Fn(&str) -> Option<OsString>,
        name: fn(&str) -> String,
    ) -> Result<Self, ConfigError> {
        let command =
            RawSettings::augment_args(clap::Command::new("switchboard")).no_binary_name(true);
        let mut layer = Self::default();
        for arg in command.get_arguments() {
            let (setting, Some(flag)) = (arg.get_id().as_str(), arg.get_long()) else {
                continue;
            };
            let variable = name(setting);
            let Some(value) = lookup(&variable).filter(|value| !value.is_empty()) else {
                continue;
            };
            // `--flag=value` in one token, so that a value starting with `-` stays a value.
            let mut token = OsString::from(format!("--{flag}="));
            token.push(&value);
            let invalid = |source| ConfigError::Env {
                variable: variable.clone(),
                value: value.to_string_lossy().into_owned(),
                source,
            };
            let matches = command
                .clone()
                .try_get_matches_from([token])
                .map_err(invalid)?;
            let settings = RawSettings::from_arg_matches(&matches).map_err(invalid)?;
            layer.settings = layer.settings.or(settings);
            layer.given.push(setting.to_owned());
        }
        Ok(layer)
    }

    /// The deprecated variables among those an unprefixed layer gave (all but `PORT`).
    pub(super) fn deprecated(&self) -> Vec<Deprecated> {
        self.given
            .iter()
            .filter(|setting| *setting != PLATFORM_PORT)
            .map(|setting| Deprecated {
                variable: unprefixed(setting),
                instead: prefixed(setting),
            })
            .collect()
    }
}

/// The reason of a clap error about one value, without clap's `error: ` prefix and usage hint.
pub(super) fn clap_reason(error: &clap::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// What to do about a `SWITCHBOARD_PORT` that Kubernetes set: for a Service named
/// `switchboard` it gives every pod `SWITCHBOARD_PORT=tcp://10.0.0.1:3000` (a "service link").
pub(super) fn hint(variable: &str, value: &str) -> &'static str {
    if variable == prefixed(PLATFORM_PORT) && value.starts_with("tcp://") {
        " (Kubernetes sets this for a Service named switchboard: set enableServiceLinks: \
         false in the pod spec)"
    } else {
        ""
    }
}
