//! [`FreedAddresses`]: the addresses of the latest deallocations, to tell
//! a double deallocation from one of an address pairing never saw.

use std::hash::BuildHasher;

use super::address_map::{prefetch, seeded_hash};

/// How many of the latest deallocations pairing remembers the addresses
/// of, to tell a double deallocation from one of an unknown address: a
/// deallocation of an address whose block was freed before the last
/// 262 144 deallocations (and not allocated since) counts as an
/// `unknown_deallocation`. Programs reuse addresses, so few freed
/// addresses stay unused that long; this bounds pairing's memory for
/// them (8 MiB in all).
pub const FREED_ADDRESSES: usize = 1 << 18;

const N: u64 = FREED_ADDRESSES as u64;

/// Entries of each generation's table: twice the deallocations a
/// generation holds, so that it is at most half full.
const TABLE_LEN: usize = 2 * FREED_ADDRESSES;

/// Marks an unused table entry.
const UNUSED: u32 = u32::MAX;

/// An entry holds a deallocation's number modulo `2 * N` in its low bits
/// (19 of them) and, above, 12 bits of its address's hash, so that a probe
/// reads the ring only for addresses that likely match; the top bit stays
/// 0, so no entry is [`UNUSED`].
const NUMBER_BITS: u32 = (2 * FREED_ADDRESSES).trailing_zeros();
const NUMBER_MASK: u32 = (1 << NUMBER_BITS) - 1;
const PRINT_MASK: u32 = (1 << 12) - 1;

/// The address and `alloc_id` of each of the last [`FREED_ADDRESSES`]
/// deallocations of live blocks (reallocations that moved a block
/// included), numbered from 0 in trace order.
///
/// Each deallocation is written to a ring of the last [`FREED_ADDRESSES`]
/// and indexed by its address in a hash table of 4-byte entries (its
/// number modulo twice [`FREED_ADDRESSES`]), kept in two generations of
/// [`FREED_ADDRESSES`] deallocations each: when the newer is full, the
/// older (whose deallocations are all too old to count by then) is emptied
/// and takes its place. So a deallocation costs one write to the ring
/// and one to a 2 MiB table, which the caller can
/// [`prefetch`](FreedAddresses::prefetch), and forgetting costs no lookup.
/// An address has at most one entry per generation: deallocating it again
/// in the same generation overwrites the entry.
#[derive(Debug)]
pub struct FreedAddresses {
    /// For the deallocations numbered from `since`, the last at each
    /// address: its number modulo `2 * N` (and a fingerprint, see
    /// [`NUMBER_BITS`]) at a place probed linearly from the address's
    /// hash.
    newer: Vec<u32>,
    /// The same for the generation before.
    older: Vec<u32>,
    since: u64,
    /// Address and freed `alloc_id` of deallocation `n`, at `n % N`.
    ring: Vec<(u64, u64)>,
    /// Deallocations so far: the next one's number.
    count: u64,
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
            count: 0,
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

    /// The number of the deallocation whose entry is `entry`, and whether
    /// it is one of the last `N` and at `address`.
    #[inline]
    fn resolve(&self, entry: u32, print: u32, address: u64) -> (u64, bool) {
        // Every entry is of one of the last 2N deallocations.
        let ago = match (self.count - u64::from(entry & NUMBER_MASK)) % (2 * N) {
            0 => 2 * N,
            d => d,
        };
        let n = self.count - ago;
        let at =
            entry & !NUMBER_MASK == print && ago <= N && self.ring[(n % N) as usize].0 == address;
        (n, at)
    }

