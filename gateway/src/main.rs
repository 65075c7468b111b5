use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = gateway::Config::parse();
    coder_service::init_logging(config.log_json);
    gateway::run(config, coder_service::shutdown_signal()).await
}
