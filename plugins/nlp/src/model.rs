//! The triage classifier and its zero-copy file format.
//!
//! A model is a multinomial logistic regression over TF-IDF weighted hashed features
//! ([`crate::features`]), with one or more *heads* (fields such as `category`, `queue`,
//! `priority`) sharing the features. Inference reads the weights straight out of the byte
//! slice: nothing is parsed or copied per call, so a plugin can serve it from its
//! copy-on-write data segment.
//!
//! Layout (little-endian, offsets absolute from the start):
//! ```text
//! header   128 bytes: magic "DHMODEL1", version, feature spec, counts, region offsets;
//!          bytes 96..128: sha256 of the whole file with these 32 bytes left out
//! heads    32 bytes each: name, classes, first column, temperature, bias and label offsets
//! index    u32 per hash bucket: row number, or u32::MAX when the bucket has no feature
//! rowmeta  (idf f32, scale f32) per row
//! weights  per row, `stride` columns (all heads side by side): f32, or i8 times `scale`
//! strings  UTF-8 bytes of names and labels
//! ```

use crate::detmath::softmax_into;
use crate::features::{Block, Feature, FeatureSpec, Scratch, extract, for_each_count, tf};
use std::fmt;

/// First bytes of every model file.
pub const MAGIC: &[u8; 8] = b"DHMODEL1";
/// Format version written by this crate (2: a sha256 digest replaces the FNV checksum).
pub const FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 128;
/// Where the digest sits in the header.
const DIGEST_AT: std::ops::Range<usize> = 96..128;
const HEAD_LEN: usize = 32;
const NO_ROW: u32 = u32::MAX;
/// Columns [`Model::accumulate`] adds at a time (one 128-bit vector of i8 weights).
const LANES: usize = 16;
/// Header flags (word 21).
const FLAG_CHAR_OVER_TEXT: u32 = 1;
const FLAG_RAW_TF: u32 = 2;

/// Storage type of the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// 32-bit floats.
    F32,
    /// 8-bit integers with one f32 scale per row (4x smaller, near-identical predictions).
    I8,
}

impl DType {
    fn code(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::I8 => 1,
        }
    }

    fn bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::I8 => 1,
        }
    }
}

/// Why a byte slice is not a usable model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The data does not start with [`MAGIC`].
    NotAModel,
    /// Written by another format version.
    UnsupportedVersion(u32),
    /// A region or value is out of bounds; names which.
    Corrupt(&'static str),
    /// The digest does not match the content: the file was altered or truncated.
    DigestMismatch,
    /// A [`RangeReader`] could not read the rows; says why.
    Read(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::NotAModel => write!(f, "not a deskhost model (missing DHMODEL1 header)"),
            ModelError::UnsupportedVersion(v) => write!(
                f,
                "model format version {v} is not the one this build reads ({FORMAT_VERSION}); retrain it with this deskhost"
            ),
            ModelError::Corrupt(what) => write!(f, "model file is corrupt: {what}; retrain it"),
            ModelError::DigestMismatch => {
                write!(
                    f,
                    "the model's sha256 does not match its content: the file was altered or truncated after training; retrain it or restore it"
                )
            }
            ModelError::Read(why) => write!(f, "cannot read the model's rows: {why}"),
        }
    }
}

impl std::error::Error for ModelError {}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let b = bytes.get(offset..offset + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn f32_at(bytes: &[u8], offset: usize) -> Option<f32> {
    u32_at(bytes, offset).map(f32::from_bits)
}

/// Reads byte ranges of a model file from somewhere other than the slice it was parsed from.
///
/// A plugin's model is bound into its memory, but every page of it a call touches stays
/// mapped in the plugin's memory slot, and resetting the slot for the next call walks every
/// mapped page: touching a few rows of a 4 MB model per ticket soon makes every reset walk
/// all of it. Read through the host (`config.read-data`, `deskhost_sdk::bound::DataReader`),
/// only the header, heads and labels are touched in memory; the rows a ticket needs arrive in
/// the heap, which is reset anyway.
pub trait RangeReader {
    /// The bytes of each range of the model file (`lengths[i]` bytes from `offsets[i]`; the
    /// slices are as long as each other), concatenated in order.
    fn read(&self, offsets: &[u64], lengths: &[u32]) -> Result<Vec<u8>, String>;
}

#[derive(Clone, Copy)]
struct Reader<'a>(&'a dyn RangeReader);

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RangeReader")
    }
}

/// A parsed view of a model's bytes. Parsing reads the header and checks every region is in
/// bounds; it does not touch the weights.
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    bytes: &'a [u8],
    /// Where the bucket index, row metadata and weights are read from instead of `bytes`.
    reader: Option<Reader<'a>>,
    spec: FeatureSpec,
    n_rows: u32,
    stride: u32,
    dtype: DType,
    n_heads: u32,
    heads_off: usize,
    index_off: usize,
    rowmeta_off: usize,
    weights_off: usize,
    strings_off: usize,
    strings_len: usize,
    name: (u32, u32),
}

/// One output field of a model.
#[derive(Clone, Copy, Debug)]
pub struct Head<'a> {
    model: Model<'a>,
    /// Position among the model's heads.
    pub index: usize,
    /// Number of classes.
    pub n_classes: usize,
    /// First column of this head in a weight row.
    column: usize,
    /// Softmax temperature fitted on held-out data.
    pub temperature: f32,
    name: (u32, u32),
    bias_off: usize,
    labels_off: usize,
}

