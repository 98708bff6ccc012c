//! The effective configuration as `switchboard check-config` prints it: every setting as one
//! line of TOML with the source that gave it, so that the output reads as a `--config` file.
//! Secrets (the settings marked `hide_env_values`) are masked, and so is the password in a
//! Redis URL. A setting whose default is not one value (`node_id`: random) is a comment
//! while unset.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::defaults::{self, Shown};
use super::sources::{Origin, Sources};
use super::units::{ByteSize, DurationArg};
use super::{LogFormat, RawSettings};

/// What replaces a secret.
const MASK: &str = "********";

/// A setting's value written as TOML.
pub(super) trait TomlValue {
    /// Whether the TOML form is a string (so that a default shown in the help is quoted).
    const QUOTED: bool;
    /// The value as TOML.
    fn toml(&self) -> String;
}

impl TomlValue for String {
    const QUOTED: bool = true;
    fn toml(&self) -> String {
        quoted(self)
    }
}

impl TomlValue for PathBuf {
    const QUOTED: bool = true;
    fn toml(&self) -> String {
        quoted(&self.display().to_string())
    }
}

impl TomlValue for DurationArg {
    const QUOTED: bool = true;
    fn toml(&self) -> String {
        quoted(&humantime::format_duration(self.0).to_string())
    }
}

impl TomlValue for ByteSize {
    const QUOTED: bool = true;
    fn toml(&self) -> String {
        // `defaults::size` writes "125 bytes" where no binary unit divides; the parser wants
        // the bare number then.
        let text = defaults::size(self.0);
        quoted(text.strip_suffix(" bytes").unwrap_or(&text))
    }
}

impl TomlValue for LogFormat {
    const QUOTED: bool = true;
    fn toml(&self) -> String {
        let name = self.to_possible_value().map(|v| v.get_name().to_owned());
        quoted(&name.unwrap_or_default())
    }
}

macro_rules! unquoted {
    ($($ty:ty),*) => {$(
        impl TomlValue for $ty {
            const QUOTED: bool = false;
            fn toml(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
unquoted!(bool, u16, u32, usize);

/// A TOML basic string: JSON's escapes are a subset of TOML's.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The effective configuration of `sources`, one line per setting.
pub(super) fn render(sources: &Sources) -> String {
    let merged = sources.merged();
    let secrets = secret_settings();
    let lines: Vec<(String, String)> = merged
        .as_toml()
        .into_iter()
        .map(|(setting, value, quoted_default)| {
            let origin = sources.origin(setting);
            let line = match value {
                Some(_) if secrets.contains(&setting) => format!("{setting} = {}", quoted(MASK)),
                Some(_) if setting == "redis_url" || setting == "broker_url" => {
                    let url = match setting {
                        "redis_url" => merged.redis_url.as_deref(),
                        _ => merged.broker_url.as_deref(),
                    };
                    let url = url.unwrap_or_default();
                    format!("{setting} = {}", quoted(&mask_url_password(url)))
                }
                Some(value) => format!("{setting} = {value}"),
                None => match defaults::shown(setting) {
                    Some(Shown::Value(shown)) if quoted_default => {
                        format!("{setting} = {}", quoted(&shown))
                    }
                    Some(Shown::Value(shown)) => format!("{setting} = {shown}"),
                    Some(Shown::Text(text)) => format!("# {setting}: {text}"),
                    None => format!("# {setting}: unset"),
                },
            };
            (line, describe(sources, &origin))
        })
        .collect();
    let width = lines.iter().map(|(line, _)| line.len()).max().unwrap_or(0);
    let mut out = String::from(
        "# The effective configuration (flag > SWITCHBOARD_<SETTING> > PORT or older variable\n\
         # > file > default); secrets are masked.\n",
    );
    for (line, origin) in lines {
        out.push_str(&format!("{line:width$}  # {origin}\n"));
    }
    out
}

/// The origin as a comment, with the variable to use instead of a deprecated one.
fn describe(sources: &Sources, origin: &Origin) -> String {
    let Origin::Env(variable) = origin else {
        return origin.to_string();
    };
    match sources
        .deprecated()
        .into_iter()
        .find(|old| &old.variable == variable)
    {
        Some(old) => format!("{origin} (deprecated: use {})", old.instead),
        None => origin.to_string(),
    }
}

/// The settings marked secret (`hide_env_values`).
fn secret_settings() -> Vec<&'static str> {
    let command = RawSettings::augment_args(clap::Command::new("switchboard"));
    RawSettings::default()
        .as_toml()
        .into_iter()
        .map(|(setting, _, _)| setting)
        .filter(|setting| {
            command
                .get_arguments()
                .any(|arg| arg.get_id() == *setting && arg.is_hide_env_values_set())
        })
        .collect()
}

/// `redis://user:secret@host:6379/0` as `redis://user:********@host:6379/0`.
fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:{MASK}"),
        None => userinfo.to_owned(),
    };
    format!("{scheme}://{user}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_url_password_is_masked() {
        assert_eq!(
            mask_url_password("redis://:s3cret@redis:6379/0"),
            "redis://:********@redis:6379/0"
        );
        assert_eq!(
            mask_url_password("rediss://app:p@ss@redis.example"),
            "rediss://app:********@redis.example"
        );
        assert_eq!(
            mask_url_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn the_secrets_are_the_keys_and_the_signing_secrets() {
        assert_eq!(
            secret_settings(),
            ["api_key", "jwt_secret", "admin_key", "webhook_secret"],
            "a new secret setting needs hide_env_values"
        );
    }
}
