use clap::Parser;
use gpu_worker::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    coder_service::init_logging(cli.serve.log_json);
    match cli.command {
        Some(Command::Bench(args)) => {
            let json = args.json;
            let report =
                tokio::task::spawn_blocking(move || gpu_worker::bench::run(&args)).await??;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(())
        }
        None => gpu_worker::run(cli.serve, coder_service::shutdown_signal()).await,
    }
}