/// A head's probabilities for one text.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Head (field) name.
    pub field: String,
    /// Index of the most probable class.
    pub best: usize,
    /// Its label.
    pub label: String,
    /// Its probability.
    pub confidence: f32,
    /// All class probabilities, in label order.
    pub probabilities: Vec<f32>,
}

/// A feature that pushed a prediction, in the text's own words.
#[derive(Clone, Debug, PartialEq)]
pub struct Contribution {
    /// The word, word pair, or (for character n-grams) the word containing it.
    pub text: String,
    /// Its contribution to the class's logit.
    pub weight: f32,
}

impl<'a> Model<'a> {
    /// Reads the header of `bytes` and checks the layout. Cheap: O(number of heads).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ModelError> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(ModelError::NotAModel);
        }
        let h = |i: usize| u32_at(bytes, 8 + 4 * i).ok_or(ModelError::Corrupt("header"));
        let version = h(0)?;
        if version != FORMAT_VERSION {
            return Err(ModelError::UnsupportedVersion(version));
        }
        let spec = FeatureSpec {
            buckets_log2: h(1)?,
            word_ngram_max: h(7)?,
            char_ngram_min: h(8)?,
            char_ngram_max: h(9)?,
            max_tokens: h(10)?,
            char_over_text: h(21)? & FLAG_CHAR_OVER_TEXT != 0,
            sublinear_tf: h(21)? & FLAG_RAW_TF == 0,
        };
        if !(4..=26).contains(&spec.buckets_log2) {
            return Err(ModelError::Corrupt("bucket count"));
        }
        let n_rows = h(2)?;
        let stride = h(3)?;
        let dtype = match h(4)? {
            0 => DType::F32,
            1 => DType::I8,
            _ => return Err(ModelError::Corrupt("weight type")),
        };
        let n_heads = h(5)?;
        let total_len = h(16)? as usize;
        let model = Model {
            bytes,
            reader: None,
            spec,
            n_rows,
            stride,
            dtype,
            n_heads,
            heads_off: h(11)? as usize,
            index_off: h(12)? as usize,
            rowmeta_off: h(13)? as usize,
            weights_off: h(14)? as usize,
            strings_off: h(15)? as usize,
            strings_len: h(6)? as usize,
            name: (h(17)?, h(18)?),
        };
        if total_len > bytes.len() {
            return Err(ModelError::Corrupt("file shorter than its header says"));
        }
        let fits =
            |off: usize, len: usize| off.checked_add(len).is_some_and(|end| end <= total_len);
        let buckets = 1usize << spec.buckets_log2;
        let rows = n_rows as usize;
        if !fits(model.heads_off, n_heads as usize * HEAD_LEN) {
            return Err(ModelError::Corrupt("head table"));
        }
        if !fits(model.index_off, buckets * 4) || !model.index_off.is_multiple_of(4) {
            return Err(ModelError::Corrupt("bucket index"));
        }
        if !fits(model.rowmeta_off, rows * 8) {
            return Err(ModelError::Corrupt("row metadata"));
        }
        if !fits(model.weights_off, rows * stride as usize * dtype.bytes()) {
            return Err(ModelError::Corrupt("weights"));
        }
        if !fits(model.strings_off, model.strings_len) {
            return Err(ModelError::Corrupt("strings"));
        }
        for i in 0..n_heads as usize {
            let head = model.head_at(i)?;
            if head.column + head.n_classes > stride as usize || head.n_classes == 0 {
                return Err(ModelError::Corrupt("head columns"));
            }
            if !fits(head.bias_off, head.n_classes * 4)
                || !fits(head.labels_off, head.n_classes * 8)
            {
                return Err(ModelError::Corrupt("head labels"));
            }
        }
        Ok(model)
    }

    /// Recomputes the sha256 digest over the whole file and compares it with the one the
    /// trainer stored. Reads every byte: the host does it once, when it binds the model.
    pub fn verify_digest(&self) -> Result<(), ModelError> {
        let total = u32_at(self.bytes, 8 + 4 * 16).unwrap_or(0) as usize;
        let stored = self
            .bytes
            .get(DIGEST_AT)
            .ok_or(ModelError::DigestMismatch)?;
        let content = self.bytes.get(..total).ok_or(ModelError::DigestMismatch)?;
        if total != self.bytes.len() {
            // Bytes after the end the header names: appended to, or cut and padded.
            return Err(ModelError::DigestMismatch);
        }
        if digest(content).as_slice() == stored {
            Ok(())
        } else {
            Err(ModelError::DigestMismatch)
        }
    }

    fn string(&self, (off, len): (u32, u32)) -> &'a str {
        let start = self.strings_off + off as usize;
        let end = start + len as usize;
        if end > self.strings_off + self.strings_len {
            return "";
        }
        self.bytes
            .get(start..end)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The model's name (set at training time, e.g. `demo-triage`).
    pub fn name(&self) -> &'a str {
        self.string(self.name)
    }

    /// How this model turns text into features.
    pub fn spec(&self) -> FeatureSpec {
        self.spec
    }

    /// Number of feature rows stored.
    pub fn rows(&self) -> u32 {
        self.n_rows
    }

    /// Weight storage type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn head_at(&self, i: usize) -> Result<Head<'a>, ModelError> {
        let base = self.heads_off + i * HEAD_LEN;
        let f =
            |k: usize| u32_at(self.bytes, base + 4 * k).ok_or(ModelError::Corrupt("head table"));
        Ok(Head {
            model: *self,
            index: i,
            name: (f(0)?, f(1)?),
            n_classes: f(2)? as usize,
            column: f(3)? as usize,
            temperature: f32::from_bits(f(4)?),
            bias_off: f(5)? as usize,
            labels_off: f(6)? as usize,
        })
    }

    /// The model's heads in stored order.
    pub fn heads(&self) -> impl Iterator<Item = Head<'a>> + '_ {
        (0..self.n_heads as usize).filter_map(|i| self.head_at(i).ok())
    }

    /// The head called `name`, if any.
    pub fn head(&self, name: &str) -> Option<Head<'a>> {
        self.heads().find(|h| h.name() == name)
    }

    /// This model reading its bucket index, row metadata and weights through `reader` (which
    /// must serve the same file) instead of from the slice it was parsed from.
    pub fn reading_rows_from(self, reader: &'a dyn RangeReader) -> Self {
        Self {
            reader: Some(Reader(reader)),
            ..self
        }
    }

    /// Bytes of one row's weights.
    fn row_len(&self) -> usize {
        self.stride as usize * self.dtype.bytes()
    }

    /// The row an index entry names, if it names one.
    fn row_in(&self, index_entry: Option<u32>) -> Option<u32> {
        index_entry.filter(|&row| row != NO_ROW && row < self.n_rows)
    }

    /// The bytes the offsets in `scratch.x` point into, given `scratch.rows` (a field, not
    /// the scratch, so `scratch.x` can be changed meanwhile).
    fn row_bytes<'s>(&'s self, rows: &'s [u8]) -> &'s [u8] {
        if self.reader.is_some() {
            rows
        } else {
            self.bytes
        }
    }

    /// Turns `text` into the model's TF-IDF vector, kept in `scratch` for [`Self::predict`]
    /// and [`Self::explain`]. Fails only when a [`RangeReader`] does.
    pub fn vectorize(
        &self,
        text: &str,
        scratch: &mut Scratch,
        explain: bool,
    ) -> Result<(), ModelError> {
        extract(text, &self.spec, scratch, explain);
        scratch.x.clear();
        let mut word = std::mem::take(&mut scratch.word);
        let mut chars = std::mem::take(&mut scratch.chars);
        let sublinear = self.spec.sublinear_tf;
        scratch.x.reserve(word.len() + chars.len());
        for (buckets, block) in [(&mut word, Block::Word), (&mut chars, Block::Char)] {
            for_each_count(buckets, |bucket, count| {
                scratch.x.push(Feature {
                    bucket,
                    block,
                    value: tf(count, sublinear),
                    meta: 0,
                    weights: 0,
                });
            });
        }
        scratch.word = word;
        scratch.chars = chars;
        match self.reader {
            Some(Reader(reader)) => self.locate_through(reader, scratch)?,
            None => self.locate(scratch),
        }
        let bytes = self.row_bytes(&scratch.rows);
        for f in &mut scratch.x {
            f.value *= f32_at(bytes, f.meta).unwrap_or(0.0);
        }
        // Each block is normalised on its own; the word features come first.
        let words = scratch.x.partition_point(|f| f.block == Block::Word);
        let (word, chars) = scratch.x.split_at_mut(words);
        for block in [word, chars] {
            let norm = block.iter().map(|f| f.value * f.value).sum::<f32>().sqrt();
            if norm > 0.0 {
                for f in block {
                    f.value /= norm;
                }
            }
        }
        Ok(())
    }

    /// Keeps the features whose bucket has a row, pointing at the row in `self.bytes`.
    fn locate(&self, scratch: &mut Scratch) {
        let row_len = self.row_len();
        scratch.x.retain_mut(|f| {
            let entry = u32_at(self.bytes, self.index_off + f.bucket as usize * 4);
            let Some(row) = self.row_in(entry) else {
                return false;
            };
            f.meta = self.rowmeta_off + row as usize * 8;
            f.weights = self.weights_off + row as usize * row_len;
            true
        });
    }

    /// [`Self::locate`] through `reader`: one read for the index entries of every bucket, one
    /// for the rows found, into `scratch.rows` (per row its metadata, then its weights).
    fn locate_through(
        &self,
        reader: &dyn RangeReader,
        scratch: &mut Scratch,
    ) -> Result<(), ModelError> {
        let short = |what: &str| ModelError::Read(format!("the answer for the {what} is short"));
        scratch.offsets.clear();
        scratch.offsets.extend(
            scratch
                .x
                .iter()
                .map(|f| (self.index_off + f.bucket as usize * 4) as u64),
        );
        scratch.lengths.clear();
        scratch.lengths.resize(scratch.x.len(), 4);
        let entries = reader
            .read(&scratch.offsets, &scratch.lengths)
            .map_err(ModelError::Read)?;
        if entries.len() != scratch.x.len() * 4 {
            return Err(short("bucket index"));
        }
        let row_len = self.row_len();
        let mut i = 0;
        scratch.offsets.clear();
        scratch.lengths.clear();
        let mut at = 0;
        scratch.x.retain_mut(|f| {
            let row = self.row_in(u32_at(&entries, i * 4));
            i += 1;
            let Some(row) = row else {
                return false;
            };
            // Per row its (idf, scale) pair, then its weights.
            scratch
                .offsets
                .push((self.rowmeta_off + row as usize * 8) as u64);
            scratch
                .offsets
                .push((self.weights_off + row as usize * row_len) as u64);
            scratch.lengths.push(8);
            scratch.lengths.push(row_len as u32);
            f.meta = at;
            f.weights = at + 8;
            at += 8 + row_len;
            true
        });
        scratch.rows = reader
            .read(&scratch.offsets, &scratch.lengths)
            .map_err(ModelError::Read)?;
        if scratch.rows.len() != at {
            return Err(short("rows"));
        }
        Ok(())
    }

    /// Adds `feature`'s weights times its value to `acc` (all heads' columns).
    ///
    /// `acc` is [`LANES`]-padded: i8 rows are added a multiple of 16 columns long, reading past the
    /// row's end into whatever follows it (the next row, the strings) when there is
    /// something there; those columns land in the padding and are never read. Each column's
    /// arithmetic is the same either way, so the same bits. (With 77 classes, the 13
    /// columns after the last whole 16 cost more than the 64 before them one by one.)
    fn accumulate(&self, bytes: &[u8], feature: &Feature, acc: &mut [f32]) {
        let scale = f32_at(bytes, feature.meta + 4).unwrap_or(0.0);
        let row_len = self.row_len();
        let padded = row_len.next_multiple_of(LANES);
        match self.dtype {
            DType::I8 => {
                let v = feature.value * scale;
                if let Some(weights) = bytes.get(feature.weights..feature.weights + padded)
                    && let Some(acc) = acc.get_mut(..padded)
                {
                    for (a, &w) in acc.iter_mut().zip(weights) {
                        *a += v * f32::from(w as i8);
                    }
                    return;
                }
                let Some(weights) = bytes.get(feature.weights..feature.weights + row_len) else {
                    return;
                };
                for (a, &w) in acc.iter_mut().zip(weights) {
                    *a += v * f32::from(w as i8);
                }
            }
            DType::F32 => {
                let Some(weights) = bytes.get(feature.weights..feature.weights + row_len) else {
                    return;
                };
                for (a, w) in acc.iter_mut().zip(weights.chunks_exact(4)) {
                    *a += feature.value * f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                }
            }
        }
    }

    /// What `feature` adds to column `column`: the one term of [`Self::accumulate`] an
    /// explanation needs (the same arithmetic, so the same bits).
    fn contribution(&self, bytes: &[u8], feature: &Feature, column: usize) -> f32 {
        let scale = f32_at(bytes, feature.meta + 4).unwrap_or(0.0);
        let at = feature.weights + column * self.dtype.bytes();
        match self.dtype {
            DType::I8 => bytes
                .get(at)
                .map_or(0.0, |&w| feature.value * scale * f32::from(w as i8)),
            DType::F32 => f32_at(bytes, at).map_or(0.0, |w| feature.value * w),
        }
    }

    /// Logits of every head for the vector in `scratch` (one pass over the rows).
    fn logits(&self, scratch: &Scratch) -> Vec<f32> {
        let mut logits = vec![0.0; (self.stride as usize).next_multiple_of(LANES)];
        let bytes = self.row_bytes(&scratch.rows);
        for feature in &scratch.x {
            self.accumulate(bytes, feature, &mut logits);
        }
        logits
    }

    /// Predicts every head for the vector in `scratch` (call [`Self::vectorize`] first).
    pub fn predict(&self, scratch: &Scratch) -> Vec<Prediction> {
        let logits = self.logits(scratch);
        self.heads()
            .map(|head| {
                let mut raw: Vec<f32> = logits[head.column..head.column + head.n_classes].to_vec();
                for (c, l) in raw.iter_mut().enumerate() {
                    *l += f32_at(self.bytes, head.bias_off + 4 * c).unwrap_or(0.0);
                }
                let mut probabilities = vec![0.0; head.n_classes];
                softmax_into(&raw, head.temperature, &mut probabilities);
                let best = argmax(&probabilities);
                Prediction {
                    field: head.name().to_string(),
                    best,
                    label: head.label(best).to_string(),
                    confidence: probabilities.get(best).copied().unwrap_or(0.0),
                    probabilities,
                }
            })
            .collect()
    }

    /// The `k` features of `text` that pushed `head` towards `class` the most (call
    /// [`Self::vectorize`] with `explain = true` first).
    pub fn explain(
        &self,
        text: &str,
        scratch: &Scratch,
        head: &Head<'_>,
        class: usize,
        k: usize,
    ) -> Vec<Contribution> {
        self.explain_by(text, scratch, head, class, k, (2 * k).max(8))
    }

    /// [`Self::explain`], ranking `chunk` contributions at a time: the features in order of
    /// contribution (largest first; equal ones in the order of `scratch.x`) are what a stable
    /// sort of all of them gives, but only as many are put in order as it takes to find `k`
    /// different texts — usually the first few of dozens.
    fn explain_by(
        &self,
        text: &str,
        scratch: &Scratch,
        head: &Head<'_>,
        class: usize,
        k: usize,
        chunk: usize,
    ) -> Vec<Contribution> {
        let stride = self.stride as usize;
        let column = head.column + class;
        if column >= stride {
            return Vec::new();
        }
        // (weight, position in x): weight descending, then position, is a total order, so
        // selecting and sorting by it needs no stable sort.
        let bytes = self.row_bytes(&scratch.rows);
        let mut scored: Vec<(f32, usize)> = Vec::new();
        for (at, feature) in scratch.x.iter().enumerate() {
            let weight = self.contribution(bytes, feature, column);
            if weight > 0.0 {
                scored.push((weight, at));
            }
        }
        let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let chunk = chunk.max(1);
        let mut out: Vec<Contribution> = Vec::new();
        let mut rest = scored.as_mut_slice();
        while !rest.is_empty() && out.len() < k {
            let take = chunk.min(rest.len());
            if take < rest.len() {
                rest.select_nth_unstable_by(take - 1, order);
            }
            let (head, tail) = rest.split_at_mut(take);
            head.sort_unstable_by(order);
            for &(weight, at) in head.iter() {
                if let Some(feature) = scratch.x.get(at) {
                    cite(text, scratch, feature, weight, &mut out);
                }
                if out.len() >= k {
                    break;
                }
            }
            rest = tail;
        }
        out
    }
}

