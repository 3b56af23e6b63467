//! The queue under real apalis workers and real Redis: enqueue semantics, a burst far beyond
//! apalis-redis's 8,000-job limit, idle latency, the retry schedule, dead jobs and operator
//! retries, and panics.

mod support;

use kakaopay_jobs::queue::{inspect, EnqueueOptions, PreparedJob, Script, ThenEnqueue};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

#[tokio::test]
async fn the_same_id_twice_stores_one_job_and_says_so() {
    let ns = namespace();
    let (_, conn) = connect(LOCAL_REDIS).await;
    let p = producer(&conn, &ns);
    let first = p
        .enqueue(
            &work(1, Behaviour::Succeed),
            EnqueueOptions::with_id("approve:pay_1"),
        )
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.id, "approve:pay_1");
    let again = p
        .enqueue(
            &work(99, Behaviour::Succeed),
            EnqueueOptions::with_id("approve:pay_1"),
        )
        .await
        .unwrap();
    assert!(again.duplicate, "told it was a duplicate");
    let c = counts(&conn, &ns).await;
    assert_eq!(c.pending, 1);
    let job = inspect::job(&conn, &ns, "test_work", "approve:pay_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.args["n"], 1, "the first job's arguments stand");

    let bad = p
        .enqueue(
            &work(1, Behaviour::Succeed),
            EnqueueOptions::with_id("has space"),
        )
        .await;
    assert!(bad.is_err());
    let random = p
        .enqueue(&work(2, Behaviour::Succeed), EnqueueOptions::default())
        .await
        .unwrap();
    assert_eq!(random.id.len(), 32);
}

#[tokio::test]
async fn twenty_thousand_jobs_queued_while_no_worker_runs_all_run_exactly_once() {
    const JOBS: u64 = 20_000;
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let p = producer(&conn, &ns);
    let jobs: Vec<_> = (0..JOBS).map(|n| work(n, Behaviour::Succeed)).collect();
    for chunk in jobs.chunks(1000) {
        let stored = p
            .enqueue_batch(chunk.iter().map(|j| (j, EnqueueOptions::default())))
            .await
            .unwrap();
        assert!(stored.iter().all(|e| !e.duplicate));
    }
    assert_eq!(counts(&conn, &ns).await.pending, JOBS);

    let seen = Arc::new(Seen::default());
    let started = Instant::now();
    let workers = run_workers(client, conn.clone(), config(&ns), 2, 32, seen.clone());
    eventually(Duration::from_secs(120), "all jobs done", || async {
        counts(&conn, &ns).await.done == JOBS
    })
    .await;
    let elapsed = started.elapsed();
    let errors = workers.stop().await;
    assert!(
        errors.is_empty(),
        "no worker errors or restarts: {errors:?}"
    );

    {
        let runs = seen.runs.lock().unwrap();
        assert_eq!(runs.len() as u64, JOBS, "every job ran");
        assert!(runs.values().all(|r| r.len() == 1), "and exactly once");
    }
    let c = counts(&conn, &ns).await;
    assert_eq!(
        (c.pending, c.running, c.scheduled, c.done, c.failed, c.dead),
        (0, 0, 0, JOBS, 0, 0)
    );
    println!("drained {JOBS} jobs in {elapsed:?} (debug build, 2 workers x 32)");
}

#[tokio::test]
async fn an_idle_worker_starts_a_new_job_within_milliseconds() {
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 1, 4, seen.clone());
    let p = producer(&conn, &ns);
    // Let the worker settle into its blocking read.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::new();
    for n in 0..30u64 {
        let pushed = Instant::now();
        p.enqueue(&work(n, Behaviour::Succeed), EnqueueOptions::default())
            .await
            .unwrap();
        eventually(Duration::from_secs(5), "job started", || async {
            !seen.runs_of(n).is_empty()
        })
        .await;
        latencies.push(seen.runs_of(n)[0].1 - pushed);
        // Idle again before the next push.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    println!(
        "idle latency push→handler: median {median:?}, max {:?}",
        latencies.last().unwrap()
    );
    assert!(median < Duration::from_millis(50), "median {median:?}");
    assert!(workers.stop().await.is_empty());
}

