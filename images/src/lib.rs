//! hutch's image store: content store (blobs by digest), safe layer
//! unpacking, image records and tags, the layer chains a container's rootfs
//! is built from, and docker-archive / OCI layout save and load. The
//! registry client builds on the same store.
//!
//! It knows nothing of the HTTP API or Dockerfiles. The entry point is
//! [`ImageStore`].

pub mod archive;
pub mod built;
pub mod digest;
pub mod filters;
mod image_store;
pub mod import;
pub mod oci;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;

pub use built::{BuiltLayer, LayerWriter, NewLayer};
pub use digest::Digest;
pub use filters::ListFilters;
pub use image_store::{
    ImageDetails, ImageError, ImageStore, ImageSummary, RegistryRequest, Removed,
};
pub use import::LoadedImage;
pub use progress::{NoProgress, ProgressEvent, ProgressSink};
pub use reference::Reference;
pub use unpack::UnpackLimits;
