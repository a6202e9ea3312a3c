mod sdk;

fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("sdk") => sdk::run(),
        _ => anyhow::bail!("usage: cargo xtask sdk"),
    }
}
