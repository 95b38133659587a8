//! The two halves of `bench/ingress.sh`: a keep-alive backend answering `hello`, and
//! alveole's ingress with one route in front of it (nginx is the peer the script measures).

/// A minimal keep-alive HTTP/1.1 server: the same backend behind both proxies.
pub async fn backend(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("backend listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"hello\n"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Where and with what the benchmark's ingress serves HTTPS.
#[derive(Debug)]
pub struct TlsSetup {
    pub listen: std::net::SocketAddr,
    pub certificate: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

pub async fn proxy(
    listen: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    host: &str,
    tls: Option<TlsSetup>,
) -> anyhow::Result<()> {
    use alveole_agent::ingress::{Ingress, Routes, Upstream};
    let hostname = alveole_model::Hostname::parse(host, alveole_model::Wildcard::Refused)?;
    let site = alveole_model::SiteId::generate();
    let mut routes = Routes::default();
    routes.insert(
        &hostname,
        Upstream {
            site,
            address: upstream,
        },
    );
    let ingress = std::sync::Arc::new(Ingress::new());
    ingress.set_routes(routes);
    if let Some(tls) = tls {
        let spec = site_with_certificate(site, hostname, &tls)?;
        let refused = ingress.set_certificates(&[spec]);
        anyhow::ensure!(refused.is_empty(), "the certificate: {refused:?}");
        let listener = tokio::net::TcpListener::bind(tls.listen).await?;
        println!("ingress HTTPS listening on {}", listener.local_addr()?);
        tokio::spawn(ingress.clone().serve_tls(listener));
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("ingress listening on {}", listener.local_addr()?);
    ingress.serve(listener).await?;
    Ok(())
}

/// The benchmark's one site, with the certificate of `tls` and no redirect (both listeners
/// serve it).
fn site_with_certificate(
    site: alveole_model::SiteId,
    hostname: alveole_model::Hostname,
    tls: &TlsSetup,
) -> anyhow::Result<alveole_model::SiteSpec> {
    Ok(alveole_model::SiteSpec {
        site_id: site,
        hostnames: vec![hostname],
        image: alveole_model::ImageRef::parse("bench/none:1")?,
        command: vec![],
        env: vec![],
        http_port: 80,
        volume: Default::default(),
        limits: Default::default(),
        security: Default::default(),
        run: true,
        dedicated_addresses: vec![],
        exposed_ports: vec![],
        limit_tier: Default::default(),
        backup: None,
        tls: Some(alveole_model::SiteTls {
            chain_pem: std::fs::read_to_string(&tls.certificate)?,
            key_pem: alveole_model::backup::WireSecret(std::fs::read_to_string(&tls.key)?),
            redirect: false,
            hsts_seconds: 0,
        }),
        admission: None,
        databases: vec![],
        databases_stay_up: false,
    })
}

/// Opens TLS connections to `connect` for `within`, `connections` at a time, each with a full
/// handshake (resumption off) and one `GET /` with `Connection: close`; prints how many per
/// second. The server's chain is not checked against roots (its signature is): the load
/// generator's own cost is kept low, and the same for every server measured.
pub async fn handshakes(
    connect: std::net::SocketAddr,
    host: &str,
    connections: usize,
    within: std::time::Duration,
) -> anyhow::Result<()> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())?;
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let deadline = tokio::time::Instant::now() + within;
    let started = std::time::Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (connector, name, request) = (connector.clone(), name.clone(), request.clone());
        clients.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut done, mut failed) = (0u64, 0u64);
            while tokio::time::Instant::now() < deadline {
                let attempt = async {
                    let stream = tokio::net::TcpStream::connect(connect).await?;
                    stream.set_nodelay(true)?;
                    let mut tls = connector.connect(name.clone(), stream).await?;
                    tls.write_all(request.as_bytes()).await?;
                    let mut answer = Vec::new();
                    // A server may end without close_notify: what was read is the answer.
                    let _ = tls.read_to_end(&mut answer).await;
                    anyhow::ensure!(answer.starts_with(b"HTTP/1.1 200"), "not a 200");
                    Ok(())
                };
                match attempt.await {
                    Ok(()) => done += 1,
                    Err(_) => failed += 1,
                }
            }
            (done, failed)
        });
    }
    let (mut done, mut failed) = (0, 0);
    while let Some(outcome) = clients.join_next().await {
        let (d, f) = outcome?;
        done += d;
        failed += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "handshakes {done} in {seconds:.2} s: {:.0}/s ({failed} failed)",
        done as f64 / seconds
    );
    anyhow::ensure!(failed == 0, "{failed} connections failed");
    Ok(())
}

/// Accepts any certificate, and checks signatures as rustls would (the handshake's work
/// stays whole on the server's side).
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
