//! TLS: a round trip over TLS with a certificate made for the test; with `--tls-client-ca`, a client without a
//! certificate signed by that CA cannot connect.

use std::path::{Path, PathBuf};

use customer_context::pb::{self, customer_service_client::CustomerServiceClient};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

/// A CA, a server certificate for `localhost` and a client certificate, all signed by the CA, as PEM files.
struct Pki {
    dir: TempDir,
    ca: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["gadget-1".to_owned()])
            .unwrap()
            .signed_by(&client_key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            ca: ca.pem(),
            client_cert: client.pem(),
            client_key: client_key.serialize_pem(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

async fn tls_channel(
    addr: std::net::SocketAddr,
    pki: &Pki,
    with_client_cert: bool,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(&pki.client_cert, &pki.client_key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

fn serve_tls(
    pki: &Pki,
    client_ca: Option<&Path>,
) -> impl FnOnce(&mut customer_context::config::Settings) {
    let cert = pki.path("server.pem");
    let key = pki.path("server.key");
    let client_ca = client_ca.map(Path::to_owned);
    move |settings| {
        settings.security.tls_cert = Some(cert);
        settings.security.tls_key = Some(key);
        settings.security.tls_client_ca = client_ca;
    }
}

async fn create(channel: Channel) -> Result<pb::Customer, tonic::Status> {
    CustomerServiceClient::new(channel)
        .create_customer(as_agent(
            "ana",
            pb::CreateCustomerRequest {
                customer: Some(customer("Tina", "Tls")),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[apply(backends)]
#[tokio::test]
async fn calls_round_trip_over_tls_and_plaintext_is_refused(backend: Backend) {
    let pki = Pki::new();
    let app = or_skip!(TestApp::spawn_with(backend, serve_tls(&pki, None)).await);
    let channel = within("tls connect", tls_channel(app.addr, &pki, false))
        .await
        .expect("TLS connection");
    let created = create(channel.clone()).await.expect("call over TLS");
    let got = CustomerServiceClient::new(channel)
        .get_customer(pb::GetCustomerRequest { id: created.id })
        .await
        .expect("read over TLS")
        .into_inner();
    assert_eq!(got.first_name, "Tina");

    // The plaintext channel of the harness cannot talk to a TLS server.
    err(create(app.channel()).await);
}

#[apply(backends)]
#[tokio::test]
async fn with_a_client_ca_only_clients_with_a_signed_certificate_get_in(backend: Backend) {
    let pki = Pki::new();
    let ca = pki.path("ca.pem");
    let app = or_skip!(TestApp::spawn_with(backend, serve_tls(&pki, Some(&ca))).await);
    let anonymous = within("tls connect", tls_channel(app.addr, &pki, false)).await;
    match anonymous {
        Err(_) => {}
        // TLS 1.3 reports the missing certificate after the handshake: the first call fails.
        Ok(channel) => assert!(create(channel).await.is_err()),
    }
    let channel = within("tls connect", tls_channel(app.addr, &pki, true))
        .await
        .expect("mutual TLS connection");
    create(channel)
        .await
        .expect("call with a client certificate");
}
