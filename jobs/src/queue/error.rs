use std::fmt;

/// What a handler answers when it fails: whether another attempt could succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Worth another attempt, on the queue's retry schedule (until the attempts run out).
    Retry(String),
    /// No attempt will ever succeed: the job is dead at once, with this as its last error.
    Permanent(String),
    /// Worth another attempt, not before this long (a peer's `Retry-After`).
    RetryAfter(String, std::time::Duration),
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        JobError::Retry(message.into())
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        JobError::Permanent(message.into())
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Retry(m) => write!(f, "{m}"),
            JobError::Permanent(m) => write!(f, "permanent: {m}"),
            JobError::RetryAfter(m, after) => write!(f, "{m} (retry after {}s)", after.as_secs()),
        }
    }
}

impl std::error::Error for JobError {}

/// A queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached (refused, dropped, timed out): nothing was done, try later.
    #[error("Redis is unreachable: {0}")]
    Unavailable(#[source] redis::RedisError),
    #[error("Redis refused the operation: {0}")]
    Redis(#[source] redis::RedisError),
    #[error("job arguments could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
}

impl QueueError {
    /// Whether the HTTP layer should answer 503 (and the caller may simply try again).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

/// What a Redis error means for whoever asked: the one classification of the queue's errors
/// and of every other user of this Redis (the service's store among them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisErrorClass {
    /// Redis could not be reached (an I/O error, a timeout, a connection dropped or refused;
    /// too few replicas acknowledging a write is a timeout), or the node is between roles
    /// (`READONLY` from a master demoted by a failover, `MASTERDOWN`, `LOADING`, a cluster
    /// `TRYAGAIN` or `CLUSTERDOWN`): nothing was done, try later.
    Unavailable,
    /// Redis answered, refusing the operation (a script error, a wrong type…).
    Refused,
}

impl RedisErrorClass {
    pub fn of(e: &redis::RedisError) -> RedisErrorClass {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || matches!(
                e.code(),
                Some("READONLY" | "MASTERDOWN" | "LOADING" | "TRYAGAIN" | "CLUSTERDOWN")
            )
        {
            RedisErrorClass::Unavailable
        } else {
            RedisErrorClass::Refused
        }
    }
}

impl From<redis::RedisError> for QueueError {
    fn from(e: redis::RedisError) -> Self {
        match RedisErrorClass::of(&e) {
            RedisErrorClass::Unavailable => QueueError::Unavailable(e),
            RedisErrorClass::Refused => QueueError::Redis(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{ErrorKind, RedisError, ServerErrorKind};

    #[test]
    fn unreachable_is_unavailable_and_an_answer_is_refused() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        // What `Connection::write` says when too few replicas acknowledged in time.
        let too_few = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "only 0 of 1 replicas",
        ));
        // A failover under way: the node refused before doing anything.
        let between_roles = [
            ServerErrorKind::ReadOnly,
            ServerErrorKind::MasterDown,
            ServerErrorKind::BusyLoading,
            ServerErrorKind::TryAgain,
            ServerErrorKind::ClusterDown,
        ]
        .map(|kind| RedisError::from((ErrorKind::Server(kind), "between roles")));
        for e in [&refused, &too_few].into_iter().chain(&between_roles) {
            assert_eq!(RedisErrorClass::of(e), RedisErrorClass::Unavailable, "{e}");
        }
        let script = RedisError::from((ErrorKind::Server(ServerErrorKind::ResponseError), "x"));
        let no_script = RedisError::from((ErrorKind::Server(ServerErrorKind::NoScript), "x"));
        for e in [&script, &no_script] {
            assert_eq!(RedisErrorClass::of(e), RedisErrorClass::Refused, "{e}");
        }
        assert!(QueueError::from(too_few).is_unavailable());
        assert!(!QueueError::from(script).is_unavailable());
    }
}
