//! An exhaustive checker for small programs under RC11, the repaired C11
//! model of Lahav, Vafeiadis, Kang, Hur and Dreyer ("Repairing sequential
//! consistency in C/C++11", PLDI 2017), which C++20 adopted (P0668R5) and
//! Rust's atomics follow.
//!
//! A program is a few threads of straight-line code (with `if`, `match` and
//! `assume`) over a few locations. The checker takes every path through
//! each thread (both sides of every branch, reads' values still unknown),
//! and for every combination of paths every candidate execution: which
//! write each read reads from (`rf`) and the order of the writes to each
//! location (`mo`). The values then follow along `sb ∪ rf`; a candidate
//! whose values contradict its paths' branches is dropped, and the rest are
//! kept if RC11 calls them consistent. For each consistent execution it
//! gives the registers, the races (a non-atomic access not ordered by
//! happens-before with a conflicting access: undefined behaviour) and a
//! printout. (Per location, `rf`/`mo` choices that are not coherent on
//! their own are pruned first; that is only an optimisation.)
//!
//! Axioms (the paper's Figure 1 and Section 3, with C++20's release
//! sequences, which no longer include the releasing thread's later
//! relaxed stores):
//!
//! - `rs = [W≥rlx] ; (rf ; rmw)*`
//! - `sw = [E≥rel] ; ([F] ; sb)? ; rs ; rf ; [R≥rlx] ; (sb ; [F])? ; [E≥acq]`
//! - `hb = (sb ∪ sw)+`, `fr = rf⁻¹ ; mo`, `eco = (rf ∪ mo ∪ fr)+`
//! - coherence: `hb ; eco?` irreflexive
//! - atomicity: `rmw ∩ (fr ; mo) = ∅`
//! - SC: `psc` acyclic, with `scb = sb ∪ sb≠loc ; hb ; sb≠loc ∪ hb|loc ∪ mo ∪ fr`,
//!   `psc_base = ([E_sc] ∪ [F_sc] ; hb?) ; scb ; ([E_sc] ∪ hb? ; [F_sc])`,
//!   `psc_F = [F_sc] ; (hb ∪ hb ; eco ; hb) ; [F_sc]`, `psc = psc_base ∪ psc_F`
//! - no thin air: `sb ∪ rf` acyclic
//!
//! A read-modify-write is two events, a read and a write joined by `rmw`
//! (an `AcqRel` one is an acquire read and a release write; a `SeqCst` one,
//! two SC events). Initial writes are `sb`-before every other event.
//!
//! Loops are not executed: a spin-wait is written as one load followed by
//! `assume` of the value that ends it. That is an execution of the loop
//! (its first iteration exits), and every execution of the loop, with the
//! reads of earlier iterations deleted, is one of the model (deleting a
//! plain read keeps an RC11 execution consistent and hb only shrinks), so a
//! race found is real and a race excluded is excluded for the loop too.

use std::collections::BTreeMap;
use std::fmt::Write as _;

pub type Val = i64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Na,
    Rlx,
    Acq,
    Rel,
    AcqRel,
    Sc,
}

