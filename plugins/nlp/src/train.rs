//! Training the triage classifier (native only, behind the `train` feature).
//!
//! Multinomial logistic regression per head on the TF-IDF vectors of [`crate::model`]:
//! mini-batch Adam with L2 regularisation, lazy updates of the rows a batch touches, early
//! stopping on held-out loss, then temperature scaling on the held-out set so confidences
//! are calibrated. Deterministic for a given seed.

use crate::detmath;
use crate::features::{Block, FeatureSpec, Scratch, extract, for_each_count, tf};
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
    /// Judge and keep the running average of the end-of-epoch weights (Polyak averaging).
    pub average_epochs: bool,
    /// Epochs without held-out improvement (on every field) before training stops.
    pub patience: u32,
    /// How the weights are fitted.
    pub optimizer: Optimizer,
    /// Class weighting: each example's loss is scaled by `(N / (K * n_class))^class_balance`
    /// (0 = none, 1 = fully balanced). Raises macro-F1 on skewed fields.
    pub class_balance: f32,
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
            class_balance: 0.0,
            average_epochs: false,
            patience: 3,
            optimizer: Optimizer::Lbfgs { iterations: 300 },
        }
    }
}

/// The optimiser.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// Mini-batch Adam with per-field early stopping on the held-out set.
    Adam,
    /// Full-batch L-BFGS to the optimum of the regularised objective (as scikit-learn's
    /// `LogisticRegression`), at most `iterations` steps; deterministic, no early stopping.
    Lbfgs {
        /// Iterations at most.
        iterations: u32,
    },
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
    /// Epochs of the longest-trained field.
    pub epochs_run: u32,
    /// Whether the model was refitted on all of the training data after early stopping.
    pub refitted: bool,
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

