//! Schemathesis, driven by our own `/openapi.json`, against the real app: thousands of generated
//! requests (valid and not) to every route, with an admin token so every route is reachable.
//! Checks: no 5xx, every status documented, every body (errors included) matching its schema
//! and content type. Errors share one `Error` schema, API.md's `{"error": {…}}`.
//!
//! CI spends 20 seconds; a longer run is
//! `SCHEMATHESIS_SECONDS=300 cargo test --test api -- schemathesis:: --nocapture`.

use crate::support::*;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let seconds = std::env::var("SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "20".into());
    let app = spawn_app().await;
    app.connect_open_api("loc_1").await;
    let schema = format!("{}/openapi.json", app.address);
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}");
    // Through Python rather than the `st` script, which a fresh pip install may leave off PATH.
    let run = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args([
                "-c",
                "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'st'; sys.exit(schemathesis())",
                "run",
                &schema,
                "-H",
                &auth,
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-time",
                &seconds,
                "--workers",
                "2",
                "--request-timeout",
                "5",
                "--no-color",
            ])
            .output()
            .expect("schemathesis is installed (.ci/run does it)")
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    println!("{report}");
    let summary = report
        .lines()
        .skip_while(|l| !l.starts_with("Test cases:"))
        .nth(1)
        .unwrap_or("")
        .trim();
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        summary.contains("generated") && !summary.starts_with("0 generated"),
        "schemathesis ran cases: {summary}"
    );
    app.stop().await;
}
