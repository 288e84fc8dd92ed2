//! The buildx tests (`buildx/cases.rs`) with Debian 13's buildx 0.13, which drives a docker-driver daemon differently (it pushes through the API itself).

use hutch_tests::daemon::Buildx;

const BUILDX: Buildx = Buildx::Debian13;

#[path = "buildx/cases.rs"]
mod cases;
