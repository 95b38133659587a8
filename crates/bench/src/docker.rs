//! The real Docker engine, driven as a baseline would drive it, and cleaned up after.

/// Runs the docker command line (the benchmarks' baselines use it, as a person would).
pub(crate) fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("docker").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Removes the containers and volumes carrying `label` (`key=value`).
pub(crate) fn remove_labelled(label: &str) {
    let filter = format!("label={label}");
    for id in docker(&["ps", "-aq", "--filter", &filter])
        .unwrap_or_default()
        .lines()
    {
        let _ = docker(&["rm", "-f", id]);
    }
    for volume in docker(&["volume", "ls", "-q", "--filter", &filter])
        .unwrap_or_default()
        .lines()
    {
        let _ = docker(&["volume", "rm", "-f", volume]);
    }
}

/// Removes everything a benchmark node left: containers, volumes, network, isolation table.
pub(crate) fn remove_node(naming: &alveole_agent::Naming) {
    remove_labelled(&format!("coop.alveole.node={}", naming.node_id));
    let _ = docker(&["network", "rm", &naming.network()]);
    alveole_agent::net::routing::remove_node_table(
        &alveole_agent::net::routing::NftCommand::host(),
        naming,
    );
}
