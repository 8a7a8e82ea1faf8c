//! The two places in firewatch-agent where a reader announces itself with a
//! counter, loads a published pointer and uses what it points to, while a
//! retirer swaps the pointer out, waits for the counter to read 0 and frees
//! the old memory — written as RC11 programs, with the orderings as
//! parameters so the code's orderings and the old ones can be compared.
//!
//! Values: a pointer is 0 (null) or the number of the allocation it points
//! to; memory is a non-atomic location, written when built (1) and when
//! freed (2). A use after free is a race between the reader's use and the
//! retirer's free: an execution where they are not ordered by
//! happens-before.

use crate::rc11::Mode::{self, *};
use crate::rc11::*;

/// Orderings of the read side and the retire side.
#[derive(Clone, Copy)]
pub struct Orderings {
    /// `ACTIVE`/`WALKERS` increment.
    pub announce: Mode,
    /// `fence(SeqCst)` after the increment.
    pub reader_fence: bool,
    /// Load of `POOL`/`PUBLISHED`.
    pub load: Mode,
    /// `ACTIVE`/`WALKERS` decrement.
    pub leave: Mode,
    /// Swap of `POOL`/`PUBLISHED`.
    pub swap: Mode,
    /// `fence(SeqCst)` after the swap.
    pub retirer_fence: bool,
    /// Load of `ACTIVE`/`WALKERS` in the wait.
    pub wait: Mode,
}

/// As the code has them now (crates/agent/src/cpu/sampler/signal.rs and mod.rs,
/// unwind/in_place.rs).
pub const NOW: Orderings = Orderings {
    announce: Sc,
    reader_fence: false,
    load: Sc,
    leave: Sc,
    swap: Sc,
    retirer_fence: false,
    wait: Sc,
};

/// As issue 10, finding 5 found them: the handler's load `Acquire`, the
/// swap `AcqRel`.
pub const BEFORE: Orderings = Orderings {
    load: Acq,
    swap: AcqRel,
    ..NOW
};

/// Only the handler's load made `SeqCst`.
pub const READER_ONLY: Orderings = Orderings {
    swap: AcqRel,
    ..NOW
};

/// Only the swap made `SeqCst`.
pub const RETIRER_ONLY: Orderings = Orderings { load: Acq, ..NOW };

/// The other fix the issue names: no `SeqCst` access, a `fence(SeqCst)`
/// on each side between its two accesses.
pub const FENCES: Orderings = Orderings {
    announce: Rlx,
    reader_fence: true,
    load: Acq,
    leave: Rel,
    swap: AcqRel,
    retirer_fence: true,
    wait: Acq,
};

/// The CPU sampler's pool (cpu/sampler/signal.rs `on_sigprof`, `wait_for_handlers`;
/// cpu/sampler/mod.rs `Sampler::new`, `run`, `finish`), over its whole life:
/// built and published, enabled, disabled, unpublished, freed.
/// `enabled` is the ordering of the `ENABLED` store and load.
pub fn cpu_pool(o: Orderings, handlers: usize, enabled: (Mode, Mode)) -> Program {
    let mut sampler = vec![
        write_memory("pool", 1, "Pool::new"),
        store("POOL", 1, Sc),           // Sampler::new
        store("ENABLED", 1, enabled.0), // run
        // finish:
        store("ENABLED", 0, enabled.0),
        load("ACTIVE", Sc, "first_wait"), // wait_for_handlers
        assume_eq("first_wait", 0),
        // (the last drain)
        swap("POOL", 0, o.swap, "unpublished"),
    ];
    if o.retirer_fence {
        sampler.push(fence(Sc));
    }
    sampler.extend([
        load("ACTIVE", o.wait, "last_wait"), // wait_for_handlers
        assume_eq("last_wait", 0),
        write_memory("pool", 2, "drop(Box::from_raw(pool))"),
    ]);
    let handler = || {
        let mut ops = vec![fetch_add("ACTIVE", 1, o.announce)];
        if o.reader_fence {
            ops.push(fence(Sc));
        }
        ops.extend([
            load("ENABLED", enabled.1, "enabled"),
            if_eq(
                "enabled",
                1,
                vec![
                    load("POOL", o.load, "pool"),
                    if_eq("pool", 1, vec![use_memory("pool", "pool.record(..)")]),
                ],
            ),
            fetch_add("ACTIVE", -1, o.leave),
        ]);
        ops
    };
    let mut threads = vec![("sampler", sampler)];
    for name in ["handler", "handler 2"].into_iter().take(handlers) {
        threads.push((name, handler()));
    }
    Program {
        locations: vec![
            Location {
                name: "ACTIVE",
                init: 0,
            },
            Location {
                name: "ENABLED",
                init: 0,
            },
            Location {
                name: "POOL",
                init: 0,
            },
            Location {
                name: "pool",
                init: 0,
            },
        ],
        threads,
    }
}

