//! Binding a plugin's settings and data into its component's memory image.
//!
//! A plugin built with deskhost-sdk carries a 32-byte slot in its data segment: 16 magic
//! bytes ([`SLOT_MAGIC`]) and four zero `u32`s. Binding appends one data segment holding the
//! data and settings just past the core module's original initial memory, raises the
//! memory's minimum by that many pages, and writes their addresses into the slot. The
//! result is an ordinary component; compiled once, every fresh instance maps it
//! copy-on-write from the pooling allocator's memory image, so a 10 MB model costs nothing
//! per call. The allocator never hands out that range: it only grows memory beyond it.
//!
//! Sections the binder does not touch are copied byte for byte.

use std::ops::Range;
use wasm_encoder::{
    ConstExpr, DataCountSection, DataSection, MemorySection, MemoryType, RawSection,
};
use wasmparser::{DataKind, Operator, Parser, Payload};

/// Must match `deskhost_sdk::bound::SLOT_MAGIC`.
pub const SLOT_MAGIC: [u8; 16] = *b"deskhost:bound\x00\x01";
const SLOT_LEN: usize = 32;
const PAGE: u64 = 65536;
// Section ids inside a component (component-model binary format).
const CORE_MODULE_SECTION: u8 = 1;
const COMPONENT_SECTION: u8 = 4;

/// Why a component could not be bound (it still runs: its config is then served through the
/// `config` capability).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BindError {
    /// Not parseable as a component.
    #[error("not a valid component: {0}")]
    Malformed(String),
    /// The magic occurs more than once.
    #[error("the config slot occurs {0} times; a component must link deskhost-sdk once")]
    AmbiguousSlot(usize),
    /// The module's layout cannot be extended (imported or 64-bit memory, computed offsets).
    #[error("cannot bind: {0}")]
    Unsupported(&'static str),
}

/// The result of [`bind`].
pub struct Bound {
    /// The rewritten component.
    pub component: Vec<u8>,
    /// Bytes added to the initial memory (page-rounded).
    pub added_bytes: u64,
}

/// Returns the component with `settings` and `data` bound, or `Ok(None)` when it has no slot
/// (not built with deskhost-sdk, e.g. Python or JavaScript plugins).
pub fn bind(component: &[u8], settings: &[u8], data: &[u8]) -> Result<Option<Bound>, BindError> {
    let malformed = |e: wasmparser::BinaryReaderError| BindError::Malformed(e.to_string());
    let mut out = wasm_encoder::Component::new();
    let mut depth = 0usize;
    let mut found: Option<u64> = None;
    for payload in Parser::new(0).parse_all(component) {
        let payload = payload.map_err(malformed)?;
        if depth == 0 {
            match &payload {
                Payload::ModuleSection {
                    unchecked_range, ..
                } => {
                    let module = component.get(unchecked_range.clone()).ok_or_else(|| {
                        BindError::Malformed("module section out of bounds".into())
                    })?;
                    match bind_module(module, settings, data)? {
                        Some((bytes, added)) if found.is_none() => {
                            out.section(&RawSection {
                                id: CORE_MODULE_SECTION,
                                data: &bytes,
                            });
                            found = Some(added);
                        }
                        Some(_) => return Err(BindError::AmbiguousSlot(2)),
                        None => {
                            out.section(&RawSection {
                                id: CORE_MODULE_SECTION,
                                data: module,
                            });
                        }
                    }
                }
                Payload::ComponentSection {
                    unchecked_range, ..
                } => {
                    let nested = component.get(unchecked_range.clone()).ok_or_else(|| {
                        BindError::Malformed("component section out of bounds".into())
                    })?;
                    out.section(&RawSection {
                        id: COMPONENT_SECTION,
                        data: nested,
                    });
                }
                Payload::Version { encoding, .. } => {
                    if *encoding != wasmparser::Encoding::Component {
                        return Err(BindError::Malformed(
                            "a core module, not a component".into(),
                        ));
                    }
                }
                Payload::End(_) => {}
                other => {
                    if let Some((id, range)) = other.as_section() {
                        out.section(&RawSection {
                            id,
                            data: &component[range.clone()],
                        });
                    }
                }
            }
        }
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(found.map(|added| Bound {
        component: out.finish(),
        added_bytes: added,
    }))
}

struct Segment<'a> {
    offset: Option<u64>,
    memory: u32,
    data: std::borrow::Cow<'a, [u8]>,
}

