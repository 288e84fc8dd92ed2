//! `unpack-timer LAYER DEST`: unpacks one layer blob into the empty
//! directory DEST with hutch's unpacker (as `hutch pull` does, minus the
//! network and the store) and prints the seconds it took. Used by
//! tests/bench/pull.sh to compare against `tar -xzf`, inside the pod.
//!
//! `unpack-timer --floor LAYER`: the work every verifying, unpacking pull
//! of a gzip layer must do whoever writes it, timed alone on one thread with
//! no file written: inflating the one gzip stream (sequential by nature)
//! and SHA-256 of both forms (the blob digest and the diff ID). Prints
//! "INFLATE_MS BLOB_SHA_MS DIFF_SHA_MS"; pull.sh sets it beside `skopeo
//! copy`'s time (skopeo hashes the blob too, not the diff).

use std::fs::File;
use std::io::{BufReader, Read};
use std::time::{Duration, Instant};

use anyhow::Context;
use flate2::read::MultiGzDecoder;
use hutch_images::unpack::{unpack_layer, UnpackLimits};
use sha2::{Digest, Sha256};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, layer] if flag == "--floor" => floor(layer),
        [layer, dest] => unpack(layer, dest),
        _ => anyhow::bail!("usage: unpack-timer LAYER DEST | unpack-timer --floor LAYER"),
    }
}

fn unpack(layer: &str, dest: &str) -> anyhow::Result<()> {
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

fn floor(layer: &str) -> anyhow::Result<()> {
    // In memory first, so reading the file is not billed to either part.
    let blob = std::fs::read(layer).with_context(|| format!("reading {layer}"))?;
    let mut buf = vec![0u8; 512 * 1024];
    let mut inflate = Duration::ZERO;
    let mut diff_sha = Duration::ZERO;

    let start = Instant::now();
    let blob_digest = Sha256::digest(&blob);
    let blob_sha = start.elapsed();

    let mut decoder = MultiGzDecoder::new(&blob[..]);
    let mut diff_id = Sha256::new();
    let mut size = 0u64;
    loop {
        let start = Instant::now();
        let n = decoder.read(&mut buf).context("inflating the layer")?;
        inflate += start.elapsed();
        if n == 0 {
            break;
        }
        size += n as u64;
        let start = Instant::now();
        diff_id.update(&buf[..n]);
        diff_sha += start.elapsed();
    }
    let start = Instant::now();
    let diff_id = diff_id.finalize();
    diff_sha += start.elapsed();
    eprintln!(
        "{} -> {size} bytes, blob sha256:{blob_digest:x}, diff ID sha256:{diff_id:x}",
        blob.len()
    );
    println!(
        "{} {} {}",
        inflate.as_millis(),
        blob_sha.as_millis(),
        diff_sha.as_millis()
    );
    Ok(())
}
