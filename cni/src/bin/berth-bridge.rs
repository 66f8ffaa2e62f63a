//! berth-bridge CNI plugin: not written yet. It refuses every command so
//! that no runtime mistakes it for a working plugin.
fn main() -> std::process::ExitCode {
    eprintln!("berth-bridge: not implemented yet");
    std::process::ExitCode::FAILURE
}
