//! [`AddressMap`]: an open-addressing hash table from addresses to
//! 8-byte values, built for pairing's hot path.
//!
//! Pairing looks up or writes one or two addresses per event, and the
//! addresses of a real program are scattered over the heap: once a table
//! outgrows the cache, nearly every access misses it. A general-purpose
//! map hides where an entry lives; this one can
//! [`prefetch`](AddressMap::prefetch) the entry of an address some events
//! ahead, so that the access finds it in cache. Entries are 16 bytes (an
//! address and its value) in one array probed linearly, at most half
//! full; deletion moves entries back instead of leaving tombstones.
//!
//! The hash is keyed with a random seed per map, so that a hostile trace
//! cannot choose addresses that all collide and make pairing quadratic.
//! Nothing pairing outputs depends on the order of entries.

use std::hash::BuildHasher;

/// The value that marks an empty entry: values stored must differ from it.
pub const EMPTY: u64 = u64::MAX;

/// An address and its value; `value == EMPTY` when the entry is unused.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Entry {
    key: u64,
    value: u64,
}

const UNUSED: Entry = Entry { key: 0, value: EMPTY };

/// Fewest entries a map allocates.
const MIN_CAPACITY: usize = 1 << 10;

/// A hash map from addresses to `u64` values other than [`EMPTY`].
#[derive(Debug)]
pub struct AddressMap {
    /// A power of two of entries, at most half used.
    entries: Vec<Entry>,
    len: usize,
    /// `64 - log2(entries.len())`: the hash's top bits pick the entry.
    shift: u32,
    seed: u64,
}

impl Default for AddressMap {
    fn default() -> Self {
        AddressMap::new()
    }
}

impl AddressMap {
    /// An empty map with a fresh random seed.
    pub fn new() -> AddressMap {
        let seed =
            std::collections::hash_map::RandomState::new().hash_one(0x6d65_6d73_636f_7065u64);
        AddressMap {
            entries: vec![UNUSED; MIN_CAPACITY],
            len: 0,
            shift: 64 - MIN_CAPACITY.trailing_zeros(),
            seed,
        }
    }

    /// The entry where the probe for `key` starts.
    #[inline]
    fn home(&self, key: u64) -> usize {
        (seeded_hash(key, self.seed) >> self.shift) as usize
    }

