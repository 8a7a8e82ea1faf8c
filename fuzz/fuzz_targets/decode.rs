//! Fuzz target `decode`: arbitrary bytes (gzip or raw `profile.proto`) through
//! both decoders.
//!
//! - `ProfileData::from_bytes` (small decompression cap) → `view()`: on
//!   success every index the view hands out is followed (samples, locations,
//!   lines, functions, mappings, labels, strings), so a view that passed
//!   validation but holds a dangling index panics here.
//! - `Profile::decode` (the owned model) must agree with the view exactly.
//! - Whatever decodes must validate and round-trip: `decode(encode(p)) == p`,
//!   and re-encoding is byte-for-byte stable (`tests/profile_round_trip.rs`
//!   asserts the same for generated and real profiles).

#![no_main]

use std::hint::black_box;

use firewatch_profile::{decompress, Profile, ProfileData, ProfileView};
use libfuzzer_sys::fuzz_target;

/// Decompression cap for the fuzzer: far below the 1 GiB default, so a gzip
/// bomb costs milliseconds and memory stays well under `-rss_limit_mb`.
const LIMIT: u64 = 64 << 20;

/// Gzip round trips only for small encodings (compression dominates otherwise).
const GZIP_ROUND_TRIP_MAX: usize = 16 << 10;

fuzz_target!(|data: &[u8]| {
    let inflated_ok = decompress(data, LIMIT).is_ok();

    // The file path: ProfileData → ProfileView.
    let from_view = match ProfileData::from_bytes("fuzz", data.to_vec(), LIMIT) {
        Ok(bytes) => {
            assert!(inflated_ok, "from_bytes accepted what decompress refused");
            match bytes.view() {
                Ok(view) => {
                    black_box(touch(&view));
                    Some(view.to_profile())
                }
                Err(e) => {
                    black_box(e.to_string());
                    None
                }
            }
        }
        Err(e) => {
            assert!(
                !inflated_ok,
                "decompress accepted what from_bytes refused: {e}"
            );
            black_box(e.to_string());
            None
        }
    };

    // The owned model, only when the input inflates under the small cap:
    // `Profile::decode` allows 1 GiB, so on a bomb it would only measure
    // that cap (which `hostile.rs` tests), at seconds per input.
    if !inflated_ok {
        return;
    }
    match Profile::decode(data) {
        Ok(p) => {
            assert!(
                from_view.as_ref() == Some(&p),
                "Profile::decode accepted the input but the view path {}",
                if from_view.is_some() {
                    "decoded it differently"
                } else {
                    "refused it"
                }
            );
            round_trip(&p);
        }
        Err(e) => {
            assert!(
                from_view.is_none(),
                "the view path accepted what Profile::decode refused: {e}"
            );
            black_box(e.to_string());
        }
    }
});

/// Follows every index of a validated view; returns a checksum so none of it
/// is optimised away (wrapping: values are arbitrary i64s).
fn touch(v: &ProfileView) -> usize {
    let mut sum = 0usize;
    assert_eq!(v.string(0), "", "string_table[0] must be empty");
    let types = v.sample_types().len();
    let mut samples = 0usize;
    for block in v.sample_blocks() {
        assert_eq!(block.iter().len(), block.len());
        assert_eq!(block.is_empty(), block.len() == 0);
        let mut refs = 0usize;
        for s in block.iter() {
            samples += 1;
            refs += s.locations.len();
            assert_eq!(s.values.len(), types, "one value per sample type");
            for &l in s.locations {
                let loc = &v.locations()[l as usize];
                sum = sum.wrapping_add(v.location_lines(loc).len());
            }
            for &value in s.values {
                sum = sum.wrapping_add(value as usize);
            }
            for label in s.labels {
                sum = sum.wrapping_add(v.string(label.key).len() + v.string(label.str).len());
                sum = sum.wrapping_add(v.string(label.num_unit).len());
                sum = sum.wrapping_add(label.num as usize);
            }
        }
        assert_eq!(refs, block.location_count());
    }
    assert_eq!(samples, v.sample_count());
    assert_eq!(v.samples().count(), samples);
    for loc in v.locations() {
        // A reversed or dangling line range panics in `location_lines`.
        if let Some(m) = loc.mapping {
            assert_eq!(v.mappings()[m as usize].id, loc.mapping_id, "wrong mapping");
        }
        for line in v.location_lines(loc) {
            let f = v.functions()[line.function as usize];
            sum = sum.wrapping_add(v.string(f.name).len() + v.string(f.system_name).len());
            sum = sum.wrapping_add(v.string(f.filename).len());
            sum = sum.wrapping_add(line.line as usize ^ line.column as usize);
        }
    }
    for m in v.mappings() {
        sum = sum.wrapping_add(v.string(m.filename).len() + v.string(m.build_id).len());
    }
    for f in v.functions() {
        sum = sum.wrapping_add(
            v.string(f.name).len() + v.string(f.system_name).len() + v.string(f.filename).len(),
        );
    }
    for (t, u) in v.sample_type_names() {
        sum = sum.wrapping_add(t.len() + u.len());
    }
    let default = v.default_sample_index();
    assert!(
        types == 0 || default < types,
        "default sample index out of range"
    );
    sum = sum.wrapping_add(
        v.string(v.period_type().r#type as u32).len() + v.string(v.period_type().unit as u32).len(),
    );
    for &c in v.comments() {
        sum = sum.wrapping_add(v.string(c).len());
    }
    sum = sum.wrapping_add(v.string(v.drop_frames()).len() + v.string(v.keep_frames()).len());
    sum = sum.wrapping_add(v.string(v.default_sample_type()).len() + v.string(v.doc_url()).len());
    sum
}

/// What holds for every profile the decoder accepts.
fn round_trip(p: &Profile) {
    if let Err(e) = p.validate() {
        panic!("a decoded profile does not validate: {e}");
    }
    let raw = p.encode();
    let back = match Profile::decode(&raw) {
        Ok(back) => back,
        Err(e) => panic!("the re-encoding of a decoded profile does not decode: {e}"),
    };
    assert!(back == *p, "decode(encode(p)) != p");
    assert!(back.encode() == raw, "re-encoding is not stable");
    if raw.len() <= GZIP_ROUND_TRIP_MAX {
        let gz = p.encode_gzip();
        match Profile::decode(&gz) {
            Ok(back) => assert!(back == *p, "gzip round trip differs"),
            Err(e) => panic!("the gzip encoding of a decoded profile does not decode: {e}"),
        }
    }
}
