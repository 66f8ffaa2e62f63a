//! The test fixtures themselves: layers, images, registries, archives.
//! Images are pushed to a real docker-registry and fetched back with
//! oci-client (a second, independent client), then checked byte for byte.
//!
//! Kept as one file past ~600 lines: the fixtures are one concern, checked
//! against one registry and client; each test covers one fixture.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::time::Instant;

use berth_e2e::env::scratch_dir;
use berth_e2e::fixture::busybox::{
    APP_HELLO, APP_HELLO_CONTENT, PLATFORM_FILE, busybox_multiplatform_with,
    multiplatform_platforms,
};
use berth_e2e::fixture::hostile;
use berth_e2e::fixture::*;
use berth_e2e::root_or_skip;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;

/// One tar member, parsed back.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<Vec<u8>>,
    data: Vec<u8>,
    dev: Option<(u32, u32)>,
    pax: BTreeMap<String, Vec<u8>>,
}

/// Parses a tar with the `tar` crate: member name bytes → member, in order.
fn parse_tar(tar: &[u8]) -> Vec<(Vec<u8>, Member)> {
    let mut a = tar::Archive::new(tar);
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut pax = BTreeMap::new();
        if let Some(exts) = e.pax_extensions().unwrap() {
            for x in exts {
                let x = x.unwrap();
                pax.insert(x.key().unwrap().to_owned(), x.value_bytes().to_vec());
            }
        }
        let h = e.header().clone();
        let name = e.path_bytes().into_owned();
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let kind = h.entry_type();
        let dev = matches!(kind, tar::EntryType::Char | tar::EntryType::Block).then(|| {
            (
                h.device_major().unwrap().unwrap(),
                h.device_minor().unwrap().unwrap(),
            )
        });
        out.push((
            name,
            Member {
                kind,
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                mtime: h.mtime().unwrap(),
                link,
                data,
                dev,
                pax,
            },
        ));
    }
    out
}