    /// Records that the block `alloc_id` at `address` was deallocated,
    /// after every deallocation recorded before.
    #[inline]
    pub fn record(&mut self, address: u64, alloc_id: u64) {
        let n = self.count;
        if self.newer.is_empty() {
            self.newer = vec![UNUSED; TABLE_LEN];
            self.older = vec![UNUSED; TABLE_LEN];
        }
        if n - self.since == N {
            std::mem::swap(&mut self.newer, &mut self.older);
            self.newer.fill(UNUSED);
            self.since = n;
        }
        let r = (n % N) as usize;
        if r == self.ring.len() {
            self.ring.push((address, alloc_id));
        } else {
            self.ring[r] = (address, alloc_id);
        }
        // A generation holds at most N entries in 2N places: one is free,
        // unless the address has its entry already.
        let (mut i, print) = self.home(address);
        while self.newer[i] != UNUSED && !self.resolve(self.newer[i], print, address).1 {
            i = (i + 1) % TABLE_LEN;
        }
        self.newer[i] = print | (n % (2 * N)) as u32;
        self.count += 1;
    }

    /// The `alloc_id` of the block last deallocated at `address`, unless
    /// that was before the last [`FREED_ADDRESSES`] deallocations. (Only
    /// meaningful when no block is live at `address`: one allocated there
    /// since is not looked at.)
    pub fn last(&self, address: u64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let (home, print) = self.home(address);
        [&self.newer, &self.older].into_iter().find_map(|table| {
            let mut i = home;
            while table[i] != UNUSED {
                if let (n, true) = self.resolve(table[i], print, address) {
                    return Some(self.ring[(n % N) as usize].1);
                }
                i = (i + 1) % TABLE_LEN;
            }
            None
        })
    }

    /// Asks the CPU to fetch what [`FreedAddresses::record`] of `address`
    /// will write.
    #[inline]
    pub fn prefetch(&self, address: u64) {
        if let Some(entry) = self.newer.get(self.home(address).0) {
            prefetch((entry as *const u32).cast());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer is the last deallocation at the address, for exactly
    /// [`FREED_ADDRESSES`] deallocations after it, across generations.
    #[test]
    fn remembers_the_last_deallocations_exactly() {
        let mut freed = FreedAddresses::default();
        freed.record(0x10, 1);
        freed.record(0x10, 2);
        assert_eq!(freed.last(0x10), Some(2));
        assert_eq!(freed.last(0x20), None);
        // 0x10 was deallocation 1; after N - 1 more it is among the last
        // N, after one more it is not.
        for k in 0..N - 1 {
            freed.record(0x1000 + 16 * k, 100 + k);
        }
        assert_eq!(freed.last(0x10), Some(2));
        assert_eq!(freed.last(0x1000), Some(100));
        freed.record(0x30, 7);
        assert_eq!(freed.last(0x10), None);
        assert_eq!(freed.last(0x1000), Some(100));
        assert_eq!(freed.last(0x30), Some(7));
        freed.record(0x1000, 8);
        assert_eq!(freed.last(0x1000), Some(8));
        // Two more generations later, everything before is gone, and the
        // numbers of the latest still resolve.
        for k in 0..2 * N {
            freed.record(0x10_0000_0000 + 16 * k, k);
        }
        assert_eq!(freed.last(0x30), None);
        assert_eq!(freed.last(0x1000), None);
        assert_eq!(freed.last(0x10_0000_0000 + 16 * (2 * N - 1)), Some(2 * N - 1));
        assert_eq!(freed.last(0x10_0000_0000 + 16 * N), Some(N));
        assert_eq!(freed.last(0x10_0000_0000 + 16 * (N - 1)), None);
    }

    /// Deallocating one address over and over keeps one entry for it, so
    /// that its probes stay short (a loop that allocates and frees a
    /// buffer is the commonest pattern there is).
    #[test]
    fn an_address_freed_again_keeps_one_entry() {
        let mut freed = FreedAddresses::default();
        for k in 0..N + 10 {
            freed.record(0x40, k);
            freed.record(0x50 + 16 * (k % 3), k);
        }
        assert_eq!(freed.last(0x40), Some(N + 9));
        let last_at_0x60 = (0..N + 10).rev().find(|k| k % 3 == 1);
        assert_eq!(freed.last(0x60), last_at_0x60);
        let used = |t: &[u32]| t.iter().filter(|&&e| e != UNUSED).count();
        assert_eq!(used(&freed.newer), 4);
        assert_eq!(used(&freed.older), 4);
    }
}
