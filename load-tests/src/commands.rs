//! What each subcommand does, and how its result maps to an exit status.

use crate::cli::Command;
use crate::{abuse, raw_nats, run, summary, verdict, wait_ready};

/// How a command ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// The run finished but the system's counts did not match the client's.
    AccountingFailed,
    /// `abuse` found a 5xx, a held connection, a normal request's error or a process that
    /// crashed or leaked.
    AbuseFound,
}

impl Verdict {
    /// 0 for ok, 2 for an accounting failure, 3 for what `abuse` found (1 is left for errors).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::AccountingFailed => 2,
            Self::AbuseFound => 3,
        }
    }
}

pub async fn execute(command: Command) -> anyhow::Result<Verdict> {
    match command {
        Command::Run(args) => {
            let outcome = run::run(*args).await?;
            Ok(match outcome.accounting_ok() {
                Some(false) => Verdict::AccountingFailed,
                _ => Verdict::Ok,
            })
        }
        Command::RawNats(args) => {
            raw_nats::run(args).await?;
            Ok(Verdict::Ok)
        }
        Command::WaitReady(args) => {
            wait_ready::wait_ready(&args).await?;
            Ok(Verdict::Ok)
        }
        Command::Summary(args) => {
            print!("{}", summary::summary(&args)?);
            Ok(Verdict::Ok)
        }
        Command::Abuse(args) => {
            let report = abuse::run(&args).await?;
            abuse::print(&report);
            if let Some(path) = &args.out {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
            }
            Ok(if report.passed() {
                Verdict::Ok
            } else {
                Verdict::AbuseFound
            })
        }
        Command::Verdict(args) => {
            print!("{}", verdict::verdict(&args)?);
            Ok(Verdict::Ok)
        }
    }
}