fn members(tar: &[u8]) -> HashMap<String, Member> {
    parse_tar(tar)
        .into_iter()
        .map(|(n, m)| (String::from_utf8_lossy(&n).into_owned(), m))
        .collect()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn layer_builder_writes_every_entry_kind() {
    let b = hostile::special_files()
        .whiteout("etc/gone")
        .opaque("var/lib")
        .opaque("")
        .entry(Entry::block_device("sda", 8, 0));
    let tar = b.tar();
    assert_eq!(tar, b.tar(), "deterministic");
    assert_eq!(tar.len() % 512, 0);
    let m = members(&tar);
    let deep = format!("deep/{}/{}", "d".repeat(90), "f".repeat(90));
    assert_eq!(m[&deep].data, b"deep\n", "long name via ustar prefix");
    let longlink = &m["longlink"];
    assert_eq!(longlink.kind, tar::EntryType::Symlink);
    assert_eq!(
        longlink.link.as_deref().unwrap(),
        format!("/{}", "t".repeat(150)).as_bytes(),
        "link target over 100 bytes via PAX linkpath"
    );
    assert_eq!(m["xattr"].pax["SCHILY.xattr.user.berth"], b"1");
    assert_eq!(m["setuid"].mode, 0o4755);
    assert_eq!(m["sticky/"].mode, 0o1777);
    assert_eq!(m["sticky/"].kind, tar::EntryType::Directory);
    assert_eq!((m["nobody"].uid, m["nobody"].gid), (65534, 65534));
    assert_eq!(
        (m["app-owned"].uid, m["app-owned"].gid, m["app-owned"].mode),
        (1000, 1000, 0o600)
    );
    assert_eq!(m["fifo"].kind, tar::EntryType::Fifo);
    assert_eq!(m["null"].kind, tar::EntryType::Char);
    assert_eq!(m["null"].dev, Some((1, 3)));
    assert_eq!(m["sda"].kind, tar::EntryType::Block);
    assert_eq!(m["sda"].dev, Some((8, 0)));
    assert_eq!(m["hard"].kind, tar::EntryType::Link);
    assert_eq!(m["hard"].link.as_deref(), Some(&b"orig"[..]));
    assert_eq!(m["empty"].data, b"");
    assert_eq!(m["private/"].mode, 0o700);
    assert_eq!(m["old"].mtime, 1_000_000_000);
    assert_eq!(m["orig"].mtime, layer::MTIME);
    assert_eq!(m["etc/.wh.gone"].kind, tar::EntryType::Regular);
    assert!(m.contains_key("var/lib/.wh..wh..opq"));
    assert!(m.contains_key(".wh..wh..opq"));

    for (c, mt) in [
        (Compression::None, media_type::OCI_LAYER_TAR),
        (Compression::Gzip, media_type::OCI_LAYER_GZIP),
        (Compression::Zstd, media_type::OCI_LAYER_ZSTD),
    ] {
        let l = b.build(c);
        assert_eq!(l, b.build(c), "{c:?} deterministic");
        assert_eq!(l.media_type(), mt);
        assert_eq!(l.diff_id, sha256_digest(&tar));
        assert_eq!(l.digest(), sha256_digest(&l.blob.data));
        assert_eq!(l.size(), l.blob.data.len() as u64);
        assert_eq!(l.tar(), tar, "{c:?} round trip");
    }
    assert_eq!(b.build(Compression::None).blob.data, tar);
    let gz = b.build(Compression::Gzip).blob.data;
    assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "gzip mtime 0");
    let zst = b.build(Compression::Zstd).blob.data;
    assert_eq!(&zst[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
}

#[test]
#[should_panic(expected = "not a clean relative path")]
fn checked_entries_refuse_dotdot() {
    let _ = Entry::file("a/../b", "x");
}

#[test]
fn hostile_names_are_written_verbatim() {
    let up = "../".repeat(16);
    let names = |b: LayerBuilder| -> Vec<(String, Option<String>)> {
        parse_tar(&b.tar())
            .into_iter()
            .map(|(n, m)| {
                (
                    String::from_utf8(n).unwrap(),
                    m.link.map(|l| String::from_utf8(l).unwrap()),
                )
            })
            .collect()
    };
    let d = names(hostile::dotdot_file());
    assert_eq!(d[0].0, format!("{up}tmp/berth-escape-dotdot"));
    assert_eq!(d[2].0, format!("a/{up}tmp/berth-escape-dotdot"));
    assert_eq!(
        names(hostile::absolute_file())[0].0,
        "/tmp/berth-escape-absolute"
    );
    let h = names(hostile::hardlink_escape());
    assert_eq!(
        h[0],
        (
            "link-up".into(),
            Some(format!("{up}tmp/berth-hardlink-decoy"))
        )
    );
    assert_eq!(
        h[1],
        ("link-abs".into(), Some(hostile::HARDLINK_DECOY.into()))
    );
    assert_eq!(h[2], ("link-up".into(), None));
    let s = names(hostile::symlink_traversal());
    assert_eq!(s[0], ("escape".into(), Some("/tmp".into())));
    assert_eq!(s[1].0, "escape/berth-escape-symlink");
    let s = names(hostile::symlink_dir_traversal());
    assert_eq!(s[0], ("up".into(), Some(format!("{up}tmp"))));
    let w = names(hostile::whiteout_traversal());
    assert_eq!(w[1].0, "etc/.wh...");
    assert_eq!(w[2].0, ".wh...");
    assert_eq!(w[3].0, format!("{up}tmp/.wh.berth-whiteout-decoy"));
    // A name too long for ustar goes to a PAX path record, verbatim.
    let long = format!("../{}", "x".repeat(200));
    let t = LayerBuilder::new()
        .entry(Entry::raw(long.clone(), EntryKind::File("x".into())))
        .tar();
    let p = parse_tar(&t);
    assert_eq!(p[0].0, long.as_bytes());
    assert_eq!(p[0].1.pax["path"], long.as_bytes());
    // Through an image: the hostile layer is on top of busybox.
    let img = hostile::on_busybox(hostile::dotdot_file(), "hostile");
    assert_eq!(img.layers.len(), 4);
    assert_eq!(
        img.layers[3].tar(),
        hostile::dotdot_file().tar(),
        "top layer is the hostile one"
    );
}

/// Checks an image's internal consistency; returns the config JSON.
fn check_image(img: &Image) -> Value {
    let m = json(&img.manifest.data);
    assert_eq!(img.manifest.media_type, img.format.manifest_media_type());
    assert_eq!(m["mediaType"], img.format.manifest_media_type());
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["config"]["digest"], img.config.digest);
    assert_eq!(m["config"]["size"], img.config.size());
    assert_eq!(m["config"]["mediaType"], img.config.media_type);
    assert_eq!(img.manifest.digest, sha256_digest(&img.manifest.data));
    assert_eq!(img.config.digest, sha256_digest(&img.config.data));
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), img.layers.len());
    for (d, l) in layers.iter().zip(&img.layers) {
        assert_eq!(d["digest"], l.digest());
        assert_eq!(d["size"], l.size());
        assert_eq!(d["mediaType"], l.media_type());
        assert_eq!(l.digest(), sha256_digest(&l.blob.data));
    }
    let c = json(&img.config.data);
    assert_eq!(c["architecture"], img.platform.architecture);
    assert_eq!(c["os"], img.platform.os);
    assert_eq!(c["rootfs"]["type"], "layers");
    let diff_ids: Vec<String> = c["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(diff_ids, img.diff_ids());
    if img.format == ManifestFormat::Oci {
        let parsed: oci_spec::image::ImageManifest =
            serde_json::from_slice(&img.manifest.data).expect("valid OCI manifest");
        assert_eq!(parsed.layers().len(), img.layers.len());
    }
    let parsed: oci_spec::image::ImageConfiguration =
        serde_json::from_slice(&img.config.data).expect("valid image config");
    assert_eq!(parsed.rootfs().diff_ids().len(), img.layers.len());
    c
}

