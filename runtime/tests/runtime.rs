//! berth-runtime on real bundles, as root: a busybox rootfs, new namespaces,
//! a cgroup per test, stdio as pipes. The test process is a child subreaper
//! so container inits are reparented to it and reaped here.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

mod common;

use std::fs;
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
#[test]
fn lifecycle_create_start_kill_delete() {
    if !have_root() {
        return;
    }
    let mut env = Env::new("life");
    env.write_config(
        &[
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; echo hello; while true; do sleep 0.1; done",
        ],
        None,
    );
    let mut pipes = env.create();
    let init = env.pids.lock().unwrap()[0];

    let st = env.state();
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["pid"], init, "{st}");
    assert_eq!(st["id"], env.id.as_str());
    assert_eq!(
        st["bundle"],
        fs::canonicalize(env.bundle()).unwrap().to_str().unwrap()
    );
    assert!(st["ociVersion"].is_string());
    assert!(st["annotations"].is_object());
    assert!(
        cgroup_dirs(&env.cgroup).iter().any(|d| d.exists()),
        "container cgroup missing"
    );
    // The init sits in the container's cgroup.
    let procs = fs::read_to_string(
        cgroup_dirs(&env.cgroup)
            .into_iter()
            .find(|d| d.exists())
            .unwrap()
            .join("cgroup.procs"),
    )
    .unwrap();
    assert!(procs.lines().any(|l| l == init.to_string()), "{procs}");

    env.ok(&["start", &env.id]);
    assert_eq!(env.state()["status"], "running");
    let mut stdout = pipes.stdout;
    read_until(&mut stdout, "hello\n");

    // A second start fails.
    let (st, _, _) = env.run(&["start", &env.id]);
    assert_eq!(st.code(), Some(1));
    assert!(
        last_log_error(&env).contains("start container"),
        "{}",
        env.log_text()
    );

    // Default signal: SIGTERM.
    env.ok(&["kill", &env.id]);
    read_until(&mut stdout, "bye\n");
    env.wait_status("stopped");
    assert_eq!(env.state()["pid"], 0);

    env.ok(&["delete", &env.id]);
    env.reap();
    assert_gone(&env);
    let (st, _, _) = env.run(&["state", &env.id]);
    assert_eq!(st.code(), Some(1));
    assert!(last_log_error(&env).contains("does not exist"));

    // Nothing went to the container's stderr; no error while it ran.
    let mut err = String::new();
    pipes.stderr.read_to_string(&mut err).unwrap();
    assert_eq!(err, "");
}

#[test]
fn exec_exit_codes_output_and_pid_file() {
    if !have_root() {
        return;
    }
    let mut env = Env::new("exec");
    env.write_config(&["sleep", "1000"], None);
    let _pipes = env.create();
    env.ok(&["start", &env.id]);

    // Foreground: output on its stdout, its exit code is ours.
    let (st, out, err) = env.run(&[
        "exec",
        "--env",
        "FOO=bar",
        &env.id,
        "sh",
        "-c",
        "echo out-$FOO; echo err >&2; exit 3",
    ]);
    assert_eq!(st.code(), Some(3), "stderr {err}\nlog {}", env.log_text());
    assert_eq!(out, "out-bar\n");
    assert_eq!(err, "err\n");

    // --process JSON, as runc.
    let process = env.path("process.json");
    fs::write(
        &process,
        json!({"args": ["sh", "-c", "echo from-json; exit 5"], "env": ["PATH=/bin"], "cwd": "/tmp",
               "user": {"uid": 0, "gid": 0}, "oomScoreAdj": -999})
        .to_string(),
    )
    .unwrap();
    let (st, out, _) = env.run(&["exec", "--process", process.to_str().unwrap(), &env.id]);
    assert_eq!(st.code(), Some(5), "log {}", env.log_text());
    assert_eq!(out, "from-json\n");

    // --pid-file has the pid while it runs; SIGKILL it: 128+9.
    let pid_file = env.path("exec.pid");
    let mut child = env
        .cmd(&[
            "exec",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &env.id,
            "sleep",
            "1000",
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "no exec pid file");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).starts_with("sleep\0"));
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(137));

    // --detach: returns at once, the process runs on in the container.
    let pid_file = env.path("detached.pid");
    env.run_detached(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &env.id,
        "sleep",
        "1000",
    ]);
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    env.adopt(pid);
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).starts_with("sleep\0"));

    // Exec in a stopped container fails.
    env.ok(&["kill", &env.id, "KILL"]);
    env.wait_status("stopped");
    let (st, _, _) = env.run(&["exec", &env.id, "true"]);
    assert_eq!(st.code(), Some(1));
    assert!(
        last_log_error(&env).contains("cannot exec in a stopped container"),
        "{}",
        env.log_text()
    );
    env.ok(&["delete", &env.id]);
    env.reap();
    assert_gone(&env);
}

