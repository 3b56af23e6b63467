//! `kakaopay-worker healthcheck`: asks the service's `/readyz` (or the simulator's
//! `/healthz`) and exits 0 on a 200 within the timeout, 1 otherwise. The container image has
//! no curl and its `/bin/sh` is dash (no `/dev/tcp`), so compose and the Dockerfile's
//! `HEALTHCHECK` run this instead.

use crate::config::HealthcheckArgs;
use std::net::SocketAddr;

/// The URL asked: as given, or the default route at the address the process listens on.
pub fn target(args: &HealthcheckArgs) -> String {
    if let Some(url) = &args.url {
        return url.to_string();
    }
    let (addr, path) = if args.sim {
        (args.sim_bind, "/healthz")
    } else {
        (args.bind, "/readyz")
    };
    format!("http://{}{path}", reachable(addr))
}

/// A wildcard listen address (`0.0.0.0`, `::`) is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => ([127, 0, 0, 1], a.port()).into(),
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            (std::net::Ipv6Addr::LOCALHOST, a.port()).into()
        }
        other => other,
    }
}

/// Ok when the target answered 200 in time; the error says why not (exit 1).
pub async fn run(args: HealthcheckArgs) -> anyhow::Result<()> {
    crate::tls::init();
    let url = target(&args);
    let client = reqwest::Client::builder()
        .timeout(args.timeout_ms)
        .build()?;
    match client.get(&url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
        Ok(r) => anyhow::bail!("unhealthy: {url} answered {}", r.status()),
        Err(e) => anyhow::bail!("unhealthy: {url}: {}", e.without_url()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(argv: &[&str]) -> HealthcheckArgs {
        let cli = crate::config::Cli::try_parse_from(
            ["kakaopay-worker", "healthcheck"].iter().chain(argv),
        )
        .unwrap();
        match cli.command {
            crate::config::Command::Healthcheck(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_default_target_is_where_the_process_listens() {
        assert_eq!(target(&args(&[])), "http://127.0.0.1:8080/readyz");
        assert_eq!(
            target(&args(&["--bind", "0.0.0.0:9000"])),
            "http://127.0.0.1:9000/readyz"
        );
        assert_eq!(
            target(&args(&["--sim", "--sim-bind", "0.0.0.0:8090"])),
            "http://127.0.0.1:8090/healthz"
        );
        assert_eq!(
            target(&args(&["--bind", "[::]:81"])),
            "http://[::1]:81/readyz"
        );
        assert_eq!(target(&args(&["http://h:1/x"])), "http://h:1/x");
    }
}
