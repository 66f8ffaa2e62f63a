//! CRI ImageService over berth-image.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_image::{AuthFields, ImageRecord, Images};
use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::error;

#[derive(Debug, Clone)]
pub struct ImageSvc {
    shared: Arc<Shared>,
}

impl ImageSvc {
    pub fn new(shared: Arc<Shared>) -> Self {
        ImageSvc { shared }
    }

    fn images(&self) -> &Images {
        &self.shared.images
    }
}

/// kubelet's reading of an image's USER: a number (before any `:group`)
/// is a uid, anything else a user name.
pub fn user_fields(user: &str) -> (Option<i64>, String) {
    let name = user.split(':').next().unwrap_or_default();
    if name.is_empty() {
        return (None, String::new());
    }
    match name.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, name.to_owned()),
    }
}

fn to_cri(images: &Images, rec: &ImageRecord) -> Image {
    let (uid, username) = user_fields(&rec.user);
    Image {
        id: rec.id.to_string(),
        repo_tags: rec.repo_tags.clone(),
        repo_digests: rec.repo_digests.clone(),
        size: rec.size,
        uid: uid.map(|value| Int64Value { value }),
        username,
        spec: Some(ImageSpec {
            image: rec.id.to_string(),
            ..Default::default()
        }),
        pinned: images.is_pinned(rec),
    }
}

fn spec_image(spec: Option<ImageSpec>, rpc: &str) -> Result<String, Status> {
    let image = spec.map(|s| s.image).unwrap_or_default();
    if image.is_empty() {
        return Err(error::missing(&format!("{rpc}: image.image")));
    }
    Ok(image)
}

#[tonic::async_trait]
impl ImageService for ImageSvc {
    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let filter = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let images = self.images();
        let records = match filter {
            Some(f) => images
                .resolve(&f)
                .map_err(error::image)?
                .into_iter()
                .collect(),
            None => images.list().map_err(error::image)?,
        };
        Ok(Response::new(ListImagesResponse {
            images: records.iter().map(|r| to_cri(images, r)).collect(),
        }))
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let req = request.into_inner();
        let name = spec_image(req.image, "ImageStatus")?;
        let images = self.images();
        // An unknown image is not an error: the response has no image.
        let Some(rec) = images.resolve(&name).map_err(error::image)? else {
            return Ok(Response::new(ImageStatusResponse::default()));
        };
        let mut info = std::collections::HashMap::new();
        if req.verbose {
            let config: serde_json::Value = images
                .config_blob(&rec.id)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let detail = serde_json::json!({
                "id": rec.id,
                "manifest": rec.manifest,
                "index": rec.index,
                "platform": rec.platform,
                "layers": rec.layers,
                "imageSpec": config,
            });
            info.insert("info".to_owned(), detail.to_string());
        }
        Ok(Response::new(ImageStatusResponse {
            image: Some(to_cri(images, &rec)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        let req = request.into_inner();
        let name = spec_image(req.image, "PullImage")?;
        let auth = req.auth.map(|a| AuthFields {
            username: a.username,
            password: a.password,
            auth: a.auth,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        });
        let pulling = self.shared.health.pull_started();
        let result = self.images().pull(&name, auth.as_ref()).await;
        crate::memory::release_freed();
        let result = result.map_err(|e| {
            tracing::warn!(image = %name, error = %e, "pull failed");
            error::image(e)
        });
        pulling.finish(&match &result {
            Ok(_) => "success".to_owned(),
            Err(s) => format!("{:?}", s.code()),
        });
        let rec = result?;
        Ok(Response::new(PullImageResponse {
            image_ref: rec.id.to_string(),
        }))
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        let name = spec_image(request.into_inner().image, "RemoveImage")?;
        let removed = self.images().remove(&name).await.map_err(error::image)?;
        if removed {
            tracing::info!(image = %name, "image removed");
        }
        Ok(Response::new(RemoveImageResponse {}))
    }

    /// Both answers cost the same whatever the number of pods and images:
    /// the image store's use is kept by berth-image, measured again only
    /// when an image is recorded or content collected; the writable
    /// layers' is the last background walk's (layerusage.rs), at most one
    /// per `disk_interval`; each mount point is cached by its directory's
    /// device (a stat, not a parse of the mount table, which grows with
    /// every pod and container).
    async fn image_fs_info(
        &self,
        _request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        let images = self.images();
        let usage = images.usage();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(1);
        let image_fs = fs_usage(timestamp, &images.mountpoint(), usage.bytes, usage.inodes);
        // The writable layers live under <root>/containers, a tree apart
        // from the image layers (<root>/snapshots): reported on their own.
        let layers = &self.shared.writable_layers;
        let w = layers.sample().await;
        let container_fs = fs_usage(w.at_ns, &layers.mountpoint(), w.bytes, w.inodes);
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![image_fs],
            container_filesystems: vec![container_fs],
        }))
    }
}

fn fs_usage(
    timestamp: i64,
    mountpoint: &std::path::Path,
    bytes: u64,
    inodes: u64,
) -> FilesystemUsage {
    FilesystemUsage {
        timestamp,
        fs_id: Some(FilesystemIdentifier {
            mountpoint: mountpoint.display().to_string(),
        }),
        used_bytes: Some(UInt64Value { value: bytes }),
        inodes_used: Some(UInt64Value { value: inodes }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_user_is_uid_or_name() {
        assert_eq!(user_fields(""), (None, String::new()));
        assert_eq!(user_fields("1000"), (Some(1000), String::new()));
        assert_eq!(user_fields("1000:50"), (Some(1000), String::new()));
        assert_eq!(user_fields("app"), (None, "app".into()));
        assert_eq!(user_fields("app:grp"), (None, "app".into()));
    }
}
