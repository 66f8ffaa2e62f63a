//! Registry configuration against real registries (Debian's
//! docker-registry on 127.0.0.1): hosts.toml's `ca`, `client` (mTLS),
//! `header`, path prefixes and `override_path`, pull-only mirrors, one
//! broken file failing only its registry, and credentials from Docker
//! credential helpers. Each test has its own registries, proxy, certificates
//! and berthd; all stop when the test ends, also when it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_cli::client::CriClient;
use berth_e2e::fixture::{self, Proxy, ProxyConfig, Registry, RegistryTls, TestCa};
use berth_e2e::{Berthd, bin_path, root_or_skip};
use k8s_cri::v1::*;
use tonic::Code;

/// A scratch dir removed when the test ends, also on failure.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        Scratch(berth_e2e::env::scratch_dir(tag))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

async fn pull(c: &mut CriClient, image: &str) -> Result<String, tonic::Status> {
    c.image
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn remove(c: &mut CriClient, image: &str) {
    c.image
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

/// `<certs.d>/<registry>/hosts.toml` := `text`.
fn hosts_toml(certs: &Path, registry: &str, text: &str) -> PathBuf {
    let d = certs.join(registry);
    fs::create_dir_all(&d).unwrap();
    let f = d.join("hosts.toml");
    fs::write(&f, text).unwrap();
    f
}

fn berthd(tag: &str, certs: &Path) -> berth_e2e::BerthdBuilder {
    Berthd::builder(tag).config(
        "image",
        "registry_config_dir",
        &format!("{:?}", certs.to_str().unwrap()),
    )
}

/// The `registries` of berthd's verbose Status (what `berth info` shows).
async fn registries(c: &mut CriClient) -> Vec<serde_json::Value> {
    let info = c
        .runtime
        .status(StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner()
        .info;
    serde_json::from_str(&info["registries"]).unwrap()
}

/// HTTPS with a private CA: without `ca` the pull fails saying why; with
/// it (a relative path) it works. In the same config dir a broken file
/// fails only its own registry, and a registry without a file is not
/// affected; berthd's log and `berth info` name each file and its hosts.
#[tokio::test]
async fn tls_with_a_private_ca_and_a_broken_neighbour() {
    if !root_or_skip("tls_with_a_private_ca_and_a_broken_neighbour") {
        return;
    }
    let scratch = Scratch::new("regtls");
    let ca = TestCa::new(&scratch.0.join("pki"), "registry-ca");
    let (cert, key) = ca.server("127.0.0.1");
    let tls = Registry::start_tls(
        None,
        RegistryTls {
            cert,
            key,
            ca: ca.cert.clone(),
            client_ca: None,
            client: None,
        },
    );
    let plain = Registry::start(None);
    let image = fixture::busybox();
    tls.push(&image, "tls/busybox", "v1").await;
    plain.push(&image, "plain/busybox", "v1").await;

    let certs = scratch.0.join("certs.d");
    let tls_file = hosts_toml(
        &certs,
        &tls.host(),
        &format!("server = \"https://{}\"\n", tls.host()),
    );
    let bad_file = hosts_toml(
        &certs,
        &plain.host(),
        &format!("[host.\"http://{}\"]\n  sklp_verify = true\n", plain.host()),
    );
    let d = berthd("regtls", &certs).start();
    let mut c = d.client().await;

    let name = tls.reference("tls/busybox", "v1");
    let e = pull(&mut c, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains(&format!("https://{}", tls.host()))
            && e.message().to_lowercase().contains("certificate"),
        "{}",
        e.message()
    );

    // skip_verify accepts the unknown issuer.
    fs::write(
        &tls_file,
        format!("server = \"https://{}\"\nskip_verify = true\n", tls.host()),
    )
    .unwrap();
    assert_eq!(pull(&mut c, &name).await.unwrap(), image.id());
    remove(&mut c, &name).await;

    fs::copy(&ca.cert, certs.join(tls.host()).join("ca.pem")).unwrap();
    fs::write(
        &tls_file,
        format!("server = \"https://{}\"\nca = \"ca.pem\"\n", tls.host()),
    )
    .unwrap();
    assert_eq!(
        pull(&mut c, &name)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", d.log())),
        image.id()
    );

    // The broken file fails its registry, naming the file and the key.
    let e = pull(&mut c, &plain.reference("plain/busybox", "v1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains(bad_file.to_str().unwrap()) && e.message().contains("`sklp_verify`"),
        "{}",
        e.message()
    );
    // The same registry under a name without a file is unaffected.
    let port = plain.host().rsplit_once(':').unwrap().1.to_owned();
    let other = format!("localhost:{port}/plain/busybox:v1");
    assert_eq!(pull(&mut c, &other).await.unwrap(), image.id());

    // berthd said at start which file serves which hosts.
    let log = d.log();
    assert!(
        log.lines().any(|l| l.contains("registry hosts")
            && l.contains(tls_file.to_str().unwrap())
            && l.contains(&format!("https://{}/v2", tls.host()))),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(bad_file.to_str().unwrap()) && l.contains("sklp_verify")),
        "{log}"
    );
    // `berth info` (Status verbose) shows the files as they are now.
    let regs = registries(&mut c).await;
    let find = |host: &str| regs.iter().find(|r| r["registry"] == host).unwrap().clone();
    let t = find(&tls.host());
    assert_eq!(t["file"], tls_file.to_str().unwrap());
    assert_eq!(t["hosts"][0]["url"], format!("https://{}/v2", tls.host()));
    assert_eq!(t["hosts"][0]["settings"][0], "ca: 1 certificate(s)");
    let b = find(&plain.host());
    assert!(b["error"].as_str().unwrap().contains("sklp_verify"), "{b}");
    let ep = format!("unix://{}", d.socket.display());
    let out = std::process::Command::new(bin_path("berth"))
        .args(["--config", "/nonexistent-crictl.yaml", "-r", &ep, "info"])
        .env_remove("BERTH_RUNTIME_ENDPOINT")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("REGISTRY")
            && text
                .lines()
                .any(|l| l.contains(&tls.host()) && l.contains("[pull,resolve]"))
            && text
                .lines()
                .any(|l| l.contains(&plain.host()) && l.contains("error:")),
        "{text}"
    );
}

/// A registry that requires client certificates: without `client` the
/// handshake fails; with two client certificates the one issued by the
/// CA the registry names is sent; a missing key file is the file's error.
#[tokio::test]
async fn mtls_with_client_certificates() {
    if !root_or_skip("mtls_with_client_certificates") {
        return;
    }
    let scratch = Scratch::new("regmtls");
    let pki = scratch.0.join("pki");
    let ca = TestCa::new(&pki, "server-ca");
    let clients_ca = TestCa::new(&pki, "clients-ca");
    let other_ca = TestCa::new(&pki, "other-ca");
    let (cert, key) = ca.server("127.0.0.1");
    let (client, client_key) = clients_ca.client("node");
    let (stranger, stranger_key) = other_ca.client("node");
    let reg = Registry::start_tls(
        None,
        RegistryTls {
            cert,
            key,
            ca: ca.cert.clone(),
            client_ca: Some(clients_ca.cert.clone()),
            client: Some((client.clone(), client_key.clone())),
        },
    );
    let image = fixture::busybox();
    reg.push(&image, "mtls/busybox", "v1").await;
    let certs = scratch.0.join("certs.d");
    let server = format!(
        "server = \"https://{}\"\nca = {:?}\n",
        reg.host(),
        ca.cert.to_str().unwrap()
    );
    let file = hosts_toml(&certs, &reg.host(), &server);
    let d = berthd("regmtls", &certs).start();
    let mut c = d.client().await;
    let name = reg.reference("mtls/busybox", "v1");

    let e = pull(&mut c, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    let q = |p: &Path| format!("{:?}", p.to_str().unwrap());
    fs::write(
        &file,
        format!(
            "{server}client = [[{}, {}], [{}, {}]]\n",
            q(&stranger),
            q(&stranger_key),
            q(&client),
            q(&client_key)
        ),
    )
    .unwrap();
    assert_eq!(
        pull(&mut c, &name)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", d.log())),
        image.id()
    );

    fs::write(
        &file,
        format!("{server}client = [[{}, \"missing.key\"]]\n", q(&client)),
    )
    .unwrap();
    let e = pull(&mut c, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains(file.to_str().unwrap())
            && e.message().contains("key `client`")
            && e.message().contains("missing.key"),
        "{}",
        e.message()
    );
}

/// The credential helper script: what it answers is set by the file
/// `mode` next to it; it notes each server URL it is asked for in
/// `asked` and its pid in `pid`.
fn write_helper(dir: &Path, password: &str) {
    let script = format!(
        r#"#!/bin/sh
[ "$1" = get ] || exit 3
read -r server
echo "$server" >> {dir}/asked
echo $$ > {dir}/pid
case "$(cat {dir}/mode)" in
  ok) printf '{{"ServerURL":"%s","Username":"berth","Secret":"{password}"}}' "$server" ;;
  garbage) echo "Secret={password} is not JSON" ;;
  none) echo 'credentials not found in native keychain'; exit 1 ;;
  hang) sleep 600 ;;
esac
"#,
        dir = dir.display()
    );
    let p = dir.join("docker-credential-berthtest");
    fs::write(&p, script).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Basic auth (htpasswd) with credentials from a credential helper named
