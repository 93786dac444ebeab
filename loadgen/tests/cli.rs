//! The `loadgen` binary itself: its scenarios are listed and `chaos` takes
//! the flags `scripts/chaos.sh` and the README document. (Having a test
//! here also makes `cargo test` build the binary that `scripts/test.sh`
//! then runs for its chaos stage.)

use std::process::Command;

fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("run loadgen");
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

#[test]
fn lists_the_scenarios() {
    let text = help(&["--help"]);
    for scenario in [
        "fanout",
        "rooms",
        "idle",
        "reconnect",
        "http-publish",
        "chaos",
        "reads",
        "search",
    ] {
        assert!(text.contains(scenario), "{scenario} missing from:\n{text}");
    }
}

#[test]
fn chaos_takes_the_documented_flags() {
    let text = help(&["chaos", "--help"]);
    for flag in [
        "--kills",
        "--seed",
        "--store",
        "--chat-bin",
        "--data-dir",
        "--checkpoint-every",
        "--json",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}
