//! Calibration: classic litmus tests with the verdicts the literature gives
//! for RC11 (Lahav et al. 2017; the cppreference memory-order examples). A
//! checker that got one of these wrong would not be trusted with the
//! protocols.

use crate::rc11::Mode::{self, *};
use crate::rc11::*;

pub struct Litmus {
    pub name: &'static str,
    pub program: Program,
    pub outcome: &'static str,
    pub holds: fn(&Execution) -> bool,
    /// Whether RC11 allows the outcome.
    pub allowed: bool,
}

fn locs(names: &[&'static str]) -> Vec<Location> {
    names
        .iter()
        .map(|&name| Location { name, init: 0 })
        .collect()
}

fn program(names: &[&'static str], threads: Vec<(&'static str, Vec<Op>)>) -> Program {
    Program {
        locations: locs(names),
        threads,
    }
}

/// Store buffering: each thread stores to its flag, then loads the other's.
fn sb(name: &'static str, modes: [(Mode, Mode, bool); 2], allowed: bool) -> Litmus {
    let thread = |me: &'static str, other: &'static str, reg, (w, r, f): (Mode, Mode, bool)| {
        let mut ops = vec![store(me, 1, w)];
        if f {
            ops.push(fence(Sc));
        }
        ops.push(load(other, r, reg));
        ops
    };
    Litmus {
        name,
        program: program(
            &["x", "y"],
            vec![
                ("T1", thread("x", "y", "a", modes[0])),
                ("T2", thread("y", "x", "b", modes[1])),
            ],
        ),
        outcome: "a = 0 and b = 0",
        holds: |e| e.reg("T1", "a") == Some(0) && e.reg("T2", "b") == Some(0),
        allowed,
    }
}

pub fn all() -> Vec<Litmus> {
    let mut tests = vec![
        sb(
            "SB, release stores / acquire loads",
            [(Rel, Acq, false), (Rel, Acq, false)],
            true,
        ),
        sb("SB, SeqCst", [(Sc, Sc, false), (Sc, Sc, false)], false),
        sb(
            "SB, SeqCst on one thread only",
            [(Sc, Sc, false), (Rel, Acq, false)],
            true,
        ),
        sb(
            "SB, Relaxed + fence(SeqCst) on both",
            [(Rlx, Rlx, true), (Rlx, Rlx, true)],
            false,
        ),
        sb(
            "SB, Relaxed + fence(SeqCst) on one",
            [(Rlx, Rlx, true), (Rlx, Rlx, false)],
            true,
        ),
    ];
    // The pattern in its barest form: read-modify-writes first.
    for (name, m, allowed) in [
        (
            "SB with RMWs: fetch_add(SeqCst)+load(Acquire) / swap(AcqRel)+load(SeqCst)",
            [Sc, Acq, AcqRel, Sc],
            true,
        ),
        ("SB with RMWs, all SeqCst", [Sc, Sc, Sc, Sc], false),
    ] {
        tests.push(Litmus {
            name,
            program: program(
                &["x", "y"],
                vec![
                    ("T1", vec![fetch_add("x", 1, m[0]), load("y", m[1], "a")]),
                    ("T2", vec![swap("y", 1, m[2], "old"), load("x", m[3], "b")]),
                ],
            ),
            outcome: "a = 0 and b = 0",
            holds: |e| e.reg("T1", "a") == Some(0) && e.reg("T2", "b") == Some(0),
            allowed,
        });
    }
    for (name, w, r, allowed) in [
        ("MP, Release / Acquire", Rel, Acq, false),
        ("MP, Relaxed", Rlx, Rlx, true),
    ] {
        tests.push(Litmus {
            name,
            program: program(
                &["data", "flag"],
                vec![
                    ("T1", vec![store("data", 1, Rlx), store("flag", 1, w)]),
                    ("T2", vec![load("flag", r, "f"), load("data", Rlx, "d")]),
                ],
            ),
            outcome: "f = 1 and d = 0",
            holds: |e| e.reg("T2", "f") == Some(1) && e.reg("T2", "d") == Some(0),
            allowed,
        });
    }
    for (name, w, r, allowed) in [
        (
            "MP, non-atomic data, Release / Acquire flag",
            Rel,
            Acq,
            false,
        ),
        ("MP, non-atomic data, Relaxed flag", Rlx, Rlx, true),
    ] {
        tests.push(Litmus {
            name,
            program: program(
                &["data", "flag"],
                vec![
                    (
                        "T1",
                        vec![write_memory("data", 1, "write data"), store("flag", 1, w)],
                    ),
                    (
                        "T2",
                        vec![
                            load("flag", r, "f"),
                            if_eq("f", 1, vec![use_memory("data", "read data")]),
                        ],
                    ),
                ],
            ),
            outcome: "a data race",
            holds: |e| e.has_race(),
            allowed,
        });
    }
    for (name, w, r, allowed) in [
        ("IRIW, Release / Acquire", Rel, Acq, true),
        ("IRIW, SeqCst", Sc, Sc, false),
    ] {
        tests.push(Litmus {
            name,
            program: program(
                &["x", "y"],
                vec![
                    ("W1", vec![store("x", 1, w)]),
                    ("W2", vec![store("y", 1, w)]),
                    ("R1", vec![load("x", r, "a"), load("y", r, "b")]),
                    ("R2", vec![load("y", r, "c"), load("x", r, "d")]),
                ],
            ),
            outcome: "a = 1, b = 0, c = 1, d = 0",
            holds: |e| {
                e.reg("R1", "a") == Some(1)
                    && e.reg("R1", "b") == Some(0)
                    && e.reg("R2", "c") == Some(1)
                    && e.reg("R2", "d") == Some(0)
            },
            allowed,
        });
    }
    for (name, w, r, allowed) in [
        ("RWC, Release / Acquire", Rel, Acq, true),
        ("RWC, SeqCst", Sc, Sc, false),
    ] {
        tests.push(Litmus {
            name,
            program: program(
                &["x", "y"],
                vec![
                    ("T1", vec![store("x", 1, w)]),
                    ("T2", vec![load("x", r, "a"), load("y", r, "b")]),
                    ("T3", vec![store("y", 1, w), load("x", r, "c")]),
                ],
            ),
            outcome: "a = 1, b = 0, c = 0",
            holds: |e| {
                e.reg("T2", "a") == Some(1)
                    && e.reg("T2", "b") == Some(0)
                    && e.reg("T3", "c") == Some(0)
            },
            allowed,
        });
    }
    tests.push(Litmus {
        name: "LB, Relaxed (RC11 forbids it: sb ∪ rf acyclic)",
        program: program(
            &["x", "y"],
            vec![
                ("T1", vec![load("x", Rlx, "a"), store("y", 1, Rlx)]),
                ("T2", vec![load("y", Rlx, "b"), store("x", 1, Rlx)]),
            ],
        ),
        outcome: "a = 1 and b = 1",
        holds: |e| e.reg("T1", "a") == Some(1) && e.reg("T2", "b") == Some(1),
        allowed: false,
    });
    tests.push(Litmus {
        name: "CoRR, Relaxed",
        program: program(
            &["x"],
            vec![
                ("T1", vec![store("x", 1, Rlx)]),
                ("T2", vec![load("x", Rlx, "a"), load("x", Rlx, "b")]),
            ],
        ),
        outcome: "a = 1 and b = 0",
        holds: |e| e.reg("T2", "a") == Some(1) && e.reg("T2", "b") == Some(0),
        allowed: false,
    });
    tests.push(Litmus {
        name: "Two fetch_add(Relaxed) both read 0 (atomicity)",
        program: Program {
            locations: vec![Location { name: "x", init: 0 }],
            threads: vec![
                (
                    "T1",
                    vec![Op::Rmw {
                        loc: "x",
                        mode: Rlx,
                        op: RmwOp::Add(1),
                        reg: Some("a"),
                    }],
                ),
                (
                    "T2",
                    vec![Op::Rmw {
                        loc: "x",
                        mode: Rlx,
                        op: RmwOp::Add(1),
                        reg: Some("b"),
                    }],
                ),
            ],
        },
        outcome: "a = 0 and b = 0",
        holds: |e| e.reg("T1", "a") == Some(0) && e.reg("T2", "b") == Some(0),
        allowed: false,
    });
    tests
}
