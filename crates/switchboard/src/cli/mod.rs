//! The subcommands of the `switchboard` binary ([`Command`]): `check-config`, `token` and
//! `healthcheck`. Each prints its result on stdout and its error on stderr and returns the
//! process's exit code. Without a subcommand `main` runs the server; that path is not here.

mod healthcheck;
mod token;

use std::process::ExitCode;

pub use healthcheck::HealthError;
pub use token::TokenMintError;

use crate::config::{Command, Invocation};

/// Exit code of a configuration or usage error (as for the server's start-up).
const CONFIG_ERROR: u8 = 2;

/// Exit code of a failed health check (what container runtimes read as unhealthy).
const UNHEALTHY: u8 = 1;

/// Runs `command` with the settings of `invocation`; returns the exit code.
pub async fn run(command: &Command, invocation: &Invocation) -> ExitCode {
    match command {
        Command::CheckConfig => match invocation.config() {
            Ok(_) => {
                print!("{}", invocation.sources.effective());
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error, CONFIG_ERROR),
        },
        Command::Token(args) => match token::mint(args, invocation) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error, CONFIG_ERROR),
        },
        Command::Healthcheck(args) => match healthcheck::check(args, invocation).await {
            Ok(answer) => {
                println!("{answer}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error, UNHEALTHY),
        },
    }
}

fn fail(error: &dyn std::error::Error, code: u8) -> ExitCode {
    eprintln!("switchboard: {error}");
    ExitCode::from(code)
}
