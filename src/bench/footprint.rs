//! What a lifecycle costs Redis: the commands our processes send (counted with `MONITOR`,
//! which also shows the commands run inside our Lua scripts) and the memory left behind,
//! by kind of key.

use std::collections::BTreeMap;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

/// Commands seen by `MONITOR`: sent by a client (one each, pipelined or not) or run by a script.
#[derive(Debug, Default)]
pub struct Commands {
    pub sent: BTreeMap<String, u64>,
    pub in_scripts: BTreeMap<String, u64>,
}

impl Commands {
    pub fn sent_total(&self) -> u64 {
        self.sent.values().sum()
    }

    pub fn in_scripts_total(&self) -> u64 {
        self.in_scripts.values().sum()
    }

    fn count(&mut self, line: &str) {
        // +1732800000.123456 [0 127.0.0.1:53422] "evalsha" "…" or [0 lua] for a script's.
        let Some((source, rest)) = line.split_once("] ") else {
            return;
        };
        let Some(name) = rest.split('"').nth(1) else {
            return;
        };
        let name = name.to_ascii_lowercase();
        let map = if source.ends_with(" lua") {
            &mut self.in_scripts
        } else {
            &mut self.sent
        };
        *map.entry(name).or_default() += 1;
    }
}

/// Counts every command until `stop` fires.
pub async fn monitor(port: u16, stop: oneshot::Receiver<()>) -> anyhow::Result<Commands> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(b"MONITOR\r\n").await?;
    let mut lines = BufReader::new(stream).lines();
    let mut commands = Commands::default();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(commands),
            line = lines.next_line() => match line? {
                Some(line) => commands.count(&line),
                None => return Ok(commands),
            },
        }
    }
}

/// A key's name with its ids replaced by `*`, so that keys of one kind group together.
pub fn key_kind(key: &str) -> String {
    key.split(':')
        .map(|part| {
            let id_like = part.len() > 24 || part.bytes().filter(u8::is_ascii_digit).count() >= 3;
            if id_like {
                "*"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

/// Bytes and key count per kind of key, and whether its keys expire.
#[derive(Debug, Default, Clone)]
pub struct KindUsage {
    pub keys: u64,
    pub bytes: u64,
    pub expiring: u64,
}

pub async fn memory_by_kind(client: &redis::Client) -> anyhow::Result<BTreeMap<String, KindUsage>> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut kinds: BTreeMap<String, KindUsage> = BTreeMap::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0);
            pipe.cmd("PTTL").arg(key);
        }
        let answers: Vec<Option<i64>> = pipe.query_async(&mut conn).await?;
        for (key, pair) in keys.iter().zip(answers.chunks(2)) {
            let usage = kinds.entry(key_kind(key)).or_default();
            usage.keys += 1;
            usage.bytes += pair[0].unwrap_or(0).max(0) as u64;
            if pair[1].unwrap_or(-1) > 0 {
                usage.expiring += 1;
            }
        }
        cursor = next;
        if cursor == 0 {
            return Ok(kinds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_split_into_sent_and_scripted() {
        let mut c = Commands::default();
        c.count(r#"+1732800000.123456 [0 127.0.0.1:53422] "EVALSHA" "abc" "2""#);
        c.count(r#"+1732800000.123457 [0 lua] "HSET" "k" "f" "v""#);
        c.count(r#"+1732800000.123458 [0 unix:/tmp/r.sock] "get" "k""#);
        c.count("+OK");
        assert_eq!(c.sent_total(), 2);
        assert_eq!(c.in_scripts_total(), 1);
        assert_eq!(c.sent["evalsha"], 1);
        assert_eq!(c.in_scripts["hset"], 1);
    }

    #[test]
    fn ids_in_key_names_become_stars() {
        assert_eq!(
            key_kind("bench:payment:pay_01JDX3Y4Z5ABCDEFGHJKMNPQRS:history"),
            "bench:payment:*:history"
        );
        assert_eq!(
            key_kind("{bench:approve_payment}:job:approve:pay_01JDX3Y4Z5ABCDEFGHJKMNPQ"),
            "{bench:approve_payment}:job:approve:*"
        );
        assert_eq!(
            key_kind("{bench:approve_payment}:done"),
            "{bench:approve_payment}:done"
        );
    }
}
