//! What the synthetic process is made of: its mappings, thread roots, system
//! leaves, and the vocabulary its ~40,000 function names are drawn from.

use std::collections::HashSet;

use super::Rng;

/// Mappings: the binary, libc, libgcc_s and the vDSO (index = mapping id − 1).
pub(super) const MAIN: usize = 0;
pub(super) const LIBC: usize = 1;
pub(super) const LIBGCC: usize = 2;
pub(super) const VDSO: usize = 3;
pub(super) const MAPPINGS: [(&str, u64, u64); 4] = [
    ("/usr/local/bin/myservice", 0x5581_2a40_0000, 0x1000),
    (
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        0x7f6c_3a42_8000,
        0x28000,
    ),
    (
        "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
        0x7f6c_3a8c_3000,
        0x3000,
    ),
    ("[vdso]", 0x7ffd_8a3f_e000, 0),
];

const RUSTC: &str = "/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library";
const REGISTRY: &str = "/home/builder/.cargo/registry/src/index.crates.io-6f17d22bba15001f";

/// Root frames, outermost first: (name, mapping, file).
pub(super) const WORKER_ROOT: &[(&str, usize, &str)] = &[
    ("clone3", LIBC, ""),
    ("start_thread", LIBC, ""),
    (
        "std::sys::pal::unix::thread::Thread::new::thread_start",
        MAIN,
        "std/src/sys/pal/unix/thread.rs",
    ),
    (
        "core::ops::function::FnOnce::call_once{{vtable.shim}}",
        MAIN,
        "core/src/ops/function.rs",
    ),
    (
        "std::sys::backtrace::__rust_begin_short_backtrace",
        MAIN,
        "std/src/sys/backtrace.rs",
    ),
    (
        "tokio::runtime::scheduler::multi_thread::worker::run",
        MAIN,
        "tokio-1.41.1/src/runtime/scheduler/multi_thread/worker.rs",
    ),
    (
        "tokio::runtime::scheduler::multi_thread::worker::Context::run_task",
        MAIN,
        "tokio-1.41.1/src/runtime/scheduler/multi_thread/worker.rs",
    ),
];
pub(super) const BLOCKING_ROOT: &[(&str, usize, &str)] = &[
    ("clone3", LIBC, ""),
    ("start_thread", LIBC, ""),
    (
        "std::sys::pal::unix::thread::Thread::new::thread_start",
        MAIN,
        "std/src/sys/pal/unix/thread.rs",
    ),
    (
        "std::sys::backtrace::__rust_begin_short_backtrace",
        MAIN,
        "std/src/sys/backtrace.rs",
    ),
    (
        "tokio::runtime::blocking::pool::Inner::run",
        MAIN,
        "tokio-1.41.1/src/runtime/blocking/pool.rs",
    ),
    (
        "tokio::runtime::task::UnownedTask<S>::run",
        MAIN,
        "tokio-1.41.1/src/runtime/task/mod.rs",
    ),
];
pub(super) const MAIN_ROOT: &[(&str, usize, &str)] = &[
    ("_start", MAIN, ""),
    ("__libc_start_main", LIBC, ""),
    ("main", MAIN, ""),
    ("std::rt::lang_start_internal", MAIN, "std/src/rt.rs"),
    ("myservice::main", MAIN, "src/main.rs"),
    (
        "tokio::runtime::runtime::Runtime::block_on",
        MAIN,
        "tokio-1.41.1/src/runtime/runtime.rs",
    ),
];

