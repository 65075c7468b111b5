//! `coder-load abuse`, short, against the real stack (nats-server, gateway, synthetic worker):
//! every hostile case answered without a 5xx or a held connection, the normal load beside it
//! without an error, and the gateway and worker still the same processes, back near the memory
//! and descriptors they started with. The gateway's client timeouts are cut to 1 s so the slow
//! clients are let go of within seconds.

mod real_stack;

use clap::Parser;
use load_tests::cli::{AbuseArgs, Cli, Command};
use real_stack::{runtime, Stack, MODEL};

fn abuse_args(stack: &Stack) -> AbuseArgs {
    let gateway = format!("gateway={}", stack.gateway.pid());
    let worker = format!("worker={}", stack.worker.pid());
    let cli = Cli::try_parse_from([
        "coder-load",
        "abuse",
        "--url",
        &stack.url(),
        "--model",
        MODEL,
        "--random-cases",
        "20",
        "--case-timeout",
        "20",
        "--slow-limit",
        "8",
        "--stop-reading-tokens",
        "30000",
        "--watch",
        &gateway,
        "--watch",
        &worker,
        "--settle",
        "20",
    ])
    .expect("valid arguments");
    match cli.command {
        Command::Abuse(args) => *args,
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_requests_beside_a_normal_load_get_no_5xx_and_leave_nothing_behind() {
    let timeouts = [
        "--header-read-timeout",
        "1",
        "--body-read-timeout",
        "1",
        "--idle-write-timeout",
        "1",
    ];
    let stack = Stack::start_with(4, 0, &timeouts);
    let runtime = runtime();
    runtime.block_on(stack.wait_for_model());
    let args = abuse_args(&stack);

    let report = runtime
        .block_on(load_tests::abuse::run(&args))
        .expect("the run ends");

    load_tests::abuse::print(&report);
    assert!(report.passed(), "{:#?}", report.failures);
    assert!(report.cases.len() > 900, "{} cases", report.cases.len());
    assert!(report.normal_ok > 0, "the normal load ran");
    let seen = |name: &str| {
        report
            .cases
            .iter()
            .find(|(case, _)| case == name)
            .map(|(_, seen)| seen.as_str())
    };
    // A few the gateway is known to answer so, as a check that the cases reach it as meant.
    assert_eq!(seen("completions.temperature=NaN"), Some("400"));
    assert_eq!(seen("body.over-limit"), Some("413"));
    assert_eq!(seen("http.text-plain"), Some("415"));
    assert_eq!(seen("model.1400-dots"), Some("400"));
    assert_eq!(report.processes.len(), 2);
}
