//! Sites on the node's network: isolated from each other and from the host's own services,
//! forty on one network, exposed ports and egress working beside Docker's own rules, which
//! stay as they were.

use super::*;

#[tokio::test]
async fn docker_sites_cannot_reach_each_other() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![spec("a"), spec("b")],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
        restores: vec![],
        drills: vec![],
        acme_challenges: vec![],
        vault: None,
    };
    let report = reconciler.reconcile(&desired).await.unwrap();
    let (a, b) = (desired.sites[0].site_id, desired.sites[1].site_id);
    // Positive first: the host reaches both, and A's own server answers inside A.
    assert_eq!(
        get(report.addresses[&b]).await.unwrap().trim(),
        "hello from b"
    );
    assert_eq!(
        get(report.addresses[&a]).await.unwrap().trim(),
        "hello from a"
    );
    let inside = docker(&[
        "exec",
        &naming.container(a),
        "/bin/busybox",
        "timeout",
        "3",
        "wget",
        "-O",
        "-",
        "http://127.0.0.1:8080/",
    ]);
    assert_eq!(inside, "hello from a");
    // Then A → B by address fails. (busybox 1.35's wget crashes with -q or -T: `timeout` bounds it.)
    let url = format!("http://{}:8080/", report.addresses[&b]);
    let status = Command::new("docker")
        .args([
            "exec",
            &naming.container(a),
            "/bin/busybox",
            "timeout",
            "3",
            "wget",
            "-O",
            "-",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        !status.status.success(),
        "A reached B: {}",
        String::from_utf8_lossy(&status.stdout)
    );
}

#[tokio::test]
async fn docker_forty_sites_share_one_node_network() {
    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    let sites: Vec<SiteSpec> = (0..40)
        .map(|i| {
            let mut s = spec(&format!("site{i}"));
            s.limits = Limits {
                cpu_millis: 50,
                memory_bytes: 16 << 20,
                pids: 16,
                ..Limits::default()
            };
            s
        })
        .collect();
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: sites.clone(),
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
        restores: vec![],
        drills: vec![],
        acme_challenges: vec![],
        vault: None,
    };
    let report = reconciler.reconcile(&desired).await.unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(
        report.addresses.len(),
        40,
        "more sites than Docker's default ~31 networks, on one network"
    );
    let networks = docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("label=coop.alveole.node={}", naming.node_id),
    ]);
    assert_eq!(networks.lines().count(), 1);
    for (i, site) in sites.iter().enumerate() {
        assert_eq!(
            get(report.addresses[&site.site_id]).await.unwrap().trim(),
            format!("hello from site{i}")
        );
    }
    assert_eq!(
        reconciler.reconcile(&desired).await.unwrap().actions,
        [],
        "and a second pass changes nothing"
    );
}

/// A TCP service on every address of the host, standing for the agent's or the panel's port:
/// answers one line of HTTP to whoever connects.
async fn host_service() -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.0 200 OK\r\n\r\nhost service\n")
                .await;
        }
    });
    (port, task)
}

