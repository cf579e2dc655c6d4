//! With the `agones` feature: generates the server side of the Agones SDK's
//! gRPC services from `proto/agones_sdk*.proto`, for the in-test SDK server
//! of `tests/agones.rs` (the SDK client comes from the `agones` crate).

fn main() {
    println!("cargo::rerun-if-changed=proto/agones_sdk.proto");
    println!("cargo::rerun-if-changed=proto/agones_sdk_alpha.proto");
    #[cfg(feature = "agones")]
    {
        let built = tonic_build::configure()
            .build_client(false)
            .build_server(true)
            .compile_protos(
                &["proto/agones_sdk.proto", "proto/agones_sdk_alpha.proto"],
                &["proto"],
            );
        if let Err(e) = built {
            println!(
                "cargo::error=cannot generate the Agones SDK test server (is protoc installed? scripts/install-protoc.sh): {e}"
            );
        }
    }
}
