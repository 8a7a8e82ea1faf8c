//! Checks the memory ordering of firewatch's "announce, load, use, leave" /
//! "swap, wait, free" protocols (issue 10, finding 5). Prints a verdict per
//! check and exits 1 if any differs from the expected one.
//!
//!     cargo run --release [-- --witness]   (or scripts/model-check.sh)
//!
//! `--witness` prints an execution for every check where one was found.

mod litmus;
mod loom_models;
mod protocols;
mod rc11;

use std::time::Instant;

use protocols::{BEFORE, FENCES, NOW, READER_ONLY, RETIRER_ONLY};
use rc11::Mode::{Acq, Rel, Sc};

struct Report {
    unexpected: usize,
    witnesses: bool,
}

impl Report {
    fn line(&mut self, name: &str, found: bool, expected: bool, what: &str, detail: &str) {
        let ok = found == expected;
        if !ok {
            self.unexpected += 1;
        }
        println!(
            "  [{}] {name}: {} {what} ({detail})",
            if ok { " ok " } else { "FAIL" },
            if found { "found" } else { "no" },
        );
    }

    fn rc11(
        &mut self,
        name: &str,
        program: &rc11::Program,
        what: &str,
        pred: impl Fn(&rc11::Execution) -> bool,
        expected: bool,
        show_witness: bool,
    ) {
        let began = Instant::now();
        let outcome = rc11::check(program, pred);
        let detail = format!(
            "{} of {} consistent executions, {} candidates, {:.2?}",
            outcome.matching,
            outcome.consistent,
            outcome.candidates,
            began.elapsed()
        );
        assert!(
            outcome.consistent > 0,
            "{name}: no consistent execution at all"
        );
        self.line(name, outcome.matching > 0, expected, what, &detail);
        if let Some(w) = &outcome.witness {
            if show_witness || self.witnesses {
                print!("{}", w.render());
            }
        }
    }
}

