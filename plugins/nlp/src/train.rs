//! Training the triage classifier (native only, behind the `train` feature).
//!
//! Multinomial logistic regression per head on the TF-IDF vectors of [`crate::model`]:
//! mini-batch Adam with L2 regularisation, lazy updates of the rows a batch touches, early
//! stopping on held-out loss, then temperature scaling on the held-out set so confidences
//! are calibrated. Deterministic for a given seed.

use crate::detmath;
use crate::features::{Block, FeatureSpec, Scratch, extract, for_each_count, sublinear_tf};
use crate::model::{DType, HeadSpec, ModelError, ModelWriter, RowSpec};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One labeled text.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// The text to classify (subject and body joined).
    pub text: String,
    /// Field → label. Fields may be missing (that head learns nothing from this example).
    pub labels: BTreeMap<String, String>,
}

/// Training settings.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Model name stored in the file.
    pub name: String,
    /// Fields to learn, one head each, in this order.
    pub fields: Vec<String>,
    /// Feature settings.
    pub spec: FeatureSpec,
    /// Weight storage.
    pub dtype: DType,
    /// Inverse regularisation strength, as scikit-learn's `C`.
    pub c: f32,
    /// Passes over the data at most.
    pub epochs: u32,
    /// Examples per update.
    pub batch_size: usize,
    /// Adam step size.
    pub learning_rate: f32,
    /// Features seen in fewer documents are dropped.
    pub min_df: u32,
    /// Shuffling seed.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            name: "triage".into(),
            fields: vec!["category".into()],
            spec: FeatureSpec::default(),
            dtype: DType::I8,
            c: 10.0,
            epochs: 30,
            batch_size: 32,
            learning_rate: 0.01,
            min_df: 1,
            seed: 7,
        }
    }
}

/// What training produced, besides the model bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// Examples used for fitting.
    pub train_examples: usize,
    /// Examples held out (early stopping and calibration).
    pub heldout_examples: usize,
    /// Feature rows in the model.
    pub rows: usize,
    /// Epochs run before early stopping.
    pub epochs_run: u32,
    /// Per head: field, classes, held-out accuracy, fitted temperature.
    pub heads: Vec<HeadReport>,
}

/// Per-head training outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadReport {
    /// Field name.
    pub field: String,
    /// Class labels.
    pub labels: Vec<String>,
    /// Labeled training examples for this field.
    pub examples: usize,
    /// Accuracy on the held-out examples (NaN when there are none).
    pub heldout_accuracy: f32,
    /// Softmax temperature fitted on the held-out examples.
    pub temperature: f32,
}

