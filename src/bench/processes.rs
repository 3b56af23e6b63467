//! The processes a benchmark measures: a private `redis-server` (so that its command counts
//! and memory are ours alone), the simulator and the service, each started from this very
//! binary as a separate process, with its log in a file and its peak memory readable.

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A child process killed when dropped.
pub struct Process {
    pub name: String,
    child: Child,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Highest resident memory the process has had (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Starts the peak (VmHWM) over from the current RSS, so that each load level reports its
    /// own peak.
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
    }

    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// User plus system CPU time so far.
    pub fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.pid()))
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's CPU time so far: the load generator's share.
pub fn own_cpu() -> Duration {
    cpu_of("/proc/self/stat")
}

fn cpu_of(stat_path: &str) -> Duration {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // utime and stime, the 12th and 13th fields after the command name (which ends at the
    // last ')' and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
        .sum();
    // In USER_HZ clock ticks, 100 a second on Linux.
    Duration::from_millis(ticks * 10)
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Starts a kakaopay-worker binary with a subcommand and environment, its stderr (the log)
/// in `log`.
pub fn spawn(
    exe: &Path,
    name: &str,
    args: &[&str],
    env: &[(&str, String)],
    log: &Path,
) -> anyhow::Result<Process> {
    let mut command = Command::new(exe);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log)?));
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Process {
        name: name.to_string(),
        child,
    })
}

/// Waits until `addr` answers `GET path` with 200.
pub async fn wait_ready(process: &mut Process, addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut conn = super::load::Conn::new(addr);
    loop {
        if conn.send(&super::load::Req::get(path)).await.status == 200 {
            return Ok(());
        }
        if !process.alive() {
            bail!("{} exited at start; see its log", process.name);
        }
        if Instant::now() > deadline {
            bail!("{} did not answer on {addr} within 20 s", process.name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A redis-server of our own: nothing on disk, on a free port.
pub struct PrivateRedis {
    pub process: Process,
    pub port: u16,
    pub client: redis::Client,
}

impl PrivateRedis {
    pub async fn start(dir: &Path) -> anyhow::Result<PrivateRedis> {
        Self::launch(dir, &[], "redis").await
    }

    /// A replica of `master`, in sync when this returns.
    pub async fn start_replica_of(
        master: &PrivateRedis,
        dir: &Path,
    ) -> anyhow::Result<PrivateRedis> {
        let of = master.port.to_string();
        let args = [
            "--replicaof",
            "127.0.0.1",
            &of,
            "--repl-diskless-sync-delay",
            "0",
        ];
        let replica = Self::launch(dir, &args, "redis-replica").await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while replica
            .info("replication")
            .await?
            .get("master_link_status")
            .map(String::as_str)
            != Some("up")
        {
            if Instant::now() > deadline {
                bail!("the replica of port {of} did not sync within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(replica)
    }

    async fn launch(dir: &Path, extra: &[&str], name: &str) -> anyhow::Result<PrivateRedis> {
        let port = free_addr()?.port();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::from(std::fs::File::create(dir.join("redis.log"))?))
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start redis-server (is it installed?)")?;
        let process = Process {
            name: name.into(),
            child,
        };
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("redis-server did not come up on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(PrivateRedis {
            process,
            port,
            client,
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One section of INFO as field → value.
    pub async fn info(&self, section: &str) -> anyhow::Result<HashMap<String, String>> {
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query_async(&mut conn)
            .await?;
        Ok(parse_info(&text))
    }

    pub async fn used_memory(&self) -> anyhow::Result<i64> {
        self.info("memory")
            .await?
            .get("used_memory")
            .and_then(|v| v.parse().ok())
            .context("INFO memory has no used_memory")
    }

    /// SET requests per second and p50 latency (ms) from `redis-benchmark -t set`.
    pub fn benchmark_set(&self, connections: usize, requests: u64) -> anyhow::Result<(f64, f64)> {
        let out = Command::new("redis-benchmark")
            .args(["-p", &self.port.to_string(), "-t", "set", "-q"])
            .args(["-c", &connections.to_string(), "-n", &requests.to_string()])
            .output()
            .context("cannot run redis-benchmark (is it installed?)")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        parse_benchmark(&text)
            .with_context(|| format!("unexpected redis-benchmark output: {text:?}"))
    }
}

pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `SET: 123456.79 requests per second, p50=0.191 msec` (the last line that says SET; with
/// `-q` redis-benchmark rewrites its progress line in place, separated by '\r').
pub fn parse_benchmark(text: &str) -> Option<(f64, f64)> {
    let line = text
        .split(['\r', '\n'])
        .rfind(|l| l.starts_with("SET:") && l.contains("requests per second"))?;
    let rate = line
        .strip_prefix("SET:")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let p50 = line
        .split("p50=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    Some((rate, p50))
}

/// A scratch directory for logs, removed only on success so that a failed run can be read.
pub fn scratch_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kakaopay-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_benchmark_output_is_read_from_its_last_set_line() {
        let text = "SET: rps=0.0 (overall: nan) avg_msec=nan (overall: nan)\r\
                    SET: 151515.16 requests per second, p50=0.167 msec                    \n\n";
        assert_eq!(parse_benchmark(text), Some((151515.16, 0.167)));
        assert_eq!(parse_benchmark("nothing"), None);
    }

    #[test]
    fn info_sections_become_fields() {
        let info = parse_info("# Memory\r\nused_memory:1024\r\nused_memory_human:1.00K\r\n");
        assert_eq!(info["used_memory"], "1024");
        assert_eq!(info.len(), 2);
    }
}
