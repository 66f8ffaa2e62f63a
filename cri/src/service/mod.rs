//! The CRI services berthd serves, over the state they share.

mod berth_svc;
mod container;
mod events;
mod image;
mod pod;
mod podmetrics;
mod runtime;
mod stats;
mod status;
mod streaming;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use berth_store::Store;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

use crate::config::Config;

pub use image::ImageSvc;
pub use runtime::RuntimeSvc;
pub use stats::run as run_stats;

/// kubelet raises its client limits to 16 MiB; so does berth, for large
/// List responses on busy nodes.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// What every service handler can reach.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    pub config_file: Option<PathBuf>,
    pub store: Store,
    pub images: berth_image::Images,
    pub pods: berth_pod::Pods<crate::network::CniNetwork>,
    pub containers: berth_containers::Containers,
    /// The containers' writable layers' disk use, for ImageFsInfo.
    pub writable_layers: Arc<crate::layerusage::WritableLayers>,
    pub stats: crate::stats::Stats,
    pub health: Arc<berth_metrics::health::Health>,
    /// Issues the URLs of Exec, Attach and PortForward.
    pub streaming: Arc<berth_streaming::Streaming>,
    pub started_at: SystemTime,
}

pub fn runtime_server(shared: Arc<Shared>) -> RuntimeServiceServer<RuntimeSvc> {
    RuntimeServiceServer::new(RuntimeSvc::new(shared))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

pub fn berth_api_server(
    shared: Arc<Shared>,
) -> berth_api::v1::images_server::ImagesServer<berth_svc::BerthApi> {
    berth_api::v1::images_server::ImagesServer::new(berth_svc::BerthApi::new(shared))
}

pub fn image_server(shared: Arc<Shared>) -> ImageServiceServer<ImageSvc> {
    ImageServiceServer::new(ImageSvc::new(shared))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}
