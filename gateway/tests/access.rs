//! Who may use the API and how much: named API keys (any case of `Bearer`), their reload on
//! SIGHUP, per-key limits (429 with `Retry-After`), and no open API on a public address unless
//! asked for.

mod support;

use coder_nats::testing::{free_port, NatsServer, Service, READY_TIMEOUT};
use std::path::Path;
use support::*;

const MODEL: &str = "access-model";
/// `kill -1`.
const SIGHUP: i32 = 1;

async fn get_models(gateway: &Gateway, key: &str) -> reqwest::Response {
    http()
        .get(gateway.url("/v1/models"))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("gateway answers")
}

fn keys_file(dir: &Path, text: &str) -> String {
    let path = dir.join("keys");
    std::fs::write(&path, text).expect("keys file written");
    path.to_string_lossy().into_owned()
}

fn retry_after(response: &reqwest::Response) -> u64 {
    let value = response.headers().get("retry-after").expect("Retry-After");
    value.to_str().unwrap().parse().expect("seconds")
}

#[tokio::test]
async fn named_keys_are_accepted_whatever_the_case_of_bearer() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_file(dir.path(), "team-a:sk-a\nsk-legacy\n");
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &["--api-keys-file", &keys]);

    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = http()
            .get(gateway.url("/v1/models"))
            .header("authorization", format!("{scheme} sk-a"))
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(response.status(), 200, "{scheme}");
    }
    assert_eq!(get_models(&gateway, "sk-legacy").await.status(), 200);
    expect_error(get_models(&gateway, "team-a").await, 401, None).await;
}

#[tokio::test]
async fn sighup_reloads_the_keys_file() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_file(dir.path(), "old:sk-old\n");
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, &["--api-keys-file", &keys]);
    assert_eq!(get_models(&gateway, "sk-new").await.status(), 401);

    keys_file(dir.path(), "new:sk-new\n");
    gateway.process.signal(SIGHUP);

    let reloaded = eventually(READY_TIMEOUT, || async {
        (get_models(&gateway, "sk-new").await.status() == 200).then_some(())
    })
    .await;
    assert!(reloaded.is_some(), "the new key never accepted");
    assert_eq!(get_models(&gateway, "sk-old").await.status(), 401);
}

#[tokio::test]
async fn over_its_rate_limit_a_key_gets_429_with_retry_after_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_file(dir.path(), "a:sk-a\nb:sk-b\n");
    let nats = NatsServer::start();
    let flags = ["--api-keys-file", &keys, "--rate-limit-per-key", "2"];
    let gateway = Gateway::start(&nats, &flags);

    assert_eq!(get_models(&gateway, "sk-a").await.status(), 200);
    assert_eq!(get_models(&gateway, "sk-a").await.status(), 200);
    let limited = get_models(&gateway, "sk-a").await;

    assert!(retry_after(&limited) >= 1);
    expect_error(limited, 429, None).await;
    assert_eq!(get_models(&gateway, "sk-b").await.status(), 200);
}

#[tokio::test]
async fn over_its_concurrency_limit_a_key_gets_429_until_a_request_ends() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys_file(dir.path(), "a:sk-a\nb:sk-b\n");
    let flags = ["--api-keys-file", &keys, "--max-concurrent-per-key", "1"];
    let slow = ["--synthetic-ms-per-token", "50"];
    let (_nats, gateway, _worker) = stack_with_key(&flags, &slow, "sk-a").await;
    let body =
        serde_json::json!({"model": MODEL, "prompt": "x", "max_tokens": 200, "stream": true});
    let open = http()
        .post(gateway.url("/v1/completions"))
        .header("authorization", "Bearer sk-a")
        .json(&body)
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(open.status(), 200);

    let second = get_models(&gateway, "sk-a").await;
    assert!(retry_after(&second) >= 1);
    expect_error(second, 429, None).await;
    assert_eq!(get_models(&gateway, "sk-b").await.status(), 200);

    drop(open);
    let freed = eventually(READY_TIMEOUT, || async {
        (get_models(&gateway, "sk-a").await.status() == 200).then_some(())
    })
    .await;
    assert!(freed.is_some(), "the key stayed at its limit");
}

/// As [`stack`], waiting for the model with `key`.
async fn stack_with_key(
    gateway_flags: &[&str],
    worker_flags: &[&str],
    key: &str,
) -> (NatsServer, Gateway, Worker) {
    let nats = NatsServer::start();
    let gateway = Gateway::start(&nats, gateway_flags);
    let worker = Worker::start(&nats, MODEL, worker_flags);
    let listed = eventually(READY_TIMEOUT, || async {
        let models: serde_json::Value = get_models(&gateway, key).await.json().await.ok()?;
        models["data"]
            .as_array()?
            .iter()
            .any(|m| m["id"] == MODEL)
            .then_some(())
    })
    .await;
    assert!(listed.is_some(), "{MODEL} never listed");
    (nats, gateway, worker)
}

/// The gateway binary on `listen`, with `extra` flags.
fn gateway_on(nats: &NatsServer, listen: &str, extra: &[&str]) -> Service {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut args: Vec<String> = ["--listen", listen, "--metrics-listen", &metrics]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["--nats-url".into(), nats.url()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Service::spawn_path(Path::new(env!("CARGO_BIN_EXE_gateway")), &args, &[])
}

#[tokio::test]
async fn without_keys_a_public_address_is_refused_unless_allowed() {
    let nats = NatsServer::start();
    let port = free_port();
    let public = format!("0.0.0.0:{port}");

    let mut refused = gateway_on(&nats, &public, &[]);
    let status = refused.wait_exit(READY_TIMEOUT).expect("the gateway exits");
    assert!(!status.success());

    let mut allowed = gateway_on(&nats, &public, &["--allow-unauthenticated"]);
    allowed.wait_http_ok(([127, 0, 0, 1], port).into(), "/readyz", READY_TIMEOUT);
    drop(allowed);
}
