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
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("musl") {
        fortify_shim();
    }
}

/// Debian's libseccomp.a (linked statically) was built against glibc and calls its fortified
/// `__fprintf_chk`, which musl lacks: src/container/seccomp/fortify.c provides it. Compiled
/// with the host's C compiler (`CC`, default `cc`) into an object passed to the linker as is,
/// so that it is linked whatever the order of the static libraries.
fn fortify_shim() {
    let source = "src/container/seccomp/fortify.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CC");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let object = out.join("fortify.o");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = std::process::Command::new(&compiler)
        .args([
            "-c",
            "-O2",
            "-fPIE",
            "-ffreestanding",
            "-fno-stack-protector",
            "-o",
        ])
        .arg(&object)
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("run {compiler}: {e}"));
    assert!(status.success(), "{compiler} failed on {source}");
    println!("cargo:rustc-link-arg={}", object.display());
}
