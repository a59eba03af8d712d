/*!
The memscope trace format and the analyzer's table schemas, shared by the
recorder and the analyzer so that they cannot disagree.

# Brief overview

A trace is a file header ([`format::FileHeader`]) followed by fixed-length
blocks. Each used block belongs to one thread ([`format::BlockHeader`]) and
holds records made of 8-byte little-endian words: an allocation takes two
words, a deallocation one, a reallocation three. `schemas/FORMAT.md` is the
byte-by-byte specification; this crate implements it:

* [`format`](mod@format): constants, the file and block headers, word packing.
* [`record`]: [`Record`], the [`RecordEncoder`] both writers use, and the
  [`BlockDecoder`].
* [`reader`]: [`Trace::read`], the simple sequential reader that the
  analyzer's parallel decoder is checked against.
* [`tables`]: the analyzer's tables and columns (with the `arrow` feature,
  their Arrow schemas).
* [`writer`]: [`TraceWriter`], which builds whole trace files in memory in
  the recorder's layout (for tests, benchmarks and synthetic traces).

# Example

```
use memscope_schema::{Record, RecordEncoder, format::BlockHeader, BlockDecoder};

let header = BlockHeader { thread_id: 1, os_tid: 42, seq: 0, base_q: 1000 };
let mut words = header.to_words().to_vec();
let mut enc = RecordEncoder::new(header.base_q);
let mut out = [0; memscope_schema::record::MAX_FIXED_WORDS];
let rec = Record::Alloc { q: 1010, address: 0x5000, size: 24, align: 8, zeroed: false };
let n = enc.encode(&rec, &mut out);
words.extend_from_slice(&out[..n]);
words.resize(512, 0);

let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
let decoder = BlockDecoder::new(&bytes, 4096)?.expect("a used block");
let records = decoder.collect::<Result<Vec<_>, _>>()?;
assert_eq!(records, vec![rec]);
# Ok::<(), Box<dyn std::error::Error>>(())
```
*/

pub mod error;
pub mod format;
pub mod reader;
pub mod record;
pub mod tables;
pub mod writer;

pub use crate::error::{DecodeError, DecodeErrorKind};
pub use crate::format::{BlockHeader, ClockSource, FileHeader, TimeScale};
pub use crate::reader::{Block, Trace};
pub use crate::record::{BlockDecoder, Frames, Record, RecordEncoder, Totals};
pub use crate::writer::TraceWriter;
