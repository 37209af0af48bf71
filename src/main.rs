use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = strata::cli::Cli::parse();
    strata::app::run(cli).into()
}