    /// Index of the entry holding `key`, if any.
    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        let mask = self.entries.len() - 1;
        let mut i = self.home(key);
        loop {
            let e = self.entries[i];
            if e.value == EMPTY {
                return None;
            }
            if e.key == key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the CPU to load the entry where `key`'s probe starts into
    /// cache, ahead of a lookup. A hint only: it changes no result.
    #[inline]
    pub fn prefetch(&self, key: u64) {
        let entry: *const Entry = &self.entries[self.home(key)];
        prefetch(entry.cast());
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u64> {
        self.find(key).map(|i| self.entries[i].value)
    }

    /// Sets the value of `key`, returning the value it replaced.
    ///
    /// # Panics
    ///
    /// When `value` is [`EMPTY`].
    #[inline]
    pub fn insert(&mut self, key: u64, value: u64) -> Option<u64> {
        assert_ne!(value, EMPTY, "EMPTY marks unused entries");
        let mask = self.entries.len() - 1;
        let mut i = self.home(key);
        loop {
            let e = &mut self.entries[i];
            if e.value == EMPTY {
                *e = Entry { key, value };
                self.len += 1;
                if self.len * 2 > self.entries.len() {
                    self.grow();
                }
                return None;
            }
            if e.key == key {
                return Some(std::mem::replace(&mut e.value, value));
            }
            i = (i + 1) & mask;
        }
    }

    /// Removes `key`, returning its value.
    #[inline]
    pub fn remove(&mut self, key: u64) -> Option<u64> {
        let i = self.find(key)?;
        let value = self.entries[i].value;
        self.vacate(i);
        Some(value)
    }

    /// Empties entry `i` and moves later entries of its probe run back so
    /// that every key stays reachable from its home without a gap
    /// (deletion without tombstones).
    fn vacate(&mut self, mut i: usize) {
        let mask = self.entries.len() - 1;
        let mut j = i;
        loop {
            self.entries[i] = UNUSED;
            loop {
                j = (j + 1) & mask;
                let e = self.entries[j];
                if e.value == EMPTY {
                    self.len -= 1;
                    return;
                }
                // `e` may fill the gap at `i` unless its home lies
                // cyclically in (i, j]: then it must stay after `i`.
                let home = self.home(e.key);
                let stays = if i <= j { i < home && home <= j } else { i < home || home <= j };
                if !stays {
                    self.entries[i] = e;
                    i = j;
                    break;
                }
            }
        }
    }

    /// Every `(address, value)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries.iter().filter(|e| e.value != EMPTY).map(|e| (e.key, e.value))
    }

    /// Removes every entry, keeping the allocation.
    pub fn clear(&mut self) {
        self.entries.fill(UNUSED);
        self.len = 0;
    }

    /// Doubles the table and moves every entry to its new place.
    fn grow(&mut self) {
        let bigger = vec![UNUSED; self.entries.len() * 2];
        let old = std::mem::replace(&mut self.entries, bigger);
        self.shift -= 1;
        let mask = self.entries.len() - 1;
        for e in old.into_iter().filter(|e| e.value != EMPTY) {
            let mut i = self.home(e.key);
            while self.entries[i].value != EMPTY {
                i = (i + 1) & mask;
            }
            self.entries[i] = e;
        }
    }
}

/// A hash of `address` keyed with `seed`, whose top bits are to pick a
/// place in a table: a folded 64×64→128-bit multiply of the seeded
/// address, multiplied again, so that every bit of the address moves them.
#[inline]
pub fn seeded_hash(address: u64, seed: u64) -> u64 {
    let m = u128::from(address ^ seed) * 0x9e37_79b9_7f4a_7c15_u128;
    ((m as u64) ^ ((m >> 64) as u64)).wrapping_mul(0xff51_afd7_ed55_8ccd)
}

/// Hints the CPU to bring the cache line at `p` in; does nothing where no
/// stable prefetch instruction is available.
#[inline(always)]
pub fn prefetch(p: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults, whatever the
    // address, and SSE (which has it) is part of every x86_64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// An operation on the map, on keys from a small range so that they
    /// collide, share probe runs and come back.
    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u64),
        Remove(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let key = 0u64..3000;
        prop_oneof![
            4 => (key.clone(), 0u64..1000).prop_map(|(k, v)| Op::Insert(k * 16, v)),
            3 => key.prop_map(|k| Op::Remove(k * 16)),
        ]
    }

    proptest! {
        /// The map answers as std's HashMap does after any sequence of
        /// insertions and removals, through growth and the
        /// backward shifts of deletion.
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 1..4000)) {
            let mut map = AddressMap::new();
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(map.remove(k), model.remove(&k)),
                }
                prop_assert_eq!(map.len, model.len());
            }
            for (k, v) in &model {
                prop_assert_eq!(map.get(*k), Some(*v));
            }
            let mut all: Vec<_> = map.iter().collect();
            all.sort_unstable();
            let mut expected: Vec<_> = model.into_iter().collect();
            expected.sort_unstable();
            prop_assert_eq!(all, expected);
        }
    }

    #[test]
    fn holds_an_address_of_zero_and_the_highest() {
        let mut map = AddressMap::new();
        assert_eq!(map.insert(0, 7), None);
        assert_eq!(map.insert(u64::MAX, 8), None);
        assert_eq!(map.get(0), Some(7));
        assert_eq!(map.get(u64::MAX), Some(8));
        assert_eq!(map.remove(0), Some(7));
        assert_eq!(map.get(0), None);
        assert_eq!(map.len, 1);
    }
}