/// Adds `feature`'s `weight` to `out` under the text it was first seen as (summed with a
/// feature of the same text already there); a feature without one is skipped.
fn cite(
    text: &str,
    scratch: &Scratch,
    feature: &Feature,
    weight: f32,
    out: &mut Vec<Contribution>,
) {
    let Some(text) = origin_text(text, scratch, feature) else {
        return;
    };
    match out.iter_mut().find(|c| c.text == text) {
        Some(existing) => existing.weight += weight,
        None => out.push(Contribution { text, weight }),
    }
}

fn origin_text(text: &str, scratch: &Scratch, feature: &Feature) -> Option<String> {
    let origin = scratch
        .origins
        .iter()
        .find(|o| o.block == feature.block && o.bucket == feature.bucket)?;
    let first = scratch.token_spans.get(origin.token as usize)?;
    let last = scratch
        .token_spans
        .get((origin.token + origin.tokens - 1) as usize)?;
    text.get(first.start..last.end).map(str::to_string)
}

impl<'a> Head<'a> {
    /// The field this head predicts (e.g. `category`).
    pub fn name(&self) -> &'a str {
        self.model.string(self.name)
    }

    /// Label of class `i` ("" if out of range).
    pub fn label(&self, i: usize) -> &'a str {
        if i >= self.n_classes {
            return "";
        }
        let at = self.labels_off + 8 * i;
        match (
            u32_at(self.model.bytes, at),
            u32_at(self.model.bytes, at + 4),
        ) {
            (Some(off), Some(len)) => self.model.string((off, len)),
            _ => "",
        }
    }

    /// All labels in class order.
    pub fn labels(&self) -> Vec<&'a str> {
        (0..self.n_classes).map(|i| self.label(i)).collect()
    }
}

fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// sha256 of a model file, with the digest field itself taken as zeros.
pub fn digest(file: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(file.get(..DIGEST_AT.start).unwrap_or(file));
    h.update([0u8; 32]);
    h.update(file.get(DIGEST_AT.end..).unwrap_or(&[]));
    h.finalize().into()
}

/// One head's definition for [`ModelWriter`].
#[derive(Clone, Debug, PartialEq)]
pub struct HeadSpec {
    /// Field name.
    pub name: String,
    /// Class labels.
    pub labels: Vec<String>,
    /// Per-class bias.
    pub bias: Vec<f32>,
    /// Softmax temperature.
    pub temperature: f32,
}

/// One feature row for [`ModelWriter`]: the bucket, its idf, and one weight per column (all
/// heads' classes in head order).
#[derive(Clone, Debug, PartialEq)]
pub struct RowSpec {
    /// Hash bucket.
    pub bucket: u32,
    /// Inverse document frequency.
    pub idf: f32,
    /// Weights, `sum of head classes` long.
    pub weights: Vec<f32>,
}

/// Serialises a model into the format above.
#[derive(Clone, Debug)]
pub struct ModelWriter {
    /// Name stored in the model.
    pub name: String,
    /// Feature settings.
    pub spec: FeatureSpec,
    /// Weight storage.
    pub dtype: DType,
    /// Heads in column order.
    pub heads: Vec<HeadSpec>,
    /// Rows (buckets must be distinct and below `2^buckets_log2`).
    pub rows: Vec<RowSpec>,
}

