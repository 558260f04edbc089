use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = slipway_server::cli::Cli::parse();
    let code = match slipway_server::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
