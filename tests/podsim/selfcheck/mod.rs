//! placeholder
pub mod inside;
pub mod probe;
pub fn run(_opts: &crate::cli::PodOpts) -> anyhow::Result<i32> {
    anyhow::bail!("todo")
}