impl ModelWriter {
    /// The model bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let stride: usize = self.heads.iter().map(|h| h.labels.len()).sum();
        let buckets = 1usize << self.spec.buckets_log2;
        for row in &self.rows {
            if row.weights.len() != stride || row.bucket as usize >= buckets {
                return Err(ModelError::Corrupt("row does not fit the heads or buckets"));
            }
        }
        for head in &self.heads {
            if head.bias.len() != head.labels.len() {
                return Err(ModelError::Corrupt("bias length differs from labels"));
            }
        }

        let mut strings: Vec<u8> = Vec::new();
        let mut intern = |s: &str| -> (u32, u32) {
            let off = strings.len() as u32;
            strings.extend_from_slice(s.as_bytes());
            (off, s.len() as u32)
        };
        let name = intern(&self.name);
        let head_names: Vec<(u32, u32)> = self.heads.iter().map(|h| intern(&h.name)).collect();
        let head_labels: Vec<Vec<(u32, u32)>> = self
            .heads
            .iter()
            .map(|h| h.labels.iter().map(|l| intern(l)).collect())
            .collect();

        let align = |n: usize| n.div_ceil(16) * 16;
        let heads_off = HEADER_LEN;
        let mut cursor = heads_off + self.heads.len() * HEAD_LEN;
        let mut bias_offs = Vec::new();
        let mut label_offs = Vec::new();
        for h in &self.heads {
            bias_offs.push(cursor);
            cursor += h.labels.len() * 4;
            label_offs.push(cursor);
            cursor += h.labels.len() * 8;
        }
        let index_off = align(cursor);
        let rowmeta_off = align(index_off + buckets * 4);
        let weights_off = align(rowmeta_off + self.rows.len() * 8);
        let strings_off = align(weights_off + self.rows.len() * stride * self.dtype.bytes());
        let total = strings_off + strings.len();

