//! Call stacks: trace-wide stack ids, offline symbolization of their frames,
//! and what the analysis derives from them (the call site and the type of
//! an allocation).
//!
//! The recorder writes each thread's stacks under the thread's own ids;
//! [`intern`] gives every distinct stack one trace-wide id. [`Stacks`] then
//! resolves each return address against the module map recorded with the
//! trace: function, source file and line, with inlined functions as frames
//! of their own (addr2line over the module's DWARF, or its symbol table
//! when it has no debug information). An address whose module cannot be
//! read stays a `module+0xoffset` frame; symbolization never fails.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::decode::{BlockEvents, ModuleRecord};

/// Gives every distinct stack of the trace one id, from 1, and rewrites the
/// blocks' per-event stack ids (the threads' own) to those ids. A reference
/// to a stack the thread never defined becomes 0. Returns the stacks'
/// return addresses, index `id - 1`, and how many events referred to a
/// stack their thread never defined.
pub fn intern(blocks: &mut [BlockEvents]) -> (Vec<Vec<u64>>, u64) {
    let mut ids: FxHashMap<&[u64], u32> = FxHashMap::default();
    let mut of_thread: FxHashMap<(u32, u32), u32> = FxHashMap::default();
    let mut stacks: Vec<Vec<u64>> = Vec::new();
    for b in blocks.iter() {
        for (local, frames) in &b.stacks {
            let id = *ids.entry(frames.as_slice()).or_insert_with(|| {
                stacks.push(frames.clone());
                stacks.len() as u32
            });
            of_thread.insert((b.thread_id, *local), id);
        }
    }
    drop(ids);
    let mut undefined = 0;
    for b in blocks.iter_mut() {
        let thread = b.thread_id;
        for s in b.stack.iter_mut().filter(|s| **s != 0) {
            *s = of_thread.get(&(thread, *s)).copied().unwrap_or_else(|| {
                undefined += 1;
                0
            });
        }
    }
    (stacks, undefined)
}

/// Where a frame's name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolSource {
    /// The module's DWARF debug information (function, file, line, inlining).
    Dwarf,
    /// The module's symbol table (function only).
    SymbolTable,
    /// The file was read but names none of the module's addresses
    /// (stripped, or the addresses are in unnamed code).
    None,
    /// The file is not at its recorded path, or cannot be read as an
    /// object file.
    Missing,
}

impl SymbolSource {
    /// The name used in `modules.symbols`.
    pub fn name(self) -> &'static str {
        match self {
            SymbolSource::Dwarf => "dwarf",
            SymbolSource::SymbolTable => "symbol_table",
            SymbolSource::None => "none",
            SymbolSource::Missing => "missing",
        }
    }
}

/// A module of the traced process (the executable or a shared library).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Row id, from 0.
    pub module_id: u32,
    /// Path of the module file when recorded.
    pub path: String,
    /// GNU build id as lowercase hex; `None` when the module has none.
    pub build_id: Option<String>,
    /// Lowest loaded address.
    pub start: u64,
    /// One past the highest loaded address.
    pub end: u64,
    /// Run-time address minus address in the file.
    pub bias: u64,
    /// The best source of names the analyzer found for it.
    pub symbols: SymbolSource,
    /// The file its frames were symbolized from: found through
    /// [`SYMBOL_PATH_VAR`], or the recorded path; `None` when none could
    /// be read.
    pub symbol_file: Option<String>,
    /// A file found for the module but not used because its build id
    /// differs from the recorded one (the program was rebuilt after it was
    /// recorded): its symbols would name the wrong functions.
    pub rejected_file: Option<String>,
}

/// Environment variable listing directories (separated by `:`) searched
/// for module files before their recorded paths: `DIR/.build-id/ab/cdef….debug`
/// (the usual layout of separate debug files) and `DIR/<file name>`. For
/// symbolizing on another machine, or with the unstripped files of a
/// stripped deployment.
pub const SYMBOL_PATH_VAR: &str = "MEMSCOPE_SYMBOL_PATH";

