//! `wasm-autoscaler push`: a component to a registry as a Wasm OCI artifact.
//!
//! Pushing runs on a policy author's machine with the author's own
//! credentials, so it uses a maintained OCI client (`oci-client`) as it
//! is; the operator pulls with its own egress-bounded client (`pull.rs`).
//! The artifact follows the CNCF Wasm OCI artifact layout: one layer of
//! media type `application/wasm`, a config of media type
//! `application/vnd.wasm.config.v0+json`. Nothing time-dependent goes in,
//! so the same component always gets the same digest.

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference as Target, RegistryOperation};
use sha2::{Digest as _, Sha256};

use super::{Login, Reference};

/// The config media type of the CNCF Wasm OCI artifact layout.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type this project pushes.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The manifest media type this project pushes.
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("`{0}` is not a registry reference: {1}")]
    Reference(String, String),
    #[error("{0}")]
    Registry(#[from] oci_client::errors::OciDistributionError),
}

/// What a push made.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The pinned reference to put in a spec's `oci.reference`.
    pub reference: Reference,
    /// The component's own sha256 (what `sha256` pins in a spec).
    pub component_sha256: String,
}

/// Pushes `component` to `target` (`registry/repository[:tag]`), over plain
/// HTTP when `plain_http`, as `login` when given.
pub async fn push(
    component: &[u8],
    target: &str,
    plain_http: bool,
    login: Option<&Login>,
) -> Result<Pushed, PushError> {
    let bad = |why: String| PushError::Reference(target.to_string(), why);
    let parsed: Target = target
        .parse()
        .map_err(|e: oci_client::ParseError| bad(e.to_string()))?;
    if parsed.digest().is_some() {
        return Err(bad(
            "give `registry/repository` or `registry/repository:tag`; the digest is what the push prints"
                .into(),
        ));
    }
    let tagged = target
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'));
    let registry = parsed.registry().to_string();
    let protocol = if plain_http {
        ClientProtocol::HttpsExcept(vec![registry.clone()])
    } else {
        ClientProtocol::Https
    };
    // oci-client's HTTP client takes the process-wide TLS provider; this
    // project builds rustls with ring only (an error means one is installed).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = oci_client::Client::new(ClientConfig {
        protocol,
        ..Default::default()
    });
    let auth = login.map_or(RegistryAuth::Anonymous, |l| {
        RegistryAuth::Basic(l.username.clone(), l.password.clone())
    });
    client.auth(&parsed, &auth, RegistryOperation::Push).await?;

    let layer_digest = sha256_digest(component);
    let config_bytes = serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [&layer_digest],
    }))
    .expect("a JSON value serializes");
    let config = Config::new(config_bytes.clone(), WASM_CONFIG_MEDIA_TYPE.into(), None);
    let layer = ImageLayer::new(component.to_vec(), WASM_LAYER_MEDIA_TYPE.into(), None);
    let mut manifest = OciImageManifest::build(&[layer], &config, None);
    manifest.media_type = Some(MANIFEST_MEDIA_TYPE.into());
    let manifest_bytes = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let manifest_digest = sha256_digest(&manifest_bytes);

    client
        .push_blob(&parsed, config_bytes.clone(), &sha256_digest(&config_bytes))
        .await?;
    client
        .push_blob(&parsed, component.to_vec(), &layer_digest)
        .await?;
    let destination = if tagged {
        parsed.clone()
    } else {
        Target::with_digest(
            registry.clone(),
            parsed.repository().to_string(),
            manifest_digest.clone(),
        )
    };
    client
        .push_manifest_raw(
            &destination,
            manifest_bytes,
            MANIFEST_MEDIA_TYPE.parse().expect("a valid header value"),
        )
        .await?;
    let reference = format!("{registry}/{}@{manifest_digest}", parsed.repository())
        .parse()
        .map_err(|e: super::ReferenceError| bad(e.to_string()))?;
    Ok(Pushed {
        reference,
        component_sha256: hex::encode(Sha256::digest(component)),
    })
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