/// Leaf functions outside the binary.
pub(super) const SYSTEM: &[(&str, usize)] = &[
    ("__memmove_avx_unaligned_erms", LIBC),
    ("__memset_avx2_unaligned_erms", LIBC),
    ("__memcmp_avx2_movbe", LIBC),
    ("__memchr_avx2", LIBC),
    ("__strlen_avx2", LIBC),
    ("malloc", LIBC),
    ("free", LIBC),
    ("realloc", LIBC),
    ("calloc", LIBC),
    ("_int_malloc", LIBC),
    ("_int_free", LIBC),
    ("_int_realloc", LIBC),
    ("malloc_consolidate", LIBC),
    ("sysmalloc", LIBC),
    ("unlink_chunk", LIBC),
    ("__libc_memalign", LIBC),
    ("pthread_mutex_lock", LIBC),
    ("__pthread_mutex_unlock_usercnt", LIBC),
    ("pthread_cond_wait", LIBC),
    ("__lll_lock_wait", LIBC),
    ("__futex_abstimed_wait_common", LIBC),
    ("syscall", LIBC),
    ("epoll_wait", LIBC),
    ("__libc_read", LIBC),
    ("__libc_write", LIBC),
    ("__libc_sendmsg", LIBC),
    ("__libc_recvfrom", LIBC),
    ("writev", LIBC),
    ("__poll", LIBC),
    ("__sched_yield", LIBC),
    ("madvise", LIBC),
    ("mmap64", LIBC),
    ("munmap", LIBC),
    ("__clock_gettime", LIBC),
    ("_Unwind_Backtrace", LIBGCC),
    ("_Unwind_Find_FDE", LIBGCC),
    ("uw_frame_state_for", LIBGCC),
    ("uw_update_context_1", LIBGCC),
    ("execute_cfa_program", LIBGCC),
    ("_Unwind_GetIPInfo", LIBGCC),
    ("__vdso_clock_gettime", VDSO),
    ("__vdso_gettimeofday", VDSO),
];

const APP_CRATES: &[(&str, &str)] = &[
    ("myservice", "src"),
    ("myservice", "src"),
    ("myservice", "src"),
    ("myservice_core", "crates/core/src"),
    ("myservice_storage", "crates/storage/src"),
];
const APP_MODULES: &[&str] = &[
    "handlers",
    "api",
    "db",
    "cache",
    "auth",
    "billing",
    "inventory",
    "search",
    "pipeline",
    "scheduler",
    "codec",
    "metrics",
    "storage",
    "net",
    "events",
    "reporting",
    "models",
    "rules",
    "sessions",
    "export",
];
const APP_SUBMODULES: &[&str] = &[
    "orders",
    "users",
    "payments",
    "sessions",
    "items",
    "carts",
    "accounts",
    "tokens",
    "shipments",
    "invoices",
    "reports",
    "queries",
    "batches",
    "streams",
    "indexes",
    "prices",
];
const VERBS: &[&str] = &[
    "process", "handle", "validate", "load", "store", "fetch", "encode", "decode", "compute",
    "apply", "build", "parse", "render", "merge", "update", "resolve", "check", "dispatch",
    "flush", "sync", "refresh", "collect", "score", "filter",
];
const NOUNS: &[&str] = &[
    "order", "user", "payment", "session", "item", "cart", "account", "token", "shipment",
    "invoice", "report", "query", "batch", "record", "request", "response", "event", "entry",
    "price", "line",
];
const TYPES: &[&str] = &[
    "Order", "User", "Payment", "Session", "Item", "Cart", "Account", "Token", "Shipment",
    "Invoice", "Report", "Query", "Batch", "Record", "Event", "Price",
];
const TYPE_SUFFIXES: &[&str] = &[
    "",
    "Store",
    "Cache",
    "Service",
    "Handler",
    "Client",
    "Builder",
    "Index",
    "Repository",
    "Codec",
    "Validator",
    "Worker",
    "Queue",
    "Request",
    "Response",
];
/// (trait path, method) implemented by service types.
const TRAITS: &[(&str, &str)] = &[
    ("core::fmt::Display", "fmt"),
    ("core::fmt::Debug", "fmt"),
    ("serde::ser::Serialize", "serialize"),
    ("serde::de::Deserialize", "deserialize"),
    ("core::clone::Clone", "clone"),
    ("core::ops::drop::Drop", "drop"),
    ("core::hash::Hash", "hash"),
    ("core::cmp::PartialEq", "eq"),
    ("core::cmp::Ord", "cmp"),
    ("core::future::future::Future", "poll"),
    ("core::iter::traits::iterator::Iterator", "next"),
    ("tower_service::Service<http::request::Request<B>>", "call"),
    ("prost::message::Message", "merge_field"),
    ("prost::message::Message", "encoded_len"),
];

