//! Compression detection by magic bytes, and the decompression-bomb guard.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Compressed bytes handed to the inflater per call. flate2's own default
/// (32 KiB) makes inflate stop and restart its fast loop ~8x as often; a
/// Debian layer inflated ~10% faster with 256 KiB.
const GZIP_INPUT_BUF: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Limits on how much a layer may expand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most uncompressed bytes a layer may have.
    pub max_uncompressed: u64,
    /// Most uncompressed bytes per compressed byte...
    pub max_ratio: u64,
    /// ...checked once this many uncompressed bytes have been produced
    /// (small inputs legitimately compress very well).
    pub ratio_grace: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_uncompressed: 64 << 30,
            max_ratio: 1000,
            ratio_grace: 256 << 20,
        }
    }
}

/// Which limit a stream broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Size {
        limit: u64,
    },
    Ratio {
        limit: u64,
        compressed: u64,
        uncompressed: u64,
    },
}

/// Which stage of the pipeline failed first; errors pass through the tar
/// reader, which does not say where they came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Input,
    Decompress,
    Limit(LimitHit),
}

pub type StageCell = Rc<Cell<Option<Stage>>>;

fn note(cell: &StageCell, stage: Stage) {
    if cell.get().is_none() {
        cell.set(Some(stage));
    }
}

/// The raw (compressed) side: counted for the ratio check, and hashed for
/// the blob digest unless the caller hashes it already.
pub struct Input<R> {
    inner: R,
    hasher: Option<Sha256>,
    count: Rc<Cell<u64>>,
    stage: StageCell,
}

impl<R: Read> Input<R> {
    pub fn new(inner: R, stage: StageCell, hash: bool) -> Self {
        Input {
            inner,
            hasher: hash.then(Sha256::new),
            count: Rc::new(Cell::new(0)),
            stage,
        }
    }

    pub fn counter(&self) -> Rc<Cell<u64>> {
        self.count.clone()
    }

    /// The blob digest (if hashed) and size.
    pub fn finish(self) -> (Option<Digest>, u64) {
        (self.hasher.map(Digest::from_hasher), self.count.get())
    }
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .inner
            .read(buf)
            .inspect_err(|_| note(&self.stage, Stage::Input))?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Tags errors of the decompressor so they can be reported as such.
pub struct Decoder<R> {
    inner: R,
    stage: StageCell,
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|_| note(&self.stage, Stage::Decompress))
    }
}

/// Wraps `input` (whose first bytes are `head`, already read) in the
/// decompressor its magic bytes call for.
pub fn decoder<'a, R: Read + 'a>(
    compression: Compression,
    input: R,
    stage: StageCell,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(Decoder {
            inner: flate2::bufread::MultiGzDecoder::new(io::BufReader::with_capacity(
                GZIP_INPUT_BUF,
                input,
            )),
            stage,
        }),
        Compression::Zstd => Box::new(Decoder {
            inner: zstd::stream::read::Decoder::new(input)?,
            stage,
        }),
    })
}

/// `input` decompressed as its first bytes say (gzip, zstd, or a plain
/// tar as it is), as Docker's archive upload accepts it: `docker cp` sends
/// a plain tar, other clients (bollard) gzip it.
pub fn auto_decoder<'a, R: io::BufRead + 'a>(mut input: R) -> io::Result<Box<dyn Read + 'a>> {
    let compression = Compression::detect(input.fill_buf()?);
    Ok(match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
    })
}

/// Stops a stream that expands past the limits.
pub struct Guard<R> {
    inner: R,
    produced: u64,
    compressed: Rc<Cell<u64>>,
    check_ratio: bool,
    limits: UnpackLimits,
    stage: StageCell,
}

impl<R: Read> Guard<R> {
    pub fn new(
        inner: R,
        compressed: Rc<Cell<u64>>,
        check_ratio: bool,
        limits: UnpackLimits,
        stage: StageCell,
    ) -> Self {
        Guard {
            inner,
            produced: 0,
            compressed,
            check_ratio,
            limits,
            stage,
        }
    }

    fn check(&self) -> Option<LimitHit> {
        if self.produced > self.limits.max_uncompressed {
            return Some(LimitHit::Size {
                limit: self.limits.max_uncompressed,
            });
        }
        let compressed = self.compressed.get().max(1);
        if self.check_ratio
            && self.produced > self.limits.ratio_grace
            && self.produced / compressed > self.limits.max_ratio
        {
            return Some(LimitHit::Ratio {
                limit: self.limits.max_ratio,
                compressed,
                uncompressed: self.produced,
            });
        }
        None
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.produced += n as u64;
        if let Some(hit) = self.check() {
            note(&self.stage, Stage::Limit(hit));
            return Err(io::Error::other("layer exceeds the decompression limits"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_by_magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"etc/"), Compression::None);
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(data).expect("compress in memory");
        enc.finish().expect("finish gzip")
    }

    #[test]
    fn guard_stops_high_ratio_streams() {
        let zeros = vec![0u8; 4 << 20];
        let compressed = gzip(&zeros);
        let stage: StageCell = Rc::default();
        let input = Input::new(&compressed[..], stage.clone(), true);
        let counter = input.counter();
        let dec = decoder(Compression::Gzip, input, stage.clone()).expect("decoder");
        let limits = UnpackLimits {
            max_uncompressed: u64::MAX,
            max_ratio: 10,
            ratio_grace: 1 << 20,
        };
        let mut guard = Guard::new(dec, counter, true, limits, stage.clone());
        let err = io::copy(&mut guard, &mut io::sink()).expect_err("bomb must be stopped");
        assert!(err.to_string().contains("limits"));
        assert!(matches!(
            stage.get(),
            Some(Stage::Limit(LimitHit::Ratio { limit: 10, .. }))
        ));
    }

    #[test]
    fn guard_stops_oversized_streams() {
        let data = vec![1u8; 10_000];
        let stage: StageCell = Rc::default();
        let limits = UnpackLimits {
            max_uncompressed: 4096,
            ..UnpackLimits::default()
        };
        let mut guard = Guard::new(&data[..], Rc::default(), false, limits, stage.clone());
        assert!(io::copy(&mut guard, &mut io::sink()).is_err());
        assert_eq!(
            stage.get(),
            Some(Stage::Limit(LimitHit::Size { limit: 4096 }))
        );
    }

    #[test]
    fn truncated_gzip_is_a_decompression_error() {
        let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let compressed = gzip(&data);
        let cut = &compressed[..compressed.len() / 2];
        let stage: StageCell = Rc::default();
        let input = Input::new(cut, stage.clone(), true);
        let mut dec = decoder(Compression::Gzip, input, stage.clone()).expect("decoder");
        assert!(io::copy(&mut dec, &mut io::sink()).is_err());
        assert_eq!(stage.get(), Some(Stage::Decompress));
    }

    #[test]
    fn zstd_round_trip() {
        let data = b"hello zstd".repeat(1000);
        let compressed = zstd::encode_all(&data[..], 3).expect("zstd encode");
        assert_eq!(Compression::detect(&compressed), Compression::Zstd);
        let stage: StageCell = Rc::default();
        let mut dec = decoder(Compression::Zstd, &compressed[..], stage).expect("decoder");
        let mut out = Vec::new();
        dec.read_to_end(&mut out).expect("decode");
        assert_eq!(out, data);
    }
}