impl Mode {
    fn acquires(self) -> bool {
        matches!(self, Mode::Acq | Mode::AcqRel | Mode::Sc)
    }
    fn releases(self) -> bool {
        matches!(self, Mode::Rel | Mode::AcqRel | Mode::Sc)
    }
    /// The modes of the read and the write of a read-modify-write.
    fn split(self) -> (Mode, Mode) {
        match self {
            Mode::Rlx => (Mode::Rlx, Mode::Rlx),
            Mode::Acq => (Mode::Acq, Mode::Rlx),
            Mode::Rel => (Mode::Rlx, Mode::Rel),
            Mode::AcqRel => (Mode::Acq, Mode::Rel),
            Mode::Sc => (Mode::Sc, Mode::Sc),
            Mode::Na => panic!("a non-atomic read-modify-write"),
        }
    }
    fn rust(self) -> &'static str {
        match self {
            Mode::Na => "non-atomic",
            Mode::Rlx => "Relaxed",
            Mode::Acq => "Acquire",
            Mode::Rel => "Release",
            Mode::AcqRel => "AcqRel",
            Mode::Sc => "SeqCst",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum RmwOp {
    Add(Val),
    Swap(Val),
}

#[derive(Clone, Copy, Debug)]
pub enum Cond {
    Eq(&'static str, Val),
}

#[derive(Clone, Debug)]
pub enum Op {
    /// `reg: None` reads any value (the value is not used).
    Load {
        loc: &'static str,
        mode: Mode,
        reg: Option<&'static str>,
        /// What the access stands for, for printing.
        what: Option<&'static str>,
    },
    Store {
        loc: &'static str,
        mode: Mode,
        val: Val,
        what: Option<&'static str>,
    },
    Rmw {
        loc: &'static str,
        mode: Mode,
        op: RmwOp,
        reg: Option<&'static str>,
    },
    Fence(Mode),
    If(Cond, Vec<Op>),
    /// `match reg { v => ops, .., _ => {} }`: one path per arm.
    Match(&'static str, Vec<(Val, Vec<Op>)>),
    /// Executions where the condition is false are discarded.
    Assume(Cond),
}

pub fn load(loc: &'static str, mode: Mode, reg: &'static str) -> Op {
    Op::Load {
        loc,
        mode,
        reg: Some(reg),
        what: None,
    }
}
pub fn store(loc: &'static str, val: Val, mode: Mode) -> Op {
    Op::Store {
        loc,
        mode,
        val,
        what: None,
    }
}
pub fn fetch_add(loc: &'static str, n: Val, mode: Mode) -> Op {
    Op::Rmw {
        loc,
        mode,
        op: RmwOp::Add(n),
        reg: None,
    }
}
pub fn swap(loc: &'static str, val: Val, mode: Mode, reg: &'static str) -> Op {
    Op::Rmw {
        loc,
        mode,
        op: RmwOp::Swap(val),
        reg: Some(reg),
    }
}
pub fn fence(mode: Mode) -> Op {
    Op::Fence(mode)
}
/// A non-atomic read of memory (the value is not used): `what` says what
/// the code does there.
pub fn use_memory(loc: &'static str, what: &'static str) -> Op {
    Op::Load {
        loc,
        mode: Mode::Na,
        reg: None,
        what: Some(what),
    }
}
/// A non-atomic write of memory (building it, or freeing it).
pub fn write_memory(loc: &'static str, val: Val, what: &'static str) -> Op {
    Op::Store {
        loc,
        mode: Mode::Na,
        val,
        what: Some(what),
    }
}
pub fn if_eq(reg: &'static str, val: Val, then: Vec<Op>) -> Op {
    Op::If(Cond::Eq(reg, val), then)
}
pub fn match_reg(reg: &'static str, arms: Vec<(Val, Vec<Op>)>) -> Op {
    Op::Match(reg, arms)
}
pub fn assume_eq(reg: &'static str, val: Val) -> Op {
    Op::Assume(Cond::Eq(reg, val))
}

pub struct Location {
    pub name: &'static str,
    pub init: Val,
}

pub struct Program {
    pub locations: Vec<Location>,
    pub threads: Vec<(&'static str, Vec<Op>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Fence,
}

/// The value an event reads or writes, known once `rf` is chosen.
#[derive(Clone, Copy, Debug)]
enum Value {
    /// A read: the value of the write it reads from.
    FromRf,
    Const(Val),
    /// The write of a fetch_add: the value of read `usize` (an event
    /// index) plus the constant.
    ReadPlus(usize, Val),
}

#[derive(Clone, Debug)]
struct Event {
    /// 0: the initial writes; threads from 1.
    thread: usize,
    kind: Kind,
    loc: Option<usize>,
    mode: Mode,
    value: Value,
    /// The register a read sets, if any.
    reg: Option<&'static str>,
    text: String,
}

/// One path through a thread: its events (values still symbolic) and the
/// conditions its branches and `assume`s need, as (read event, condition).
#[derive(Clone, Default)]
struct Trace {
    events: Vec<Event>,
    /// Read and write of each read-modify-write (indices in `events`).
    rmw: Vec<(usize, usize)>,
    /// Register -> the read event that set it.
    regs: BTreeMap<&'static str, usize>,
    needs: Vec<(usize, bool, Val)>,
}

type Rel = Vec<u64>;

/// For one location: each of its reads with the write it reads from, and
/// the order of its writes.
type LocationChoice = (Vec<(usize, usize)>, Vec<usize>);

fn bits(mut x: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if x == 0 {
            None
        } else {
            let i = x.trailing_zeros() as usize;
            x &= x - 1;
            Some(i)
        }
    })
}

fn compose(a: &Rel, b: &Rel) -> Rel {
    a.iter()
        .map(|&row| bits(row).fold(0, |acc, j| acc | b[j]))
        .collect()
}

fn union(a: &Rel, b: &Rel) -> Rel {
    a.iter().zip(b).map(|(x, y)| x | y).collect()
}

fn closure(r: &Rel) -> Rel {
    let mut c = r.clone();
    for k in 0..c.len() {
        for i in 0..c.len() {
            if c[i] >> k & 1 == 1 {
                c[i] |= c[k];
            }
        }
    }
    c
}

fn acyclic(r: &Rel) -> bool {
    let c = closure(r);
    c.iter().enumerate().all(|(i, row)| row >> i & 1 == 0)
}

fn optional(r: &Rel) -> Rel {
    r.iter().enumerate().map(|(i, row)| row | 1 << i).collect()
}

fn identity_of(n: usize, keep: impl Fn(usize) -> bool) -> Rel {
    (0..n).map(|i| if keep(i) { 1 << i } else { 0 }).collect()
}

/// A consistent execution.
pub struct Execution {
    events: Vec<Event>,
    /// The value each event read or wrote.
    vals: Vec<Val>,
    rf: Vec<Option<usize>>,
    mo: Vec<Vec<usize>>,
    /// Registers by thread name.
    pub regs: BTreeMap<&'static str, BTreeMap<&'static str, Val>>,
    /// Pairs of racing events.
    races: Vec<(usize, usize)>,
    location_names: Vec<&'static str>,
    thread_names: Vec<&'static str>,
}

impl Execution {
    pub fn reg(&self, thread: &str, reg: &str) -> Option<Val> {
        self.regs.get(thread)?.get(reg).copied()
    }

    pub fn has_race(&self) -> bool {
        !self.races.is_empty()
    }

    /// Whether the read that set `reg` in `thread` read the initial value.
    pub fn read_initial(&self, thread: &str, reg: &str) -> bool {
        let t = self.thread_names.iter().position(|n| *n == thread).unwrap() + 1;
        self.events.iter().enumerate().any(|(i, e)| {
            e.thread == t
                && e.kind == Kind::Read
                && e.reg == Some(reg)
                && self.rf[i].is_some_and(|w| self.events[w].thread == 0)
        })
    }

    fn describe_event(&self, i: usize) -> String {
        let e = &self.events[i];
        if e.thread == 0 {
            format!(
                "the initial value of {}",
                self.location_names[e.loc.unwrap()]
            )
        } else {
            format!("{}: {}", self.thread_names[e.thread - 1], e.text)
        }
    }

    /// The execution, thread by thread, with where each read read from.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (t, name) in self.thread_names.iter().enumerate() {
            let _ = writeln!(out, "    {name}:");
            for (i, e) in self.events.iter().enumerate() {
                if e.thread != t + 1 {
                    continue;
                }
                let _ = write!(out, "      {}", e.text);
                if e.kind == Kind::Read {
                    let w = self.rf[i].unwrap();
                    let _ = write!(
                        out,
                        "   <- reads {} from {}",
                        self.vals[w],
                        if self.events[w].thread == 0 {
                            "the initial value".to_string()
                        } else {
                            self.describe_event(w)
                        }
                    );
                }
                out.push('\n');
            }
        }
        for (a, b) in &self.races {
            let _ = writeln!(
                out,
                "    RACE (not ordered by happens-before): [{}] and [{}]",
                self.describe_event(*a),
                self.describe_event(*b)
            );
        }
        for order in &self.mo {
            if order.len() > 1 {
                let loc = self.location_names[self.events[order[0]].loc.unwrap()];
                let chain: Vec<String> = order
                    .iter()
                    .map(|&w| {
                        if self.events[w].thread == 0 {
                            format!("{} (initial)", self.vals[w])
                        } else {
                            self.vals[w].to_string()
                        }
                    })
                    .collect();
                let _ = writeln!(out, "    order of writes to {loc}: {}", chain.join(" -> "));
            }
        }
        out
    }
}

pub struct Outcome {
    pub candidates: u64,
    pub consistent: u64,
    /// Consistent executions where the predicate held, and the first one.
    pub matching: u64,
    pub witness: Option<Execution>,
}

fn traces(prog: &Program, thread: usize, ops: Vec<&Op>, mut trace: Trace, out: &mut Vec<Trace>) {
    let loc_index = |name: &str| {
        prog.locations
            .iter()
            .position(|l| l.name == name)
            .unwrap_or_else(|| panic!("unknown location {name}"))
    };
    let Some((&op, rest)) = ops.split_first() else {
        out.push(trace);
        return;
    };
    let rest = rest.to_vec();
    let event = |kind, loc, mode, value, reg, text| Event {
        thread,
        kind,
        loc,
        mode,
        value,
        reg,
        text,
    };
    match op {
        Op::Load {
            loc,
            mode,
            reg,
            what,
        } => {
            let text = match (reg, what) {
                (_, Some(what)) => format!("{what} (non-atomic read of {loc})"),
                (Some(r), None) => format!("{r} = {loc}.load({})", mode.rust()),
                (None, None) => format!("{loc}.load({})", mode.rust()),
            };
            let l = loc_index(loc);
            trace
                .events
                .push(event(Kind::Read, Some(l), *mode, Value::FromRf, *reg, text));
            if let Some(r) = reg {
                trace.regs.insert(r, trace.events.len() - 1);
            }
            traces(prog, thread, rest, trace, out);
        }
        Op::Store {
            loc,
            mode,
            val,
            what,
        } => {
            let text = match what {
                Some(what) => format!("{what} (non-atomic write of {val} to {loc})"),
                None => format!("{loc}.store({val}, {})", mode.rust()),
            };
            let l = loc_index(loc);
            trace.events.push(event(
                Kind::Write,
                Some(l),
                *mode,
                Value::Const(*val),
                None,
                text,
            ));
            traces(prog, thread, rest, trace, out);
        }
        Op::Rmw { loc, mode, op, reg } => {
            let l = loc_index(loc);
            let (rm, wm) = mode.split();
            let call = match op {
                RmwOp::Add(n) if *n >= 0 => format!("{loc}.fetch_add({n}, {})", mode.rust()),
                RmwOp::Add(n) => format!("{loc}.fetch_sub({}, {})", -n, mode.rust()),
                RmwOp::Swap(x) => format!("{loc}.swap({x}, {})", mode.rust()),
            };
            let call = match reg {
                Some(r) => format!("{r} = {call}"),
                None => call,
            };
            trace.events.push(event(
                Kind::Read,
                Some(l),
                rm,
                Value::FromRf,
                *reg,
                format!("{call} [read]"),
            ));
            let r = trace.events.len() - 1;
            let value = match op {
                RmwOp::Add(n) => Value::ReadPlus(r, *n),
                RmwOp::Swap(x) => Value::Const(*x),
            };
            trace.events.push(event(
                Kind::Write,
                Some(l),
                wm,
                value,
                None,
                format!("{call} [write]"),
            ));
            trace.rmw.push((r, r + 1));
            if let Some(reg) = reg {
                trace.regs.insert(reg, r);
            }
            traces(prog, thread, rest, trace, out);
        }
        Op::Fence(mode) => {
            let text = format!("fence({})", mode.rust());
            trace
                .events
                .push(event(Kind::Fence, None, *mode, Value::Const(0), None, text));
            traces(prog, thread, rest, trace, out);
        }
        Op::If(cond, then) => {
            let (read, eq, val) = condition(&trace, cond);
            // The path where the condition holds, and the one where not.
            let mut yes = trace.clone();
            yes.needs.push((read, eq, val));
            let mut next: Vec<&Op> = then.iter().collect();
            next.extend(rest.iter().copied());
            traces(prog, thread, next, yes, out);
            trace.needs.push((read, !eq, val));
            traces(prog, thread, rest, trace, out);
        }
        Op::Match(reg, arms) => {
            let (read, _, _) = condition(&trace, &Cond::Eq(reg, 0));
            for (val, then) in arms {
                let mut arm = trace.clone();
                arm.needs.push((read, true, *val));
                let mut next: Vec<&Op> = then.iter().collect();
                next.extend(rest.iter().copied());
                traces(prog, thread, next, arm, out);
            }
            for (val, _) in arms {
                trace.needs.push((read, false, *val));
            }
            traces(prog, thread, rest, trace, out);
        }
        Op::Assume(cond) => {
            let need = condition(&trace, cond);
            trace.needs.push(need);
            traces(prog, thread, rest, trace, out);
        }
    }
}

/// A condition as (the read that set its register, equal?, value).
fn condition(trace: &Trace, cond: &Cond) -> (usize, bool, Val) {
    let (reg, eq, val) = match *cond {
        Cond::Eq(r, v) => (r, true, v),
    };
    let read = *trace
        .regs
        .get(reg)
        .unwrap_or_else(|| panic!("register {reg} used before it is set"));
    (read, eq, val)
}

fn permutations(items: &[usize]) -> Vec<Vec<usize>> {
    if items.is_empty() {
        return vec![vec![]];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first);
            all.push(p);
        }
    }
    all
}

