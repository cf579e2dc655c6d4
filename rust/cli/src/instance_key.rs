//! `sustenet cluster --key-stdin`: the key an agent hands over on standard
//! input, and the end of that input as the signal to stop (alone with
//! `--quit-on-stdin-eof`).
//!
//! Standard input is read on a plain thread (not the runtime's blocking
//! pool), so the process never waits for it when it exits.

use std::io::{BufRead, Read};

use anyhow::Context as _;
use sustenet_proto::Key;
use tokio::sync::oneshot;

/// Longest key line read, in bytes (a base64 key is 44).
const LINE_MAX: u64 = 256;

/// The key from the first line of standard input, and a receiver that
/// completes when standard input reaches its end.
pub async fn read_stdin_key() -> anyhow::Result<(Key, oneshot::Receiver<()>)> {
    let (key_tx, key_rx) = oneshot::channel::<std::io::Result<String>>();
    let eof_rx = spawn_stdin_reader(Some(key_tx))?;
    let line = key_rx
        .await
        .context("standard input closed before the key")?
        .context("cannot read the cluster key from standard input")?;
    let key = Key::from_base64(line.trim())
        .context("standard input did not start with a base64 cluster key")?;
    Ok((key, eof_rx))
}

/// A receiver that completes when standard input reaches its end
/// (`sustenet cluster --quit-on-stdin-eof`, for a key read from a file).
pub fn watch_stdin_eof() -> anyhow::Result<oneshot::Receiver<()>> {
    spawn_stdin_reader(None)
}

/// Reads standard input on its own thread: the first line to `key_tx` when
/// given, then everything until the end, which completes the receiver.
fn spawn_stdin_reader(
    key_tx: Option<oneshot::Sender<std::io::Result<String>>>,
) -> anyhow::Result<oneshot::Receiver<()>> {
    let (eof_tx, eof_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            if let Some(key_tx) = key_tx {
                let mut line = String::new();
                let read = (&mut lock).take(LINE_MAX).read_line(&mut line);
                let _ = key_tx.send(read.map(|_| line));
            }
            let mut sink = [0u8; 256];
            loop {
                match lock.read(&mut sink) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = eof_tx.send(());
        })
        .context("cannot start the thread that reads standard input")?;
    Ok(eof_rx)
}
