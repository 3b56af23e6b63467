//! One connection to Redis, whichever way Redis runs: one server, a master watched by
//! Sentinel, or a Redis Cluster. Everything else sends its commands through [`Connection`]
//! and never knows which.
//!
//! - One server: redis-rs's `ConnectionManager`, which reconnects to the same address.
//! - Sentinel: the master the Sentinels name, asked again whenever the connection fails or
//!   the node answers as a replica (a failover), so the service follows every promotion
//!   without a restart.
//! - Cluster: redis-rs's async cluster client (MOVED/ASK, slot refresh, reconnects).
//!
//! Writes that an answer depends on go through [`Connection::write`] or [`Invocation::run`]:
//! with [`Durability`] set, `WAIT` follows the write in the same pipeline, so it is sent on
//! the same connection to the same node right behind it, and a write that too few replicas
//! hold in time is reported as a timeout (the caller answers 503; repeating is safe).

use super::RedisErrorClass;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult,
    ToRedisArgs, Value,
};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where Redis is.
#[derive(Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (`REDIS_URL`).
    Server(String),
    /// The master Sentinel monitors under `master` (`REDIS_SENTINEL_URLS`,
    /// `REDIS_SENTINEL_MASTER`).
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
    /// Seed nodes of a cluster (`REDIS_CLUSTER_URLS`).
    Cluster(Vec<String>),
}

/// URLs may carry passwords: only the shape is shown.
impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Topology::Server(_) => write!(f, "Server"),
            Topology::Sentinel { sentinels, master } => {
                write!(
                    f,
                    "Sentinel({} sentinels, master {master})",
                    sentinels.len()
                )
            }
            Topology::Cluster(nodes) => write!(f, "Cluster({} seed nodes)", nodes.len()),
        }
    }
}

/// How many replicas must hold a write before it counts (`REDIS_WAIT_REPLICAS`), and how
/// long to wait for them (`REDIS_WAIT_TIMEOUT_MS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    pub replicas: u32,
    pub timeout: Duration,
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Shared by every task: fails fast enough that an outage is noticed, waits long enough
    /// for the biggest script.
    Shared,
    /// A blocking read of up to `longest` (on a connection of its own, since on a shared one
    /// it would stall every other command).
    Blocking { longest: Duration },
}

impl Purpose {
    fn response_timeout(self) -> Duration {
        match self {
            Purpose::Shared => Duration::from_secs(5),
            Purpose::Blocking { longest } => longest + Duration::from_secs(5),
        }
    }
}

