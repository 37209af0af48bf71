use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = strata::cli::Cli::parse();
    strata::commands::run(cli).into()
}
