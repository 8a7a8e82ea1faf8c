//! The decoder's few parallel loops, on rayon with the `parallel` feature
//! (the default) and sequential without it, so the crate builds for callers
//! that want no thread pool. Results keep input order either way.

#[cfg(feature = "parallel")]
use rayon::prelude::*;

/// Threads the current pool would use: rayon's, or one.
pub(crate) fn threads() -> usize {
    #[cfg(feature = "parallel")]
    return rayon::current_num_threads().max(1);
    #[cfg(not(feature = "parallel"))]
    return 1;
}

/// `f(first_item_index, chunk)` over `chunk`-sized pieces of `items`, in order.
pub(crate) fn map_chunks<T: Sync, R: Send>(
    items: &[T],
    chunk: usize,
    f: impl Fn(usize, &[T]) -> R + Sync + Send,
) -> Vec<R> {
    #[cfg(feature = "parallel")]
    return items
        .par_chunks(chunk)
        .enumerate()
        .map(|(n, c)| f(n * chunk, c))
        .collect();
    #[cfg(not(feature = "parallel"))]
    return items
        .chunks(chunk)
        .enumerate()
        .map(|(n, c)| f(n * chunk, c))
        .collect();
}

/// `f(item)` for every item, in order, in tasks of at least `min_len` items.
pub(crate) fn map_items<T: Sync, R: Send>(
    items: &[T],
    min_len: usize,
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    let mut out = Vec::new();
    #[cfg(feature = "parallel")]
    items
        .par_iter()
        .with_min_len(min_len)
        .map(f)
        .collect_into_vec(&mut out);
    #[cfg(not(feature = "parallel"))]
    {
        let _ = min_len;
        out.extend(items.iter().map(f));
    }
    out
}

/// `f(out_chunk, in_chunk)` over matching `chunk`-sized pieces of `out` and
/// `input` (of equal length), in order.
pub(crate) fn zip_chunks_mut<A: Send, B: Sync, R: Send>(
    out: &mut [A],
    input: &[B],
    chunk: usize,
    f: impl Fn(&mut [A], &[B]) -> R + Sync + Send,
) -> Vec<R> {
    debug_assert_eq!(out.len(), input.len());
    #[cfg(feature = "parallel")]
    return out
        .par_chunks_mut(chunk)
        .zip(input.par_chunks(chunk))
        .map(|(o, i)| f(o, i))
        .collect();
    #[cfg(not(feature = "parallel"))]
    return out
        .chunks_mut(chunk)
        .zip(input.chunks(chunk))
        .map(|(o, i)| f(o, i))
        .collect();
}
