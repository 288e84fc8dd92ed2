//! The registry client: credentials, per-registry settings, sessions on
//! `oci-client`, platform selection, and streaming pull and push.

pub mod auth;
mod blob_sink;
pub mod build_cache;
pub mod client;
pub mod config;
pub mod distribution;
pub mod login;
pub mod platform;
pub mod pull;
pub mod push;
pub mod roots;
pub mod search;

pub use auth::{AuthConfig, AuthError, Credential, DockerConfig};
pub use client::RegistryError;
pub use config::RegistrySettings;
pub use distribution::DistributionInfo;
pub use login::{login, LoginError};
pub use pull::{PullError, PullOptions, PullStatus, Pulled};
pub use push::{PushError, Pushed};
