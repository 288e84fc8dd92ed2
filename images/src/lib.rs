//! hutch's image store: registry client, content store (blobs by digest),
//! safe layer unpacking, image metadata and tags, snapshots (the layer chains
//! a container's rootfs is built from), save/load/push.
//!
//! It knows nothing of the HTTP API or Dockerfiles.

pub mod digest;
pub mod reference;
pub mod store;
pub mod unpack;