/// Why training could not run.
#[derive(Debug)]
pub enum TrainError {
    /// No examples, or none carry a requested field.
    NoData(String),
    /// The result could not be serialised.
    Model(ModelError),
}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainError::NoData(why) => write!(f, "{why}"),
            TrainError::Model(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TrainError {}

type Sparse = Vec<(u32, f32)>;

struct Vocabulary {
    /// bucket → row
    rows: HashMap<u32, u32>,
    buckets: Vec<u32>,
    idf: Vec<f32>,
}

fn doc_counts(text: &str, spec: &FeatureSpec, scratch: &mut Scratch) -> [Vec<(u32, u32)>; 2] {
    extract(text, spec, scratch, false);
    let mut out = [Vec::new(), Vec::new()];
    let mut word = std::mem::take(&mut scratch.word);
    let mut chars = std::mem::take(&mut scratch.chars);
    for_each_count(&mut word, |b, c| out[Block::Word as usize].push((b, c)));
    for_each_count(&mut chars, |b, c| out[Block::Char as usize].push((b, c)));
    scratch.word = word;
    scratch.chars = chars;
    out
}

fn build_vocabulary(docs: &[[Vec<(u32, u32)>; 2]], min_df: u32) -> Vocabulary {
    let mut df: HashMap<u32, u32> = HashMap::new();
    for doc in docs {
        let mut seen = BTreeSet::new();
        for block in doc {
            for &(b, _) in block {
                seen.insert(b);
            }
        }
        for b in seen {
            *df.entry(b).or_default() += 1;
        }
    }
    let mut buckets: Vec<u32> = df
        .iter()
        .filter(|&(_, &d)| d >= min_df)
        .map(|(&b, _)| b)
        .collect();
    buckets.sort_unstable();
    let n = docs.len() as f64;
    let idf = buckets
        .iter()
        .map(|b| {
            let d = f64::from(df.get(b).copied().unwrap_or(0));
            (detmath::ln((1.0 + n) / (1.0 + d)) + 1.0) as f32
        })
        .collect();
    let rows = buckets
        .iter()
        .enumerate()
        .map(|(i, &b)| (b, i as u32))
        .collect();
    Vocabulary { rows, buckets, idf }
}

fn vectorize(doc: &[Vec<(u32, u32)>; 2], vocab: &Vocabulary) -> Sparse {
    let mut out = Vec::new();
    for block in doc {
        let start = out.len();
        for &(bucket, count) in block {
            if let Some(&row) = vocab.rows.get(&bucket) {
                out.push((row, sublinear_tf(count) * vocab.idf[row as usize]));
            }
        }
        let norm = out[start..].iter().map(|&(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            for e in &mut out[start..] {
                e.1 /= norm;
            }
        }
    }
    out
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

struct HeadLayout {
    field: String,
    labels: Vec<String>,
    column: usize,
}

/// Per-example target: for each head, the class index or None.
type Targets = Vec<Option<usize>>;

struct Params {
    stride: usize,
    w: Vec<f32>,
    b: Vec<f32>,
    // Adam moments
    mw: Vec<f32>,
    vw: Vec<f32>,
    mb: Vec<f32>,
    vb: Vec<f32>,
    // Step at which each row was last updated (lazy regularisation/decay bookkeeping).
    step: u64,
}

impl Params {
    fn logits(&self, x: &Sparse, out: &mut [f32]) {
        out.copy_from_slice(&self.b);
        for &(row, v) in x {
            let w = &self.w[row as usize * self.stride..(row as usize + 1) * self.stride];
            for (o, wi) in out.iter_mut().zip(w) {
                *o += v * wi;
            }
        }
    }
}

fn softmax(z: &[f32], t: f32, out: &mut [f32]) {
    detmath::softmax_into(z, t, out);
}

/// Trains a model on `train`; `heldout` (possibly empty: then 10% of `train` is held out)
/// drives early stopping and calibration. Returns the model bytes and a report.
pub fn train(
    config: &TrainConfig,
    train: &[Example],
    heldout: &[Example],
) -> Result<(Vec<u8>, TrainReport), TrainError> {
    if train.is_empty() {
        return Err(TrainError::NoData("no training examples".into()));
    }
    let (train, heldout): (Vec<&Example>, Vec<&Example>) = if heldout.is_empty() {
        let mut order: Vec<&Example> = train.iter().collect();
        Rng(config.seed ^ 0x9e37_79b9_7f4a_7c15).shuffle(&mut order);
        let cut = if order.len() >= 20 {
            order.len() - order.len() / 10
        } else {
            order.len()
        };
        let held = order.split_off(cut);
        (order, held)
    } else {
        (train.iter().collect(), heldout.iter().collect())
    };

    // Heads: labels sorted for a stable layout.
    let mut heads = Vec::new();
    let mut column = 0;
    for field in &config.fields {
        let labels: BTreeSet<&str> = train
            .iter()
            .filter_map(|e| e.labels.get(field).map(String::as_str))
            .collect();
        if labels.is_empty() {
            return Err(TrainError::NoData(format!(
                "no training example has a label for field `{field}`; check the field name (labels present: {})",
                present_fields(&train)
            )));
        }
        let labels: Vec<String> = labels.into_iter().map(str::to_string).collect();
        let n = labels.len();
        heads.push(HeadLayout {
            field: field.clone(),
            labels,
            column,
        });
        column += n;
    }
    let stride = column;
    let targets = |e: &Example| -> Targets {
        heads
            .iter()
            .map(|h| {
                e.labels
                    .get(&h.field)
                    .and_then(|l| h.labels.iter().position(|x| x == l))
            })
            .collect()
    };

    let mut scratch = Scratch::default();
    let train_counts: Vec<_> = train
        .iter()
        .map(|e| doc_counts(&e.text, &config.spec, &mut scratch))
        .collect();
    let vocab = build_vocabulary(&train_counts, config.min_df.max(1));
    let train_x: Vec<Sparse> = train_counts.iter().map(|d| vectorize(d, &vocab)).collect();
    let train_y: Vec<Targets> = train.iter().map(|e| targets(e)).collect();
    let held_x: Vec<Sparse> = heldout
        .iter()
        .map(|e| vectorize(&doc_counts(&e.text, &config.spec, &mut scratch), &vocab))
        .collect();
    let held_y: Vec<Targets> = heldout.iter().map(|e| targets(e)).collect();

    let n_rows = vocab.buckets.len();
    let mut p = Params {
        stride,
        w: vec![0.0; n_rows * stride],
        b: vec![0.0; stride],
        mw: vec![0.0; n_rows * stride],
        vw: vec![0.0; n_rows * stride],
        mb: vec![0.0; stride],
        vb: vec![0.0; stride],
        step: 0,
    };
    // Mean-loss objective: mean CE + alpha/2 |W|^2, alpha = 1 / (C * N) as in scikit-learn.
    let alpha = 1.0 / (config.c.max(1e-6) * train.len() as f32);
    let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut rng = Rng(config.seed | 1);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut grad_logits = vec![0.0f32; stride];
    let mut z = vec![0.0f32; stride];
    let mut probs = vec![0.0f32; stride];
    let mut touched: Vec<u32> = Vec::new();
    let mut slot_of: Vec<u32> = vec![u32::MAX; n_rows];
    let mut gw: Vec<f32> = Vec::new();
    let mut gb = vec![0.0f32; stride];

    let mut best = (f32::INFINITY, p.w.clone(), p.b.clone(), 0u32);
    let mut epochs_run = 0;
    let mut since_best = 0;
    for epoch in 0..config.epochs.max(1) {
        epochs_run = epoch + 1;
        rng.shuffle(&mut order);
        for batch in order.chunks(config.batch_size.max(1)) {
            touched.clear();
            gw.clear();
            gb.iter_mut().for_each(|g| *g = 0.0);
            for &i in batch {
                p.logits(&train_x[i], &mut z);
                grad_logits.iter_mut().for_each(|g| *g = 0.0);
                for (h, head) in heads.iter().enumerate() {
                    let Some(y) = train_y[i][h] else { continue };
                    let range = head.column..head.column + head.labels.len();
                    softmax(&z[range.clone()], 1.0, &mut probs[range.clone()]);
                    for c in range.clone() {
                        grad_logits[c] = probs[c];
                    }
                    grad_logits[head.column + y] -= 1.0;
                }
                for (g, d) in gb.iter_mut().zip(&grad_logits) {
                    *g += d;
                }
                for &(row, v) in &train_x[i] {
                    let slot = if slot_of[row as usize] == u32::MAX {
                        slot_of[row as usize] = touched.len() as u32;
                        touched.push(row);
                        gw.extend(std::iter::repeat_n(0.0, stride));
                        touched.len() - 1
                    } else {
                        slot_of[row as usize] as usize
                    };
                    let g = &mut gw[slot * stride..(slot + 1) * stride];
                    for (gi, d) in g.iter_mut().zip(&grad_logits) {
                        *gi += v * d;
                    }
                }
            }
            p.step += 1;
            let t = p.step as i32;
            let lr = config.learning_rate * (1.0 - beta2.powi(t)).sqrt() / (1.0 - beta1.powi(t));
            let scale = 1.0 / batch.len() as f32;
            for (slot, &row) in touched.iter().enumerate() {
                let base = row as usize * stride;
                for c in 0..stride {
                    let k = base + c;
                    let g = gw[slot * stride + c] * scale + alpha * p.w[k];
                    p.mw[k] = beta1 * p.mw[k] + (1.0 - beta1) * g;
                    p.vw[k] = beta2 * p.vw[k] + (1.0 - beta2) * g * g;
                    p.w[k] -= lr * p.mw[k] / (p.vw[k].sqrt() + eps);
                }
                slot_of[row as usize] = u32::MAX;
            }
            let bias = gb
                .iter()
                .zip(p.mb.iter_mut())
                .zip(p.vb.iter_mut())
                .zip(p.b.iter_mut());
            for (((g, m), v), b) in bias {
                let g = g * scale;
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                *b -= lr * *m / (v.sqrt() + eps);
            }
        }
        if held_x.is_empty() {
            continue;
        }
        // Select on held-out accuracy (loss, lower is better, breaks ties): with weak
        // regularisation the loss rises from over-confidence while accuracy still improves,
        // and temperature scaling repairs the confidence afterwards.
        let accuracy: f32 = heads
            .iter()
            .enumerate()
            .map(|(h, head)| heldout_accuracy(&p, head, h, &held_x, &held_y))
            .filter(|a| !a.is_nan())
            .sum();
        let loss = heldout_loss(&p, &heads, &held_x, &held_y, None);
        let score = -accuracy + 1e-3 * loss;
        if score < best.0 - 1e-5 {
            best = (score, p.w.clone(), p.b.clone(), epochs_run);
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= 3 {
                break;
            }
        }
    }
    if !held_x.is_empty() {
        p.w = best.1;
        p.b = best.2;
        epochs_run = best.3;
    }

    // Temperature per head on the held-out set.
    let mut head_specs = Vec::new();
    let mut reports = Vec::new();
    for (h, head) in heads.iter().enumerate() {
        let temperature = if held_x.is_empty() {
            1.0
        } else {
            fit_temperature(&p, head, h, &held_x, &held_y)
        };
        let accuracy = heldout_accuracy(&p, head, h, &held_x, &held_y);
        let range = head.column..head.column + head.labels.len();
        head_specs.push(HeadSpec {
            name: head.field.clone(),
            labels: head.labels.clone(),
            bias: p.b[range].to_vec(),
            temperature,
        });
        reports.push(HeadReport {
            field: head.field.clone(),
            labels: head.labels.clone(),
            examples: train_y.iter().filter(|t| t[h].is_some()).count(),
            heldout_accuracy: accuracy,
            temperature,
        });
    }

    let rows = vocab
        .buckets
        .iter()
        .enumerate()
        .map(|(r, &bucket)| RowSpec {
            bucket,
            idf: vocab.idf[r],
            weights: p.w[r * stride..(r + 1) * stride].to_vec(),
        })
        .collect();
    let writer = ModelWriter {
        name: config.name.clone(),
        spec: config.spec,
        dtype: config.dtype,
        heads: head_specs,
        rows,
    };
    let bytes = writer.to_bytes().map_err(TrainError::Model)?;
    Ok((
        bytes,
        TrainReport {
            train_examples: train.len(),
            heldout_examples: heldout.len(),
            rows: n_rows,
            epochs_run,
            heads: reports,
        },
    ))
}

fn present_fields(examples: &[&Example]) -> String {
    let fields: BTreeSet<&str> = examples
        .iter()
        .flat_map(|e| e.labels.keys().map(String::as_str))
        .collect();
    if fields.is_empty() {
        "none".into()
    } else {
        fields.into_iter().collect::<Vec<_>>().join(", ")
    }
}

fn heldout_loss(
    p: &Params,
    heads: &[HeadLayout],
    xs: &[Sparse],
    ys: &[Targets],
    temps: Option<&[f32]>,
) -> f32 {
    let mut z = vec![0.0; p.stride];
    let mut probs = vec![0.0; p.stride];
    let mut total = 0.0f64;
    let mut n = 0usize;
    for (x, y) in xs.iter().zip(ys) {
        p.logits(x, &mut z);
        for (h, head) in heads.iter().enumerate() {
            let Some(target) = y[h] else { continue };
            let range = head.column..head.column + head.labels.len();
            let t = temps.map_or(1.0, |t| t[h]);
            softmax(&z[range.clone()], t, &mut probs[range.clone()]);
            total -= f64::from(probs[head.column + target].max(1e-12)).ln();
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        (total / n as f64) as f32
    }
}

fn head_nll(p: &Params, head: &HeadLayout, h: usize, xs: &[Sparse], ys: &[Targets], t: f32) -> f64 {
    let mut z = vec![0.0; p.stride];
    let mut probs = vec![0.0; head.labels.len()];
    let mut total = 0.0;
    for (x, y) in xs.iter().zip(ys) {
        let Some(target) = y[h] else { continue };
        p.logits(x, &mut z);
        softmax(
            &z[head.column..head.column + head.labels.len()],
            t,
            &mut probs,
        );
        total -= f64::from(probs[target].max(1e-12)).ln();
    }
    total
}

/// Golden-section search of log-temperature in [-3, 3] minimising held-out NLL.
fn fit_temperature(p: &Params, head: &HeadLayout, h: usize, xs: &[Sparse], ys: &[Targets]) -> f32 {
    if !ys.iter().any(|y| y[h].is_some()) {
        return 1.0;
    }
    let f = |log_t: f64| head_nll(p, head, h, xs, ys, log_t.exp() as f32);
    let (mut a, mut b) = (-3.0f64, 3.0f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - g * (b - a);
    let mut d = a + g * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..40 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    (((a + b) / 2.0).exp()) as f32
}

fn heldout_accuracy(p: &Params, head: &HeadLayout, h: usize, xs: &[Sparse], ys: &[Targets]) -> f32 {
    let mut z = vec![0.0; p.stride];
    let (mut right, mut n) = (0usize, 0usize);
    for (x, y) in xs.iter().zip(ys) {
        let Some(target) = y[h] else { continue };
        p.logits(x, &mut z);
        let slice = &z[head.column..head.column + head.labels.len()];
        let best = (0..slice.len()).fold(0, |b, i| if slice[i] > slice[b] { i } else { b });
        right += usize::from(best == target);
        n += 1;
    }
    if n == 0 {
        f32::NAN
    } else {
        right as f32 / n as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;

    fn ex(text: &str, category: &str, priority: Option<&str>) -> Example {
        let mut labels = BTreeMap::new();
        labels.insert("category".to_string(), category.to_string());
        if let Some(p) = priority {
            labels.insert("priority".to_string(), p.to_string());
        }
        Example {
            text: text.to_string(),
            labels,
        }
    }

    fn corpus() -> Vec<Example> {
        let mut v = Vec::new();
        for i in 0..30 {
            v.push(ex(
                &format!("I want a refund for invoice {i}, I was charged twice"),
                "billing",
                Some("medium"),
            ));
            v.push(ex(
                &format!("cannot log in, password reset link {i} does not work"),
                "access",
                Some("high"),
            ));
            v.push(ex(
                &format!("the app crashes when I open report {i}, error on screen"),
                "bug",
                None,
            ));
        }
        v
    }

    #[test]
    fn learns_separable_data_and_predicts_through_the_file_format() {
        let config = TrainConfig {
            fields: vec!["category".into(), "priority".into()],
            epochs: 20,
            ..TrainConfig::default()
        };
        let Ok((bytes, report)) = train(&config, &corpus(), &[]) else {
            panic!("trains")
        };
        assert_eq!(report.heads[0].labels, vec!["access", "billing", "bug"]);
        assert_eq!(report.heads[0].heldout_accuracy, 1.0);
        assert_eq!(
            report.heads[1].examples, 54,
            "bug examples carry no priority"
        );
        let Ok(model) = Model::parse(&bytes) else {
            panic!("parses")
        };
        let mut scratch = Scratch::default();
        model.vectorize(
            "Please refund the double charge on my invoice",
            &mut scratch,
            false,
        );
        let p = model.predict(&mut scratch);
        assert_eq!(p[0].label, "billing");
        assert!(p[0].confidence > 0.5);
    }

    #[test]
    fn unknown_field_is_a_clear_error() {
        let config = TrainConfig {
            fields: vec!["queue".into()],
            ..TrainConfig::default()
        };
        let Err(e) = train(&config, &corpus(), &[]) else {
            panic!("must fail")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("`queue`") && msg.contains("category, priority"),
            "{msg}"
        );
    }
}