#[tokio::test]
async fn failures_follow_the_retry_schedule_then_die_and_operators_can_retry() {
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let p = producer(&conn, &ns);
    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 1, 8, seen.clone());

    // Fails twice, then works on the third of three attempts.
    p.enqueue(
        &work(1, Behaviour::FailTimes(2)),
        EnqueueOptions::with_id("flaky"),
    )
    .await
    .unwrap();
    // Never works: dead after three attempts.
    p.enqueue(
        &work(2, Behaviour::FailTimes(100)),
        EnqueueOptions::with_id("hopeless"),
    )
    .await
    .unwrap();
    // Permanent: dead at once.
    p.enqueue(
        &work(3, Behaviour::FailPermanently),
        EnqueueOptions::with_id("permanent"),
    )
    .await
    .unwrap();

    eventually(Duration::from_secs(10), "flaky done, two dead", || async {
        let c = counts(&conn, &ns).await;
        c.done == 1 && c.dead == 2
    })
    .await;
    let flaky = seen.runs_of(1);
    assert_eq!(flaky.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
    // Full jitter within the schedule's ceilings (50 ms, then 100 ms), plus at most one
    // blocking read (250 ms) and some slack.
    assert!(
        flaky[1].1 - flaky[0].1 <= Duration::from_millis(50 + 250 + 100),
        "{:?}",
        flaky[1].1 - flaky[0].1
    );
    assert!(
        flaky[2].1 - flaky[1].1 <= Duration::from_millis(100 + 250 + 100),
        "{:?}",
        flaky[2].1 - flaky[1].1
    );
    assert_eq!(seen.runs_of(2).len(), 3, "all three attempts, no more");
    assert_eq!(
        seen.runs_of(3).len(),
        1,
        "a permanent failure is not retried"
    );

    let dead = inspect::list(&conn, &ns, "test_work", inspect::Status::Dead, 50)
        .await
        .unwrap();
    assert_eq!(dead.len(), 2);
    let hopeless = dead.iter().find(|j| j.id == "hopeless").unwrap();
    assert_eq!(hopeless.attempts, 3);
    assert!(
        hopeless
            .last_error
            .as_deref()
            .unwrap()
            .contains("failing attempt 3"),
        "{hopeless:?}"
    );
    let permanent = dead.iter().find(|j| j.id == "permanent").unwrap();
    assert_eq!(permanent.attempts, 1);
    assert!(permanent
        .last_error
        .as_deref()
        .unwrap()
        .contains("never work"));

    // An operator retries the hopeless job: it runs again, from attempt 1.
    let before = seen.runs_of(2).len();
    assert_eq!(
        inspect::retry(&conn, &ns, "test_work", "hopeless")
            .await
            .unwrap(),
        inspect::RetryOutcome::Retried
    );
    eventually(Duration::from_secs(10), "hopeless ran again", || async {
        seen.runs_of(2).len() > before
    })
    .await;
    assert_eq!(seen.runs_of(2)[before].0, 1, "a fresh set of attempts");
    assert_eq!(
        inspect::retry(&conn, &ns, "test_work", "flaky")
            .await
            .unwrap(),
        inspect::RetryOutcome::NotRetryable
    );
    assert_eq!(
        inspect::retry(&conn, &ns, "test_work", "nope")
            .await
            .unwrap(),
        inspect::RetryOutcome::NotFound
    );
    assert!(workers.stop().await.is_empty());
}

