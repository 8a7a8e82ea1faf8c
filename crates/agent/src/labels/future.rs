//! The future wrapper: labels that follow a task across threads and
//! `await`s, with any executor.
//!
//! An executor may poll a task on a different thread each time it wakes,
//! so a thread-local set at spawn time says nothing later. The wrapper
//! installs its set on the polling thread for the duration of each `poll`
//! and puts the thread's previous set back after, panicking or not.
//!
//! Its set is merged with whatever is installed when it is polled, so a
//! labelled future inside another labelled future nests as [`super::with`]
//! does. The merge is cached per outer set: a poll under the same outer
//! set as the last one costs two thread-local accesses and a compare.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{install, merged, LabelSet, Restore};

/// A future that installs its label set while it is polled (see
/// [`LabelsExt`]).
#[must_use = "futures do nothing unless polled"]
pub struct WithLabels<F> {
    inner: F,
    /// The wrapper's own set.
    own: LabelSet,
    /// The outer set at the last poll, and the merge of `own` into it.
    cached: (u32, u32),
}

/// Labels for futures: `future.with_labels([("endpoint", "/checkout")])`.
pub trait LabelsExt: Future + Sized {
    /// This future with `pairs` added to the current set at each `poll`
    /// (keys and values are copied into the interned set once, here).
    fn with_labels<K: AsRef<str>, V: AsRef<str>>(
        self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> WithLabels<Self> {
        self.with_label_set(LabelSet::new(pairs))
    }

    /// This future with `set` added to the current set at each `poll`: for
    /// a spawned task, the set [`super::current`] returned where it was
    /// spawned.
    fn with_label_set(self, set: LabelSet) -> WithLabels<Self> {
        WithLabels {
            inner: self,
            own: set,
            cached: (u32::MAX, set.id()),
        }
    }
}

impl<F: Future> LabelsExt for F {}

impl<F> WithLabels<F> {
    /// The wrapper's own set (before merging with the polling context).
    pub fn label_set(&self) -> LabelSet {
        self.own
    }

    /// The wrapped future.
    pub fn into_inner(self) -> F {
        self.inner
    }
}

impl<F: Future> Future for WithLabels<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning of `inner`: it is never moved out of a
        // pinned wrapper (`into_inner` takes the wrapper by value, which
        // requires it unpinned or `Unpin`), the wrapper has no `Drop`, and
        // it is `Unpin` only when `F` is (auto trait).
        let this = unsafe { self.get_unchecked_mut() };
        let outer = super::current_id();
        let id = if outer == this.cached.0 {
            this.cached.1
        } else {
            let id = if outer == super::table::NONE {
                this.own.id()
            } else {
                merged(outer, this.own.pairs())
            };
            this.cached = (outer, id);
            id
        };
        let _restore = Restore(install(id));
        // SAFETY: see above; `inner` stays where it is.
        unsafe { Pin::new_unchecked(&mut this.inner) }.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    /// Polls `f` once on this thread.
    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(Noop));
        f.poll(&mut Context::from_waker(&waker))
    }

    /// A future that records the current set at each poll and is ready at
    /// the third.
    struct Probe(Vec<LabelSet>);
    impl Future for Probe {
        type Output = Vec<LabelSet>;
        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            let now = super::super::current();
            self.0.push(now);
            if self.0.len() == 3 {
                Poll::Ready(std::mem::take(&mut self.0))
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn each_poll_installs_the_set_and_restores_the_previous_one() {
        let mut f = Box::pin(Probe(Vec::new()).with_labels([("endpoint", "/a")]));
        assert!(poll_once(f.as_mut()).is_pending());
        assert!(super::super::current().is_empty(), "restored after poll");
        // Polled from another thread, under another set: merged with it.
        let f = std::thread::spawn(move || {
            super::super::with(&[("worker", "2")], || {
                assert!(poll_once(f.as_mut()).is_pending());
                assert_eq!(super::super::current().pairs(), &[("worker", "2")]);
            });
            f
        })
        .join()
        .unwrap();
        let mut f = f;
        let Poll::Ready(seen) = poll_once(f.as_mut()) else {
            panic!("ready at the third poll")
        };
        assert_eq!(seen[0].pairs(), &[("endpoint", "/a")]);
        assert_eq!(seen[1].pairs(), &[("endpoint", "/a"), ("worker", "2")]);
        assert_eq!(seen[2], seen[0]);
    }

    #[test]
    fn nested_wrappers_nest_like_scopes() {
        let inner = Probe(Vec::new()).with_labels([("step", "db"), ("endpoint", "/inner")]);
        let mut outer = Box::pin(inner.with_labels([("endpoint", "/outer"), ("tier", "gold")]));
        let _ = poll_once(outer.as_mut());
        let _ = poll_once(outer.as_mut());
        let Poll::Ready(seen) = poll_once(outer.as_mut()) else {
            panic!("ready at the third poll")
        };
        for set in seen {
            assert_eq!(
                set.pairs(),
                &[("endpoint", "/inner"), ("step", "db"), ("tier", "gold")]
            );
        }
        assert!(super::super::current().is_empty());
    }
}
