//! Writes the encoder-made fixtures in `fixtures/` (the Go-made ones come from
//! `fixtures/go/generate.sh`). Deterministic: rerunning gives the same bytes.
//!
//! ```text
//! cargo run --example fixtures
//! ```
//!
//! Each profile exercises something the Go runtime's profiles do not:
//! inlined frames written as several lines of one location, unsymbolized
//! frames in a named binary and without any mapping, `drop_frames` /
//! `keep_frames`, deep recursion, labels, and (for the heap pair) a leak that
//! grows between two snapshots.

use std::collections::HashMap;
use std::path::Path;

use firewatch_profile::{
    Function, Label, Line, Location, Mapping, Profile, Sample, StringInterner, ValueType,
};

/// A small builder: functions and locations by name, samples by stack.
struct Builder {
    strings: StringInterner,
    profile: Profile,
    locations: HashMap<String, u64>,
}

impl Builder {
    fn new(types: &[(&str, &str)]) -> Builder {
        let mut b = Builder {
            strings: StringInterner::new(),
            profile: Profile::new(),
            locations: HashMap::new(),
        };
        b.profile.sample_type = types
            .iter()
            .map(|(t, u)| ValueType {
                r#type: b.strings.intern(t),
                unit: b.strings.intern(u),
            })
            .collect();
        b.profile.mapping = vec![
            Mapping {
                id: 1,
                memory_start: 0x5555_0000_0000,
                memory_limit: 0x5555_0100_0000,
                filename: b.strings.intern("/usr/local/bin/orders-api"),
                build_id: b.strings.intern("5f0c3c9b2a41d0e5b7f1c2d3e4f5a6b7c8d9e0f1"),
                has_functions: true,
                has_filenames: true,
                has_line_numbers: true,
                has_inline_frames: true,
                ..Default::default()
            },
            Mapping {
                id: 2,
                memory_start: 0x7f00_0000_0000,
                memory_limit: 0x7f00_0020_0000,
                filename: b.strings.intern("/usr/lib/x86_64-linux-gnu/libc.so.6"),
                build_id: b.strings.intern("a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"),
                ..Default::default()
            },
        ];
        b
    }