/// One frame of a stack: a return address, or a function inlined at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Row id, from 0.
    pub frame_id: u32,
    /// The return address as recorded (the instruction after the call).
    pub address: u64,
    /// The module containing it, if any.
    pub module_id: Option<u32>,
    /// `address - bias` of that module: the address in the module file.
    pub module_offset: Option<u64>,
    /// Demangled function name (Rust names without hashes).
    pub function: Option<String>,
    /// Source file of the call.
    pub file: Option<String>,
    /// Source line of the call.
    pub line: Option<u32>,
    /// Whether this function was inlined into the next frame of the stack
    /// (the next frame has the same address).
    pub inlined: bool,
    /// The function name, or `module+0xoffset` (or the bare address)
    /// when no name is known.
    pub name: String,
}

/// What an allocation's type name was taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TypeSource {
    /// A `track_var!` tag.
    Tag,
    /// A generic frame of the stack, such as `Vec<myapp::Order>::push`.
    Frame,
    /// Neither.
    Unknown,
}

impl TypeSource {
    /// The name used in `allocations.type_source`.
    pub fn name(self) -> &'static str {
        match self {
            TypeSource::Tag => "tag",
            TypeSource::Frame => "frame",
            TypeSource::Unknown => "unknown",
        }
    }
}

/// Every stack of a trace with its symbolized frames.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stacks {
    /// Modules, by `module_id`.
    pub modules: Vec<Module>,
    /// Frames, by `frame_id`.
    pub frames: Vec<Frame>,
    /// For stack id `i + 1`: its frame ids, innermost (the allocator) first.
    pub stacks: Vec<Vec<u32>>,
    /// For stack id `i + 1`: the frame id of its call site, the first frame
    /// outside the allocator and the standard library (see
    /// [`is_allocator_frame`]).
    pub call_site: Vec<Option<u32>>,
    /// For stack id `i + 1`: the type allocated, from its outermost generic
    /// container frame below the call site (see [`type_of_frame`]).
    pub frame_type: Vec<Option<String>>,
}

impl Stacks {
    /// Symbolizes the return addresses of `raw` (stack id `i + 1` at index
    /// `i`) against the recorded module map. Each module file is opened
    /// once, and modules are symbolized in parallel.
    pub fn symbolize(raw: Vec<Vec<u64>>, records: Vec<ModuleRecord>) -> Stacks {
        let mut records = records;
        // Every map repeats the modules still loaded: keep one row per
        // module, with the time of the latest map that has it.
        records.sort_by(|a, b| {
            (a.start, a.end, a.bias, &a.path, std::cmp::Reverse(a.q)).cmp(&(
                b.start,
                b.end,
                b.bias,
                &b.path,
                std::cmp::Reverse(b.q),
            ))
        });
        records.dedup_by(|later, first| {
            (later.start, later.end, later.bias, &later.path)
                == (first.start, first.end, first.bias, &first.path)
        });
        let loaded_q: Vec<u64> = records.iter().map(|r| r.q).collect();
        let mut modules: Vec<Module> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Module {
                module_id: i as u32,
                path: r.path.clone(),
                build_id: (!r.build_id.is_empty()).then(|| hex(&r.build_id)),
                start: r.start,
                end: r.end,
                bias: r.bias,
                symbols: SymbolSource::None,
                symbol_file: None,
                rejected_file: None,
            })
            .collect();
        let search: Vec<PathBuf> = std::env::var_os(SYMBOL_PATH_VAR)
            .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
            .unwrap_or_default();

        let mut addresses: Vec<u64> = raw.iter().flatten().copied().collect();
        addresses.sort_unstable();
        addresses.dedup();
        let mut by_module: Vec<Vec<u64>> = vec![Vec::new(); modules.len()];
        let mut outside: Vec<u64> = Vec::new();
        for &a in &addresses {
            match module_of(&modules, &loaded_q, a) {
                Some(m) => by_module[m].push(a),
                None => outside.push(a),
            }
        }
        let resolved: Vec<ModuleSymbols> = modules
            .par_iter()
            .zip(by_module.par_iter())
            .map(|(m, addrs)| symbolize_module(m, addrs, &search))
            .collect();

