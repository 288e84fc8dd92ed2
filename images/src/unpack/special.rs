//! A size cap for the tar members that describe the next entry: GNU long
//! names and long link names, and PAX extended headers. The tar crate reads
//! each of them whole into memory before it yields the entry they describe,
//! with no limit, so a layer could claim a many-gigabyte "long name". As
//! Go's archive/tar (and so Docker) does, such a member larger than
//! [`MAX_SPECIAL_SIZE`] is refused before a byte of its data is read.
//!
//! The watcher sees the bytes as the tar reader reads them. From the
//! position where the next header starts (the caller says where, after each
//! entry), it parses each header; while they are special members it skips
//! over their data to the next header, and it stops at the first ordinary
//! entry (whose own size may come from a PAX record: the caller knows it).

use std::io;

use tar::Header;

/// Go's archive/tar `maxSpecialFileSize`.
pub const MAX_SPECIAL_SIZE: u64 = 1 << 20;

const BLOCK: u64 = 512;

/// A special member found too large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    pub kind: &'static str,
    pub size: u64,
}

pub struct SpecialWatch {
    /// Where the header being watched starts; `None` while inside an
    /// ordinary entry (until the caller says where the next header is).
    header_at: Option<u64>,
    header: [u8; BLOCK as usize],
    pub found: Option<TooLarge>,
}

impl SpecialWatch {
    pub fn new() -> SpecialWatch {
        SpecialWatch {
            header_at: Some(0),
            header: [0; BLOCK as usize],
            found: None,
        }
    }

    /// The next header starts at `at` (the end of an entry's data, padded
    /// to a block).
    pub fn expect_header_at(&mut self, at: u64) {
        self.header_at = Some(at.next_multiple_of(BLOCK));
    }

    /// `bytes` were read at stream offset `start`. An error when they hold
    /// the header of a special member larger than the limit.
    pub fn saw(&mut self, start: u64, bytes: &[u8]) -> io::Result<()> {
        let end = start + bytes.len() as u64;
        while let Some(at) = self.header_at {
            let header_end = at + BLOCK;
            if end <= at || start >= header_end {
                // Not in this read; headers only come later in the stream.
                if start >= header_end {
                    // Read past without seeing it whole: cannot happen with
                    // sequential reads, but never watch a stale position.
                    self.header_at = None;
                }
                return Ok(());
            }
            let from = start.max(at);
            let to = end.min(header_end);
            let src = &bytes[(from - start) as usize..(to - start) as usize];
            let dst = (from - at) as usize;
            self.header[dst..dst + src.len()].copy_from_slice(src);
            if to < header_end {
                return Ok(());
            }
            self.header_at = self.next_after(at)?;
        }
        Ok(())
    }

    /// Looks at the complete header at `at`: where the next one starts if
    /// this is a special member, `None` if it is an ordinary entry.
    fn next_after(&mut self, at: u64) -> io::Result<Option<u64>> {
        let header = Header::from_byte_slice(&self.header);
        let kind = header.entry_type();
        let what = if kind.is_gnu_longname() {
            "GNU long name"
        } else if kind.is_gnu_longlink() {
            "GNU long link name"
        } else if kind.is_pax_local_extensions() {
            "PAX extended header"
        } else {
            return Ok(None);
        };
        // A size the tar reader cannot parse is its error to report.
        let Ok(size) = header.entry_size() else {
            return Ok(None);
        };
        if size > MAX_SPECIAL_SIZE {
            self.found = Some(TooLarge { kind: what, size });
            return Err(io::Error::other(format!(
                "{what} of {size} bytes exceeds the {MAX_SPECIAL_SIZE} byte limit"
            )));
        }
        Ok(Some(at + BLOCK + size.next_multiple_of(BLOCK)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special(kind: u8, size: u64) -> [u8; 512] {
        let mut header = Header::new_gnu();
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_size(size);
        header.set_cksum();
        *header.as_bytes()
    }

    fn feed(watch: &mut SpecialWatch, stream: &[u8], step: usize) -> io::Result<()> {
        let mut at = 0;
        for chunk in stream.chunks(step) {
            watch.saw(at, chunk)?;
            at += chunk.len() as u64;
        }
        Ok(())
    }

    #[test]
    fn a_chain_of_small_special_members_passes() {
        let mut stream = special(b'x', 100).to_vec();
        stream.extend([0u8; 512]);
        stream.extend(special(b'L', 600));
        stream.extend([0u8; 1024]);
        stream.extend(special(b'0', 1 << 40));
        for step in [1, 7, 512, 4096] {
            let mut watch = SpecialWatch::new();
            feed(&mut watch, &stream, step).expect("small special members");
            assert_eq!(watch.found, None);
        }
    }

    #[test]
    fn an_oversized_special_member_after_small_ones_is_refused() {
        let mut stream = special(b'x', 10).to_vec();
        stream.extend([0u8; 512]);
        stream.extend(special(b'K', MAX_SPECIAL_SIZE + 1));
        for step in [1, 100, 512, 8192] {
            let mut watch = SpecialWatch::new();
            let err = feed(&mut watch, &stream, step).expect_err("oversized long link");
            assert!(err.to_string().contains("GNU long link name"), "{err}");
            assert_eq!(
                watch.found,
                Some(TooLarge {
                    kind: "GNU long link name",
                    size: MAX_SPECIAL_SIZE + 1
                })
            );
        }
    }

    #[test]
    fn ordinary_entries_are_not_watched_until_told_where_the_next_header_is() {
        // A big regular file whose data happens to look like a huge PAX header.
        let mut stream = special(b'0', 512).to_vec();
        stream.extend(special(b'x', 1 << 30));
        stream.extend(special(b'L', 1 << 30));
        let mut watch = SpecialWatch::new();
        feed(&mut watch, &stream[..1024], 64).expect("data is not headers");
        watch.expect_header_at(1024);
        let err = watch.saw(1024, &stream[1024..]).expect_err("next header");
        assert!(err.to_string().contains("GNU long name"), "{err}");
    }
}