/// A link that carries writes waiting `wait` for replicas (behind the one waiting before it).
fn durable_purpose(wait: Durability) -> Purpose {
    Purpose::Blocking {
        longest: wait.timeout * 2,
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to Redis on any topology. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Connection {
    link: Link,
    durable: Option<Durable>,
}

/// The links waited-for writes go through. Redis reads nothing more from a client blocked in
/// `WAIT`, so on the shared link one write waiting for a slow replica would hold up every
/// read behind it; these carry only the writes.
#[derive(Clone)]
struct Durable {
    wait: Durability,
    links: Arc<Vec<Link>>,
    next: Arc<AtomicUsize>,
}

/// How many writes may wait for replicas at once, per process.
const DURABLE_LINKS: usize = 4;

#[derive(Clone)]
enum Link {
    Server(ConnectionManager),
    Sentinel(Arc<Followed>),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.link {
            Link::Server(_) => "server",
            Link::Sentinel(_) => "sentinel",
            Link::Cluster(_) => "cluster",
        };
        f.debug_struct("Connection")
            .field("topology", &kind)
            .field("durability", &self.durability())
            .finish()
    }
}

impl Connection {
    /// Connects (and, through Sentinel, finds the master). `durability` applies to the
    /// writes made with [`Connection::write`] and [`Invocation::run`].
    pub async fn open(
        topology: &Topology,
        purpose: Purpose,
        durability: Option<Durability>,
    ) -> RedisResult<Connection> {
        let link = Self::link(topology, purpose).await?;
        let durable = match durability.filter(|d| d.replicas > 0) {
            None => None,
            Some(wait) => {
                let mut links = Vec::with_capacity(DURABLE_LINKS);
                for _ in 0..DURABLE_LINKS {
                    links.push(Self::link(topology, durable_purpose(wait)).await?);
                }
                Some(Durable {
                    wait,
                    links: Arc::new(links),
                    next: Arc::default(),
                })
            }
        };
        Ok(Connection { link, durable })
    }

    async fn link(topology: &Topology, purpose: Purpose) -> RedisResult<Link> {
        Ok(match topology {
            Topology::Server(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(purpose.response_timeout()))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                let client = redis::Client::open(url.as_str())?;
                Link::Server(client.get_connection_manager_with_config(config).await?)
            }
            Topology::Sentinel { sentinels, master } => {
                let followed = Arc::new(Followed::new(sentinels, master, purpose)?);
                followed.current().await?;
                tokio::spawn(watch(Arc::downgrade(&followed)));
                Link::Sentinel(followed)
            }
            Topology::Cluster(nodes) => {
                let client = redis::cluster::ClusterClient::builder(nodes.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(purpose.response_timeout())
                    // A failover takes a few seconds: retry across it, not much longer.
                    .retries(6)
                    .min_retry_wait(100)
                    .max_retry_wait(1_000)
                    .build()?;
                Link::Cluster(client.get_async_connection().await?)
            }
        })
    }

    /// Whether one script may touch keys of different slots: on one server and through
    /// Sentinel (one master holds every key), not on a cluster.
    pub fn scripts_span_slots(&self) -> bool {
        !matches!(self.link, Link::Cluster(_))
    }

    pub fn durability(&self) -> Option<Durability> {
        self.durable.as_ref().map(|d| d.wait)
    }

    /// Runs a pipeline of writes; with durability asked for, `WAIT` follows them on the same
    /// connection (and, on a cluster, the same node: a pipeline goes to the node of its first
    /// key) and too few replicas in time is a timeout error.
    pub async fn write<T: FromRedisValue>(&self, pipe: &Pipeline) -> RedisResult<T> {
        let Some(durable) = &self.durable else {
            return pipe.query_async(&mut self.clone()).await;
        };
        let d = durable.wait;
        let n = durable.next.fetch_add(1, Ordering::Relaxed) % durable.links.len();
        let mut conn = Connection {
            link: durable.links[n].clone(),
            durable: None,
        };
        let mut waited = pipe.clone();
        waited
            .cmd("WAIT")
            .arg(d.replicas)
            .arg(d.timeout.as_millis() as u64);
        let mut values: Vec<Value> = waited.query_async(&mut conn).await?;
        let held = values.pop().map(i64::from_redis_value).transpose()?;
        check_replicas(d, held.unwrap_or(0))?;
        T::from_redis_value(Value::Array(values)).map_err(Into::into)
    }

    /// Sends `cmd` to the node that holds `key` (a cluster routes keyless commands such as
    /// `CLIENT LIST` anywhere): it rides in a pipeline behind a read of `key`.
    pub async fn on_node_of<T: FromRedisValue>(&self, key: &str, cmd: Cmd) -> RedisResult<T> {
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(key).ignore().add_command(cmd);
        let (value,): (T,) = pipe.query_async(&mut self.clone()).await?;
        Ok(value)
    }
}

fn check_replicas(d: Durability, held: i64) -> RedisResult<()> {
    if held >= d.replicas as i64 {
        return Ok(());
    }
    Err(RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "written, but only {held} of {} replicas acknowledged it within {} ms",
            d.replicas,
            d.timeout.as_millis()
        ),
    )))
}

/// Round trips to Redis this process has made (a command or a pipeline each), for
/// `redis_round_trips_total` and the benchmark's count per lifecycle.
static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

