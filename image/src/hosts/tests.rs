use super::*;

const CA: &str = include_str!("testdata/ca.pem");
const CLIENT: &str = include_str!("testdata/client.pem");
const CLIENT_KEY: &str = include_str!("testdata/client.key");
const OTHER_KEY: &str = include_str!("testdata/other.key");

/// A config dir with `<registry>/hosts.toml` holding `text`.
fn with_file(registry: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join(registry);
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("hosts.toml"), text).unwrap();
    (dir, d)
}

#[test]
fn loopback_hosts() {
    for h in [
        "localhost",
        "localhost:5000",
        "127.0.0.1:5000",
        "127.1.2.3",
        "[::1]:5000",
        "::1",
    ] {
        assert!(is_loopback(h), "{h}");
    }
    for h in [
        "docker.io",
        "10.0.0.1:5000",
        "example.com:443",
        "[fd00::1]:5000",
    ] {
        assert!(!is_loopback(h), "{h}");
    }
}

#[test]
fn no_config_means_the_registry_itself() {
    let dir = tempfile::tempdir().unwrap();
    let e = endpoints(dir.path(), "docker.io").unwrap();
    assert_eq!(e, vec![default_upstream("docker.io")]);
    assert_eq!(e[0].base_url(), "https://registry-1.docker.io/v2");
    let e = endpoints(dir.path(), "127.0.0.1:5000").unwrap();
    assert_eq!(
        e[0].base_url(),
        "http://127.0.0.1:5000/v2",
        "loopback is plain HTTP"
    );
    let e = endpoints(dir.path(), "quay.io").unwrap();
    assert!(e[0].pull && e[0].resolve && !e[0].mirror);
}

#[test]
fn mirrors_in_order_then_upstream() {
    let (dir, _) = with_file(
        "docker.io",
        r#"
server = "https://registry-1.docker.io"
[host."http://10.0.0.9:5000"]
  capabilities = ["pull", "resolve"]
[host."https://m2.example"]
  capabilities = ["pull"]
  skip_verify = true
[host."https://push-only.example"]
  capabilities = ["push"]
"#,
    );
    let e = endpoints(dir.path(), "docker.io").unwrap();
    let urls: Vec<_> = e.iter().map(|e| e.base_url()).collect();
    assert_eq!(
        urls,
        [
            "http://10.0.0.9:5000/v2",
            "https://m2.example/v2",
            "https://registry-1.docker.io/v2"
        ]
    );
    assert!(e[0].plain_http && e[0].resolve && e[0].mirror);
    assert!(e[1].pull && !e[1].resolve && e[1].transport.skip_verify);
    assert!(!e[2].mirror);
}

#[test]
fn server_pointing_at_the_mirror_means_no_other_upstream() {
    let (dir, _) = with_file("_default", "server = \"http://10.1.1.1:5000\"\n");
    let e = endpoints(dir.path(), "quay.io").unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].base_url(), "http://10.1.1.1:5000/v2");
}

#[test]
fn paths_follow_containerds_rule() {
    for (url, override_path, want) in [
        ("https://m.example", false, "https://m.example/v2"),
        ("https://m.example/", false, "https://m.example/v2"),
        ("https://m.example/v2", false, "https://m.example/v2"),
        ("https://m.example/v2/", false, "https://m.example/v2"),
        (
            "https://m.example/some/prefix",
            false,
            "https://m.example/some/prefix/v2",
        ),
        (
            "https://m.example//a//b/",
            false,
            "https://m.example/a/b/v2",
        ),
        (
            "https://m.example/v2/upstream",
            true,
            "https://m.example/v2/upstream",
        ),
        ("https://m.example", true, "https://m.example"),
        ("m.example:5000", false, "https://m.example:5000/v2"),
        (
            "http://[fd00::1]:5000/x",
            false,
            "http://[fd00::1]:5000/x/v2",
        ),
    ] {
        let text = format!("[host.\"{url}\"]\noverride_path = {override_path}\n");
        let (dir, _) = with_file("quay.io", &text);
        let e = endpoints(dir.path(), "quay.io").unwrap();
        assert_eq!(e[0].base_url(), want, "{url}");
        assert_eq!(e[1].base_url(), "https://quay.io/v2");
    }
    // The server too; a loopback registry's server without a scheme is
    // plain HTTP, with https:// it is TLS.
    let (dir, _) = with_file("127.0.0.1:5000", "server = \"127.0.0.1:5000/reg\"\n");
    let e = endpoints(dir.path(), "127.0.0.1:5000").unwrap();
    assert_eq!(e[0].base_url(), "http://127.0.0.1:5000/reg/v2");
    let (dir, _) = with_file("127.0.0.1:5000", "server = \"https://127.0.0.1:5000\"\n");
    let e = endpoints(dir.path(), "127.0.0.1:5000").unwrap();
    assert_eq!(e[0].base_url(), "https://127.0.0.1:5000/v2");
    // Docker Hub's names reach its API host.
    let (dir, _) = with_file("docker.io", "server = \"https://docker.io\"\n");
    let e = endpoints(dir.path(), "docker.io").unwrap();
    assert_eq!(e[0].base_url(), "https://registry-1.docker.io/v2");
}

