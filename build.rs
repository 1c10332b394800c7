//! Compiles proto/ with protox (a pure-Rust protobuf compiler: no system protoc) and generates the
//! tonic servers and clients of `spaceone.api.cost_analysis.v1.Job` and `JobTask`. The file
//! descriptor set is kept in OUT_DIR for gRPC server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        [
            "spaceone/api/cost_analysis/v1/job.proto",
            "spaceone/api/cost_analysis/v1/job_task.proto",
        ],
        ["proto"],
    )?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("spaceone_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
