//! `sustenet --version` prints the crate version and the protocol version it speaks.
//! (`scripts/version.sh --check` checks that the addon and the changelog carry the same
//! release version.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sustenet");
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn version_flag_prints_release_and_protocol_versions() {
    for flag in ["--version", "-V"] {
        let out = Command::new(BIN).arg(flag).output().unwrap();
        assert!(out.status.success(), "sustenet {flag} failed: {out:?}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!(
                "sustenet {VERSION} (protocol {})\n",
                sustenet_proto::PROTOCOL_VERSION
            ),
            "sustenet {flag}"
        );
    }
}
