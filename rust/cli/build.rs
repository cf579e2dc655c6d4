//! With the `agones` feature: generates the server side of the Agones SDK's
//! gRPC service from `../server/proto/agones_sdk.proto`, for the in-test SDK
//! server of `tests/agones_instances.rs`.

fn main() {
    println!("cargo::rerun-if-changed=../server/proto/agones_sdk.proto");
    #[cfg(feature = "agones")]
    {
        let built = tonic_build::configure()
            .build_client(false)
            .build_server(true)
            .compile_protos(&["../server/proto/agones_sdk.proto"], &["../server/proto"]);
        if let Err(e) = built {
            println!(
                "cargo::error=cannot generate the Agones SDK test server (is protoc installed? scripts/install-protoc.sh): {e}"
            );
        }
    }
}