/// by `credHelpers`, then by `credsStore`: its answers, nothing, garbage,
/// and a helper that hangs (killed after the timeout, reaped). The
/// password never reaches berthd's log or an error.
#[tokio::test]
async fn basic_auth_from_a_credential_helper() {
    if !root_or_skip("basic_auth_from_a_credential_helper") {
        return;
    }
    const PASSWORD: &str = "s3cret-from-helper";
    let scratch = Scratch::new("reghelper");
    let reg = Registry::start(Some(("berth", PASSWORD)));
    let image = fixture::busybox();
    reg.push(&image, "private/busybox", "v1").await;
    let bin = scratch.0.join("bin");
    fs::create_dir_all(&bin).unwrap();
    write_helper(&bin, PASSWORD);
    let mode = |m: &str| fs::write(bin.join("mode"), m).unwrap();
    mode("ok");
    let auth_file = scratch.0.join("auth.json");
    fs::write(
        &auth_file,
        format!(r#"{{"credHelpers": {{"{}": "berthtest"}}}}"#, reg.host()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let d = berthd("reghelper", &scratch.0.join("certs.d"))
        .config(
            "image",
            "auth_file",
            &format!("{:?}", auth_file.to_str().unwrap()),
        )
        .env("PATH", &path)
        .start();
    let mut c = d.client().await;
    let name = reg.reference("private/busybox", "v1");

    assert_eq!(
        pull(&mut c, &name)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", d.log())),
        image.id()
    );
    assert_eq!(
        fs::read_to_string(bin.join("asked")).unwrap().trim(),
        reg.host()
    );
    remove(&mut c, &name).await;

    mode("none");
    let e = pull(&mut c, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    mode("garbage");
    let e = pull(&mut c, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("docker-credential-berthtest")
            && e.message().contains("not JSON")
            && e.message().contains(auth_file.to_str().unwrap()),
        "{}",
        e.message()
    );
    assert!(!e.message().contains(PASSWORD), "{}", e.message());

    mode("hang");
    let _ = fs::remove_file(bin.join("pid"));
    let started = Instant::now();
    let e = pull(&mut c, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .contains("docker-credential-berthtest did not answer within 10s"),
        "{}",
        e.message()
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let pid = fs::read_to_string(bin.join("pid")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{}", pid.trim())).exists() {
        assert!(Instant::now() < deadline, "helper {pid} not reaped");
        std::thread::sleep(Duration::from_millis(50));
    }

    // credsStore: the default helper for every registry.
    fs::write(&auth_file, r#"{"credsStore": "berthtest"}"#).unwrap();
    mode("ok");
    assert_eq!(pull(&mut c, &name).await.unwrap(), image.id());

    let log = d.log();
    assert!(!log.contains(PASSWORD), "{log}");
}

/// A mirror under a path prefix that requires a header, serving blobs by
/// redirect; then `override_path` with a top-level header; then the
/// header missing; then a pull-only mirror: the tag is resolved by the
/// registry, content comes from the mirror.
#[tokio::test]
async fn mirror_with_a_path_prefix_and_a_required_header() {
    if !root_or_skip("mirror_with_a_path_prefix_and_a_required_header") {
        return;
    }
    let scratch = Scratch::new("regmirror");
    let reg = Registry::start(None);
    let image = fixture::busybox();
    reg.push(&image, "library/busybox", "1.36").await;
    let proxy = Proxy::start(ProxyConfig {
        upstream: reg.url(),
        routes: vec![
            ("/mirror/v2".into(), "/v2".into()),
            ("/flat".into(), "/v2".into()),
        ],
        require_header: Some(("x-mirror-token".into(), "t0ken".into())),
        redirect_blobs: true,
    });
    let certs = scratch.0.join("certs.d");
    let mirror = format!("http://{}/mirror", proxy.host());
    // registry.invalid never resolves: only the mirror can serve it.
    let file = hosts_toml(
        &certs,
        "registry.invalid",
        &format!(
            "server = \"https://registry.invalid\"\n\
             [host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\
             [host.\"{mirror}\".header]\n  x-mirror-token = \"t0ken\"\n"
        ),
    );
    let d = berthd("regmirror", &certs).start();
    let mut c = d.client().await;
    let name = "registry.invalid/library/busybox:1.36";
    assert_eq!(
        pull(&mut c, name)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", d.log())),
        image.id()
    );
    let seen = proxy.seen();
    assert!(seen.iter().all(|s| s.had_header), "{seen:?}");
    assert_eq!(seen[0].method, "HEAD");
    assert_eq!(
        seen[0].uri,
        "/mirror/v2/library/busybox/manifests/1.36?ns=registry.invalid"
    );
    assert!(
        seen.iter().any(|s| s
            .uri
            .starts_with("/mirror/v2/library/busybox/blobs/sha256:")
            && s.status == 307),
        "{seen:?}"
    );
    remove(&mut c, name).await;

    // override_path: the URL's path is the API root; the header at the
    // top level belongs to the server.
    proxy.clear();
    fs::write(
        &file,
        format!(
            "server = \"http://{}/flat\"\noverride_path = true\n[header]\n  x-mirror-token = \"t0ken\"\n",
            proxy.host()
        ),
    )
    .unwrap();
    assert_eq!(pull(&mut c, name).await.unwrap(), image.id());
    let seen = proxy.seen();
    assert!(
        seen[0]
            .uri
            .starts_with("/flat/library/busybox/manifests/1.36"),
        "{seen:?}"
    );
    remove(&mut c, name).await;

    // Without the header the host's 401 is the pull's error.
    fs::write(
        &file,
        format!(
            "server = \"http://{}/flat\"\noverride_path = true\n",
            proxy.host()
        ),
    )
    .unwrap();
    let e = pull(&mut c, name).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(
        e.message().contains("missing the mirror's header"),
        "{}",
        e.message()
    );

    // A pull-only mirror of the registry itself: the tag is resolved by
    // the registry (never asked of the mirror), the content by digest
    // through the mirror.
    proxy.clear();
    hosts_toml(
        &certs,
        &reg.host(),
        &format!(
            "[host.\"{mirror}\"]\n  capabilities = [\"pull\"]\n\
             [host.\"{mirror}\".header]\n  x-mirror-token = \"t0ken\"\n"
        ),
    );
    let direct = reg.reference("library/busybox", "1.36");
    assert_eq!(pull(&mut c, &direct).await.unwrap(), image.id());
    let seen = proxy.seen();
    assert!(
        !seen.iter().any(|s| s.uri.contains("/manifests/1.36")),
        "{seen:?}"
    );
    let ns = format!("?ns={}", reg.host());
    assert!(
        seen.iter()
            .any(|s| s.uri.contains("/manifests/sha256:") && s.uri.ends_with(&ns)),
        "{seen:?}"
    );
}
