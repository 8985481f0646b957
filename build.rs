//! Compiles the protos with protox (no `protoc` needed), generates the tonic
//! services, and writes the descriptor set that reflection serves and that
//! `orgd descriptor` hands to Envoy.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "orgd/v1/resources.proto",
    "orgd/v1/organization_service.proto",
    "orgd/v1/aggregation_service.proto",
    "orgd/v1/space_service.proto",
    "google/api/httpbody.proto",
    // Not imported by the services, but Envoy needs these types in the
    // descriptor set to render error details as JSON.
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS)?;

    std::fs::write(
        out_dir.join("orgd_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        // Generated next to orgd.v1 (see `proto::google_api` in lib.rs).
        .extern_path(".google.api.HttpBody", "crate::proto::google_api::HttpBody")
        // Maps encode in key order, so equal requests encode to equal
        // bytes (request fingerprints of idempotent retries).
        .btree_map(".")
        // Small first codec buffers (see `api::codec`).
        .codec_path("crate::api::codec::SmallBufferCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
