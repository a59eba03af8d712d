//! Inputs for memscope's benchmarks: synthetic traces in the recorder's
//! format, with the event mix of a real allocation-heavy program.

use memscope_schema::{Record, TraceWriter};

/// A deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A trace of about `events` events spread over `threads` threads, built
/// like the `allocbench` workload of `../shared/research/perf-anchors.md`:
/// each thread replaces a random slot of a 10 000-slot table of live
/// blocks (16 B to 8 KiB), about 9 % of replacements grow the block with a
/// reallocation first, and 0.1 % of blocks are leaked. Timestamps advance
/// 20 to 60 ns per event, in nanoseconds.
pub fn synthetic_trace(events: usize, threads: u32) -> Vec<u8> {
    let mut w = TraceWriter::synthetic();
    let mut rng = Rng(42);
    let per_thread = events / threads as usize;
    for t in 1..=threads {
        let mut q = 0u64;
        let mut slots = vec![0u64; 10_000];
        let mut next_address = 0x5555_0000_0000u64 + (u64::from(t) << 36);
        let mut written = 0;
        while written < per_thread {
            q += 20 + rng.next() % 40;
            let slot = (rng.next() % slots.len() as u64) as usize;
            if slots[slot] != 0 && !rng.next().is_multiple_of(1000) {
                w.push(t, 1000 + t, &Record::Free { q, address: slots[slot] });
                written += 1;
            }
            let size = 16 + rng.next() % (if rng.next().is_multiple_of(4) { 8192 } else { 112 });
            let address = next_address;
            next_address += (size + 15) & !15;
            w.push(t, 1000 + t, &Record::Alloc { q, address, size, align: 8, zeroed: false });
            written += 1;
            slots[slot] = address;
            if rng.next().is_multiple_of(11) {
                q += 10;
                let grown = next_address;
                next_address += size * 2;
                w.push(
                    t,
                    1000 + t,
                    &Record::Realloc {
                        q,
                        old_address: address,
                        address: grown,
                        size: size * 2,
                        align: 8,
                    },
                );
                written += 1;
                slots[slot] = grown;
            }
        }
    }
    w.finish()
}
