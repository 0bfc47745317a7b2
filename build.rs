//! Compiles the public contract in `proto/` with protox (no system protoc needed) and tonic-prost-build, and
//! writes the descriptor set that server reflection serves, plus each message's proto name (`codec::Described`),
//! which the codec uses to inspect a request against its descriptor before decoding it; and, for every service
//! whose methods are all unary, its implementation: a struct `<Name>Api` whose methods call the handler of the
//! same name in `crate::api::handlers` (see `crate::api::Call`), so no hand-kept list of methods exists.

use std::{env, fmt::Write as _, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from("proto");
    let files: Vec<PathBuf> = std::fs::read_dir(proto_dir.join("customer_context/v1"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!("cargo:rerun-if-changed=proto");

    let descriptors = protox::compile(&files, [&proto_dir])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("customer_context_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;

    // `impl Described for Message` for every top-level message of the package, naming its descriptor.
    let mut described = String::new();
    for file in descriptors
        .file
        .iter()
        .filter(|file| file.package() == "customer_context.v1")
    {
        for message in &file.message_type {
            writeln!(
                described,
                "impl crate::codec::Described for {name} {{ const FULL_NAME: Option<&'static str> = \
                 Some(\"{package}.{name}\"); }}",
                name = message.name(),
                package = file.package(),
            )?;
        }
    }
    std::fs::write(out_dir.join("customer_context_described.rs"), described)?;
    std::fs::write(
        out_dir.join("customer_context_services.rs"),
        unary_services(&descriptors)?,
    )?;

    tonic_prost_build::configure()
        .codec_path("crate::codec::ProtoCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}

/// The implementation of every service of the package whose methods are all unary (see the crate docs above).
fn unary_services(descriptors: &prost_types::FileDescriptorSet) -> Result<String, std::fmt::Error> {
    const PACKAGE: &str = "customer_context.v1";
    let rust_type = |proto: &str| match proto {
        ".google.protobuf.Empty" => "()".to_owned(),
        other => format!(
            "crate::pb::{}",
            other.trim_start_matches(&format!(".{PACKAGE}.") as &str)
        ),
    };
    let mut out = String::new();
    for file in descriptors.file.iter().filter(|f| f.package() == PACKAGE) {
        for service in &file.service {
            if service
                .method
                .iter()
                .any(|m| m.client_streaming() || m.server_streaming())
            {
                continue;
            }
            let name = service.name();
            let api = format!("{}Api", name.trim_end_matches("Service"));
            let module = format!("{}_server", snake_case(name));
            writeln!(
                out,
                "/// `{PACKAGE}.{name}`: each method calls its handler in `crate::api::handlers`.\n\
                 pub struct {api} {{ state: crate::api::ApiState }}\n\
                 impl {api} {{ pub fn new(state: crate::api::ApiState) -> Self {{ Self {{ state }} }} }}\n\
                 #[tonic::async_trait]\n\
                 impl crate::pb::{module}::{name} for {api} {{"
            )?;
            for method in &service.method {
                writeln!(
                    out,
                    "    async fn {rpc}(&self, request: tonic::Request<{input}>) \
                     -> Result<tonic::Response<{output}>, tonic::Status> {{\n\
                     \x20       let call = crate::api::Call::new(&self.state, request)?;\n\
                     \x20       crate::api::respond(crate::api::handlers::{rpc}(call).await)\n\
                     \x20   }}",
                    rpc = snake_case(method.name()),
                    input = rust_type(method.input_type()),
                    output = rust_type(method.output_type()),
                )?;
            }
            writeln!(out, "}}")?;
        }
    }
    Ok(out)
}

/// `OpenContext` as `open_context`: how tonic names a method (and prost a module) after a proto name.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
