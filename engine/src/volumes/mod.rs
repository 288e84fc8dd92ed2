//! Volumes: the local driver's store under the data root ([`store`]) and
//! the mounts containers ask for ([`request`]). The engine resolves a
//! container's mounts at create (`containers::mounts`) and the runtime
//! applies them in the container's mount namespace.

pub mod request;
pub mod store;

pub use request::{BindRecursive, MountPoint, MountRequest, MountType};
pub use store::{Backing, Volume, VolumeCreate, VolumeError, VolumeStore, ANONYMOUS_LABEL};
