//! The module map: which executable and shared libraries are loaded where,
//! so that the analyzer can turn return addresses into functions and lines
//! offline, from the files and their build ids.
//!
//! The background thread writes the map when recording starts and again
//! whenever the dynamic loader reports a library loaded or unloaded
//! (`dl_iterate_phdr`'s load and unload counters), as `MODULE` records that
//! share the timestamp of their map.

use std::ffi::CStr;

use memscope_schema::Record;

use crate::clock;
use crate::thread;

/// Longest module path written, in bytes.
const MAX_PATH_LEN: usize = 2048;
/// Longest build id written, in bytes (GNU build ids are 20).
const MAX_BUILD_ID_LEN: usize = 64;

/// One loaded module, as the loader reports it.
struct Module {
    start: u64,
    end: u64,
    bias: u64,
    path: Vec<u8>,
    build_id: Vec<u8>,
}

/// The loader's (load, unload) counters: a change means the map changed.
pub(crate) fn generation() -> (u64, u64) {
    let mut counts = (0u64, 0u64);
    // SAFETY: `counters` only reads the info the loader passes and writes
    // through the pointer to `counts`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(counters), (&raw mut counts).cast());
    }
    counts
}

unsafe extern "C" fn counters(
    info: *mut libc::dl_phdr_info,
    size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    if size >= std::mem::offset_of!(libc::dl_phdr_info, dlpi_tls_modid) {
        // SAFETY: the loader passes a valid info of `size` bytes, which
        // covers the counters; `data` is the `(u64, u64)` of `generation`.
        unsafe {
            let info = &*info;
            *data.cast::<(u64, u64)>() = (info.dlpi_adds, info.dlpi_subs);
        }
    }
    1
}

/// Writes the current module map from the calling (internal) thread.
pub(crate) fn write_map() {
    let mut modules: Vec<Module> = Vec::new();
    // SAFETY: `collect` reads the info the loader passes and pushes to the
    // `Vec` behind `data`, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(collect), (&raw mut modules).cast());
    }
    let exe = std::env::current_exe().ok().map(|p| p.into_os_string().into_encoded_bytes());
    let q = clock::now_q();
    for m in &modules {
        let path = if m.path.is_empty() { exe.as_deref().unwrap_or_default() } else { &m.path };
        // A record must fit in the smallest block; longer paths (far above
        // PATH_MAX in practice) are cut.
        let path = &path[..path.len().min(MAX_PATH_LEN)];
        let build_id = &m.build_id[..m.build_id.len().min(MAX_BUILD_ID_LEN)];
        thread::write_internal(&Record::Module {
            q,
            start: m.start,
            end: m.end,
            bias: m.bias,
            path,
            build_id,
        });
    }
}

unsafe extern "C" fn collect(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: the loader passes a valid info whose program headers and name
    // stay valid during the call; `data` is the `Vec<Module>` of
    // `write_map`.
    let (info, modules) = unsafe { (&*info, &mut *data.cast::<Vec<Module>>()) };
    let bias = info.dlpi_addr;
    let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
        &[]
    } else {
        // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let (mut start, mut end) = (u64::MAX, 0u64);
    let mut build_id = Vec::new();
    for ph in phdrs {
        match ph.p_type {
            libc::PT_LOAD => {
                start = start.min(bias.wrapping_add(ph.p_vaddr));
                end = end.max(bias.wrapping_add(ph.p_vaddr).wrapping_add(ph.p_memsz));
            }
            libc::PT_NOTE if build_id.is_empty() => {
                // SAFETY: a PT_NOTE segment is mapped at its address plus
                // the bias for `p_memsz` bytes (it lies in a loaded segment).
                let notes = unsafe {
                    std::slice::from_raw_parts(
                        bias.wrapping_add(ph.p_vaddr) as *const u8,
                        ph.p_memsz as usize,
                    )
                };
                build_id = gnu_build_id(notes).unwrap_or_default().to_vec();
            }
            _ => {}
        }
    }
    if start < end {
        let path = if info.dlpi_name.is_null() {
            Vec::new()
        } else {
            // SAFETY: a non-null `dlpi_name` is a NUL-terminated string.
            unsafe { CStr::from_ptr(info.dlpi_name) }.to_bytes().to_vec()
        };
        modules.push(Module { start, end, bias, path, build_id });
    }
    0
}

/// The descriptor of the `NT_GNU_BUILD_ID` note among ELF notes.
fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let align4 = |n: usize| n.div_ceil(4) * 4;
    while notes.len() >= 12 {
        let u = |i: usize| u32::from_ne_bytes([notes[i], notes[i + 1], notes[i + 2], notes[i + 3]]);
        let (namesz, descsz, kind) = (u(0) as usize, u(4) as usize, u(8));
        let desc_at = 12 + align4(namesz);
        let next = desc_at.checked_add(align4(descsz))?;
        if next > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && &notes[12..12 + namesz] == b"GNU\0" {
            return Some(&notes[desc_at..desc_at + descsz]);
        }
        notes = &notes[next..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_is_found_after_another_note() {
        let mut notes = Vec::new();
        for (name, kind, desc) in
            [(&b"ABI\0"[..], 1u32, &[1u8, 2, 3][..]), (b"GNU\0", 3, &[0xab; 20])]
        {
            notes.extend_from_slice(&(name.len() as u32).to_ne_bytes());
            notes.extend_from_slice(&(desc.len() as u32).to_ne_bytes());
            notes.extend_from_slice(&kind.to_ne_bytes());
            notes.extend_from_slice(name);
            notes.extend_from_slice(desc);
            notes.resize(notes.len().div_ceil(4) * 4, 0);
        }
        assert_eq!(gnu_build_id(&notes), Some(&[0xab; 20][..]));
        assert_eq!(gnu_build_id(&notes[..20]), None);
    }
}
