fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        .compile_protos(&["proto/berth/v1/berth.proto"], &["proto"])
        .map_err(|e| {
            format!("compiling proto/berth/v1/berth.proto (is protoc installed? scripts/install-deps): {e}")
        })?;
    Ok(())
}
