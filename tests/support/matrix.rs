//! Which Redis topology a test runs on. Suites run on the local server; the tests a suite names
//! in [`on_every_topology!`] run again on a shared Sentinel setup and a shared cluster (one of
//! each per test process, started by the first test that needs it).

use super::topology::{shared_cluster, shared_sentinel};
use kakaopay_jobs::queue::Topology;
use std::cell::Cell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Server,
    Sentinel,
    Cluster,
}

thread_local! {
    /// Set for the length of one test: the test's runtime runs its body on this thread.
    static CURRENT: Cell<Kind> = const { Cell::new(Kind::Server) };
}

pub const LOCAL_REDIS: &str = "redis://127.0.0.1:6379";

/// The topology the running test is on.
pub fn topology() -> Topology {
    match CURRENT.with(Cell::get) {
        Kind::Server => Topology::Server(LOCAL_REDIS.into()),
        Kind::Sentinel => {
            let s = shared_sentinel();
            Topology::Sentinel {
                sentinels: s.sentinel_urls(),
                master: s.master_name().to_string(),
            }
        }
        Kind::Cluster => Topology::Cluster(shared_cluster().urls()),
    }
}

/// Runs `test` (a `#[tokio::test]` function) on `kind`.
pub fn on(kind: Kind, test: fn()) {
    CURRENT.with(|c| c.set(kind));
    let reset = Reset;
    test();
    drop(reset);
}

struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(Kind::Server));
    }
}

/// The environment variables that put a child process on `topology`.
pub fn env_of(topology: &Topology) -> Vec<(&'static str, String)> {
    match topology {
        Topology::Server(url) => vec![("REDIS_URL", url.clone())],
        Topology::Sentinel { sentinels, master } => vec![
            ("REDIS_SENTINEL_URLS", sentinels.join(",")),
            ("REDIS_SENTINEL_MASTER", master.clone()),
        ],
        Topology::Cluster(nodes) => vec![("REDIS_CLUSTER_URLS", nodes.join(","))],
    }
}

/// Runs the named tests of this suite again on Sentinel and on a cluster:
/// `on_every_topology!(a_test, another_test);` at the end of the suite.
#[macro_export]
macro_rules! on_every_topology {
    ($($test:ident),+ $(,)?) => {
        mod on_sentinel {
            $(
                #[test]
                fn $test() {
                    $crate::support::matrix::on($crate::support::matrix::Kind::Sentinel, super::$test)
                }
            )+
        }
        mod on_cluster {
            $(
                #[test]
                fn $test() {
                    $crate::support::matrix::on($crate::support::matrix::Kind::Cluster, super::$test)
                }
            )+
        }
    };
}
