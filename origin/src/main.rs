//! The origin aggregator. Filled in by the origin issue.

fn main() {
    eprintln!("equilibrium-origin: not built yet (see the origin issue)");
    std::process::exit(2);
}
