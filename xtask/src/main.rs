//! `cargo xtask` — the steps of `scripts/build-policies` that need the
//! component-model libraries: generating C bindings from `wit/` and turning a
//! `wasm32-wasi` core module into a component with the WASI preview1
//! adapter. Built from crates.io inside the workspace, so no `wit-bindgen`
//! or `wasm-tools` binary has to be installed.

use std::path::Path;

use anyhow::{bail, Context, Result};
use wit_component::ComponentEncoder;
use wit_parser::Resolve;

const USAGE: &str = "\
usage:
  cargo xtask c-bindings WIT_DIR WORLD OUT_DIR
      writes WORLD's C bindings generated from WIT_DIR into OUT_DIR: WORLD.h, WORLD.c
      and WORLD_component_type.o (link it in: it carries the world's types)
  cargo xtask componentize CORE.wasm OUT.wasm
      makes a wasm32-wasi core module linked with those bindings a component,
      adapting WASI preview1 imports with the adapter shipped in the
      wasi-preview1-component-adapter-provider crate";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["c-bindings", wit, world, out] => c_bindings(Path::new(wit), world, Path::new(out)),
        ["componentize", core, out] => componentize(Path::new(core), Path::new(out)),
        _ => bail!("{USAGE}"),
    }
}

/// The resolved WIT package in `wit` and the id of its world `world`.
fn load_world(wit: &Path, world: &str) -> Result<(Resolve, wit_parser::WorldId)> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading WIT from {}", wit.display()))?;
    let id = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("finding world `{world}` in {}", wit.display()))?;
    Ok((resolve, id))
}

fn c_bindings(wit: &Path, world: &str, out: &Path) -> Result<()> {
    let (mut resolve, id) = load_world(wit, world)?;
    let mut files = wit_bindgen_core::Files::default();
    // Besides the header and source this writes `WORLD_component_type.o`, a
    // wasm object carrying the world's type information, which the link
    // step must include so `componentize` can find it.
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, id, &mut files)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, contents) in files.iter() {
        let path = out.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn componentize(core: &Path, out: &Path) -> Result<()> {
    let module = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = ComponentEncoder::default()
        .module(&module)
        .context("reading the core module (was WORLD_component_type.o linked in?)")?
        .validate(true)
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("loading the WASI preview1 adapter")?
        .encode()
        .context("encoding the component")?;
    std::fs::write(out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
