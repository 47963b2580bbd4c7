//! How an item version packs a hybrid logical clock (HLC) into 64 bits. This is the one source
//! of truth for the layout; the clock that produces versions is `dkc_server::hlc`.
//!
//! ```text
//!   63                                   18 17          8 7          0
//!   +---------------------------------------+-------------+------------+
//!   | physical ms since 2020-01-01 UTC (46) | logical (10)| node (8)   |
//!   +---------------------------------------+-------------+------------+
//! ```
//! - 46 bits of milliseconds last about 2230 years from [`EPOCH_UNIX_MS`].
//! - 10 bits of logical counter give 1024 versions per millisecond per node before the clock
//!   borrows the next millisecond.
//! - 8 bits of node index break ties between nodes, so two nodes never mint the same version:
//!   a cluster has at most [`NODE_COUNT_MAX`] server nodes (CHMPX's MAXCHMPX must not exceed
//!   it).
//!
//! Comparing two versions as plain `u64` compares (physical, logical, node) in that order, which
//! is exactly the HLC order. Version 0 means "no version" and is never minted.

/// Unix time in milliseconds of the version epoch, 2020-01-01T00:00:00Z.
pub const EPOCH_UNIX_MS: u64 = 1_577_836_800_000;
/// Bits of the physical part.
pub const PHYSICAL_BITS: u32 = 46;
/// Bits of the logical counter.
pub const LOGICAL_BITS: u32 = 10;
/// Bits of the node index.
pub const NODE_BITS: u32 = 8;
/// Largest physical value (ms since the epoch).
pub const PHYSICAL_MAX: u64 = (1 << PHYSICAL_BITS) - 1;
/// Largest logical counter.
pub const LOGICAL_MAX: u64 = (1 << LOGICAL_BITS) - 1;
/// Number of distinct node indexes.
pub const NODE_COUNT_MAX: usize = 1 << NODE_BITS;

const _: () = assert!(PHYSICAL_BITS + LOGICAL_BITS + NODE_BITS == 64);

/// A decoded version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionParts {
    /// Milliseconds since [`EPOCH_UNIX_MS`].
    pub physical_ms: u64,
    /// Logical counter within that millisecond.
    pub logical: u64,
    /// Index of the node that minted it.
    pub node: u8,
}

impl VersionParts {
    /// Packs into a version. Parts out of range are masked (callers keep them in range).
    pub fn pack(self) -> u64 {
        debug_assert!(self.physical_ms <= PHYSICAL_MAX && self.logical <= LOGICAL_MAX);
        ((self.physical_ms & PHYSICAL_MAX) << (LOGICAL_BITS + NODE_BITS))
            | ((self.logical & LOGICAL_MAX) << NODE_BITS)
            | u64::from(self.node)
    }

    /// Unpacks a version.
    pub fn unpack(version: u64) -> VersionParts {
        VersionParts {
            physical_ms: version >> (LOGICAL_BITS + NODE_BITS),
            logical: (version >> NODE_BITS) & LOGICAL_MAX,
            node: (version & ((1 << NODE_BITS) - 1)) as u8,
        }
    }

    /// The physical part as unix milliseconds.
    pub fn unix_ms(self) -> u64 {
        self.physical_ms.saturating_add(EPOCH_UNIX_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_version_pack_roundtrip_and_order() {
        let a = VersionParts {
            physical_ms: 5,
            logical: LOGICAL_MAX,
            node: 255,
        };
        let b = VersionParts {
            physical_ms: 6,
            logical: 0,
            node: 0,
        };
        assert_eq!(VersionParts::unpack(a.pack()), a);
        assert_eq!(VersionParts::unpack(b.pack()), b);
        assert!(a.pack() < b.pack(), "physical dominates logical and node");
        let c = VersionParts {
            physical_ms: 6,
            logical: 1,
            node: 0,
        };
        assert!(b.pack() < c.pack(), "logical dominates node");
        let top = VersionParts {
            physical_ms: PHYSICAL_MAX,
            logical: LOGICAL_MAX,
            node: 255,
        };
        assert_eq!(top.pack(), u64::MAX);
    }
}
