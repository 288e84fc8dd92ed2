//! User and group ID maps of containers, and the allocator behind the
//! `private` ID mode.
//!
//! The engine's user namespace owns IDs 0-65535 (the pod's whole range). In
//! `identity` mode a container maps them 1:1. In `private` mode each container
//! gets its own slice of them: a contiguous block for the IDs its image really
//! uses (0 up to its highest ordinary ID, rounded up), plus one single-ID line
//! per sparse high ID such as 65534 (`nobody`), each mapped to an engine ID of
//! its own. That is what lets dozens of isolated containers fit in 65536 IDs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde::{Deserialize, Serialize};

/// IDs the engine owns, and so the most a container can map.
pub const ENGINE_ID_COUNT: u32 = 65536;
/// Blocks are handed out in multiples of this size.
pub const BLOCK_GRANULE: u32 = 1024;
/// IDs at or above this are sparse: mapped one by one instead of widening the
/// block (Debian reserves 60000-65535 for `nobody` and friends).
pub const SPARSE_FROM: u32 = 60000;
/// Upper bound on single-ID lines per container; the kernel allows 340 map
/// lines, and an image with more sparse IDs than this is not a normal image.
pub const MAX_SPARSE_IDS: usize = 64;
/// Engine IDs below this are never given to private containers: the engine's
/// own root (0) and system IDs own the engine's files and the layer store.
pub const DEFAULT_POOL_START: u32 = 1024;

/// One line of `/proc/PID/uid_map`: container IDs `inside..inside+count`
/// are engine IDs `outside..outside+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapLine {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A container's UID and GID maps (the same lines serve both: the engine
/// hands out ID slots, not separate UIDs and GIDs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub lines: Vec<IdMapLine>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdMapError {
    #[error(
        "no free ID range of {needed} IDs left for a private-mode container \
         ({free} of the engine's IDs are free but not contiguously enough); \
         remove containers or use --userns-mode identity"
    )]
    Exhausted { needed: u32, free: u32 },
    #[error("ID {0} is outside the engine's range 0-65535")]
    OutOfRange(u32),
    #[error("the image uses {0} IDs at or above 60000, more than the {MAX_SPARSE_IDS} a private-mode container can map one by one")]
    TooManySparse(usize),
    #[error("ID map line {inside} {outside} {count} overlaps another line or leaves 0-65535")]
    Invalid {
        inside: u32,
        outside: u32,
        count: u32,
    },
    #[error("engine IDs {start}-{end} are already in use by another container")]
    InUse { start: u32, end: u32 },
}

impl IdMap {
    /// The `identity` mode: engine IDs 0-65535 mapped 1:1.
    pub fn identity() -> Self {
        IdMap {
            lines: vec![IdMapLine {
                inside: 0,
                outside: 0,
                count: ENGINE_ID_COUNT,
            }],
        }
    }

    /// True for the `identity` mode's map.
    pub fn is_identity(&self) -> bool {
        *self == Self::identity()
    }

    /// The text written to `/proc/PID/uid_map` and `gid_map`.
    pub fn proc_format(&self) -> String {
        let mut text = String::new();
        for l in &self.lines {
            // Writing to a String cannot fail.
            let _ = writeln!(text, "{} {} {}", l.inside, l.outside, l.count);
        }
        text
    }

    /// The engine ID that container ID `inside` maps to.
    pub fn to_engine(&self, inside: u32) -> Option<u32> {
        self.lines.iter().find_map(|l| {
            let off = inside.checked_sub(l.inside)?;
            (off < l.count).then(|| l.outside + off)
        })
    }

    /// Checks that the lines neither overlap (on either side) nor leave the
    /// engine's range: the kernel would refuse such a map with a bare EINVAL.
    pub fn validate(&self) -> Result<(), IdMapError> {
        let invalid = |l: &IdMapLine| IdMapError::Invalid {
            inside: l.inside,
            outside: l.outside,
            count: l.count,
        };
        for (i, a) in self.lines.iter().enumerate() {
            let a_in = span(a.inside, a.count).ok_or_else(|| invalid(a))?;
            let a_out = span(a.outside, a.count).ok_or_else(|| invalid(a))?;
            if a.count == 0 || a_out.end > ENGINE_ID_COUNT || a_in.end > ENGINE_ID_COUNT {
                return Err(invalid(a));
            }
            for b in &self.lines[i + 1..] {
                let b_in = span(b.inside, b.count).ok_or_else(|| invalid(b))?;
                let b_out = span(b.outside, b.count).ok_or_else(|| invalid(b))?;
                if overlaps(&a_in, &b_in) || overlaps(&a_out, &b_out) {
                    return Err(invalid(b));
                }
            }
        }
        Ok(())
    }

