//! Board sessions. The operator's cookie holds a random token; Redis holds only its SHA-256
//! (a copy of Redis is not a copy of the sessions) with the operator's name, expiring by
//! itself and deleted at once by a logout. Wrong tokens at the login form are counted per
//! client address over a window, so guessing is slowed to a few tries an hour.
//!
//! A board action's outcome (a flash) waits here too, under a random id the redirect names,
//! for the page it redirects to to show once: the message never travels in the URL, where
//! anyone could write one for an operator to read on our page.

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

    /// Keeps a flash for `operator` for a few minutes; answers its id.
    pub async fn put_flash(&self, operator: &str, flash: &str) -> Result<String, StoreError> {
        let id = hex::encode(rand::random::<[u8; 12]>());
        let _: () = redis::cmd("SET")
            .arg(self.flash_key(&id))
            .arg(format!("{operator}\n{flash}"))
            .arg("EX")
            .arg(300)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(id)
    }

    /// Takes a flash, once, if it was kept for `operator` (another operator's id shows nothing).
    pub async fn take_flash(&self, id: &str, operator: &str) -> Result<Option<String>, StoreError> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let key = self.flash_key(id);
        let kept: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await?;
        let Some((whose, flash)) = kept.as_deref().and_then(|k| k.split_once('\n')) else {
            return Ok(None);
        };
        if whose != operator {
            // Not theirs: left for its operator (a link passed on shows nothing).
            return Ok(None);
        }
        // Two tabs loading it at once may both show it; that is all a race can do.
        let _: u64 = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(Some(flash.to_string()))
    }
}
