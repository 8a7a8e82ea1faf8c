//! The threads of this process, from `/proc/self/task`.

/// Thread ids of this process now (unsorted).
pub fn list() -> Vec<libc::pid_t> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// A thread's name (`comm`, at most 15 bytes on Linux), or its id.
pub fn name(tid: libc::pid_t) -> String {
    current_name(tid).unwrap_or_else(|| tid.to_string())
}

/// A live thread's name now; `None` once it has exited.
pub fn current_name(tid: libc::pid_t) -> Option<String> {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim_end().to_string())
        .ok()
        .filter(|s| !s.is_empty())
}
