use kakaopay_worker::config::{service_settings, Cli, Command};
use kakaopay_worker::startup::Application;
use kakaopay_worker::{demo, sim, telemetry};
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
    let settings = match &command {
        Command::Sim(_) | Command::Demo { .. } | Command::Queues { .. } => None,
        Command::Serve {
            redis,
            http,
            kakaopay,
            workers,
        } => Some(service_settings(redis, kakaopay, Some(http), Some(workers))),
        Command::Api {
            redis,
            http,
            kakaopay,
        } => Some(service_settings(redis, kakaopay, Some(http), None)),
        Command::Work {
            redis,
            kakaopay,
            workers,
        } => Some(service_settings(redis, kakaopay, None, Some(workers))),
    };
    if let Some(settings) = settings {
        Application::start(settings).await?.run_until_signal().await;
        return Ok(());
    }
    match command {
        Command::Sim(args) => sim::run(args).await,
        Command::Demo { redis } => demo::run(redis).await,
        _ => anyhow::bail!(
            "`queues` lands with the operators issue; the other subcommands run today"
        ),
    }
}
