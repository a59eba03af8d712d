//! [`FreedAddresses`]: the addresses of the latest deallocations, to tell
//! a double deallocation from one of an address pairing never saw.

use std::hash::BuildHasher;

use super::address_map::{prefetch, seeded_hash};

/// How many events back pairing remembers deallocations, to tell a double
/// deallocation from one of an unknown address: a deallocation of an
/// address whose block was freed 262 144 or more events before (and not
/// allocated since) counts as an `unknown_deallocation`. Programs reuse
/// addresses, so few freed addresses stay unused that long; this bounds
/// pairing's memory for them (8 MiB per pairing partition). The window
/// counts events, not deallocations, so that partitions of pairing that
/// each see only some addresses agree on it exactly.
pub const FREED_ADDRESSES: usize = 1 << 18;

const N: u64 = FREED_ADDRESSES as u64;

/// Entries of each generation's table: twice the events a generation
/// spans (each event deallocates at most one block), so that it is at
/// most half full.
const TABLE_LEN: usize = 2 * FREED_ADDRESSES;

/// Entries of a probe that [`FreedAddresses::prefetch_ring`] looks at: at
/// most half full, a table holds most addresses within a few entries of
/// their home.
const RING_PREFETCH_PROBES: usize = 4;

/// Marks an unused table entry.
const UNUSED: u32 = u32::MAX;

/// An entry holds a deallocation's event id modulo `2 * N` in its low bits
/// (19 of them) and, above, 12 bits of its address's hash, so that a probe
/// reads the ring only for addresses that likely match; the top bit stays
/// 0, so no entry is [`UNUSED`].
const NUMBER_BITS: u32 = (2 * FREED_ADDRESSES).trailing_zeros();
const NUMBER_MASK: u32 = (1 << NUMBER_BITS) - 1;
const PRINT_MASK: u32 = (1 << 12) - 1;

/// The address and `alloc_id` of each deallocation of a live block
/// (reallocations that moved a block included) among the last
/// [`FREED_ADDRESSES`] events, by event id.
///
/// Each deallocation is written to a ring at its event id modulo
/// [`FREED_ADDRESSES`] and indexed by its address in a hash table of
/// 4-byte entries (its event id modulo twice [`FREED_ADDRESSES`]), kept in
/// two generations of [`FREED_ADDRESSES`] events each: when an event falls
/// past the newer, the older (whose deallocations are all too old to count
/// by then) is emptied and takes its place. So a deallocation costs one
/// write to the ring and one to a 2 MiB table, which the caller can
/// [`prefetch`](FreedAddresses::prefetch), and forgetting costs no lookup.
/// An address has at most one entry per generation: deallocating it again
/// in the same generation overwrites the entry, once a read of the ring
/// slot it names has confirmed the address, which the caller can
/// [`prefetch_ring`](FreedAddresses::prefetch_ring).
#[derive(Debug)]
pub struct FreedAddresses {
    /// For the deallocations at events `since..since + N`, the last at
    /// each address: its event id modulo `2 * N` (and a fingerprint, see
    /// [`NUMBER_BITS`]) at a place probed linearly from the address's
    /// hash.
    newer: Vec<u32>,
    /// The same for events `since - N..since`.
    older: Vec<u32>,
    /// A multiple of `N`.
    since: u64,
    /// Address and freed `alloc_id` of the deallocation at event `e`, at
    /// `e % N`.
    ring: Vec<(u64, u64)>,
    seed: u64,
}

impl Default for FreedAddresses {
    fn default() -> Self {
        FreedAddresses {
            // Allocated by the first deallocation.
            newer: Vec::new(),
            older: Vec::new(),
            since: 0,
            ring: Vec::new(),
            seed: std::collections::hash_map::RandomState::new().hash_one(0x6672_6565_6421u64),
        }
    }
}

impl FreedAddresses {
    /// Where the probe for `address` starts in a generation's table, and
    /// the fingerprint its entries carry.
    #[inline]
    fn home(&self, address: u64) -> (usize, u32) {
        let h = seeded_hash(address, self.seed);
        ((h >> (64 - TABLE_LEN.trailing_zeros())) as usize, (h as u32 & PRINT_MASK) << NUMBER_BITS)
    }

    /// The event id of the deallocation whose entry is `entry` in the
    /// generation of events `from..from + N`.
    #[inline]
    fn event(entry: u32, from: u64) -> u64 {
        from + (u64::from(entry & NUMBER_MASK).wrapping_sub(from) % (2 * N))
    }

    /// The event id of the deallocation whose entry is `entry` in the
    /// generation of events `from..from + N`, and whether it is at
    /// `address`.
    #[inline]
    fn resolve(&self, entry: u32, from: u64, print: u32, address: u64) -> (u64, bool) {
        let e = Self::event(entry, from);
        let at = entry & !NUMBER_MASK == print && self.ring[(e % N) as usize].0 == address;
        (e, at)
    }

    /// Records that the block `alloc_id` at `address` was deallocated at
    /// event `event`, after every deallocation recorded before.
    #[inline]
    pub fn record(&mut self, address: u64, alloc_id: u64, event: u64) {
        if self.newer.is_empty() {
            self.newer = vec![UNUSED; TABLE_LEN];
            self.older = vec![UNUSED; TABLE_LEN];
            self.ring = vec![(0, 0); FREED_ADDRESSES];
        }
        if event >= self.since + N {
            let since = event - event % N;
            if since == self.since + N {
                std::mem::swap(&mut self.newer, &mut self.older);
            } else {
                self.older.fill(UNUSED);
            }
            self.newer.fill(UNUSED);
            self.since = since;
        }
        self.ring[(event % N) as usize] = (address, alloc_id);
        // A generation holds at most N entries in 2N places: one is free,
        // unless the address has its entry already.
        let (mut i, print) = self.home(address);
        while self.newer[i] != UNUSED && !self.resolve(self.newer[i], self.since, print, address).1
        {
            i = (i + 1) % TABLE_LEN;
        }
        self.newer[i] = print | (event % (2 * N)) as u32;
    }

