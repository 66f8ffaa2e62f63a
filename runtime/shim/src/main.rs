//! berth-shim: being built (containers issue). Exits 1 until then.
fn main() {
    eprintln!("berth-shim: not built yet");
    std::process::exit(1);
}
