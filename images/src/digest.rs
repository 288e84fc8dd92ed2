//! Content digests (`sha256:<64 hex>`), the only algorithm images use in
//! practice, plus readers and writers that hash what passes through them so
//! that a stream is verified in the same pass that stores or unpacks it.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected \"sha256:\" followed by 64 lowercase hex digits")]
    Malformed(String),
    #[error("unsupported digest algorithm {0:?}: only sha256 is supported")]
    UnsupportedAlgorithm(String),
}

/// A sha256 content digest. Always valid once constructed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(data))
    }

    /// Parses the bare 64-hex form (the `<hex>` of `sha256:<hex>`).
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        if is_sha256_hex(hex) {
            Ok(Digest {
                hex: hex.to_owned(),
            })
        } else {
            Err(DigestError::Malformed(hex.to_owned()))
        }
    }

    pub(crate) fn from_hasher(hasher: Sha256) -> Digest {
        Digest {
            hex: format!("{:x}", hasher.finalize()),
        }
    }

    /// The 64 hex digits without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The 12-digit short form Docker shows as an image ID.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// The digest of `"<parent> <self>"`, which is how OCI chain IDs link
    /// each layer's diff ID to the chain below it.
    pub fn chain(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
        match parent {
            None => diff_id.clone(),
            Some(parent) => Digest::of(format!("{parent} {diff_id}").as_bytes()),
        }
    }
}

/// The chain IDs of a stack of layers given their diff IDs, bottom first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = Digest::chain(out.last(), diff_id);
        out.push(next);
    }
    out
}

fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed(s.to_owned()));
        };
        if algorithm != "sha256" {
            let known_shape = !algorithm.is_empty()
                && algorithm
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b));
            return Err(if known_shape {
                DigestError::UnsupportedAlgorithm(algorithm.to_owned())
            } else {
                DigestError::Malformed(s.to_owned())
            });
        }
        if !is_sha256_hex(hex) {
            return Err(DigestError::Malformed(s.to_owned()));
        }
        Ok(Digest {
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes and counts everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest of what was written, the byte count, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest::from_hasher(self.hasher), self.written, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.read
    }

    /// Reads whatever is left so that the digest covers the whole stream
    /// (a tar reader stops at the end-of-archive marker, but the digest is
    /// over every byte, padding included).
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }

    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.read)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_input_is_the_well_known_value() {
        assert_eq!(Digest::of(b"").hex(), EMPTY);
        assert_eq!(Digest::of(b"").to_string(), format!("sha256:{EMPTY}"));
    }

    #[test]
    fn parses_and_rejects() {
        let d: Digest = format!("sha256:{EMPTY}").parse().expect("valid digest");
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(
            "sha512:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm("sha512".into()))
        );
        assert!(matches!(
            "sha256:ABCD".parse::<Digest>(),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            format!("sha256:{}", EMPTY.to_uppercase()).parse::<Digest>(),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            EMPTY.parse::<Digest>(),
            Err(DigestError::Malformed(_))
        ));
        assert!(Digest::from_hex(EMPTY).is_ok());
        assert!(Digest::from_hex(&EMPTY[1..]).is_err());
    }

    #[test]
    fn hashing_reader_and_writer_agree_with_one_shot_hash() {
        let data = vec![7u8; 100_000];
        let mut reader = HashingReader::new(&data[..]);
        let mut out = HashingWriter::new(Vec::new());
        io::copy(&mut reader, &mut out).expect("copy in memory");
        let (rd, rn) = reader.finish();
        let (wd, wn, bytes) = out.finish();
        assert_eq!(rd, Digest::of(&data));
        assert_eq!(wd, rd);
        assert_eq!((rn, wn), (100_000, 100_000));
        assert_eq!(bytes, data);
    }

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Digest::of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn serde_round_trip() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).expect("serialize");
        assert_eq!(json, format!("\"{d}\""));
        let back: Digest = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
