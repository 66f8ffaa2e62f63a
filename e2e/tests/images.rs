//! The CRI ImageService against a real registry (Debian's docker-registry
//! on 127.0.0.1), with images built from Debian's busybox packages.
//!
//! Kept as one file past ~600 lines: one service (images) against one
//! registry; each test is one RPC or failure mode.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_cli::client::CriClient;
use berth_e2e::fixture::{self, Corruption, Registry};
use berth_e2e::{Berthd, root_or_skip};
use k8s_cri::v1::*;
use tonic::Code;

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}

async fn pull(
    c: &mut CriClient,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, tonic::Status> {
    c.image
        .pull_image(PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

async fn status(c: &mut CriClient, image: &str) -> Option<Image> {
    c.image
        .image_status(ImageStatusRequest {
            image: spec(image),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
}

/// Every file under `dir`, relative, for "nothing left behind" checks.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().to_owned());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn snapshot_dirs(d: &Berthd) -> Vec<PathBuf> {
    fs::read_dir(d.root_dir.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.ends_with(".ingest"))
        .collect()
}

fn assert_no_partial_state(d: &Berthd) {
    assert_eq!(
        tree(&d.root_dir.join("content/ingest")),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        tree(&d.root_dir.join("snapshots/.ingest")),
        Vec::<PathBuf>::new()
    );
}

#[tokio::test]
async fn pulls_every_image_kind_and_reports_it_consistently() {
    if !root_or_skip("pulls_every_image_kind_and_reports_it_consistently") {
        return;
    }
    let reg = Registry::start(None);
    let d = Berthd::start("imgkinds");
    let mut c = d.client().await;

    let docker = fixture::busybox();
    type Build = fn() -> fixture::Image;
    let cases: [(&str, Build); 4] = [
        ("docker-gzip", fixture::busybox),
        ("oci-gzip", fixture::busybox_oci),
        ("oci-zstd", fixture::busybox_zstd),
        ("oci-tar", fixture::busybox_uncompressed),
    ];
    for (repo, build) in &cases {
        let image = build();
        let digest = reg.push(&image, repo, "v1").await;
        let name = reg.reference(repo, "v1");
        let id = pull(&mut c, &name, None)
            .await
            .unwrap_or_else(|e| panic!("{repo}: {e}"));
        assert_eq!(id, image.id(), "{repo}: image id is the config digest");
        let st = status(&mut c, &name).await.expect("ImageStatus finds it");
        assert_eq!(st.id, id);
        assert_eq!(st.repo_tags, vec![name.clone()]);
        assert_eq!(
            st.repo_digests,
            vec![format!("{}/{repo}@{digest}", reg.host())]
        );
        assert_eq!(st.size, image.config.size() + image.layers_size(), "{repo}");
        assert!(!st.pinned);
        // The same image by id, by id prefix, and by repo digest.
        assert_eq!(status(&mut c, &id).await.unwrap().id, id);
        assert_eq!(status(&mut c, &id[7..19]).await.unwrap().id, id);
        assert_eq!(
            status(&mut c, &reg.reference_by_digest(repo, &digest))
                .await
                .unwrap()
                .id,
            id
        );
    }
    // The fixture's image USER is root by default; a USER app image reports a name.
    let app = fixture::busybox_builder(fixture::ManifestFormat::Docker, fixture::Compression::Gzip)
        .user("app")
        .build();
    reg.push(&app, "withuser", "v1").await;
    pull(&mut c, &reg.reference("withuser", "v1"), None)
        .await
        .unwrap();
    let st = status(&mut c, &reg.reference("withuser", "v1"))
        .await
        .unwrap();
    assert_eq!((st.uid, st.username.as_str()), (None, "app"));
    let numeric =
        fixture::busybox_builder(fixture::ManifestFormat::Docker, fixture::Compression::Gzip)
            .user("1000:1000")
            .build();
    reg.push(&numeric, "withuid", "v1").await;
    pull(&mut c, &reg.reference("withuid", "v1"), None)
        .await
        .unwrap();
    let st = status(&mut c, &reg.reference("withuid", "v1"))
        .await
        .unwrap();
    assert_eq!(st.uid.map(|u| u.value), Some(1000));

    // A multi-platform index: the node's platform is chosen, and the repo
    // digest is the index's.
    let index = fixture::busybox_multiplatform();
    let index_digest = reg.push(&index, "multi", "v1").await;
    let id = pull(&mut c, &reg.reference("multi", "v1"), None)
        .await
        .unwrap();
    let amd64 = index
        .images
        .iter()
        .find(|i| i.platform == fixture::Platform::linux_amd64())
        .unwrap();
    assert_eq!(id, amd64.id());
    let st = status(&mut c, &id).await.unwrap();
    assert_eq!(
        st.repo_digests,
        vec![format!("{}/multi@{index_digest}", reg.host())]
    );

    // By digest only, and by tag+digest (the digest wins; no tag recorded).
    let by_digest = reg.reference_by_digest("docker-gzip", docker.digest());
    assert_eq!(pull(&mut c, &by_digest, None).await.unwrap(), docker.id());
    let tag_and_digest = format!(
        "{}:other@{}",
        reg.reference("docker-gzip", "v1")
            .rsplit_once(':')
            .unwrap()
            .0,
        docker.digest()
    );
    assert_eq!(
        pull(&mut c, &tag_and_digest, None).await.unwrap(),
        docker.id()
    );

    let list = c
        .image
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    let ids: HashSet<_> = list.iter().map(|i| i.id.clone()).collect();
    assert!(ids.contains(docker.id()) && ids.contains(amd64.id()));
    let filtered = c
        .image
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: spec(&reg.reference("oci-zstd", "v1")),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].id, fixture::busybox_zstd().id());

    // Layers shared between images are unpacked once per chain ID.
    let chains: HashSet<PathBuf> = snapshot_dirs(&d).into_iter().collect();
    assert_eq!(chains.len(), snapshot_dirs(&d).len());
    assert_no_partial_state(&d);

    let fs_info = c
        .image
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let f = &fs_info.image_filesystems[0];
    assert!(f.used_bytes.as_ref().unwrap().value > 1_000_000);
    assert!(f.inodes_used.as_ref().unwrap().value > 100);
    assert!(Path::new(&f.fs_id.as_ref().unwrap().mountpoint).is_dir());
    assert!(f.timestamp > 0);
}

#[tokio::test]
async fn whiteouts_and_opaque_dirs_overlay_correctly() {
    if !root_or_skip("whiteouts_and_opaque_dirs_overlay_correctly") {
        return;
    }
    let reg = Registry::start(None);
    let d = Berthd::start("imgwh");
    let mut c = d.client().await;
    let image = fixture::busybox_whiteouts();
    reg.push(&image, "wh", "v1").await;
    pull(&mut c, &reg.reference("wh", "v1"), None)
        .await
        .unwrap();

    // Mount the snapshots as a read-only overlay, as a container rootfs
    // would see them (topmost layer first).
    let chains = fixture::archive::chain_ids(&image.diff_ids());
    let lowers: Vec<String> = chains
        .iter()
        .rev()
        .map(|c| {
            d.root_dir
                .join("snapshots")
                .join(&c[7..])
                .join("fs")
                .display()
                .to_string()
        })
        .collect();
    let top = PathBuf::from(&lowers[0]);
    let wh = fs::symlink_metadata(top.join("app/hello.txt")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is a 0:0 device"
    );
    let opq = xattr_get(&top.join("app/data"), "trusted.overlay.opaque");
    assert_eq!(opq.as_deref(), Some(&b"y"[..]));

    let mnt = d.dir.join("merged");
    fs::create_dir_all(&mnt).unwrap();
    nix::mount::mount(
        Some("overlay"),
        &mnt,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(format!("lowerdir={}", lowers.join(":")).as_str()),
    )
    .unwrap();
    let check = || {
        assert!(!mnt.join("app/hello.txt").exists(), "deleted file hidden");
        assert!(!mnt.join("app/cache").exists(), "deleted dir hidden");
        let data: Vec<_> = fs::read_dir(mnt.join("app/data"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(data, vec![std::ffi::OsString::from("new.txt")]);
        assert!(mnt.join("app/run.sh").exists() || mnt.join("bin/busybox").exists());
        assert!(mnt.join("bin/busybox").is_file());
        let m = fs::metadata(mnt.join("app/data")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1000));
    };
    let r = std::panic::catch_unwind(check);
    nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH).unwrap();
    r.unwrap();
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[tokio::test]
async fn registry_auth_from_the_request_and_from_the_auth_file() {
    if !root_or_skip("registry_auth_from_the_request_and_from_the_auth_file") {
        return;
    }
    let reg = Registry::start(Some(("berth", "s3cret-pw")));
    let image = fixture::busybox();
    reg.push(&image, "private", "v1").await;
    let name = reg.reference("private", "v1");

    let auth_file = std::env::temp_dir().join(format!("berth-auth-{}.json", std::process::id()));
    let d = Berthd::builder("imgauth")
        .config(
            "image",
            "auth_file",
            &format!("{:?}", auth_file.to_str().unwrap()),
        )
        .start();
    let mut c = d.client().await;

    let e = pull(&mut c, &name, None).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let wrong = AuthConfig {
        username: "berth".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let e = pull(&mut c, &name, Some(wrong)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let right = AuthConfig {
        username: "berth".into(),
        password: "s3cret-pw".into(),
        ..Default::default()
    };
    assert_eq!(pull(&mut c, &name, Some(right)).await.unwrap(), image.id());
    c.image
        .remove_image(RemoveImageRequest { image: spec(&name) })
        .await
        .unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode("berth:s3cret-pw");
    let as_auth = AuthConfig {
        auth: b64.clone(),
        ..Default::default()
    };
    assert_eq!(
        pull(&mut c, &name, Some(as_auth)).await.unwrap(),
        image.id()
    );
    c.image
        .remove_image(RemoveImageRequest { image: spec(&name) })
        .await
        .unwrap();

    // Credentials from the auth file (Docker config.json format).
    fs::write(
        &auth_file,
        format!(r#"{{"auths":{{"{}":{{"auth":"{b64}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    assert_eq!(pull(&mut c, &name, None).await.unwrap(), image.id());
    fs::remove_file(&auth_file).unwrap();

    // Secrets never reach the log.
    let log = d.log();
    assert!(!log.contains("s3cret-pw") && !log.contains(&b64), "{log}");
}

#[tokio::test]
async fn bad_pulls_get_specific_errors_and_leave_nothing_behind() {
    if !root_or_skip("bad_pulls_get_specific_errors_and_leave_nothing_behind") {
        return;
    }
    let reg = Registry::start(None);
    let d = Berthd::start("imgbad");
    let mut c = d.client().await;

    let e = pull(&mut c, &reg.reference("nosuch", "v1"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let image = fixture::busybox();
    reg.push(&image, "bb", "v1").await;
    let e = pull(&mut c, &reg.reference("bb", "nosuchtag"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    let e = pull(&mut c, "Not A Reference", None).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Nobody listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = pull(&mut c, &format!("127.0.0.1:{closed}/bb:v1"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");

    let odd = fixture::hostile::unsupported_media_types();
    reg.push(&odd, "odd", "v1").await;
    let e = pull(&mut c, &reg.reference("odd", "v1"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("media type"), "{}", e.message());

    // A layer blob corrupted in the registry's storage: rejected, and no
    // blob, snapshot or partial file is kept.
    let victim = fixture::busybox_zstd();
    reg.push(&victim, "corrupt", "v1").await;
    let layer = victim.layers.last().unwrap().blob.digest.clone();
    reg.corrupt_blob(&layer, Corruption::FlipByte(100));
    let e = pull(&mut c, &reg.reference("corrupt", "v1"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DataLoss, "{e:?}");
    assert!(e.message().contains(&layer), "{}", e.message());
    assert!(
        !d.root_dir
            .join("content/blobs/sha256")
            .join(&layer[7..])
            .exists()
    );
    assert_no_partial_state(&d);
    assert!(
        status(&mut c, &reg.reference("corrupt", "v1"))
            .await
            .is_none()
    );

    // The next pull of a good image works.
    assert_eq!(
        pull(&mut c, &reg.reference("bb", "v1"), None)
            .await
            .unwrap(),
        image.id()
    );
    assert_no_partial_state(&d);
}

#[tokio::test]
async fn hostile_layers_cannot_touch_the_host() {
    if !root_or_skip("hostile_layers_cannot_touch_the_host") {
        return;
    }
    use fixture::hostile;
    let reg = Registry::start(None);
    let d = Berthd::start("imghostile");
    let mut c = d.client().await;
    fs::write(hostile::HARDLINK_DECOY, "decoy").unwrap();
    fs::write(hostile::WHITEOUT_DECOY, "decoy").unwrap();
    let layers: Vec<(&str, fixture::LayerBuilder)> = vec![
        ("dotdot", hostile::dotdot_file()),
        ("absolute", hostile::absolute_file()),
        ("hardlink", hostile::hardlink_escape()),
        ("symlink", hostile::symlink_traversal()),
        ("symlinkdir", hostile::symlink_dir_traversal()),
        ("whiteout", hostile::whiteout_traversal()),
        ("special", hostile::special_files()),
    ];
    for (name, layer) in layers {
        let image = hostile::on_busybox(layer, name);
        reg.push(&image, name, "v1").await;
        let res = pull(&mut c, &reg.reference(name, "v1"), None).await;
        // Refused, or confined inside the snapshot: either way, the host
        // is untouched.
        if let Err(e) = &res {
            assert_eq!(e.code(), Code::InvalidArgument, "{name}: {e:?}");
        }
        for p in hostile::HOST_ESCAPE_PATHS {
            assert!(
                !Path::new(p).exists(),
                "{name}: {p} was created on the host"
            );
        }
        assert_eq!(
            fs::read_to_string(hostile::HARDLINK_DECOY).unwrap(),
            "decoy",
            "{name}"
        );
        assert_eq!(
            fs::metadata(hostile::HARDLINK_DECOY).unwrap().nlink(),
            1,
            "{name}"
        );
        assert_eq!(
            fs::read_to_string(hostile::WHITEOUT_DECOY).unwrap(),
            "decoy",
            "{name}"
        );
        assert_no_partial_state(&d);
    }
    fs::remove_file(hostile::HARDLINK_DECOY).unwrap();
    fs::remove_file(hostile::WHITEOUT_DECOY).unwrap();
}

#[tokio::test]
async fn concurrent_pulls_share_layers_and_remove_collects_garbage() {
    if !root_or_skip("concurrent_pulls_share_layers_and_remove_collects_garbage") {
        return;
    }
    let reg = Registry::start(None);
    let d = Berthd::builder("imgconc")
        .config("daemon", "log_level", "\"info,berth_image=debug\"")
        .start();
    let mut c = d.client().await;
    let image = fixture::busybox();
    reg.push(&image, "a", "v1").await;
    reg.push(&image, "b", "v1").await;
    let (ra, rb) = (reg.reference("a", "v1"), reg.reference("b", "v1"));
    let (mut c1, mut c2) = (c.clone(), c.clone());
    let (x, y) = tokio::join!(pull(&mut c1, &ra, None), pull(&mut c2, &rb, None));
    assert_eq!(x.unwrap(), image.id());
    assert_eq!(y.unwrap(), image.id());
    // Each layer was unpacked exactly once.
    let unpacks = d.log().matches("layer unpacked").count();
    assert_eq!(unpacks, image.layers.len(), "{}", d.log());
    assert_eq!(snapshot_dirs(&d).len(), image.layers.len());

    // One image, two tags: removing one tag keeps the image.
    let st = status(&mut c, &ra).await.unwrap();
    assert_eq!(st.repo_tags.len(), 2);
    c.image
        .remove_image(RemoveImageRequest { image: spec(&ra) })
        .await
        .unwrap();
    assert!(status(&mut c, &ra).await.is_none());
    let st = status(&mut c, &rb).await.unwrap();
    assert_eq!(st.repo_tags, vec![rb.clone()]);
    assert_eq!(snapshot_dirs(&d).len(), image.layers.len());

    // Survives a restart.
    drop(c1);
    drop(c2);
    let mut d = d;
    assert!(d.stop().success());
    d.spawn_and_wait_ready();
    let mut c = d.client().await;
    assert_eq!(status(&mut c, &rb).await.unwrap().id, image.id());

    // Removing by id removes the image, its snapshots and blobs.
    c.image
        .remove_image(RemoveImageRequest {
            image: spec(image.id()),
        })
        .await
        .unwrap();
    assert!(status(&mut c, &rb).await.is_none());
    assert!(snapshot_dirs(&d).is_empty());
    assert_eq!(
        tree(&d.root_dir.join("content/blobs/sha256")),
        Vec::<PathBuf>::new()
    );
    // Unknown images are not an error.
    c.image
        .remove_image(RemoveImageRequest { image: spec(&ra) })
        .await
        .unwrap();
}

#[tokio::test]
async fn import_oci_and_docker_archives_with_the_cli() {
    if !root_or_skip("import_oci_and_docker_archives_with_the_cli") {
        return;
    }
    let d = Berthd::start("imgimport");
    let image = fixture::busybox();
    let oci = d.dir.join("busybox-oci.tar");
    fixture::write_oci_archive(&image, "docker.io/library/busybox:imported", &oci);
    let docker_image = fixture::busybox_uncompressed();
    let docker = d.dir.join("busybox-docker.tar");
    fixture::write_docker_archive(&docker_image, "example.org/tools/busybox:saved", &docker);

    let berth = |args: &[&str]| {
        let out = std::process::Command::new(berth_e2e::bin_path("berth"))
            .args(["--config", "/nonexistent", "-r", d.socket.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = berth(&["image", "import", oci.to_str().unwrap()]);
    assert!(out.contains("docker.io/library/busybox:imported"), "{out}");
    assert!(out.contains(image.id()), "{out}");
    let out = berth(&["image", "import", docker.to_str().unwrap()]);
    assert!(out.contains("example.org/tools/busybox:saved"), "{out}");

    let images = berth(&["images"]);
    assert!(
        images.contains("docker.io/library/busybox") && images.contains("imported"),
        "{images}"
    );
    assert!(images.contains("example.org/tools/busybox"), "{images}");
    let inspect: serde_json::Value =
        serde_json::from_str(&berth(&["inspecti", "busybox:imported"])).unwrap();
    assert_eq!(inspect["status"]["id"], image.id());
    assert_eq!(inspect["info"]["imageSpec"]["config"]["Cmd"][0], "sh");
    let fsinfo = berth(&["imagefsinfo"]);
    assert!(
        fsinfo.contains("MOUNTPOINT")
            && fsinfo.contains("\nimages ")
            && fsinfo.contains("\ncontainers "),
        "{fsinfo}"
    );
    assert!(berth(&["rmi", "busybox:imported"]).contains("Deleted"));
    let images = berth(&["images", "-q"]);
    assert!(!images.contains(image.id()), "{images}");

    // A hostile member name in an archive is refused.
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..14].copy_from_slice(b"../../../etc/x");
    h.set_size(1);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    evil.append(&h, &b"x"[..]).unwrap();
    let evil_path = d.dir.join("evil.tar");
    fs::write(&evil_path, evil.into_inner().unwrap()).unwrap();
    let out = std::process::Command::new(berth_e2e::bin_path("berth"))
        .args([
            "--config",
            "/nonexistent",
            "-r",
            d.socket.to_str().unwrap(),
            "image",
            "import",
        ])
        .arg(&evil_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unusable name"));
    assert_eq!(
        tree(&d.root_dir.join("content/ingest")),
        Vec::<PathBuf>::new()
    );
}

#[tokio::test]
async fn cli_pull_shows_the_image_and_is_idempotent() {
    if !root_or_skip("cli_pull_shows_the_image_and_is_idempotent") {
        return;
    }
    let reg = Registry::start(None);
    let d = Berthd::start("imgcli");
    let image = fixture::busybox();
    reg.push(&image, "cli", "v1").await;
    let name = reg.reference("cli", "v1");
    for _ in 0..2 {
        let out = std::process::Command::new(berth_e2e::bin_path("berth"))
            .args([
                "--config",
                "/nonexistent",
                "-r",
                d.socket.to_str().unwrap(),
                "pull",
                &name,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("Image is up to date for {}\n", image.id())
        );
    }
}

#[tokio::test]
async fn mirrors_from_hosts_toml_are_tried_in_order() {
    if !root_or_skip("mirrors_from_hosts_toml_are_tried_in_order") {
        return;
    }
    let reg = Registry::start(None);
    let image = fixture::busybox();
    // The mirror holds the image under the upstream's repository path.
    reg.push(&image, "library/busybox", "1.36").await;
    let certs = berth_e2e::env::scratch_dir("certs");
    // `registry.invalid` never resolves: only the mirrors can serve it.
    // The first mirror is down (nobody listens), the second works.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    fs::create_dir_all(certs.join("registry.invalid")).unwrap();
    fs::write(
        certs.join("registry.invalid/hosts.toml"),
        format!(
            "server = \"https://registry.invalid\"\n\n[host.\"http://127.0.0.1:{closed}\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            reg.host()
        ),
    )
    .unwrap();
    let d = Berthd::builder("imgmirror")
        .config(
            "image",
            "registry_config_dir",
            &format!("{:?}", certs.to_str().unwrap()),
        )
        .start();
    let mut c = d.client().await;
    let id = pull(&mut c, "registry.invalid/library/busybox:1.36", None)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", d.log()));
    assert_eq!(id, image.id());
    let st = status(&mut c, "registry.invalid/library/busybox:1.36")
        .await
        .unwrap();
    // Names stay the upstream's, whichever host served the bytes.
    assert_eq!(
        st.repo_tags,
        vec!["registry.invalid/library/busybox:1.36".to_string()]
    );
    assert!(st.repo_digests[0].starts_with("registry.invalid/library/busybox@sha256:"));
    fs::remove_dir_all(&certs).ok();
}

#[tokio::test]
async fn a_full_disk_is_resource_exhausted_and_cleaned_up() {
    if !root_or_skip("a_full_disk_is_resource_exhausted_and_cleaned_up") {
        return;
    }
    let reg = Registry::start(None);
    let image = fixture::busybox();
    reg.push(&image, "big", "v1").await;
    // A 1.5 MiB filesystem: the store fits, the unpacked image does not.
    let small = berth_e2e::env::scratch_dir("smallfs");
    nix::mount::mount(
        Some("tmpfs"),
        &small,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1536k"),
    )
    .unwrap();
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    let guard = Unmount(small.clone());
    let root = small.join("root");
    let mut d = Berthd::builder("imgfull")
        .config(
            "daemon",
            "root_dir",
            &format!("{:?}", root.to_str().unwrap()),
        )
        .start();
    let mut c = d.client().await;
    let e = pull(&mut c, &reg.reference("big", "v1"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("No space left"), "{}", e.message());
    assert_eq!(tree(&root.join("content/ingest")), Vec::<PathBuf>::new());
    assert_eq!(tree(&root.join("snapshots/.ingest")), Vec::<PathBuf>::new());
    // The daemon still answers.
    c.runtime.version(VersionRequest::default()).await.unwrap();
    drop(c);
    assert!(d.stop().success());
    drop(d);
    drop(guard);
}
