//! [`Fetch`]: data a page loads from the API, a light stand-in for Leptos'
//! `LocalResource`.
//!
//! Every page loads a few things; with `LocalResource` each payload type
//! instantiated the whole async-derived machinery (wakers, suspense hooks,
//! subscriber lists) once more, which was a large share of the wasm. Here the
//! reactive part (an effect that re-runs the fetcher when the signals it reads
//! change, and spawns the request) is one non-generic function; per type there
//! is only the signal holding the answer and the small future that stores it.
use leptos::{prelude::*, task::spawn_local};
use std::{cell::Cell, future::Future, pin::Pin, rc::Rc};

type Run = Box<dyn Fn(Rc<Cell<u64>>, u64) -> Pin<Box<dyn Future<Output = ()>>>>;

/// The latest answer of a fetcher: `None` until the first one arrives, then
/// the newest (a re-fetch keeps showing the previous answer until it lands;
/// an answer overtaken by a newer request is dropped).
pub struct Fetch<T: 'static> {
    value: RwSignal<Option<T>, LocalStorage>,
}

impl<T: 'static> Clone for Fetch<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: 'static> Copy for Fetch<T> {}

impl<T: 'static> Fetch<T> {
    /// Runs `fetcher` now (after the current tick) and again whenever a
    /// signal it reads (synchronously) changes, like `LocalResource::new`.
    pub fn new<Fut>(fetcher: impl Fn() -> Fut + 'static) -> Self
    where
        Fut: Future<Output = T> + 'static,
    {
        let value = RwSignal::new_local(None);
        start(Box::new(move |latest, generation| {
            let fut = fetcher();
            Box::pin(async move {
                let answer = fut.await;
                if latest.get() == generation {
                    value.try_set(Some(answer));
                }
            })
        }));
        Self { value }
    }

    /// The latest answer (tracked).
    pub fn get(&self) -> Option<T>
    where
        T: Clone,
    {
        self.value.get()
    }

    /// Borrows the latest answer (tracked).
    pub fn with<R>(&self, f: impl FnOnce(&Option<T>) -> R) -> R {
        self.value.with(f)
    }

    /// Borrows the latest answer without tracking it.
    pub fn with_untracked<R>(&self, f: impl FnOnce(&Option<T>) -> R) -> R {
        self.value.with_untracked(f)
    }
}

/// The reactive part, shared by every `Fetch<T>`: one effect owned by the
/// current component, so it stops with it.
#[inline(never)]
fn start(run: Run) {
    let latest = Rc::new(Cell::new(0u64));
    Effect::new(move || {
        let generation = latest.get() + 1;
        latest.set(generation);
        spawn_local(run(Rc::clone(&latest), generation));
    });
}
