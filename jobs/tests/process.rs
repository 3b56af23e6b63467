//! Worker processes that die or are stopped, and a Redis that restarts under running workers.
//!
//! A worker process is this test binary run again with `child_worker_process` and environment
//! variables saying what to do: it runs workers under an apalis Monitor exactly like the
//! service (SIGTERM stops it gracefully, then it hands back what it still holds).

mod support;

use apalis::prelude::*;
use kakaopay_jobs::queue::Connection;
use kakaopay_jobs::queue::{
    consumer_name, inspect, Delivery, EnqueueOptions, JobError, StreamBackend,
};
use kakaopay_jobs::JobKind;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

/// The child's handler: counts each run in Redis (the parent's only window into the child),
/// then behaves like the shared test handler.
async fn child_handle(
    job: Work,
    conn: Data<Connection>,
    delivery: Data<Delivery>,
) -> Result<(), JobError> {
    let ns = std::env::var("QUEUE_CHILD_NS").unwrap();
    let mut conn = (*conn).clone();
    let _: Result<i64, _> = redis::cmd("HINCRBY")
        .arg(format!("{ns}:runs"))
        .arg(job.n)
        .arg(1)
        .query_async(&mut conn)
        .await;
    match job.behaviour {
        Behaviour::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Behaviour::HangBeforeAttempt(k) if delivery.attempt < k => {
            std::future::pending::<()>().await
        }
        _ => {}
    }
    Ok(())
}

/// Not a test on its own: the body of a worker process the other tests start.
#[test]
#[ignore = "run by the other tests as a worker process"]
fn child_worker_process() {
    let Ok(ns) = std::env::var("QUEUE_CHILD_NS") else {
        return;
    };
    let url = std::env::var("QUEUE_CHILD_REDIS").unwrap();
    let concurrency: usize = std::env::var("QUEUE_CHILD_CONCURRENCY")
        .unwrap()
        .parse()
        .unwrap();
    let timeout_ms: u64 = std::env::var("QUEUE_CHILD_SHUTDOWN_MS")
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let (client, conn) = connect(&url).await;
        let mut cfg = config(&ns);
        cfg.fetch_batch = concurrency * 2;
        let name = consumer_name(Work::NAME, 0);
        let monitor = Monitor::new()
            .should_restart(|_, _| true)
            .shutdown_timeout(Duration::from_millis(timeout_ms))
            .register({
                let (client, conn, name) = (client.clone(), conn.clone(), name.clone());
                move |_| {
                    WorkerBuilder::new(name.clone())
                        .backend(StreamBackend::<Work>::new(
                            client.clone(),
                            conn.clone(),
                            cfg.clone(),
                        ))
                        .concurrency(concurrency)
                        .catch_panic()
                        .data(conn.clone())
                        .build(child_handle)
                }
            });
        let signal = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            term.recv().await;
            Ok(())
        };
        monitor.run_with_signal(signal).await.unwrap();
        // Whatever the shutdown timeout cut off goes back to the queue.
        inspect::release(&conn, &ns, Work::NAME, &name)
            .await
            .unwrap();
    });
    std::process::exit(0);
}

