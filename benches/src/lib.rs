//! Inputs for memscope's benchmarks: synthetic traces in the recorder's
//! format, with the event mix of a real allocation-heavy program.

use memscope_schema::{Record, TraceWriter};

/// Where the first thread's blocks start, as in a 64-bit Linux process.
const FIRST_ADDRESS: u64 = 0x5555_0000_0000;

/// Bytes of address space each of `threads` threads allocates from, in
/// turn above [`FIRST_ADDRESS`] and below 2^47 (the top of user space):
/// 11.7 TB each for 4 threads. Every allocation takes a new address, 616
/// bytes of address space per event on average, so the threads of a
/// 4-thread trace stay apart up to about 10^10 events each (with 64 GiB
/// each, as before, they ran into each other past 10^8 events each).
fn address_range(threads: u32) -> u64 {
    (((1u64 << 47) - FIRST_ADDRESS) / u64::from(threads)) & !0xfff
}

/// A trace of about `events` events spread over `threads` threads, built
/// like the `allocbench` workload of `../shared/research/perf-anchors.md`:
/// each thread replaces a random slot of a 10 000-slot table of live
/// blocks (16 B to 8 KiB), about 9 % of replacements grow the block with a
/// reallocation first, and 0.1 % of blocks are leaked. Timestamps advance
/// 20 to 60 ns per event, in nanoseconds.
pub fn synthetic_trace(events: usize, threads: u32) -> Vec<u8> {
    synthetic_writer(events, threads).finish()
}

/// The trace of [`synthetic_trace`], built and not yet written: for traces
/// too big to hold twice, [`TraceWriter::write_to`] writes it out.
pub fn synthetic_writer(events: usize, threads: u32) -> TraceWriter {
    let mut w = TraceWriter::synthetic();
    let mut rng = fastrand::Rng::with_seed(42);
    let per_thread = events / threads as usize;
    for t in 1..=threads {
        let mut q = 0u64;
        let mut slots = vec![0u64; 10_000];
        let mut next_address = FIRST_ADDRESS + u64::from(t - 1) * address_range(threads);
        let mut written = 0;
        while written < per_thread {
            q += rng.u64(20..60);
            let slot = rng.usize(..slots.len());
            if slots[slot] != 0 && rng.u32(..1000) != 0 {
                w.push(t, 1000 + t, &Record::Free { q, address: slots[slot] });
                written += 1;
            }
            let size = 16 + if rng.u32(..4) == 0 { rng.u64(..8192) } else { rng.u64(..112) };
            let address = next_address;
            next_address += (size + 15) & !15;
            w.push(t, 1000 + t, &Record::Alloc { q, address, size, align: 8, zeroed: false });
            written += 1;
            slots[slot] = address;
            if rng.u32(..11) == 0 {
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
    w
}