#[test]
fn bad_urls_are_refused() {
    for (url, want) in [
        ("ftp://m.example", "the scheme must be http or https"),
        ("https://", "is not a URL: empty host"),
        ("https://u:p@m.example", "no user, query or fragment"),
        ("https://m.example/?x=1", "no user, query or fragment"),
    ] {
        let (dir, _) = with_file("quay.io", &format!("[host.\"{url}\"]\n"));
        let e = endpoints(dir.path(), "quay.io").unwrap_err().to_string();
        assert!(
            e.contains("quay.io/hosts.toml") && e.contains(want),
            "{url}: {e}"
        );
    }
}

#[test]
fn headers_timeouts_and_proxies_reach_the_endpoint() {
    let (dir, _) = with_file(
        "quay.io",
        r#"
dial_timeout = "2s"
[header]
  x-top = "t"
[host."https://m.example"]
  proxy = "http://proxy.example:3128"
  [host."https://m.example".header]
    x-a = ["1", "2"]
"#,
    );
    let e = endpoints(dir.path(), "quay.io").unwrap();
    assert_eq!(
        e[0].headers,
        vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())]
    );
    assert_eq!(
        e[0].transport.proxy.as_deref(),
        Some("http://proxy.example:3128")
    );
    assert_eq!(e[0].transport.dial_timeout, None);
    assert_eq!(e[1].headers, vec![("x-top".into(), "t".into())]);
    assert_eq!(e[1].transport.dial_timeout, Some(Duration::from_secs(2)));
}

#[test]
fn ca_and_client_files_are_loaded_relative_to_the_file() {
    let (dir, d) = with_file(
        "quay.io",
        r#"
ca = "ca.pem"
[host."https://m1.example"]
  client = [["client.pem", "client.key"]]
[host."https://m2.example"]
  client = "both.pem"
[host."https://m3.example"]
  client = ["both.pem", "both.pem"]
  ca = ["ca.pem", "sub/ca.pem"]
"#,
    );
    fs::write(d.join("ca.pem"), CA).unwrap();
    fs::create_dir(d.join("sub")).unwrap();
    fs::write(d.join("sub/ca.pem"), CA).unwrap();
    fs::write(d.join("client.pem"), CLIENT).unwrap();
    fs::write(d.join("client.key"), CLIENT_KEY).unwrap();
    fs::write(d.join("both.pem"), format!("{CLIENT}{CLIENT_KEY}")).unwrap();
    let e = endpoints(dir.path(), "quay.io").unwrap();
    assert_eq!(e[0].transport.clients.len(), 1);
    assert!(
        e[0].transport.roots.is_empty(),
        "the top-level ca is the server's"
    );
    assert_eq!(e[1].transport.clients.len(), 1);
    assert_eq!(e[1].transport.clients[0], e[0].transport.clients[0]);
    assert_eq!(e[2].transport.clients.len(), 2);
    assert_eq!(e[2].transport.roots.len(), 2);
    assert_eq!(e[3].transport.roots.len(), 1);
    assert!(e[3].transport.clients.is_empty());
    // The key never shows.
    let shown = format!("{e:?}");
    assert!(shown.contains("<redacted>"), "{shown}");
    let key_b64 = CLIENT_KEY.lines().nth(1).unwrap();
    assert!(!shown.contains(key_b64));
}