/// A dependency: (path prefix, source file, types, methods).
type LibCrate = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);
const LIBS: &[LibCrate] = &[
    (
        "tokio::runtime::task::harness",
        "tokio-1.41.1/src/runtime/task/harness.rs",
        &["Harness<T,S>"],
        &["poll", "poll_inner", "complete", "shutdown", "wake_by_val"],
    ),
    (
        "tokio::runtime::task::core",
        "tokio-1.41.1/src/runtime/task/core.rs",
        &["Core<T,S>", "Stage<T>"],
        &["poll", "set_stage", "take_output", "drop_future_or_output"],
    ),
    (
        "tokio::sync",
        "tokio-1.41.1/src/sync/mod.rs",
        &[
            "mpsc::chan::Rx<T,S>",
            "mpsc::chan::Tx<T,S>",
            "batch_semaphore::Semaphore",
            "notify::Notify",
            "oneshot::Sender<T>",
            "oneshot::Receiver<T>",
            "rwlock::RwLock<T>",
            "mutex::Mutex<T>",
        ],
        &[
            "recv",
            "send",
            "acquire",
            "release",
            "notify_waiters",
            "notified",
            "poll_recv",
            "lock",
            "read",
            "write",
            "add_permits_locked",
            "close",
        ],
    ),
    (
        "tokio::io",
        "tokio-1.41.1/src/io/mod.rs",
        &[
            "poll_evented::PollEvented<E>",
            "util::buf_reader::BufReader<R>",
            "util::buf_writer::BufWriter<W>",
            "split::ReadHalf<T>",
        ],
        &[
            "poll_read",
            "poll_write",
            "poll_flush",
            "poll_fill_buf",
            "poll_write_vectored",
            "consume",
        ],
    ),
    (
        "tokio::net",
        "tokio-1.41.1/src/net/tcp/stream.rs",
        &["tcp::stream::TcpStream", "tcp::listener::TcpListener"],
        &[
            "poll_read_priv",
            "poll_write_priv",
            "poll_accept",
            "set_nodelay",
        ],
    ),
    (
        "tokio::time",
        "tokio-1.41.1/src/time/mod.rs",
        &["sleep::Sleep", "timeout::Timeout<T>", "interval::Interval"],
        &["poll", "poll_elapsed", "reset", "poll_tick"],
    ),
    (
        "hyper::proto::h1",
        "hyper-1.5.1/src/proto/h1/mod.rs",
        &[
            "conn::Conn<I,B,T>",
            "dispatch::Dispatcher<D,Bs,I,T>",
            "io::Buffered<T,B>",
            "role::Server",
            "decode::Decoder",
            "encode::Encoder",
        ],
        &[
            "poll_read_head",
            "poll_write",
            "poll_flush",
            "poll_loop",
            "poll_catch",
            "parse",
            "encode_headers",
            "write_head",
            "decode",
            "poll_read_body",
        ],
    ),
    (
        "hyper::proto::h2",
        "hyper-1.5.1/src/proto/h2/mod.rs",
        &["server::Server<T,S,B,E>", "PipeToSendStream<S>"],
        &["poll", "poll_server", "poll_data"],
    ),
    (
        "h2::proto",
        "h2-0.4.7/src/proto/mod.rs",
        &[
            "connection::Connection<T,P,B>",
            "streams::streams::Streams<B,P>",
            "streams::recv::Recv",
            "streams::send::Send",
            "streams::prioritize::Prioritize",
        ],
        &[
            "poll",
            "poll2",
            "recv_data",
            "recv_headers",
            "send_data",
            "poll_complete",
            "reclaim_frame",
            "pop_frame",
        ],
    ),
    (
        "serde_json::de",
        "serde_json-1.0.133/src/de.rs",
        &["Deserializer<R>", "SeqAccess<R>", "MapAccess<R>"],
        &[
            "parse_value",
            "parse_integer",
            "parse_number",
            "parse_str",
            "deserialize_struct",
            "deserialize_map",
            "next_element_seed",
            "next_key_seed",
            "ignore_value",
            "peek_invalid_type",
        ],
    ),
    (
        "serde_json::ser",
        "serde_json-1.0.133/src/ser.rs",
        &["Serializer<W,F>", "Compound<W,F>"],
        &[
            "serialize_str",
            "serialize_u64",
            "serialize_field",
            "serialize_element",
            "end",
            "format_escaped_str_contents",
        ],
    ),
    (
        "prost::encoding",
        "prost-0.13.3/src/encoding.rs",
        &["message", "string", "bytes", "uint64", "int64", "bool"],
        &[
            "merge",
            "encode",
            "encoded_len",
            "merge_repeated",
            "decode_varint_slow",
        ],
    ),
    (
        "bytes::bytes_mut",
        "bytes-1.9.0/src/bytes_mut.rs",
        &["BytesMut"],
        &[
            "reserve_inner",
            "extend_from_slice",
            "split_to",
            "freeze",
            "put_slice",
        ],
    ),
    (
        "hashbrown::raw",
        "hashbrown-0.15.2/src/raw/mod.rs",
        &["RawTable<T,A>", "RawTableInner", "RawIterRange<T>"],
        &[
            "reserve_rehash",
            "find",
            "insert",
            "remove_entry",
            "find_or_find_insert_slot",
            "resize",
            "drop_elements",
            "next",
        ],
    ),
    (
        "hashbrown::map",
        "hashbrown-0.15.2/src/map.rs",
        &["HashMap<K,V,S,A>"],
        &[
            "insert",
            "get",
            "get_mut",
            "remove",
            "entry",
            "contains_key",
            "retain",
        ],
    ),
    (
        "tracing::instrument",
        "tracing-0.1.41/src/instrument.rs",
        &["Instrumented<T>"],
        &["poll", "drop"],
    ),
    (
        "tracing_subscriber::fmt",
        "tracing-subscriber-0.3.19/src/fmt/mod.rs",
        &[
            "fmt_layer::Layer<S,N,E,W>",
            "format::Format<F,T>",
            "format::json::Json",
        ],
        &["on_event", "format_event", "on_new_span", "on_close"],
    ),
    (
        "regex_automata::meta",
        "regex-automata-0.4.9/src/meta/mod.rs",
        &[
            "regex::Regex",
            "strategy::Core",
            "wrappers::PikeVM",
            "wrappers::HybridEngine",
        ],
        &[
            "search",
            "search_half",
            "is_match",
            "try_search",
            "which_overlapping_matches",
        ],
    ),
    (
        "rustls::conn",
        "rustls-0.23.19/src/conn.rs",
        &[
            "ConnectionCommon<Data>",
            "ConnectionCore<Data>",
            "connection::Reader",
        ],
        &[
            "read_tls",
            "process_new_packets",
            "write_tls",
            "read",
            "complete_io",
        ],
    ),
    (
        "sqlx_core::pool",
        "sqlx-core-0.8.2/src/pool/mod.rs",
        &[
            "inner::PoolInner<DB>",
            "connection::PoolConnection<DB>",
            "Pool<DB>",
        ],
        &[
            "acquire",
            "release",
            "try_acquire",
            "return_to_pool",
            "fetch_optional",
        ],
    ),
    (
        "sqlx_postgres::connection",
        "sqlx-postgres-0.8.2/src/connection/mod.rs",
        &["PgConnection", "stream::PgStream", "executor::PgExecutor"],
        &[
            "run",
            "recv",
            "send",
            "wait_until_ready",
            "handle_row_description",
        ],
    ),
    (
        "core::fmt",
        "core/src/fmt/mod.rs",
        &["Formatter", "builders::DebugStruct", "Arguments"],
        &[
            "write_str",
            "pad_integral",
            "write_fmt",
            "field",
            "finish",
            "pad",
        ],
    ),
    (
        "core::slice",
        "core/src/slice/mod.rs",
        &[
            "sort::stable::drift",
            "sort::shared::smallsort",
            "memchr",
            "iter::Iter<T>",
            "iter::IterMut<T>",
        ],
        &[
            "sort",
            "insertion_sort_shift_left",
            "memchr_aligned",
            "next",
            "fold",
            "position",
        ],
    ),
    (
        "alloc::raw_vec",
        "alloc/src/raw_vec.rs",
        &["RawVec<T,A>", "RawVecInner<A>"],
        &[
            "grow_one",
            "reserve",
            "grow_amortized",
            "finish_grow",
            "shrink_to_fit",
        ],
    ),
    (
        "alloc::string",
        "alloc/src/string.rs",
        &["String"],
        &["push_str", "from_utf8_lossy", "push", "reserve", "clone"],
    ),
    (
        "std::io",
        "std/src/io/mod.rs",
        &[
            "buffered::bufwriter::BufWriter<W>",
            "buffered::bufreader::BufReader<R>",
            "Write",
        ],
        &[
            "write_all",
            "flush_buf",
            "read_to_end",
            "write_fmt",
            "fill_buf",
        ],
    ),
];
/// Generic std items that get one copy per service type.
const MONO: &[(&str, &str)] = &[
    ("core::ptr::drop_in_place<{}>", "core/src/ptr/mod.rs"),
    (
        "<alloc::vec::Vec<{}> as core::ops::drop::Drop>::drop",
        "alloc/src/vec/mod.rs",
    ),
    (
        "<alloc::vec::Vec<{}> as core::clone::Clone>::clone",
        "alloc/src/vec/mod.rs",
    ),
    ("alloc::vec::Vec<{}>::push", "alloc/src/vec/mod.rs"),
    (
        "<alloc::sync::Arc<{}>>::drop_slow",
        "alloc/src/sync.rs",
    ),
    (
        "<core::option::Option<{}> as core::clone::Clone>::clone",
        "core/src/option.rs",
    ),
    (
        "<serde_json::ser::Compound<W,F> as serde::ser::SerializeStruct>::serialize_field<{}>",
        "serde_json-1.0.133/src/ser.rs",
    ),
    (
        "serde_json::de::from_slice<{}>",
        "serde_json-1.0.133/src/de.rs",
    ),
    (
        "hashbrown::map::HashMap<alloc::string::String,{},S,A>::insert",
        "hashbrown-0.15.2/src/map.rs",
    ),
    (
        "<tokio::sync::mpsc::chan::Chan<{},S> as core::ops::drop::Drop>::drop",
        "tokio-1.41.1/src/sync/mpsc/chan.rs",
    ),
    (
        "<core::iter::adapters::map::Map<alloc::vec::into_iter::IntoIter<{}>,F> as core::iter::traits::iterator::Iterator>::fold",
        "core/src/iter/adapters/map.rs",
    ),
    (
        "<tracing::instrument::Instrumented<{}> as core::future::future::Future>::poll",
        "tracing-0.1.41/src/instrument.rs",
    ),
];
/// Generic code that is not monomorphised on a service type.
const GENERIC: &[(&str, &str)] = &[
    (
        "<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop",
        "alloc/src/vec/mod.rs",
    ),
    (
        "<F as core::future::future::Future>::poll",
        "core/src/future/future.rs",
    ),
    (
        "<core::pin::Pin<P> as core::future::future::Future>::poll",
        "core/src/future/future.rs",
    ),
    (
        "<alloc::boxed::Box<F,A> as core::ops::function::FnOnce<Args>>::call_once",
        "alloc/src/boxed.rs",
    ),
    ("alloc::alloc::exchange_malloc", "alloc/src/alloc.rs"),
    ("__rust_alloc", "alloc/src/alloc.rs"),
    ("__rust_dealloc", "alloc/src/alloc.rs"),
    ("__rust_realloc", "alloc/src/alloc.rs"),
    ("std::panicking::try", "std/src/panicking.rs"),
    ("core::hash::BuildHasher::hash_one", "core/src/hash/mod.rs"),
    (
        "<std::hash::random::DefaultHasher as core::hash::Hasher>::write",
        "std/src/hash/random.rs",
    ),
    ("std::time::Instant::now", "std/src/time.rs"),
];