    /// Engine ID ranges this map occupies.
    fn engine_ranges(&self) -> impl Iterator<Item = Range<u32>> + '_ {
        self.lines
            .iter()
            .map(|l| l.outside..l.outside.saturating_add(l.count))
    }
}

fn span(start: u32, count: u32) -> Option<Range<u32>> {
    Some(start..start.checked_add(count)?)
}

fn overlaps(a: &Range<u32>, b: &Range<u32>) -> bool {
    a.start < b.end && b.start < a.end
}

/// What a private-mode container needs, derived from its image's IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateRequest {
    /// Container IDs `0..block` are mapped as one contiguous block.
    pub block: u32,
    /// Container IDs above the block, each mapped alone.
    pub sparse: Vec<u32>,
}

impl PrivateRequest {
    /// Sizes a request from every UID and GID the image uses (file owners in
    /// its layers, /etc/passwd, /etc/group): the block covers 0 up to the
    /// highest ID below [`SPARSE_FROM`], rounded up to [`BLOCK_GRANULE`]; IDs
    /// at or above it that the block does not cover are mapped singly.
    pub fn from_image_ids(ids: impl IntoIterator<Item = u32>) -> Result<Self, IdMapError> {
        let mut ids: Vec<u32> = ids.into_iter().collect();
        if let Some(&bad) = ids.iter().find(|&&id| id >= ENGINE_ID_COUNT) {
            return Err(IdMapError::OutOfRange(bad));
        }
        ids.sort_unstable();
        ids.dedup();
        let highest_dense = ids.iter().copied().filter(|&id| id < SPARSE_FROM).max();
        let needed = highest_dense.map_or(1, |id| id + 1);
        let block = needed.div_ceil(BLOCK_GRANULE).max(1) * BLOCK_GRANULE;
        let sparse: Vec<u32> = ids.into_iter().filter(|&id| id >= block).collect();
        if sparse.len() > MAX_SPARSE_IDS {
            return Err(IdMapError::TooManySparse(sparse.len()));
        }
        Ok(PrivateRequest { block, sparse })
    }
}

/// Hands out disjoint engine ID ranges to private-mode containers and takes
/// them back when containers are removed. Blocks are carved from the bottom
/// of the pool and single IDs from the top, so the two rarely fragment each
/// other. The daemon rebuilds it on start with [`IdAllocator::reserve`] from
/// the maps of the containers it re-adopts.
#[derive(Debug, Clone)]
pub struct IdAllocator {
    /// Free engine IDs: start → end (exclusive), non-adjacent, non-overlapping.
    free: BTreeMap<u32, u32>,
}

impl Default for IdAllocator {
    fn default() -> Self {
        Self::new(DEFAULT_POOL_START..ENGINE_ID_COUNT)
    }
}

impl IdAllocator {
    /// An allocator over the engine IDs in `pool`.
    pub fn new(pool: Range<u32>) -> Self {
        let mut free = BTreeMap::new();
        if pool.start < pool.end {
            free.insert(pool.start, pool.end.min(ENGINE_ID_COUNT));
        }
        IdAllocator { free }
    }

    /// Number of free engine IDs.
    pub fn free_count(&self) -> u32 {
        self.free.iter().map(|(s, e)| e - s).sum()
    }

    /// Allocates a container's map, or leaves the allocator untouched and
    /// says why not.
    pub fn allocate(&mut self, req: &PrivateRequest) -> Result<IdMap, IdMapError> {
        let needed = req.block + req.sparse.len() as u32;
        let exhausted = |free| IdMapError::Exhausted { needed, free };
        let total_free = self.free_count();
        if total_free < needed {
            return Err(exhausted(total_free));
        }
        let mut trial = self.clone();
        let block_start = trial
            .take_lowest_fit(req.block)
            .ok_or(exhausted(total_free))?;
        let mut lines = vec![IdMapLine {
            inside: 0,
            outside: block_start,
            count: req.block,
        }];
        for &inside in &req.sparse {
            let outside = trial.take_highest_single().ok_or(exhausted(total_free))?;
            lines.push(IdMapLine {
                inside,
                outside,
                count: 1,
            });
        }
        *self = trial;
        Ok(IdMap { lines })
    }

    /// Returns a map's engine IDs to the pool.
    pub fn release(&mut self, map: &IdMap) {
        for range in map.engine_ranges() {
            self.insert_free(range);
        }
    }