pub fn round_trips() -> u64 {
    ROUND_TRIPS.load(Ordering::Relaxed)
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        match &mut self.link {
            Link::Server(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
            Link::Sentinel(f) => {
                let f = f.clone();
                Box::pin(async move {
                    let (generation, mut conn) = f.current().await?;
                    let result = conn.req_packed_command(cmd).await;
                    f.check(generation, result)
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        match &mut self.link {
            Link::Server(c) => c.req_packed_commands(pipe, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipe, offset, count),
            Link::Sentinel(f) => {
                let f = f.clone();
                Box::pin(async move {
                    let (generation, mut conn) = f.current().await?;
                    let result = conn.req_packed_commands(pipe, offset, count).await;
                    f.check(generation, result)
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Server(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
            Link::Sentinel(_) => 0,
        }
    }
}

/// The master Sentinel names, followed across failovers.
struct Followed {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
    current: Mutex<Option<Current>>,
    generations: AtomicU64,
}

/// The connection to the master as last found: with a generation, so that a failure seen on an
/// old connection does not throw away a newer one, and the master's address.
#[derive(Clone)]
struct Current {
    generation: u64,
    conn: MultiplexedConnection,
    address: String,
}

impl Followed {
    fn new(sentinels: &[String], master: &str, purpose: Purpose) -> RedisResult<Followed> {
        let client = SentinelClient::build(
            sentinels.to_vec(),
            master.to_string(),
            None,
            SentinelServerType::Master,
        )?;
        Ok(Followed {
            sentinel: tokio::sync::Mutex::new(client),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(purpose.response_timeout())),
            current: Mutex::new(None),
            generations: Default::default(),
        })
    }

    fn cached(&self) -> Option<Current> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Drops the connection of `generation`, if it is still the current one.
    fn forget(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|c| c.generation == generation) {
            *current = None;
        }
    }

    /// The connection to the master, asking the Sentinels for it when there is none.
    async fn current(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(c) = self.cached() {
            return Ok((c.generation, c.conn));
        }
        let mut sentinel = self.sentinel.lock().await;
        // Another task may have found the master while this one waited for the lock.
        if let Some(c) = self.cached() {
            return Ok((c.generation, c.conn));
        }
        let found = async {
            let client = sentinel.async_get_client().await?;
            let address = client.get_connection_info().addr().to_string();
            let conn = client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await?;
            Ok::<_, RedisError>((conn, address))
        };
        let (conn, address) = tokio::time::timeout(CONNECT_TIMEOUT * 2, found)
            .await
            .map_err(|_| {
                RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no Sentinel named a reachable master in time",
                ))
            })??;
        let generation = 1 + self.generations.fetch_add(1, Ordering::Relaxed);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(Current {
            generation,
            conn: conn.clone(),
            address,
        });
        Ok((generation, conn))
    }

    /// Passes `result` on; when it says the master is gone or is a master no longer, the
    /// next command asks the Sentinels again.
    fn check<T>(&self, generation: u64, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result {
            if RedisErrorClass::of(e) == RedisErrorClass::Unavailable {
                self.forget(generation);
            }
        }
        result
    }

    /// Asks the Sentinels which node is the master now, and drops a connection to another.
    async fn recheck(&self) {
        let Some(current) = self.cached() else {
            return;
        };
        let named = {
            let mut sentinel = self.sentinel.lock().await;
            tokio::time::timeout(CONNECT_TIMEOUT, sentinel.async_get_client()).await
        };
        if let Ok(Ok(client)) = named {
            if client.get_connection_info().addr().to_string() != current.address {
                self.forget(current.generation);
            }
        }
    }
}

/// Every few seconds, asks the Sentinels which node is the master: a connection that never
/// fails can still be to a master that was replaced (the Sentinels cut off from it, we not),
/// and is dropped then. Ends with the connection.
async fn watch(followed: std::sync::Weak<Followed>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        match followed.upgrade() {
            Some(f) => f.recheck().await,
            None => return,
        }
    }
}

/// A Lua script. Every key it touches is passed in `KEYS` (a cluster routes the call by
/// them, and they must share one slot).
pub struct Script(redis::Script);

impl Script {
    pub fn new(code: &str) -> Script {
        Script(redis::Script::new(code))
    }

    pub fn hash(&self) -> &str {
        self.0.get_hash()
    }

    pub fn prepare_invoke(&self) -> Invocation<'_> {
        Invocation {
            script: self,
            keys: Args::default(),
            args: Args::default(),
        }
    }

    pub fn key<T: ToRedisArgs>(&self, key: T) -> Invocation<'_> {
        let mut inv = self.prepare_invoke();
        inv.key(key);
        inv
    }

    /// Loads the script on every node that may run it.
    pub async fn load(&self, conn: &Connection) -> RedisResult<()> {
        self.0
            .prepare_invoke()
            .load_async(&mut conn.clone())
            .await?;
        Ok(())
    }
}

/// A call of a [`Script`] with its keys and arguments.
pub struct Invocation<'a> {
    script: &'a Script,
    keys: Args,
    args: Args,
}

