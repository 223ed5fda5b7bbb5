//! How command-line tools reach a registry, and reading a component named
//! either by a file path or by an `oci:` reference.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::boundary::egress::EgressPolicy;
use crate::boundary::files::read_bounded;
use crate::registry::{Login, Reference, Registry, RegistrySettings};
use crate::runtime::MAX_COMPONENT_BYTES;

/// The prefix that makes a component argument a registry reference.
pub const OCI_PREFIX: &str = "oci:";

/// Registry options of `push`, `check`, `bench` and `simulate`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Reach the registry over plain HTTP instead of HTTPS (a registry on loopback or in a lab).
    #[arg(long)]
    plain_http: bool,
    /// User name for the registry; the password comes from WASM_AUTOSCALER_REGISTRY_PASSWORD
    /// or, with --password-stdin, from stdin.
    #[arg(long, env = "WASM_AUTOSCALER_REGISTRY_USERNAME")]
    username: Option<String>,
    /// Read the registry password from stdin.
    #[arg(long, requires = "username")]
    password_stdin: bool,
}

impl RegistryArgs {
    /// The login the options give, if any.
    pub fn login(&self) -> Result<Option<Login>> {
        let Some(username) = &self.username else {
            return Ok(None);
        };
        let password = if self.password_stdin {
            let mut text = String::new();
            std::io::stdin()
                .take(64 << 10)
                .read_to_string(&mut text)
                .context("reading the password from stdin")?;
            text.trim_end_matches(['\r', '\n']).to_string()
        } else {
            match std::env::var("WASM_AUTOSCALER_REGISTRY_PASSWORD") {
                Ok(p) => p,
                Err(_) => bail!(
                    "--username needs a password: set WASM_AUTOSCALER_REGISTRY_PASSWORD or pass --password-stdin"
                ),
            }
        };
        Ok(Some(Login {
            username: username.clone(),
            password,
        }))
    }

    /// Whether the registry is reached over plain HTTP.
    pub fn plain_http(&self) -> bool {
        self.plain_http
    }

    /// The component `arg` names: `oci:REFERENCE`, pulled, or a file path.
    pub fn read_component(&self, arg: &str) -> Result<Vec<u8>> {
        let Some(text) = arg.strip_prefix(OCI_PREFIX) else {
            return Ok(read_bounded(Path::new(arg), MAX_COMPONENT_BYTES)?);
        };
        let reference: Reference = text.parse()?;
        let settings = RegistrySettings {
            plain_http: if self.plain_http {
                vec![reference.api_host().to_string()]
            } else {
                Vec::new()
            },
            ..RegistrySettings::default()
        };
        // The user's own machine and reference: the operator's egress rules are not at stake.
        let registry =
            Registry::new(&settings, EgressPolicy::unrestricted()).map_err(anyhow::Error::msg)?;
        let login = self.login()?;
        let pulled = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?
            .block_on(registry.pull(&reference, login.as_ref(), "local", MAX_COMPONENT_BYTES))
            .with_context(|| format!("pulling {reference}"))?;
        Ok(pulled.bytes)
    }
}