        let mut out = vec![0u8; total];
        let put = |out: &mut Vec<u8>, at: usize, v: u32| {
            out[at..at + 4].copy_from_slice(&v.to_le_bytes())
        };
        out[..8].copy_from_slice(MAGIC);
        let header = [
            FORMAT_VERSION,
            self.spec.buckets_log2,
            self.rows.len() as u32,
            stride as u32,
            self.dtype.code(),
            self.heads.len() as u32,
            strings.len() as u32,
            self.spec.word_ngram_max,
            self.spec.char_ngram_min,
            self.spec.char_ngram_max,
            self.spec.max_tokens,
            heads_off as u32,
            index_off as u32,
            rowmeta_off as u32,
            weights_off as u32,
            strings_off as u32,
            total as u32,
            name.0,
            name.1,
        ];
        for (i, v) in header.iter().enumerate() {
            put(&mut out, 8 + 4 * i, *v);
        }

        let mut column = 0u32;
        for (i, h) in self.heads.iter().enumerate() {
            let base = heads_off + i * HEAD_LEN;
            let n = h.labels.len() as u32;
            for (k, v) in [
                head_names[i].0,
                head_names[i].1,
                n,
                column,
                h.temperature.to_bits(),
                bias_offs[i] as u32,
                label_offs[i] as u32,
            ]
            .iter()
            .enumerate()
            {
                put(&mut out, base + 4 * k, *v);
            }
            for (c, b) in h.bias.iter().enumerate() {
                put(&mut out, bias_offs[i] + 4 * c, b.to_bits());
            }
            for (c, (off, len)) in head_labels[i].iter().enumerate() {
                put(&mut out, label_offs[i] + 8 * c, *off);
                put(&mut out, label_offs[i] + 8 * c + 4, *len);
            }
            column += n;
        }

        for b in 0..buckets {
            put(&mut out, index_off + 4 * b, NO_ROW);
        }
        for (r, row) in self.rows.iter().enumerate() {
            if u32_at(&out, index_off + 4 * row.bucket as usize) != Some(NO_ROW) {
                return Err(ModelError::Corrupt("two rows for one bucket"));
            }
            put(&mut out, index_off + 4 * row.bucket as usize, r as u32);
            let max = row.weights.iter().fold(0.0f32, |m, w| m.max(w.abs()));
            let scale = match self.dtype {
                DType::I8 if max > 0.0 => max / 127.0,
                DType::I8 => 0.0,
                DType::F32 => 1.0,
            };
            put(&mut out, rowmeta_off + 8 * r, row.idf.to_bits());
            put(&mut out, rowmeta_off + 8 * r + 4, scale.to_bits());
            let base = weights_off + r * stride * self.dtype.bytes();
            for (c, w) in row.weights.iter().enumerate() {
                match self.dtype {
                    DType::F32 => put(&mut out, base + 4 * c, w.to_bits()),
                    DType::I8 => {
                        let q = if scale > 0.0 {
                            (w / scale).round().clamp(-127.0, 127.0)
                        } else {
                            0.0
                        };
                        out[base + c] = (q as i8) as u8;
                    }
                }
            }
        }
        out[strings_off..].copy_from_slice(&strings);
        put(
            &mut out,
            8 + 4 * 21,
            if self.spec.char_over_text {
                FLAG_CHAR_OVER_TEXT
            } else {
                0
            },
        );
        let sum = digest(&out);
        out[DIGEST_AT].copy_from_slice(&sum);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::extract;
    use pretty_assertions::assert_eq;

    /// A two-head model whose weights say: "refund" → billing, "password" → access.
    fn tiny(dtype: DType) -> Vec<u8> {
        let spec = FeatureSpec {
            buckets_log2: 12,
            char_ngram_max: 0,
            ..FeatureSpec::default()
        };
        let mut scratch = Scratch::default();
        let bucket_of = |word: &str, scratch: &mut Scratch| {
            extract(word, &spec, scratch, false);
            scratch.word[0]
        };
        let refund = bucket_of("refund", &mut scratch);
        let password = bucket_of("password", &mut scratch);
        ModelWriter {
            name: "tiny".into(),
            spec,
            dtype,
            heads: vec![
                HeadSpec {
                    name: "category".into(),
                    labels: vec!["billing".into(), "access".into()],
                    bias: vec![0.0, 0.0],
                    temperature: 1.0,
                },
                HeadSpec {
                    name: "priority".into(),
                    labels: vec!["low".into(), "high".into(), "urgent".into()],
                    bias: vec![0.5, 0.0, -0.5],
                    temperature: 2.0,
                },
            ],
            rows: vec![
                RowSpec {
                    bucket: refund,
                    idf: 1.0,
                    weights: vec![3.0, -3.0, 0.0, 1.0, 0.0],
                },
                RowSpec {
                    bucket: password,
                    idf: 2.0,
                    weights: vec![-2.0, 4.0, 0.0, 0.0, 2.0],
                },
            ],
        }
        .to_bytes()
        .expect("valid model")
    }

