//! Real Redis topologies made of `redis-server` processes: a Cluster of 3 masters with a replica
//! each, and a master/replica pair watched by 3 Sentinels.
//!
//! `PrivateCluster`/`PrivateSentinel` own their `redis-server` processes, so killing a node is a
//! real SIGKILL of the server. `shared_cluster()`/`shared_sentinel()` serve tests that kill
//! nothing; statics are never dropped, so each of their servers runs under a watchdog shell that
//! kills it and removes its directory once this test process is gone (even after a SIGKILL).
//!
//! Measured on the 2-core dev machine (Redis 7.0.15): either topology is up 2.1-2.4 s after
//! `start()`. After a SIGKILL of a master, every live cluster node shows its replica promoted
//! and `cluster_state:ok` 2.0-3.0 s later, and all 3 Sentinels name the replica 3.1-3.9 s later
//! (40 failovers in a row, each right after restarting the previous master as a replica).
//! The helpers block the calling thread while they poll (up to 30 s): in a `#[tokio::test]`
//! whose app must keep running meanwhile, use `flavor = "multi_thread"` or `block_in_place`.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

const MASTER_NAME: &str = "mymaster";
const DEADLINE_SECS: u64 = 30;

/// A port nobody listens on whose cluster bus port (`port + 10000`) is free too. Taken from
/// 12000..22000, below the kernel's ephemeral ports (32768+), so that no outgoing connection
/// (the nodes open many) takes it before the node binds it; and no port handed out here is
/// another node's bus port (22000..32000).
pub fn free_port() -> u16 {
    static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    loop {
        let port = rand::random_range(12_000..22_000);
        if free(port) && free(port + 10_000) && TAKEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

#[derive(Clone, Copy)]
enum Mode {
    /// The child is `redis-server` itself.
    Owned,
    /// The child is a shell that SIGKILLs `redis-server` when its stdin pipe closes, i.e. when
    /// the child is dropped or the test process exits. A pipe, not polling our pid: no delay,
    /// and no reused pid keeping servers alive.
    Watchdog,
}

/// One `redis-server` process (data node or Sentinel) and the directory it alone uses.
struct Node {
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    mode: Mode,
    child: Option<Child>,
}

impl Node {
    /// `args(port, dir)` gives the server's arguments for every boot; `extra` only this boot's.
    fn start(mode: Mode, extra: &[String], args: impl FnOnce(u16, &Path) -> Vec<String>) -> Node {
        let port = free_port();
        let name = format!("kakaopay-topology-{port}-{:x}", rand::random::<u32>());
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut node = Node {
            port,
            args: args(port, &dir),
            dir,
            mode,
            child: None,
        };
        node.boot(extra);
        node
    }

    fn boot(&mut self, extra: &[String]) {
        assert!(self.child.is_none(), "node {} is running", self.port);
        let port = self.port;
        let args: Vec<String> = self.args.iter().chain(extra).cloned().collect();
        let (program, args) = match self.mode {
            Mode::Owned => ("redis-server", args),
            Mode::Watchdog => ("sh", vec!["-c".into(), self.watchdog(&args)]),
        };
        let path = self.dir.join("log");
        let log = OpenOptions::new().append(true).create(true).open(path);
        let log = log.unwrap();
        let mut command = Command::new(program);
        // A pipe in both modes, though only the watchdog reads it.
        command.args(args).stdin(Stdio::piped());
        command.stdout(log.try_clone().unwrap()).stderr(log);
        self.child = Some(command.spawn().expect("redis-server is installed"));
        // Connects rather than watching the child: in watchdog mode the child is the shell.
        poll("redis-server start", 10, || {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(_)) = self.child.as_mut().unwrap().try_wait() {
                panic!("redis-server on {port} exited:\n{}", self.log_tail());
            }
            Err(format!("port {port} is closed:\n{}", self.log_tail()))
        });
    }

    fn watchdog(&self, args: &[String]) -> String {
        let quote = |word: &str| format!("'{}'", word.replace('\'', r"'\''"));
        let words: Vec<String> = args.iter().map(|word| quote(word)).collect();
        let dir = quote(self.dir.to_str().unwrap());
        let server = format!("redis-server {}", words.join(" "));
        format!("{server} & R=$!; read x; kill -9 $R; wait $R; rm -rf {dir}")
    }

    /// SIGKILL, in both modes: the watchdog uses `kill -9` too.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        match self.mode {
            Mode::Owned => drop(child.kill()),
            // Killing the shell would orphan the server; closing the pipe makes the shell kill it.
            Mode::Watchdog => drop(child.stdin.take()),
        }
        let _ = child.wait();
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find(nodes: &mut [Node], port: u16) -> &mut Node {
    let node = nodes.iter_mut().find(|n| n.port == port);
    node.unwrap_or_else(|| panic!("no node of this topology on port {port}"))
}

/// `redis-cli -p PORT ARGS...`'s output: raw (not a terminal), one value a line; empty when the
/// node does not answer.
fn cli(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let mut command = Command::new("redis-cli");
    command.args(["-h", "127.0.0.1", "-p", &port]).args(args);
    let out = command.output().map(|out| out.stdout).unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

/// Calls `check` until it gives a value; after `secs` panics with its last complaint.
fn poll<T>(what: &str, secs: u64, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check() {
            Ok(value) => return value,
            Err(why) if Instant::now() > deadline => panic!("no {what} within {secs} s: {why}"),
            Err(_) => sleep(Duration::from_millis(50)),
        }
    }
}

fn to_strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}