#[test]
fn busybox_images_are_deterministic_and_well_formed() {
    let started = Instant::now();
    let img = busybox();
    eprintln!("busybox() built in {:.2?}", started.elapsed());
    assert_eq!(img, busybox(), "same inputs, same bytes");
    assert_eq!(img.format, ManifestFormat::Docker);
    assert!(img.layers.len() >= 3);
    let c = check_image(&img);
    assert_eq!(c["config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(c["config"]["Env"][0].as_str().unwrap().starts_with("PATH="));
    assert_eq!(c["history"].as_array().unwrap().len(), img.layers.len());
    for l in &img.layers {
        assert_eq!(l.media_type(), media_type::DOCKER_LAYER_GZIP);
    }
    let bb = members(&img.layers[0].tar());
    assert_eq!(
        bb["bin/busybox"].data,
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(bb["bin/busybox"].mode, 0o755);
    assert_eq!(bb["bin/sh"].kind, tar::EntryType::Symlink);
    assert_eq!(bb["bin/sh"].link.as_deref(), Some(&b"/bin/busybox"[..]));
    let etc = members(&img.layers[1].tar());
    let passwd = String::from_utf8(etc["etc/passwd"].data.clone()).unwrap();
    assert!(passwd.contains("app:x:1000:1000:"), "{passwd}");
    assert!(passwd.contains(":65534:65534:"), "{passwd}");
    assert!(String::from_utf8_lossy(&etc["etc/group"].data).contains("app:x:1000:"));
    assert_eq!(etc["tmp/"].mode, 0o1777);
    assert_eq!(etc["root/"].mode, 0o700);
    for d in ["dev/", "proc/", "sys/", "var/tmp/", "home/"] {
        assert!(etc.contains_key(d), "{d}");
    }
    let app = members(&img.layers[2].tar());
    assert_eq!(app[APP_HELLO].data, APP_HELLO_CONTENT.as_bytes());
    assert_eq!(app["app/data/"].kind, tar::EntryType::Directory);

    for (img, mt) in [
        (busybox_oci(), media_type::OCI_LAYER_GZIP),
        (busybox_zstd(), media_type::OCI_LAYER_ZSTD),
        (busybox_uncompressed(), media_type::OCI_LAYER_TAR),
    ] {
        assert_eq!(img.format, ManifestFormat::Oci);
        check_image(&img);
        assert!(img.layers.iter().all(|l| l.media_type() == mt), "{mt}");
        // Same content, so the same diff_ids as the Docker image.
        assert_eq!(img.diff_ids(), busybox().diff_ids());
    }

    let w = busybox_whiteouts();
    check_image(&w);
    assert_eq!(w.layers.len(), 4);
    let top = members(&w.layers[3].tar());
    for n in [
        "app/.wh.hello.txt",
        "app/.wh.cache",
        "app/data/.wh..wh..opq",
        "app/data/new.txt",
    ] {
        assert!(top.contains_key(n), "{n} in {:?}", top.keys());
    }

    let other = busybox_builder(ManifestFormat::Docker, Compression::Gzip)
        .user("app")
        .build();
    assert_ne!(other.digest(), img.digest());
    assert_eq!(other.layers, img.layers);
}

#[test]
fn multiplatform_index_lists_distinct_images() {
    for format in [ManifestFormat::Oci, ManifestFormat::Docker] {
        let idx = busybox_multiplatform_with(format);
        assert_eq!(idx, busybox_multiplatform_with(format));
        let j = json(&idx.index.data);
        assert_eq!(j["mediaType"], format.index_media_type());
        assert_eq!(idx.index.media_type, format.index_media_type());
        let entries = j["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        let mut digests = std::collections::HashSet::new();
        let mut configs = std::collections::HashSet::new();
        for (e, p) in entries.iter().zip(multiplatform_platforms()) {
            let img = idx.image_for(&p).unwrap();
            check_image(img);
            assert_eq!(e["digest"], img.digest());
            assert_eq!(e["size"], img.manifest.size());
            assert_eq!(e["mediaType"], format.manifest_media_type());
            assert_eq!(e["platform"], p.to_json());
            let c = json(&img.config.data);
            assert_eq!(c["architecture"], p.architecture);
            assert_eq!(
                c.get("variant").and_then(Value::as_str),
                p.variant.as_deref()
            );
            let top = members(&img.layers.last().unwrap().tar());
            assert_eq!(top[PLATFORM_FILE].data, format!("{p}\n").as_bytes());
            digests.insert(img.digest().to_owned());
            configs.insert(img.id().to_owned());
        }
        assert_eq!((digests.len(), configs.len()), (3, 3));
        if format == ManifestFormat::Oci {
            let parsed: oci_spec::image::ImageIndex =
                serde_json::from_slice(&idx.index.data).expect("valid OCI index");
            assert_eq!(parsed.manifests().len(), 3);
        }
    }
    assert_eq!(busybox_multiplatform().format, ManifestFormat::Oci);
}

#[test]
fn dynamic_busybox_has_libs_and_hard_links() {
    if !root_or_skip("dynamic_busybox_has_libs_and_hard_links") {
        return;
    }
    let img = busybox_dynamic();
    check_image(&img);
    let m = members(&img.layers[0].tar());
    let bin = &m["bin/busybox"];
    assert!(bin.data.len() > 100_000);
    assert_ne!(
        bin.data,
        std::fs::read("/bin/busybox").unwrap(),
        "not the static one"
    );
    for lib in [
        "lib/x86_64-linux-gnu/libc.so.6",
        "lib64/ld-linux-x86-64.so.2",
    ] {
        let l = &m[lib];
        assert_eq!(l.kind, tar::EntryType::Regular, "{lib}");
        assert!(
            l.data.starts_with(b"\x7fELF"),
            "{lib} is the library itself"
        );
    }
    for applet in ["bin/sh", "bin/ls", "bin/cat"] {
        assert_eq!(m[applet].kind, tar::EntryType::Link, "{applet}");
        assert_eq!(m[applet].link.as_deref(), Some(&b"bin/busybox"[..]));
    }
    // Hard links come after their target in the same layer.
    let order: Vec<String> = parse_tar(&img.layers[0].tar())
        .into_iter()
        .map(|(n, _)| String::from_utf8(n).unwrap())
        .collect();
    let pos = |n: &str| order.iter().position(|o| o == n).unwrap();
    assert!(pos("bin/busybox") < pos("bin/sh"));
    assert_eq!(img, busybox_dynamic());
}

fn oci_client() -> Client {
    install_crypto_provider();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

const ACCEPT: &[&str] = &[
    media_type::OCI_MANIFEST,
    media_type::OCI_INDEX,
    media_type::DOCKER_MANIFEST,
    media_type::DOCKER_MANIFEST_LIST,
];

/// Pulls `img`'s manifest and every blob back through oci-client and checks
/// bytes, digests and diff_ids.
async fn pull_back(client: &Client, auth: &RegistryAuth, reference: &str, img: &Image) {
    let r: Reference = reference.parse().unwrap();
    let (bytes, digest) = client.pull_manifest_raw(&r, auth, ACCEPT).await.unwrap();
    assert_eq!(digest, img.digest(), "{reference}");
    assert_eq!(bytes, img.manifest.data, "{reference}");
    let mut config = Vec::new();
    client.pull_blob(&r, img.id(), &mut config).await.unwrap();
    assert_eq!(config, img.config.data);
    let m = json(&bytes);
    for (d, l) in m["layers"].as_array().unwrap().iter().zip(&img.layers) {
        let mut blob = Vec::new();
        client
            .pull_blob(&r, d["digest"].as_str().unwrap(), &mut blob)
            .await
            .unwrap();
        assert_eq!(sha256_digest(&blob), l.digest());
        assert_eq!(
            sha256_digest(&l.compression.decompress(&blob)),
            l.diff_id,
            "diff_id of {}",
            l.digest()
        );
    }
}

/// Pushes every busybox kind to `reg` and pulls each back.
async fn push_all_and_pull_back(reg: &Registry, auth: &RegistryAuth) {
    let client = oci_client();
    let images = [
        ("busybox", busybox()),
        ("busybox-oci", busybox_oci()),
        ("busybox-zstd", busybox_zstd()),
        ("busybox-tar", busybox_uncompressed()),
        ("busybox-wh", busybox_whiteouts()),
    ];
    for (repo, img) in &images {
        let d = reg.push(img, repo, "latest").await;
        assert_eq!(d, img.digest());
        pull_back(&client, auth, &reg.reference(repo, "latest"), img).await;
        pull_back(
            &client,
            auth,
            &reg.reference_by_digest(repo, d.as_str()),
            img,
        )
        .await;
    }
    for format in [ManifestFormat::Oci, ManifestFormat::Docker] {
        let idx = busybox_multiplatform_with(format);
        let repo = format!("multi-{format:?}").to_lowercase();
        let d = reg.push(&idx, &repo, "v1").await;
        assert_eq!(d, idx.digest());
        let r: Reference = reg.reference(&repo, "v1").parse().unwrap();
        let (bytes, digest) = client.pull_manifest_raw(&r, auth, ACCEPT).await.unwrap();
        assert_eq!(
            (bytes, digest.as_str()),
            (idx.index.data.clone(), idx.digest())
        );
        for img in &idx.images {
            pull_back(
                &client,
                auth,
                &reg.reference_by_digest(&repo, img.digest()),
                img,
            )
            .await;
        }
        // oci-client's own platform resolution picks the amd64 image.
        let (m, digest) = client.pull_image_manifest(&r, auth).await.unwrap();
        let amd64 = idx.image_for(&Platform::linux_amd64()).unwrap();
        assert_eq!(digest, amd64.digest());
        assert_eq!(m.config.digest, amd64.id());
    }
}

#[tokio::test]
async fn push_and_pull_without_auth() {
    if !root_or_skip("push_and_pull_without_auth") {
        return;
    }
    let reg = Registry::start(None);
    assert_eq!(reg.http_get("/v2/", None, false).await.status, 200);
    push_all_and_pull_back(&reg, &RegistryAuth::Anonymous).await;
    let dynamic = busybox_dynamic();
    reg.push(&dynamic, "busybox-dynamic", "latest").await;
    pull_back(
        &oci_client(),
        &RegistryAuth::Anonymous,
        &reg.reference("busybox-dynamic", "latest"),
        &dynamic,
    )
    .await;
    let catalog = reg.http_get("/v2/_catalog", None, false).await;
    assert_eq!(catalog.status, 200);
    let repos = json(&catalog.body)["repositories"].clone();
    assert!(repos.as_array().unwrap().len() >= 8, "{repos}");
    let dir = reg.dir().to_owned();
    drop(reg);
    assert!(!dir.exists(), "registry dir removed on drop");
}

#[tokio::test]
async fn push_and_pull_with_auth() {
    if !root_or_skip("push_and_pull_with_auth") {
        return;
    }
    let reg = Registry::start(Some(("berth", "s3cret!")));
    assert_eq!(reg.credentials(), Some(("berth", "s3cret!")));
    // Anonymous: refused, with a basic challenge.
    let anon = reg.http_get("/v2/", None, false).await;
    assert_eq!(anon.status, 401);
    assert!(
        anon.header("www-authenticate")
            .unwrap()
            .starts_with("Basic "),
        "{:?}",
        anon.headers
    );
    assert_eq!(reg.http_get("/v2/", None, true).await.status, 200);
    let auth = RegistryAuth::Basic("berth".into(), "s3cret!".into());
    push_all_and_pull_back(&reg, &auth).await;
    let resp = reg
        .http_get(
            "/v2/busybox/manifests/latest",
            Some(media_type::DOCKER_MANIFEST),
            false,
        )
        .await;
    assert_eq!(resp.status, 401, "anonymous manifest GET");
    let r: Reference = reg.reference("busybox", "latest").parse().unwrap();
    let anonymous = oci_client()
        .pull_manifest_raw(&r, &RegistryAuth::Anonymous, ACCEPT)
        .await;
    assert!(anonymous.is_err(), "anonymous pull must fail");
    let wrong = oci_client()
        .pull_manifest_raw(
            &r,
            &RegistryAuth::Basic("berth".into(), "nope".into()),
            ACCEPT,
        )
        .await;
    assert!(wrong.is_err(), "wrong password must fail");
}

#[tokio::test]
async fn corrupt_blobs_and_unsupported_media_types() {
    if !root_or_skip("corrupt_blobs_and_unsupported_media_types") {
        return;
    }
    let reg = Registry::start(None);
    let client = oci_client();
    let anon = RegistryAuth::Anonymous;

    // A hostile layer goes through the registry byte for byte. (Pushed
    // first: it shares busybox's blobs, which are damaged below.)
    let h = hostile::on_busybox(hostile::hardlink_escape(), "hostile");
    reg.push(&h, "hostile", "latest").await;
    pull_back(&client, &anon, &reg.reference("hostile", "latest"), &h).await;

    // An uncompressed layer with one byte of file data flipped: same size,
    // still a valid tar, wrong digest.
    let img = busybox_uncompressed();
    let app = &img.layers[2];
    let tar = app.tar();
    let offset = tar
        .windows(APP_HELLO_CONTENT.len())
        .position(|w| w == APP_HELLO_CONTENT.as_bytes())
        .unwrap();
    let digest = reg
        .push_corrupt_layer(&img, "corrupt", "latest", 2, Corruption::FlipByte(offset))
        .await;
    assert_eq!(digest, app.digest());
    let r: Reference = reg.reference("corrupt", "latest").parse().unwrap();
    let (bytes, _) = client.pull_manifest_raw(&r, &anon, ACCEPT).await.unwrap();
    assert_eq!(bytes, img.manifest.data, "the manifest is intact");
    let resp = reg
        .http_get(&format!("/v2/corrupt/blobs/{digest}"), None, false)
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("docker-content-digest"), Some(digest.as_str()));
    let served = resp.body;
    assert_eq!(served.len() as u64, app.size(), "same size");
    assert_ne!(sha256_digest(&served), digest, "served bytes do not match");
    assert!(!members(&served).is_empty(), "still a valid tar");
    let mut out = Vec::new();
    let err = client
        .pull_blob(&r, digest.as_str(), &mut out)
        .await
        .expect_err("oci-client verifies the digest");
    eprintln!("corrupt blob pull error: {err}");
    // The other layers are untouched.
    let mut out = Vec::new();
    client
        .pull_blob(&r, img.layers[0].digest(), &mut out)
        .await
        .unwrap();

    // Truncated and removed blobs.
    let gz = busybox();
    let d1 = reg
        .push_corrupt_layer(&gz, "truncated", "latest", 1, Corruption::Truncate(10))
        .await;
    let resp = reg
        .http_get(&format!("/v2/truncated/blobs/{d1}"), None, false)
        .await;
    assert_eq!((resp.status, resp.body.len()), (200, 10));
    reg.corrupt_blob(gz.layers[2].digest(), Corruption::Remove);
    let resp = reg
        .http_get(
            &format!("/v2/truncated/blobs/{}", gz.layers[2].digest()),
            None,
            false,
        )
        .await;
    assert_eq!(resp.status, 404);

    // Schema 1: served as the signed schema 1 media type.
    let s1 = reg.put_schema1_manifest("schema1", "latest").await;
    let resp = reg
        .http_get(
            "/v2/schema1/manifests/latest",
            Some(&format!(
                "{},{}",
                media_type::OCI_MANIFEST,
                media_type::DOCKER_MANIFEST
            )),
            false,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(
        resp.header("content-type"),
        Some(media_type::DOCKER_SCHEMA1_SIGNED)
    );
    assert_eq!(resp.header("docker-content-digest"), Some(s1.as_str()));
    let j = json(&resp.body);
    assert_eq!(j["schemaVersion"], 1);
    assert!(j["signatures"].is_array(), "signed by the registry");
    let r1: Reference = reg.reference("schema1", "latest").parse().unwrap();
    let err = client
        .pull_manifest_raw(&r1, &anon, ACCEPT)
        .await
        .expect_err("schema 1 is refused");
    eprintln!("schema 1 pull error: {err}");

    // An OCI manifest with unknown config and layer media types.
    let art = hostile::unsupported_media_types();
    reg.push(&art, "artifact", "latest").await;
    let ra: Reference = reg.reference("artifact", "latest").parse().unwrap();
    let (bytes, _) = client.pull_manifest_raw(&ra, &anon, ACCEPT).await.unwrap();
    let m = json(&bytes);
    assert_eq!(m["config"]["mediaType"], hostile::UNSUPPORTED_CONFIG);
    assert_eq!(m["layers"][0]["mediaType"], hostile::UNSUPPORTED_LAYER);
}

/// Parses a tar of files into name → bytes (dirs skipped).
fn tar_files(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
    parse_tar(tar)
        .into_iter()
        .filter(|(_, m)| m.kind == tar::EntryType::Regular)
        .map(|(n, m)| (String::from_utf8(n).unwrap(), m.data))
        .collect()
}

#[test]
fn archives_parse_back() {
    let img = busybox_oci();
    let name = "registry.k8s.io/berth/busybox:1.36";
    let a = oci_archive(&img, name);
    assert_eq!(a, oci_archive(&img, name), "deterministic");
    let files = tar_files(&a);
    assert_eq!(
        json(&files["oci-layout"]),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = json(&files["index.json"]);
    let entry = &index["manifests"][0];
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(entry["digest"], img.digest());
    assert_eq!(entry["mediaType"], media_type::OCI_MANIFEST);
    assert_eq!(entry["annotations"]["io.containerd.image.name"], name);
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "1.36"
    );
    assert_eq!(entry["platform"]["architecture"], "amd64");
    let _: oci_spec::image::ImageIndex = serde_json::from_slice(&files["index.json"]).unwrap();
    for (path, data) in &files {
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256_digest(data), format!("sha256:{hex}"), "{path}");
        }
    }
    let blob =
        |d: &str| files[&format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))].clone();
    assert_eq!(blob(img.digest()), img.manifest.data);
    assert_eq!(blob(img.id()), img.config.data);
    for l in &img.layers {
        assert_eq!(blob(l.digest()), l.blob.data);
    }
    assert_eq!(files.len(), 2 + 2 + img.layers.len());

    // An index: index.json points at the nested index.
    let idx = busybox_multiplatform();
    let a = oci_archive(&idx, "busybox:multi");
    let files = tar_files(&a);
    let index = json(&files["index.json"]);
    assert_eq!(index["manifests"][0]["digest"], idx.digest());
    assert_eq!(index["manifests"][0]["mediaType"], media_type::OCI_INDEX);
    assert!(index["manifests"][0].get("platform").is_none());
    for i in &idx.images {
        assert!(files.contains_key(&format!("blobs/sha256/{}", i.manifest.hex())));
        assert!(files.contains_key(&format!("blobs/sha256/{}", i.config.hex())));
    }

    // docker save.
    let img = busybox();
    let d = docker_archive(&img, "127.0.0.1:5000/busybox");
    assert_eq!(d, docker_archive(&img, "127.0.0.1:5000/busybox"));
    let files = tar_files(&d);
    let manifest = json(&files["manifest.json"]);
    let m = &manifest[0];
    assert_eq!(
        m["RepoTags"],
        serde_json::json!(["127.0.0.1:5000/busybox:latest"])
    );
    let config = m["Config"].as_str().unwrap();
    assert_eq!(files[config], img.config.data);
    assert_eq!(config, format!("{}.json", img.config.hex()));
    let layers = m["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), img.layers.len());
    for (p, l) in layers.iter().zip(&img.layers) {
        let tar = &files[p.as_str().unwrap()];
        assert_eq!(
            sha256_digest(tar),
            l.diff_id,
            "layer.tar is the uncompressed layer"
        );
    }
    let repos = json(&files["repositories"]);
    let top = layers
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert_eq!(repos["127.0.0.1:5000/busybox"]["latest"], top);

    // Files on disk are the same bytes.
    let dir = scratch_dir("fixture-archive");
    write_oci_archive(&img, "busybox:latest", &dir.join("oci.tar"));
    write_docker_archive(&img, "busybox:latest", &dir.join("docker.tar"));
    assert_eq!(
        std::fs::read(dir.join("oci.tar")).unwrap(),
        oci_archive(&img, "busybox:latest")
    );
    assert_eq!(
        std::fs::read(dir.join("docker.tar")).unwrap(),
        docker_archive(&img, "busybox:latest")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn large_debian_is_built_once_and_pushes() {
    if !root_or_skip("large_debian_is_built_once_and_pushes") {
        return;
    }
    let started = Instant::now();
    let img = tokio::task::spawn_blocking(large_debian).await.unwrap();
    let first = started.elapsed();
    let started = Instant::now();
    let again = tokio::task::spawn_blocking(large_debian).await.unwrap();
    let cached = started.elapsed();
    assert_eq!(img, again, "read back from the cache");
    check_image(&img);
    let unpacked = large::large_debian_unpacked_size();
    let tar_sizes = large::large_debian_tar_sizes();
    assert_eq!(tar_sizes.len(), img.layers.len());
    // Check the smallest layer's diff_id and size (gunzipping all of them
    // takes long in a debug build); the registry checks every digest.
    let (small, tar_size) = img
        .layers
        .iter()
        .zip(&tar_sizes)
        .min_by_key(|(l, _)| l.size())
        .unwrap();
    let tar = small.tar();
    assert_eq!(tar.len() as u64, *tar_size);
    assert_eq!(sha256_digest(&tar), small.diff_id);
    eprintln!(
        "large_debian: {} layers, {:.1} MB compressed, {:.1} MB uncompressed; first call {first:.1?}, cached call {cached:.1?}; cache {}",
        img.layers.len(),
        img.layers_size() as f64 / 1e6,
        unpacked as f64 / 1e6,
        large::large_debian_cache().display()
    );
    assert!(unpacked > 100_000_000, "{unpacked} bytes");
    assert!(img.layers.len() >= 4);

    let reg = Registry::start(None);
    let started = Instant::now();
    reg.push(&img, "debian", "bookworm").await;
    eprintln!("large_debian: pushed in {:.1?}", started.elapsed());
    let client = oci_client();
    let r: Reference = reg.reference("debian", "bookworm").parse().unwrap();
    let (bytes, _) = client
        .pull_manifest_raw(&r, &RegistryAuth::Anonymous, ACCEPT)
        .await
        .unwrap();
    assert_eq!(bytes, img.manifest.data);
    for l in &img.layers {
        assert_eq!(
            std::fs::metadata(reg.blob_path(l.digest())).unwrap().len(),
            l.size()
        );
    }
}