/// A seccomp profile that fails mkdir with EPERM and allows the rest.
fn deny_mkdir() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    })
}

/// The direct exec (setns_exec.rs) and libcontainer's, on the same
/// process: user, groups, umask, cwd, HOME, capabilities, no_new_privs,
/// seccomp, rlimits, oom_score_adj, namespaces, cgroups and open fds must
/// read the same from inside.
#[test]
fn exec_paths_agree() {
    if !have_root() {
        return;
    }
    let mut env = Env::new("exec-paths");
    let seccomp = deny_mkdir();
    env.write_config(&["sleep", "1000"], Some(seccomp));
    fs::create_dir_all(env.bundle().join("rootfs/etc")).unwrap();
    fs::write(
        env.bundle().join("rootfs/etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
    )
    .unwrap();
    let _pipes = env.create();
    env.ok(&["start", &env.id]);

    let caps = json!(["CAP_KILL", "CAP_CHOWN"]);
    let script = "id; pwd; umask; echo HOME=$HOME; \
        grep -E '^(Cap|NoNewPrivs|Seccomp:|Groups|Sig(Ign|Blk))' /proc/self/status; \
        ulimit -Sn; ulimit -Hn; cat /proc/self/oom_score_adj; \
        for n in pid mnt net ipc uts; do readlink /proc/self/ns/$n; done; \
        cat /proc/self/cgroup; ls /proc/self/fd; mkdir /tmp/z 2>&1; echo args: $0 $1";
    let probe = |nnp: bool| {
        json!({
            "args": ["sh", "-c", script, "zero", "one"],
            "env": ["PATH=/bin"],
            "cwd": "/tmp",
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [1001, 1002], "umask": 23},
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                             "inheritable": caps, "ambient": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 256, "hard": 512}],
            "noNewPrivileges": nnp,
            "oomScoreAdj": 900
        })
    };
    for nnp in [false, true] {
        let process = env.path("probe.json");
        fs::write(&process, probe(nnp).to_string()).unwrap();
        let run = |libcontainer: bool| {
            let mut c = env.cmd(&["exec", "--process", process.to_str().unwrap(), &env.id]);
            if libcontainer {
                c.env("BERTH_RUNTIME_LIBCONTAINER_EXEC", "1");
            }
            let out = c.output().unwrap();
            assert!(
                out.status.success(),
                "libcontainer={libcontainer}: {}\nlog: {}",
                String::from_utf8_lossy(&out.stderr),
                env.log_text()
            );
            String::from_utf8(out.stdout).unwrap()
        };
        let (direct, libcontainer) = (run(false), run(true));
        // One known difference: without no_new_privs, libcontainer's path
        // loads the profile after dropping CAP_SYS_ADMIN, so exec.rs must
        // set no_new_privs to load it; the direct path loads it before, as
        // runc does, and leaves no_new_privs as asked.
        assert_eq!(
            direct,
            libcontainer.replace("NoNewPrivs:\t1", &format!("NoNewPrivs:\t{}", u8::from(nnp))),
            "no_new_privs {nnp}"
        );
        for want in [
            "uid=1000(user) gid=1000 groups=1001,1002\n",
            "\n/tmp\n0027\nHOME=/home/user\n",
            "CapEff:\t0000000000000021",
            "CapAmb:\t0000000000000021",
            "CapBnd:\t0000000000000021",
            "Seccomp:\t2",
            // Nothing of the runtime's signal mask leaks into the process.
            "SigBlk:\t0000000000000000",
            "\n256\n512\n900\n",
            "Operation not permitted",
            "args: zero one",
        ] {
            assert!(direct.contains(want), "{want:?} in\n{direct}");
        }
        assert!(
            direct.contains(&format!("NoNewPrivs:\t{}", u8::from(nnp))),
            "{direct}"
        );
        // No ignored signal either (SIGPIPE above all: Rust ignores it in
        // the runtime); 32 and 33 are glibc's own, which it will not reset.
        let ignored = direct
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:\t"))
            .map(|h| u64::from_str_radix(h, 16).unwrap())
            .expect("SigIgn");
        assert_eq!(ignored & 0x7fff_ffff, 0, "ignored signals {ignored:x}");
    }

    // A program the container does not have: the runtime fails, says so.
    let (st, _, _) = env.run(&["exec", &env.id, "no-such-program"]);
    assert_eq!(st.code(), Some(1));
    assert!(
        last_log_error(&env).contains("\"no-such-program\" not found"),
        "{}",
        env.log_text()
    );
    env.ok(&["delete", "--force", &env.id]);
    env.reap();
    assert_gone(&env);
}