#[test]
fn broken_certificate_files_fail_their_file_naming_key_and_path() {
    let (dir, d) = with_file("quay.io", "");
    fs::write(d.join("ca.pem"), CA).unwrap();
    fs::write(d.join("client.pem"), CLIENT).unwrap();
    fs::write(d.join("client.key"), CLIENT_KEY).unwrap();
    fs::write(d.join("other.key"), OTHER_KEY).unwrap();
    fs::write(d.join("garbage.pem"), "not a certificate\n").unwrap();
    fs::write(
        d.join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    fs::write(
        d.join("badca.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (text, want) in [
        ("ca = \"missing.pem\"", "key `ca`: "),
        ("ca = \"garbage.pem\"", "no PEM certificate"),
        ("ca = \"broken.pem\"", "not a valid PEM file"),
        ("ca = \"badca.pem\"", "not a usable CA certificate"),
        (
            "client = [[\"client.pem\", \"missing.key\"]]",
            "missing.key",
        ),
        ("client = \"client.pem\"", "no private key"),
        (
            "client = [[\"client.pem\", \"other.key\"]]",
            "the key is not the certificate's",
        ),
        (
            "client = [[\"client.key\", \"client.key\"]]",
            "no PEM certificate",
        ),
        (
            "client = [[\"client.pem\", \"garbage.pem\"]]",
            "no private key",
        ),
        // A host that is skipped still has its files checked.
        (
            "[host.\"https://m\"]\ncapabilities = [\"push\"]\nca = \"missing.pem\"",
            "host \"https://m\": key `ca`",
        ),
    ] {
        fs::write(d.join("hosts.toml"), text).unwrap();
        let e = endpoints(dir.path(), "quay.io").unwrap_err().to_string();
        assert!(e.contains("quay.io/hosts.toml"), "{text}: {e}");
        assert!(e.contains(want), "{text}: {e}");
        let key_b64 = CLIENT_KEY.lines().nth(1).unwrap();
        assert!(!e.contains(key_b64), "{e}");
        // Another registry's file is unaffected by this one.
        assert_eq!(endpoints(dir.path(), "ghcr.io").unwrap().len(), 1);
    }
}

#[test]
fn unknown_keys_and_broken_files_are_errors_naming_the_file() {
    for (text, want) in [
        ("servr = \"https://x\"\n", "unknown key `servr`"),
        (
            "[host.\"https://m.example\"]\nskip_verfy = true\n",
            "host \"https://m.example\": unknown key `skip_verfy`",
        ),
        ("server = [", ""),
        ("capabilities = [\"push\"]\n", "no host may pull"),
    ] {
        let (dir, _) = with_file("quay.io", text);
        let e = endpoints(dir.path(), "quay.io").unwrap_err().to_string();
        assert!(e.contains("quay.io/hosts.toml"), "{e}");
        assert!(e.contains(want), "{text:?}: {e}");
    }
    // Top-level capabilities are the upstream's: without pull or resolve,
    // only the mirror serves.
    let (dir, _) = with_file(
        "quay.io",
        "capabilities = [\"push\"]\n[host.\"http://10.0.0.9:5000\"]\n",
    );
    let e = endpoints(dir.path(), "quay.io").unwrap();
    assert_eq!(e.len(), 1, "only the mirror: {e:?}");
    // The upstream may resolve only: it stays, for tags.
    let (dir, _) = with_file(
        "quay.io",
        "capabilities = [\"resolve\"]\n[host.\"http://10.0.0.9:5000\"]\ncapabilities = [\"pull\"]\n",
    );
    let e = endpoints(dir.path(), "quay.io").unwrap();
    assert!(e[1].resolve && !e[1].pull && !e[1].mirror, "{e:?}");
}

#[test]
fn directories_are_looked_up_as_containerd_does() {
    let dir = tempfile::tempdir().unwrap();
    let put = |name: &str, server: &str| {
        let d = dir.path().join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("hosts.toml"), format!("server = \"{server}\"\n")).unwrap();
    };
    put("_default", "https://default.example");
    put("reg.example:5000", "https://colon.example");
    put("reg.example_5000_", "https://underscore.example");
    put("other.example:5000", "https://colon-only.example");
    let first = |r: &str| endpoints(dir.path(), r).unwrap()[0].host.clone();
    assert_eq!(first("reg.example:5000"), "underscore.example");
    assert_eq!(first("other.example:5000"), "colon-only.example");
    assert_eq!(first("quay.io"), "default.example");
    // A directory without hosts.toml stops the search: Docker's
    // certificate files, here none, so the registry itself.
    fs::create_dir_all(dir.path().join("plain.example")).unwrap();
    assert_eq!(first("plain.example"), "plain.example");
}

#[test]
fn docker_certificate_files_without_hosts_toml() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("127.0.0.1:5000");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("ca.crt"), CA).unwrap();
    fs::write(d.join("client.cert"), CLIENT).unwrap();
    fs::write(d.join("client.key"), CLIENT_KEY).unwrap();
    let e = endpoints(dir.path(), "127.0.0.1:5000").unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].base_url(),
        "https://127.0.0.1:5000/v2",
        "certificates mean TLS"
    );
    assert_eq!(e[0].transport.roots.len(), 1);
    assert_eq!(e[0].transport.clients.len(), 1);
    // A .cert whose key does not match is the directory's error.
    fs::write(d.join("client.key"), OTHER_KEY).unwrap();
    let e = endpoints(dir.path(), "127.0.0.1:5000").unwrap_err();
    assert!(e.path.ends_with("127.0.0.1:5000"), "{e}");
    assert!(e.to_string().contains("not the certificate's"), "{e}");
}

