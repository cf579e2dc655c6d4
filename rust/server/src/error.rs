//! Errors of the server layer.

use std::path::PathBuf;

use thiserror::Error;

/// Why a server could not start or a key could not be loaded.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A socket operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A key file is missing, unreadable or malformed.
    #[error("key file {path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The WebSocket listener's TLS certificate or key cannot be used.
    #[error("tls: {0}")]
    Tls(String),
}

impl ServerError {
    pub(crate) fn key(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Key {
            path: path.into(),
            message: message.into(),
        }
    }
}
