//! Compiles proto/ with protox (a pure-Rust protobuf compiler: no system protoc) and generates the
//! tonic servers and clients of `spaceone.api.cost_analysis.v1.Job` and `JobTask`. The file
//! descriptor set is kept in OUT_DIR for gRPC server reflection.
//!
//! The servers are generated apart (OUT_DIR/server) with every message external: the requests
//! are the generated messages, but each answer (JobInfo, JobsInfo, JobTaskInfo, JobTasksInfo,
//! Struct) is `api::grpc::wire::Proto`, protobuf bytes written straight from the engine's fields,
//! so the server never builds an owned message only to encode it. Clients decode the generated
//! messages.

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
        .build_server(false)
        .build_client(true)
        .build_transport(false)
        .compile_fds(fds.clone())?;
    let server = out.join("server");
    std::fs::create_dir_all(&server)?;
    let wire = "crate::api::grpc::wire::Proto";
    let mut servers = tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .build_transport(false)
        .out_dir(server)
        .extern_path(
            ".spaceone.api.cost_analysis.v1",
            "crate::api::grpc::pb::job",
        )
        .extern_path(".spaceone.api.core.v1", "crate::api::grpc::pb::core")
        .extern_path(".google.api", "crate::api::grpc::pb::google::api")
        .extern_path(".google.protobuf.Struct", wire);
    for answer in ["JobInfo", "JobsInfo", "JobTaskInfo", "JobTasksInfo"] {
        servers = servers.extern_path(format!(".spaceone.api.cost_analysis.v1.{answer}"), wire);
    }
    servers.compile_fds(fds)?;
    Ok(())
}
