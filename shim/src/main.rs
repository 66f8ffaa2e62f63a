//! berth-shim: the per-pod monitor. See `proto` for how berthd starts and
//! talks to it.

mod pause;
mod shim;

fn main() {
    // `berth-shim pause <pod-id>`: a pod's PID namespace holder.
    if std::env::args_os().nth(1).is_some_and(|a| a == "pause") {
        std::process::exit(pause::main());
    }
    std::process::exit(shim::main(std::env::args_os().skip(1)));
}