#[tokio::test]
async fn docker_sites_cannot_reach_the_hosts_own_services() {
    use std::sync::Arc;

    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    if !NftCommand::host().available() {
        alveole_tests::skip_or_fail("nftables", "nft is not installed (.ci/run installs it)");
        return;
    }
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![spec("a")],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
        restores: vec![],
        drills: vec![],
        acme_challenges: vec![],
        vault: None,
    };
    let report = reconciler.reconcile(&desired).await.unwrap();
    let a = naming.container(desired.sites[0].site_id);
    let gateway = docker(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        &naming.network(),
    ]);
    let (port, service) = host_service().await;
    let from_a = |url: String| {
        let a = a.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new("docker")
                    .args([
                        "exec",
                        &a,
                        "/bin/busybox",
                        "timeout",
                        "3",
                        "wget",
                        "-O",
                        "-",
                        &url,
                    ])
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let url = format!("http://{gateway}:{port}/");

    // Positive first: without isolation, A reaches the host's service (so the probe works).
    let open = from_a(url.clone()).await;
    assert_eq!(
        String::from_utf8_lossy(&open.stdout).trim(),
        "host service",
        "{}",
        String::from_utf8_lossy(&open.stderr)
    );

    // With the node's isolation in place, it does not; the host still reaches the site.
    let isolated = Reconciler::new(DockerRuntime::connect().await.unwrap(), naming.clone())
        .with_routing(Arc::new(NftRouting::new(NftCommand::host(), NO_INGRESS)));
    let report_isolated = isolated.reconcile(&desired).await.unwrap();
    assert_eq!(report_isolated.routing_error, None);
    let blocked = from_a(url.clone()).await;
    assert!(
        !blocked.status.success(),
        "A reached the host: {}",
        String::from_utf8_lossy(&blocked.stdout)
    );
    assert_eq!(
        get(report.addresses[&desired.sites[0].site_id])
            .await
            .unwrap()
            .trim(),
        "hello from a"
    );

    // Someone deletes the table: the next pass puts it back.
    alveole_agent::net::routing::remove_node_table(&NftCommand::host(), &naming);
    let table_listed = || {
        Command::new("nft")
            .args([
                "list",
                "table",
                "inet",
                &Shape::of(&naming, NO_INGRESS).table,
            ])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!table_listed(), "the table is gone");
    let repaired = isolated.reconcile(&desired).await.unwrap();
    assert!(table_listed(), "the pass put it back");
    assert!(
        repaired
            .routing_drift()
            .is_some_and(|d| d.lines.iter().any(|l| l.starts_with("- table inet"))),
        "and said so: {:?}",
        repaired.routing
    );
    assert!(
        !from_a(url).await.status.success(),
        "closed again after the pass"
    );
    service.abort();
}

