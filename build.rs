//! Compiles the public contract in `proto/` with protox (no system protoc needed) and tonic-prost-build, and
//! writes the descriptor set that server reflection serves, plus each message's proto name (`codec::Described`),
//! which the codec uses to inspect a request against its descriptor before decoding it.

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

    tonic_prost_build::configure()
        .codec_path("crate::codec::ProtoCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