#[test]
fn survey_reports_each_file_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let put = |name: &str, text: &str| {
        let d = dir.path().join(name);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("hosts.toml"), text).unwrap();
    };
    put("_default", "[host.\"https://mirror.example/x\"]\n");
    put("bad.example", "ca = \"missing.pem\"\n");
    put(
        "good.example_5000_",
        "[host.\"http://10.0.0.1:5000\"]\ncapabilities = [\"pull\"]\n[host.\"http://10.0.0.1:5000\".header]\nx-token = \"secret-value\"\n",
    );
    let s = survey(dir.path());
    let names: Vec<_> = s.iter().map(|r| r.registry.as_str()).collect();
    assert_eq!(names, ["_default", "bad.example", "good.example:5000"]);
    let urls = |r: &RegistryConfig| r.hosts.iter().map(|h| h.url.clone()).collect::<Vec<_>>();
    assert_eq!(
        urls(&s[0]),
        ["https://mirror.example/x/v2", "https://<registry>/v2"]
    );
    assert!(s[1].hosts.is_empty());
    let e = s[1].error.as_deref().unwrap();
    assert!(
        e.contains("bad.example/hosts.toml") && e.contains("key `ca`"),
        "{e}"
    );
    assert_eq!(
        urls(&s[2]),
        ["http://10.0.0.1:5000/v2", "https://good.example:5000/v2"]
    );
    assert_eq!(s[2].hosts[0].capabilities, ["pull"]);
    let json = serde_json::to_string(&s).unwrap();
    assert!(
        json.contains("x-token") && !json.contains("secret-value"),
        "{json}"
    );
    assert!(survey(&dir.path().join("nonexistent")).is_empty());
}

#[test]
fn issuer_of_a_certificate() {
    let cert = CertificateDer::from_pem_slice(CLIENT.as_bytes()).unwrap();
    let ca = CertificateDer::from_pem_slice(CA.as_bytes()).unwrap();
    let issuer = issuer(&cert).unwrap();
    // The client's issuer is the CA's subject, which for a self-signed CA
    // is also its issuer.
    assert_eq!(Some(issuer), super::issuer(&ca));
    assert_eq!(issuer[0], 0x30);
    assert!(
        issuer
            .windows(b"berth unit test CA".len())
            .any(|w| w == b"berth unit test CA")
    );
    assert_eq!(super::issuer(b"\x30\x03\x02\x01"), None);
    assert_eq!(super::issuer(b""), None);
}

use rustls::pki_types::pem::PemObject as _;