        let mut frames: Vec<Frame> = Vec::new();
        let mut frames_of: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
        for (m, (source, file, rejected, addrs)) in resolved.into_iter().enumerate() {
            modules[m].symbols = source;
            modules[m].symbol_file = file;
            modules[m].rejected_file = rejected;
            let module = &modules[m];
            for (address, symbols) in addrs {
                let offset = address.wrapping_sub(module.bias);
                let ids = push_frames(&mut frames, address, Some(module), offset, symbols);
                frames_of.insert(address, ids);
            }
        }
        for a in outside {
            let ids = push_frames(&mut frames, a, None, 0, Vec::new());
            frames_of.insert(a, ids);
        }

        let stacks: Vec<Vec<u32>> = raw
            .iter()
            .map(|s| s.iter().flat_map(|a| frames_of[a].iter().copied()).collect())
            .collect();
        let call_site = stacks.iter().map(|s| call_site(&frames, s)).collect();
        let frame_type = stacks.iter().map(|s| frame_type(&frames, s)).collect();
        Stacks { modules, frames, stacks, call_site, frame_type }
    }

    /// The frame ids of stack `id` (trace-wide, from 1), innermost first;
    /// empty for 0 or an unknown id.
    pub fn frames_of(&self, id: u32) -> &[u32] {
        id.checked_sub(1).and_then(|i| self.stacks.get(i as usize)).map_or(&[], Vec::as_slice)
    }

    /// The call-site frame of stack `id`, if any.
    pub fn call_site_of(&self, id: u32) -> Option<&Frame> {
        let i = id.checked_sub(1)? as usize;
        self.call_site.get(i).copied().flatten().map(|f| &self.frames[f as usize])
    }

    /// The type derived from the frames of stack `id`, if any.
    pub fn type_of(&self, id: u32) -> Option<&str> {
        let i = id.checked_sub(1)? as usize;
        self.frame_type.get(i).and_then(Option::as_deref)
    }
}

/// What addr2line said about one address: one entry per function, the
/// innermost inlined one first.
#[derive(Clone, Debug, Default)]
struct Symbol {
    function: Option<String>,
    file: Option<String>,
    line: Option<u32>,
}

/// The symbols of one module's addresses, where they came from, the file
/// read and a file rejected for its build id.
type ModuleSymbols = (SymbolSource, Option<String>, Option<String>, Vec<(u64, Vec<Symbol>)>);

/// The GNU build id of the object file at `path`, as lowercase hex; `None`
/// when it has none or cannot be read as an object file.
fn file_build_id(path: &Path) -> Option<String> {
    use object::Object;
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: memmap2's contract is that the file is not modified while
    // mapped. Module files are executables and libraries that nothing
    // rewrites in place (a rebuild writes a new file and renames it); the
    // map lives only for this function.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let object = object::File::parse(&*map).ok()?;
    object.build_id().ok().flatten().map(hex)
}

/// The files that may hold a module's symbols, in the order tried: in each
/// search directory its separate debug file by build id, then a file of
/// its name; then its recorded path.
fn candidate_files(module: &Module, search: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in search {
        if let Some(id) = module.build_id.as_deref().filter(|id| id.len() > 2) {
            out.push(dir.join(".build-id").join(&id[..2]).join(format!("{}.debug", &id[2..])));
        }
        out.push(dir.join(basename(&module.path)));
    }
    out.push(PathBuf::from(&module.path));
    out
}

/// Index of the module containing `address`: where modules of several maps
/// overlap (a library unloaded and another loaded in its place), the one
/// of the latest map (`loaded_q`, by module) wins.
fn module_of(modules: &[Module], loaded_q: &[u64], address: u64) -> Option<usize> {
    modules
        .iter()
        .enumerate()
        .filter(|(_, m)| m.start <= address && address < m.end)
        .max_by_key(|&(i, _)| loaded_q[i])
        .map(|(i, _)| i)
}

