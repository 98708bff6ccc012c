//! The sources of the settings, kept apart until they are merged: the command line, the
//! `SWITCHBOARD_<SETTING>` variables, `PORT` and the older unprefixed variables (`env`), and the
//! TOML file (`--config`, or `SWITCHBOARD_CONFIG`). [`Invocation`] is what `main` dispatches on:
//! the subcommand and these sources. [`Sources::merged`] applies the precedence, flag >
//! `SWITCHBOARD_<SETTING>` > `PORT` or the older name > file > default; [`Sources::origin`]
//! tells which source gave a setting, for `check-config`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use super::env::{self, Deprecated, EnvLayer};
use super::{Cli, Command, Config, ConfigError, RawSettings};

/// The variable naming the config file when `--config` is absent.
const CONFIG_VARIABLE: &str = "SWITCHBOARD_CONFIG";

/// The command line as given, with the settings of every source.
#[derive(Debug)]
pub struct Invocation {
    /// The subcommand; `None` runs the server.
    pub command: Option<Command>,
    /// The settings, by source.
    pub sources: Sources,
}

/// The settings of each source, unmerged.
#[derive(Debug)]
pub struct Sources {
    /// Command-line flags.
    flags: RawSettings,
    /// `SWITCHBOARD_<SETTING>` variables.
    prefixed: EnvLayer,
    /// `PORT` and the older unprefixed variables.
    unprefixed: EnvLayer,
    /// The config file and its settings.
    file: Option<(PathBuf, RawSettings)>,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag.
    Flag,
    /// An environment variable (`SWITCHBOARD_PORT`, `PORT`, or a deprecated older name).
    Env(String),
    /// The config file.
    File(PathBuf),
    /// No source: the default applies.
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flag => f.write_str("flag"),
            Self::Env(variable) => write!(f, "env {variable}"),
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Default => f.write_str("default"),
        }
    }
}

impl Invocation {
    /// Reads the process's arguments, its environment and the config file they name.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_args(std::env::args_os())
    }

    /// Reads `args` (the first is the program name), the process's environment and the config
    /// file they name.
    pub fn from_args<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::from_args_and_env(args, |variable| std::env::var_os(variable))
    }

    /// Reads `args`, the environment variables `lookup` finds and the config file they name.
    pub fn from_args_and_env<I, T>(
        args: I,
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args)?;
        let prefixed = EnvLayer::read(&lookup, env::prefixed)?;
        let unprefixed = EnvLayer::read(&lookup, env::unprefixed)?;
        let path = cli.config.or_else(|| {
            lookup(CONFIG_VARIABLE)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from)
        });
        let file = match path {
            Some(path) => {
                let settings = read_file(&path)?;
                Some((path, settings))
            }
            None => None,
        };
        Ok(Self {
            command: cli.command,
            sources: Sources {
                flags: cli.settings,
                prefixed,
                unprefixed,
                file,
            },
        })
    }

    /// Validates the merged settings.
    pub fn config(&self) -> Result<Config, ConfigError> {
        Config::from_settings(self.sources.merged())
    }
}

impl Sources {
    /// Every setting from the highest source that gives it; `None` where none does.
    pub fn merged(&self) -> RawSettings {
        let file = self
            .file
            .as_ref()
            .map(|(_, settings)| settings.clone())
            .unwrap_or_default();
        self.flags
            .clone()
            .or(self.prefixed.settings.clone())
            .or(self.unprefixed.settings.clone())
            .or(file)
    }

    /// The merged settings as TOML, each with its source, secrets masked (`check-config`).
    pub fn effective(&self) -> String {
        super::effective::render(self)
    }

    /// The deprecated variables that were set, for a warning at start.
    pub fn deprecated(&self) -> Vec<Deprecated> {
        self.unprefixed.deprecated()
    }

    /// Which source gave `setting` (its TOML name).
    pub fn origin(&self, setting: &str) -> Origin {
        let gives = |layer: &EnvLayer| layer.given.iter().any(|given| given == setting);
        if is_set(&self.flags, setting) {
            Origin::Flag
        } else if gives(&self.prefixed) {
            Origin::Env(env::prefixed(setting))
        } else if gives(&self.unprefixed) {
            Origin::Env(env::unprefixed(setting))
        } else {
            match &self.file {
                Some((path, settings)) if is_set(settings, setting) => Origin::File(path.clone()),
                _ => Origin::Default,
            }
        }
    }
}

fn is_set(settings: &RawSettings, setting: &str) -> bool {
    settings
        .as_toml()
        .iter()
        .any(|(name, value, _)| *name == setting && value.is_some())
}

fn read_file(path: &PathBuf) -> Result<RawSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.clone(),
        source,
    })
}
