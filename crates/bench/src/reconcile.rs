//! `alveole-bench reconcile` and `create-site`: N sites onto a node through the real engine,
//! against the same containers started one `docker run -d` at a time.

use std::time::{Duration, Instant};

use alveole_model::{Limits, Volume};
use alveole_panel::PanelConfig;

use crate::docker::{docker, remove_labelled, remove_node};
use crate::measure::{first_200, percentiles};

const HELLO: &str = "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && exec /bin/httpd -f -p 8080 -h /tmp/www";

pub async fn reconcile(count: usize, image: &str) -> anyhow::Result<()> {
    use alveole_agent::engine::docker::DockerRuntime;
    use alveole_agent::{Naming, Reconciler};
    use alveole_model::{DesiredState, Hostname, ImageRef, NodeId, SiteId, SiteSpec, Wildcard};

    let command = vec!["/bin/sh".to_owned(), "-c".to_owned(), HELLO.to_owned()];
    let specs: Vec<SiteSpec> = (0..count)
        .map(|i| -> anyhow::Result<SiteSpec> {
            Ok(SiteSpec {
                site_id: SiteId::generate(),
                hostnames: vec![Hostname::parse(
                    &format!("s{i}.bench.example.org"),
                    Wildcard::Refused,
                )?],
                image: ImageRef::parse(image)?,
                command: command.clone(),
                env: vec![],
                http_port: 8080,
                volume: Volume::default(),
                limits: Limits {
                    cpu_millis: 50,
                    memory_bytes: 16 << 20,
                    pids: 16,
                    ..Limits::default()
                },
                security: Default::default(),
                run: true,
                dedicated_addresses: vec![],
                exposed_ports: vec![],
                limit_tier: Default::default(),
                backup: None,
                tls: None,
                admission: None,
                databases: vec![],
                databases_stay_up: false,
            })
        })
        .collect::<anyhow::Result<_>>()?;

    // alveole: one pass from nothing to every site answering, then a pass with nothing to do.
    let naming = Naming {
        node_id: NodeId::generate(),
    };
    let reconciler = Reconciler::new(DockerRuntime::connect().await?, naming.clone());
    let desired = DesiredState {
        node_id: naming.node_id,
        generation: 1,
        sites: specs.clone(),
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
    let started = Instant::now();
    let report = reconciler.reconcile(&desired).await;
    let first = started.elapsed();
    let started = Instant::now();
    let again = reconciler.reconcile(&desired).await;
    let second = started.elapsed();
    remove_node(&naming);
    let report = report?;
    anyhow::ensure!(
        report.failures.is_empty() && report.addresses.len() == count,
        "not every site runs: {:?}",
        report.failures
    );
    anyhow::ensure!(again?.actions.is_empty(), "the second pass had work");

    // Baseline: the same network, volumes and containers, one `docker run -d` at a time, each
    // waited on until it accepts connections (as the reconciler does).
    let baseline = NodeId::generate();
    let base_naming = Naming { node_id: baseline };
    let label = format!("coop.alveole.node={baseline}");
    let started = Instant::now();
    docker(&[
        "network",
        "create",
        "--label",
        &label,
        &base_naming.network(),
    ])?;
    for spec in &specs {
        let volume = base_naming.volume(spec.site_id);
        docker(&["volume", "create", "--label", &label, &volume])?;
        let id = docker(&[
            "run",
            "-d",
            "--label",
            &label,
            "--network",
            &base_naming.network(),
            "-v",
            &format!("{volume}:/data"),
            "--memory",
            "16m",
            "--pids-limit",
            "16",
            "--cap-drop",
            "ALL",
            image,
            "/bin/sh",
            "-c",
            HELLO,
        ])?;
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &id,
        ])?;
        let address: std::net::SocketAddr = format!("{ip}:8080").parse()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(address).await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "{address} never answered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let naive = started.elapsed();
    remove_node(&base_naming);

    println!("| measurement | seconds | per site (ms) |");
    println!("|---|---|---|");
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / count as f64;
    println!(
        "| alveole: first pass, {count} sites from nothing to answering | {:.2} | {:.1} |",
        first.as_secs_f64(),
        per(first)
    );
    println!(
        "| alveole: second pass, nothing to do | {:.3} | {:.2} |",
        second.as_secs_f64(),
        per(second)
    );
    println!(
        "| baseline: {count} × `docker run -d` + wait | {:.2} | {:.1} |",
        naive.as_secs_f64(),
        per(naive)
    );
    println!(
        "\nalveole / baseline: {:.2}x the time for the first pass",
        first.as_secs_f64() / naive.as_secs_f64()
    );
    Ok(())
}
pub async fn create_site(count: usize, image: &str) -> anyhow::Result<()> {
    let mut panel = crate::harness::BenchPanel::start(PanelConfig::default()).await?;
    let node = panel.node("bench").await?;
    let member = panel.member().await?;
    let agent = panel.agent(node, Duration::from_secs(30), false).await?;
    let ingress_url = format!("http://{}/", agent.ingress);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut alveole = Vec::new();
    for i in 0..count {
        let host = format!("s{i}.bench.example.org");
        let body = serde_json::json!({
            "owner_id": member, "primary_domain": host, "image": image,
            "command": ["/bin/sh", "-c", HELLO], "limits": {"cpu_millis": 100, "memory_bytes": 33554432, "pids": 32}
        });
        let started = Instant::now();
        http.post(format!("{}/api/v1/sites", panel.url))
            .bearer_auth(&panel.token)
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
        first_200(&http, &ingress_url, &host).await?;
        alveole.push(started.elapsed());
    }
    drop(agent);
    drop(panel);

    // Baseline: `docker run -d`, then poll the container directly until it answers 200.
    let label = format!("alveole-bench={}", uuid::Uuid::now_v7().simple());
    let mut baseline = Vec::new();
    for _ in 0..count {
        let started = Instant::now();
        let id = docker(&[
            "run",
            "-d",
            "--label",
            &label,
            "--memory",
            "32m",
            "--pids-limit",
            "32",
            image,
            "/bin/sh",
            "-c",
            HELLO,
        ])?;
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &id,
        ])?;
        first_200(&http, &format!("http://{ip}:8080/"), "baseline").await?;
        baseline.push(started.elapsed());
    }
    remove_labelled(&label);

    let ((a50, a99), (b50, b99)) = (percentiles(alveole), percentiles(baseline));
    let ms = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
    println!("| path | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!(
        "| alveole: POST /api/v1/sites → first 200 through the ingress | {} | {} |",
        ms(a50),
        ms(a99)
    );
    println!(
        "| baseline: docker run -d → first 200 from the container | {} | {} |",
        ms(b50),
        ms(b99)
    );
    println!(
        "\n{count} sites each; alveole / baseline p99: {:.2}x",
        a99.as_secs_f64() / b99.as_secs_f64()
    );
    Ok(())
}
