//! Serialises a layer's entries into a deterministic tar stream.
//!
//! Entries are sorted by path, every header field comes from the recipe
//! (never from a file on disk), so the same recipe always gives the same
//! bytes. Long names use GNU `././@LongLink` records or ustar prefix
//! splitting, extended attributes PAX `SCHILY.xattr.*` records, and sparse
//! files old-GNU sparse headers with extension blocks: the encodings real
//! image layers contain.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::{bail, Context};
use tar::{EntryType, GnuExtSparseHeader, Header};

use super::entry::{HeaderFormat, Kind, LayerEntry};

const BLOCK: usize = 512;

/// Writes `entries` as an uncompressed tar archive.
pub fn write_tar(entries: &[LayerEntry]) -> anyhow::Result<Vec<u8>> {
    let mut sorted: Vec<&LayerEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));

    let mut seen = BTreeSet::new();
    let mut builder = tar::Builder::new(Vec::new());
    for entry in sorted {
        if !seen.insert(entry.path.as_str()) {
            bail!("layer lists {} twice", entry.path);
        }
        if let Kind::Hardlink(target) = &entry.kind {
            // Unpackers resolve a hard link against entries already extracted.
            if !seen.contains(target.as_str()) {
                bail!("hard link {} precedes its target {target}", entry.path);
            }
        }
        append(&mut builder, entry).with_context(|| format!("writing {}", entry.path))?;
    }
    Ok(builder.into_inner()?)
}

fn append(builder: &mut tar::Builder<Vec<u8>>, entry: &LayerEntry) -> anyhow::Result<()> {
    if !entry.xattrs.is_empty() {
        let records: Vec<(String, &[u8])> = entry
            .xattrs
            .iter()
            .map(|(name, value)| (format!("SCHILY.xattr.{name}"), value.as_slice()))
            .collect();
        builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
    }

    let mut header = match entry.format {
        HeaderFormat::Gnu => Header::new_gnu(),
        HeaderFormat::Ustar => Header::new_ustar(),
    };
    header.set_uid(entry.uid.into());
    header.set_gid(entry.gid.into());
    header.set_mode(entry.mode);
    header.set_mtime(entry.mtime);

    match &entry.kind {
        Kind::Dir => {
            header.set_entry_type(EntryType::Directory);
            header.set_size(0);
            // Directories carry a trailing slash, as docker and GNU tar write them.
            builder.append_data(&mut header, format!("{}/", entry.path), std::io::empty())?;
        }
        Kind::File(data) => {
            header.set_entry_type(EntryType::Regular);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, &entry.path, data.as_slice())?;
        }
        Kind::Symlink(target) => {
            header.set_entry_type(EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, &entry.path, target)?;
        }
        Kind::Hardlink(target) => {
            header.set_entry_type(EntryType::Link);
            header.set_size(0);
            builder.append_link(&mut header, &entry.path, target)?;
        }
        Kind::Sparse { size, chunks } => append_sparse(builder, header, entry, *size, chunks)?,
    }
    Ok(())
}

/// Writes an old-GNU sparse entry: the first four extents in the header,
/// the rest in 512-byte extension blocks, then the data of every extent.
/// The `tar` crate only produces these from files on disk, so the blocks
/// are laid out here.
fn append_sparse(
    builder: &mut tar::Builder<Vec<u8>>,
    mut header: Header,
    entry: &LayerEntry,
    size: u64,
    chunks: &[(u64, Vec<u8>)],
) -> anyhow::Result<()> {
    if entry.format != HeaderFormat::Gnu {
        bail!("sparse entries need a GNU header");
    }
    let stored: usize = chunks.iter().map(|(_, data)| data.len()).sum();
    header.set_path(&entry.path)?;
    header.set_entry_type(EntryType::GNUSparse);
    header.set_size(stored as u64);
    let gnu = header.as_gnu_mut().context("GNU header")?;
    gnu.set_real_size(size);
    let (inline, rest) = chunks.split_at(chunks.len().min(gnu.sparse.len()));
    for (slot, (offset, data)) in gnu.sparse.iter_mut().zip(inline) {
        slot.set_offset(*offset);
        slot.set_length(data.len() as u64);
    }
    gnu.set_is_extended(!rest.is_empty());
    header.set_cksum();

    let out = builder.get_mut();
    out.write_all(header.as_bytes())?;
    let mut groups = rest
        .chunks(GnuExtSparseHeader::new().sparse.len())
        .peekable();
    while let Some(group) = groups.next() {
        let mut ext = GnuExtSparseHeader::new();
        for (slot, (offset, data)) in ext.sparse.iter_mut().zip(group) {
            slot.set_offset(*offset);
            slot.set_length(data.len() as u64);
        }
        ext.set_is_extended(groups.peek().is_some());
        out.write_all(ext.as_bytes())?;
    }
    for (_, data) in chunks {
        out.write_all(data)?;
    }
    let padding = (BLOCK - stored % BLOCK) % BLOCK;
    out.write_all(&vec![0; padding])?;
    Ok(())
}
