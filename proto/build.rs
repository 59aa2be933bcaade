//! Generates the gRPC code from `proto/` with protox (pure Rust), so no system `protoc` is needed,
//! and keeps the encoded descriptor set for gRPC reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/tessera/cluster/v2/cluster.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tessera_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