/// Every table but alveole's, as nft lists it without counters: what Docker (and anyone
/// else) owns, which alveole must never change.
fn foreign_tables() -> String {
    let tables = Command::new("nft")
        .args(["-j", "list", "tables"])
        .output()
        .unwrap();
    let tables: serde_json::Value = serde_json::from_slice(&tables.stdout).unwrap();
    let mut listing = String::new();
    for table in tables["nftables"].as_array().unwrap() {
        let Some(table) = table.get("table") else {
            continue;
        };
        let (family, name) = (
            table["family"].as_str().unwrap(),
            table["name"].as_str().unwrap(),
        );
        if name.starts_with("alveole_") {
            continue;
        }
        let out = Command::new("nft")
            .args(["-s", "list", "table", family, name])
            .output()
            .unwrap();
        listing.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    listing
}

/// A veth from the host to a client namespace, removed on drop.
struct HostLink(String);

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_exposed_ports_and_egress_work_beside_dockers_rules_which_stay_unchanged() {
    use alveole_model::{ExposedPort, Transport};
    use alveole_tests::netns::{self, Netns};
    use std::sync::Arc;

    alveole_tests::init();
    let Some((reconciler, naming, _cleanup)) = setup().await else {
        return;
    };
    if !netns::available() {
        return;
    }
    const DEDICATED: &str = "203.0.113.77";
    const CLIENT: &str = "198.51.100.2";
    // The client reaches the host over a veth; the host holds the dedicated address.
    let client = Netns::new("dc");
    let host_end = format!("alvh{}", &naming.node_id.0.simple().to_string()[26..]);
    let _link = HostLink(host_end.clone());
    let run = |args: &[&str]| netns::sh("ip", args);
    run(&[
        "link",
        "add",
        &host_end,
        "type",
        "veth",
        "peer",
        "name",
        "c0",
        "netns",
        &client.name,
    ]);
    run(&["addr", "add", "198.51.100.1/30", "dev", &host_end]);
    run(&["addr", "add", &format!("{DEDICATED}/32"), "dev", &host_end]);
    run(&["link", "set", &host_end, "up"]);
    client.ip(&["link", "set", "c0", "up"]);
    client.ip(&["addr", "add", &format!("{CLIENT}/30"), "dev", "c0"]);
    client.ip(&["route", "add", "203.0.113.0/24", "via", "198.51.100.1"]);
    netns::serve_tcp(&client, 9000, "outside");
    // The ingress's stand-in, on the host.
    let ingress = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let ingress_port = ingress.local_addr().unwrap().port();
    netns::answer_tcp(ingress, "ingress");

    // The site answers its client's address on port 8080 (busybox httpd runs CGI scripts).
    let mut site = spec("dnat");
    site.command = vec![
        "/bin/sh".into(),
        "-c".into(),
        "mkdir -p /tmp/www/cgi-bin && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho \"peer $REMOTE_ADDR\"\\n' > /tmp/www/cgi-bin/peer && chmod +x /tmp/www/cgi-bin/peer && exec /bin/httpd -f -p 8080 -h /tmp/www".into(),
    ];
    site.dedicated_addresses = vec![DEDICATED.parse().unwrap()];
    site.exposed_ports = vec![ExposedPort {
        protocol: Transport::Tcp,
        port: 2222,
        container_port: 8080,
    }];
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: vec![site.clone()],
        purge_volumes: vec![],
        addresses: vec![],
        input_filter: None,
        moves_out: vec![],
        moves_in: vec![],
        restores: vec![],
        drills: vec![],
        acme_challenges: vec![],
        vault: None,
    };
    // The container first, with Docker's rules for it; then alveole's table.
    reconciler.reconcile(&desired).await.unwrap();
    let docker_before = foreign_tables();
    assert!(
        docker_before.contains("DOCKER"),
        "Docker's chains are listed: {docker_before}"
    );
    let routed = Reconciler::new(DockerRuntime::connect().await.unwrap(), naming.clone())
        .with_routing(Arc::new(NftRouting::new(
            NftCommand::host(),
            IngressPorts {
                http: ingress_port,
                https: None,
            },
        )));
    let report = routed.reconcile(&desired).await.unwrap();
    assert_eq!(report.routing_error, None);
    assert!(report.actions.is_empty(), "{:?}", report.actions);

    let client = Arc::new(client);
    let ask = |port: u16, request: &'static [u8]| {
        let client = client.clone();
        tokio::task::spawn_blocking(move || {
            netns::ask(
                &client,
                std::net::SocketAddr::new(DEDICATED.parse().unwrap(), port),
                request,
            )
        })
    };
    let answer = ask(2222, b"GET /cgi-bin/peer HTTP/1.0\r\n\r\n")
        .await
        .unwrap()
        .expect("the exposed port answers");
    assert!(
        // busybox prints it IPv4-mapped: `peer [::ffff:198.51.100.2]`.
        answer
            .lines()
            .any(|l| l.starts_with("peer") && l.contains(CLIENT)),
        "the container sees the client's address: {answer}"
    );
    assert_eq!(
        ask(80, b"").await.unwrap().unwrap(),
        format!("ingress {CLIENT}")
    );
    assert!(netns::dropped(ask(2223, b"").await.unwrap()));
    let container = naming.container(site.site_id);
    let egress = tokio::task::spawn_blocking(move || {
        Command::new("docker")
            .args([
                "exec",
                &container,
                "/bin/busybox",
                "timeout",
                "5",
                "nc",
                CLIENT,
                "9000",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&egress.stdout).trim(),
        format!("outside {DEDICATED}"),
        "the site's connections leave from its dedicated address: {}",
        String::from_utf8_lossy(&egress.stderr)
    );
    assert_eq!(
        foreign_tables(),
        docker_before,
        "alveole changed nothing in Docker's tables"
    );
}
