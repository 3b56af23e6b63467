//! The built binary: settings errors stop it with one line and exit code 2, and `sim` serves.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kakaopay-worker"));
    // Start from a clean slate whatever the environment running the tests holds.
    for var in [
        "REDIS_URL",
        "REDIS_CLUSTER_URLS",
        "REDIS_SENTINEL_URLS",
        "REDIS_SENTINEL_MASTER",
        "REDIS_WAIT_REPLICAS",
        "REDIS_WAIT_TIMEOUT_MS",
        "QUEUE_NAMESPACE",
        "BIND",
        "PUBLIC_URL",
        "KAKAOPAY_API_URL",
        "API_TOKENS",
        "ADMIN_TOKENS",
        "CALLBACK_SECRET",
        "WEBHOOK_URL",
        "WEBHOOK_SECRET",
        "WORKER_CONCURRENCY",
        "LOG_FORMAT",
        "SIM_BIND",
        "SIM_PUBLIC_URL",
        "SIM_SECRET_KEYS",
        "SIM_ADMIN_KEYS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs to its end, or is killed after 30 s (a process that should have refused to start).
fn run(cmd: &mut Command) -> (i32, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_required_setting_is_one_line_and_exit_2() {
    for sub in ["serve", "api"] {
        let (code, stderr) = run(bin().arg(sub));
        assert_eq!(code, 2, "{sub}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{sub}: {stderr}");
        assert!(stderr.contains("CALLBACK_SECRET"), "{sub}: {stderr}");
    }
}

#[test]
fn an_invalid_setting_names_the_variable_without_its_value() {
    let cases = [
        ("work", "WEBHOOK_SECRET", "not-a-whsec-secret-42"),
        ("work", "REDIS_URL", "postgres://u:sekrit@h/db"),
        ("work", "WORKER_CONCURRENCY", "lots"),
        ("work", "LOG_FORMAT", "xml"),
        ("api", "BIND", "nowhere"),
        ("api", "PUBLIC_URL", "ftp://example.com"),
        ("serve", "KAKAOPAY_API_URL", "not a url"),
        ("sim", "SIM_BIND", "nowhere"),
        (
            "work",
            "REDIS_CLUSTER_URLS",
            "redis://a:1,http://u:sekrit@b:2",
        ),
        ("work", "REDIS_SENTINEL_URLS", ","),
        ("work", "REDIS_WAIT_REPLICAS", "-1"),
        ("work", "REDIS_WAIT_TIMEOUT_MS", "0"),
    ];
    for (sub, var, value) in cases {
        let (code, stderr) = run(bin().arg(sub).env("CALLBACK_SECRET", "s").env(var, value));
        assert_eq!(code, 2, "{var}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{var}: {stderr}");
        assert!(stderr.contains(var), "{var}: {stderr}");
        if var.contains("SECRET") || var.starts_with("REDIS_") && var.contains("URL") {
            assert!(
                !stderr.contains("sekrit") && !stderr.contains(value),
                "{var} leaked: {stderr}"
            );
        }
    }
}

#[test]
fn redis_topologies_that_contradict_each_other_are_one_line_and_exit_2() {
    let sentinels = ("REDIS_SENTINEL_URLS", "redis://127.0.0.1:26379");
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: [Case; 2] = [
        (
            &[
                ("REDIS_CLUSTER_URLS", "redis://127.0.0.1:7000"),
                sentinels,
                ("REDIS_SENTINEL_MASTER", "m"),
            ],
            &["REDIS_CLUSTER_URLS", "REDIS_SENTINEL_URLS"],
        ),
        (&[sentinels], &["REDIS_SENTINEL_MASTER"]),
    ];
    for (env, named) in cases {
        for sub in ["serve", "work", "queues"] {
            let (code, stderr) = run(bin()
                .arg(sub)
                .env("CALLBACK_SECRET", "s")
                .envs(env.iter().copied()));
            assert_eq!(code, 2, "{sub} {env:?}: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{sub}: {stderr}");
            for var in named {
                assert!(stderr.contains(var), "{sub} names {var}: {stderr}");
            }
        }
    }
}

#[test]
fn webhooks_need_a_secret_of_standard_length() {
    let url = ("WEBHOOK_URL", "http://127.0.0.1:9/hooks");
    // 16 bytes: under Standard Webhooks' 24.
    let short = ("WEBHOOK_SECRET", "whsec_AAAAAAAAAAAAAAAAAAAAAA==");
    let three = (
        "WEBHOOK_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    for (env, named) in [
        (vec![url], "WEBHOOK_SECRET"),
        (vec![url, short], "WEBHOOK_SECRET"),
        (vec![url, three], "WEBHOOK_SECRET"),
    ] {
        for sub in ["serve", "work"] {
            let (code, stderr) = run(bin()
                .arg(sub)
                .env("CALLBACK_SECRET", "s")
                .envs(env.iter().copied()));
            assert_eq!(code, 2, "{sub} {env:?}: {stderr}");
            assert_eq!(stderr.trim().lines().count(), 1, "{sub}: {stderr}");
            assert!(stderr.contains(named), "{sub}: {stderr}");
            assert!(
                !stderr.contains("MfKQ9r8G") && !stderr.contains("AAAAAAAA"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn help_never_shows_secret_values_from_the_environment() {
    let out = bin()
        .args(["serve", "--help"])
        .env("CALLBACK_SECRET", "very-secret-callback-key")
        .env("API_TOKENS", "token-one-secret")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("CALLBACK_SECRET"));
    assert!(
        !help.contains("very-secret-callback-key") && !help.contains("token-one-secret"),
        "{help}"
    );
}

#[test]
fn sim_serves_until_terminated() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = bin()
        .arg("sim")
        .env("SIM_BIND", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut up = false;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGTERM, the way a process manager stops it.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    assert!(up, "sim did not listen");
    assert!(
        out.status.success(),
        "sim exits cleanly on SIGTERM: {:?}",
        out.status
    );
    let logs = String::from_utf8_lossy(&out.stderr);
    let first = logs.lines().next().expect("a log line");
    let parsed: serde_json::Value =
        serde_json::from_str(first).expect("LOG_FORMAT=json writes JSON lines");
    assert!(parsed["message"].as_str().unwrap().contains("simulator"));
}

#[test]
fn demo_walks_a_payment_to_approved() {
    let namespace = format!("test-demo-{}", std::process::id());
    // As a newcomer types it: no RUST_LOG, so the narration must read alone.
    let out = bin()
        .arg("demo")
        .env("QUEUE_NAMESPACE", &namespace)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("status         approved"), "{stdout}");
    assert!(stdout.contains("SUCCESS_PAYMENT"), "{stdout}");
    assert!(
        stdout.contains("refunded once") && stdout.contains("CANCEL_PAYMENT"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(kakaopay_worker::sim::DEFAULT_SECRET_KEY),
        "the key is masked"
    );
    assert!(
        !stderr.contains(" INFO "),
        "no info lines in the narration: {stderr}"
    );
    // It cleans up after itself.
    assert!(stdout.contains("Redis keys are deleted"), "{stdout}");
    let left = Command::new("redis-cli")
        .args(["--scan", "--pattern", &format!("*{namespace}-demo-*")])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn demo_starts_its_own_redis_when_none_answers() {
    let port = free_port();
    let out = bin()
        .arg("demo")
        .env("REDIS_URL", format!("redis://127.0.0.1:{port}"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("started its own redis-server"), "{stdout}");
    assert!(stdout.contains("refunded once"), "{stdout}");
    // Without redis-server on PATH it says what to install, in one line.
    let out = bin()
        .arg("demo")
        .env("REDIS_URL", format!("redis://127.0.0.1:{port}"))
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("install Redis"), "{stderr}");
}

#[test]
fn an_empty_variable_counts_as_unset() {
    // As compose passes `${WEBHOOK_URL:-}`: the optional setting is simply off.
    let mut child = bin()
        .arg("sim")
        .env("WEBHOOK_URL", "")
        .env("SIM_PUBLIC_URL", "")
        .env("SIM_BIND", "127.0.0.1:0")
        .env("LOG_FORMAT", "")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running, not refused"
    );
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    assert!(child.wait().unwrap().success());
    // A required one set empty is missing, and said so.
    let (code, stderr) = run(bin().arg("api").env("CALLBACK_SECRET", ""));
    assert_eq!(code, 2);
    assert!(stderr.contains("CALLBACK_SECRET"), "{stderr}");
}

#[test]
fn the_compose_file_parses_and_wires_the_service_to_redis_and_the_simulator() {
    let script = "import json, yaml, sys; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"),
        ])
        .output()
        .expect("python3 with PyYAML");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compose: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = &compose["services"];
    assert_eq!(services["service"]["command"][0], "serve");
    assert_eq!(
        services["service"]["environment"]["REDIS_URL"],
        "redis://redis:6379"
    );
    assert_eq!(
        services["service"]["environment"]["KAKAOPAY_API_URL"],
        "http://sim:8090"
    );
    assert_eq!(services["sim"]["command"][0], "sim");
    assert!(services["redis"]["command"]
        .to_string()
        .contains("everysec"));
    for name in ["redis", "sim", "service"] {
        assert!(
            services[name]["healthcheck"]["test"].is_array(),
            "{name} has a healthcheck"
        );
    }
}

fn compose() -> serde_json::Value {
    let script = "import json, yaml, sys; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let out = Command::new("python3")
        .args([
            "-c",
            script,
            concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"),
        ])
        .output()
        .expect("python3 with PyYAML");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a healthcheck `test` the way Docker does: `CMD` as an argv, `CMD-SHELL` under
/// `/bin/sh -c` (dash on Debian, as in the image), with the container's environment and
/// `kakaopay-worker` on PATH; past `timeout` it counts as failed. Answers whether it passed.
fn healthcheck_passes(test: &[String], env: &[(String, String)], timeout: Duration) -> bool {
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_kakaopay-worker"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = match test[0].as_str() {
        "CMD" => {
            let mut c = Command::new(&test[1]);
            c.args(&test[2..]);
            c
        }
        "CMD-SHELL" => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(&test[1]);
            c
        }
        other => panic!("unknown healthcheck form {other}"),
    };
    let mut child = cmd
        .env_clear()
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `environment` of a compose service with its listen ports moved to free ones (this
/// machine may run anything on 8080) and the given overrides.
fn container_env(
    service: &serde_json::Value,
    overrides: &[(&str, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = service["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
        .collect();
    env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.clone())));
    env
}

/// A child process killed when dropped, so a failed assertion leaves no process behind.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_compose_healthchecks_pass_while_the_processes_are_up_and_fail_when_they_are_down() {
    let compose = compose();
    let services = &compose["services"];
    let check = |name: &str| -> (Vec<String>, Duration) {
        let h = &services[name]["healthcheck"];
        let test = h["test"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string());
        let timeout = h["timeout"]
            .as_str()
            .unwrap()
            .trim_end_matches('s')
            .parse()
            .unwrap();
        (test.collect(), Duration::from_secs(timeout))
    };

    // The simulator, as compose starts it, but on a free port (still on 0.0.0.0).
    let sim_port = free_port();
    let sim_env = container_env(
        &services["sim"],
        &[("SIM_BIND", format!("0.0.0.0:{sim_port}"))],
    );
    let (sim_test, sim_timeout) = check("sim");
    assert!(
        !healthcheck_passes(&sim_test, &sim_env, sim_timeout),
        "nothing runs yet"
    );
    let sim = Running(
        bin()
            .args(
                services["sim"]["command"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap()),
            )
            .envs(sim_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until(
        "the sim's healthcheck passes",
        Duration::from_secs(20),
        || healthcheck_passes(&sim_test, &sim_env, sim_timeout),
    );

    // The service, as compose starts it, on this machine's Redis and that simulator.
    let port = free_port();
    let service_env = container_env(
        &services["service"],
        &[
            ("BIND", format!("0.0.0.0:{port}")),
            ("REDIS_URL", "redis://127.0.0.1:6379".to_string()),
            (
                "QUEUE_NAMESPACE",
                format!("test-health-{:08x}", rand::random::<u32>()),
            ),
            ("KAKAOPAY_API_URL", format!("http://127.0.0.1:{sim_port}")),
            ("CALLBACK_SECRET", "health".to_string()),
            ("API_TOKENS", "health-client".to_string()),
            ("ADMIN_TOKENS", "health-admin".to_string()),
            ("WEBHOOK_URL", String::new()),
            ("WEBHOOK_SECRET", String::new()),
        ],
    );
    let (service_test, service_timeout) = check("service");
    let service = Running(
        bin()
            .args(
                services["service"]["command"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap()),
            )
            .envs(service_env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until(
        "the service's healthcheck passes",
        Duration::from_secs(20),
        || healthcheck_passes(&service_test, &service_env, service_timeout),
    );
    // The image's own HEALTHCHECK (for a container run without compose) is the same check.
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let image_test: Vec<String> = {
        let at = dockerfile
            .find("HEALTHCHECK")
            .expect("the Dockerfile has a HEALTHCHECK");
        let json = &dockerfile[at..];
        let json = &json[json.find("CMD [").unwrap() + 4..];
        serde_json::from_str(&json[..=json.find(']').unwrap()]).unwrap()
    };
    let mut image_test_cmd = vec!["CMD".to_string()];
    image_test_cmd.extend(image_test);
    assert!(healthcheck_passes(
        &image_test_cmd,
        &service_env,
        service_timeout
    ));

    // Down: each check fails, within its timeout.
    drop(service);
    assert!(!healthcheck_passes(
        &service_test,
        &service_env,
        service_timeout
    ));
    assert!(!healthcheck_passes(
        &image_test_cmd,
        &service_env,
        service_timeout
    ));
    drop(sim);
    assert!(!healthcheck_passes(&sim_test, &sim_env, sim_timeout));
}
