#!/usr/bin/env python3
"""Writes the analyzer's i64-overflow reproducers (raw profile.proto) into the
given directory (default: this one). Found by review while fuzzing; each
panics with "attempt to add with overflow" in a build with overflow checks
(debug, tests, the fuzz targets) and prints wrong totals in release.

  flat-sum-overflow.pb             two functions, flat i64::MAX each:
                                   report/text.rs:59 (then text.rs:79, markdown.rs:119)
  filtered-diff-total-overflow.pb  values +MAX and -MAX; merged with itself minus
                                   itself with --focus/--ignore: aggregate.rs:248
  duration-sum-overflow.pb         duration_nanos i64::MAX, the file given twice:
                                   report/mod.rs:159
  diff-total-overflow.{input,base}.pb  input a=MAX, base b=MAX
                                   (`firewatch analyze INPUT --base BASE`): aggregate.rs:254
  folded-diff-overflow.pb          one sample of i64::MAX; merged with itself minus
                                   itself, folded output: flamegraph.rs:82
                                   (`value + base` of a differential folded line)
"""
import os
import sys

MAX = (1 << 63) - 1


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def fv(field, v):
    return varint(field << 3) + varint(v)


def fb(field, b):
    return varint((field << 3) | 2) + varint(len(b)) + b


def profile(values, duration=0):
    """cpu/nanoseconds; sample i at location i+1 -> function i+1 ("a", "b")."""
    strings = [b"", b"cpu", b"nanoseconds", b"a", b"b"]
    p = fb(1, fv(1, 1) + fv(2, 2))
    for i, v in enumerate(values):
        p += fb(2, fb(1, varint(i + 1)) + fb(2, varint(v)))
    for i in range(2):
        p += fb(4, fv(1, i + 1) + fb(4, fv(1, i + 1)))
    for i in range(2):
        p += fb(5, fv(1, i + 1) + fv(2, 3 + i))
    for s in strings:
        p += fb(6, s)
    if duration:
        p += fv(10, duration)
    return p


out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
files = {
    "flat-sum-overflow.pb": profile([MAX, MAX]),
    "filtered-diff-total-overflow.pb": profile([MAX, -MAX]),
    "duration-sum-overflow.pb": profile([1, 1], duration=MAX),
    "diff-total-overflow.input.pb": profile([MAX, 0]),
    "diff-total-overflow.base.pb": profile([0, MAX]),
    "folded-diff-overflow.pb": profile([MAX]),
}
for name, data in files.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