/// A data node keeps its data in an append-only file (so a restarted node has it), no RDB.
fn data_args(port: u16, dir: &Path) -> Vec<String> {
    #[rustfmt::skip]
    let args = [
        "--port", &port.to_string(), "--bind", "127.0.0.1", "--dir", dir.to_str().unwrap(),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        // By default a master waits 5 s before a replica's first sync, hoping for more replicas.
        "--repl-diskless-sync-delay", "0",
    ];
    to_strings(&args)
}

fn synced(replica: u16) -> Result<(), String> {
    let info = cli(replica, &["info", "replication"]);
    let up = info.contains("master_link_status:up");
    up.then_some(())
        .ok_or(format!("replica {replica} is not in sync:\n{info}"))
}

/// Three masters with a replica each.
pub struct PrivateCluster {
    nodes: Vec<Node>,
}

/// Only ever reached through `&`, so no test can kill a node of it.
pub type SharedCluster = PrivateCluster;

/// One cluster for the whole test process, for tests that kill nothing.
pub fn shared_cluster() -> &'static SharedCluster {
    static CLUSTER: OnceLock<SharedCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| PrivateCluster::launch(Mode::Watchdog))
}

fn cluster_args(port: u16, dir: &Path) -> Vec<String> {
    #[rustfmt::skip]
    let cluster = [
        "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
        // A silent master is failed after 1 s; its replica takes over about a second later.
        "--cluster-node-timeout", "1000",
        // Any replica may take over, however long it has been cut off from its master.
        "--cluster-replica-validity-factor", "0",
    ];
    [data_args(port, dir), to_strings(&cluster)].concat()
}

