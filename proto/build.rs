//! Generates the gRPC code from `proto/` with protox (pure Rust), so no system `protoc` is needed,
//! and keeps the encoded descriptor set for gRPC reflection. Two sets: Tessera's own API (client
//! and server, and the descriptor set reflection serves), and the part of etcd's v3 API the
//! control plane's etcd store uses (client only).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/tessera/cluster/v2/cluster.proto"];
    let etcd = ["proto/etcd/api/etcdserverpb/rpc.proto"];
    for file in files
        .iter()
        .chain(&etcd)
        .chain(&["proto/etcd/api/mvccpb/kv.proto"])
    {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tessera_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(protox::compile(etcd, ["proto"])?)?;
    Ok(())
}