/// Symbolizes the addresses of one module, in their order.
fn symbolize_module(module: &Module, addrs: &[u64], search: &[PathBuf]) -> ModuleSymbols {
    if addrs.is_empty() {
        return (SymbolSource::None, None, None, Vec::new());
    }
    let mut rejected = None;
    let opened = candidate_files(module, search).into_iter().find_map(|path| {
        if !path.is_file() {
            return None;
        }
        if let Some(want) = &module.build_id
            && let Some(found) = file_build_id(&path)
            && &found != want
        {
            rejected.get_or_insert_with(|| path.to_string_lossy().into_owned());
            return None;
        }
        let loader = addr2line::Loader::new(&path).ok()?;
        Some((path, loader))
    });
    let Some((file, loader)) = opened else {
        let unresolved = addrs.iter().map(|&a| (a, Vec::new())).collect();
        return (SymbolSource::Missing, None, rejected, unresolved);
    };
    let mut best = SymbolSource::None;
    let out = addrs
        .iter()
        .map(|&a| {
            // A return address points after the call: look up the call.
            let probe = a.wrapping_sub(module.bias).wrapping_sub(1);
            let mut symbols = Vec::new();
            if let Ok(mut it) = loader.find_frames(probe) {
                while let Ok(Some(f)) = it.next() {
                    let function =
                        f.function.as_ref().and_then(|n| n.demangle().ok()).map(|n| n.into_owned());
                    let (file, line) =
                        f.location.map_or((None, None), |l| (l.file.map(str::to_owned), l.line));
                    symbols.push(Symbol { function, file, line });
                }
            }
            if symbols.iter().any(|s| s.function.is_some()) {
                best = SymbolSource::Dwarf;
                // Line-tables-only DWARF names functions without their path
                // (`push<Order>`); the symbol table has the full name of the
                // function the address is in (the last, outermost frame).
                if let Some(last) = symbols.last_mut()
                    && last.function.as_deref().is_none_or(|f| !f.contains("::"))
                    && let Some(name) = loader.find_symbol(probe)
                {
                    last.function = Some(addr2line::demangle_auto(name.into(), None).into_owned());
                }
            } else if let Some(name) = loader.find_symbol(probe) {
                let name = addr2line::demangle_auto(name.into(), None).into_owned();
                let (file, line) =
                    symbols.first().map_or((None, None), |s| (s.file.clone(), s.line));
                symbols = vec![Symbol { function: Some(name), file, line }];
                if best == SymbolSource::None {
                    best = SymbolSource::SymbolTable;
                }
            }
            (a, symbols)
        })
        .collect();
    (best, Some(file.to_string_lossy().into_owned()), None, out)
}

/// Appends the frames of one return address (one per inlined function, the
/// innermost first) and returns their ids.
fn push_frames(
    frames: &mut Vec<Frame>,
    address: u64,
    module: Option<&Module>,
    offset: u64,
    symbols: Vec<Symbol>,
) -> Vec<u32> {
    let label = || match module {
        Some(m) => format!("{}+{offset:#x}", basename(&m.path)),
        None => format!("{address:#x}"),
    };
    let symbols = if symbols.is_empty() { vec![Symbol::default()] } else { symbols };
    let last = symbols.len() - 1;
    symbols
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let id = frames.len() as u32;
            let name = s.function.clone().unwrap_or_else(label);
            frames.push(Frame {
                frame_id: id,
                address,
                module_id: module.map(|m| m.module_id),
                module_offset: module.map(|_| offset),
                function: s.function,
                file: s.file,
                line: s.line,
                inlined: i < last,
                name,
            });
            id
        })
        .collect()
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Crates whose frames are the allocator's, not the program's.
const ALLOCATOR_CRATES: [&str; 7] =
    ["alloc::", "core::", "std::", "hashbrown::", "memscope_recorder::", "__rustc::", "__rust"];