/// Rewrites one core module, or `Ok(None)` if it holds no slot.
fn bind_module(
    module: &[u8],
    settings: &[u8],
    data: &[u8],
) -> Result<Option<(Vec<u8>, u64)>, BindError> {
    let malformed = |e: wasmparser::BinaryReaderError| BindError::Malformed(e.to_string());
    // Cheap pre-check: most modules (shims, adapters) have no slot at all.
    let hits = find_all(module, &SLOT_MAGIC);
    if hits.is_empty() {
        return Ok(None);
    }

    let mut sections: Vec<(u8, Range<usize>)> = Vec::new();
    let mut memory: Option<wasmparser::MemoryType> = None;
    let mut segments: Vec<Segment<'_>> = Vec::new();
    let mut imported_memory = false;
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(malformed)?;
        match &payload {
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    if matches!(
                        import.map_err(malformed)?.ty,
                        wasmparser::TypeRef::Memory(_)
                    ) {
                        imported_memory = true;
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for m in reader.clone() {
                    let m = m.map_err(malformed)?;
                    if memory.replace(m).is_some() {
                        return Err(BindError::Unsupported("more than one memory"));
                    }
                }
            }
            Payload::DataSection(reader) => {
                for d in reader.clone() {
                    let d = d.map_err(malformed)?;
                    let (offset, memory) = match d.kind {
                        DataKind::Passive => (None, 0),
                        DataKind::Active {
                            memory_index,
                            offset_expr,
                        } => {
                            let mut ops = offset_expr.get_operators_reader();
                            match ops.read().map_err(malformed)? {
                                Operator::I32Const { value } => {
                                    (Some(u64::from(value as u32)), memory_index)
                                }
                                _ => {
                                    return Err(BindError::Unsupported(
                                        "data segment offset is not a constant",
                                    ));
                                }
                            }
                        }
                    };
                    segments.push(Segment {
                        offset,
                        memory,
                        data: std::borrow::Cow::Borrowed(d.data),
                    });
                }
            }
            _ => {}
        }
        if let Some(section) = payload.as_section() {
            sections.push(section);
        }
    }
    if imported_memory {
        return Err(BindError::Unsupported("the module imports its memory"));
    }
    let Some(memory) = memory else {
        return Err(BindError::Unsupported("the module has no memory"));
    };
    if memory.memory64 || memory.shared || memory.page_size_log2.is_some() {
        return Err(BindError::Unsupported(
            "64-bit, shared or custom-page memory",
        ));
    }

    // The slot: magic followed by 16 zero bytes, in exactly one active segment.
    let mut slot: Option<(usize, usize)> = None;
    let mut count = 0;
    for (i, seg) in segments.iter().enumerate() {
        for at in find_all(&seg.data, &SLOT_MAGIC) {
            if seg
                .data
                .get(at + 16..at + SLOT_LEN)
                .is_some_and(|z| z.iter().all(|&b| b == 0))
                && seg.offset.is_some()
            {
                count += 1;
                slot = Some((i, at));
            }
        }
    }
    let Some((slot_segment, slot_at)) = slot else {
        return Ok(None);
    };
    if count > 1 {
        return Err(BindError::AmbiguousSlot(count));
    }

    // New region: data (page-aligned) then settings (16-aligned).
    let base = memory.initial * PAGE;
    let data_at = base;
    let settings_at = (data_at + data.len() as u64).div_ceil(16) * 16;
    let end = settings_at + settings.len() as u64;
    if end > u64::from(u32::MAX) {
        return Err(BindError::Unsupported(
            "settings and data do not fit a 32-bit memory",
        ));
    }
    let added_pages = (end - base).div_ceil(PAGE);
    let mut region = Vec::with_capacity((end - base) as usize);
    region.extend_from_slice(data);
    region.resize((settings_at - base) as usize, 0);
    region.extend_from_slice(settings);

    let nonzero = |at: u64, len: usize| {
        if len == 0 {
            (0u32, 0u32)
        } else {
            (at as u32, len as u32)
        }
    };
    let (settings_ptr, settings_len) = nonzero(settings_at, settings.len());
    let (data_ptr, data_len) = nonzero(data_at, data.len());
    let mut patched = segments[slot_segment].data.to_vec();
    for (k, v) in [settings_ptr, settings_len, data_ptr, data_len]
        .into_iter()
        .enumerate()
    {
        let at = slot_at + 16 + 4 * k;
        patched[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    segments[slot_segment].data = std::borrow::Cow::Owned(patched);
    segments.push(Segment {
        offset: Some(base),
        memory: 0,
        data: std::borrow::Cow::Owned(region),
    });

    let mut out = wasm_encoder::Module::new();
    for (id, range) in sections {
        match id {
            5 => {
                let mut section = MemorySection::new();
                let minimum = memory.initial + added_pages;
                section.memory(MemoryType {
                    minimum,
                    maximum: memory.maximum.map(|m| m.max(minimum)),
                    memory64: false,
                    shared: false,
                    page_size_log2: None,
                });
                out.section(&section);
            }
            11 => {
                let mut section = DataSection::new();
                for seg in &segments {
                    match seg.offset {
                        Some(offset) => section.active(
                            seg.memory,
                            &ConstExpr::i32_const(offset as u32 as i32),
                            seg.data.iter().copied(),
                        ),
                        None => section.passive(seg.data.iter().copied()),
                    };
                }
                out.section(&section);
            }
            12 => {
                out.section(&DataCountSection {
                    count: segments.len() as u32,
                });
            }
            _ => {
                out.section(&RawSection {
                    id,
                    data: &module[range],
                });
            }
        }
    }
    Ok(Some((out.finish(), added_pages * PAGE)))
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}