#[tokio::test]
async fn failed_jobs_are_counted_and_listed_while_they_wait() {
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let p = producer(&conn, &ns);
    let mut cfg = config(&ns);
    cfg.retry.base = Duration::from_secs(30);
    cfg.retry.cap = Duration::from_secs(30);
    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), cfg, 1, 2, seen.clone());
    p.enqueue(
        &work(7, Behaviour::FailTimes(1)),
        EnqueueOptions::with_id("waits"),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(5), "first attempt failed", || async {
        counts(&conn, &ns).await.failed == 1
    })
    .await;
    let c = counts(&conn, &ns).await;
    // Full jitter may draw a very short delay; then the job may already be back.
    assert!(c.scheduled + c.pending + c.running + c.done >= 1);
    let failed = inspect::list(&conn, &ns, "test_work", inspect::Status::Failed, 10)
        .await
        .unwrap();
    assert_eq!(failed[0].id, "waits");
    assert_eq!(failed[0].attempts, 1);
    assert_eq!(failed[0].last_error.as_deref(), Some("failing attempt 1"));
    // An operator may run a waiting retry now.
    if c.scheduled == 1 {
        assert_eq!(
            inspect::retry(&conn, &ns, "test_work", "waits")
                .await
                .unwrap(),
            inspect::RetryOutcome::Retried
        );
    }
    eventually(Duration::from_secs(5), "done", || async {
        counts(&conn, &ns).await.done == 1
    })
    .await;
    assert_eq!(
        counts(&conn, &ns).await.failed,
        0,
        "a finished job is no longer failed"
    );
    assert!(workers.stop().await.is_empty());
}

#[tokio::test]
async fn a_panicking_handler_kills_its_job_not_the_worker() {
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let p = producer(&conn, &ns);
    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 1, 2, seen.clone());
    p.enqueue(&work(1, Behaviour::Panic), EnqueueOptions::with_id("bug"))
        .await
        .unwrap();
    p.enqueue(
        &work(2, Behaviour::Succeed),
        EnqueueOptions::with_id("fine"),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(5), "one dead, one done", || async {
        let c = counts(&conn, &ns).await;
        c.dead == 1 && c.done == 1
    })
    .await;
    let dead = inspect::job(&conn, &ns, "test_work", "bug")
        .await
        .unwrap()
        .unwrap();
    assert!(dead.last_error.unwrap().contains("handler bug"));
    assert!(workers.stop().await.is_empty());
}

#[tokio::test]
async fn a_job_whose_arguments_do_not_parse_is_dead_not_a_crashed_worker() {
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    // Enqueued by something that does not know the job's shape.
    let keys = kakaopay_jobs::queue::Keys::new(&ns, "test_work");
    let mut c = conn.clone();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&keys.stream)
        .arg("workers")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut c)
        .await
        .unwrap();
    let entry: String = redis::cmd("XADD")
        .arg(&keys.stream)
        .arg("*")
        .arg("id")
        .arg("junk")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(keys.job("junk"))
        .arg("args")
        .arg("{\"nope\":true}")
        .arg("attempts")
        .arg(0)
        .arg("max_attempts")
        .arg(3)
        .arg("status")
        .arg("pending")
        .arg("entry")
        .arg(&entry)
        .query_async(&mut c)
        .await
        .unwrap();
    producer(&conn, &ns)
        .enqueue(&work(1, Behaviour::Succeed), EnqueueOptions::default())
        .await
        .unwrap();
    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 1, 2, seen.clone());
    eventually(Duration::from_secs(5), "junk dead, good done", || async {
        let c = counts(&conn, &ns).await;
        c.dead == 1 && c.done == 1
    })
    .await;
    let junk = inspect::job(&conn, &ns, "test_work", "junk")
        .await
        .unwrap()
        .unwrap();
    assert!(junk.last_error.unwrap().contains("do not parse"));
    assert!(workers.stop().await.is_empty());
}

