use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = gateway::Config::parse();
    metrics_common::process::init_logging(config.log_json);
    gateway::run(config, metrics_common::process::shutdown_signal()).await
}
