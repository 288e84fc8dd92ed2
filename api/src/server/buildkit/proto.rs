//! The Rust types and tonic services generated from `api/proto/` (BuildKit's
//! wire format; see build.rs). Modules nest as the protobuf packages do,
//! because the generated code names other packages by `super::` paths.
#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

pub mod moby {
    pub mod buildkit {
        pub mod v1 {
            tonic::include_proto!("moby.buildkit.v1");
            pub mod types {
                tonic::include_proto!("moby.buildkit.v1.types");
            }
            pub mod apicaps {
                tonic::include_proto!("moby.buildkit.v1.apicaps");
            }
            pub mod frontend {
                tonic::include_proto!("moby.buildkit.v1.frontend");
            }
        }
        pub mod secrets {
            pub mod v1 {
                tonic::include_proto!("moby.buildkit.secrets.v1");
            }
        }
    }
    pub mod filesync {
        pub mod v1 {
            tonic::include_proto!("moby.filesync.v1");
        }
    }
    pub mod upload {
        pub mod v1 {
            tonic::include_proto!("moby.upload.v1");
        }
    }
    pub mod sshforward {
        pub mod v1 {
            tonic::include_proto!("moby.sshforward.v1");
        }
    }
}

pub mod containerd {
    pub mod services {
        pub mod content {
            pub mod v1 {
                tonic::include_proto!("containerd.services.content.v1");
            }
        }
    }
}

pub mod fsutil {
    pub mod types {
        tonic::include_proto!("fsutil.types");
    }
}

pub mod pb {
    tonic::include_proto!("pb");
}

pub use containerd::services::content::v1 as content;
pub use fsutil::types as fsutil_types;
pub use moby::buildkit::secrets::v1 as secrets;
pub use moby::buildkit::v1 as control;
pub use moby::buildkit::v1::frontend as gateway;
pub use moby::buildkit::v1::types as worker;
pub use moby::filesync::v1 as filesync;
pub use moby::sshforward::v1 as sshforward;
pub use moby::upload::v1 as upload;
