//! `docker load` of a hostile archive: any bytes as a docker-archive or
//! OCI-layout tar, loaded into a fresh store. The load may fail, but must
//! not panic, and a failed load stores no image. Run it as the layer_tar
//! target runs (see fuzz/README.md).
#![no_main]

use hutch_images::archive::load_tar;
use hutch_images::store::Store;
use hutch_images::UnpackLimits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let root = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(root.path()).expect("a store");
    let limits = UnpackLimits {
        max_uncompressed: 64 << 20,
        max_ratio: 1000,
        ratio_grace: 1 << 20,
    };
    if load_tar(&store, data, limits).is_err() {
        let images = store.records.ids().expect("list the images");
        assert!(images.is_empty(), "a failed load left images: {images:?}");
    }
});
