//! A tonic channel to a CRI endpoint on a unix socket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::v1::images_client::ImagesClient;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// kubelet's message limit; berthd uses the same.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("cannot reach the runtime at unix://{}: {reason}", .socket.display())]
pub struct ConnectError {
    pub socket: PathBuf,
    pub reason: String,
}

/// Both CRI services, and berth's own API, over one connection.
#[derive(Debug, Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    /// berth's own API; other runtimes answer UNIMPLEMENTED.
    pub berth: ImagesClient<Channel>,
}

/// Connects to the socket at `socket`, failing after `timeout`.
pub async fn connect(socket: &Path, timeout: Duration) -> Result<CriClient, ConnectError> {
    let path = socket.to_owned();
    let err = |reason: String| ConnectError {
        socket: socket.to_owned(),
        reason,
    };
    // The URI is required by tonic but unused: the connector dials the socket.
    let endpoint = Endpoint::from_static("http://localhost").connect_timeout(timeout);
    let channel = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    }));
    let channel = tokio::time::timeout(timeout, channel)
        .await
        .map_err(|_| err(format!("no answer within {timeout:?}")))?
        .map_err(|e| {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason = s.to_string();
                source = s.source();
            }
            err(reason)
        })?;
    Ok(CriClient {
        runtime: RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
        image: ImageServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
        berth: ImagesClient::new(channel),
    })
}
