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

impl From<redis::RedisError> for QueueError {
    fn from(e: redis::RedisError) -> Self {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
        {
            QueueError::Unavailable(e)
        } else {
            QueueError::Redis(e)
        }
    }
}
