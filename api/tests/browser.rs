//! The browser tests of `web-playground/` (playwright-core driving Debian's Chromium against
//! this very binary), run by `cargo test --workspace` so CI proves them. A test target of the
//! api package because only here does Cargo build the `codecrafter` binary first and say
//! where it is (`CARGO_BIN_EXE_codecrafter`).

#![allow(clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn web_playground_browser_tests() {
    let playground = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-playground");
    assert!(
        playground.join("node_modules").is_dir(),
        "the browser tests need the playground's packages: run `npm ci` in web-playground/ \
         (and `apt-get install chromium`); .ci/run does both"
    );
    let status = Command::new("npm")
        .arg("test")
        .current_dir(&playground)
        .env("CODECRAFTER_BIN", env!("CARGO_BIN_EXE_codecrafter"))
        .status()
        .expect("npm runs (Node 20 or newer)");
    assert!(
        status.success(),
        "npm test in web-playground/ failed: {status}"
    );
}
