//! Image leases of containers, in one place: a container's image snapshots
//! stay while the container (or its unfinished removal) exists. The lease
//! is taken before CreateContainer mounts anything, kept when the name was
//! already taken (it is that container's), released when a create fails or
//! a container's removal finishes, and reconciled at berthd's start (a crash
//! between a removal and its release). Errors stay domain errors; the
//! service maps them once.

use std::collections::HashSet;

use berth_containers::record::{LEASE_PREFIX, lease_holder};
use berth_containers::{ContainerFilter, ContainerRecord, Containers, RuntimeError};
use berth_image::{ImageError, Images};

/// What leasing can fail on.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Containers(#[from] RuntimeError),
}

/// A lease taken for a container about to be created.
#[derive(Debug)]
pub struct Taken {
    holder: String,
    /// The leased image.
    pub image: berth_image::ImageRecord,
    /// The images of its image volumes, in the order asked.
    pub volumes: Vec<berth_image::ImageRecord>,
}

/// Leases image `image_id` and the images of the container's image volumes
/// (`volume_ids`) for the container `name` (attempt) of `pod_id`: one
/// lease, so the volumes' snapshots stay while the container does, even
/// when their images are removed.
pub async fn take(
    images: &Images,
    pod_id: &str,
    name: &str,
    attempt: u32,
    image_id: &berth_image::Digest,
    volume_ids: &[berth_image::Digest],
) -> Result<Taken, ImageError> {
    let holder = lease_holder(name, attempt, pod_id);
    let mut ids = Vec::with_capacity(1 + volume_ids.len());
    ids.push(*image_id);
    ids.extend_from_slice(volume_ids);
    let mut recs = images.lease_all(&holder, &ids).await?.into_iter();
    let image = recs
        .next()
        .ok_or_else(|| ImageError::NotFound(image_id.to_string()))?;
    Ok(Taken {
        holder,
        image,
        volumes: recs.collect(),
    })
}

/// After a failed create: the lease goes, unless the create failed because
/// the name is another container's (whose lease this is).
pub fn create_failed(images: &Images, taken: &Taken, err: &RuntimeError) {
    if matches!(err, RuntimeError::NameTaken { .. }) {
        return;
    }
    if let Err(e) = images.release(&taken.holder) {
        tracing::warn!(holder = %taken.holder, error = %e, "releasing the image lease of a failed create");
    }
}

/// Releases the leases of removed containers and collects what they held.
pub async fn release(images: &Images, removed: &[ContainerRecord]) -> Result<(), ImageError> {
    let mut collect = false;
    for rec in removed {
        collect |= images.release(&rec.lease_holder())?;
    }
    if collect {
        images.gc().await?;
    }
    Ok(())
}

/// At start: leases whose container is gone are dropped, and what they
/// held collected.
pub async fn reconcile(images: &Images, containers: &Containers) -> Result<(), LeaseError> {
    let mut live: HashSet<String> = containers
        .list(&ContainerFilter::default())?
        .iter()
        .map(|r| r.lease_holder())
        .collect();
    // A removal not finished keeps its rootfs, so its lease.
    live.extend(
        containers
            .pending_removals()?
            .iter()
            .map(|r| r.lease_holder()),
    );
    let mut collect = false;
    for holder in images.lease_holders()? {
        if holder.starts_with(LEASE_PREFIX) && !live.contains(&holder) {
            collect |= images.release(&holder)?;
        }
    }
    if collect {
        images.gc().await?;
    }
    Ok(())
}
