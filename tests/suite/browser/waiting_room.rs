//! The waiting room in Chromium, in English and in French, refreshing every 2 s: the place in
//! line goes down, the visitor is let in at the end, and a forged pass goes to the back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alveole_agent::ingress::{Ingress, Routes, Upstream};
use alveole_model::{Hostname, SiteId, SiteSpec, Wildcard};
use fantoccini::Client;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{browser_with, start_driver, text_of, text_within};

const HOST: &str = "ecole.example.org";

/// The school's site: one page, each answer whole (keep-alive).
async fn school() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut input = Vec::new();
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                    input.extend_from_slice(&buffer[..n]);
                    while let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") {
                        input.drain(..end + 4);
                        let body = "<!doctype html><html lang=\"fr\"><title>École</title><h1 id=\"site\">Bienvenue à l'école</h1></html>";
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    address
}

/// An ingress protecting the school: one visitor at a time, admitted for 3 s after their
/// last request, the page refreshing every 2 s.
async fn protected_school() -> SocketAddr {
    let site = SiteId::generate();
    let spec: SiteSpec = serde_json::from_value(json!({
        "site_id": site, "hostnames": [HOST], "image": "alveole-test/busybox:1",
        "command": [], "env": [], "http_port": 8080,
        "volume": {"quota_bytes": 1024, "mount_path": "/data"},
        "limits": {"cpu_millis": 100, "memory_bytes": 67108864, "pids": 64}, "run": true,
        "admission": {"active_visitors": 1, "concurrent_requests": 8,
                      "new_visitors_per_minute": 6000, "active_seconds": 3,
                      "refresh_seconds": 2, "key": "3c".repeat(32)}
    }))
    .unwrap();
    let mut routes = Routes::default();
    routes.insert(
        &Hostname::parse(HOST, Wildcard::Refused).unwrap(),
        Upstream {
            site,
            address: school().await,
        },
    );
    let ingress = Arc::new(Ingress::new().with_waiting_room_style("h1{color:#005a5a}"));
    ingress.set_admissions(&[spec]);
    ingress.set_routes(routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(ingress.serve(listener));
    address
}

/// A visitor outside the browser, keeping the pass the ingress gives them.
struct Visitor {
    client: reqwest::Client,
    url: String,
    pass: Option<String>,
}

impl Visitor {
    fn new(ingress: SocketAddr) -> Self {
        Self {
            client: reqwest::Client::builder()
                .resolve(HOST, ingress)
                .build()
                .unwrap(),
            url: format!("http://{HOST}:{}/", ingress.port()),
            pass: None,
        }
    }

    /// A page's status (errors count as 0).
    async fn visit(&mut self) -> u16 {
        let mut request = self.client.get(&self.url).header("accept", "text/html");
        if let Some(pass) = &self.pass {
            request = request.header("cookie", pass);
        }
        let Ok(answer) = request.send().await else {
            return 0;
        };
        if let Some(cookie) = answer
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
        {
            self.pass = cookie.split(';').next().map(str::to_owned);
        }
        answer.status().as_u16()
    }
}

/// Someone who takes a place in line, then refreshes every 300 ms until admitted, then
/// leaves (their admission runs out 3 s later).
async fn other_visitor(ingress: SocketAddr) -> tokio::task::JoinHandle<()> {
    let mut visitor = Visitor::new(ingress);
    assert_eq!(visitor.visit().await, 503, "someone is in");
    tokio::spawn(async move {
        // Bounded: a test that fails gives up after a minute.
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if visitor.visit().await == 200 {
                return;
            }
        }
    })
}

/// Someone who gets in and stays (refreshing) until told to leave.
async fn occupant(ingress: SocketAddr) -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let mut visitor = Visitor::new(ingress);
    // Whoever was in before leaves within seconds: wait in line until then (bounded).
    let mut tries = 0;
    while visitor.visit().await != 200 {
        tries += 1;
        assert!(tries < 100, "never let in");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let leave = Arc::new(AtomicBool::new(false));
    let stays = tokio::spawn({
        let leave = leave.clone();
        async move {
            for _ in 0..200 {
                if leave.load(Ordering::Relaxed) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                visitor.visit().await;
            }
        }
    });
    (leave, stays)
}

async fn place(client: &Client, wanted: &str) -> String {
    text_within(
        client,
        ".place strong",
        |text| text == wanted,
        Duration::from_secs(30),
    )
    .await
}

async fn admitted(client: &Client) {
    text_within(
        client,
        "#site",
        |text| text.contains("Bienvenue"),
        Duration::from_secs(40),
    )
    .await;
}

#[tokio::test]
async fn browser_waits_in_line_in_english_and_french_and_a_forged_pass_goes_to_the_back() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let ingress = protected_school().await;
    let rules = format!(
        "--host-resolver-rules=MAP {HOST} 127.0.0.1:{}",
        ingress.port()
    );
    let url = format!("http://{HOST}:{}/", ingress.port());

    // In English: someone is in, someone waits ahead; the browser is second, then first,
    // then let in, each step by the page's own refresh.
    let (leave, inside) = occupant(ingress).await;
    let ahead = other_visitor(ingress).await;
    let english = browser_with(&driver, std::slice::from_ref(&rules)).await;
    english.goto(&url).await.unwrap();
    place(&english, "2").await;
    let page = text_of(&english, "main").await;
    assert!(
        page.contains("Your place in line") && page.contains("Estimated wait"),
        "{page}"
    );
    leave.store(true, Ordering::Relaxed);
    place(&english, "1").await;
    admitted(&english).await;
    english.close().await.unwrap();
    let _ = (inside.await, ahead.await);

    // In French, with a pass altered by hand: back behind whoever joined after it.
    let (leave, inside) = occupant(ingress).await;
    let french = browser_with(&driver, &[rules, "--accept-lang=fr-FR,fr".to_owned()]).await;
    french.goto(&url).await.unwrap();
    place(&french, "1").await;
    let page = text_of(&french, "main").await;
    assert!(page.contains("Votre place dans la file"), "{page}");
    let behind = other_visitor(ingress).await;
    let mut pass = french.get_named_cookie("alveole_pass").await.unwrap();
    let forged = pass.value().replacen(".w.", ".a.", 1);
    assert_ne!(forged, pass.value());
    pass.set_value(forged);
    french.delete_cookie("alveole_pass").await.unwrap();
    french.add_cookie(pass).await.unwrap();
    place(&french, "2").await;
    leave.store(true, Ordering::Relaxed);
    admitted(&french).await;
    french.close().await.unwrap();
    let _ = (inside.await, behind.await);
}