/// Whether a handler recorded into the pool while the sampler's first
/// wait (before the last drain) had already read `ACTIVE == 0` from the
/// initial value: that sample may miss the last drain.
pub fn first_wait_missed_a_recording_handler(e: &Execution) -> bool {
    e.reg("handler", "pool") == Some(1) && e.read_initial("sampler", "first_wait")
}

/// The in-place unwinder's published tables (unwind/in_place.rs `capture`,
/// `walk`, `prepare`): a walker and one `prepare` that replaces the tables.
pub fn in_place_tables(o: Orderings, walkers: usize) -> Program {
    let mut preparer = vec![
        write_memory("tables_2", 1, "build the new Published"),
        swap("PUBLISHED", 2, o.swap, "old"),
    ];
    if o.retirer_fence {
        preparer.push(fence(Sc));
    }
    preparer.extend([
        load("WALKERS", o.wait, "walkers"),
        assume_eq("walkers", 0),
        write_memory("tables_1", 2, "drop(Box::from_raw(old))"),
    ]);
    let walker = || {
        let mut ops = vec![fetch_add("WALKERS", 1, o.announce)];
        if o.reader_fence {
            ops.push(fence(Sc));
        }
        ops.extend([
            load("PUBLISHED", o.load, "tables"),
            match_reg(
                "tables",
                vec![
                    (1, vec![use_memory("tables_1", "walk")]),
                    (2, vec![use_memory("tables_2", "walk")]),
                ],
            ),
            fetch_add("WALKERS", -1, o.leave),
        ]);
        ops
    };
    let mut threads = vec![("prepare", preparer)];
    for name in ["walker", "walker 2"].into_iter().take(walkers) {
        threads.push((name, walker()));
    }
    Program {
        locations: vec![
            Location {
                name: "WALKERS",
                init: 0,
            },
            // Tables 1 were published by an earlier `prepare`.
            Location {
                name: "PUBLISHED",
                init: 1,
            },
            Location {
                name: "tables_1",
                init: 1,
            },
            Location {
                name: "tables_2",
                init: 0,
            },
        ],
        threads,
    }
}

/// Two `prepare` calls (serialized by `PREPARING`: a swap(Acquire) to
/// enter, a store(Release) when done) and a walker, all orderings as in the
/// code. Each `prepare` reads the tables it finds (their mappings) without
/// counting itself as a walker — safe only because no other `prepare` can
/// free them meanwhile — then replaces them and frees the old ones.
pub fn in_place_two_prepares() -> Program {
    let prepare = |fresh: Val, built: &'static str| {
        vec![
            swap("PREPARING", 1, Acq, "busy"),
            if_eq(
                "busy",
                0,
                vec![
                    load("PUBLISHED", Sc, "current"),
                    match_reg(
                        "current",
                        vec![
                            (1, vec![use_memory("tables_1", "current.mappings")]),
                            (2, vec![use_memory("tables_2", "current.mappings")]),
                            (3, vec![use_memory("tables_3", "current.mappings")]),
                        ],
                    ),
                    write_memory(built, 1, "build the new Published"),
                    swap("PUBLISHED", fresh, Sc, "old"),
                    load("WALKERS", Sc, "walkers"),
                    assume_eq("walkers", 0),
                    match_reg(
                        "old",
                        vec![
                            (
                                1,
                                vec![write_memory("tables_1", 2, "drop(Box::from_raw(old))")],
                            ),
                            (
                                2,
                                vec![write_memory("tables_2", 2, "drop(Box::from_raw(old))")],
                            ),
                            (
                                3,
                                vec![write_memory("tables_3", 2, "drop(Box::from_raw(old))")],
                            ),
                        ],
                    ),
                    store("PREPARING", 0, Rel),
                ],
            ),
        ]
    };
    let walker = vec![
        fetch_add("WALKERS", 1, Sc),
        load("PUBLISHED", Sc, "tables"),
        match_reg(
            "tables",
            vec![
                (1, vec![use_memory("tables_1", "walk")]),
                (2, vec![use_memory("tables_2", "walk")]),
                (3, vec![use_memory("tables_3", "walk")]),
            ],
        ),
        fetch_add("WALKERS", -1, Sc),
    ];
    let memory = |name, init| Location { name, init };
    Program {
        locations: vec![
            Location {
                name: "PREPARING",
                init: 0,
            },
            Location {
                name: "WALKERS",
                init: 0,
            },
            Location {
                name: "PUBLISHED",
                init: 1,
            },
            memory("tables_1", 1),
            memory("tables_2", 0),
            memory("tables_3", 0),
        ],
        threads: vec![
            ("prepare A", prepare(2, "tables_2")),
            ("prepare B", prepare(3, "tables_3")),
            ("walker", walker),
        ],
    }
}
