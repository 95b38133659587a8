//! The panel's listener under a slowloris attack, as the real binary with few descriptors;
//! and over HTTPS with a certificate given to it.

use std::io::Read;

use crate::start_server_with;

/// `GET /healthz` on a new connection: its status, if it was answered within 10 seconds.
fn healthz(address: &str) -> Option<u16> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// The reproduction of a slowloris attack that once took the panel down: 300 connections
/// that send half a request's head, under a limit of 256 open files. The panel keeps
/// answering (it closes the oldest half head to let a newcomer in) and closes every half
/// head within its header timeout; it never runs out of descriptors.
#[test]
fn half_sent_requests_cannot_take_the_panels_descriptors() {
    use std::io::Write;
    let server = start_server_with(
        &[
            "--header-timeout-seconds",
            "2",
            "--max-unfinished-per-client",
            "1000",
        ],
        Some(256),
    );
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..300 {
        if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
            held.push(stream);
        }
    }
    for _ in 0..5 {
        assert_eq!(
            healthz(&address),
            Some(200),
            "answered while the half heads are held"
        );
    }
    for stream in &mut held {
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(0) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a half head was not closed within the timeout: {other:?}"),
        }
    }
    assert_eq!(healthz(&address), Some(200));
    let logs = server.stop_and_logs();
    assert!(
        !logs.contains("Too many open files"),
        "the panel ran out of descriptors:\n{logs}"
    );
}

/// Given a certificate, the panel serves HTTPS itself (and nothing in plain HTTP there), its
/// session cookies secure; a certificate that does not load stops it at start, naming the flag.
#[test]
fn the_panel_serves_https_with_the_certificate_it_is_given() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("alveole-https-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let certificate = params.self_signed(&key).unwrap();
    let (chain, key_file) = (dir.join("panel.pem"), dir.join("panel.key"));
    std::fs::write(&chain, certificate.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let server = start_server_with(
        &[
            "--tls-certificate",
            chain.to_str().unwrap(),
            "--tls-key",
            key_file.to_str().unwrap(),
        ],
        None,
    );
    let https = server.url.replace("http://", "https://");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(certificate.pem().as_bytes()).unwrap()])
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let health = client.get(format!("{https}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let signed_in = client
            .post(format!("{https}/login"))
            .form(&[("token", server.token.as_str())])
            .send()
            .await
            .unwrap();
        let cookie = signed_in
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            cookie.starts_with("__Host-") && cookie.contains("Secure"),
            "{cookie}"
        );
        assert!(
            reqwest::get(format!("{}/healthz", server.url))
                .await
                .is_err(),
            "no plain HTTP on the HTTPS port"
        );
    });

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_alveole"))
        .args(["serve", "--local-agent", "false", "--listen", "127.0.0.1:0"])
        .args(["--tls-certificate", key_file.to_str().unwrap()])
        .args(["--tls-key", key_file.to_str().unwrap()])
        .current_dir(&dir)
        .env(
            "ALVEOLE_DATABASE_URL",
            format!("sqlite://{}", dir.join("refused.db").display()),
        )
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--tls-certificate"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
