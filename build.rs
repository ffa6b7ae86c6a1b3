//! Compiles the shim's own protobuf messages (protos/) with the pure-Rust parser, so building
//! needs no system `protoc`.

fn main() {
    let inputs = [
        "protos/sibling/v1/options.proto",
        "protos/runtimeoptions/v1/api.proto",
        "protos/runctypes/runc.proto",
        "protos/containerd/types/introspection.proto",
    ];
    for input in inputs {
        println!("cargo:rerun-if-changed={input}");
    }
    protobuf_codegen::Codegen::new()
        .pure()
        .include("protos")
        .inputs(inputs)
        .cargo_out_dir("protos")
        .run_from_script();
}