/// Runs `prog` and counts the consistent executions where `pred` holds,
/// keeping the first as a witness.
pub fn check(prog: &Program, pred: impl Fn(&Execution) -> bool) -> Outcome {
    let per_thread: Vec<Vec<Trace>> = prog
        .threads
        .iter()
        .enumerate()
        .map(|(t, (_, ops))| {
            let mut out = Vec::new();
            traces(
                prog,
                t + 1,
                ops.iter().collect(),
                Trace::default(),
                &mut out,
            );
            out
        })
        .collect();
    let mut outcome = Outcome {
        candidates: 0,
        consistent: 0,
        matching: 0,
        witness: None,
    };
    let mut choice = vec![0usize; per_thread.len()];
    'paths: loop {
        explore(prog, &per_thread, &choice, &pred, &mut outcome);
        // Next combination of one path per thread.
        for t in 0..choice.len() {
            choice[t] += 1;
            if choice[t] < per_thread[t].len() {
                continue 'paths;
            }
            choice[t] = 0;
        }
        break;
    }
    outcome
}

/// The value of every event given `rf`, or `None` if `sb ∪ rf` has a cycle.
fn solve(events: &[Event], sb: &Rel, rf: &Rel, rf_of: &[Option<usize>]) -> Option<Vec<Val>> {
    let n = events.len();
    let before = union(sb, rf);
    let mut vals: Vec<Option<Val>> = vec![None; n];
    let mut done = 0u64;
    while done.count_ones() as usize != n {
        // An event all of whose predecessors are done.
        let next = (0..n).find(|&e| {
            done >> e & 1 == 0 && (0..n).all(|p| before[p] >> e & 1 == 0 || done >> p & 1 == 1)
        })?;
        vals[next] = Some(match events[next].value {
            Value::FromRf => vals[rf_of[next].unwrap()].unwrap(),
            Value::Const(v) => v,
            Value::ReadPlus(r, k) => vals[r].unwrap() + k,
        });
        done |= 1 << next;
    }
    Some(vals.into_iter().map(Option::unwrap).collect())
}

