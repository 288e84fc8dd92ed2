//! Waiting for something a test cannot be told about, by asking again.

use std::time::{Duration, Instant};

use anyhow::ensure;

/// Asks `done` every 100 ms until it says yes; an error after `limit`.
pub fn wait_for(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done()? {
        ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