/// Whether the frame named `function` belongs to the allocation machinery
/// rather than to the program: the standard library (`alloc`, `core`,
/// `std` and `hashbrown`, which implements `std`'s maps), the allocator
/// shims and memscope's recorder. A trait method is the allocator's when
/// both the trait and the type it is implemented for are
/// (`<alloc::vec::Vec<u8> as core::clone::Clone>::clone`, `<&str as
/// alloc::string::ToString>::to_string`), and the program's when the type
/// is the program's (`<myapp::Order as core::clone::Clone>::clone`).
pub fn is_allocator_frame(function: &str) -> bool {
    let f = function.strip_prefix('<').unwrap_or(function);
    let standard = match split_qualified(f) {
        Some((self_type, trait_path)) => {
            is_standard_path(self_type)
                && ALLOCATOR_CRATES.iter().any(|c| trait_path.starts_with(c))
        }
        None => is_standard_path(f),
    };
    standard
        || function.starts_with("__rdl_")
        || function.starts_with("__rg_")
        || function.starts_with("_rust")
}

/// Whether a path or type names the standard library (or memscope), or a
/// primitive, reference, slice or tuple of one.
fn is_standard_path(path: &str) -> bool {
    let t = path.trim_start_matches(['&', '*', '[', '(', ' ']);
    let t = t.strip_prefix("mut ").or_else(|| t.strip_prefix("const ")).unwrap_or(t);
    let t = t.strip_prefix("dyn ").unwrap_or(t);
    ALLOCATOR_CRATES.iter().any(|c| t.starts_with(c))
        || PRIMITIVES.iter().any(|p| {
            t.starts_with(p) && !t[p.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        })
}

const PRIMITIVES: [&str; 17] = [
    "str", "bool", "char", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64",
    "i128", "isize", "f32", "f64",
];

/// Splits `A as B>::m` (the part after `<`) into `A` and `B`, minding
/// nested angle brackets.
fn split_qualified(f: &str) -> Option<(&str, &str)> {
    let mut depth = 0i32;
    for (i, c) in f.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if depth == 0 => return None,
            '>' => depth -= 1,
            ' ' if depth == 0 && f[i..].starts_with(" as ") => return Some((&f[..i], &f[i + 4..])),
            _ => {}
        }
    }
    None
}

/// The first frame of `stack` that is not the allocator's.
fn call_site(frames: &[Frame], stack: &[u32]) -> Option<u32> {
    stack
        .iter()
        .copied()
        .find(|&f| frames[f as usize].function.as_deref().is_none_or(|n| !is_allocator_frame(n)))
}

/// The type an allocation was made for: the innermost container frame
/// below the call site, then outward through containers that wrap the same
/// buffer (`Vec<u8>` in `String`, `RawTable<(K, V)>` in `HashMap<K, V>`).
/// A container frame that does not wrap it (the `Vec<String>` whose
/// `clone` allocates each element's `String`) ends the search.
fn frame_type(frames: &[Frame], stack: &[u32]) -> Option<String> {
    let mut found: Option<String> = None;
    for &f in stack {
        let Some(name) = frames[f as usize].function.as_deref() else {
            break;
        };
        if !is_allocator_frame(name) {
            break;
        }
        let Some(t) = type_of_frame(name) else {
            continue;
        };
        match &found {
            None => found = Some(t),
            Some(inner) if wraps(&t, inner) => found = Some(t),
            Some(_) => break,
        }
    }
    found
}

/// Whether container type `outer` holds its data in the buffer of `inner`.
fn wraps(outer: &str, inner: &str) -> bool {
    if outer == inner || (inner == "alloc::vec::Vec<u8>" && outer == "alloc::string::String") {
        return true;
    }
    match (type_args(outer), type_args(inner)) {
        (Some(o), Some(i)) => {
            i == o || i == format!("({o})") || i == format!("({o}, ())") || {
                // HashMap<K, V, S> over RawTable<(K, V)>.
                o.rsplit_once(", ").is_some_and(|(kv, _)| i == format!("({kv})"))
            }
        }
        _ => false,
    }
}