/// Keys or arguments as Redis gets them, in one buffer: a call on the request path has a
/// dozen or two, and an allocation for each (and a copy of each into the command) was most
/// of what building it cost.
#[derive(Default)]
struct Args {
    data: Vec<u8>,
    starts: Vec<usize>,
}

impl Args {
    fn len(&self) -> usize {
        self.starts.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let ends = self.starts.iter().skip(1).copied().chain([self.data.len()]);
        self.starts.iter().zip(ends).map(|(&a, b)| &self.data[a..b])
    }

    fn extend(&mut self, other: &Args) {
        let base = self.data.len();
        self.data.extend_from_slice(&other.data);
        self.starts.extend(other.starts.iter().map(|s| s + base));
    }
}

impl redis::RedisWrite for Args {
    fn write_arg(&mut self, arg: &[u8]) {
        self.starts.push(self.data.len());
        self.data.extend_from_slice(arg);
    }

    fn writer_for_next_arg(&mut self) -> impl std::io::Write + '_ {
        self.starts.push(self.data.len());
        &mut self.data
    }
}

impl Invocation<'_> {
    pub fn key<T: ToRedisArgs>(&mut self, key: T) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// `first` and `then` as one call of `script`, whose ARGV begins with how many keys and
    /// arguments are `first`'s (see `scripts::then_enqueue`).
    pub(super) fn joined<'s>(
        script: &'s Script,
        first: &Invocation<'_>,
        then: &Invocation<'_>,
    ) -> Invocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.arg(first.keys.len()).arg(first.args.len());
        for part in [first, then] {
            inv.keys.extend(&part.keys);
            inv.args.extend(&part.args);
        }
        inv
    }

    /// The call as a command, to send in a pipeline.
    pub fn cmd(&self) -> Cmd {
        use redis::RedisWrite;
        let parts = self.keys.len() + self.args.len();
        let bytes = self.keys.data.len() + self.args.data.len();
        // EVALSHA, the 40-digit hash and the key count first.
        let mut cmd = Cmd::with_capacity(3 + parts, 64 + bytes);
        cmd.arg("EVALSHA")
            .arg(self.script.hash())
            .arg(self.keys.len());
        for part in self.keys.iter().chain(self.args.iter()) {
            cmd.write_arg(part);
        }
        cmd
    }

    /// Loads its script (after Redis answered `NOSCRIPT` for it).
    pub async fn load(&self, conn: &Connection) -> RedisResult<()> {
        self.script.load(conn).await
    }

    /// Runs a script that writes: durably when the connection asks for it.
    pub async fn run<T: FromRedisValue>(&self, conn: &Connection) -> RedisResult<T> {
        let mut pipe = redis::pipe();
        pipe.add_command(self.cmd());
        let (value,): (T,) = self.loaded(conn, |c| c.write(&pipe)).await?;
        Ok(value)
    }

    /// Runs a script without waiting for replicas: one that only reads, or whose writes no
    /// answer depends on (a lost one is done again: a fetch, a lease renewal).
    pub async fn run_nowait<T: FromRedisValue>(&self, conn: &Connection) -> RedisResult<T> {
        let cmd = self.cmd();
        self.loaded(conn, |c| {
            let mut c = c.clone();
            let cmd = cmd.clone();
            async move { cmd.query_async(&mut c).await }
        })
        .await
    }

    /// Sends, and if Redis does not know the script yet (a restart, a flush, a new node),
    /// loads it and sends again: nothing ran the first time.
    async fn loaded<'c, T, F, Fut>(&self, conn: &'c Connection, send: F) -> RedisResult<T>
    where
        F: Fn(&'c Connection) -> Fut,
        Fut: std::future::Future<Output = RedisResult<T>>,
    {
        match send(conn).await {
            Err(e) if e.code() == Some("NOSCRIPT") => {
                self.script.load(conn).await?;
                send(conn).await
            }
            other => other,
        }
    }
}
