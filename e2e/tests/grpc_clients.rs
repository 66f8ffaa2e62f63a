//! gRPC clients other than Go's: grpc-core based clients (Python's grpcio
//! here; C++, Ruby and PHP share its core) send a unix socket's path,
//! percent-encoded, as the HTTP/2 `:authority`, which berth's HTTP/2 layer
//! used to reset the stream for (`StatusCode.INTERNAL Stream removed`).
//! PyPI's grpcio, in the venv scripts/install-deps makes, calls Version,
//! RunPodSandbox, ListPodSandbox, Stop/Remove, a server-streaming call
//! (berth's pull with progress) and an error, with default channel options.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::path::Path;
use std::process::Command;

use berth_e2e::fixture;
use berth_e2e::root_or_skip;
use berth_e2e::setup::setup;

const PYTHON: &str = "/var/cache/berth-pyenv/bin/python3";

#[tokio::test]
async fn grpc_core_clients_are_answered() {
    if !root_or_skip("grpc_core_clients_are_answered")
        || !berth_testkit::require(
            "grpc_core_clients_are_answered",
            Path::new(PYTHON).exists(),
            "needs the venv with grpcio (sudo scripts/install-deps)",
        )
    {
        return;
    }
    let s = setup("pygrpc", "berth", fixture::busybox()).await;
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let testdata = here.join("testdata/grpc");
    let stubs = s.e.d.dir.join("pystubs");
    std::fs::create_dir_all(&stubs).unwrap();
    for (include, file) in [
        (testdata.clone(), "cri_api.proto"),
        (here.join("../api/proto/berth/v1"), "berth.proto"),
    ] {
        let out = Command::new(PYTHON)
            .args(["-m", "grpc_tools.protoc"])
            .arg(format!("-I{}", include.display()))
            .arg(format!("--python_out={}", stubs.display()))
            .arg(format!("--grpc_python_out={}", stubs.display()))
            .arg(file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(PYTHON)
        .arg(testdata.join("client.py"))
        .arg(&stubs)
        .arg(&s.e.d.socket)
        .arg(&s.image)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", s.e.d.log());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "berth", "{v}");
    let pod = v["pod"].as_str().unwrap();
    assert_eq!(pod.len(), 64, "{v}");
    assert!(
        v["listed"].as_array().unwrap().iter().any(|p| p == pod),
        "{v}"
    );
    assert!(v["pull_events"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["unknown_container"], "NOT_FOUND", "{v}");
    s.finish().await;
}