/// The generic arguments of a type name: `K, V` of `HashMap<K, V>`.
fn type_args(t: &str) -> Option<&str> {
    let open = t.find('<')?;
    t.strip_suffix('>').map(|s| &s[open + 1..])
}

/// Containers whose generic frames name the type they allocate for, and the
/// name given to it (`RawVec` is the buffer behind `Vec`).
const CONTAINERS: [(&str, &str); 13] = [
    ("alloc::vec::Vec<", "alloc::vec::Vec<"),
    ("alloc::raw_vec::RawVec<", "alloc::vec::Vec<"),
    ("alloc::collections::vec_deque::VecDeque<", "alloc::collections::vec_deque::VecDeque<"),
    (
        "alloc::collections::binary_heap::BinaryHeap<",
        "alloc::collections::binary_heap::BinaryHeap<",
    ),
    ("alloc::collections::btree::map::BTreeMap<", "alloc::collections::btree::map::BTreeMap<"),
    ("alloc::collections::btree::set::BTreeSet<", "alloc::collections::btree::set::BTreeSet<"),
    ("alloc::boxed::Box<", "alloc::boxed::Box<"),
    ("alloc::rc::Rc<", "alloc::rc::Rc<"),
    ("alloc::sync::Arc<", "alloc::sync::Arc<"),
    ("std::collections::hash::map::HashMap<", "std::collections::hash::map::HashMap<"),
    ("std::collections::hash::set::HashSet<", "std::collections::hash::set::HashSet<"),
    ("hashbrown::raw::RawTable<", "hashbrown::raw::RawTable<"),
    ("alloc::string::String", "alloc::string::String"),
];

/// Default type arguments left out of derived type names.
const DEFAULT_ARGS: [&str; 2] = [", alloc::alloc::Global", ", std::hash::random::RandomState"];

