//! Build facts `/version` reports (Docker's GitCommit, BuildTime, GoVersion):
//! the commit, its commit time (not the wall clock, so builds stay
//! reproducible) and the compiler. Missing git is not an error.
//! Also compiles BuildKit's gRPC API subset (`proto/`) with protox (a
//! protobuf compiler in Rust, so no protoc on the build machine) into tonic
//! services.

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() {
    let commit = output("git", &["rev-parse", "--short=7", "HEAD"]).unwrap_or_default();
    let time = output("git", &["log", "-1", "--format=%cI"]).unwrap_or_default();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_default();
    println!("cargo:rustc-env=HUTCH_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=HUTCH_BUILD_TIME={time}");
    println!("cargo:rustc-env=HUTCH_RUSTC_VERSION={rustc_version}");
    if let Some(head) = output("git", &["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(refs) = output("git", &["rev-parse", "--git-common-dir"]) {
        println!("cargo:rerun-if-changed={refs}/refs/heads");
    }
    println!("cargo:rerun-if-changed=build.rs");
    compile_protos();
}

fn compile_protos() {
    const FILES: &[&str] = &[
        "control.proto",
        "gateway.proto",
        "filesync.proto",
        "upload.proto",
        "secrets.proto",
        "sshforward.proto",
        "content.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = match protox::compile(FILES, ["proto"]) {
        Ok(d) => d,
        Err(e) => panic!("compiling proto/: {e:?}"),
    };
    if let Err(e) = tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(descriptors)
    {
        panic!("generating the gRPC code: {e}");
    }
}
