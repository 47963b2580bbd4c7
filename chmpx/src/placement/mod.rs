//! Placement: which server nodes own which part of the key-hash space.
//!
//! This module is pure: no I/O, no clocks, no threads. Everything in it is a
//! deterministic function of its inputs, so every chmpx that holds the same
//! membership (epoch, member list) computes the same owners for every slot.
//!
//! Layout:
//! - [`hash`]: the key hash (xxHash64, seed 0, never changes) and the cut of
//!   the 64-bit hash space into `slot_count` contiguous slots.
//! - [`node_id`]: [`NodeId`], the stable identity of a server node ("host:ctlport").
//! - [`assign`]: the balanced rendezvous assignment of owners to slots.
//! - [`map`]: [`PlacementMap`], the owners of every slot for one epoch, and
//!   [`SlotMove`], what a merge must move between two maps.
//! - [`membership`]: [`Membership`], the epoch-ordered SERVICE IN member list
//!   with at most one pending change.
//!
//! ```text
//!   key ──xxh64(seed 0)──▶ hash ──top log2(slot_count) bits──▶ slot
//!   slot ──PlacementMap.owners(slot)──▶ [primary, replica 1, .., replica R]
//! ```
//!
//! Must never depend on: the config file format, networking, message queues,
//! storage. Callers pass plain values in.

pub mod assign;
pub mod error;
pub mod hash;
pub mod map;
pub mod membership;
pub mod node_id;

pub use error::PlacementError;
pub use hash::{key_hash, slot_hash_range, slot_of, KEY_HASH_SEED, SLOT_COUNT_MAX, SLOT_COUNT_MIN};
pub use map::{PlacementMap, SlotMove, PLACEMENT_ALGORITHM_VERSION};
pub use membership::{Membership, MembershipChange};
pub use node_id::NodeId;