/// The masters holding slots in a CLUSTER NODES answer, as (port, marked failed). Lines look
/// like `<id> 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460`.
fn slot_masters(nodes: &str) -> Vec<(u16, bool)> {
    let master = |line: &str| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let address = fields.get(1)?.split(['@', ',']).next()?;
        let port = address.rsplit(':').next()?.parse::<u16>().ok()?;
        let flags = fields.get(2)?;
        let holds_slots = flags.contains("master") && fields.len() > 8;
        holds_slots.then(|| (port, flags.contains("fail")))
    };
    nodes.lines().filter_map(master).collect()
}

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        Self::launch(Mode::Owned)
    }

    fn launch(mode: Mode) -> PrivateCluster {
        let node = |_| Node::start(mode, &[], cluster_args);
        let nodes: Vec<Node> = (0..6).map(node).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed");
        let output = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "cluster create failed:\n{output}");
        let cluster = PrivateCluster { nodes };
        poll("formed cluster", DEADLINE_SECS, || cluster.formed());
        cluster
    }

    /// Every node says ok and knows 6 nodes, 3 of them masters with slots; replicas are in sync.
    fn formed(&self) -> Result<(), String> {
        for node in self.live() {
            let info = cli(node.port, &["cluster", "info"]);
            let nodes = cli(node.port, &["cluster", "nodes"]);
            let known = info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6");
            if !known || slot_masters(&nodes).len() != 3 {
                return Err(format!("node {} sees:\n{info}\n{nodes}", node.port));
            }
            if cli(node.port, &["role"]).starts_with("slave") {
                synced(node.port)?;
            }
        }
        Ok(())
    }

    fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// Every node, killed ones too (as a client's list of seed nodes would be).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    pub fn urls_csv(&self) -> String {
        self.urls().join(",")
    }

    /// The masters holding slots and not marked failed, as a live node sees them, sorted.
    pub fn masters(&self) -> Vec<u16> {
        let node = self.live().next().expect("a live cluster node");
        let masters = slot_masters(&cli(node.port, &["cluster", "nodes"]));
        let mut ports: Vec<u16> = masters.iter().filter(|m| !m.1).map(|m| m.0).collect();
        ports.sort();
        ports
    }

    /// SIGKILL: the node gets no chance to persist or hand anything over.
    pub fn kill(&mut self, port: u16) {
        find(&mut self.nodes, port).stop();
    }

    /// Until every live node says `cluster_state:ok` and gives `killed` no slots. Neither alone
    /// tells: the state stays ok for the second before the nodes agree a master failed, and
    /// a failed master keeps its slots until its replica takes them.
    pub fn wait_for_failover(&self, killed: u16) {
        poll("cluster failover", DEADLINE_SECS, || {
            for node in self.live() {
                let ok = cli(node.port, &["cluster", "info"]).contains("cluster_state:ok");
                let nodes = cli(node.port, &["cluster", "nodes"]);
                if !ok || slot_masters(&nodes).iter().any(|m| m.0 == killed) {
                    return Err(format!("node {} sees:\n{nodes}", node.port));
                }
            }
            Ok(())
        })
    }

    /// Starts a killed node again on its port and directory: its `nodes.conf` makes it rejoin,
    /// and a former master finds its slots taken and becomes a replica of their new owner.
    /// Returns once it is a replica in sync and the cluster is whole again.
    pub fn restart(&mut self, port: u16) {
        find(&mut self.nodes, port).boot(&[]);
        poll("restarted node rejoining", DEADLINE_SECS, || {
            let role = cli(port, &["role"]);
            if !role.starts_with("slave") {
                return Err(format!("node {port} says it is {role}"));
            }
            synced(port).and_then(|()| self.formed())
        });
    }

    /// DBSIZE of each live master holding slots.
    pub fn dbsize_by_master(&self) -> Vec<(u16, u64)> {
        let dbsize = |port: u16| cli(port, &["dbsize"]).trim().parse::<u64>();
        let size = |port| (port, dbsize(port).expect("DBSIZE answers a number"));
        self.masters().into_iter().map(size).collect()
    }
}

/// A master and a replica, watched by 3 Sentinels (quorum 2) that fail the master over once it
/// has been silent for 2 s.
pub struct PrivateSentinel {
    /// Dropped first, so that no Sentinel sees the data nodes die and starts a failover.
    sentinels: Vec<Node>,
    data: Vec<Node>,
}

/// Only ever reached through `&`, so no test can kill a node of it.
pub type SharedSentinel = PrivateSentinel;

/// One Sentinel setup for the whole test process, for tests that kill nothing.
pub fn shared_sentinel() -> &'static SharedSentinel {
    static SENTINEL: OnceLock<SharedSentinel> = OnceLock::new();
    SENTINEL.get_or_init(|| PrivateSentinel::launch(Mode::Watchdog))
}

fn replica_of(master: u16) -> Vec<String> {
    to_strings(&["--replicaof", "127.0.0.1", &master.to_string()])
}

/// A Sentinel rewrites its config file with what it learns, hence a writable file each.
/// `down-after-milliseconds` 2000, not 1000: at 1000 (a Sentinel's PING period) Sentinels at
/// times judged a master down just after switching to it, and failed it over again. A failed
/// failover is retried only 2 * `failover-timeout` later; 3 s leaves time for the promotion.
fn sentinel_args(port: u16, dir: &Path, master: u16) -> Vec<String> {
    let conf = dir.join("sentinel.conf");
    let text = format!(
        "port {port}\nbind 127.0.0.1\ndir \"{}\"\n\
         sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} 2000\n\
         sentinel failover-timeout {MASTER_NAME} 3000\n",
        dir.display()
    );
    std::fs::write(&conf, text).unwrap();
    to_strings(&[conf.to_str().unwrap(), "--sentinel"])
}

/// The port a Sentinel names as the master, if it answers.
fn named_master(sentinel: u16) -> Option<u16> {
    let ask = ["sentinel", "get-master-addr-by-name", MASTER_NAME];
    let answer = cli(sentinel, &ask);
    answer.lines().nth(1)?.parse().ok()
}

/// The value after `name` in a Sentinel's answer: names and values on alternate lines.
fn field<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let mut lines = answer.lines();
    lines.position(|line| line == name)?;
    lines.next()
}

impl PrivateSentinel {
    pub fn start() -> PrivateSentinel {
        Self::launch(Mode::Owned)
    }