    fn function(&mut self, name: &str) -> u64 {
        let name_index = self.strings.intern(name);
        if let Some(f) = self.profile.function.iter().find(|f| f.name == name_index) {
            return f.id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let file = format!("src/{}.rs", name.split("::").nth(1).unwrap_or("main"));
        self.profile.function.push(Function {
            id,
            name: name_index,
            system_name: name_index,
            filename: self.strings.intern(&file),
            start_line: 10 * id as i64,
        });
        id
    }

    /// A location: `frame` is `"a"` (one function), `"a+b"` (b inlined into a:
    /// the callee is written first, as pprof requires), `"@libc"` (an
    /// unsymbolized libc address) or `"@?"` (no mapping at all).
    fn location(&mut self, frame: &str) -> u64 {
        let id = self.profile.location.len() as u64 + 1;
        let address = 0x5555_0000_1000 + id * 0x40;
        let location = match frame {
            "@libc" => Location {
                id,
                mapping_id: 2,
                address: 0x7f00_0001_0000 + id,
                ..Default::default()
            },
            "@?" => Location {
                id,
                mapping_id: 0,
                address: 0xdead_0000 + id,
                ..Default::default()
            },
            _ => {
                let mut lines: Vec<Line> = frame
                    .split('+')
                    .map(|name| Line {
                        function_id: self.function(name),
                        line: 40 + id as i64,
                        column: 0,
                    })
                    .collect();
                lines.reverse();
                Location {
                    id,
                    mapping_id: 1,
                    address,
                    line: lines,
                    ..Default::default()
                }
            }
        };
        self.profile.location.push(location);
        id
    }

    /// A sample; `stack` is root first, each element a location spec.
    fn sample(&mut self, stack: &[&str], values: &[i64], labels: &[(&str, &str)]) {
        let mut location_id: Vec<u64> = stack.iter().map(|f| self.location_cached(f)).collect();
        location_id.reverse();
        let label = labels
            .iter()
            .map(|(k, v)| Label {
                key: self.strings.intern(k),
                str: self.strings.intern(v),
                ..Default::default()
            })
            .collect();
        self.profile.sample.push(Sample {
            location_id,
            value: values.to_vec(),
            label,
        });
    }

    fn location_cached(&mut self, frame: &str) -> u64 {
        // One location per distinct spec, as a real profiler writes one per address.
        if let Some(&id) = self.locations.get(frame) {
            return id;
        }
        let id = self.location(frame);
        self.locations.insert(frame.to_string(), id);
        id
    }

    fn finish(mut self, comments: &[&str]) -> Profile {
        self.profile.comment = comments.iter().map(|c| self.strings.intern(c)).collect();
        self.profile.string_table = self.strings.into_table();
        self.profile
    }
}

fn cpu_profile() -> Profile {
    let mut b = Builder::new(&[("samples", "count"), ("cpu", "nanoseconds")]);
    let ms = 10_000_000;
    let root = [
        "std::rt::lang_start",
        "orders_api::main",
        "tokio::runtime::Runtime::block_on",
    ];
    let stacks: Vec<(Vec<&str>, i64, &str)> = vec![
        (
            vec![
                "orders_api::handlers::create_order",
                "orders_api::pricing::quote+orders_api::pricing::round_cents",
            ],
            120,
            "worker-1",
        ),
        (
            vec![
                "orders_api::handlers::create_order",
                "orders_api::pricing::quote",
            ],
            45,
            "worker-2",
        ),
        (
            vec![
                "orders_api::handlers::create_order",
                "serde_json::ser::to_vec",
                "@libc",
            ],
            30,
            "worker-1",
        ),
        (
            vec![
                "orders_api::handlers::list_orders",
                "orders_api::db::scan+orders_api::db::decode_row",
            ],
            80,
            "worker-2",
        ),
        (
            vec![
                "orders_api::handlers::list_orders",
                "orders_api::db::scan",
                "@libc",
            ],
            12,
            "worker-1",
        ),
        (
            vec!["orders_api::handlers::list_orders", "@?"],
            3,
            "worker-2",
        ),
        // Profiler frames that drop_frames removes, with everything under them.
        (
            vec![
                "orders_api::handlers::create_order",
                "firewatch_agent::sampler::record",
                "alloc::vec::Vec::push",
            ],
            9,
            "worker-1",
        ),
    ];
    for (frames, n, thread) in &stacks {
        let stack: Vec<&str> = root.iter().copied().chain(frames.iter().copied()).collect();
        b.sample(&stack, &[*n, n * ms], &[("thread", thread)]);
    }
    // Deep recursion: cum must count each function once per sample.
    let mut recursive: Vec<&str> = root.to_vec();
    recursive.push("orders_api::rules::evaluate");
    recursive.extend(std::iter::repeat_n("orders_api::rules::walk", 40));
    recursive.push("orders_api::rules::leaf_test");
    b.sample(&recursive, &[25, 25 * ms], &[("thread", "worker-2")]);
    // A root that is itself a dropped frame is kept (no user frame above it).
    b.sample(
        &["firewatch_agent::sampler::record", "orders_api::tick"],
        &[2, 2 * ms],
        &[],
    );

    let drop = b.strings.intern("firewatch_agent::.*");
    b.profile.drop_frames = drop;
    b.profile.period_type = ValueType {
        r#type: b.strings.intern("cpu"),
        unit: b.strings.intern("nanoseconds"),
    };
    b.profile.period = ms;
    b.profile.time_nanos = 1_790_000_000_000_000_000;
    b.profile.duration_nanos = 5_000_000_000;
    b.finish(&["trigger=signal", "cpu_hz=100"])
}

/// A heap snapshot; `leak_blocks` grows between the two snapshots.
fn heap_profile(leak_blocks: i64, time: i64) -> Profile {
    let mut b = Builder::new(&[
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
    ]);
    let root = ["std::rt::lang_start", "orders_api::main"];
    let alloc = ["alloc::alloc::alloc", "__rust_alloc", "malloc"];
    let add = |b: &mut Builder, path: &[&str], objects: i64, size: i64, live: i64| {
        let stack: Vec<&str> = root
            .iter()
            .copied()
            .chain(path.iter().copied())
            .chain(alloc)
            .collect();
        b.sample(&stack, &[objects, objects * size, live, live * size], &[]);
    };
    add(
        &mut b,
        &[
            "orders_api::cache::Cache::insert",
            "orders_api::cache::Entry::new",
        ],
        leak_blocks,
        4096,
        leak_blocks,
    );
    add(
        &mut b,
        &[
            "orders_api::handlers::create_order",
            "serde_json::de::from_slice",
        ],
        50_000,
        256,
        40,
    );
    add(&mut b, &["orders_api::db::Pool::connect"], 16, 65_536, 16);
    add(
        &mut b,
        &[
            "orders_api::handlers::list_orders",
            "alloc::vec::Vec::with_capacity",
        ],
        9_000,
        1024,
        12,
    );
    let drop = b.strings.intern("alloc::alloc::.*|__rust_alloc|malloc");
    b.profile.drop_frames = drop;
    b.profile.period_type = ValueType {
        r#type: b.strings.intern("space"),
        unit: b.strings.intern("bytes"),
    };
    b.profile.period = 512 * 1024;
    b.profile.time_nanos = time;
    let default = b.strings.intern("inuse_space");
    b.profile.default_sample_type = default;
    b.finish(&["trigger=heap-threshold"])
}

fn write(dir: &Path, name: &str, profile: &Profile) {
    profile
        .validate()
        .unwrap_or_else(|e| panic!("{name}: generated an invalid profile: {e}"));
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    profile.write_gzip(&mut file).unwrap();
    println!(
        "wrote {} ({} bytes)",
        path.display(),
        std::fs::metadata(&path).unwrap().len()
    );
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    write(&dir, "encoded-cpu.pb.gz", &cpu_profile());
    write(
        &dir,
        "encoded-heap-1.pb.gz",
        &heap_profile(2_000, 1_790_000_000_000_000_000),
    );
    write(
        &dir,
        "encoded-heap-2.pb.gz",
        &heap_profile(9_000, 1_790_000_600_000_000_000),
    );
}
