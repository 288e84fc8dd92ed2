//! The volumes image: busybox, then a layer with content under the image's
//! VOLUME `/data` (owners and modes a populated volume must keep) and
//! symlinks that would take a mount target out of the rootfs if the engine
//! followed them on its own side. Also a copy of busybox with a file
//! capability (`/caps/busybox`, cap_net_raw+ep), for the ID modes.

use super::busybox::{self, Busybox};
use super::entry::LayerEntry;
use super::layout::{Recipe, RecipeLayer};

/// Where the `escape` symlinks point: a path that exists in the pod too.
pub const ESCAPE_TARGET: &str = "/../../../../../tmp/hutch-escape";

pub fn recipe(bb: &Busybox) -> anyhow::Result<Recipe> {
    let mut recipe = busybox::recipe(bb)?;
    recipe.layers.push(RecipeLayer {
        created_by: "hutch-tests: volume content and escaping symlinks".to_owned(),
        entries: vec![
            LayerEntry::dir("data", 0o750).owner(1000, 1000),
            LayerEntry::file("data/hello", 0o640, "from the image\n").owner(1000, 1000),
            LayerEntry::dir("data/sub", 0o700).owner(1001, 1002),
            LayerEntry::file("data/sub/deep", 0o600, "deep\n").owner(1001, 1002),
            LayerEntry::dir("seeded", 0o755),
            LayerEntry::file("seeded/file", 0o644, "seed\n"),
            LayerEntry::symlink("escape", ESCAPE_TARGET),
            LayerEntry::dir("mnt", 0o755),
            LayerEntry::symlink("mnt/up", "../../../../../tmp/hutch-escape-rel"),
            LayerEntry::dir("caps", 0o755),
            LayerEntry::file("caps/busybox", 0o755, bb.bytes.clone()).xattr(
                "security.capability",
                super::torture::capability_net_raw_ep(),
            ),
        ],
    });
    recipe.volumes = vec!["/data".to_owned()];
    Ok(recipe)
}
