//! [`Fetch`]: data a page loads from the API, a light stand-in for Leptos'
//! `LocalResource`.
//!
//! Every page loads a few things, each of its own type. Reactive machinery is
//! compiled once per value type it holds (a signal of `Vec<Service>` and one
//! of `Host` are two copies of the signal code), so a generic resource costs
//! the wasm a few kilobytes per payload type. Here nothing reactive is
//! generic: the answer is kept type-erased (`Rc<dyn Any>`) in one signal type,
//! the effect that re-runs the fetcher when the signals it reads change is one
//! function, and per payload type there is only the small future that fetches
//! it and a downcast when it is read.
use leptos::{prelude::*, task::spawn_local};
use std::{any::Any, cell::Cell, future::Future, marker::PhantomData, pin::Pin, rc::Rc};

/// An answer, whatever its type.
type Answer = Rc<dyn Any>;
type Run = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Answer>>>>;

/// The latest answer of a fetcher: `None` until the first one arrives, then
/// the newest (a re-fetch keeps showing the previous answer until it lands;
/// an answer overtaken by a newer request is dropped).
pub struct Fetch<T: 'static> {
    value: RwSignal<Option<Answer>, LocalStorage>,
    ty: PhantomData<fn() -> T>,
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
        start(
            value,
            Box::new(move || {
                let fut = fetcher();
                Box::pin(async move { Rc::new(fut.await) as Answer })
            }),
        );
        Self {
            value,
            ty: PhantomData,
        }
    }

    /// The latest answer (tracked).
    pub fn get(&self) -> Option<T>
    where
        T: Clone,
    {
        self.with(|v| v.cloned())
    }

    /// Borrows the latest answer (tracked).
    pub fn with<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        f(self
            .value
            .get()
            .as_deref()
            .and_then(<dyn Any>::downcast_ref))
    }

    /// Borrows the latest answer without tracking it.
    pub fn with_untracked<R>(&self, f: impl FnOnce(Option<&T>) -> R) -> R {
        f(self
            .value
            .get_untracked()
            .as_deref()
            .and_then(<dyn Any>::downcast_ref))
    }
}

/// The reactive part, shared by every `Fetch<T>`: one effect owned by the
/// current component, so it stops with it. Each run spawns the request; an
/// answer is stored only if no newer run started meanwhile.
#[inline(never)]
fn start(value: RwSignal<Option<Answer>, LocalStorage>, run: Run) {
    let latest = Rc::new(Cell::new(0u64));
    Effect::new(move || {
        let generation = latest.get() + 1;
        latest.set(generation);
        let answer = run();
        let latest = Rc::clone(&latest);
        spawn_local(async move {
            let answer = answer.await;
            if latest.get() == generation {
                value.try_set(Some(answer));
            }
        });
    });
}
