//! `--help` never prints a secret taken from the environment: the login
//! secret and the metrics token are read from environment variables, and a
//! help text printed into a terminal or a CI log must not show them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sustenet");

#[test]
fn help_never_shows_a_secret_from_the_environment() {
    const SECRET: &str = "do-not-print-this-7f3a";
    for (command, variable) in [
        ("probe", "SUSTENET_SECRET"),
        ("bench", "SUSTENET_SECRET"),
        ("master", "SUSTENET_METRICS_TOKEN"),
        ("cluster", "SUSTENET_METRICS_TOKEN"),
        ("up", "SUSTENET_METRICS_TOKEN"),
    ] {
        let out = Command::new(BIN)
            .args([command, "--help"])
            .env(variable, SECRET)
            .output()
            .unwrap();
        assert!(out.status.success(), "sustenet {command} --help: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(variable),
            "sustenet {command} --help does not name {variable}:\n{text}"
        );
        assert!(
            !text.contains(SECRET),
            "sustenet {command} --help prints {variable}'s value:\n{text}"
        );
    }
}
