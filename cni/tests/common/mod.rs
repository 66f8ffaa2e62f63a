//! What the berth-bridge integration tests (`bridge.rs`, `bandwidth.rs`)
//! share: running commands, invoking the plugin, entering a namespace.
//! Compiled into each test binary, which uses only some of it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test code

use std::fs::File;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use nix::sched::{CloneFlags, setns};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_berth-bridge");

pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    u64::from_ne_bytes(b)
}

/// Runs `args`: whether it succeeded, and its stdout then stderr.
pub fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

pub fn must(args: &[&str]) -> String {
    let (ok, text) = run(args);
    assert!(ok, "{args:?} failed: {text}");
    text
}

pub fn link_exists(name: &str) -> bool {
    run(&["ip", "link", "show", name]).0
}

/// The outcome of one plugin invocation.
#[derive(Debug)]
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    pub fn expect_ok(self) -> Self {
        assert!(
            self.ok,
            "plugin failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// The CNI error code of a failed invocation.
    pub fn error_code(&self) -> u64 {
        assert!(!self.ok, "plugin succeeded unexpectedly: {self:?}");
        let v = self.json();
        assert!(v["msg"].is_string(), "error JSON without msg: {v}");
        v["code"].as_u64().unwrap_or_else(|| panic!("no code: {v}"))
    }

    /// The code and message (with details) of a failed invocation.
    pub fn error(&self) -> (u64, String) {
        assert!(!self.ok, "plugin succeeded unexpectedly: {self:?}");
        let v = self.json();
        let msg = format!("{} {}", v["msg"].as_str().unwrap_or(""), v["details"]);
        (
            v["code"].as_u64().unwrap_or_else(|| panic!("no code: {v}")),
            msg,
        )
    }
}

/// The plugin with `stdin`, `CNI_COMMAND` = `cmd` (unset when None) and
/// `env`; every other CNI variable unset.
pub fn invoke(cmd: Option<&str>, stdin: &str, env: &[(&str, &str)]) -> Out {
    let mut c = Command::new(BIN);
    for var in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
    ] {
        c.env_remove(var);
    }
    if let Some(cmd) = cmd {
        c.env("CNI_COMMAND", cmd);
    }
    c.env("CNI_PATH", "/usr/lib/cni");
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berth-bridge");
    // A plugin that fails before reading stdin closes it: not our concern.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cmd` for container `cid`, interface eth0, in `netns` when given.
pub fn cni(cmd: &str, conf: &Value, cid: &str, netns: Option<&str>) -> Out {
    let mut env = vec![("CNI_CONTAINERID", cid), ("CNI_IFNAME", "eth0")];
    if let Some(ns) = netns {
        env.push(("CNI_NETNS", ns));
    }
    invoke(Some(cmd), &conf.to_string(), &env)
}

/// Runs `f` on a thread inside the namespace at `path`.
pub fn in_netns<T: Send>(path: &str, f: impl FnOnce() -> T + Send) -> T {
    let file = File::open(path).expect("open netns");
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    })
}
