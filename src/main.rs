use kakaopay_worker::config::{Cli, Command};
use kakaopay_worker::startup::{Application, Settings};
use kakaopay_worker::{bench, demo, healthcheck, queues, review, sim, telemetry};
use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: a request or a job allocates a few hundred small
/// blocks, often freed on another thread than the one that allocated them, and glibc spent
/// 15 to 25 % of the service's CPU on that (`malloc_consolidate`, arena locks). jemalloc cut
/// the CPU per request by a quarter for the same work (BENCHMARKS.md, issue #17).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Two arenas (one per core of the machines we run on, instead of four per core) and dirty
/// pages handed back after a second (instead of ten): peak RSS stays within a few MiB of
/// glibc's. Read by jemalloc before `main`; `_RJEM_MALLOC_CONF` (its prefixed name) still
/// overrides it.
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: Option<&'static u8> =
    Some(&b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:1000\0"[0]);

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
