//! TLS for the server (rustls): a certificate chain and key, and optionally the CAs whose client certificates
//! are required.

use std::{path::Path, time::Duration};

use anyhow::Context as _;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::SecuritySettings;

/// A TLS handshake taking longer is dropped (a client that connects and stalls holds no resources long).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's TLS configuration, or None when no certificate is configured.
pub fn server_tls(settings: &SecuritySettings) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
        return Ok(None);
    };
    let identity = Identity::from_pem(read_pem(cert, "--tls-cert")?, read_pem(key, "--tls-key")?);
    let mut config = ServerTlsConfig::new()
        .identity(identity)
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(ca) = &settings.tls_client_ca {
        config = config
            .client_ca_root(Certificate::from_pem(read_pem(ca, "--tls-client-ca")?))
            .client_auth_optional(false);
    }
    Ok(Some(config))
}

fn read_pem(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    let pem =
        std::fs::read(path).with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        anyhow::bail!("{flag}: {} is not a PEM file", path.display());
    }
    Ok(pem)
}
