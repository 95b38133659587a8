//! The identity provider checked when `alveole serve` starts: a wrong issuer stops it with
//! the setting to use; a provider that cannot be reached yet does not.

use std::io::{Read, Write};
use std::process::Command;

use crate::start_server_with;

/// A discovery document served on loopback, naming `issuer_of(its own address)` as its
/// issuer, to every request until the test ends: its address.
fn discovery_server(issuer_of: fn(&str) -> String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let body = serde_json::json!({
        "issuer": issuer_of(&address),
        "authorization_endpoint": format!("{address}/authorize"),
        "token_endpoint": format!("{address}/token"),
        "jwks_uri": format!("{address}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    })
    .to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

#[test]
fn a_panel_with_a_wrong_issuer_refuses_to_start_and_says_what_to_set() {
    // The provider names itself with a trailing slash (as LemonLDAP::NG does); the panel
    // is given the address without it.
    let provider = discovery_server(|address| format!("{address}/"));
    let dir = std::env::temp_dir().join(format!("alveole-cli-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_alveole"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--oidc-issuer",
            &provider,
        ])
        .current_dir(&dir)
        .env(
            "ALVEOLE_DATABASE_URL",
            format!("sqlite://{}", dir.join("panel.db").display()),
        )
        .env("ALVEOLE_LOCAL_AGENT", "false")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "it started: {stderr}");
    assert!(
        stderr.contains(&format!("--oidc-issuer \"{provider}/\"")),
        "{stderr}"
    );
}

#[test]
fn a_panel_whose_provider_does_not_answer_yet_starts_and_keeps_trying() {
    // Nothing listens on the discard port. The server is started once it says it listens.
    let server = start_server_with(&["--oidc-issuer", "http://127.0.0.1:9"], None);
    let logs = server.stop_and_logs();
    assert!(
        logs.contains("cannot be reached") && logs.contains("trying again in the background"),
        "{logs}"
    );
}
