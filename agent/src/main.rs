//! `slipway-agent`: see the library docs.
use clap::Parser;

fn main() {
    let cli = slipway_agent::AgentCli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slipway-agent: {}", slipway_agent::RunError::Runtime(e));
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(slipway_agent::cli_main(cli)) {
        tracing::error!(error = %e, "slipway-agent stopped");
        eprintln!("slipway-agent: {e}");
        std::process::exit(e.exit_code());
    }
}
