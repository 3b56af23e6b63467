//! Where connections come in: TCP listeners that take a burst of new connections, and the
//! HTTP server on them with time limits on everything a client controls.
//!
//! tokio's `TcpListener::bind` asks for a backlog of 128, as std does: when more clients
//! connect at once (a load balancer opening its pool, members' browsers after an outage,
//! workers opening connections to the simulator), Linux drops the extra SYNs and each of
//! those clients waits a one-second retransmission. The bench showed it as a 1.4 s p99 at
//! 256 lifecycles in flight.
//!
//! `axum::serve` sets no timer, so hyper enforces no header timeout there: a client that
//! opens a connection and never finishes its headers (slowloris) holds a task and a socket
//! forever. [`serve`] runs hyper with a header deadline that also bounds an idle keep-alive
//! connection (hyper starts it whenever it waits for a request head), and a deadline on the
//! whole request body.

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

use tokio::net::{TcpListener, TcpSocket};

/// Asked of `listen`; Linux clamps it to `net.core.somaxconn` (4096 by default).
const BACKLOG: u32 = 4096;

pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and tokio do: a restarted process can listen again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Time limits on what a client controls.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the moment the server waits for a request (a new connection, or an idle
    /// keep-alive one) until its headers are in.
    pub headers: Duration,
    /// From the headers until the whole body is in.
    pub body: Duration,
    /// How long a graceful stop waits for requests under way.
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            headers: Duration::from_secs(10),
            body: Duration::from_secs(20),
            drain: Duration::from_secs(20),
        }
    }
}

/// What [`serve`] serves: a router, or one inside layers that need no route.
pub trait App:
    tower::Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves `app` until `stop` resolves, then finishes the requests under way (at most
/// `limits.drain`). Each request carries the peer's address as `ConnectInfo`.
pub async fn serve(
    listener: TcpListener,
    app: impl App,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    // HTTP/1 only: hyper-util's auto-detection first reads the HTTP/2 preface with no timer
    // (a client that connects and sends nothing would be held forever), and cleartext
    // HTTP/2 has no header deadline at all. TLS and HTTP/2 end at the proxy in front.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.headers);
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or memory: wait a moment rather than spin. A
                    // connection reset before it was taken is that client's problem only.
                    if is_resource_error(&e) {
                        tracing::warn!(error = %e, "could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(|body| axum::body::Body::new(Deadline::new(body, limits.body)));
            req.extensions_mut().insert(ConnectInfo(peer));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that vanished or sent garbage: nothing to do but drop it.
            let _ = conn.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still under way when the drain time ran out");
    }
}

fn is_resource_error(e: &std::io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// A request body that fails once its deadline passes, however slowly it trickles in.
struct Deadline {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
}

impl Deadline {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Deadline {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

/// The error a body past its deadline ends with; `http::body` turns it into a 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn more_clients_than_the_default_backlog_connect_at_once() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Nobody accepts: every connection has to wait in the backlog. With tokio's 128, the
        // 130th SYN is dropped and its connect waits for retransmissions past the deadline.
        let connected = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            let mut streams = Vec::new();
            for _ in 0..300 {
                streams.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            }
            streams.len()
        })
        .await;
        assert_eq!(connected, Ok(300));
        drop(listener);
    }
}