fn main() {
    let witnesses = std::env::args().any(|a| a == "--witness");
    let mut report = Report {
        unexpected: 0,
        witnesses,
    };
    let all = Instant::now();

    println!("RC11 checker, calibration (litmus tests with known verdicts):");
    for t in litmus::all() {
        let outcome = rc11::check(&t.program, t.holds);
        report.line(
            t.name,
            outcome.matching > 0,
            t.allowed,
            t.outcome,
            &format!("{} consistent executions", outcome.consistent),
        );
    }

    println!("\nRC11 checker, the CPU pool (cpu/sampler/signal.rs, cpu/sampler/mod.rs):");
    let uaf = "use after free (handler's use of the pool races with its free)";
    // The ENABLED flag's store (at stop) and load (in the handler): SeqCst
    // in the code since the check below found the Release/Acquire pair lets
    // a sample miss the last drain.
    // The variants of the pool's orderings are checked with ENABLED as it
    // was (Release/Acquire): a SeqCst ENABLED pair alone also orders the
    // free after the handler's use, so with it every variant would pass and
    // show nothing about the pool's own orderings.
    let enabled = (Sc, Sc);
    let enabled_before = (Rel, Acq);
    for (name, o, handlers, expected, show, flag) in [
        (
            "orderings before the fix",
            BEFORE,
            1,
            true,
            true,
            enabled_before,
        ),
        (
            "pool orderings now, ENABLED as before",
            NOW,
            1,
            false,
            false,
            enabled_before,
        ),
        (
            "only the handler's load SeqCst",
            READER_ONLY,
            1,
            true,
            false,
            enabled_before,
        ),
        (
            "only the swap SeqCst",
            RETIRER_ONLY,
            1,
            true,
            false,
            enabled_before,
        ),
        (
            "fence(SeqCst) on both sides instead",
            FENCES,
            1,
            false,
            false,
            enabled_before,
        ),
        ("orderings now", NOW, 1, false, false, enabled),
        ("orderings now, two handlers", NOW, 2, false, false, enabled),
    ] {
        let program = protocols::cpu_pool(o, handlers, flag);
        report.rc11(name, &program, uaf, |e| e.has_race(), expected, show);
    }
    // Not vacuous: with the orderings now, handlers do use the pool that
    // is then freed (the free is ordered after the use).
    let used = "executions where the handler uses the pool that is then freed";
    report.rc11(
        "orderings now: the handler uses the pool",
        &protocols::cpu_pool(NOW, 1, enabled),
        used,
        |e| e.reg("handler", "pool") == Some(1),
        true,
        false,
    );
    report.rc11(
        "orderings now, two handlers: both use the pool",
        &protocols::cpu_pool(NOW, 2, enabled),
        used,
        |e| e.reg("handler", "pool") == Some(1) && e.reg("handler 2", "pool") == Some(1),
        true,
        false,
    );
    println!("  (information: the ENABLED flag, not a memory-safety matter)");
    report.rc11(
        "ENABLED Release/Acquire (before)",
        &protocols::cpu_pool(NOW, 1, (Rel, Acq)),
        "handler recording after the first wait read ACTIVE=0",
        protocols::first_wait_missed_a_recording_handler,
        true,
        false,
    );
    report.rc11(
        "orderings now, ENABLED SeqCst both sides",
        &protocols::cpu_pool(NOW, 1, (Sc, Sc)),
        "handler recording after the first wait read ACTIVE=0",
        protocols::first_wait_missed_a_recording_handler,
        false,
        false,
    );

    println!("\nRC11 checker, the in-place unwinder's tables (unwind/in_place.rs):");
    let uaf = "use after free (walk races with the free of the old tables)";
    for (name, o, walkers, expected) in [
        ("orderings before the fix", BEFORE, 1, true),
        ("orderings now (SeqCst on both sides)", NOW, 1, false),
        ("orderings now, two walkers", NOW, 2, false),
    ] {
        let program = protocols::in_place_tables(o, walkers);
        report.rc11(name, &program, uaf, |e| e.has_race(), expected, false);
    }
    report.rc11(
        "orderings now: the walker uses the old tables",
        &protocols::in_place_tables(NOW, 1),
        "executions where the walk uses the tables that are then freed",
        |e| e.reg("walker", "tables") == Some(1),
        true,
        false,
    );
    report.rc11(
        "two prepares: both replace the tables, the walker uses A's",
        &protocols::in_place_two_prepares(),
        "executions where B frees the tables A published and the walker used",
        |e| {
            e.reg("prepare A", "busy") == Some(0)
                && e.reg("prepare B", "busy") == Some(0)
                && e.reg("walker", "tables") == Some(2)
        },
        true,
        false,
    );
    report.rc11(
        "orderings now, two prepares (PREPARING) and a walker",
        &protocols::in_place_two_prepares(),
        "race on any tables",
        |e| e.has_race(),
        false,
        false,
    );

    println!("\nloom (SeqCst accesses are AcqRel to loom; fence(SeqCst) is exact):");
    // Loom's failures are panics, reported below from their message.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for (name, o, expected, note) in [
        ("orderings before the fix", loom_models::BEFORE, true, ""),
        (
            "fence(SeqCst) on both sides",
            loom_models::FENCES,
            false,
            "",
        ),
        (
            "fence(SeqCst) on the handler side only",
            loom_models::READER_FENCE_ONLY,
            true,
            "",
        ),
        (
            "orderings now (SeqCst accesses)",
            loom_models::NOW,
            true,
            "; a false alarm: loom's documented SeqCst gap, settled by RC11 above",
        ),
    ] {
        let began = Instant::now();
        let (result, runs, used) = loom_models::check(o);
        let detail = format!(
            "{runs} executions, the pool used in {used}, {:.2?}{note}",
            began.elapsed()
        );
        report.line(name, result.is_err(), expected, "use after free", &detail);
        if let Err(message) = result {
            if report.witnesses || name == "orderings before the fix" {
                println!("    loom: {}", message.lines().next().unwrap_or(""));
            }
        }
    }

    std::panic::set_hook(hook);

    println!("\ntotal {:.2?}", all.elapsed());
    if report.unexpected > 0 {
        println!(
            "{} verdict(s) differ from the expected ones",
            report.unexpected
        );
        std::process::exit(1);
    }
    println!("every verdict as expected");
}
