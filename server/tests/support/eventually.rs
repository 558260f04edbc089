//! `eventually()`: the one bounded poll for "wait until the system gets
//! there" in the server's test binaries (included with `#[path]` by `api`
//! and `engine`). Never a fixed sleep: it returns as soon as the check
//! passes and fails loudly, with the last thing it saw, when time is up.
use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Ok` or `within` has passed; then panics
/// with `what` and the last `Err` it returned (describe the state seen).
/// Polls quickly at first (10 ms), backing off to 200 ms.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        let now = Instant::now();
        if now >= deadline {
            panic!("{what}: not after {within:?}; last seen: {last}");
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