/// The type a generic container frame allocates for: from
/// `<alloc::raw_vec::RawVec<myapp::Order>>::grow_one` (a v0-mangled
/// symbol, demangled) `alloc::vec::Vec<myapp::Order>`. `None` for other
/// frames and for generic parameters that were not substituted (`T`).
pub fn type_of_frame(function: &str) -> Option<String> {
    let f = function.strip_prefix('<').unwrap_or(function);
    let (prefix, name) = CONTAINERS.iter().find(|(p, _)| f.starts_with(p))?;
    if !prefix.ends_with('<') {
        let rest = &f[prefix.len()..];
        return (!rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
            .then(|| name.to_string());
    }
    let args_start = prefix.len();
    let mut depth = 1;
    let mut end = None;
    for (i, c) in f[args_start..].char_indices() {
        match c {
            '<' => depth += 1,
            '>' => {
                depth -= 1;
                if depth == 0 {
                    end = Some(args_start + i);
                    break;
                }
            }
            _ => {}
        }
    }
    let mut args = f[args_start..end?].to_string();
    for d in DEFAULT_ARGS {
        args = args.replace(d, "");
    }
    if args
        .split([',', ' ', '<', '>'])
        .any(|a| a.len() == 1 && a.chars().all(|c| c.is_ascii_uppercase()))
    {
        return None;
    }
    Some(format!("{name}{args}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_frames() {
        for f in [
            "<alloc::raw_vec::RawVec<u8>>::grow_one",
            "alloc::alloc::exchange_malloc",
            "<memscope_recorder::alloc::TrackingAllocator<std::alloc::System> as core::alloc::global::GlobalAlloc>::alloc",
            "__rustc::__rust_alloc",
            "<&str as alloc::string::ToString>::to_string",
            "<[u8] as alloc::borrow::ToOwned>::to_owned",
            "hashbrown::raw::RawTableInner::fallible_with_capacity",
            "<alloc::vec::Vec<myapp::Order> as core::clone::Clone>::clone",
        ] {
            assert!(is_allocator_frame(f), "{f}");
        }
        for f in [
            "myapp::orders::load",
            "<myapp::Order as core::clone::Clone>::clone",
            "<strategy::Plan as core::default::Default>::default",
            "u8x::pack",
            "<alloc::vec::Vec<myapp::Order> as myapp::Report>::render",
            "<&str as myapp::Tokenize>::tokens",
        ] {
            assert!(!is_allocator_frame(f), "{f}");
        }
    }

    fn frames(names: &[&str]) -> (Vec<Frame>, Vec<u32>) {
        let frames: Vec<Frame> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Frame {
                frame_id: i as u32,
                address: 0,
                module_id: None,
                module_offset: None,
                function: Some(n.to_string()),
                file: None,
                line: None,
                inlined: false,
                name: n.to_string(),
            })
            .collect();
        let ids = (0..names.len() as u32).collect();
        (frames, ids)
    }

    #[test]
    fn the_type_is_the_innermost_container_and_its_wrappers() {
        let t = |names: &[&str]| {
            let (f, s) = frames(names);
            frame_type(&f, &s)
        };
        // A String's buffer is a String, not a Vec<u8>.
        assert_eq!(
            t(&[
                "<alloc::raw_vec::RawVec<u8>>::grow_one",
                "<alloc::vec::Vec<u8>>::push",
                "<alloc::string::String>::push",
                "myapp::log",
            ])
            .as_deref(),
            Some("alloc::string::String")
        );
        // The elements a Vec<String> clone allocates are Strings.
        assert_eq!(
            t(&[
                "<alloc::raw_vec::RawVec<u8>>::with_capacity_in",
                "<alloc::string::String as core::clone::Clone>::clone",
                "<alloc::vec::Vec<alloc::string::String> as core::clone::Clone>::clone",
                "myapp::snapshot",
            ])
            .as_deref(),
            Some("alloc::string::String")
        );
        // A map's table is the map.
        assert_eq!(
            t(&[
                "<hashbrown::raw::RawTable<(u32, myapp::Order)>>::reserve_rehash",
                "<std::collections::hash::map::HashMap<u32, myapp::Order>>::insert",
                "myapp::index",
            ])
            .as_deref(),
            Some("std::collections::hash::map::HashMap<u32, myapp::Order>")
        );
        // Nothing below the call site: no type.
        assert_eq!(t(&["myapp::alloc_raw", "<alloc::vec::Vec<u8>>::push"]), None);
    }

    #[test]
    fn the_latest_map_wins_where_modules_overlap() {
        let m = |id: u32, start: u64, end: u64| Module {
            module_id: id,
            path: format!("lib{id}.so"),
            build_id: None,
            start,
            end,
            bias: 0,
            symbols: SymbolSource::None,
            symbol_file: None,
            rejected_file: None,
        };
        let modules = [m(0, 0x1000, 0x5000), m(1, 0x2000, 0x3000)];
        assert_eq!(module_of(&modules, &[10, 20], 0x2500), Some(1));
        assert_eq!(module_of(&modules, &[10, 20], 0x4000), Some(0));
        assert_eq!(module_of(&modules, &[30, 20], 0x2500), Some(0));
        assert_eq!(module_of(&modules, &[30, 20], 0x6000), None);
    }

    #[test]
    fn types_from_frames() {
        let t = |f| type_of_frame(f);
        assert_eq!(
            t("<alloc::raw_vec::RawVec<myapp::Order>>::grow_one").as_deref(),
            Some("alloc::vec::Vec<myapp::Order>")
        );
        assert_eq!(
            t("<alloc::vec::Vec<(u32, alloc::string::String), alloc::alloc::Global>>::push")
                .as_deref(),
            Some("alloc::vec::Vec<(u32, alloc::string::String)>")
        );
        assert_eq!(
            t("<alloc::string::String as core::fmt::Write>::write_str").as_deref(),
            Some("alloc::string::String")
        );
        assert_eq!(t("<alloc::boxed::Box<T>>::new"), None);
        assert_eq!(t("alloc::string::StringLike::f"), None);
        assert_eq!(t("myapp::load"), None);
    }
}
