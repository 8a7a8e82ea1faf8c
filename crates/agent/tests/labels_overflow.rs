//! The caps on interned label sets, in a process of their own (the table is
//! process-wide and never shrinks): past `MAX_BYTES` of strings or
//! `MAX_SETS` sets a new set is not interned, the scope gets
//! `firewatch_labels=overflow`, and `stats().dropped` counts it; sets
//! interned before keep working.

use firewatch_agent::labels::{self, LabelSet, MAX_BYTES, MAX_SETS, OVERFLOW_KEY, OVERFLOW_VALUE};

#[test]
fn past_either_cap_new_sets_get_the_overflow_label_and_are_counted() {
    let first = LabelSet::new([("endpoint", "/first")]);
    assert!(!first.is_overflow());

    // The byte cap: a set whose strings alone exceed it is refused (and
    // its reservation given back: smaller sets still fit).
    let huge = "x".repeat(MAX_BYTES);
    assert!(LabelSet::new([("blob", huge.as_str())]).is_overflow());
    let after_bytes = labels::stats();
    assert_eq!(after_bytes.dropped, 1);
    assert!(after_bytes.bytes < 1024, "{after_bytes:?}");
    let big = "y".repeat(MAX_BYTES / 4);
    assert!(!LabelSet::new([("blob", big.as_str())]).is_overflow());
    let interned = 1;

    // The set cap: small sets until one overflows.
    let mut i = 0;
    let overflowed = loop {
        let set = LabelSet::new([("job", format!("{i}"))]);
        if set.is_overflow() {
            break i;
        }
        i += 1;
        assert!(i <= MAX_SETS, "the set cap holds");
    };
    let stats = labels::stats();
    assert_eq!(stats.sets, MAX_SETS);
    assert_eq!(overflowed + interned + 1, MAX_SETS);
    assert_eq!(stats.dropped, 2);

    // A scope with a new set runs under the overflow label, counted.
    labels::with(&[("endpoint", "/never-interned")], || {
        let now = labels::current();
        assert!(now.is_overflow());
        assert_eq!(now.pairs(), &[(OVERFLOW_KEY, OVERFLOW_VALUE)]);
    });
    assert_eq!(labels::stats().dropped, 3);
    // Sets interned before the caps are still found, and resolve.
    labels::with(&[("endpoint", "/first")], || {
        assert_eq!(labels::current(), first);
        assert_eq!(labels::current().get("endpoint"), Some("/first"));
    });
    assert_eq!(LabelSet::new([("job", "0")]).get("job"), Some("0"));
    assert_eq!(labels::stats().dropped, 3, "existing sets are not drops");
}