fn explore(
    prog: &Program,
    per_thread: &[Vec<Trace>],
    choice: &[usize],
    pred: &impl Fn(&Execution) -> bool,
    outcome: &mut Outcome,
) {
    // Events: the initial writes, then each thread's.
    let mut events: Vec<Event> = prog
        .locations
        .iter()
        .enumerate()
        .map(|(l, loc)| Event {
            thread: 0,
            kind: Kind::Write,
            loc: Some(l),
            mode: Mode::Na,
            value: Value::Const(loc.init),
            reg: None,
            text: format!("{} = {}", loc.name, loc.init),
        })
        .collect();
    let mut rmw_pairs = Vec::new();
    let mut needs = Vec::new();
    let mut reg_events = Vec::new();
    for (t, &c) in choice.iter().enumerate() {
        let trace = &per_thread[t][c];
        let base = events.len();
        events.extend(trace.events.iter().cloned().map(|mut e| {
            if let Value::ReadPlus(r, k) = e.value {
                e.value = Value::ReadPlus(base + r, k);
            }
            e
        }));
        rmw_pairs.extend(trace.rmw.iter().map(|&(r, w)| (base + r, base + w)));
        needs.extend(trace.needs.iter().map(|&(r, eq, v)| (base + r, eq, v)));
        reg_events.push(
            trace
                .regs
                .iter()
                .map(|(&name, &r)| (name, base + r))
                .collect::<Vec<_>>(),
        );
    }
    let n = events.len();
    assert!(n <= 64, "at most 64 events");
    let bit = |i: usize| 1u64 << i;

    // sb: initial writes before everything, then program order.
    let mut sb: Rel = vec![0; n];
    for i in 0..n {
        for j in 0..n {
            let (a, b) = (&events[i], &events[j]);
            if (a.thread == 0 && b.thread != 0) || (a.thread != 0 && a.thread == b.thread && i < j)
            {
                sb[i] |= bit(j);
            }
        }
    }
    let mut rmw: Rel = vec![0; n];
    for &(r, w) in &rmw_pairs {
        rmw[r] |= bit(w);
    }

    // Per location, every (rf, mo) that is coherent on its own: each read
    // reads some write to the location, the writes in some order (the
    // initial one first), with `sb|loc ∪ rf ∪ mo ∪ fr` acyclic and the
    // read-modify-writes atomic. (Both follow from the full axioms, which
    // are checked afterwards; this only prunes early.)
    let per_location: Vec<Vec<LocationChoice>> = (0..prog.locations.len())
        .map(|l| location_candidates(&events, &sb, &rmw_pairs, &needs, l))
        .collect();
    if per_location.iter().any(Vec::is_empty) {
        return;
    }
    let mut pick = vec![0usize; per_location.len()];
    'candidates: loop {
        outcome.candidates += 1;
        let mut rf_of: Vec<Option<usize>> = vec![None; n];
        let mut rf: Rel = vec![0; n];
        let mut mo_orders = Vec::new();
        for (l, &p) in pick.iter().enumerate() {
            let (pairs, order) = &per_location[l][p];
            for &(r, w) in pairs {
                rf_of[r] = Some(w);
                rf[w] |= bit(r);
            }
            mo_orders.push(order.clone());
        }
        // Values (no value out of thin air: sb ∪ rf acyclic), then the
        // conditions of this combination of paths.
        let solved = solve(&events, &sb, &rf, &rf_of)
            .filter(|vals| needs.iter().all(|&(r, eq, v)| (vals[r] == v) == eq));
        if let Some(vals) = solved {
            if let Some(races) = consistent(&events, &sb, &rf, &rf_of, &rmw, &rmw_pairs, &mo_orders)
            {
                outcome.consistent += 1;
                let regs = reg_events
                    .iter()
                    .enumerate()
                    .map(|(t, regs)| {
                        let values = regs.iter().map(|&(name, r)| (name, vals[r])).collect();
                        (prog.threads[t].0, values)
                    })
                    .collect();
                let exec = Execution {
                    events: events.clone(),
                    vals,
                    rf: rf_of,
                    mo: mo_orders,
                    regs,
                    races,
                    location_names: prog.locations.iter().map(|l| l.name).collect(),
                    thread_names: prog.threads.iter().map(|t| t.0).collect(),
                };
                if pred(&exec) {
                    outcome.matching += 1;
                    if outcome.witness.is_none() {
                        outcome.witness = Some(exec);
                    }
                }
            }
        }
        for l in 0..pick.len() {
            pick[l] += 1;
            if pick[l] < per_location[l].len() {
                continue 'candidates;
            }
            pick[l] = 0;
        }
        break;
    }
}

