//! Evaluation metrics: classification quality and calibration, the automation curve,
//! retrieval recall@k, ROUGE-L, and latency percentiles. Pure functions, no I/O.

use serde::Serialize;

/// Precision, recall and F1 of one class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassScores {
    /// Class label.
    pub label: String,
    /// TP / (TP + FP); 0 when the class was never predicted.
    pub precision: f64,
    /// TP / (TP + FN); 0 when the class never occurs.
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Gold occurrences.
    pub support: usize,
}

/// One bin of a reliability diagram.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CalibrationBin {
    /// Lower edge of the confidence bin.
    pub lower: f64,
    /// Upper edge.
    pub upper: f64,
    /// Predictions in the bin.
    pub count: usize,
    /// Mean confidence in the bin.
    pub confidence: f64,
    /// Accuracy in the bin.
    pub accuracy: f64,
}

/// One point of the automation curve: auto-apply when confidence ≥ `threshold`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AutomationPoint {
    /// Confidence threshold.
    pub threshold: f64,
    /// Share of tickets at or above it (would be applied without review).
    pub coverage: f64,
    /// Accuracy of those tickets (1.0 when none).
    pub accuracy: f64,
}

/// Everything about one classified field.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassificationReport {
    /// Examples scored.
    pub n: usize,
    /// Share correct.
    pub accuracy: f64,
    /// Unweighted mean of per-class F1 over the classes that occur in gold or predictions.
    pub macro_f1: f64,
    /// Expected calibration error (10 equal-width bins, weighted by count).
    pub ece: f64,
    /// Per class, in label order.
    pub classes: Vec<ClassScores>,
    /// `confusion[gold][predicted]` counts, in label order.
    pub confusion: Vec<Vec<usize>>,
    /// Labels indexing `classes` and `confusion`.
    pub labels: Vec<String>,
    /// Reliability diagram.
    pub calibration: Vec<CalibrationBin>,
    /// Coverage and accuracy as the threshold moves from 0 to 1.
    pub automation: Vec<AutomationPoint>,
    /// The target accuracy among auto-applied tickets.
    pub target_precision: f64,
    /// The lowest threshold whose auto-applied tickets reach the target (None: never).
    pub threshold_for_target: Option<AutomationPoint>,
}

/// One prediction of a field.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// Gold label.
    pub gold: String,
    /// Predicted label.
    pub predicted: String,
    /// Confidence of the prediction.
    pub confidence: f64,
}

fn f1(p: f64, r: f64) -> f64 {
    if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    }
}

/// Scores predictions of one field.
pub fn classification(items: &[Scored], target_precision: f64) -> ClassificationReport {
    let mut labels: Vec<String> = items
        .iter()
        .flat_map(|s| [s.gold.clone(), s.predicted.clone()])
        .collect();
    labels.sort();
    labels.dedup();
    let index = |l: &str| labels.binary_search_by(|x| x.as_str().cmp(l)).unwrap_or(0);
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for s in items {
        confusion[index(&s.gold)][index(&s.predicted)] += 1;
    }
    let n = items.len();
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let classes: Vec<ClassScores> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = (0..k).map(|g| confusion[g][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = if predicted == 0 {
                0.0
            } else {
                tp / predicted as f64
            };
            let recall = if support == 0 {
                0.0
            } else {
                tp / support as f64
            };
            ClassScores {
                label: labels[c].clone(),
                precision,
                recall,
                f1: f1(precision, recall),
                support,
            }
        })
        .collect();
    let macro_f1 = if k == 0 {
        0.0
    } else {
        classes.iter().map(|c| c.f1).sum::<f64>() / k as f64
    };
    let (calibration, ece) = calibration(items, 10);
    let automation = automation_curve(items);
    let threshold_for_target = automation
        .iter()
        .find(|p| p.coverage > 0.0 && p.accuracy >= target_precision)
        .cloned();
    ClassificationReport {
        n,
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        macro_f1,
        ece,
        classes,
        confusion,
        labels,
        calibration,
        automation,
        target_precision,
        threshold_for_target,
    }
}

