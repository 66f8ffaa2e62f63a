//! berth's own gRPC API (`proto/berth/v1/berth.proto`), served next to the
//! CRI on berthd's socket, for what the CRI has no call for: a pull that
//! streams progress, and image import from an archive.

#[allow(clippy::doc_lazy_continuation, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("berth.v1");
}