/// berth-runtime's own create (direct_create.rs, rootfs.rs) and
/// libcontainer's, on the same config: what the container's init sees of
/// its mounts, devices, ids, capabilities, seccomp, rlimits, namespaces,
/// cgroups, fds, sysctls and read-only or masked paths must be the same.
#[test]
fn create_paths_agree() {
    if !have_root() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    fs::create_dir(host.path().join("data")).unwrap();
    fs::write(host.path().join("data/in-data"), "d").unwrap();
    fs::write(host.path().join("probe"), "probe file\n").unwrap();
    let script = "id; pwd; umask; echo HOME=$HOME; hostname; \
        grep -E '^(Cap|NoNewPrivs|Seccomp:|Groups|Sig(Ign|Blk))' /proc/self/status; \
        ulimit -Sn; ulimit -Hn; cat /proc/self/oom_score_adj; cat /proc/self/cgroup; \
        ls /proc/self/fd; cat /proc/self/mountinfo; ls -ln /dev /dev/net; \
        cat /etc/probe; ls /data; touch /rootfile 2>&1; touch /data/x 2>&1; \
        touch /tmp/x && echo tmp-ok; cat /proc/sys/net/ipv4/ip_forward; \
        echo keys: $(cat /proc/keys | wc -c); echo x > /proc/sysrq-trigger 2>&1; \
        mkdir /tmp/z 2>&1; echo args: $0 $1; echo END";
    let run = |libcontainer: bool| -> (String, Env) {
        let mut env = Env::new(if libcontainer {
            "create-lc"
        } else {
            "create-direct"
        });
        env.write_config(&["sh", "-c", script, "zero", "one"], Some(deny_mkdir()));
        let rootfs = env.bundle().join("rootfs");
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
        )
        .unwrap();
        berth_testkit::add_applets(&rootfs, &["grep", "ls", "hostname", "touch", "wc"]);
        let path = env.bundle().join("config.json");
        let mut c: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        c["root"]["readonly"] = json!(true);
        let caps = json!(["CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE"]);
        c["process"]["user"] =
            json!({"uid": 1000, "gid": 1000, "additionalGids": [1001, 1002], "umask": 23});
        c["process"]["cwd"] = json!("/tmp");
        c["process"]["capabilities"] = json!({"bounding": caps, "effective": caps,
            "permitted": caps, "inheritable": caps, "ambient": caps});
        c["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 256, "hard": 512}]);
        c["process"]["oomScoreAdj"] = json!(500);
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.extend([
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                   "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
            json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                   "options": ["nosuid", "noexec", "nodev"]}),
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "mode=1777"]}),
            json!({"destination": "/data", "type": "bind",
                   "source": host.path().join("data"), "options": ["rbind", "rprivate", "ro"]}),
            json!({"destination": "/etc/probe", "type": "bind",
                   "source": host.path().join("probe"), "options": ["rbind", "rprivate", "rw"]}),
        ]);
        c["linux"]["devices"] = json!([{"path": "/dev/net/tun", "type": "c", "major": 10,
            "minor": 200, "fileMode": 0o620, "uid": 0, "gid": 0}]);
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["linux"]["maskedPaths"] = json!(["/proc/kcore", "/proc/keys", "/proc/acpi", "/no/such"]);
        fs::write(&path, c.to_string()).unwrap();
        let vars: &[(&str, &str)] = if libcontainer {
            &[("BERTH_RUNTIME_LIBCONTAINER_CREATE", "1")]
        } else {
            &[]
        };
        let mut pipes = env.create_with(vars);
        env.ok(&["start", &env.id]);
        let out = read_until(&mut pipes.stdout, "END\n");
        // What differs by container: its directory, its cgroup, and the
        // mount and device ids.
        let out = out
            .replace(env.dir.path().to_str().unwrap(), "<dir>")
            .replace(&env.cgroup, "<cgroup>");
        let out = out
            .lines()
            .map(|l| match l.split_once(" - ") {
                Some((head, tail)) if head.split(' ').count() >= 6 => {
                    let fields: Vec<&str> = head.split(' ').collect();
                    format!("{} - {tail}", fields[3..].join(" "))
                }
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        (out, env)
    };
    let (direct, env_direct) = run(false);
    let (libcontainer, env_lc) = run(true);
    // By design: an `ro` cgroup mount is read-only on the direct path, its
    // v1 hierarchies included (libcontainer binds them writable).
    let cgroup_lines = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.contains(" /sys/fs/cgroup"))
            .map(str::to_string)
            .collect()
    };
    let (dc, lc) = (cgroup_lines(&direct), cgroup_lines(&libcontainer));
    assert!(!dc.is_empty());
    assert_eq!(dc.len(), lc.len(), "{dc:#?}\n{lc:#?}");
    for l in &dc {
        assert!(l.split(' ').nth(2).unwrap().starts_with("ro"), "{l}");
    }
    let rest = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.contains(" /sys/fs/cgroup"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(rest(&direct), rest(&libcontainer));
    for want in [
        "uid=1000(user) gid=1000 groups=1001,1002\n",
        "\n/tmp\n0027\nHOME=/home/user\nberth-test\n",
        "CapEff:\t0000000000000023",
        "Seccomp:\t2",
        "\n256\n512\n500\n",
        "probe file\nin-data\n",
        "Read-only file system",
        "tmp-ok\n1\nkeys: 0\n",
        "Operation not permitted",
        "args: zero one",
        "crw--w----    1 0        0          10, 200",
    ] {
        assert!(direct.contains(want), "{want:?} in\n{direct}");
    }
    for env in [env_direct, env_lc] {
        env.ok(&["delete", "--force", &env.id]);
        env.reap();
        assert_gone(&env);
    }
}