    fn launch(mode: Mode) -> PrivateSentinel {
        let master = Node::start(mode, &[], data_args);
        let replica = Node::start(mode, &replica_of(master.port), data_args);
        // Sentinels learn of replicas from the master's INFO, read every 10 s: one started
        // before the replica is connected would not know it for 10 s.
        poll("replica sync", DEADLINE_SECS, || synced(replica.port));
        let port = master.port;
        let sentinel = |_| Node::start(mode, &[], |s, dir| sentinel_args(s, dir, port));
        let setup = PrivateSentinel {
            sentinels: (0..3).map(sentinel).collect(),
            data: vec![master, replica],
        };
        poll("ready Sentinels", DEADLINE_SECS, || setup.ready(port));
        setup
    }

    /// Every Sentinel knows the master, its replica and the 2 other Sentinels.
    fn ready(&self, master: u16) -> Result<(), String> {
        for sentinel in &self.sentinels {
            let text = cli(sentinel.port, &["sentinel", "master", MASTER_NAME]);
            let has = |name: &str, value: &str| field(&text, name) == Some(value);
            let peers = has("num-slaves", "1") && has("num-other-sentinels", "2");
            if !has("port", &master.to_string()) || !peers {
                return Err(format!("Sentinel {} says:\n{text}", sentinel.port));
            }
        }
        Ok(())
    }

    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::url).collect()
    }

    pub fn sentinel_urls_csv(&self) -> String {
        self.sentinel_urls().join(",")
    }

    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// The master each Sentinel names, in order.
    fn named(&self) -> Vec<Option<u16>> {
        let ports = self.sentinels.iter().map(|s| s.port);
        ports.map(named_master).collect()
    }

    /// The master, as the first Sentinel that answers names it.
    pub fn master_port(&self) -> u16 {
        let first = self.named().into_iter().flatten().next();
        first.expect("a Sentinel names the master")
    }

    /// The data node that is not the master (killed or not).
    pub fn replica_port(&self) -> u16 {
        let master = self.master_port();
        let other = self.data.iter().find(|n| n.port != master);
        other.unwrap().port
    }

    /// SIGKILLs the current master; answers its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        find(&mut self.data, port).stop();
        port
    }

    /// Until every Sentinel names the same new master and that node says it is one; answers its
    /// port. Every Sentinel, since a client may ask any: the others hear of a failover from the
    /// leader's hello messages, up to 2 s later.
    pub fn wait_for_failover(&self, old_master: u16) -> u16 {
        poll("Sentinel failover", DEADLINE_SECS, || {
            let named = self.named();
            let agreed = |&new: &u16| new != old_master && named.iter().all(|n| *n == Some(new));
            match named[0].filter(agreed) {
                Some(new) if cli(new, &["role"]).starts_with("master") => Ok(new),
                _ => Err(format!("Sentinels name {named:?}; old master {old_master}")),
            }
        })
    }

    /// Starts a killed data node again, on its port and directory (so with its data): as a
    /// replica of the current master, unless the Sentinels still name it the master. (Started
    /// as a master, a former master would take writes until a Sentinel demoted it.) A replica
    /// is in sync, and fit to be promoted, when this returns: up to 10 s later.
    pub fn restart(&mut self, port: u16) {
        let master = self.master_port();
        if master == port {
            return find(&mut self.data, port).boot(&[]);
        }
        let booted = Instant::now();
        find(&mut self.data, port).boot(&replica_of(master));
        poll("restarted replica sync", DEADLINE_SECS, || synced(port));
        let seen = || self.sees_replica(port, booted);
        poll("Sentinels seeing the replica", DEADLINE_SECS, seen);
    }

    /// Every Sentinel has read the replica's INFO since `booted` and found it in sync. Until
    /// then a Sentinel may find no replica fit to promote, and would try again only 6 s later;
    /// it reads a replica's INFO every 10 s, or every second while the replica is out of sync.
    fn sees_replica(&self, port: u16, booted: Instant) -> Result<(), String> {
        for sentinel in &self.sentinels {
            let text = cli(sentinel.port, &["sentinel", "replicas", MASTER_NAME]);
            let text = format!("\n{text}"); // each replica starts with a `name` line
            let mut entries = text.split("\nname\n");
            let entry = entries.find(|e| field(e, "port") == Some(&port.to_string()));
            let has = |name, value| entry.and_then(|e| field(e, name)) == Some(value);
            let refresh = entry.and_then(|e| field(e, "info-refresh")?.parse::<u128>().ok());
            let fresh = refresh.is_some_and(|ms| ms < booted.elapsed().as_millis());
            if !fresh || !has("flags", "slave") || !has("master-link-status", "ok") {
                return Err(format!("Sentinel {} sees:\n{text}", sentinel.port));
            }
        }
        Ok(())
    }
}