/// Picks names until `count` distinct ones are found.
pub(super) fn unique_names(
    count: usize,
    rng: &mut Rng,
    seen: &mut HashSet<String>,
    mut make: impl FnMut(&mut Rng) -> (String, String),
) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let (name, file) = make(rng);
        if seen.insert(name.clone()) {
            out.push((name, file));
        }
    }
    out
}

/// A service type's path, e.g. `myservice::db::orders::OrderStore`.
fn app_type(rng: &mut Rng) -> String {
    let (krate, _) = *rng.pick(APP_CRATES);
    let module = rng.pick(APP_MODULES);
    let sub = rng.pick(APP_SUBMODULES);
    let ty = format!("{}{}", rng.pick(TYPES), rng.pick(TYPE_SUFFIXES));
    format!("{krate}::{module}::{sub}::{ty}")
}

/// A service function's (name, file).
pub(super) fn app_name(rng: &mut Rng) -> (String, String) {
    let (krate, dir) = *rng.pick(APP_CRATES);
    let module = rng.pick(APP_MODULES);
    let sub = rng.pick(APP_SUBMODULES);
    let file = format!("{dir}/{module}/{sub}.rs");
    let verb = rng.pick(VERBS);
    let noun = rng.pick(NOUNS);
    let name = match rng.below(20) {
        // A free function: myservice::handlers::orders::process_order_9123
        0..=10 => format!(
            "{krate}::{module}::{sub}::{verb}_{noun}_{}",
            rng.below(10_000)
        ),
        // A method.
        11..=13 => format!(
            "{krate}::{module}::{sub}::{}{}::{verb}_{noun}",
            rng.pick(TYPES),
            rng.pick(TYPE_SUFFIXES)
        ),
        // An async fn's body.
        14..=16 => format!(
            "{krate}::{module}::{sub}::{verb}_{noun}_{}::{{{{closure}}}}",
            rng.below(10_000)
        ),
        // A trait impl.
        _ => {
            let ty = app_type(rng);
            let (tr, method) = rng.pick(TRAITS);
            format!("<{ty} as {tr}>::{method}")
        }
    };
    (name, file)
}

