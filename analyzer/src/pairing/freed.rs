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
/// An address deallocated twice in a generation has two entries there;
/// the newer wins.
#[derive(Debug)]
pub struct FreedAddresses {
    /// For the deallocations numbered from `since`: their number modulo
    /// `2 * N` at a place probed linearly from their address's hash.
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
            newer: vec![UNUSED; TABLE_LEN],
            older: vec![UNUSED; TABLE_LEN],
            since: 0,
            ring: Vec::new(),
            count: 0,
            seed: std::collections::hash_map::RandomState::new().hash_one(0x6672_6565_6421u64),
        }
    }
}

impl FreedAddresses {
    /// Where the probe for `address` starts in a generation's table.
    #[inline]
    fn home(&self, address: u64) -> usize {
        (seeded_hash(address, self.seed) >> (64 - TABLE_LEN.trailing_zeros())) as usize
    }

    /// Records that the block `alloc_id` at `address` was deallocated,
    /// after every deallocation recorded before.
    #[inline]
    pub fn record(&mut self, address: u64, alloc_id: u64) {
        let n = self.count;
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
        // A generation holds N entries in 2N places: one is free.
        let mut i = self.home(address);
        while self.newer[i] != UNUSED {
            i = (i + 1) % TABLE_LEN;
        }
        self.newer[i] = (n % (2 * N)) as u32;
        self.count += 1;
    }

    /// The `alloc_id` of the block last deallocated at `address`, unless
    /// that was before the last [`FREED_ADDRESSES`] deallocations. (Only
    /// meaningful when no block is live at `address`: one allocated there
    /// since is not looked at.)
    pub fn last(&self, address: u64) -> Option<u64> {
        [&self.newer, &self.older].into_iter().find_map(|table| {
            let mut newest = None;
            let mut i = self.home(address);
            while table[i] != UNUSED {
                // Every entry is of one of the last 2N deallocations.
                let ago = match (self.count - u64::from(table[i])) % (2 * N) {
                    0 => 2 * N,
                    d => d,
                };
                let n = self.count - ago;
                let (at, alloc_id) = self.ring[(n % N) as usize];
                if ago <= N && at == address && newest.is_none_or(|(m, _)| n > m) {
                    newest = Some((n, alloc_id));
                }
                i = (i + 1) % TABLE_LEN;
            }
            newest.map(|(_, alloc_id)| alloc_id)
        })
    }

    /// Asks the CPU to fetch what [`FreedAddresses::record`] of `address`
    /// will write.
    #[inline]
    pub fn prefetch(&self, address: u64) {
        prefetch(self.newer[self.home(address)..].as_ptr().cast());
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
}
