//! `deskhost train`: fits the triage classifier on labeled tickets (JSON Lines with
//! `subject`, `body` and a `labels` object, the format of `../shared/data`) and writes the
//! model file the triage plugin loads.

use deskhost_nlp::train::{Example, TrainConfig, TrainReport, train};
use deskhost_nlp::{DType, FeatureSpec, Model};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Training errors; each names the file (and line) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a JSON object with the expected fields.
    #[error("{path}:{line}: {message}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Training itself failed.
    #[error("training on {path}: {message}")]
    Train {
        /// The training file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The text a ticket is classified on (shared with the guest SDK: no train/serve skew).
pub use deskhost_nlp::text::ticket_text;

/// Reads labeled examples for `fields` from `path`. Lines with none of the fields are
/// skipped and counted.
pub fn read_examples(path: &Path, fields: &[String]) -> Result<(Vec<Example>, usize), TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut examples = Vec::new();
    let mut skipped = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| TrainError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let subject = v.get("subject").and_then(|s| s.as_str()).unwrap_or("");
        let body = v.get("body").and_then(|s| s.as_str()).ok_or_else(|| {
            bad(
                "missing \"body\" (a string); each line needs subject/body and a labels object"
                    .into(),
            )
        })?;
        let labels_obj = v.get("labels").and_then(|l| l.as_object());
        let mut labels = BTreeMap::new();
        for f in fields {
            if let Some(value) = labels_obj.and_then(|l| l.get(f)).and_then(|x| x.as_str()) {
                labels.insert(f.clone(), value.to_string());
            }
        }
        if labels.is_empty() {
            skipped += 1;
            continue;
        }
        examples.push(Example {
            text: ticket_text(subject, body),
            labels,
        });
    }
    Ok((examples, skipped))
}

/// Options of `deskhost train`.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Labeled training files (read in order; a head learns from the lines that have its
    /// field).
    pub inputs: Vec<PathBuf>,
    /// Held-out file for early stopping and calibration (else 10% of the input).
    pub dev: Option<PathBuf>,
    /// Fields to learn.
    pub fields: Vec<String>,
    /// Where to write the model.
    pub out: PathBuf,
    /// Model name.
    pub name: String,
    /// log2 of the hash buckets.
    pub buckets_log2: u32,
    /// Max epochs.
    pub epochs: u32,
    /// Weight storage.
    pub dtype: DType,
    /// Inverse regularisation.
    pub c: f32,
    /// Class weighting exponent (0 none, 1 balanced).
    pub class_balance: f32,
    /// Character n-grams over the whole text instead of inside words.
    pub char_over_text: bool,
    /// Term frequency as `1 + ln(tf)` instead of raw counts.
    pub sublinear_tf: bool,
}

/// What training did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TrainSummary {
    /// Model file.
    pub out: PathBuf,
    /// Model bytes.
    pub bytes: usize,
    /// Examples skipped for lacking every field.
    pub skipped: usize,
    /// Seconds spent.
    pub seconds: f64,
    /// Trainer report.
    #[serde(skip)]
    pub report: TrainReport,
    /// sha256 of the model.
    pub sha256: String,
}

/// Trains and writes the model (atomically: a failed run leaves the old model in place).
pub fn run(opts: &TrainOptions) -> Result<TrainSummary, TrainError> {
    let started = Instant::now();
    let mut examples = Vec::new();
    let mut skipped = 0;
    for input in &opts.inputs {
        let (more, skip) = read_examples(input, &opts.fields)?;
        examples.extend(more);
        skipped += skip;
    }
    let first_input = opts.inputs.first().cloned().unwrap_or_default();
    let heldout = match &opts.dev {
        Some(dev) => read_examples(dev, &opts.fields)?.0,
        None => Vec::new(),
    };
    let config = TrainConfig {
        name: opts.name.clone(),
        fields: opts.fields.clone(),
        spec: FeatureSpec {
            buckets_log2: opts.buckets_log2,
            ..FeatureSpec::default()
        },
        dtype: opts.dtype,
        c: opts.c,
        class_balance: opts.class_balance,
        epochs: opts.epochs,
        ..TrainConfig::default()
    };
    let (bytes, report) = train(&config, &examples, &heldout).map_err(|e| TrainError::Train {
        path: first_input.clone(),
        message: e.to_string(),
    })?;
    // Belt and braces: the file we write must load.
    Model::parse(&bytes)
        .and_then(|m| m.verify_digest())
        .map_err(|e| TrainError::Train {
            path: first_input.clone(),
            message: e.to_string(),
        })?;
    if let Some(parent) = opts.out.parent() {
        std::fs::create_dir_all(parent).map_err(|source| TrainError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let tmp = opts.out.with_extension("tmp");
    std::fs::write(&tmp, &bytes).map_err(|source| TrainError::Io {
        path: tmp.clone(),
        source,
    })?;
    // What landed on disk must be what was trained: read it back and check its digest
    // before it replaces the old model.
    let written = std::fs::read(&tmp).map_err(|source| TrainError::Io {
        path: tmp.clone(),
        source,
    })?;
    if let Err(e) = Model::parse(&written).and_then(|m| m.verify_digest()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(TrainError::Train {
            path: opts.out.clone(),
            message: format!("the written model does not read back: {e}"),
        });
    }
    std::fs::rename(&tmp, &opts.out).map_err(|source| TrainError::Io {
        path: opts.out.clone(),
        source,
    })?;
    Ok(TrainSummary {
        out: opts.out.clone(),
        bytes: bytes.len(),
        skipped,
        seconds: started.elapsed().as_secs_f64(),
        sha256: crate::util::sha256_hex(&bytes),
        report,
    })
}
