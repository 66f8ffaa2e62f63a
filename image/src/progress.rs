//! Pull progress, for clients that want to show it (the `berth pull`
//! progress bars). kubelet's CRI PullImage does not ask for it.

use tokio::sync::mpsc::UnboundedSender;

use crate::digest::Digest;

#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    /// The manifest was resolved: these layers make the image.
    Resolved {
        reference: String,
        layers: Vec<(Digest, u64)>,
    },
    /// Bytes of a layer received so far.
    Progress { digest: Digest, bytes: u64 },
    /// A layer is stored and unpacked; `cached` if nothing was downloaded.
    Done { digest: Digest, cached: bool },
}

/// Where progress goes; sending never blocks and a gone receiver is fine.
pub type Progress = UnboundedSender<PullEvent>;

pub(crate) fn send(p: Option<&Progress>, e: PullEvent) {
    if let Some(p) = p {
        let _ = p.send(e);
    }
}

/// Progress is reported at most this often, in bytes.
pub(crate) const STEP: u64 = 256 * 1024;
