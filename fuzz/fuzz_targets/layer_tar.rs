//! A layer from a hostile registry: any bytes (gzip, zstd or a plain tar),
//! unpacked into `base/layer` next to a sentinel `base/outside`. The unpack
//! may fail, but must not panic and must leave everything outside the
//! layer dir as it was. Run it as an unprivileged user in a user namespace
//! of its own (see fuzz/README.md): an escape bug must not reach the host.
#![no_main]

use std::fs;

use hutch_images::unpack::{unpack_layer, UnpackLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let base = tempfile::tempdir().expect("a temp dir");
    let layer = base.path().join("layer");
    let outside = base.path().join("outside");
    fs::create_dir(&layer).expect("the layer dir");
    fs::create_dir(&outside).expect("the sentinel dir");
    fs::write(outside.join("file"), b"sentinel").expect("the sentinel file");
    let limits = UnpackLimits {
        max_uncompressed: 64 << 20,
        max_ratio: 1000,
        ratio_grace: 1 << 20,
    };
    let _ = unpack_layer(data, &layer, limits);
    let mut names: Vec<_> = fs::read_dir(base.path())
        .expect("list the base")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["layer", "outside"],
        "the unpack wrote next to the layer dir"
    );
    let inside: Vec<_> = fs::read_dir(&outside)
        .expect("list the sentinel dir")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    assert_eq!(inside, ["file"], "the unpack wrote into the sentinel dir");
    assert_eq!(
        fs::read(outside.join("file")).expect("read the sentinel"),
        b"sentinel"
    );
    // A layer dir the unpack made unremovable (no write bit on a dir) must
    // not stop the next run: give the tree back to its owner.
    open_up(&layer);
});

fn open_up(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            open_up(&entry.path());
        }
    }
}