    /// Marks a map's engine IDs used (a container re-adopted after a daemon
    /// restart). Fails, changing nothing, if any of them is not free.
    pub fn reserve(&mut self, map: &IdMap) -> Result<(), IdMapError> {
        let mut trial = self.clone();
        for range in map.engine_ranges() {
            trial.remove_free(range.clone()).ok_or(IdMapError::InUse {
                start: range.start,
                end: range.end.saturating_sub(1),
            })?;
        }
        *self = trial;
        Ok(())
    }

    fn take_lowest_fit(&mut self, size: u32) -> Option<u32> {
        let (&start, _) = self.free.iter().find(|(&s, &e)| e - s >= size)?;
        self.remove_free(start..start + size)?;
        Some(start)
    }

    fn take_highest_single(&mut self) -> Option<u32> {
        let (_, &end) = self.free.iter().next_back()?;
        let id = end - 1;
        self.remove_free(id..end)?;
        Some(id)
    }

    /// Removes `range` from the free set; `None` unless it lies entirely
    /// inside one free interval.
    fn remove_free(&mut self, range: Range<u32>) -> Option<()> {
        let (&start, &end) = self.free.range(..=range.start).next_back()?;
        if range.end > end {
            return None;
        }
        self.free.remove(&start);
        if start < range.start {
            self.free.insert(start, range.start);
        }
        if range.end < end {
            self.free.insert(range.end, end);
        }
        Some(())
    }

