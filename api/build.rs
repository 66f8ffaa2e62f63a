fn main() {
    tonic_prost_build::configure()
        .compile_protos(&["proto/berth/v1/berth.proto"], &["proto"])
        .expect("compiling proto/berth/v1/berth.proto (is protoc installed? scripts/install-deps)");
}