#[tokio::test]
async fn delayed_jobs_wait_for_their_time() {
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 1, 2, seen.clone());
    let pushed = Instant::now();
    producer(&conn, &ns)
        .enqueue(
            &work(1, Behaviour::Succeed),
            EnqueueOptions {
                delay: Some(Duration::from_millis(300)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(counts(&conn, &ns).await.scheduled, 1);
    eventually(Duration::from_secs(5), "ran", || async {
        !seen.runs_of(1).is_empty()
    })
    .await;
    let waited = seen.runs_of(1)[0].1 - pushed;
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_millis(800),
        "{waited:?}"
    );
    assert!(workers.stop().await.is_empty());
}

#[tokio::test]
async fn pending_and_running_jobs_are_listed() {
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    assert!(
        inspect::list(&conn, &ns, "test_work", inspect::Status::Pending, 10)
            .await
            .unwrap()
            .is_empty(),
        "no queue yet"
    );
    assert!(
        inspect::list(&conn, &ns, "test_work", inspect::Status::Running, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let p = producer(&conn, &ns);
    for n in 0..3 {
        p.enqueue(
            &work(n, Behaviour::HangBeforeAttempt(99)),
            EnqueueOptions::with_id(format!("h{n}")),
        )
        .await
        .unwrap();
    }
    let pending = inspect::list(&conn, &ns, "test_work", inspect::Status::Pending, 10)
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        ["h0", "h1", "h2"]
    );
    assert!(pending
        .iter()
        .all(|j| j.status == "pending" && j.attempts == 0));

    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 1, 2, seen.clone());
    // Running means held by a worker under its lease: the two it runs and the one it fetched
    // with them and will run next.
    eventually(Duration::from_secs(5), "all held", || async {
        counts(&conn, &ns).await.running == 3
    })
    .await;
    let running = inspect::list(&conn, &ns, "test_work", inspect::Status::Running, 10)
        .await
        .unwrap();
    assert_eq!(running.len(), 3);
    assert_eq!(seen.total(), 2, "two at a time");
    assert!(running
        .iter()
        .all(|j| j.status == "running" && j.attempts == 1));
    let pending = inspect::list(&conn, &ns, "test_work", inspect::Status::Pending, 10)
        .await
        .unwrap();
    assert_eq!(pending.len() as u64, counts(&conn, &ns).await.pending);
    drop(workers);
}

#[tokio::test]
async fn apalis_listing_metrics_and_sink_traits_read_and_feed_the_queue() {
    use apalis::prelude::*;
    use kakaopay_jobs::queue::StreamBackend;

    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let mut backend = StreamBackend::<Work>::new(client.clone(), conn.clone(), config(&ns));
    // apalis's TaskSink, as apalis-board pushes tasks.
    backend.push(work(1, Behaviour::Succeed)).await.unwrap();
    backend
        .push_bulk(vec![
            work(2, Behaviour::FailPermanently),
            work(3, Behaviour::Succeed),
        ])
        .await
        .unwrap();
    assert_eq!(counts(&conn, &ns).await.pending, 3);
    let stats = backend.fetch_by_queue().await.unwrap();
    let value = |title: &str| {
        stats
            .iter()
            .find(|s| s.title == title)
            .unwrap()
            .value
            .clone()
    };
    assert_eq!(value("PENDING_JOBS"), "3");

    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 1, 4, seen.clone());
    eventually(Duration::from_secs(5), "settled", || async {
        let c = counts(&conn, &ns).await;
        c.done == 2 && c.dead == 1
    })
    .await;
    let stats = backend.global().await.unwrap();
    let value = |title: &str| {
        stats
            .iter()
            .find(|s| s.title == title)
            .unwrap()
            .value
            .clone()
    };
    assert_eq!(
        (
            value("DONE_JOBS"),
            value("DEAD_JOBS"),
            value("PENDING_JOBS")
        ),
        ("2".into(), "1".into(), "0".into())
    );

    let dead = backend
        .list_tasks(&Filter {
            status: Some(Status::Killed),
            page: 1,
            page_size: Some(10),
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let id = dead[0].task_id().unwrap().clone();
    let fetched = backend.fetch_by_id(&id).await.unwrap().unwrap();
    assert_eq!(fetched.status(), Status::Killed);
    let args: Work = serde_json::from_slice(&fetched.args).unwrap();
    assert_eq!(args, work(2, Behaviour::FailPermanently));
    let done_page_2 = backend
        .list_all_tasks(&Filter {
            status: Some(Status::Done),
            page: 2,
            page_size: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(done_page_2.len(), 1, "paging");

    eventually(Duration::from_secs(5), "worker heartbeat", || async {
        backend.list_workers().await.unwrap().len() == 1
    })
    .await;
    let queues = backend.list_queues().await.unwrap();
    assert_eq!(queues[0].name, "test_work");
    assert_eq!(queues[0].workers, workers.names);
    assert!(workers.stop().await.is_empty());
    assert!(
        backend.list_workers().await.unwrap().is_empty(),
        "a stopped worker is gone"
    );
}

#[tokio::test]
async fn done_records_are_kept_within_bounds() {
    use kakaopay_jobs::queue::{Keys, Retention};
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let mut cfg = config(&ns);
    cfg.done_retention = Retention {
        max_count: 5,
        max_age: Duration::from_millis(400),
    };
    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), cfg, 1, 4, seen.clone());
    let p = producer(&conn, &ns);
    for n in 0..20 {
        p.enqueue(
            &work(n, Behaviour::Succeed),
            EnqueueOptions::with_id(format!("r{n}")),
        )
        .await
        .unwrap();
    }
    eventually(Duration::from_secs(5), "all ran", || async {
        seen.total() == 20
    })
    .await;
    eventually(Duration::from_secs(5), "trimmed by count", || async {
        counts(&conn, &ns).await.done == 5
    })
    .await;
    let kept = inspect::list(&conn, &ns, "test_work", inspect::Status::Done, 50)
        .await
        .unwrap();
    assert_eq!(kept.len(), 5, "the newest five");
    let keys = Keys::new(&ns, "test_work");
    let mut c = conn.clone();
    let records: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", keys.job_prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(records.len(), 5, "the records of trimmed jobs are gone too");

    // By age: once they are older than max_age, the next settle drops them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.enqueue(
        &work(99, Behaviour::Succeed),
        EnqueueOptions::with_id("late"),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(5), "trimmed by age", || async {
        counts(&conn, &ns).await.done == 1
    })
    .await;
    let kept = inspect::list(&conn, &ns, "test_work", inspect::Status::Done, 50)
        .await
        .unwrap();
    assert_eq!(kept[0].id, "late");
    assert!(workers.stop().await.is_empty());
}

/// A retry falls due while the queue never runs dry: it is promoted by the next fetch, not
/// once the backlog is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_runs_on_time_while_new_jobs_keep_coming() {
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let mut cfg = config(&ns);
    cfg.fetch_batch = 1;
    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), cfg, 1, 1, seen.clone());
    let p = producer(&conn, &ns);
    p.enqueue(&work(0, Behaviour::FailTimes(1)), EnqueueOptions::default())
        .await
        .unwrap();
    // A steady stream of 20 ms jobs, one every 10 ms: the stream is never empty.
    let feeding = Instant::now();
    let mut n = 1;
    while seen.runs_of(0).len() < 2 && feeding.elapsed() < Duration::from_secs(4) {
        p.enqueue(&work(n, Behaviour::Sleep(20)), EnqueueOptions::default())
            .await
            .unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let runs = seen.runs_of(0);
    assert_eq!(
        runs.len(),
        2,
        "the retry ran while jobs kept coming: {runs:?}"
    );
    let waited = runs[1].1 - runs[0].1;
    assert!(
        waited < Duration::from_millis(1500),
        "the retry (due after at most 400 ms) waited {waited:?}"
    );
    workers.stop().await;
}

