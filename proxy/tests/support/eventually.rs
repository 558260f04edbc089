//! The one bounded poll of the agent and proxy tests: instead of sleeping
//! "long enough", ask again until the answer comes or the time is up.
//! (Shared with the agent's tests through `#[path]`.)
use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] asks.
const EVERY: Duration = Duration::from_millis(20);

/// Calls `check` until it returns `Some`, at most for `within`; panics naming
/// `what` when the time is up. Returns what `check` found.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("not within {} ms: {what}", within.as_millis());
        }
        tokio::time::sleep(EVERY).await;
    }
}
