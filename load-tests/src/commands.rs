//! What each subcommand does, and how its result maps to an exit status.

use crate::cli::Command;
use crate::{raw_nats, run, summary, verdict, wait_ready};

/// How a command ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// The run finished but the system's counts did not match the client's.
    AccountingFailed,
}

impl Verdict {
    /// 0 for ok, 2 for an accounting failure (1 is left for errors).
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::AccountingFailed => 2,
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
        Command::Verdict(args) => {
            print!("{}", verdict::verdict(&args)?);
            Ok(Verdict::Ok)
        }
    }
}