/// The (rf, mo) choices for location `l` that are coherent on their own.
fn location_candidates(
    events: &[Event],
    sb: &Rel,
    rmw_pairs: &[(usize, usize)],
    needs: &[(usize, bool, Val)],
    l: usize,
) -> Vec<LocationChoice> {
    let n = events.len();
    let bit = |i: usize| 1u64 << i;
    let at = |kind| -> Vec<usize> {
        (0..n)
            .filter(|&i| events[i].kind == kind && events[i].loc == Some(l))
            .collect()
    };
    let (reads, writes) = (at(Kind::Read), at(Kind::Write));
    let mut sb_loc: Rel = vec![0; n];
    let mine = reads.iter().chain(&writes).fold(0u64, |m, &i| m | bit(i));
    for &i in reads.iter().chain(&writes) {
        sb_loc[i] = sb[i] & mine;
    }
    let later: Vec<usize> = writes.iter().copied().filter(|&w| w != l).collect();
    // A read that a condition is on cannot read a constant that fails it.
    let sources: Vec<Vec<usize>> = reads
        .iter()
        .map(|&r| {
            writes
                .iter()
                .copied()
                .filter(|&w| match events[w].value {
                    Value::Const(c) => needs
                        .iter()
                        .all(|&(read, eq, v)| read != r || (c == v) == eq),
                    _ => true,
                })
                .collect()
        })
        .collect();
    if sources.iter().any(Vec::is_empty) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for mut order in permutations(&later) {
        order.insert(0, l);
        let mut mo: Rel = vec![0; n];
        for (i, &a) in order.iter().enumerate() {
            for &b in &order[i + 1..] {
                mo[a] |= bit(b);
            }
        }
        let mut pick = vec![0usize; reads.len()];
        'rf: loop {
            let pairs: Vec<(usize, usize)> = reads
                .iter()
                .enumerate()
                .map(|(i, &r)| (r, sources[i][pick[i]]))
                .collect();
            let mut rel = union(&sb_loc, &mo);
            let mut fr_of = vec![0u64; n];
            for &(r, w) in &pairs {
                rel[w] |= bit(r);
                fr_of[r] = mo[w];
                rel[r] |= mo[w];
            }
            let atomic = rmw_pairs
                .iter()
                .filter(|(r, _)| events[*r].loc == Some(l))
                .all(|&(r, w)| !bits(fr_of[r]).any(|x| mo[x] & bit(w) != 0));
            if atomic && acyclic(&rel) {
                out.push((pairs, order.clone()));
            }
            for k in 0..pick.len() {
                pick[k] += 1;
                if pick[k] < sources[k].len() {
                    continue 'rf;
                }
                pick[k] = 0;
            }
            break;
        }
    }
    out
}

