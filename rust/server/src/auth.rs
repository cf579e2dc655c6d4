//! The master's login check: none, a shared secret, or the game's own.

use std::future::Future;
use std::pin::Pin;

/// What a login check returns: the user data the player carries into the
/// cluster (inside the connect token), or a message for the client.
pub type AuthResult = Result<Vec<u8>, String>;

/// A boxed login-check future.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = AuthResult> + Send + 'a>>;

/// Decides whether a login is accepted. Implement it to plug in the game's
/// own accounts (a database, a web service): it runs on the master's tokio
/// runtime, so it may await I/O, but should not block the thread.
pub trait AuthHook: Send + Sync + 'static {
    /// Checks `username` and `secret`. `Ok(data)` accepts; `data` reaches the
    /// cluster's game with the player (at most 16 KiB). `Err(message)` refuses.
    fn check<'a>(&'a self, username: &'a str, secret: &'a [u8]) -> AuthFuture<'a>;
}

/// Accepts every login; the user data is the user name.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl AuthHook for AllowAll {
    fn check<'a>(&'a self, username: &'a str, _secret: &'a [u8]) -> AuthFuture<'a> {
        Box::pin(async move {
            if username.is_empty() {
                Err("a user name is required".to_owned())
            } else {
                Ok(username.as_bytes().to_vec())
            }
        })
    }
}

/// Accepts logins whose secret equals one shared secret.
#[derive(Debug, Clone)]
pub struct SharedSecret {
    secret: Vec<u8>,
}

impl SharedSecret {
    /// A check against `secret`.
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }
}

/// Compares in time that depends only on the lengths, so that timing does not
/// tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AuthHook for SharedSecret {
    fn check<'a>(&'a self, username: &'a str, secret: &'a [u8]) -> AuthFuture<'a> {
        Box::pin(async move {
            if username.is_empty() {
                return Err("a user name is required".to_owned());
            }
            if constant_time_eq(secret, &self.secret) {
                Ok(username.as_bytes().to_vec())
            } else {
                Err("wrong user name or secret".to_owned())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shared_secret() {
        let s = SharedSecret::new("hunter2");
        assert_eq!(s.check("ann", b"hunter2").await, Ok(b"ann".to_vec()));
        assert!(s.check("ann", b"hunter3").await.is_err());
        assert!(s.check("ann", b"").await.is_err());
        assert!(AllowAll.check("", b"").await.is_err());
    }
}
