use kakaopay_worker::config::{Cli, Command};
use kakaopay_worker::{sim, telemetry};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse_or_exit();
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Sim(args) => sim::run(args).await,
        Command::Serve { .. }
        | Command::Api { .. }
        | Command::Work { .. }
        | Command::Demo { .. }
        | Command::Queues { .. } => {
            anyhow::bail!(
                "this build has the KakaoPay simulator (`sim`) only; the queue, the payment flow and the \
                 operator tools land with issues #3 to #6"
            )
        }
    }
}
