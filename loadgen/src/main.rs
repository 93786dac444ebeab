//! `loadgen`: the chat engine's load generator. See README.md.
//!
//! Everything runs on one tokio current-thread runtime (a `LocalSet`), so
//! the generator uses at most one core of the machine it shares with the
//! engine, and its shared state needs no locks.

mod cli;
mod client;
mod plot;
mod provision;
mod report;
mod scenario;
mod stats;
mod sys;
mod traffic;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: starting the runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, scenario::run(cli.command)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::from(2)
        }
    }
}
