//! `unpack-timer LAYER DEST`: unpacks one layer blob into the empty
//! directory DEST with hutch's unpacker (as `hutch pull` does, minus the
//! network and the store) and prints the seconds it took. Used by
//! tests/bench/pull.sh to compare against `tar -xzf`, inside the pod.

use std::fs::File;
use std::io::BufReader;
use std::time::Instant;

use anyhow::Context;
use hutch_images::unpack::{unpack_layer, UnpackLimits};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [layer, dest] = args.as_slice() else {
        anyhow::bail!("usage: unpack-timer LAYER DEST");
    };
    let start = Instant::now();
    let file = File::open(layer).with_context(|| format!("opening {layer}"))?;
    let stats = unpack_layer(
        BufReader::with_capacity(1 << 20, file),
        std::path::Path::new(dest),
        UnpackLimits::default(),
    )
    .with_context(|| format!("unpacking {layer}"))?;
    let elapsed = start.elapsed().as_secs_f64();
    eprintln!(
        "{} entries, {} bytes of content, diff ID {}",
        stats.entries, stats.content_size, stats.diff_id
    );
    println!("{elapsed:.3}");
    Ok(())
}
