//! CRI ImageService. Every RPC answers UNIMPLEMENTED until the images
//! capability lands.

use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageService;
use k8s_cri::v1::*;

use super::{Shared, not_implemented};

#[derive(Debug, Clone)]
pub struct ImageSvc {
    _shared: Arc<Shared>,
}

impl ImageSvc {
    pub fn new(shared: Arc<Shared>) -> Self {
        ImageSvc { _shared: shared }
    }
}

#[tonic::async_trait]
impl ImageService for ImageSvc {
    not_implemented! {
        list_images: ListImagesRequest => ListImagesResponse, "ListImages";
        image_status: ImageStatusRequest => ImageStatusResponse, "ImageStatus";
        pull_image: PullImageRequest => PullImageResponse, "PullImage";
        remove_image: RemoveImageRequest => RemoveImageResponse, "RemoveImage";
        image_fs_info: ImageFsInfoRequest => ImageFsInfoResponse, "ImageFsInfo";
    }
}
