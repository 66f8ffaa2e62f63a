//! berth-runtime: being built (containers issue). Exits 1 until then.
fn main() {
    eprintln!("berth-runtime: not built yet");
    std::process::exit(1);
}
