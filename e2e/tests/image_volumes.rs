//! Image volumes (KEP-4639, a CRI mount with `image`) end to end, as root:
//! an image's files read-only at the mount path, on each handler; the
//! image kept while mounted (RemoveImage takes its name, the layers stay
//! until the container goes); a missing image refused with nothing left
//! behind, also when a create fails after mounting one; the mounts gone
//! after RemoveContainer, also after berthd was killed; a user-namespaced pod's view owned by its root. And
//! ImageFsInfo's container filesystem.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the report

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_e2e::fixture::{self, Compression, Image, LayerBuilder};
use berth_e2e::root_or_skip;
use berth_e2e::setup::{Setup, eventually, pod_config, setup, setup_with};
use k8s_cri::v1::*;
use tonic::Code;

const HELLO: &str = "hello from an image volume\n";

/// A one-layer image of data only (no busybox): `data/hello.txt`,
/// `data/sub/tool` (0755), distinct from every other test image's layers.
fn data_image(tag: &str) -> Image {
    let layer = LayerBuilder::new()
        .dir("data")
        .file("data/hello.txt", HELLO)
        .dir("data/sub")
        .entry(
            fixture::Entry::file("data/sub/tool", format!("#!/bin/sh\necho {tag}\n")).mode(0o755),
        )
        .build(Compression::Gzip);
    Image::builder()
        .label("org.berth.fixture", tag)
        .layer(layer, "data files")
        .build()
}

/// Pushes `image` as `repo:v1` and pulls it; its reference and id.
async fn push_and_pull(s: &mut Setup, image: &Image, repo: &str) -> (String, String) {
    s.reg.push(image, repo, "v1").await;
    let name = s.reg.reference(repo, "v1");
    let id =
        s.c.image
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("pull {name}: {e:?}"))
            .into_inner()
            .image_ref;
    (name, id)
}

fn image_mount(at: &str, image: &str, readonly: bool) -> Mount {
    Mount {
        container_path: at.into(),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        readonly,
        ..Default::default()
    }
}

/// Mount points under `<root>/containers` in a mount table.
fn container_mounts(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let containers = root.join("containers");
    berth_mountinfo::parse(mountinfo)
        .map(|e| PathBuf::from(e.mount_point))
        .filter(|m| m.starts_with(&containers))
        .collect()
}

/// berthd's image volume mounts (its mount namespace's table).
fn image_volume_mounts(s: &Setup) -> Vec<PathBuf> {
    let info = fs::read_to_string(format!("/proc/{}/mountinfo", s.e.d.pid())).unwrap();
    container_mounts(&info, &s.e.d.root_dir)
        .into_iter()
        .filter(|m| m.components().any(|c| c.as_os_str() == "image-volumes"))
        .collect()
}

fn snapshot_of(s: &Setup, image: &Image) -> PathBuf {
    let chain = fixture::archive::chain_ids(&image.diff_ids())
        .pop()
        .unwrap();
    s.e.d
        .root_dir
        .join("snapshots")
        .join(chain.strip_prefix("sha256:").unwrap())
}

async fn remove_image(s: &mut Setup, name: &str) {
    s.c.image
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_or_else(|e| panic!("remove image {name}: {e:?}"));
}

async fn image_present(s: &mut Setup, name: &str) -> bool {
    s.c.image
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .is_some()
}

