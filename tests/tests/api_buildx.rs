//! The buildx tests (`buildx/cases.rs`) with the current buildx (Debian testing's, what docker-ce users have).

use hutch_tests::daemon::Buildx;

const BUILDX: Buildx = Buildx::Current;

#[path = "buildx/cases.rs"]
mod cases;
