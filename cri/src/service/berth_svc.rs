//! berth's own API (crate berth-api): pull with progress, image import.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use berth_api::v1 as api;
use berth_api::v1::images_server::Images as ImagesApi;
use berth_image::{AuthFields, PullEvent};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::error;

#[derive(Debug, Clone)]
pub struct BerthApi {
    shared: Arc<Shared>,
}

impl BerthApi {
    pub fn new(shared: Arc<Shared>) -> Self {
        BerthApi { shared }
    }
}

fn to_api(e: PullEvent) -> api::PullEvent {
    use api::pull_event::Event;
    let event = match e {
        PullEvent::Resolved { reference, layers } => Event::Resolved(api::Resolved {
            reference,
            layers: layers
                .into_iter()
                .map(|(d, size)| api::Layer {
                    digest: d.to_string(),
                    size,
                })
                .collect(),
        }),
        PullEvent::Progress { digest, bytes } => Event::Progress(api::LayerProgress {
            digest: digest.to_string(),
            bytes,
        }),
        PullEvent::Done { digest, cached } => Event::Done(api::LayerDone {
            digest: digest.to_string(),
            cached,
        }),
    };
    api::PullEvent { event: Some(event) }
}

type PullStream = Pin<Box<dyn Stream<Item = Result<api::PullEvent, Status>> + Send>>;

#[tonic::async_trait]
impl ImagesApi for BerthApi {
    type PullStream = PullStream;

    async fn pull(
        &self,
        request: Request<api::PullRequest>,
    ) -> Result<Response<PullStream>, Status> {
        let req = request.into_inner();
        if req.image.is_empty() {
            return Err(error::missing("image"));
        }
        let auth = req.auth.map(|a| AuthFields {
            username: a.username,
            password: a.password,
            auth: a.auth,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        });
        let (out_tx, out_rx) = mpsc::channel(64);
        let shared = self.shared.clone();
        // The pull runs to the end even if the client goes away, as a
        // CRI pull would.
        tokio::spawn(async move {
            let (ptx, mut prx) = mpsc::unbounded_channel();
            let pulling = shared.health.pull_started();
            let pull = shared
                .images
                .pull_with_progress(&req.image, auth.as_ref(), Some(&ptx));
            tokio::pin!(pull);
            let result = loop {
                tokio::select! {
                    res = &mut pull => break res,
                    Some(ev) = prx.recv() => {
                        let _ = out_tx.send(Ok(to_api(ev))).await;
                    }
                }
            };
            crate::memory::release_freed();
            while let Ok(ev) = prx.try_recv() {
                let _ = out_tx.send(Ok(to_api(ev))).await;
            }
            let last = match result {
                Ok(rec) => Ok(api::PullEvent {
                    event: Some(api::pull_event::Event::Pulled(api::Pulled {
                        image_id: rec.id.to_string(),
                    })),
                }),
                Err(e) => {
                    tracing::warn!(image = %req.image, error = %e, "pull failed");
                    Err(error::image(e))
                }
            };
            pulling.finish(&match &last {
                Ok(_) => "success".to_owned(),
                Err(s) => format!("{:?}", s.code()),
            });
            let _ = out_tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn import(
        &self,
        request: Request<api::ImportRequest>,
    ) -> Result<Response<api::ImportResponse>, Status> {
        let path = request.into_inner().path;
        if !Path::new(&path).is_absolute() {
            return Err(Status::invalid_argument(format!(
                "path {path:?} must be absolute (berthd reads it)"
            )));
        }
        let records = self.shared.images.import(Path::new(&path)).await;
        crate::memory::release_freed();
        let records = records.map_err(error::image)?;
        Ok(Response::new(api::ImportResponse {
            images: records
                .into_iter()
                .map(|r| api::ImportedImage {
                    id: r.id.to_string(),
                    repo_tags: r.repo_tags,
                })
                .collect(),
        }))
    }
}
