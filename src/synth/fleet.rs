//! Profiles of one service from many replicas, for the many-files tests
//! and benchmark (`benches/fleet.sh`): each replica's profile is a different
//! random part of one [`generate`](super::generate)d base profile, its
//! values scaled, with the base's tables. Like a fleet's hourly profiles,
//! the files share most functions and many stacks, and none is identical.

use firewatch_profile::Profile;

use super::Rng;

/// Replica `replica`'s profile: each of `base`'s samples kept with
/// probability `keep`, its values multiplied by 1 to 4 (the replica's
/// load). Deterministic in (`base`, `replica`, `keep`).
pub fn replica(base: &Profile, replica: u64, keep: f64) -> Profile {
    let mut rng = Rng::new(0x5eed_f1ee7 ^ replica.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let load = 1 + rng.below(4) as i64;
    let mut profile = base.clone();
    profile.sample.retain(|_| rng.chance(keep));
    for sample in &mut profile.sample {
        for value in &mut sample.value {
            *value = value.wrapping_mul(load);
        }
    }
    profile
}