    /// A one-head model of `classes` classes with a row for every word and character n-gram
    /// of `words`, weights spread over both signs.
    fn wide(classes: usize, words: &str) -> Vec<u8> {
        let spec = FeatureSpec {
            buckets_log2: 12,
            ..FeatureSpec::default()
        };
        let mut scratch = Scratch::default();
        extract(words, &spec, &mut scratch, false);
        let mut buckets: Vec<u32> = scratch.word.iter().chain(&scratch.chars).copied().collect();
        buckets.sort_unstable();
        buckets.dedup();
        let rows = buckets
            .iter()
            .enumerate()
            .map(|(r, &bucket)| RowSpec {
                bucket,
                idf: 1.0 + r as f32 / 7.0,
                weights: (0..classes)
                    .map(|c| ((r * 31 + c * 17) % 23) as f32 / 3.0 - 3.5)
                    .collect(),
            })
            .collect();
        ModelWriter {
            name: "wide".into(),
            spec,
            dtype: DType::I8,
            heads: vec![HeadSpec {
                name: "intent".into(),
                labels: (0..classes).map(|c| format!("c{c}")).collect(),
                bias: vec![0.0; classes],
                temperature: 1.0,
            }],
            rows,
        }
        .to_bytes()
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sixteen_columns_at_a_time_give_the_bits_of_one_at_a_time() {
        let words = "refund my card payment please, the transfer failed twice";
        for classes in [1, 5, 16, 17, 21, 77] {
            let bytes = wide(classes, words);
            let Ok(model) = Model::parse(&bytes) else {
                panic!("parses")
            };
            let reader = SliceReader::new(&bytes, 0);
            for model in [model, model.reading_rows_from(&reader)] {
                let mut scratch = Scratch::default();
                assert_eq!(model.vectorize(words, &mut scratch, false), Ok(()));
                assert!(scratch.x.len() > 20);
                let bytes = model.row_bytes(&scratch.rows);
                let mut want = vec![0.0f32; classes];
                for f in &scratch.x {
                    let scale = f32_at(bytes, f.meta + 4).unwrap_or(f32::NAN);
                    for (c, w) in want.iter_mut().enumerate() {
                        *w += f.value * scale * f32::from(bytes[f.weights + c] as i8);
                    }
                }
                let got = model.logits(&scratch);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got[..classes]), bits(&want), "{classes} classes");
            }
        }
    }

    #[test]
    #[allow(clippy::expect_used)]
    fn round_trip_predicts_and_explains() {
        for dtype in [DType::F32, DType::I8] {
            let bytes = tiny(dtype);
            let model = Model::parse(&bytes).expect("parses");
            model.verify_digest().expect("digest");
            assert_eq!(model.name(), "tiny");
            assert_eq!(
                model
                    .heads()
                    .map(|h| h.name().to_string())
                    .collect::<Vec<_>>(),
                vec!["category", "priority"]
            );
            let mut scratch = Scratch::default();
            let text = "I forgot my PASSWORD again";
            model
                .vectorize(text, &mut scratch, true)
                .expect("vectorizes");
            let predictions = model.predict(&scratch);
            assert_eq!(predictions[0].label, "access");
            assert_eq!(predictions[1].label, "urgent");
            let sum: f32 = predictions[1].probabilities.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5);
            let head = model.head("category").expect("head");
            let why = model.explain(text, &scratch, &head, 1, 3);
            assert_eq!(
                why[0].text, "PASSWORD",
                "explanations quote the original text"
            );
        }
    }

    /// The explanation as first written: every contribution stably sorted, then walked (the
    /// ordering is what is under test; citing is shared).
    fn explain_sorting_all(
        model: &Model<'_>,
        text: &str,
        scratch: &Scratch,
        head: &Head<'_>,
        class: usize,
        k: usize,
    ) -> Vec<Contribution> {
        let column = head.column + class;
        let bytes = model.row_bytes(&scratch.rows);
        let mut scored: Vec<(f32, &Feature)> = Vec::new();
        for feature in &scratch.x {
            let weight = model.contribution(bytes, feature, column);
            if weight > 0.0 {
                scored.push((weight, feature));
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut out: Vec<Contribution> = Vec::new();
        for (weight, feature) in scored {
            cite(text, scratch, feature, weight, &mut out);
            if out.len() >= k {
                break;
            }
        }
        out
    }

    #[test]
    #[allow(clippy::expect_used)]
    fn explaining_a_few_at_a_time_gives_what_sorting_all_gives() {
        let texts = [
            "I forgot my PASSWORD again",
            "password password reset login access locked out of my account",
            "refund the invoice, billing charged twice, refund refund",
            "urgent outage: nothing works, access denied, password rejected, invoice missing",
            "",
        ];
        for dtype in [DType::F32, DType::I8] {
            let bytes = tiny(dtype);
            let model = Model::parse(&bytes).expect("parses");
            let mut scratch = Scratch::default();
            for text in texts {
                model
                    .vectorize(text, &mut scratch, true)
                    .expect("vectorizes");
                for head in model.heads() {
                    for class in 0..head.n_classes {
                        for k in [1, 2, 3, 5, 50] {
                            let want = explain_sorting_all(&model, text, &scratch, &head, class, k);
                            for chunk in [1, 2, 3, 8, 1000] {
                                let got = model.explain_by(text, &scratch, &head, class, k, chunk);
                                assert_eq!(got.len(), want.len(), "{text} {class} {k} {chunk}");
                                for (g, w) in got.iter().zip(&want) {
                                    assert_eq!(g.text, w.text, "{text} {class} {k} {chunk}");
                                    assert_eq!(g.weight.to_bits(), w.weight.to_bits());
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Serves ranges of `bytes`, counting the reads; `cut` drops that many bytes of every answer.
    struct SliceReader<'a> {
        bytes: &'a [u8],
        reads: std::cell::Cell<usize>,
        cut: usize,
    }

    impl<'a> SliceReader<'a> {
        fn new(bytes: &'a [u8], cut: usize) -> Self {
            Self {
                bytes,
                reads: std::cell::Cell::new(0),
                cut,
            }
        }
    }

    impl RangeReader for SliceReader<'_> {
        fn read(&self, offsets: &[u64], lengths: &[u32]) -> Result<Vec<u8>, String> {
            self.reads.set(self.reads.get() + 1);
            assert_eq!(offsets.len(), lengths.len());
            let mut out = Vec::new();
            for (&offset, &length) in offsets.iter().zip(lengths) {
                let start = offset as usize;
                let range = self.bytes.get(start..start + length as usize);
                out.extend_from_slice(range.ok_or("outside the model")?);
            }
            out.truncate(out.len().saturating_sub(self.cut));
            Ok(out)
        }
    }

    #[test]
    #[allow(clippy::expect_used)]
    fn rows_read_through_a_reader_give_the_same_bits_and_leave_memory_untouched() {
        let texts = [
            "I forgot my PASSWORD again",
            "refund the invoice, billing charged twice, refund refund",
            "urgent outage: nothing works, access denied, password rejected, invoice missing",
            "completely unrelated",
            "",
        ];
        for dtype in [DType::F32, DType::I8] {
            let bytes = tiny(dtype);
            let model = Model::parse(&bytes).expect("parses");
            // The copy in memory has the index, row metadata and weights scrambled: results
            // equal to the clean model's show they were read only through the reader.
            let mut scrambled = bytes.clone();
            for (i, b) in scrambled[model.index_off..model.strings_off]
                .iter_mut()
                .enumerate()
            {
                *b = (i as u8).wrapping_mul(31) ^ 0x5a;
            }
            let reader = SliceReader::new(&bytes, 0);
            let remote = Model::parse(&scrambled)
                .expect("the header still parses")
                .reading_rows_from(&reader);
            let (mut here, mut there) = (Scratch::default(), Scratch::default());
            for text in texts {
                let reads = reader.reads.get();
                model.vectorize(text, &mut here, true).expect("vectorizes");
                remote
                    .vectorize(text, &mut there, true)
                    .expect("vectorizes");
                assert_eq!(
                    reader.reads.get() - reads,
                    2,
                    "{text}: one read for the index, one for the rows"
                );
                let (p, q) = (model.predict(&here), remote.predict(&there));
                assert_eq!(p.len(), q.len());
                for (p, q) in p.iter().zip(&q) {
                    assert_eq!(p.label, q.label, "{text}");
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&p.probabilities), bits(&q.probabilities), "{text}");
                }
                for head in model.heads() {
                    for class in 0..head.n_classes {
                        let a = model.explain(text, &here, &head, class, 3);
                        let b = remote.explain(text, &there, &head, class, 3);
                        assert_eq!(a, b, "{text}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_reader_that_fails_or_answers_short_is_an_error() {
        struct Refusing;
        impl RangeReader for Refusing {
            fn read(&self, _: &[u64], _: &[u32]) -> Result<Vec<u8>, String> {
                Err("the host said no".into())
            }
        }
        let bytes = tiny(DType::I8);
        let Ok(model) = Model::parse(&bytes) else {
            panic!("parses")
        };
        let mut scratch = Scratch::default();
        let refusing = model.reading_rows_from(&Refusing);
        assert_eq!(
            refusing.vectorize("password", &mut scratch, false),
            Err(ModelError::Read("the host said no".into()))
        );
        let short = SliceReader::new(&bytes, 1);
        let error = model
            .reading_rows_from(&short)
            .vectorize("password", &mut scratch, false)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("cannot read the model's rows: the answer for the bucket index is short")
        );
    }

    #[test]
    fn unknown_words_give_the_prior() {
        let bytes = tiny(DType::F32);
        let Ok(model) = Model::parse(&bytes) else {
            panic!("parses")
        };
        let mut scratch = Scratch::default();
        assert_eq!(
            model.vectorize("completely unrelated", &mut scratch, false),
            Ok(())
        );
        let p = model.predict(&scratch);
        assert_eq!(p[0].probabilities, vec![0.5, 0.5]);
    }

    #[test]
    fn corruption_is_detected() {
        let mut bytes = tiny(DType::I8);
        assert_eq!(Model::parse(b"nope").err(), Some(ModelError::NotAModel));
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let Ok(model) = Model::parse(&bytes) else {
            panic!("header still parses")
        };
        assert_eq!(model.verify_digest(), Err(ModelError::DigestMismatch));
        // Flipping the sign of a weight (what a tampered model does) is caught as well.
        let mut flipped = tiny(DType::F32);
        let Ok(clean) = Model::parse(&flipped) else {
            panic!("parses")
        };
        let at = clean.weights_off + 3;
        flipped[at] ^= 0x80;
        let Ok(model) = Model::parse(&flipped) else {
            panic!("header still parses")
        };
        assert_eq!(model.verify_digest(), Err(ModelError::DigestMismatch));
        let truncated = &bytes[..bytes.len() / 2];
        assert!(matches!(
            Model::parse(truncated),
            Err(ModelError::Corrupt(_))
        ));
    }
}
