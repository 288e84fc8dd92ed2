pub fn run(_e: &str) -> anyhow::Result<i32> {
    anyhow::bail!("todo")
}
