//! pull, images, inspecti, rmi, imagefsinfo.

use berth_cli::client::CriClient;
use berth_cli::output::{self, Format};
use k8s_cri::v1::*;
use serde::Serialize;

use super::status_msg;

/// Sizes as crictl prints them (decimal units).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
            + UNITS[u]
    }
}

fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_owned(),
        ..Default::default()
    })
}

/// `--creds user:pass` or `--auth base64` into a CRI AuthConfig.
pub fn auth_config(creds: Option<&str>, auth: Option<&str>) -> Result<Option<AuthConfig>, String> {
    match (creds, auth) {
        (Some(_), Some(_)) => Err("give --creds or --auth, not both".into()),
        (Some(c), None) => {
            let (u, p) = c
                .split_once(':')
                .ok_or("--creds must be USERNAME:PASSWORD")?;
            Ok(Some(AuthConfig {
                username: u.to_owned(),
                password: p.to_owned(),
                ..Default::default()
            }))
        }
        (None, Some(a)) => Ok(Some(AuthConfig {
            auth: a.to_owned(),
            ..Default::default()
        })),
        (None, None) => Ok(None),
    }
}

/// Pulls through berth's API, drawing a progress bar per layer (on a
/// terminal); other runtimes get a plain CRI PullImage.
pub async fn pull(
    c: &mut CriClient,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, String> {
    use berth_api::v1 as api;
    let req = api::PullRequest {
        image: image.to_owned(),
        auth: auth.clone().map(|a| api::Auth {
            username: a.username,
            password: a.password,
            auth: a.auth,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        }),
    };
    match c.berth.pull(req).await {
        Ok(stream) => pull_with_progress(stream.into_inner()).await,
        Err(s) if s.code() == tonic::Code::Unimplemented => cri_pull(c, image, auth).await,
        Err(s) => Err(status_msg(s)),
    }
}

async fn pull_with_progress(
    mut stream: tonic::Streaming<berth_api::v1::PullEvent>,
) -> Result<String, String> {
    use berth_api::v1::pull_event::Event;
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
    )
    .map_err(|e| e.to_string())?
    .progress_chars("=> ");
    let mut bars: Vec<(String, ProgressBar)> = Vec::new();
    let bar = |bars: &Vec<(String, ProgressBar)>, d: &str| {
        bars.iter().find(|(k, _)| k == d).map(|(_, b)| b.clone())
    };
    while let Some(ev) = stream.message().await.map_err(status_msg)? {
        match ev.event {
            Some(Event::Resolved(r)) => {
                multi.println(format!("Pulling {}", r.reference)).ok();
                for l in r.layers {
                    let b = multi.add(ProgressBar::new(l.size));
                    b.set_style(style.clone());
                    b.set_prefix(short_id(&l.digest));
                    bars.push((l.digest, b));
                }
            }
            Some(Event::Progress(p)) => {
                if let Some(b) = bar(&bars, &p.digest) {
                    b.set_position(p.bytes);
                }
            }
            Some(Event::Done(d)) => {
                if let Some(b) = bar(&bars, &d.digest) {
                    if d.cached {
                        b.finish_with_message("already present");
                    } else {
                        b.set_position(b.length().unwrap_or(0));
                        b.finish_with_message("done");
                    }
                }
            }
            Some(Event::Pulled(p)) => {
                return Ok(format!("Image is up to date for {}\n", p.image_id));
            }
            None => {}
        }
    }
    Err("the pull ended without a result".into())
}

async fn cri_pull(
    c: &mut CriClient,
    image: &str,
    auth: Option<AuthConfig>,
) -> Result<String, String> {
    let r = c
        .image
        .pull_image(PullImageRequest {
            image: spec(image),
            auth,
            sandbox_config: None,
        })
        .await
        .map_err(status_msg)?
        .into_inner();
    Ok(format!("Image is up to date for {}\n", r.image_ref))
}

#[derive(Serialize)]
struct Row {
    image: String,
    tag: String,
    digest: String,
    id: String,
    size: u64,
    pinned: bool,
}

fn rows(images: &[Image]) -> Vec<Row> {
    let mut out = Vec::new();
    for i in images {
        let digest = i
            .repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map(|(_, d)| d.to_owned())
            .unwrap_or_default();
        let mut push = |image: String, tag: String| {
            out.push(Row {
                image,
                tag,
                digest: digest.clone(),
                id: i.id.clone(),
                size: i.size,
                pinned: i.pinned,
            })
        };
        if i.repo_tags.is_empty() {
            let name = i
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map(|(n, _)| n.to_owned())
                .unwrap_or_else(|| "<none>".into());
            push(name, "<none>".into());
        }
        for t in &i.repo_tags {
            let (name, tag) = t.rsplit_once(':').unwrap_or((t, ""));
            push(name.to_owned(), tag.to_owned());
        }
    }
    out
}

fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(13)
        .collect()
}

pub async fn images(
    c: &mut CriClient,
    filter: Option<&str>,
    quiet: bool,
    digests: bool,
    fmt: Format,
) -> Result<String, String> {
    let list = c
        .image
        .list_images(ListImagesRequest {
            filter: filter.map(|f| ImageFilter { image: spec(f) }),
        })
        .await
        .map_err(status_msg)?
        .into_inner()
        .images;
    if quiet {
        return Ok(list.iter().map(|i| format!("{}\n", i.id)).collect());
    }
    if fmt != Format::Table {
        return Ok(output::render(fmt, &list, String::new));
    }
    let rows = rows(&list);
    let mut header = vec!["IMAGE", "TAG"];
    if digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "SIZE"]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut v = vec![r.image.clone(), r.tag.clone()];
            if digests {
                v.push(short_id(&r.digest));
            }
            v.extend([short_id(&r.id), human_size(r.size)]);
            v
        })
        .collect();
    Ok(output::table(&header, &cells))
}

pub async fn inspecti(c: &mut CriClient, names: &[String], fmt: Format) -> Result<String, String> {
    let mut out = Vec::new();
    for n in names {
        let r = c
            .image
            .image_status(ImageStatusRequest {
                image: spec(n),
                verbose: true,
            })
            .await
            .map_err(status_msg)?
            .into_inner();
        let Some(image) = r.image else {
            return Err(format!("no such image {n:?}"));
        };
        let info: serde_json::Value = r
            .info
            .get("info")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        out.push(serde_json::json!({ "status": image, "info": info }));
    }
    let fmt = if fmt == Format::Table {
        Format::Json
    } else {
        fmt
    };
    let value = if out.len() == 1 {
        out.remove(0)
    } else {
        serde_json::Value::Array(out)
    };
    Ok(output::render(fmt, &value, String::new))
}

pub async fn rmi(c: &mut CriClient, names: &[String]) -> Result<String, String> {
    let mut out = String::new();
    for n in names {
        // RemoveImage is idempotent; tell the user when nothing matched.
        let exists = c
            .image
            .image_status(ImageStatusRequest {
                image: spec(n),
                verbose: false,
            })
            .await
            .map_err(status_msg)?
            .into_inner()
            .image
            .is_some();
        if !exists {
            return Err(format!("no such image {n:?}"));
        }
        c.image
            .remove_image(RemoveImageRequest { image: spec(n) })
            .await
            .map_err(status_msg)?;
        out += &format!("Deleted: {n}\n");
    }
    Ok(out)
}

/// `berth image import FILE`: berthd reads the archive from this node.
pub async fn import(c: &mut CriClient, file: &std::path::Path) -> Result<String, String> {
    let path = std::fs::canonicalize(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let r = c
        .berth
        .import(berth_api::v1::ImportRequest {
            path: path.display().to_string(),
        })
        .await
        .map_err(status_msg)?
        .into_inner();
    let mut out = String::new();
    for i in r.images {
        let names = if i.repo_tags.is_empty() {
            "<none>".to_owned()
        } else {
            i.repo_tags.join(", ")
        };
        out += &format!("Imported {names} ({})\n", i.id);
    }
    Ok(out)
}

pub async fn imagefsinfo(c: &mut CriClient, fmt: Format) -> Result<String, String> {
    let r = c
        .image
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .map_err(status_msg)?
        .into_inner();
    Ok(output::render(fmt, &r, || {
        let kinds = std::iter::repeat("images")
            .zip(&r.image_filesystems)
            .chain(std::iter::repeat("containers").zip(&r.container_filesystems));
        let rows: Vec<Vec<String>> = kinds
            .map(|(kind, f)| {
                vec![
                    kind.to_owned(),
                    f.fs_id
                        .as_ref()
                        .map(|i| i.mountpoint.clone())
                        .unwrap_or_default(),
                    human_size(f.used_bytes.as_ref().map_or(0, |u| u.value)),
                    f.inodes_used.as_ref().map_or(0, |u| u.value).to_string(),
                ]
            })
            .collect();
        output::table(&["LAYERS", "MOUNTPOINT", "USED", "INODES"], &rows)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_crictl() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(212_345_678), "212.346MB");
    }

    #[test]
    fn creds_parsing() {
        assert!(auth_config(Some("u:p"), None).unwrap().is_some());
        assert!(auth_config(Some("nocolon"), None).is_err());
        assert!(auth_config(Some("u:p"), Some("x")).is_err());
        assert!(auth_config(None, None).unwrap().is_none());
    }
}