/// A settle whose answer was lost is sent again (here: applied, then too few replicas in time,
/// so the settler tries again until the lease is over): the job is recorded done once.
#[tokio::test]
async fn a_settle_sent_again_after_its_answer_was_lost_records_the_job_done_once() {
    use kakaopay_jobs::queue::{Durability, Keys};
    let ns = namespace();
    let topology = Topology::Server(LOCAL_REDIS.into());
    // The local server has no replica: every WAIT falls short.
    let wait = Durability {
        replicas: 1,
        timeout: Duration::from_millis(10),
    };
    let conn = Connection::open(&topology, Purpose::Shared, Some(wait))
        .await
        .unwrap();
    let (_, plain) = connect(LOCAL_REDIS).await;
    producer(&plain, &ns)
        .enqueue(
            &work(1, Behaviour::Succeed),
            EnqueueOptions::with_id("again"),
        )
        .await
        .unwrap();
    let seen = Arc::new(Seen::default());
    let workers = run_workers(topology, conn, config(&ns), 1, 1, seen.clone());
    eventually(Duration::from_secs(5), "the job ran", || async {
        seen.total() == 1
    })
    .await;
    // The settler keeps sending for one lease (2 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let done: i64 = redis::cmd("LLEN")
        .arg(Keys::new(&ns, "test_work").done)
        .query_async(&mut plain.clone())
        .await
        .unwrap();
    assert_eq!(done, 1, "one done entry for one job");
    assert_eq!(seen.total(), 1, "and it ran once");
    let minutes = kakaopay_jobs::queue::stats::last_minutes(&plain, &ns, "test_work", 5)
        .await
        .unwrap();
    let counted: u64 = minutes.iter().map(|m| m.done).sum();
    assert_eq!(counted, 1, "and counted once on the board's chart");
    workers.stop().await;
}