/// A dependency's or std's function: (name, file).
pub(super) fn lib_name(rng: &mut Rng) -> (String, String) {
    match rng.below(10) {
        0..=4 => {
            let (prefix, path, types, methods) = *rng.pick(LIBS);
            let name = format!("{prefix}::{}::{}", rng.pick(types), rng.pick(methods));
            let name = if rng.chance(0.15) {
                format!("{name}::{{{{closure}}}}")
            } else {
                name
            };
            (name, source_file(path))
        }
        5..=8 => {
            let (pattern, path) = *rng.pick(MONO);
            let ty = app_type(rng);
            (pattern.replace("{}", &ty), source_file(path))
        }
        _ => {
            let (name, path) = *rng.pick(GENERIC);
            (name.to_string(), source_file(path))
        }
    }
}

/// The full path of a source file named in the tables: std's under the
/// toolchain's remapped prefix, the service's relative, a dependency's in the
/// cargo registry.
pub(super) fn source_file(path: &str) -> String {
    if path.is_empty() || path.starts_with("src/") || path.starts_with("crates/") {
        path.to_string()
    } else if ["core/", "alloc/", "std/"]
        .iter()
        .any(|p| path.starts_with(p))
    {
        format!("{RUSTC}/{path}")
    } else {
        format!("{REGISTRY}/{path}")
    }
}
