//! A small tokio + axum service with the firewatch agent, built the way a
//! service is built (`cargo build --release`, Cargo's defaults), to show what
//! the agent's CPU stacks look like in a real async service under load.
//! `benches/axum_stacks.sh` builds it with and without frame pointers, drives
//! it with `wrk`, and tabulates the figures.
//!
//! ```text
//! axum-service [--port 8089] [--workers 2] [--out DIR]   serve on 127.0.0.1:PORT
//! axum-service analyze PROFILE.pb.gz [--stacks N]        the figures of a saved profile
//!                                                        (and its N heaviest worker stacks)
//! ```
//!
//! Endpoints (all `GET`):
//!
//! - `/orders?n=40`: builds `n` orders and returns them as JSON (serde_json);
//! - `/ingest`: parses a 64-order JSON document and totals it per customer;
//! - `/hash?n=2000`: generates keys, sorts and deduplicates them, counts them
//!   in a `HashMap` and hashes the result;
//! - `/alloc?n=2000`: many small allocations (strings, boxes, a `BTreeMap`);
//! - `/profile?seconds=10`: a CPU profile (100 Hz, through the agent) of the
//!   next `seconds`; the file goes to `--out`, the figures
//!   (`src/figures.rs`) are printed to stdout and returned, with the
//!   profile's capture-memory comment;
//! - `/heap`: a heap snapshot through the agent; returns its path and its
//!   capture-memory comment (`benches/capture_memory.sh`).

mod figures;

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

#[global_allocator]
static ALLOC: firewatch_agent::SamplingAllocator<std::alloc::System> =
    firewatch_agent::SamplingAllocator::new(std::alloc::System);

struct App {
    agent: firewatch_agent::Agent,
    /// A request counter, so responses differ from one request to the next.
    seq: AtomicU64,
    /// The document `/ingest` parses.
    ingest_doc: String,
}

#[derive(Serialize, Deserialize)]
struct Item {
    sku: String,
    quantity: u32,
    unit_cents: u64,
}

#[derive(Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: String,
    email: String,
    items: Vec<Item>,
    total_cents: u64,
    tags: Vec<String>,
    paid: bool,
}

/// xorshift64*: cheap deterministic "random" data.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn make_order(id: u64) -> Order {
    let mut r = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let items: Vec<Item> = (0..1 + next(&mut r) % 6)
        .map(|_| Item {
            sku: format!("SKU-{:06}", next(&mut r) % 1_000_000),
            quantity: 1 + (next(&mut r) % 9) as u32,
            unit_cents: 99 + next(&mut r) % 20_000,
        })
        .collect();
    let total_cents = items.iter().map(|i| i.unit_cents * i.quantity as u64).sum();
    let customer = format!("customer-{}", next(&mut r) % 500);
    Order {
        id,
        email: format!("{customer}@example.invalid"),
        customer,
        items,
        total_cents,
        tags: (0..next(&mut r) % 4)
            .map(|t| format!("tag{t}-{}", next(&mut r) % 50))
            .collect(),
        paid: !next(&mut r).is_multiple_of(3),
    }
}

#[derive(Deserialize)]
struct Size {
    n: Option<usize>,
}

async fn orders(State(app): State<Arc<App>>, Query(q): Query<Size>) -> Json<Vec<Order>> {
    let base = app.seq.fetch_add(1, Ordering::Relaxed) * 1000;
    let n = q.n.unwrap_or(40).min(1000) as u64;
    Json((base..base + n).map(make_order).collect())
}

#[derive(Serialize)]
struct CustomerTotal {
    customer: String,
    orders: u32,
    total_cents: u64,
    skus: usize,
}

async fn ingest(State(app): State<Arc<App>>) -> Result<Json<Vec<CustomerTotal>>, StatusCode> {
    let parsed: Vec<Order> =
        serde_json::from_str(&app.ingest_doc).map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut by_customer: HashMap<String, CustomerTotal> = HashMap::new();
    for o in parsed {
        let t = by_customer
            .entry(o.customer.clone())
            .or_insert_with(|| CustomerTotal {
                customer: o.customer,
                orders: 0,
                total_cents: 0,
                skus: 0,
            });
        t.orders += 1;
        t.total_cents += o.total_cents;
        t.skus += o.items.len();
    }
    let mut totals: Vec<CustomerTotal> = by_customer.into_values().collect();
    totals.sort_by(|a, b| {
        b.total_cents
            .cmp(&a.total_cents)
            .then_with(|| a.customer.cmp(&b.customer))
    });
    Ok(Json(totals))
}