/// A job fetched with others but not yet started holds an attempt and a lease: a pause hands
/// it back to the queue, its attempt not counted, so a long pause (or a crash during one)
/// costs it nothing, while the jobs in flight run on.
#[tokio::test]
async fn a_pause_hands_back_the_jobs_fetched_but_not_started() {
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let p = producer(&conn, &ns);
    for n in 0..5 {
        p.enqueue(
            &work(n, Behaviour::HangBeforeAttempt(99)),
            EnqueueOptions::with_id(format!("h{n}")),
        )
        .await
        .unwrap();
    }
    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 1, 2, seen.clone());
    eventually(Duration::from_secs(5), "all held", || async {
        counts(&conn, &ns).await.running == 5
    })
    .await;
    assert_eq!(seen.total(), 2, "two run, three wait in the worker");

    kakaopay_jobs::queue::operate::set_paused(&conn, &ns, "test_work", true, "test")
        .await
        .unwrap();
    eventually(
        Duration::from_secs(2),
        "the unstarted handed back",
        || async {
            let c = counts(&conn, &ns).await;
            c.pending == 3 && c.running == 2
        },
    )
    .await;
    let pending = inspect::list(&conn, &ns, "test_work", inspect::Status::Pending, 10)
        .await
        .unwrap();
    assert!(
        pending.iter().all(|j| j.attempts == 0),
        "their attempts are not counted: {pending:?}"
    );
    // Handed back, not fetched again while the pause lasts.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(counts(&conn, &ns).await.pending, 3);
    assert_eq!(seen.total(), 2);
    drop(workers);
}

/// The board's per-minute counters: every run recorded counts once in the minute it was
/// recorded, done or failed (a retry and a death both), whichever process recorded it.
#[tokio::test]
async fn runs_are_counted_per_minute_done_and_failed() {
    use kakaopay_jobs::queue::stats;
    let ns = namespace();
    let (client, conn) = connect(LOCAL_REDIS).await;
    let p = producer(&conn, &ns);
    let from = stats::last_minutes(&conn, &ns, "test_work", 1)
        .await
        .unwrap()[0]
        .minute;
    // Five work at once, one after one retry, two never: 6 done, 1 + 2 failed attempts.
    for n in 0..5 {
        p.enqueue(&work(n, Behaviour::Succeed), EnqueueOptions::default())
            .await
            .unwrap();
    }
    p.enqueue(&work(5, Behaviour::FailTimes(1)), EnqueueOptions::default())
        .await
        .unwrap();
    for n in 6..8 {
        p.enqueue(
            &work(n, Behaviour::FailPermanently),
            EnqueueOptions::default(),
        )
        .await
        .unwrap();
    }
    let seen = Arc::new(Seen::default());
    let workers = run_workers(client, conn.clone(), config(&ns), 2, 4, seen);
    eventually(Duration::from_secs(10), "six done, two dead", || async {
        let c = counts(&conn, &ns).await;
        c.done == 6 && c.dead == 2
    })
    .await;
    assert!(workers.stop().await.is_empty());
    let minutes = stats::last_minutes(&conn, &ns, "test_work", 5)
        .await
        .unwrap();
    let counted: Vec<_> = minutes.iter().filter(|m| m.done + m.failed > 0).collect();
    assert!(
        counted.iter().all(|m| m.minute >= from),
        "counted in the minutes the runs ended: {minutes:?}"
    );
    let done: u64 = counted.iter().map(|m| m.done).sum();
    let failed: u64 = counted.iter().map(|m| m.failed).sum();
    assert_eq!((done, failed), (6, 3), "{minutes:?}");
}

/// A write of a caller's own and whether it asks for its job, as `ThenEnqueue` takes one.
const WRITE_THEN_MAYBE: &str = r#"
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[2] == 'refuse' then return redis.error_reply('ERR refused') end
return 'written', ARGV[2] == 'enqueue'
"#;

