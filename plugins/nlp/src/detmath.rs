//! `exp` and `ln` built only from IEEE-754 basic operations.
//!
//! `f64::exp`/`f64::ln` come from the platform's libm (glibc natively, wasi-libc in Wasm) and
//! may differ in the last bit. The classifier uses these instead, so a model gives
//! bit-identical probabilities natively and inside a plugin.

const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
const LOG2E: f64 = std::f64::consts::LOG2_E;

/// 1/i! for i in 0..=13, computed at compile time.
const INVERSE_FACTORIALS: [f64; 14] = {
    let mut out = [1.0; 14];
    let mut factorial = 1.0;
    let mut i = 1;
    while i < 14 {
        factorial *= i as f64;
        out[i] = 1.0 / factorial;
        i += 1;
    }
    out
};

/// e^x, relative error below 1e-13 on [-700, 700]; saturates outside.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x > 700.0 {
        return f64::MAX;
    }
    if x < -700.0 {
        return 0.0;
    }
    // x = k ln2 + r, |r| <= ln2 / 2
    let k = (x * LOG2E + 0.5).floor();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor series of e^r to degree 13 (|r|^14/14! < 1e-17 for |r| <= 0.35), in Horner form:
    // multiplications and additions only (a division per term made a chain of 13 dependent
    // divisions, most of a softmax's time).
    let mut sum = INVERSE_FACTORIALS[13];
    let mut i = 13;
    while i > 0 {
        i -= 1;
        sum = sum * r + INVERSE_FACTORIALS[i];
    }
    // 2^k through the exponent bits; k is in [-1010, 1010] so the biased exponent is valid
    // once split in two steps.
    let k = k as i64;
    let half = k / 2;
    sum * pow2(half) * pow2(k - half)
}

const fn pow2(k: i64) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// Natural logarithm for x > 0 (returns -inf for 0 and NaN for negatives).
pub const fn ln(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let mut bits = x.to_bits();
    let mut e: i64 = ((bits >> 52) & 0x7ff) as i64;
    if e == 0 {
        // subnormal: scale up by 2^54
        let scaled = x * pow2(54);
        bits = scaled.to_bits();
        e = ((bits >> 52) & 0x7ff) as i64 - 54;
    }
    let mut exponent = e - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        exponent += 1;
    }
    // ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 40.0 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    let ef = exponent as f64;
    ef * LN2_HI + (2.0 * sum + ef * LN2_LO)
}

/// Softmax of `logits / temperature` into `out` (same length), using [`exp`].
pub fn softmax_into(logits: &[f32], temperature: f32, out: &mut [f32]) {
    let t = if temperature > 0.0 && temperature.is_finite() {
        f64::from(temperature)
    } else {
        1.0
    };
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v) / t));
    let mut total = 0.0;
    for (o, &l) in out.iter_mut().zip(logits) {
        let e = exp(f64::from(l) / t - max);
        *o = e as f32;
        total += e;
    }
    if total > 0.0 {
        for o in out.iter_mut() {
            *o = (f64::from(*o) / total) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_closely() {
        let mut x = -50.0;
        while x < 50.0 {
            let ours = exp(x);
            let std = x.exp();
            assert!(
                ((ours - std) / std).abs() < 1e-12,
                "exp({x}) = {ours} vs {std}"
            );
            x += 0.173;
        }
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn ln_matches_libm_closely() {
        for &x in &[
            1e-300, 1e-5, 0.1, 0.5, 1.0, 1.5, 2.0, 3.0, 10.0, 12345.678, 1e300,
        ] {
            let ours = ln(x);
            let std = f64::ln(x);
            assert!(
                (ours - std).abs() <= 1e-12 * std.abs().max(1.0),
                "ln({x}) = {ours} vs {std}"
            );
        }
        assert_eq!(ln(1.0), 0.0);
        assert!(ln(-1.0).is_nan());
    }

    #[test]
    fn softmax_sums_to_one_and_orders() {
        let mut out = [0.0; 3];
        softmax_into(&[1.0, 2.0, 3.0], 1.0, &mut out);
        let sum: f32 = out.iter().sum();
        assert!((sum - 1.0).abs() < 1e-6);
        assert!(out[2] > out[1] && out[1] > out[0]);
        let mut hot = [0.0; 3];
        softmax_into(&[1.0, 2.0, 3.0], 0.5, &mut hot);
        assert!(hot[2] > out[2], "lower temperature sharpens");
    }
}
