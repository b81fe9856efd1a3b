//! Runs the scenarios one after the other (they share the machine's two
//! cores and measure time), each in its own federation, and reports in
//! libtest's words so that `cargo test`, its filters and `--list` work as
//! for any other test target. Without root or `ip netns` every scenario is
//! reported ignored, with the reason, and the run passes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::Instant;

use super::netns::{missing_prerequisite, sweep_stale};

pub struct Scenario {
    pub name: &'static str,
    pub run: fn(),
}

/// libtest's options that take a value (skipped with it when looking for filters).
const WITH_VALUE: [&str; 6] = [
    "--test-threads",
    "--format",
    "--color",
    "--logfile",
    "--skip",
    "-Z",
];

pub fn run(args: &[String], scenarios: &[Scenario]) -> ExitCode {
    let mut filters = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if WITH_VALUE.contains(&word.as_str()) {
            words.next();
        } else if !word.starts_with('-') {
            filters.push(word.as_str());
        }
    }
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let exact = has("--exact");
    let chosen: Vec<&Scenario> = scenarios
        .iter()
        .filter(|s| {
            filters.is_empty()
                || filters
                    .iter()
                    .any(|f| if exact { s.name == *f } else { s.name.contains(f) })
        })
        .collect();
    let filtered_out = scenarios.len() - chosen.len();
    // No scenario is marked ignored: `--ignored` selects none.
    if has("--list") {
        if !has("--ignored") {
            for s in &chosen {
                println!("{}: test", s.name);
            }
        }
        return ExitCode::SUCCESS;
    }
    let chosen = if has("--ignored") { Vec::new() } else { chosen };

    println!("\nrunning {} tests", chosen.len());
    if let Some(why) = missing_prerequisite().filter(|_| !chosen.is_empty()) {
        for s in &chosen {
            println!("test {} ... ignored, {why}", s.name);
        }
        println!("multihost: skipped: {why}");
        println!(
            "\ntest result: ok. 0 passed; 0 failed; {} ignored; 0 measured; {filtered_out} filtered out\n",
            chosen.len()
        );
        return ExitCode::SUCCESS;
    }
    if !chosen.is_empty() {
        let swept = sweep_stale();
        if !swept.is_empty() {
            println!(
                "multihost: removed {} namespace(s) left by killed runs: {swept:?}",
                swept.len()
            );
        }
    }

    let started = Instant::now();
    let mut failed = Vec::new();
    for s in &chosen {
        println!("\n== {}", s.name);
        let began = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(s.run));
        let took = began.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => println!("test {} ... ok ({took:.1} s)", s.name),
            Err(_) => {
                println!("test {} ... FAILED ({took:.1} s)", s.name);
                failed.push(s.name);
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {} passed; {} failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
        chosen.len() - failed.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}
