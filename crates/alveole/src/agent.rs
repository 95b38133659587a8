//! `alveole agent`: enrol if needed, then serve the node's ingress and reconcile forever.

use std::sync::Arc;
use std::time::Duration;

use alveole_agent::agent::{Agent, PanelClient, Timing, credential};
use alveole_agent::engine::docker::DockerRuntime;
use alveole_agent::ingress::Ingress;
use anyhow::Context;

use crate::cli::AgentArgs;

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    // A flag that names a missing file is said before anything else is done.
    let style = match &args.waiting_room_css {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--waiting-room-css: reading {}", path.display()))?,
        None => String::new(),
    };
    let panel = PanelClient::trusting(
        &args.panel_url,
        &args.state_dir,
        args.panel_ca_sha256.as_deref(),
    )
    .await
    .context("trusting the panel")?;
    let credential = credential(&panel, &args.state_dir, args.join_token.as_deref())
        .await
        .context("enrolling with the panel")?;
    let runtime = DockerRuntime::connect()
        .await
        .context("connecting to the Docker engine")?;
    let ingress = Arc::new(
        Ingress::new()
            .with_listen_limits(args.connections.limits())
            .with_waiting_room_style(&style),
    );
    tokio::spawn(alveole_agent::ingress::pressure::follow(
        ingress.clone(),
        Box::new(alveole_agent::ingress::pressure::ProcPressure::default()),
        f64::from(args.pressure_threshold),
    ));
    let listener = tokio::net::TcpListener::bind(args.ingress_listen)
        .await
        .with_context(|| format!("listening on {}", args.ingress_listen))?;
    println!(
        "alveole agent for node {} serving sites on http://{}/",
        credential.node_id,
        listener.local_addr()?
    );
    let server = tokio::spawn(ingress.clone().serve(listener));
    let https = match args.ingress_https_listen {
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("listening on {at} for HTTPS"))?;
            println!("and on https://{}/", listener.local_addr()?);
            tokio::spawn(ingress.clone().serve_tls(listener));
            Some(at.port())
        }
        None => None,
    };
    let metrics = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("listening on {} for metrics", args.metrics_listen))?;
    tokio::spawn(alveole_agent::ingress::serve_metrics(
        ingress.clone(),
        metrics,
    ));
    // Ports 80 and (when the ingress serves HTTPS) 443 of dedicated addresses lead here.
    let mut agent = Agent::new(credential, panel, &args.state_dir, runtime, ingress)
        .with_ingress_ports(alveole_agent::net::routing::IngressPorts {
            http: args.ingress_listen.port(),
            https,
        })
        .with_input_filter_window(Duration::from_secs(
            args.input_filter_confirm_seconds.max(5),
        ));
    if let Some(device) = &args.uplink {
        let interface = alveole_agent::net::uplink::IpInterface::new(device, None)
            .with_context(|| format!("{device} is not an interface name"))?;
        agent = agent.with_uplink(Box::new(interface));
    }
    if let Some(dir) = &args.vault_dir {
        agent = agent.with_vault_dir(dir.clone());
    }
    // Peer listening is on by default: a node joined as told can send and receive moves.
    // Other agents must be told where they reach it: a wildcard listening address says
    // nothing, so the advertised one is needed then (the join command gives it).
    agent = match args.peer_listen.0 {
        Some(listen) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen} for other agents"))?;
            let peer = args.peer_advertise.unwrap_or(listener.local_addr()?);
            let ingress = args.ingress_advertise.unwrap_or(args.ingress_listen);
            let told =
                |address: std::net::SocketAddr| (!address.ip().is_unspecified()).then_some(address);
            let endpoints = alveole_model::AgentEndpoints {
                peer: told(peer),
                ingress: told(ingress),
            };
            if endpoints.peer.is_none() || endpoints.ingress.is_none() {
                tracing::warn!(%peer, %ingress, "other agents cannot be told where this node is: \
                    give --peer-advertise and --ingress-advertise; until then no site moves here");
            }
            agent
                .with_moves(listener, endpoints)
                .context("serving other agents")?
        }
        None => agent,
    };
    let timing = Timing {
        pass: Duration::from_secs(args.pass_seconds.max(1)),
    };
    tokio::select! {
        () = agent.run(timing, async { let _ = tokio::signal::ctrl_c().await; }) => {},
        result = server => result.context("the ingress stopped")?.context("the ingress failed")?,
    }
    Ok(())
}