/// A fresh namespace with `WRITE_THEN_MAYBE` combined and job `n` prepared under id `w{n}`.
struct Combining {
    ns: String,
    conn: Connection,
    producer: kakaopay_jobs::queue::Producer,
    combined: ThenEnqueue,
    job: PreparedJob,
}

async fn combining(n: u64) -> Combining {
    let ns = namespace();
    let (_, conn) = connect(LOCAL_REDIS).await;
    let producer = producer(&conn, &ns);
    let options = EnqueueOptions::with_id(format!("w{n}"));
    let job = producer
        .prepare(&work(n, Behaviour::Succeed), options)
        .unwrap();
    Combining {
        ns,
        conn,
        producer,
        combined: ThenEnqueue::new(WRITE_THEN_MAYBE),
        job,
    }
}

impl Combining {
    fn key(&self) -> String {
        format!("{}:written", self.ns)
    }

    /// The combined call writing `value` (`ask` saying what the write answers), answered as
    /// the caller gets it.
    async fn write(
        &self,
        value: &str,
        ask: &str,
    ) -> redis::RedisResult<(String, Option<kakaopay_jobs::queue::Enqueued>)> {
        let first = Script::new(WRITE_THEN_MAYBE);
        let mut call = first.key(self.key());
        call.arg(value).arg(ask);
        let (first, enqueued) = self
            .combined
            .run(&self.conn, &call, &self.job)
            .await?
            .expect("one server runs both in one script");
        Ok((redis::FromRedisValue::from_redis_value(first)?, enqueued))
    }
}

#[tokio::test]
async fn a_write_and_the_job_it_asks_for_are_one_step_and_a_repeat_is_a_duplicate() {
    let c = combining(7).await;
    let (answer, enqueued) = c.write("a", "enqueue").await.unwrap();
    assert_eq!(answer, "written");
    let enqueued = enqueued.expect("enqueued in the same step");
    assert_eq!((enqueued.id.as_str(), enqueued.duplicate), ("w7", false));
    assert_eq!(counts(&c.conn, &c.ns).await.pending, 1);
    let stored = inspect::job(&c.conn, &c.ns, "test_work", "w7")
        .await
        .unwrap();
    assert_eq!(stored.unwrap().args["n"], 7);

    let (_, again) = c.write("b", "enqueue").await.unwrap();
    assert!(again.expect("answered").duplicate, "the job's id decides");
    assert_eq!(counts(&c.conn, &c.ns).await.pending, 1);
}

#[tokio::test]
async fn a_write_that_does_not_ask_for_its_job_or_fails_enqueues_nothing() {
    let c = combining(1).await;
    let (answer, enqueued) = c.write("a", "no").await.unwrap();
    assert_eq!((answer.as_str(), enqueued), ("written", None));
    let refused = c.write("b", "refuse").await;
    assert!(
        refused.is_err(),
        "the caller's error is the answer: {refused:?}"
    );
    assert_eq!(counts(&c.conn, &c.ns).await.pending, 0);
    let stored = inspect::job(&c.conn, &c.ns, "test_work", "w1")
        .await
        .unwrap();
    assert!(stored.is_none());
}

#[tokio::test]
async fn a_job_that_cannot_be_enqueued_leaves_the_write_standing_and_says_so() {
    // The caller's write is the commit point (a refund stored): an enqueue that fails after
    // it must neither undo it nor fail the call, only tell the caller to enqueue on its own.
    let c = combining(1).await;
    let stream = kakaopay_jobs::queue::Keys::new(&c.ns, "test_work").stream;
    let mut raw = c.conn.clone();
    let _: () = redis::cmd("SET")
        .arg(&stream)
        .arg("not a stream")
        .query_async(&mut raw)
        .await
        .unwrap();
    let (answer, enqueued) = c.write("kept", "enqueue").await.unwrap();
    assert_eq!((answer.as_str(), enqueued), ("written", None));
    let written: String = redis::cmd("GET")
        .arg(c.key())
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(written, "kept");
    let alone = c.producer.enqueue_prepared(&c.job).await;
    assert!(alone.is_err(), "on its own it fails as before");
}