/// A container with its own cgroup namespace (direct create): its cgroups
/// read as roots, and the cgroup filesystem shows its own directories.
#[test]
fn cgroup_namespace_roots_the_containers_cgroups() {
    if !have_root() {
        return;
    }
    let mut env = Env::new("cgroupns");
    env.write_config(
        &["sh", "-c", "cat /proc/self/cgroup; cat /sys/fs/cgroup/pids/cgroup.procs 2>&1 || cat /sys/fs/cgroup/cgroup.procs; echo END"],
        None,
    );
    let path = env.bundle().join("config.json");
    let mut c: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    c["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/sys/fs/cgroup",
        "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "ro"]}));
    fs::write(&path, c.to_string()).unwrap();
    let mut pipes = env.create();
    env.ok(&["start", &env.id]);
    let out = read_until(&mut pipes.stdout, "END\n");
    for line in out.lines().filter(|l| l.contains(':')) {
        assert!(line.ends_with(":/"), "not a root: {line}\n{out}");
    }
    // The init, pid 1 of its pid namespace, is the cgroup's only process.
    assert!(out.contains("\n1\n"), "{out}");
    env.ok(&["delete", "--force", &env.id]);
    env.reap();
    assert_gone(&env);
}

#[test]
fn failed_create_reports_in_log_and_leaves_nothing() {
    if !have_root() {
        return;
    }
    // 1. Missing rootfs.
    let env = Env::new("norootfs");
    env.write_config(&["true"], None);
    fs::remove_dir_all(env.bundle().join("rootfs")).unwrap();
    let bundle = env.bundle();
    let (st, out, err) = env.run(&["create", "--bundle", bundle.to_str().unwrap(), &env.id]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(out, "");
    assert_eq!(err, "", "stderr must stay clean with --log");
    let msg = last_log_error(&env);
    assert!(
        msg.starts_with(&format!("create container {}: ", env.id)),
        "{msg}"
    );
    assert!(msg.ends_with("No such file or directory"), "{msg}");
    assert_gone(&env);

    // 2. Not a bundle at all.
    let env = Env::new("nobundle");
    let missing = env.path("no-such-bundle");
    let (st, _, err) = env.run(&["create", "-b", missing.to_str().unwrap(), &env.id]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(err, "");
    assert!(last_log_error(&env).contains("No such file or directory"));
    assert_gone(&env);

    // 3. Broken config.json.
    let env = Env::new("badjson");
    fs::write(env.bundle().join("config.json"), "{not json").unwrap();
    let bundle = env.bundle();
    let (st, _, err) = env.run(&["create", "-b", bundle.to_str().unwrap(), &env.id]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(err, "");
    assert!(
        last_log_error(&env).contains("config.json"),
        "{}",
        env.log_text()
    );
    assert_gone(&env);

    // 4. Fails inside libcontainer after the cgroup exists: no such binary.
    let env = Env::new("noexe");
    env.write_config(&["/bin/no-such-binary"], None);
    let bundle = env.bundle();
    let (st, _, err) = env.run(&["create", "-b", bundle.to_str().unwrap(), &env.id]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(err, "");
    let msg = last_log_error(&env);
    assert!(
        msg.starts_with(&format!("create container {}: ", env.id)),
        "{msg}"
    );
    assert_gone(&env);

    // 5. The same id twice: the second create fails, the first is untouched.
    let mut env = Env::new("twice");
    env.write_config(&["sleep", "1000"], None);
    let _pipes = env.create();
    let bundle = env.bundle();
    let (st, _, _) = env.run(&["create", "-b", bundle.to_str().unwrap(), &env.id]);
    assert_eq!(st.code(), Some(1));
    assert!(last_log_error(&env).contains("already exists"));
    assert_eq!(env.state()["status"], "created");
    env.ok(&["delete", &env.id]);
    env.reap();
    assert_gone(&env);
}

#[test]
fn update_resources_sets_memory_limit() {
    if !have_root() {
        return;
    }
    let mut env = Env::new("update");
    env.write_config(&["sleep", "1000"], None);
    let _pipes = env.create();
    env.ok(&["start", &env.id]);
    let res = env.path("resources.json");
    fs::write(
        &res,
        json!({"memory": {"limit": 64 * 1024 * 1024}}).to_string(),
    )
    .unwrap();
    env.ok(&["update", "--resources", res.to_str().unwrap(), &env.id]);
    let got = fs::read_to_string(memory_limit_file(&env.cgroup)).unwrap();
    assert_eq!(got.trim(), (64 * 1024 * 1024).to_string());

    // From stdin with -r -.
    let mut child = env
        .cmd(&["update", "-r", "-", &env.id])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(
                json!({"memory": {"limit": 32 * 1024 * 1024}})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
    }
    assert!(child.wait().unwrap().success(), "{}", env.log_text());
    let got = fs::read_to_string(memory_limit_file(&env.cgroup)).unwrap();
    assert_eq!(got.trim(), (32 * 1024 * 1024).to_string());

    // Garbage is an error.
    fs::write(&res, "{not json").unwrap();
    let (st, _, _) = env.run(&["update", "-r", res.to_str().unwrap(), &env.id]);
    assert_eq!(st.code(), Some(1));
    assert!(last_log_error(&env).starts_with(&format!("update container {}", env.id)));

    env.ok(&["delete", "--force", &env.id]);
    env.reap();
    assert_gone(&env);
}

#[test]
fn seccomp_denies_mkdir_in_init_and_exec() {
    if !have_root() {
        return;
    }
    let mut env = Env::new("seccomp");
    let seccomp = deny_mkdir();
    env.write_config(
        &["sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?; sleep 1000"],
        Some(seccomp),
    );
    let pipes = env.create();
    env.ok(&["start", &env.id]);
    let mut stdout = pipes.stdout;
    let out = read_until(&mut stdout, "rc=1");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(!env.bundle().join("rootfs/tmp/x").exists());

    // exec'd processes get the container's profile too.
    let (st, out, err) = env.run(&["exec", &env.id, "sh", "-c", "mkdir /tmp/y 2>&1; echo rc=$?"]);
    assert!(st.success(), "{err} {}", env.log_text());
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(!env.bundle().join("rootfs/tmp/y").exists());

    env.ok(&["delete", "--force", &env.id]);
    env.reap();
    assert_gone(&env);
}

#[test]
fn delete_rules_match_runc() {
    if !have_root() {
        return;
    }
    let mut env = Env::new("delete");
    // Unknown id: error, unless --force.
    let (st, _, _) = env.run(&["delete", &env.id]);
    assert_eq!(st.code(), Some(1));
    assert!(last_log_error(&env).contains("does not exist"));
    env.ok(&["delete", "--force", &env.id]);

    env.write_config(&["sleep", "1000"], None);
    let _pipes = env.create();
    env.ok(&["start", &env.id]);
    // Running: refused without --force.
    let (st, _, _) = env.run(&["delete", &env.id]);
    assert_eq!(st.code(), Some(1));
    assert!(
        last_log_error(&env).contains("not stopped: running"),
        "{}",
        env.log_text()
    );
    assert_eq!(env.state()["status"], "running");
    // kill --all reaches every process; then a forced delete of the rest.
    let pid_file = env.path("detached.pid");
    env.run_detached(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &env.id,
        "sleep",
        "999",
    ]);
    env.adopt(
        fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    );
    env.ok(&["kill", "--all", &env.id, "SIGSTOP"]);
    env.ok(&["kill", "-a", &env.id, "18"]);
    env.ok(&["delete", "--force", &env.id]);
    env.reap();
    assert_gone(&env);

    // A created (never started) container deletes without --force.
    let mut env = Env::new("delcreated");
    env.write_config(&["sleep", "1000"], None);
    let _pipes = env.create();
    env.ok(&["delete", &env.id]);
    env.reap();
    assert_gone(&env);
}

#[test]
fn bad_command_line_goes_to_log() {
    if !have_root() {
        return;
    }
    let env = Env::new("cli");
    let (st, _, err) = env.run(&["kill", &env.id, "NOSUCHSIGNAL"]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(err, "");
    assert!(
        last_log_error(&env).contains("invalid signal"),
        "{}",
        env.log_text()
    );
    let (st, _, err) = env.run(&["frobnicate"]);
    assert_eq!(st.code(), Some(1));
    assert_eq!(err, "");
    assert!(!last_log_error(&env).is_empty());
}
