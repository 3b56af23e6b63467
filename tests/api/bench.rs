//! `kakaopay-worker bench` end to end at a small size: every part runs against real
//! processes (a private redis-server, the simulator, `api`, `work` and `serve`), nothing
//! fails, and the report carries each figure BENCHMARKS.md quotes.

use std::process::Command;

#[test]
fn a_small_bench_runs_every_part_and_reports_each_figure() {
    let report_file =
        std::env::temp_dir().join(format!("kakaopay-bench-report-{}.md", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_kakaopay-worker"))
        .args([
            "bench",
            "--runs",
            "1",
            "--requests",
            "200",
            "--seconds",
            "1",
        ])
        .args(["--concurrency", "2,8", "--latencies", "0,20", "--out"])
        .arg(&report_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(&report_file).unwrap();
    let _ = std::fs::remove_file(&report_file);
    for needle in [
        "## 1. Enqueue path",
        "| `GET /healthz` (no Redis) | 200 |",
        "| callback `GET /kakaopay/callback/…/approve` | 50 |",
        "| refund `POST /v1/payments/{id}/refunds` | 200 |",
        "| `redis-benchmark -t set -n 200000` | 200 |",
        "## 3. Lifecycles",
        "## 4. Redis per lifecycle",
        "commands sent per lifecycle",
        "| evalsha |",
        "bytes per finished payment",
        "bytes per payment**",
        "## 5. Memory of `serve`",
        "The `serve` log has 0 warnings or errors",
    ] {
        assert!(report.contains(needle), "no {needle:?} in:\n{report}");
    }
    // Each request's api CPU over /healthz's at its level, as issue #17 reads it (at this
    // size the CPU is a few clock ticks, so only its form is checked: NaN is 0 over 0).
    for request in ["`GET /healthz`", "callback", "refund"] {
        let rows: Vec<&str> = report
            .lines()
            .filter(|l| l.starts_with(&format!("| {request}")))
            .collect();
        assert_eq!(
            rows.len(),
            2,
            "{request} at 50 and 200 connections:\n{report}"
        );
        for row in rows {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 13, "{row}");
            let ratio: f64 = cells[11].parse().unwrap_or_else(|_| panic!("{row}"));
            if request == "`GET /healthz`" {
                assert!(ratio == 1.0 || ratio.is_nan(), "{row}");
            }
        }
    }
    let rows: Vec<Vec<&str>> = report
        .lines()
        .filter(|l| l.starts_with("| 0 ms |") || l.starts_with("| 20 ms |"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 4, "one row per latency and level:\n{report}");
    for row in rows {
        let rate: f64 = row[3].parse().unwrap();
        assert!(rate > 0.0, "{row:?}");
        assert_eq!(row[6], "0", "no lifecycle failed: {row:?}");
        let peak_mib: f64 = row[11].parse().unwrap();
        assert!(
            peak_mib > 1.0,
            "the serve process's peak RSS is read: {row:?}"
        );
    }
}