async fn read_only_views_kept_while_mounted(tag: &str, handler: &'static str) {
    let mut s = setup(tag, handler, fixture::busybox()).await;
    let data = data_image(tag);
    let (data_ref, data_id) = push_and_pull(&mut s, &data, "voldata").await;
    let multi = fixture::busybox_whiteouts();
    let (multi_ref, _) = push_and_pull(&mut s, &multi, "volmulti").await;

    // The first by id, as kubelet names what it pulled, and asked
    // writable: an image volume is read-only anyway. The second has four
    // layers with whiteouts and an opaque dir, and a host_path the image
    // wins over.
    let mut cfg = s.config("reader", &["sleep", "1000"]);
    let mut with_host_path = image_mount("/multi", &multi_ref, true);
    with_host_path.host_path = "/etc".into();
    cfg.mounts = vec![image_mount("/vol", &data_id, false), with_host_path];
    let id = s
        .create(cfg)
        .await
        .unwrap_or_else(|e| panic!("create: {e:?}\n{}", s.e.d.log()));
    s.start(&id).await;

    assert_eq!(
        s.sh(&id, "cat /vol/data/hello.txt").await,
        (0, HELLO.trim().into())
    );
    assert_eq!(s.sh(&id, "/vol/data/sub/tool").await, (0, tag.into()));
    let (code, out) = s
        .sh(
            &id,
            "touch /vol/new 2>&1; echo x > /vol/data/hello.txt 2>&1",
        )
        .await;
    assert_ne!(code, 0);
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(
        s.sh(&id, "cat /vol/data/hello.txt").await,
        (0, HELLO.trim().into()),
        "the image's files are intact"
    );
    let (code, out) = s
        .sh(
            &id,
            "cat /multi/app/data/new.txt; ls /multi/app/data; ls /multi/app; test -x /multi/bin/busybox && echo bin; touch /multi/x 2>&1",
        )
        .await;
    assert_ne!(code, 0, "/multi is read-only too: {out}");
    assert!(out.starts_with("new\nnew.txt\n"), "{out}");
    assert!(
        !out.contains("hello.txt") && !out.contains("cache"),
        "whiteouts hide: {out}"
    );
    assert!(out.contains("run.sh") && out.contains("bin\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(
        !out.contains("passwd"),
        "the host path is not mounted: {out}"
    );
    assert_eq!(image_volume_mounts(&s).len(), 2, "{}", s.e.d.log());

    // The container's status reports the mounts as asked.
    let st = s.status(&id).await;
    assert_eq!(
        st.mounts
            .iter()
            .map(|m| m.image.as_ref().unwrap().image.as_str())
            .collect::<Vec<_>>(),
        [data_id.as_str(), multi_ref.as_str()]
    );

    // RemoveImage while mounted: the name goes, the layers stay.
    remove_image(&mut s, &data_ref).await;
    assert!(!image_present(&mut s, &data_ref).await);
    assert!(!image_present(&mut s, &data_id).await);
    assert!(snapshot_of(&s, &data).is_dir(), "leased layers stay");
    assert_eq!(
        s.sh(&id, "cat /vol/data/hello.txt").await,
        (0, HELLO.trim().into())
    );

    // A volume of a missing image: refused, naming it, and nothing left.
    let dirs_before = fs::read_dir(s.e.d.root_dir.join("containers"))
        .unwrap()
        .count();
    let mut cfg = s.config("missing", &["sleep", "1000"]);
    cfg.mounts = vec![image_mount("/vol", &data_ref, true)];
    let e = s.create(cfg).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains(&data_ref), "{e:?}");
    assert_eq!(
        fs::read_dir(s.e.d.root_dir.join("containers"))
            .unwrap()
            .count(),
        dirs_before
    );
    assert_eq!(image_volume_mounts(&s).len(), 2);
    // A create that fails after its image volume is mounted (a volume's
    // host path is missing) unwinds it.
    let mut cfg = s.config("unwound", &["sleep", "1000"]);
    cfg.mounts = vec![
        image_mount("/vol", &multi_ref, true),
        Mount {
            container_path: "/missing".into(),
            host_path: s.e.d.dir.join("no-such-dir").display().to_string(),
            ..Default::default()
        },
    ];
    let e = s.create(cfg).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(image_volume_mounts(&s).len(), 2);
    assert_eq!(
        fs::read_dir(s.e.d.root_dir.join("containers"))
            .unwrap()
            .count(),
        dirs_before
    );

    // RemoveContainer: the mounts and the removed image's layers go; the
    // other image's stay.
    s.remove(&id).await;
    eventually("image volumes unmounted", || {
        image_volume_mounts(&s).is_empty()
    })
    .await;
    let dir = s.e.d.root_dir.join("containers").join(&id);
    eventually("container dir removed", || !dir.exists()).await;
    let snap = snapshot_of(&s, &data);
    eventually("the removed image's layers collected", || !snap.exists()).await;
    assert!(snapshot_of(&s, &multi).is_dir());
    s.finish().await;
}

#[tokio::test]
async fn image_volumes_with_berth_runtime() {
    if !root_or_skip("image_volumes_with_berth_runtime") {
        return;
    }
    read_only_views_kept_while_mounted("imgvol", "berth").await;
}

#[tokio::test]
async fn image_volumes_with_runc() {
    if !root_or_skip("image_volumes_with_runc") {
        return;
    }
    read_only_views_kept_while_mounted("imgvolrunc", "runc").await;
}

#[tokio::test]
async fn image_volumes_are_unmounted_after_berthd_was_killed() {
    if !root_or_skip("image_volumes_are_unmounted_after_berthd_was_killed") {
        return;
    }
    let mut s = setup("imgvolkill", "berth", fixture::busybox()).await;
    let data = data_image("imgvolkill");
    let (data_ref, _) = push_and_pull(&mut s, &data, "voldata").await;
    let mut cfg = s.config("reader", &["sleep", "1000"]);
    cfg.mounts = vec![image_mount("/vol", &data_ref, true)];
    let id = s
        .create(cfg)
        .await
        .unwrap_or_else(|e| panic!("create: {e:?}\n{}", s.e.d.log()));
    s.start(&id).await;
    assert_eq!(image_volume_mounts(&s).len(), 1);

    // berthd shares the test's mount namespace: its mounts outlive it.
    s.e.d.kill9();
    let own = || {
        container_mounts(&berth_mountinfo::read_own(), &s.e.d.root_dir)
            .into_iter()
            .filter(|m| m.components().any(|c| c.as_os_str() == "image-volumes"))
            .count()
    };
    assert_eq!(own(), 1);
    s.restart().await;
    assert_eq!(
        s.sh(&id, "cat /vol/data/hello.txt").await,
        (0, HELLO.trim().into())
    );
    s.remove(&id).await;
    eventually("image volumes unmounted", || {
        image_volume_mounts(&s).is_empty()
    })
    .await;
    let dir = s.e.d.root_dir.join("containers").join(&id);
    eventually("container dir removed", || !dir.exists()).await;
    s.finish().await;
}

