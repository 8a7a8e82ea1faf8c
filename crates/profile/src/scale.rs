//! Scaling sample values: pprof's `Scale` and `ScaleN`, used to normalise
//! profiles before comparing them or to undo sampling.

use crate::model::Profile;

/// [`Profile::scale_each`] got a number of ratios other than the number of
/// sample types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{ratios} scale ratios for {sample_types} sample types")]
pub struct ScaleError {
    /// Ratios given.
    pub ratios: usize,
    /// Sample types in the profile.
    pub sample_types: usize,
}

impl Profile {
    /// Multiplies every sample value by `ratio`; see [`Profile::scale_each`].
    pub fn scale(&mut self, ratio: f64) {
        let ratios = vec![ratio; self.sample_type.len()];
        self.scale_each(&ratios).expect("one ratio per sample type");
    }

    /// Multiplies the values of sample type `i` by `ratios[i]`, rounding to
    /// the nearest integer (halves away from zero), and drops the samples
    /// whose scaled values are all zero. As in pprof's `ScaleN`, only the
    /// values whose ratio is not 1 decide whether a sample stays, and ratios
    /// that are all 1 change nothing.
    pub fn scale_each(&mut self, ratios: &[f64]) -> Result<(), ScaleError> {
        if ratios.len() != self.sample_type.len() {
            return Err(ScaleError {
                ratios: ratios.len(),
                sample_types: self.sample_type.len(),
            });
        }
        if ratios.iter().all(|&r| r == 1.0) {
            return Ok(());
        }
        self.sample.retain_mut(|s| {
            let mut keep = false;
            for (v, &r) in s.value.iter_mut().zip(ratios) {
                if r != 1.0 {
                    // `as` saturates (and maps NaN to 0), where Go's
                    // conversion is undefined.
                    *v = (*v as f64 * r).round() as i64;
                    keep |= *v != 0;
                }
            }
            keep
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Sample, ValueType};

    fn profile(values: &[&[i64]]) -> Profile {
        Profile {
            sample_type: vec![ValueType::default(); values[0].len()],
            sample: values
                .iter()
                .map(|v| Sample {
                    value: v.to_vec(),
                    ..Default::default()
                })
                .collect(),
            ..Profile::new()
        }
    }

    fn values(p: &Profile) -> Vec<Vec<i64>> {
        p.sample.iter().map(|s| s.value.clone()).collect()
    }

    #[test]
    fn values_are_rounded_half_away_from_zero_and_zeros_dropped() {
        let mut p = profile(&[&[3, 5], &[1, -3], &[0, 0], &[10, 2]]);
        p.scale(0.5);
        // 1.5 → 2, 2.5 → 3, 0.5 → 1, -1.5 → -2; the zero sample goes.
        assert_eq!(values(&p), [vec![2, 3], vec![1, -2], vec![5, 1]]);
        p.scale(0.1);
        // 0.2 → 0 and 0.3 → 0: dropped; 0.1 → 0, -0.2 → 0: dropped too.
        assert_eq!(values(&p), [vec![1, 0]]);
    }

    #[test]
    fn only_scaled_values_decide_and_ones_change_nothing() {
        let mut p = profile(&[&[7, 1], &[0, 4]]);
        // The first type is scaled to zero; the second is untouched and does
        // not keep the sample (pprof's rule).
        p.scale_each(&[0.0, 1.0]).unwrap();
        assert!(p.sample.is_empty());
        let mut p = profile(&[&[0, 0]]);
        p.scale_each(&[1.0, 1.0]).unwrap();
        assert_eq!(values(&p), [vec![0, 0]], "all ones: not even zeros dropped");
        assert_eq!(
            p.scale_each(&[2.0]),
            Err(ScaleError {
                ratios: 1,
                sample_types: 2
            })
        );
    }
}