fn spawn_child(ns: &str, url: &str, concurrency: usize, shutdown_ms: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_worker_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("QUEUE_CHILD_NS", ns)
        .env("QUEUE_CHILD_REDIS", url)
        .env("QUEUE_CHILD_CONCURRENCY", concurrency.to_string())
        .env("QUEUE_CHILD_SHUTDOWN_MS", shutdown_ms.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_exit(mut child: Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "child did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn child_runs(conn: &Connection, ns: &str) -> std::collections::HashMap<u64, u64> {
    redis::cmd("HGETALL")
        .arg(format!("{ns}:runs"))
        .query_async(&mut conn.clone())
        .await
        .unwrap()
}

#[tokio::test]
async fn jobs_of_a_killed_worker_process_run_again_elsewhere_after_the_lease() {
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let p = producer(&conn, &ns);
    for n in 0..5 {
        p.enqueue(
            &work(n, Behaviour::HangBeforeAttempt(2)),
            EnqueueOptions::with_id(format!("job{n}")),
        )
        .await
        .unwrap();
    }
    let child = spawn_child(&ns, LOCAL_REDIS, 5, 1000);
    eventually(
        Duration::from_secs(20),
        "the child runs all five",
        || async { counts(&conn, &ns).await.running == 5 },
    )
    .await;
    signal(&child, "-KILL");
    let killed_at = Instant::now();
    wait_exit(child, Duration::from_secs(5)).await;

    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 1, 8, seen.clone());
    eventually(
        Duration::from_secs(15),
        "all five done elsewhere",
        || async { counts(&conn, &ns).await.done == 5 },
    )
    .await;
    let recovered_after = killed_at.elapsed();
    for n in 0..5 {
        let runs = seen.runs_of(n);
        assert_eq!(runs.len(), 1, "job {n} ran once here");
        assert_eq!(runs[0].0, 2, "job {n}: the killed attempt was counted");
        let info = inspect::job(&conn, &ns, Work::NAME, &format!("job{n}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.attempts, 2);
    }
    assert_eq!(
        child_runs(&conn, &ns).await.len(),
        5,
        "the child had started them all"
    );
    // The lease is 2 s: nothing is taken over before it runs out.
    assert!(
        recovered_after >= Duration::from_millis(1500),
        "{recovered_after:?}"
    );
    println!("jobs of the killed worker finished elsewhere {recovered_after:?} after SIGKILL (lease 2 s)");
    assert!(workers.stop().await.is_empty());
}

#[tokio::test]
async fn sigterm_finishes_jobs_in_flight_and_hands_back_the_rest() {
    const JOBS: u64 = 40;
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let p = producer(&conn, &ns);
    let jobs: Vec<_> = (0..JOBS).map(|n| work(n, Behaviour::Sleep(200))).collect();
    p.enqueue_batch(jobs.iter().map(|j| (j, EnqueueOptions::default())))
        .await
        .unwrap();
    let child = spawn_child(&ns, LOCAL_REDIS, 4, 10_000);
    eventually(Duration::from_secs(20), "some done", || async {
        counts(&conn, &ns).await.done >= 4
    })
    .await;
    signal(&child, "-TERM");
    let status = wait_exit(child, Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");

    let c = counts(&conn, &ns).await;
    assert_eq!(
        c.running, 0,
        "nothing is left held by the stopped worker: {c:?}"
    );
    assert_eq!(
        c.done + c.pending,
        JOBS,
        "every job is done or back in the queue: {c:?}"
    );
    assert!(c.pending > 0, "the test stopped it midway: {c:?}");
    let runs = child_runs(&conn, &ns).await;
    assert_eq!(
        runs.len() as u64,
        c.done,
        "each job the child started, it finished"
    );
    assert!(runs.values().all(|r| *r == 1));

    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 1, 16, seen.clone());
    eventually(Duration::from_secs(20), "the rest done", || async {
        counts(&conn, &ns).await.done == JOBS
    })
    .await;
    assert_eq!(
        seen.total() as u64 + runs.len() as u64,
        JOBS,
        "no job ran twice"
    );
    for job in inspect::list(&conn, &ns, Work::NAME, inspect::Status::Done, 100)
        .await
        .unwrap()
    {
        assert_eq!(
            job.attempts, 1,
            "a handed-back job's unstarted attempt is not counted: {job:?}"
        );
    }
    assert!(workers.stop().await.is_empty());
}

#[tokio::test]
async fn sigterm_past_the_shutdown_timeout_puts_unfinished_jobs_back() {
    let ns = namespace();
    let (_, conn) = connect(LOCAL_REDIS).await;
    let p = producer(&conn, &ns);
    for n in 0..3 {
        p.enqueue(
            &work(n, Behaviour::HangBeforeAttempt(99)),
            EnqueueOptions::default(),
        )
        .await
        .unwrap();
    }
    let child = spawn_child(&ns, LOCAL_REDIS, 3, 300);
    eventually(Duration::from_secs(20), "all three running", || async {
        counts(&conn, &ns).await.running == 3
    })
    .await;
    signal(&child, "-TERM");
    let status = wait_exit(child, Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    let c = counts(&conn, &ns).await;
    assert_eq!(
        (c.running, c.pending),
        (0, 3),
        "cut-off jobs are back in the queue at once: {c:?}"
    );
}

/// A private redis-server with an append-only file, so a restart keeps the queue.
struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("kakaopay-redis-{port}-{:x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = PrivateRedis {
            port,
            dir,
            child: None,
        };
        r.boot();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn boot(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn workers_and_producers_ride_out_a_redis_restart() {
    let mut redis = PrivateRedis::start();
    let ns = namespace();
    let (client, conn) = connect(&redis.url()).await;
    let p = producer(&conn, &ns);
    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 1, 8, seen.clone());
    let batch = |from: u64| {
        (from..from + 100)
            .map(|n| work(n, Behaviour::Succeed))
            .collect::<Vec<_>>()
    };
    let first = batch(0);
    p.enqueue_batch(first.iter().map(|j| (j, EnqueueOptions::default())))
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "first batch done", || async {
        counts(&conn, &ns).await.done == 100
    })
    .await;

    redis.stop();
    // While Redis is down a producer says so, rather than hanging or pretending.
    let down = p
        .enqueue(&work(999, Behaviour::Succeed), EnqueueOptions::default())
        .await
        .unwrap_err();
    assert!(down.is_unavailable(), "{down:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.boot();

    let second = batch(100);
    eventually(Duration::from_secs(10), "producer reconnected", || async {
        p.enqueue_batch(
            second
                .iter()
                .map(|j| (j, EnqueueOptions::with_id(format!("b{}", j.n)))),
        )
        .await
        .is_ok()
    })
    .await;
    eventually(
        Duration::from_secs(20),
        "second batch done by the same worker",
        || async { counts(&conn, &ns).await.done == 200 },
    )
    .await;
    assert_eq!(seen.total(), 200, "every job ran once");
    let errors = workers.stop().await;
    assert!(
        errors.is_empty(),
        "the worker never failed or restarted: {errors:?}"
    );
}