/// Reliability bins and the expected calibration error.
pub fn calibration(items: &[Scored], bins: usize) -> (Vec<CalibrationBin>, f64) {
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for s in items {
        let b = ((s.confidence * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += s.confidence;
        sums[b].2 += usize::from(s.gold == s.predicted);
    }
    let n = items.len().max(1) as f64;
    let mut ece = 0.0;
    let out = sums
        .iter()
        .enumerate()
        .map(|(b, &(count, conf, right))| {
            let (confidence, accuracy) = if count == 0 {
                (0.0, 0.0)
            } else {
                (conf / count as f64, right as f64 / count as f64)
            };
            ece += count as f64 / n * (confidence - accuracy).abs();
            CalibrationBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count,
                confidence,
                accuracy,
            }
        })
        .collect();
    (out, ece)
}

/// Coverage and accuracy of the auto-applied share at thresholds 0.00, 0.01, …, 1.00.
pub fn automation_curve(items: &[Scored]) -> Vec<AutomationPoint> {
    let n = items.len().max(1) as f64;
    (0..=100)
        .map(|t| {
            let threshold = t as f64 / 100.0;
            let (mut covered, mut right) = (0usize, 0usize);
            for s in items {
                if s.confidence + 1e-12 >= threshold {
                    covered += 1;
                    right += usize::from(s.gold == s.predicted);
                }
            }
            AutomationPoint {
                threshold,
                coverage: covered as f64 / n,
                accuracy: if covered == 0 {
                    1.0
                } else {
                    right as f64 / covered as f64
                },
            }
        })
        .collect()
}

/// Precision, recall and F1 of a yes/no decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BinaryScores {
    /// Examples.
    pub n: usize,
    /// Gold positives.
    pub positives: usize,
    /// TP / (TP + FP).
    pub precision: f64,
    /// TP / (TP + FN).
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

/// Scores a yes/no decision against gold.
pub fn binary(pairs: &[(bool, bool)]) -> BinaryScores {
    let tp = pairs.iter().filter(|&&(g, p)| g && p).count() as f64;
    let fp = pairs.iter().filter(|&&(g, p)| !g && p).count() as f64;
    let positives = pairs.iter().filter(|&&(g, _)| g).count();
    let precision = if tp + fp == 0.0 { 0.0 } else { tp / (tp + fp) };
    let recall = if positives == 0 {
        0.0
    } else {
        tp / positives as f64
    };
    BinaryScores {
        n: pairs.len(),
        positives,
        precision,
        recall,
        f1: f1(precision, recall),
    }
}

/// Share of `relevant` found in the first `k` of `ranked` (1.0 when nothing is relevant).
pub fn recall_at_k(ranked: &[String], relevant: &[String], k: usize) -> f64 {
    if relevant.is_empty() {
        return 1.0;
    }
    let top = &ranked[..k.min(ranked.len())];
    relevant.iter().filter(|r| top.contains(r)).count() as f64 / relevant.len() as f64
}

/// 1.0 when any of `relevant` is in the first `k` of `ranked` (success@k, hit rate).
pub fn hit_at_k(ranked: &[String], relevant: &[String], k: usize) -> f64 {
    let top = &ranked[..k.min(ranked.len())];
    f64::from(u8::from(relevant.iter().any(|r| top.contains(r))))
}

/// Lowercase alphanumeric tokens, the unit of ROUGE here.
pub fn rouge_tokens(text: &str) -> Vec<String> {
    deskhost_nlp::text::tokens(text)
}

/// ROUGE-L of `candidate` against one `reference`: (precision, recall, F1) from the longest
/// common subsequence of tokens.
pub fn rouge_l(candidate: &str, reference: &str) -> (f64, f64, f64) {
    let c = rouge_tokens(candidate);
    let r = rouge_tokens(reference);
    if c.is_empty() || r.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    // LCS with two rows.
    let mut prev = vec![0usize; r.len() + 1];
    let mut row = vec![0usize; r.len() + 1];
    for ci in &c {
        for (j, rj) in r.iter().enumerate() {
            row[j + 1] = if ci == rj {
                prev[j] + 1
            } else {
                row[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut row);
    }
    let lcs = prev[r.len()] as f64;
    let p = lcs / c.len() as f64;
    let rec = lcs / r.len() as f64;
    (p, rec, f1(p, rec))
}

/// ROUGE-L F1 against several references: the best match (multi-reference convention).
pub fn rouge_l_multi(candidate: &str, references: &[String]) -> f64 {
    references
        .iter()
        .map(|r| rouge_l(candidate, r).2)
        .fold(0.0, f64::max)
}

/// The `q`-quantile (0..=1) of `values` by nearest rank; 0 when empty.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(gold: &str, predicted: &str, confidence: f64) -> Scored {
        Scored {
            gold: gold.into(),
            predicted: predicted.into(),
            confidence,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn macro_f1_and_confusion_by_hand() {
        // gold:  a a a b b c
        // pred:  a a b b c c
        let items = vec![
            s("a", "a", 0.9),
            s("a", "a", 0.8),
            s("a", "b", 0.6),
            s("b", "b", 0.7),
            s("b", "c", 0.5),
            s("c", "c", 0.9),
        ];
        let r = classification(&items, 0.95);
        assert_eq!(r.labels, vec!["a", "b", "c"]);
        assert_eq!(
            r.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert!(close(r.accuracy, 4.0 / 6.0));
        // a: P 2/2 R 2/3 F1 0.8; b: P 1/2 R 1/2 F1 0.5; c: P 1/2 R 1/1 F1 2/3
        assert!(close(r.classes[0].f1, 0.8));
        assert!(close(r.classes[1].f1, 0.5));
        assert!(close(r.classes[2].f1, 2.0 / 3.0));
        assert!(close(r.macro_f1, (0.8 + 0.5 + 2.0 / 3.0) / 3.0));
    }

    #[test]
    fn ece_by_hand() {
        // bin 0.9: two predictions at 0.9, one right → |0.9 - 0.5| * 2/4
        // bin 0.6: two predictions at 0.6, both right → |0.6 - 1.0| * 2/4
        let items = vec![
            s("a", "a", 0.9),
            s("a", "b", 0.9),
            s("a", "a", 0.6),
            s("b", "b", 0.6),
        ];
        let (bins, ece) = calibration(&items, 10);
        assert!(close(ece, 0.5 * 0.4 + 0.5 * 0.4), "{ece}");
        assert_eq!(bins[9].count, 2);
        assert!(close(bins[6].accuracy, 1.0));
        // Perfectly calibrated: confidence 0.5, half right.
        let (_, ece) = calibration(&[s("a", "a", 0.5), s("a", "b", 0.5)], 10);
        assert!(close(ece, 0.0));
    }

    #[test]
    fn automation_curve_and_target_threshold() {
        let items = vec![
            s("a", "a", 0.99),
            s("a", "a", 0.95),
            s("a", "b", 0.7),
            s("b", "b", 0.4),
        ];
        let r = classification(&items, 0.95);
        let at = |t: f64| {
            r.automation
                .iter()
                .find(|p| close(p.threshold, t))
                .cloned()
                .unwrap_or_else(|| panic!("{t}"))
        };
        assert!(close(at(0.0).coverage, 1.0) && close(at(0.0).accuracy, 0.75));
        assert!(close(at(0.5).coverage, 0.75) && close(at(0.5).accuracy, 2.0 / 3.0));
        assert!(close(at(0.9).coverage, 0.5) && close(at(0.9).accuracy, 1.0));
        let t = r
            .threshold_for_target
            .unwrap_or_else(|| panic!("reachable"));
        assert!(close(t.threshold, 0.71) && close(t.coverage, 0.5), "{t:?}");
    }

    #[test]
    fn binary_scores_by_hand() {
        let b = binary(&[
            (true, true),
            (true, false),
            (false, true),
            (false, false),
            (true, true),
        ]);
        assert!(close(b.precision, 2.0 / 3.0) && close(b.recall, 2.0 / 3.0) && b.positives == 3);
    }

    #[test]
    fn recall_at_k_by_hand() {
        let ranked: Vec<String> = ["d1", "d2", "d3", "d4"].map(String::from).to_vec();
        let relevant: Vec<String> = ["d3", "d9"].map(String::from).to_vec();
        assert!(close(recall_at_k(&ranked, &relevant, 1), 0.0));
        assert!(close(recall_at_k(&ranked, &relevant, 3), 0.5));
        assert!(close(recall_at_k(&ranked, &relevant, 10), 0.5));
        assert!(close(recall_at_k(&ranked, &[], 1), 1.0));
        assert!(close(hit_at_k(&ranked, &relevant, 2), 0.0));
        assert!(close(hit_at_k(&ranked, &relevant, 3), 1.0));
    }

    #[test]
    fn rouge_l_by_hand() {
        // LCS("the cat sat on the mat", "the cat lay on the mat") = the cat on the mat = 5
        let (p, r, f) = rouge_l("The cat sat on the mat", "the cat lay on the mat.");
        assert!(close(p, 5.0 / 6.0) && close(r, 5.0 / 6.0) && close(f, 5.0 / 6.0));
        // candidate 2 tokens, reference 4, LCS 2 → P 1, R 0.5, F 2/3
        let (p, r, f) = rouge_l("refund card", "please refund my card");
        assert!(close(p, 1.0) && close(r, 0.5) && close(f, 2.0 / 3.0));
        assert!(close(
            rouge_l_multi(
                "refund card",
                &["x y".into(), "please refund my card".into()]
            ),
            2.0 / 3.0
        ));
        assert_eq!(rouge_l("", "a"), (0.0, 0.0, 0.0));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!(
            close(percentile(&v, 0.5), 50.0)
                && close(percentile(&v, 0.95), 95.0)
                && close(percentile(&v, 0.99), 99.0)
        );
        assert!(close(percentile(&[3.0, 1.0, 2.0], 0.5), 2.0));
    }
}
