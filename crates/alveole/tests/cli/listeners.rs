//! The panel's listener under a slowloris attack, as the real binary with few descriptors.

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
