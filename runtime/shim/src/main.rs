//! berth-shim: the per-pod monitor. See `proto` for how berthd starts and
//! talks to it.

mod shim;

fn main() {
    std::process::exit(shim::main(std::env::args_os().skip(1)));
}