/// RC11 consistency; `Some(races)` when consistent.
fn consistent(
    events: &[Event],
    sb: &Rel,
    rf: &Rel,
    rf_of: &[Option<usize>],
    rmw: &Rel,
    rmw_pairs: &[(usize, usize)],
    mo_orders: &[Vec<usize>],
) -> Option<Vec<(usize, usize)>> {
    let n = events.len();
    let bit = |i: usize| 1u64 << i;
    let mut mo: Rel = vec![0; n];
    for order in mo_orders {
        for (i, &a) in order.iter().enumerate() {
            for &b in &order[i + 1..] {
                mo[a] |= bit(b);
            }
        }
    }
    // fr = rf⁻¹ ; mo
    let mut fr: Rel = vec![0; n];
    for r in 0..n {
        if let Some(w) = rf_of[r] {
            fr[r] = mo[w];
        }
    }
    // Atomicity: rmw ∩ (fr ; mo) = ∅.
    for &(r, w) in rmw_pairs {
        if bits(fr[r]).any(|x| mo[x] & bit(w) != 0) {
            return None;
        }
    }
    let is = |i: usize, k: Kind| events[i].kind == k;
    let atomic = |i: usize| events[i].mode != Mode::Na;
    // rs = [W≥rlx] ; (rf ; rmw)*
    let rf_rmw = compose(rf, rmw);
    let rf_rmw_star = optional(&closure(&rf_rmw));
    let rs: Rel = (0..n)
        .map(|i| {
            if is(i, Kind::Write) && atomic(i) {
                rf_rmw_star[i]
            } else {
                0
            }
        })
        .collect();
    // sw = [E≥rel] ; ([F] ; sb)? ; rs ; rf ; [R≥rlx] ; (sb ; [F])? ; [E≥acq]
    let rel_head: Rel = (0..n)
        .map(|i| {
            if !events[i].mode.releases() {
                0
            } else if is(i, Kind::Fence) {
                sb[i]
            } else if is(i, Kind::Write) {
                bit(i)
            } else {
                0
            }
        })
        .collect();
    let rf_atomic: Rel = rf
        .iter()
        .map(|&row| bits(row).filter(|&r| atomic(r)).fold(0, |a, r| a | bit(r)))
        .collect();
    let acq_tail: Rel = (0..n)
        .map(|i| {
            if !is(i, Kind::Read) {
                return 0;
            }
            let mut row = if events[i].mode.acquires() { bit(i) } else { 0 };
            for j in bits(sb[i]) {
                if is(j, Kind::Fence) && events[j].mode.acquires() {
                    row |= bit(j);
                }
            }
            row
        })
        .collect();
    let sw = compose(&compose(&compose(&rel_head, &rs), &rf_atomic), &acq_tail);
    let hb = closure(&union(sb, &sw));
    // Coherence: hb irreflexive and hb ; eco irreflexive.
    let eco = closure(&union(&union(rf, &mo), &fr));
    for (a, &row) in hb.iter().enumerate() {
        if row & bit(a) != 0 || bits(row).any(|b| eco[b] & bit(a) != 0) {
            return None;
        }
    }
    // SC.
    let same_loc = |a: usize, b: usize| events[a].loc.is_some() && events[a].loc == events[b].loc;
    let sb_other_loc: Rel = (0..n)
        .map(|a| {
            bits(sb[a])
                .filter(|&b| !same_loc(a, b))
                .fold(0, |r, b| r | bit(b))
        })
        .collect();
    let hb_loc: Rel = (0..n)
        .map(|a| {
            bits(hb[a])
                .filter(|&b| same_loc(a, b))
                .fold(0, |r, b| r | bit(b))
        })
        .collect();
    let scb = union(
        &union(
            &union(sb, &compose(&compose(&sb_other_loc, &hb), &sb_other_loc)),
            &hb_loc,
        ),
        &union(&mo, &fr),
    );
    let sc = identity_of(n, |i| events[i].mode == Mode::Sc);
    let sc_fence = identity_of(n, |i| events[i].mode == Mode::Sc && is(i, Kind::Fence));
    let left = union(&sc, &compose(&sc_fence, &hb));
    let right = union(&sc, &compose(&hb, &sc_fence));
    let psc_base = compose(&compose(&left, &scb), &right);
    let hb_eco_hb = compose(&compose(&hb, &eco), &hb);
    let psc_f = compose(&compose(&sc_fence, &union(&hb, &hb_eco_hb)), &sc_fence);
    if !acyclic(&union(&psc_base, &psc_f)) {
        return None;
    }
    // Races: conflicting accesses, one non-atomic, unordered by hb.
    let mut races = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            let (x, y) = (&events[a], &events[b]);
            if x.thread == 0
                || y.thread == 0
                || x.thread == y.thread
                || !same_loc(a, b)
                || (x.kind != Kind::Write && y.kind != Kind::Write)
                || (atomic(a) && atomic(b))
            {
                continue;
            }
            if hb[a] & bit(b) == 0 && hb[b] & bit(a) == 0 {
                races.push((a, b));
            }
        }
    }
    Some(races)
}
