//! Slow and idle clients cannot hold the service: a connection that sends nothing, never
//! finishes its headers, sits idle after a response, or trickles its body is closed on a
//! deadline, and
//! `/healthz` stays fast for everyone else meanwhile. Its own binary: it times requests while
//! it holds 2,000 connections, and other suites running beside it would blur the timing.

mod support;

use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOW: usize = 2_000;

/// Reads until the server closes the connection, answering what it sent and when it closed.
async fn until_closed(mut stream: TcpStream, limit: Duration) -> Option<(Duration, String)> {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Some((
                    started.elapsed(),
                    String::from_utf8_lossy(&seen).into_owned(),
                ))
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_healthz_stays_fast() {
    let app = spawn_app().await;
    let addr = app.address.trim_start_matches("http://").to_string();

    // 2,000 clients that never finish their headers: most send half a request head, some
    // nothing at all, some the start of an HTTP/2 preface (a server that sniffs for HTTP/2
    // waits for the rest of it with no deadline).
    let mut slow = Vec::with_capacity(SLOW);
    for i in 0..SLOW {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let sent: &[u8] = match i % 10 {
            0 => b"",
            1 => b"PRI * HTTP/2.0\r\n",
            _ => b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        };
        s.write_all(sent).await.unwrap();
        slow.push(s);
    }
    // One that finished a request and then sits idle on its keep-alive connection.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 256];
    let n = idle.read(&mut first).await.unwrap();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&first[..n])
    );
    // One that sends its headers and a tenth of the body it announced, then nothing.
    let mut trickle = TcpStream::connect(&addr).await.unwrap();
    trickle
        .write_all(
            format!(
                "POST /v1/payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"location_id\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let opened = Instant::now();
    let watch: Vec<_> = slow
        .into_iter()
        .map(|s| tokio::spawn(until_closed(s, Duration::from_secs(30))))
        .collect();
    let idle = tokio::spawn(until_closed(idle, Duration::from_secs(30)));
    let trickle = tokio::spawn(until_closed(trickle, Duration::from_secs(30)));

    // Meanwhile everyone else is served at once.
    let client = reqwest::Client::new();
    let mut took = Vec::new();
    for _ in 0..300 {
        let started = Instant::now();
        let r = client
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        took.push(started.elapsed());
    }
    took.sort();
    let p99 = took[took.len() * 99 / 100];
    assert!(
        p99 < Duration::from_millis(50),
        "healthz p99 {p99:?} under {SLOW} slow clients"
    );

    let mut closed_after = Vec::new();
    for w in watch {
        let (after, said) = w.await.unwrap().expect("closed within 30 s");
        assert!(!said.contains("200 OK"), "no request was served: {said}");
        closed_after.push(after);
    }
    let latest = closed_after.iter().max().unwrap();
    assert!(*latest < Duration::from_secs(30) - opened.elapsed().min(Duration::from_secs(1)));
    let (_, said) = idle.await.unwrap().expect("the idle connection is closed");
    assert!(said.is_empty(), "{said}");
    let (_, said) = trickle
        .await
        .unwrap()
        .expect("the trickling body is cut off");
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains("\"request_timeout\""), "{said}");
    eprintln!("healthz p99 {p99:?}; {SLOW} slow clients closed after at most {latest:?}");
    app.stop().await;
}
