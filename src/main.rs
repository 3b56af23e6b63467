use kakaopay_worker::config::{Cli, Command};
use kakaopay_worker::startup::{Application, Settings};
use kakaopay_worker::{bench, demo, healthcheck, queues, review, sim, telemetry};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse_or_exit();
    // The demo's narration reads alone: its log lines are warnings only, unless RUST_LOG
    // asks for more; a healthcheck prints only why it failed.
    let quiet = matches!(cli.command, Command::Demo { .. } | Command::Healthcheck(_));
    telemetry::init(cli.log_format, if quiet { "warn" } else { "info" });
    // Threads named after the subcommand, so that `top -H` and profilers tell the service,
    // the simulator and the load generator apart.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(format!("kp-{}", cli.command.name()))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli.command));
    // What the runtime's tasks log as they are dropped is written too; a blocking task that
    // hangs (a DNS lookup) does not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    telemetry::flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let settings = match command {
        Command::Sim(args) => return sim::run(args).await,
        Command::Bench(args) => return bench::run(args).await,
        Command::Demo { redis, keep } => return demo::run(redis, keep).await,
        Command::Healthcheck(args) => return healthcheck::run(args).await,
        Command::Queues { redis, action } => return queues::run(redis, action).await,
        Command::Refunds { redis, action } => return review::run(redis, action).await,
        Command::Serve {
            redis,
            http,
            kakaopay,
            workers,
            ops,
        } => Settings::from_args(&redis, &kakaopay, Some(&http), Some(&workers), &ops),
        Command::Api {
            redis,
            http,
            kakaopay,
            ops,
        } => Settings::from_args(&redis, &kakaopay, Some(&http), None, &ops),
        Command::Work {
            redis,
            kakaopay,
            workers,
            ops,
        } => Settings::from_args(&redis, &kakaopay, None, Some(&workers), &ops),
    };
    Application::start(settings).await?.run_until_signal().await;
    Ok(())
}