    /// The `alloc_id` of the block last deallocated at `address`, unless
    /// that was [`FREED_ADDRESSES`] or more events before event `now`
    /// (which comes after every deallocation recorded). (Only meaningful
    /// when no block is live at `address`: one allocated there since is
    /// not looked at.)
    pub fn last(&self, address: u64, now: u64) -> Option<u64> {
        if self.newer.is_empty() {
            return None;
        }
        let (home, print) = self.home(address);
        let generations = [(&self.newer, self.since), (&self.older, self.since.saturating_sub(N))];
        // The older generation is empty while `since` is 0.
        generations.into_iter().find_map(|(table, from)| {
            let mut i = home;
            while table[i] != UNUSED {
                if let (e, true) = self.resolve(table[i], from, print, address) {
                    // The latest deallocation at the address: if too old,
                    // so are any before it.
                    return Some((now - e < N).then(|| self.ring[(e % N) as usize].1));
                }
                i = (i + 1) % TABLE_LEN;
            }
            None
        })?
    }

    /// Asks the CPU to fetch what [`FreedAddresses::record`] of `address`
    /// will write.
    #[inline]
    pub fn prefetch(&self, address: u64) {
        if let Some(entry) = self.newer.get(self.home(address).0) {
            prefetch((entry as *const u32).cast());
        }
    }

    /// Asks the CPU to fetch the ring slot that [`FreedAddresses::record`]
    /// will read for `address`: that of the newer generation's first entry
    /// on `address`'s probe with its fingerprint, which is usually the
    /// address's own last deallocation (programs free the same addresses
    /// again and again), at a place in the ring as random as the event.
    /// Reads the table where [`FreedAddresses::prefetch`] fetched it some
    /// events earlier; looks at the probe's first [`RING_PREFETCH_PROBES`]
    /// entries only.
    #[inline]
    pub fn prefetch_ring(&self, address: u64) {
        if self.newer.is_empty() {
            return;
        }
        let (mut i, print) = self.home(address);
        for _ in 0..RING_PREFETCH_PROBES {
            let entry = self.newer[i];
            if entry == UNUSED {
                return;
            }
            if entry & !NUMBER_MASK == print {
                let slot: *const (u64, u64) =
                    &self.ring[(Self::event(entry, self.since) % N) as usize];
                prefetch(slot.cast());
                return;
            }
            i = (i + 1) % TABLE_LEN;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer is the last deallocation at the address, for exactly
    /// [`FREED_ADDRESSES`] events after it, across generations.
    #[test]
    fn remembers_the_last_deallocations_exactly() {
        let mut freed = FreedAddresses::default();
        // Prefetching reads the tables, whether allocated yet or not.
        freed.prefetch_ring(0x10);
        assert_eq!(freed.last(0x10, 0), None);
        freed.record(0x10, 1, 5);
        freed.prefetch_ring(0x10);
        freed.prefetch_ring(0x20);
        freed.record(0x10, 2, 6);
        assert_eq!(freed.last(0x10, 7), Some(2));
        assert_eq!(freed.last(0x20, 7), None);
        // Deallocation 6 counts up to event 6 + N - 1, not at 6 + N.
        for k in 0..N - 1 {
            freed.record(0x1000 + 16 * k, 100 + k, 7 + k);
        }
        assert_eq!(freed.last(0x10, 6 + N - 1), Some(2));
        assert_eq!(freed.last(0x10, 6 + N), None);
        assert_eq!(freed.last(0x1000, 6 + N), Some(100));
        assert_eq!(freed.last(0x1000, 7 + N), None);
        freed.record(0x30, 7, 6 + N);
        freed.record(0x1000, 8, 7 + N);
        assert_eq!(freed.last(0x1000, 8 + N), Some(8));
        assert_eq!(freed.last(0x30, 8 + N), Some(7));
        // Far later, one event's deallocation: every one before is gone,
        // and ids that share its ring place and table entry do not match.
        let later = 6 + 5 * N;
        freed.record(0x30, 9, later);
        assert_eq!(freed.last(0x30, later + 1), Some(9));
        assert_eq!(freed.last(0x10, later + 1), None);
        assert_eq!(freed.last(0x1000, later + 1), None);
        // Events pass without deallocations: the last one ages out.
        assert_eq!(freed.last(0x30, later + N - 1), Some(9));
        assert_eq!(freed.last(0x30, later + N), None);
        assert_eq!(freed.last(0x30, later + 3 * N), None);
    }

    /// Deallocating one address over and over keeps one entry for it, so
    /// that its probes stay short (a loop that allocates and frees a
    /// buffer is the commonest pattern there is).
    #[test]
    fn an_address_freed_again_keeps_one_entry() {
        let mut freed = FreedAddresses::default();
        for k in 0..N / 2 + 10 {
            freed.record(0x40, k, 2 * k);
            freed.record(0x50 + 16 * (k % 3), k, 2 * k + 1);
        }
        let now = N + 20;
        assert_eq!(freed.last(0x40, now), Some(N / 2 + 9));
        let last_at_0x60 = (0..N / 2 + 10).rev().find(|k| k % 3 == 1);
        assert_eq!(freed.last(0x60, now), last_at_0x60);
        let used = |t: &[u32]| t.iter().filter(|&&e| e != UNUSED).count();
        assert_eq!(used(&freed.newer), 4);
        assert_eq!(used(&freed.older), 4);
    }
}
