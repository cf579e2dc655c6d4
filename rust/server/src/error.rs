//! Errors of the server layer.

use std::path::PathBuf;

use thiserror::Error;

/// Why a server could not start or a key could not be loaded. A message
/// includes its cause, which is therefore not also the error's `source()`
/// (an error chain would print it twice).
#[derive(Debug, Error)]
pub enum ServerError {
    /// A socket operation failed.
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    /// A key file is missing, unreadable or malformed.
    #[error("key file {path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An agent's run folder cannot be made or used.
    #[error("run folder {path}: {message}")]
    RunFolder {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A listener's port could not be bound (in use, not allowed, ...).
    #[error(transparent)]
    Bind(#[from] crate::bind::BindError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The WebSocket listener's TLS certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(String),
}

impl From<std::io::Error> for ServerError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl ServerError {
    pub(crate) fn key(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Key {
            path: path.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use sustenet_proto::error::error_chain;

    use super::*;
    use crate::bind::bind_tcp;
    use crate::config::ConfigFile;

    #[tokio::test]
    async fn a_port_in_use_is_said_once() -> Result<(), Box<dyn Error>> {
        let taken = bind_tcp("127.0.0.1", 0).await?;
        let port = taken.local_addr()?.port();
        let Err(e) = bind_tcp("127.0.0.1", port).await else {
            return Err("a TCP port in use was bound again".into());
        };
        let system = e.io_error().to_string();
        let text = error_chain(&e);
        assert_eq!(text.matches(&system).count(), 1, "{text}");
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        Ok(())
    }

    #[tokio::test]
    async fn a_websocket_port_in_use_reads_as_the_other_ports_do() -> Result<(), Box<dyn Error>> {
        let taken = bind_tcp("127.0.0.1", 0).await?;
        let addr = taken.local_addr()?;
        let ws = crate::web::WebSocketConfig::new(addr);
        let Err(e) = ws.bind_listener().await else {
            return Err("a WebSocket port in use was bound again".into());
        };
        let text = error_chain(&e);
        let start = format!("cannot listen on WebSocket {addr}: ");
        assert!(text.starts_with(&start), "{text}");
        assert!(
            text.ends_with(" (is another server using that port?)"),
            "{text}"
        );
        assert_eq!(text.matches("(os error ").count(), 1, "{text}");
        Ok(())
    }

    #[test]
    fn a_configuration_file_that_cannot_be_read_is_said_once() -> Result<(), Box<dyn Error>> {
        // A folder is no file: reading it fails.
        let dir = std::env::temp_dir();
        let Err(e) = ConfigFile::load(&dir) else {
            return Err("a folder was read as a configuration file".into());
        };
        let crate::config::ConfigError::Read { error, .. } = &e else {
            return Err(format!("not a read error: {e}").into());
        };
        let system = error.to_string();
        for text in [error_chain(&e), error_chain(&ServerError::from(e))] {
            assert_eq!(text.matches(&system).count(), 1, "{text}");
            assert!(text.starts_with("cannot read "), "{text}");
        }
        Ok(())
    }

    #[test]
    fn an_io_error_is_said_once() {
        let e = ServerError::from(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "the reason",
        ));
        assert_eq!(error_chain(&e), "i/o error: the reason");
    }
}
