//! The plugin's settings and data, bound into the component by the host.
//!
//! When the host loads a Rust plugin built with this SDK, it finds [`SLOT_MAGIC`] in the
//! component's data segment, appends the manifest's settings and data as a new data segment
//! just past the module's initial memory, and writes their addresses into the slot. Every
//! fresh instance then sees them copy-on-write from the pooling allocator's memory image:
//! nothing is copied or parsed per call. Components the host did not bind (or other
//! runtimes) get the same bytes through the `config` capability.
//!
//! Bound data costs nothing until it is read, but every page a call reads stays mapped in
//! the plugin's memory slot, and resetting the slot for the next call walks every mapped
//! page. Data read sparsely on every call (a large model's rows) is better read through
//! [`DataReader`] (`config.read-data`): the bytes land in the heap, which is reset anyway.

use std::borrow::Cow;
use std::sync::OnceLock;

/// Marks the slot for the host. Must match `SLOT_MAGIC` in the host's `runtime::bind`.
pub const SLOT_MAGIC: [u8; 16] = *b"deskhost:bound\x00\x01";

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    magic: [u8; 16],
    settings_ptr: u32,
    settings_len: u32,
    data_ptr: u32,
    data_len: u32,
}

// Not `no_mangle`: an exported data symbol would surface as a core-module export. Reads are
// volatile so the compiler cannot fold the (never written by Rust) zeros into the code.
#[used]
static mut SLOT: Slot = Slot {
    magic: SLOT_MAGIC,
    settings_ptr: 0,
    settings_len: 0,
    data_ptr: 0,
    data_len: 0,
};

fn slot() -> Slot {
    // SAFETY: a plain read of a static the program never writes (the host patches its initial
    // value before instantiation).
    unsafe { std::ptr::read_volatile(&raw const SLOT) }
}

#[cfg(target_arch = "wasm32")]
fn region(ptr: u32, len: u32) -> Option<&'static [u8]> {
    if ptr == 0 || len == 0 {
        return None;
    }
    // SAFETY: the host placed `len` initialised bytes at `ptr` in a data segment beyond the
    // module's original initial memory. That range is inside memory from instantiation on,
    // the allocator never hands it out (it grows memory past it), and nothing writes to it.
    Some(unsafe { std::slice::from_raw_parts(ptr as usize as *const u8, len as usize) })
}

#[cfg(not(target_arch = "wasm32"))]
fn region(_ptr: u32, _len: u32) -> Option<&'static [u8]> {
    None
}

/// True when the host bound this instance's settings or data into memory.
pub fn is_bound() -> bool {
    let s = slot();
    s.settings_len > 0 || s.data_len > 0
}

/// The settings document (manifest `config`), usually JSON; empty if the plugin has none.
pub fn settings() -> Cow<'static, [u8]> {
    let s = slot();
    if let Some(bytes) = region(s.settings_ptr, s.settings_len) {
        return Cow::Borrowed(bytes);
    }
    if is_bound() {
        // Bound, but with data only: the settings are empty.
        return Cow::Borrowed(&[]);
    }
    static FETCHED: OnceLock<Vec<u8>> = OnceLock::new();
    Cow::Borrowed(FETCHED.get_or_init(|| crate::config::settings().into_bytes()))
}

/// The binary data (manifest `data`, e.g. a trained model); empty if the plugin has none.
pub fn data() -> Cow<'static, [u8]> {
    let s = slot();
    if let Some(bytes) = region(s.data_ptr, s.data_len) {
        return Cow::Borrowed(bytes);
    }
    if is_bound() {
        return Cow::Borrowed(&[]);
    }
    static FETCHED: OnceLock<Vec<u8>> = OnceLock::new();
    Cow::Borrowed(FETCHED.get_or_init(crate::config::data))
}

/// Reads ranges of the plugin's data through the host (`config.read-data`): for a
/// [`deskhost_nlp::Model`] whose rows should not be read from the bound copy (see
/// [`deskhost_nlp::RangeReader`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct DataReader;

impl deskhost_nlp::RangeReader for DataReader {
    fn read(&self, offsets: &[u64], lengths: &[u32]) -> Result<Vec<u8>, String> {
        crate::config::read_data(offsets, lengths).map_err(|e| match e {
            crate::CapabilityError::NotFound(m)
            | crate::CapabilityError::InvalidArgument(m)
            | crate::CapabilityError::Unavailable(m) => format!("config.read-data: {m}"),
        })
    }
}

/// A [`DataReader`] when the data is bound (read sparsely through the host rather than from
/// the bound copy); `None` when it was fetched whole through `config.data` (it is in the
/// heap already).
pub fn data_reader() -> Option<DataReader> {
    let s = slot();
    region(s.data_ptr, s.data_len).map(|_| DataReader)
}