    fn insert_free(&mut self, range: Range<u32>) {
        let (mut start, mut end) = (range.start, range.end);
        if start >= end {
            return;
        }
        // Merge with a free interval that ends at or after our start.
        if let Some((&s, &e)) = self.free.range(..=start).next_back() {
            if e >= start {
                self.free.remove(&s);
                start = s;
                end = end.max(e);
            }
        }
        // Merge with every interval starting inside or right after us.
        while let Some((&s, &e)) = self.free.range(start..=end).next() {
            self.free.remove(&s);
            end = end.max(e);
        }
        self.free.insert(start, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(inside: u32, outside: u32, count: u32) -> IdMapLine {
        IdMapLine {
            inside,
            outside,
            count,
        }
    }

    #[test]
    fn identity_map_is_one_full_line() {
        let map = IdMap::identity();
        assert_eq!(map.proc_format(), "0 0 65536\n");
        assert_eq!(map.to_engine(65534), Some(65534));
        assert_eq!(map.validate(), Ok(()));
    }

    #[test]
    fn request_is_sized_from_the_highest_dense_id_rounded_up() -> Result<(), IdMapError> {
        assert_eq!(
            PrivateRequest::from_image_ids([])?,
            PrivateRequest {
                block: 1024,
                sparse: vec![]
            }
        );
        let busybox = PrivateRequest::from_image_ids([0, 1, 2, 8, 100, 65534])?;
        assert_eq!(busybox.block, 1024);
        assert_eq!(busybox.sparse, vec![65534]);
        // 1023 still fits the minimum block; 1024 needs a second granule.
        assert_eq!(PrivateRequest::from_image_ids([1023])?.block, 1024);
        assert_eq!(PrivateRequest::from_image_ids([1024, 1000])?.block, 2048);
        // A dense ID high enough puts a sparse-looking one inside the block.
        let wide = PrivateRequest::from_image_ids([59999, 60100])?;
        assert_eq!(wide.block, 60416);
        assert!(wide.sparse.is_empty());
        Ok(())
    }

    #[test]
    fn request_rejects_ids_outside_the_engine_range_and_too_many_sparse_ids() {
        assert_eq!(
            PrivateRequest::from_image_ids([70000]),
            Err(IdMapError::OutOfRange(70000))
        );
        let many = (60000..60000 + MAX_SPARSE_IDS as u32 + 1).collect::<Vec<_>>();
        assert_eq!(
            PrivateRequest::from_image_ids(many),
            Err(IdMapError::TooManySparse(MAX_SPARSE_IDS + 1))
        );
    }

    #[test]
    fn two_containers_get_disjoint_ranges_and_their_own_nobody() -> Result<(), IdMapError> {
        let mut alloc = IdAllocator::default();
        let req = PrivateRequest::from_image_ids([0, 1000, 65534])?;
        let a = alloc.allocate(&req)?;
        let b = alloc.allocate(&req)?;
        assert_eq!(a.lines, vec![line(0, 1024, 1024), line(65534, 65535, 1)]);
        assert_eq!(b.lines, vec![line(0, 2048, 1024), line(65534, 65534, 1)]);
        assert_eq!(a.proc_format(), "0 1024 1024\n65534 65535 1\n");
        for map in [&a, &b] {
            map.validate()?;
        }
        let engine_ids = |m: &IdMap| m.engine_ranges().flatten().collect::<Vec<_>>();
        let (ea, eb) = (engine_ids(&a), engine_ids(&b));
        assert!(ea.iter().all(|id| !eb.contains(id)));
        assert_eq!(a.to_engine(65534), Some(65535));
        assert_eq!(b.to_engine(65534), Some(65534));
        assert_eq!(a.to_engine(1024), None);
        assert_eq!(alloc.free_count(), 65536 - 1024 - 2 * 1025);
        Ok(())
    }

    #[test]
    fn freed_ranges_are_reused_and_coalesce() -> Result<(), IdMapError> {
        let mut alloc = IdAllocator::new(0..4096);
        let req = PrivateRequest::from_image_ids([0, 65534])?;
        let a = alloc.allocate(&req)?;
        let b = alloc.allocate(&req)?;
        let c = alloc.allocate(&req)?;
        alloc.release(&b);
        let d = alloc.allocate(&req)?;
        assert_eq!(d, b, "the freed block and single ID are handed out again");
        alloc.release(&a);
        alloc.release(&c);
        alloc.release(&d);
        assert_eq!(
            alloc.free.len(),
            1,
            "everything coalesced into one interval"
        );
        assert_eq!(alloc.free_count(), 4096);
        let big = alloc.allocate(&PrivateRequest::from_image_ids([4095])?)?;
        assert_eq!(big.lines, vec![line(0, 0, 4096)]);
        Ok(())
    }

    #[test]
    fn exhaustion_is_a_clear_error_and_changes_nothing() -> Result<(), IdMapError> {
        let mut alloc = IdAllocator::new(0..3000);
        let req = PrivateRequest::from_image_ids([0, 65534])?;
        alloc.allocate(&req)?;
        alloc.allocate(&req)?;
        let before = alloc.free_count();
        let err = alloc.allocate(&req);
        assert_eq!(
            err,
            Err(IdMapError::Exhausted {
                needed: 1025,
                free: before
            })
        );
        assert_eq!(alloc.free_count(), before);
        let text = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("no free ID range"), "{text}");
        Ok(())
    }

    #[test]
    fn fragmentation_reports_exhaustion_even_with_enough_free_ids() -> Result<(), IdMapError> {
        let mut alloc = IdAllocator::new(0..3072);
        let small = PrivateRequest::from_image_ids([0])?;
        let maps: Vec<IdMap> = (0..3)
            .map(|_| alloc.allocate(&small))
            .collect::<Result<_, _>>()?;
        alloc.release(&maps[0]);
        alloc.release(&maps[2]);
        assert_eq!(alloc.free_count(), 2048);
        let wide = PrivateRequest::from_image_ids([2000])?;
        assert!(matches!(
            alloc.allocate(&wide),
            Err(IdMapError::Exhausted { needed: 2048, .. })
        ));
        Ok(())
    }

    #[test]
    fn reserve_marks_readopted_maps_and_refuses_overlaps() -> Result<(), IdMapError> {
        let mut alloc = IdAllocator::default();
        let existing = IdMap {
            lines: vec![line(0, 1024, 1024), line(65534, 65535, 1)],
        };
        alloc.reserve(&existing)?;
        assert_eq!(
            alloc.reserve(&existing),
            Err(IdMapError::InUse {
                start: 1024,
                end: 2047
            })
        );
        let next = alloc.allocate(&PrivateRequest::from_image_ids([0, 65534])?)?;
        assert_eq!(next.lines, vec![line(0, 2048, 1024), line(65534, 65534, 1)]);
        Ok(())
    }

    #[test]
    fn validate_rejects_overlaps_and_out_of_range_lines() {
        let overlapping_inside = IdMap {
            lines: vec![line(0, 0, 10), line(5, 100, 10)],
        };
        assert!(overlapping_inside.validate().is_err());
        let overlapping_outside = IdMap {
            lines: vec![line(0, 0, 10), line(100, 5, 1)],
        };
        assert!(overlapping_outside.validate().is_err());
        let too_far = IdMap {
            lines: vec![line(0, 65000, 1000)],
        };
        assert!(too_far.validate().is_err());
        let empty_line = IdMap {
            lines: vec![line(0, 0, 0)],
        };
        assert!(empty_line.validate().is_err());
    }
}
