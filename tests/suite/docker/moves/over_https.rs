//! A site with a certificate moves while a client asks for it over HTTPS every 5 ms, at the
//! node its address leads to (the old one until the switch, the new one from then on): the
//! new node holds the certificate before the switch, so no handshake and no request fails.

use super::*;

/// A CA of the test's, and a certificate it signed for `name`: (CA, chain, key) in PEM.
fn certificate_for(name: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (
        ca.pem(),
        format!("{}{}", leaf.pem(), ca.pem()),
        key.serialize_pem(),
    )
}

#[tokio::test]
async fn docker_a_site_moves_over_https_with_no_tls_error_and_no_failed_request() {
    alveole_tests::init();
    if !ensure_test_image() {
        return;
    }
    let db = TestDb::sqlite().await;
    let panel = TestPanel::start(&db).await;
    let (a, b, member) = two_nodes(&panel).await;
    let _cleanup = NodeCleanup::new([a.id, b.id]);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let agent_a = start_agent(&panel, &a, any, any).await;
    let agent_b = start_agent(&panel, &b, any, any).await;

    const HOST: &str = "secure-moving.example.org";
    let site = create_site(&panel, &member, a.id, HOST).await;
    filled_and_serving(&site, a.id, agent_a.ingress, HOST, (200, 20 << 20)).await;
    let (ca, chain, key) = certificate_for(HOST);
    let (status, view) = panel
        .post(
            &format!("/api/v1/sites/{site}/certificate"),
            json!({"chain_pem": chain, "key_pem": key}),
        )
        .await;
    assert_eq!(status, 200, "{view}");
    let client = |at: SocketAddr| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
            .resolve(HOST, at)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let (to_a, to_b) = (client(agent_a.https), client(agent_b.https));
    let url = |at: SocketAddr| format!("https://{HOST}:{}/", at.port());
    wait_for("HTTPS on node A", Duration::from_secs(30), async || {
        to_a.get(url(agent_a.https))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;

    // The client: every 5 ms, to where the site's address leads.
    let switched = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let asked = {
        let (switched, stop, sent) = (switched.clone(), stop.clone(), sent.clone());
        let (a_https, b_https) = (agent_a.https, agent_b.https);
        tokio::spawn(async move {
            let mut outcomes: Vec<(bool, Result<u16, String>)> = Vec::new();
            let started = Instant::now();
            // Bounded: 30,000 requests or three minutes.
            for _ in 0..30_000 {
                if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(180) {
                    break;
                }
                let on_b = switched.load(Ordering::Relaxed);
                let (client, at) = if on_b {
                    (&to_b, b_https)
                } else {
                    (&to_a, a_https)
                };
                let outcome = client
                    .get(url(at))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| format!("{e:?}"));
                outcomes.push((on_b, outcome));
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        })
    };

    wait_for(
        "the client under way",
        Duration::from_secs(30),
        async || (sent.load(Ordering::Relaxed) >= 50).then_some(()),
    )
    .await;
    let (status, started) = panel
        .post(
            &format!("/api/v1/sites/{site}/move"),
            json!({"to_node": b.id}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let move_id = started["id"].as_str().unwrap().to_owned();
    wait_for("the switch", Duration::from_secs(180), async || {
        let movement = the_move(&panel, &move_id).await;
        assert_ne!(movement["phase"], "failed", "{movement}");
        (movement["phase"] == "forwarding").then_some(())
    })
    .await;
    // The site's address now leads to node B: its HTTPS must work at once.
    switched.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = asked.await.unwrap();
    let failed: Vec<_> = outcomes.iter().filter(|(_, o)| *o != Ok(200)).collect();
    let on_b = outcomes.iter().filter(|(b, _)| *b).count();
    println!(
        "over HTTPS: {} requests ({} to the new node after the switch), {} failed",
        outcomes.len(),
        on_b,
        failed.len()
    );
    assert!(
        outcomes.len() - on_b > 50 && on_b > 50,
        "the client ran through the move and after its switch"
    );
    assert_eq!(
        failed,
        Vec::<&(bool, Result<u16, String>)>::new(),
        "no TLS error, no failure"
    );
}
