//! The whole request path on the shipped secured NATS (`nats/config/single.conf`: users per role,
//! mutual TLS), and a gateway that cannot get in stopping at start with a message that says why.

mod support;

use coder_nats::testing::{free_port, NatsServer, Role, READY_TIMEOUT};
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const MODEL: &str = "qwen2.5-coder secured";

async fn secured_stack() -> (NatsServer, Gateway, Worker) {
    let nats = NatsServer::start_secured();
    let gateway = Gateway::start(&nats, &[]);
    let worker = Worker::start(&nats, MODEL, &[]);
    wait_for_model(&gateway, MODEL).await;
    (nats, gateway, worker)
}

#[tokio::test]
async fn a_chat_request_is_answered_over_tls_by_the_shipped_users() {
    let (_nats, gateway, _worker) = secured_stack().await;
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Reverse a string in Python."}],
        "max_tokens": 8,
    });

    let response = post(&gateway, "/v1/chat/completions", &body).await;

    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert!(!answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    assert_eq!(answer["usage"]["completion_tokens"], 8);

    let chunks = stream_completion(&gateway, MODEL, 5).await;
    assert!(chunks.len() >= 5, "{chunks:?}");
}

#[tokio::test]
async fn both_services_reconnect_with_their_credentials_after_a_nats_restart() {
    let (mut nats, gateway, _worker) = secured_stack().await;

    nats.restart();

    // Each reconnects with its user and certificate, and the worker follows the cancel stream
    // again (a consumer it checks, deletes and creates anew: all in its permissions).
    let answered = eventually(Duration::from_secs(30), || async {
        let response = post(&gateway, "/v1/completions", &completion_body(MODEL, 4)).await;
        (response.status() == 200).then_some(())
    })
    .await;
    assert!(answered.is_some(), "no answer after the restart");
}

#[tokio::test]
async fn queue_gauges_are_read_with_the_gateway_users_permissions() {
    let nats = NatsServer::start_secured();
    let gateway = idle_gateway(&nats, MODEL, &[]).await;
    let queued = queue_one_and_wait(&gateway, MODEL).await;
    queued.abort();
}

/// Runs the gateway with `extra` flags until it exits, at most [`READY_TIMEOUT`]; its stderr.
fn gateway_start_failure(nats: &NatsServer, extra: &[String], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--nats-url", &nats.url()])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > READY_TIMEOUT {
            let _ = child.kill();
            panic!("the gateway kept running with flags {extra:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    stderr
}

/// The gateway's flags on `nats` with `flag`'s value replaced (or the flag and its value
/// dropped, for `None`).
fn gateway_flags_with(nats: &NatsServer, flag: &str, value: Option<&str>) -> Vec<String> {
    replace_flag(nats.client_flags(Role::Gateway), flag, value)
}

fn replace_flag(mut flags: Vec<String>, flag: &str, value: Option<&str>) -> Vec<String> {
    let at = flags
        .iter()
        .position(|f| f == flag)
        .expect("the flag is set");
    match value {
        Some(value) => flags[at + 1] = value.to_owned(),
        None => {
            flags.drain(at..at + 2);
        }
    }
    flags
}

#[tokio::test]
async fn a_wrong_password_stops_the_gateway_at_start_saying_so() {
    let nats = NatsServer::start_secured();
    // The password from the environment, as deployments give it.
    let flags = gateway_flags_with(&nats, "--nats-password", None);

    let stderr = gateway_start_failure(&nats, &flags, &[("CODER_NATS_PASSWORD", "wrong-one")]);

    assert!(
        stderr.contains("NATS refused the credentials given by --nats-user \"gateway\"")
            && stderr.contains("authorization violation"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong-one"),
        "the password was printed: {stderr}"
    );
}

#[tokio::test]
async fn tls_and_credential_files_that_cannot_work_are_named() {
    let nats = NatsServer::start_secured();
    let missing = "/nonexistent/gateway.creds";
    let mut flags = gateway_flags_with(&nats, "--nats-user", None);
    flags = replace_flag(flags, "--nats-password", None);
    flags.extend(["--nats-creds".to_owned(), missing.to_owned()]);
    let stderr = gateway_start_failure(&nats, &flags, &[]);
    assert!(
        stderr.contains(&format!("--nats-creds {missing}")),
        "{stderr}"
    );

    let not_a_ca = nats.pki_file("gateway-key.pem");
    let flags = gateway_flags_with(&nats, "--nats-tls-ca", Some(not_a_ca.to_str().unwrap()));
    let stderr = gateway_start_failure(&nats, &flags, &[]);
    assert!(
        stderr.contains(&format!("--nats-tls-ca {}", not_a_ca.display()))
            && stderr.contains("not a PEM file holding a CERTIFICATE"),
        "{stderr}"
    );

    let flags = gateway_flags_with(&nats, "--nats-tls-ca", None);
    let stderr = gateway_start_failure(&nats, &flags, &[]);
    assert!(stderr.contains("TLS with NATS failed"), "{stderr}");
}