async fn hash(State(app): State<Arc<App>>, Query(q): Query<Size>) -> String {
    let n = q.n.unwrap_or(2000).min(100_000);
    let mut r = app.seq.fetch_add(1, Ordering::Relaxed) | 1;
    let mut keys: Vec<u64> = (0..n).map(|_| next(&mut r) % (n as u64 * 4)).collect();
    keys.sort_unstable();
    let mut counts: HashMap<u64, u32> = HashMap::with_capacity(keys.len());
    for &k in &keys {
        *counts.entry(k).or_default() += 1;
    }
    keys.dedup();
    let mut h = DefaultHasher::new();
    keys.hash(&mut h);
    let mut fnv: u64 = 0xcbf2_9ce4_8422_2325;
    for b in keys.iter().flat_map(|k| k.to_le_bytes()) {
        fnv = (fnv ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{} distinct of {n}; most repeated {}; siphash {:016x}; fnv1a {fnv:016x}\n",
        keys.len(),
        counts.values().max().copied().unwrap_or(0),
        h.finish()
    )
}

async fn alloc(State(app): State<Arc<App>>, Query(q): Query<Size>) -> String {
    let n = q.n.unwrap_or(2000).min(100_000);
    let mut r = app.seq.fetch_add(1, Ordering::Relaxed) | 1;
    let words: Vec<String> = (0..n)
        .map(|i| format!("w{}-{i}", next(&mut r) % 97))
        .collect();
    let boxed: Vec<Box<[u8]>> = words
        .iter()
        .map(|w| w.as_bytes().to_vec().into_boxed_slice())
        .collect();
    let mut index: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (i, w) in words.iter().enumerate() {
        let key = w.split('-').next().unwrap_or("").to_string();
        index.entry(key).or_default().push(i as u32);
    }
    let copy = index.clone();
    let bytes: usize = boxed.iter().map(|b| b.len()).sum();
    black_box(&copy);
    format!("{} keys, {} bytes\n", index.len(), bytes)
}

#[derive(Deserialize)]
struct ProfileQuery {
    seconds: Option<u64>,
}

async fn profile(
    State(app): State<Arc<App>>,
    Query(q): Query<ProfileQuery>,
) -> (StatusCode, String) {
    let seconds = q.seconds.unwrap_or(10).clamp(1, 120);
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The agent's thread samples, symbolizes and writes the file; this plain
    // thread only waits for it, so no tokio worker blocks.
    let spawned = std::thread::Builder::new()
        .name("bench-profile".into())
        .spawn(move || {
            let result = app
                .agent
                .capture_cpu(Duration::from_secs(seconds))
                .map_err(|e| format!("capture failed: {e}"))
                .and_then(|path| {
                    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
                    let p = firewatch_profile::Profile::decode(&bytes)
                        .map_err(|e| format!("decoding {}: {e}", path.display()))?;
                    Ok(format!(
                        "profile: {}\n{}{}",
                        path.display(),
                        figures::compute(&p).report(),
                        memory_comment(&p)
                    ))
                });
            match &result {
                Ok(report) => println!("{report}"),
                Err(e) => eprintln!("{e}"),
            }
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    match rx.await {
        Ok(Ok(report)) => (StatusCode::OK, report),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e + "\n"),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "profiler thread died\n".into(),
        ),
    }
}

/// The profile's "capture memory" comment (what the capture added to RSS,
/// as the agent measured it), as a line.
fn memory_comment(p: &firewatch_profile::Profile) -> String {
    p.comment
        .iter()
        .map(|&c| p.string(c))
        .filter(|c| c.starts_with("firewatch: capture memory: RSS"))
        .map(|c| format!("{c}\n"))
        .collect()
}

async fn heap(State(app): State<Arc<App>>) -> (StatusCode, String) {
    // As `profile`: the capture runs on the agent's thread; a plain thread
    // waits for it so no tokio worker blocks.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("bench-heap".into())
        .spawn(move || {
            let result = app
                .agent
                .capture_heap()
                .map_err(|e| format!("capture failed: {e}"))
                .and_then(|path| {
                    let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
                    let p = firewatch_profile::Profile::decode(&bytes)
                        .map_err(|e| format!("decoding {}: {e}", path.display()))?;
                    Ok(format!("heap: {}\n{}", path.display(), memory_comment(&p)))
                });
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    match rx.await {
        Ok(Ok(report)) => (StatusCode::OK, report),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e + "\n"),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "capture thread died\n".into(),
        ),
    }
}

struct Args {
    port: u16,
    workers: usize,
    out: PathBuf,
}

fn usage() -> ! {
    eprintln!(
        "usage: axum-service [--port P] [--workers N] [--out DIR]\n       axum-service analyze PROFILE [--stacks N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        port: 8089,
        workers: 2,
        out: std::env::temp_dir().join("axum-service-profiles"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--port" => args.port = value().parse().unwrap_or_else(|_| usage()),
            "--workers" => args.workers = value().parse().unwrap_or_else(|_| usage()),
            "--out" => args.out = value().into(),
            _ => usage(),
        }
    }
    args
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("analyze") {
        let path = std::env::args().nth(2).unwrap_or_else(|| usage());
        let p = firewatch_profile::Profile::decode(&std::fs::read(&path)?)?;
        print!("{}", figures::compute(&p).report());
        if std::env::args().nth(3).as_deref() == Some("--stacks") {
            let n = std::env::args().nth(4).and_then(|n| n.parse().ok());
            print!("{}", figures::worker_stacks(&p, n.unwrap_or(5)));
        }
        return Ok(());
    }
    let args = parse_args();

    // As a service starts it, except: no capture signal, and no automatic
    // captures (a lifetime cap of 0), so that only the benchmark's own
    // profile runs.
    let agent = firewatch_agent::Agent::builder()
        .output_dir(&args.out)
        .service_name("axum-service")
        .signal(None)
        .lifetime_cap(Some(0))
        .start()?;

    let ingest_doc = serde_json::to_string(&(0..64).map(make_order).collect::<Vec<_>>())?;
    let app = Arc::new(App {
        agent,
        seq: AtomicU64::new(1),
        ingest_doc,
    });
    let router = Router::new()
        .route("/orders", get(orders))
        .route("/ingest", get(ingest))
        .route("/hash", get(hash))
        .route("/alloc", get(alloc))
        .route("/profile", get(profile))
        .route("/heap", get(heap))
        .with_state(app);

    // What `#[tokio::main(worker_threads = N)]` builds; workers keep tokio's
    // default name, `tokio-runtime-worker`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
        println!(
            "listening on http://{} with {} workers, profiles to {}",
            listener.local_addr()?,
            args.workers,
            args.out.display()
        );
        axum::serve(listener, router).await
    })?;
    Ok(())
}
