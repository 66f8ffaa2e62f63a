//! Images: registry pull, content store, layer unpack, overlay snapshots,
//! image metadata, GC and offline import. Empty until the images issue
//! lands; berthd answers the ImageService RPCs UNIMPLEMENTED meanwhile.
