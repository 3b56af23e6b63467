//! Board sessions. The operator's cookie holds a random token; Redis holds only its SHA-256
//! (a copy of Redis is not a copy of the sessions) with the operator's name, expiring by
//! itself and deleted at once by a logout. Wrong tokens at the login form are counted per
//! client address over a window, so guessing is slowed to a few tries an hour.

use super::{Store, StoreError};
use base64::Engine;
use std::time::Duration;

impl Store {
    /// Opens a session holding `record` (who it is for), answering the token for the cookie.
    pub async fn open_session(&self, record: &str, keep: Duration) -> Result<String, StoreError> {
        let token =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let set = redis::pipe()
            .cmd("SET")
            .arg(self.session_key(&token))
            .arg(record)
            .arg("EX")
            .arg(keep.as_secs().max(1))
            .to_owned();
        let _: (String,) = self.conn.write(&set).await?;
        Ok(token)
    }

    /// What a live session was opened with.
    pub async fn session(&self, token: &str) -> Result<Option<String>, StoreError> {
        Ok(redis::cmd("GET")
            .arg(self.session_key(token))
            .query_async(&mut self.conn.clone())
            .await?)
    }

    pub async fn close_session(&self, token: &str) -> Result<(), StoreError> {
        let del = redis::pipe()
            .cmd("DEL")
            .arg(self.session_key(token))
            .to_owned();
        let _: (u64,) = self.conn.write(&del).await?;
        Ok(())
    }

    /// Wrong tokens from `client` in the current window.
    pub async fn login_failures(&self, client: &str) -> Result<u64, StoreError> {
        let n: Option<u64> = redis::cmd("GET")
            .arg(self.login_failures_key(client))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Counts one more wrong token; the window starts at the first.
    pub async fn login_failed(&self, client: &str, window: Duration) -> Result<u64, StoreError> {
        let key = self.login_failures_key(client);
        let (n, _): (u64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(&key)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(window.as_secs().max(1))
            .arg("NX")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(n)
    }
}