fn vectorize(doc: &[Vec<(u32, u32)>; 2], vocab: &Vocabulary, sublinear: bool) -> Sparse {
    let mut out = Vec::new();
    for block in doc {
        let start = out.len();
        for &(bucket, count) in block {
            if let Some(&row) = vocab.rows.get(&bucket) {
                out.push((row, tf(count, sublinear) * vocab.idf[row as usize]));
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
    /// Parameters without moments (for results and snapshots).
    fn empty(stride: usize) -> Params {
        Params {
            stride,
            w: Vec::new(),
            b: Vec::new(),
            mw: Vec::new(),
            vw: Vec::new(),
            mb: Vec::new(),
            vb: Vec::new(),
            step: 0,
        }
    }

    /// Copies one head's columns (all rows) and biases from `from`.
    fn copy_head(&mut self, from: &Params, column: usize, classes: usize, rows: usize) {
        for r in 0..rows {
            let base = r * self.stride + column;
            self.w[base..base + classes].copy_from_slice(&from.w[base..base + classes]);
        }
        self.b[column..column + classes].copy_from_slice(&from.b[column..column + classes]);
    }

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

/// Trains a model on `train`; `heldout` drives early stopping and calibration. When it is
/// empty, 10% of `train` is held out for that and, once the number of epochs per field is
/// known, the model is refitted on all of `train` (the temperatures from the held-out run
/// are kept). Returns the model bytes and a report.
pub fn train(
    config: &TrainConfig,
    train: &[Example],
    heldout: &[Example],
) -> Result<(Vec<u8>, TrainReport), TrainError> {
    if train.is_empty() {
        return Err(TrainError::NoData("no training examples".into()));
    }
    let carved = heldout.is_empty();
    let all: Vec<&Example> = train.iter().collect();
    let (fit_set, held_set): (Vec<&Example>, Vec<&Example>) = if carved {
        let mut order = all.clone();
        Rng(config.seed ^ 0x9e37_79b9_7f4a_7c15).shuffle(&mut order);
        let cut = if order.len() >= 20 {
            order.len() - order.len() / 10
        } else {
            order.len()
        };
        let held = order.split_off(cut);
        (order, held)
    } else {
        (all.clone(), heldout.iter().collect())
    };

    // Heads: labels sorted for a stable layout.
    let mut heads = Vec::new();
    let mut column = 0;
    for field in &config.fields {
        let labels: BTreeSet<&str> = all
            .iter()
            .filter_map(|e| e.labels.get(field).map(String::as_str))
            .collect();
        if labels.is_empty() {
            return Err(TrainError::NoData(format!(
                "no training example has a label for field `{field}`; check the field name (labels present: {})",
                present_fields(&all)
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

    // The vocabulary and idf come from every training text (labels are not used for them).
    let mut scratch = Scratch::default();
    let counts: Vec<_> = all
        .iter()
        .map(|e| doc_counts(&e.text, &config.spec, &mut scratch))
        .collect();
    let vocab = build_vocabulary(&counts, config.min_df.max(1));
    let vector_of = |e: &Example, scratch: &mut Scratch| {
        vectorize(
            &doc_counts(&e.text, &config.spec, scratch),
            &vocab,
            config.spec.sublinear_tf,
        )
    };
    let fit_x: Vec<Sparse> = fit_set.iter().map(|e| vector_of(e, &mut scratch)).collect();
    let fit_y: Vec<Targets> = fit_set.iter().map(|e| targets(e)).collect();
    let held_x: Vec<Sparse> = held_set
        .iter()
        .map(|e| vector_of(e, &mut scratch))
        .collect();
    let held_y: Vec<Targets> = held_set.iter().map(|e| targets(e)).collect();
    let class_weights: Vec<Vec<f32>> = heads
        .iter()
        .enumerate()
        .map(|(h, head)| {
            let mut n = vec![0usize; head.labels.len()];
            for y in fit_y.iter().filter_map(|t| t[h]) {
                n[y] += 1;
            }
            let total: usize = n.iter().sum();
            let k = head.labels.len() as f32;
            n.iter()
                .map(|&c| {
                    if c == 0 {
                        1.0
                    } else {
                        (total as f32 / (k * c as f32)).powf(config.class_balance)
                    }
                })
                .collect()
        })
        .collect();
    let trainer = Trainer {
        config,
        class_weights,
        heads: &heads,
        rows: vocab.buckets.len(),
        stride: column,
        alpha_n: all.len(),
    };

    let first = match config.optimizer {
        Optimizer::Adam => trainer.fit(&fit_x, &fit_y, Stop::EarlyOn(&held_x, &held_y)),
        Optimizer::Lbfgs { iterations } => trainer.lbfgs(&fit_x, &fit_y, iterations),
    };
    let temperatures: Vec<f32> = heads
        .iter()
        .enumerate()
        .map(|(h, head)| {
            if held_x.is_empty() {
                1.0
            } else {
                fit_temperature(&first.params, head, h, &held_x, &held_y)
            }
        })
        .collect();
    let accuracies: Vec<f32> = heads
        .iter()
        .enumerate()
        .map(|(h, head)| heldout_accuracy(&first.params, head, h, &held_x, &held_y))
        .collect();
    let (params, epochs) = if carved && !held_x.is_empty() {
        let all_x: Vec<Sparse> = all.iter().map(|e| vector_of(e, &mut scratch)).collect();
        let all_y: Vec<Targets> = all.iter().map(|e| targets(e)).collect();
        let refit = match config.optimizer {
            Optimizer::Adam => trainer.fit(&all_x, &all_y, Stop::After(&first.epochs)),
            Optimizer::Lbfgs { iterations } => trainer.lbfgs(&all_x, &all_y, iterations),
        };
        (refit.params, first.epochs)
    } else {
        (first.params, first.epochs)
    };

    let mut head_specs = Vec::new();
    let mut reports = Vec::new();
    for (h, head) in heads.iter().enumerate() {
        let range = head.column..head.column + head.labels.len();
        head_specs.push(HeadSpec {
            name: head.field.clone(),
            labels: head.labels.clone(),
            bias: params.b[range].to_vec(),
            temperature: temperatures[h],
        });
        reports.push(HeadReport {
            field: head.field.clone(),
            labels: head.labels.clone(),
            examples: all
                .iter()
                .filter(|e| e.labels.contains_key(&head.field))
                .count(),
            heldout_accuracy: accuracies[h],
            temperature: temperatures[h],
        });
    }
    let stride = column;
    let rows = vocab
        .buckets
        .iter()
        .enumerate()
        .map(|(r, &bucket)| RowSpec {
            bucket,
            idf: vocab.idf[r],
            weights: params.w[r * stride..(r + 1) * stride].to_vec(),
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
            train_examples: if carved { all.len() } else { fit_set.len() },
            heldout_examples: held_set.len(),
            rows: vocab.buckets.len(),
            epochs_run: epochs.iter().copied().max().unwrap_or(0),
            refitted: carved && !held_x.is_empty(),
            heads: reports,
        },
    ))
}

/// When a fit stops.
enum Stop<'a> {
    /// Keep each head's weights from its best held-out epoch; stop once no head improved
    /// for `TrainConfig::patience` epochs.
    EarlyOn(&'a [Sparse], &'a [Targets]),
    /// Run exactly this many epochs per head (a refit).
    After(&'a [u32]),
}

struct Fitted {
    params: Params,
    /// Epochs that produced each head's weights.
    epochs: Vec<u32>,
}

struct Trainer<'a> {
    config: &'a TrainConfig,
    /// Per head, the loss weight of each class.
    class_weights: Vec<Vec<f32>>,
    heads: &'a [HeadLayout],
    rows: usize,
    stride: usize,
    /// Examples the regularisation is scaled by.
    alpha_n: usize,
}

impl Trainer<'_> {
    /// Mini-batch Adam on the mean cross-entropy plus `alpha/2 |W|^2`, alpha = 1 / (C * N)
    /// as in scikit-learn; rows a batch does not touch are not updated (lazy Adam).
    fn fit(&self, xs: &[Sparse], ys: &[Targets], stop: Stop<'_>) -> Fitted {
        let (stride, config, heads) = (self.stride, self.config, self.heads);
        let mut p = Params {
            stride,
            w: vec![0.0; self.rows * stride],
            b: vec![0.0; stride],
            mw: vec![0.0; self.rows * stride],
            vw: vec![0.0; self.rows * stride],
            mb: vec![0.0; stride],
            vb: vec![0.0; stride],
            step: 0,
        };
        let alpha = 1.0 / (config.c.max(1e-6) * self.alpha_n.max(1) as f32);
        let (beta1, beta2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let mut rng = Rng(config.seed | 1);
        let mut order: Vec<usize> = (0..xs.len()).collect();
        let mut grad_logits = vec![0.0f32; stride];
        let mut z = vec![0.0f32; stride];
        let mut probs = vec![0.0f32; stride];
        let mut touched: Vec<u32> = Vec::new();
        let mut slot_of: Vec<u32> = vec![u32::MAX; self.rows];
        let mut gw: Vec<f32> = Vec::new();
        let mut gb = vec![0.0f32; stride];

        // Per head: best score, its epoch, epochs since, and the snapshot of its columns.
        let mut best_score = vec![f32::NEG_INFINITY; heads.len()];
        let mut best_epoch = vec![0u32; heads.len()];
        let mut since = vec![0u32; heads.len()];
        let mut averaged = Params {
            w: vec![0.0; self.rows * stride],
            b: vec![0.0; stride],
            ..Params::empty(stride)
        };
        let mut snapshot = Params {
            w: vec![0.0; self.rows * stride],
            b: vec![0.0; stride],
            ..Params::empty(stride)
        };
        let max_epochs = match &stop {
            Stop::EarlyOn(..) => config.epochs.max(1),
            Stop::After(epochs) => epochs.iter().copied().max().unwrap_or(1).max(1),
        };
        for epoch in 1..=max_epochs {
            rng.shuffle(&mut order);
            for batch in order.chunks(config.batch_size.max(1)) {
                touched.clear();
                gw.clear();
                gb.iter_mut().for_each(|g| *g = 0.0);
                for &i in batch {
                    p.logits(&xs[i], &mut z);
                    grad_logits.iter_mut().for_each(|g| *g = 0.0);
                    for (h, head) in heads.iter().enumerate() {
                        let Some(y) = ys[i][h] else { continue };
                        let range = head.column..head.column + head.labels.len();
                        softmax(&z[range.clone()], 1.0, &mut probs[range.clone()]);
                        for c in range.clone() {
                            grad_logits[c] = probs[c];
                        }
                        grad_logits[head.column + y] -= 1.0;
                        let weight = self.class_weights[h][y];
                        if weight != 1.0 {
                            for c in range {
                                grad_logits[c] *= weight;
                            }
                        }
                    }
                    for (g, d) in gb.iter_mut().zip(&grad_logits) {
                        *g += d;
                    }
                    for &(row, v) in &xs[i] {
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
                let lr =
                    config.learning_rate * (1.0 - beta2.powi(t)).sqrt() / (1.0 - beta1.powi(t));
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
            // Polyak averaging of the end-of-epoch weights: the average is what is judged and
            // kept, which takes most of the epoch-to-epoch noise out of early stopping.
            if self.config.average_epochs {
                let n = epoch as f32;
                for (a, w) in averaged.w.iter_mut().zip(&p.w) {
                    *a += (w - *a) / n;
                }
                for (a, b) in averaged.b.iter_mut().zip(&p.b) {
                    *a += (b - *a) / n;
                }
            }
            let judged = if self.config.average_epochs {
                &averaged
            } else {
                &p
            };
            let mut keep = vec![false; heads.len()];
            match &stop {
                Stop::EarlyOn(hx, hy) if !hx.is_empty() => {
                    for (h, head) in heads.iter().enumerate() {
                        // Held-out accuracy decides; a lower loss breaks ties. With weak
                        // regularisation the loss rises from over-confidence while accuracy
                        // still improves, and temperature scaling repairs confidence later.
                        let accuracy = heldout_accuracy(&p, head, h, hx, hy);
                        let loss =
                            head_nll(&p, head, h, hx, hy, 1.0) as f32 / hy.len().max(1) as f32;
                        let score = if accuracy.is_nan() { 0.0 } else { accuracy } - 1e-3 * loss;
                        if score > best_score[h] + 1e-5 {
                            best_score[h] = score;
                            keep[h] = true;
                            since[h] = 0;
                        } else {
                            since[h] += 1;
                        }
                    }
                }
                Stop::EarlyOn(..) => keep.iter_mut().for_each(|k| *k = true),
                Stop::After(epochs) => {
                    for (h, k) in keep.iter_mut().enumerate() {
                        *k = epochs[h] == epoch;
                    }
                }
            }
            for (h, head) in heads.iter().enumerate() {
                if keep[h] {
                    best_epoch[h] = epoch;
                    snapshot.copy_head(judged, head.column, head.labels.len(), self.rows);
                }
            }
            if matches!(stop, Stop::EarlyOn(hx, _) if !hx.is_empty())
                && since.iter().all(|&s| s >= self.config.patience.max(1))
            {
                break;
            }
        }
        Fitted {
            params: snapshot,
            epochs: best_epoch,
        }
    }
}

impl Trainer<'_> {
    /// Mean weighted cross-entropy plus `alpha/2 |W|^2` over `xs` and its gradient, for
    /// parameters `theta` = weights then biases. Two threads split the examples.
    fn objective(&self, theta: &[f32], xs: &[Sparse], ys: &[Targets]) -> (f64, Vec<f32>) {
        let (stride, rows) = (self.stride, self.rows);
        let n_w = rows * stride;
        let alpha = 1.0 / (self.config.c.max(1e-6) * self.alpha_n.max(1) as f32);
        let threads = 2usize;
        let chunk = xs.len().div_ceil(threads).max(1);
        let parts: Vec<(f64, Vec<f32>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = xs
                .chunks(chunk)
                .zip(ys.chunks(chunk))
                .map(|(xc, yc)| {
                    scope.spawn(move || {
                        let mut grad = vec![0.0f32; n_w + stride];
                        let mut loss = 0.0f64;
                        let mut z = vec![0.0f32; stride];
                        let mut probs = vec![0.0f32; stride];
                        let mut d = vec![0.0f32; stride];
                        for (x, y) in xc.iter().zip(yc) {
                            z.copy_from_slice(&theta[n_w..]);
                            for &(row, v) in x {
                                let w = &theta[row as usize * stride..(row as usize + 1) * stride];
                                for (o, wi) in z.iter_mut().zip(w) {
                                    *o += v * wi;
                                }
                            }
                            d.iter_mut().for_each(|v| *v = 0.0);
                            for (h, head) in self.heads.iter().enumerate() {
                                let Some(target) = y[h] else { continue };
                                let range = head.column..head.column + head.labels.len();
                                softmax(&z[range.clone()], 1.0, &mut probs[range.clone()]);
                                let weight = self.class_weights[h][target];
                                loss -= f64::from(weight)
                                    * f64::from(probs[head.column + target].max(1e-30)).ln();
                                for c in range {
                                    d[c] = weight * probs[c];
                                }
                                d[head.column + target] -= weight;
                            }
                            for (g, di) in grad[n_w..].iter_mut().zip(&d) {
                                *g += di;
                            }
                            for &(row, v) in x {
                                let g =
                                    &mut grad[row as usize * stride..(row as usize + 1) * stride];
                                for (gi, di) in g.iter_mut().zip(&d) {
                                    *gi += v * di;
                                }
                            }
                        }
                        (loss, grad)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let n = xs.len().max(1) as f32;
        let mut loss = 0.0f64;
        let mut grad = vec![0.0f32; n_w + stride];
        for (l, g) in parts {
            loss += l;
            for (a, b) in grad.iter_mut().zip(&g) {
                *a += b;
            }
        }
        loss /= f64::from(n);
        grad.iter_mut().for_each(|g| *g /= n);
        let mut reg = 0.0f64;
        for (g, w) in grad[..n_w].iter_mut().zip(&theta[..n_w]) {
            *g += alpha * w;
            reg += f64::from(w * w);
        }
        (loss + 0.5 * f64::from(alpha) * reg, grad)
    }

    /// L-BFGS (7 correction pairs, backtracking Armijo line search) from zero weights.
    fn lbfgs(&self, xs: &[Sparse], ys: &[Targets], iterations: u32) -> Fitted {
        const HISTORY: usize = 7;
        let dot = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum::<f64>()
        };
        let n = self.rows * self.stride + self.stride;
        let mut theta = vec![0.0f32; n];
        let (mut f, mut g) = self.objective(&theta, xs, ys);
        let mut history: std::collections::VecDeque<(Vec<f32>, Vec<f32>, f64)> =
            std::collections::VecDeque::new();
        let mut done = 0u32;
        let mut stalled = 0;
        for iteration in 1..=iterations.max(1) {
            done = iteration;
            // Two-loop recursion: d = -H g.
            let mut q: Vec<f64> = g.iter().map(|v| f64::from(*v)).collect();
            let mut alphas = Vec::with_capacity(history.len());
            for (sv, yv, rho) in history.iter().rev() {
                let a = rho
                    * sv.iter()
                        .zip(&q)
                        .map(|(s, q)| f64::from(*s) * q)
                        .sum::<f64>();
                for (qi, yi) in q.iter_mut().zip(yv) {
                    *qi -= a * f64::from(*yi);
                }
                alphas.push(a);
            }
            let gamma = match history.back() {
                Some((sv, yv, _)) => dot(sv, yv) / dot(yv, yv).max(1e-30),
                None => 1.0 / dot(&g, &g).sqrt().max(1e-12),
            };
            q.iter_mut().for_each(|v| *v *= gamma);
            for ((sv, yv, rho), a) in history.iter().zip(alphas.into_iter().rev()) {
                let b = rho
                    * yv.iter()
                        .zip(&q)
                        .map(|(y, q)| f64::from(*y) * q)
                        .sum::<f64>();
                for (qi, si) in q.iter_mut().zip(sv) {
                    *qi += (a - b) * f64::from(*si);
                }
            }
            let direction: Vec<f32> = q.iter().map(|v| -*v as f32).collect();
            let slope = dot(&g, &direction);
            if slope >= 0.0 {
                // Not a descent direction (numerical trouble): restart from steepest descent.
                history.clear();
                continue;
            }
            let mut step = 1.0f32;
            let mut accepted = None;
            for _ in 0..30 {
                let candidate: Vec<f32> = theta
                    .iter()
                    .zip(&direction)
                    .map(|(t, d)| t + step * d)
                    .collect();
                let (fc, gc) = self.objective(&candidate, xs, ys);
                if fc <= f + 1e-4 * f64::from(step) * slope {
                    accepted = Some((candidate, fc, gc));
                    break;
                }
                step *= 0.5;
            }
            let Some((next, f_next, g_next)) = accepted else {
                break;
            };
            let sv: Vec<f32> = next.iter().zip(&theta).map(|(a, b)| a - b).collect();
            let yv: Vec<f32> = g_next.iter().zip(&g).map(|(a, b)| a - b).collect();
            let sy = dot(&sv, &yv);
            if sy > 1e-12 {
                history.push_back((sv, yv, 1.0 / sy));
                if history.len() > HISTORY {
                    history.pop_front();
                }
            }
            let improvement = (f - f_next) / f.abs().max(1.0);
            theta = next;
            f = f_next;
            g = g_next;
            stalled = if improvement < 1e-7 { stalled + 1 } else { 0 };
            if stalled >= 3 || dot(&g, &g).sqrt() < 1e-6 {
                break;
            }
        }
        let n_w = self.rows * self.stride;
        let b = theta.split_off(n_w);
        let params = Params {
            w: theta,
            b,
            ..Params::empty(self.stride)
        };
        Fitted {
            params,
            epochs: vec![done; self.heads.len()],
        }
    }
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
            report.heads[1].examples, 60,
            "bug examples carry no priority"
        );
        assert!(
            report.refitted,
            "held-out data carved from train is trained on at the end"
        );
        let Ok(model) = Model::parse(&bytes) else {
            panic!("parses")
        };
        let mut scratch = Scratch::default();
        let text = "Please refund the double charge on my invoice";
        assert_eq!(model.vectorize(text, &mut scratch, false), Ok(()));
        let p = model.predict(&scratch);
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