/// Host ids of the user-namespaced pod here (a range no other test uses).
const USERNS_BASE: u32 = 65536 * 3010;

#[tokio::test]
async fn image_volumes_of_a_user_namespaced_pod_are_its_roots() {
    if !root_or_skip("image_volumes_of_a_user_namespaced_pod_are_its_roots") {
        return;
    }
    let mut s = setup_with("imgvolns", "berth", fixture::busybox(), |b| b).await;
    let data = data_image("imgvolns");
    let (data_ref, _) = push_and_pull(&mut s, &data, "voldata").await;
    let ids = vec![IdMapping {
        host_id: USERNS_BASE,
        container_id: 0,
        length: 65536,
    }];
    let userns = UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids: ids.clone(),
        gids: ids,
    };
    let log_dir = s.e.d.dir.join("logs").join("pod");
    let mut pod_cfg = pod_config("upod", &log_dir);
    pod_cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .userns_options = Some(userns.clone());
    let pod =
        s.c.runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod_cfg.clone()),
                runtime_handler: "berth".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", s.e.d.log()))
            .into_inner()
            .pod_sandbox_id;
    let mut cfg = s.config("reader", &["sleep", "1000"]);
    cfg.mounts = vec![image_mount("/vol", &data_ref, true)];
    cfg.linux.as_mut().unwrap().security_context = Some(LinuxContainerSecurityContext {
        namespace_options: Some(NamespaceOption {
            pid: NamespaceMode::Container as i32,
            userns_options: Some(userns),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id =
        s.c.runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(cfg),
                sandbox_config: Some(pod_cfg),
            })
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", s.e.d.log()))
            .into_inner()
            .container_id;
    s.start(&id).await;
    // On disk the layer's files are the host's root's; the pod's root
    // sees them as its own, still read-only.
    assert_eq!(
        s.sh(
            &id,
            "stat -c %u:%g /vol /vol/data /vol/data/hello.txt; cat /vol/data/hello.txt"
        )
        .await,
        (0, format!("0:0\n0:0\n0:0\n{}", HELLO.trim()))
    );
    let (code, out) = s.sh(&id, "touch /vol/x 2>&1").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(image_volume_mounts(&s).len(), 1);
    s.c.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap();
    assert!(image_volume_mounts(&s).is_empty());
    s.finish().await;
}

async fn fs_info(s: &mut Setup) -> ImageFsInfoResponse {
    s.c.image
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn used(f: &FilesystemUsage) -> u64 {
    f.used_bytes.as_ref().unwrap().value
}

#[tokio::test]
async fn image_fs_info_reports_the_writable_layers_apart() {
    if !root_or_skip("image_fs_info_reports_the_writable_layers_apart") {
        return;
    }
    let mut s = setup_with("imgfsinfo", "berth", fixture::busybox(), |b| {
        b.config("metrics", "disk_interval", "\"2s\"")
    })
    .await;
    let first = fs_info(&mut s).await;
    assert_eq!(first.image_filesystems.len(), 1, "{first:?}");
    assert_eq!(first.container_filesystems.len(), 1, "{first:?}");
    let images = &first.image_filesystems[0];
    let layers = &first.container_filesystems[0];
    for f in [images, layers] {
        assert!(f.timestamp > 0, "{f:?}");
        assert!(!f.fs_id.as_ref().unwrap().mountpoint.is_empty(), "{f:?}");
        assert!(f.inodes_used.is_some(), "{f:?}");
    }
    assert!(used(images) > 0, "{images:?}");
    // Within the interval a call walks nothing: the same measurement.
    let again = fs_info(&mut s).await;
    assert_eq!(again.container_filesystems[0].timestamp, layers.timestamp);

    // A pull shows at once (kept as images are recorded).
    let (_, _) = push_and_pull(&mut s, &data_image("imgfsinfo"), "voldata").await;
    assert!(used(&fs_info(&mut s).await.image_filesystems[0]) > used(images));

    let before = used(&fs_info(&mut s).await.container_filesystems[0]);
    let id = s
        .run(
            "writer",
            &[
                "sh",
                "-c",
                "dd if=/dev/urandom of=/big bs=1M count=10 && sync && exec sleep 1000",
            ],
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = used(&fs_info(&mut s).await.container_filesystems[0]);
        if now >= before + 10 * 1024 * 1024 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writable layers: {before} then {now} bytes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.remove(&id).await;
    s.finish().await;
}
