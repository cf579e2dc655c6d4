//! `sustenet cluster --key-stdin`: the key an agent hands over on standard
//! input, and the end of that input as the signal to stop.
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
    let (eof_tx, eof_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            let mut line = String::new();
            let read = (&mut lock).take(LINE_MAX).read_line(&mut line);
            let _ = key_tx.send(read.map(|_| line));
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
    let line = key_rx
        .await
        .context("standard input closed before the key")?
        .context("cannot read the cluster key from standard input")?;
    let key = Key::from_base64(line.trim())
        .context("standard input did not start with a base64 cluster key")?;
    Ok((key, eof_rx))
}
