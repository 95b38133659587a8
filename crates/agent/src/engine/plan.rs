//! The reconciliation planner: desired state and observed state in, the changes that make the
//! node match out. No I/O, so every case of drift is a unit test.

use std::collections::BTreeSet;

use alveole_model::{DesiredState, SiteSpec};

use crate::engine::runtime::{Action, Naming, Observed, PartRole};

pub fn plan(naming: &Naming, desired: &DesiredState, observed: &Observed) -> Vec<Action> {
    let mut actions = Vec::new();
    if !observed.network {
        actions.push(Action::CreateNetwork);
    }
    for spec in &desired.sites {
        if !observed.volumes.contains(&naming.volume(spec.site_id)) {
            actions.push(Action::CreateVolume { site: spec.site_id });
        }
        let digest = spec.container_digest();
        let mut mine: Vec<_> = observed
            .containers
            .iter()
            .filter(|c| c.site_id == spec.site_id)
            .collect();
        // A new pod is a new network namespace: the site's container must join it again.
        let new_pod = plan_parts(naming, spec, observed, &mut actions);
        // Keep the container with the right shape (a running one first); remove the others.
        mine.sort_by_key(|c| (c.digest != digest, !c.running));
        let keep = mine.first().filter(|c| c.digest == digest && !new_pod);
        // Without a keeper, the best old container is replaced (its requests held meanwhile).
        let replaced = if keep.is_none() { mine.first() } else { None };
        let spared = keep.or(replaced).map(|c| c.id.as_str());
        for extra in mine.iter().filter(|c| Some(c.id.as_str()) != spared) {
            actions.push(Action::Remove {
                site: extra.site_id,
                container: extra.id.clone(),
            });
        }
        match (keep, replaced) {
            (None, Some(old)) => actions.push(Action::Replace {
                site: spec.site_id,
                old: old.id.clone(),
            }),
            (None, None) => actions.push(Action::Create { site: spec.site_id }),
            (Some(c), _) if spec.run && !c.running => actions.push(Action::Start {
                site: c.site_id,
                container: c.id.clone(),
            }),
            (Some(c), _) if !spec.run && c.running => actions.push(Action::Stop {
                site: c.site_id,
                container: c.id.clone(),
            }),
            (Some(_), _) => {}
        }
    }
    // A site moving here is the move's until its switch, and a drill's scratch container the
    // drill's until the panel no longer asks for it: neither made nor removed by passes.
    let wanted: BTreeSet<_> = desired
        .sites
        .iter()
        .map(|s| s.site_id)
        .chain(desired.moves_in.iter().map(|m| m.site.site_id))
        .chain(desired.drills.iter().map(|d| d.scratch.site_id))
        .collect();
    for container in observed
        .containers
        .iter()
        .filter(|c| !wanted.contains(&c.site_id))
    {
        actions.push(Action::Remove {
            site: container.site_id,
            container: container.id.clone(),
        });
    }
    for part in observed
        .parts
        .iter()
        .filter(|p| !wanted.contains(&p.site_id))
    {
        actions.push(Action::Remove {
            site: part.site_id,
            container: part.id.clone(),
        });
    }
    // Purged sites' volumes go, unless the site is desired again.
    for site in desired.purge_volumes.iter().filter(|s| !wanted.contains(s)) {
        if observed.volumes.contains(&naming.volume(*site)) {
            actions.push(Action::RemoveVolume { site: *site });
        }
    }
    actions
}

/// Plans a site's pod and databases (none, and none kept, for a site without databases):
/// whether its pod is new, so that its containers must be made again in it.
fn plan_parts(
    naming: &Naming,
    spec: &SiteSpec,
    observed: &Observed,
    actions: &mut Vec<Action>,
) -> bool {
    let site = spec.site_id;
    let parts: Vec<_> = observed
        .parts
        .iter()
        .filter(|p| p.site_id == site)
        .collect();
    let remove = |actions: &mut Vec<Action>, id: &str| {
        actions.push(Action::Remove {
            site,
            container: id.to_owned(),
        })
    };
    if spec.databases.is_empty() {
        // Their volumes stay until the site is purged.
        for part in parts {
            remove(actions, &part.id);
        }
        return false;
    }
    let pod_digest = spec.pod_digest();
    let mut pods: Vec<_> = parts.iter().filter(|p| p.role == PartRole::Pod).collect();
    pods.sort_by_key(|p| (p.digest != pod_digest, !p.running));
    let pod = pods.first().filter(|p| p.digest == pod_digest);
    for extra in pods
        .iter()
        .filter(|p| Some(p.id.as_str()) != pod.map(|k| k.id.as_str()))
    {
        remove(actions, &extra.id);
    }
    match pod {
        None => actions.push(Action::CreatePod { site }),
        Some(pod) if !pod.running => actions.push(Action::StartPod {
            site,
            container: pod.id.clone(),
        }),
        Some(_) => {}
    }
    // A pod started again (by hand, say) has a new namespace: what was made in the old one
    // is made again in it.
    let stale =
        |endpoint: &Option<String>| match (pod.and_then(|p| p.pod_endpoint.as_ref()), endpoint) {
            (Some(now), Some(then)) => now != then,
            _ => false,
        };
    let new_pod = pod.is_none()
        || parts
            .iter()
            .any(|p| p.role != PartRole::Pod && stale(&p.pod_endpoint))
        || observed
            .containers
            .iter()
            .any(|c| c.site_id == site && stale(&c.pod_endpoint));
    let runs = spec.run || spec.databases_stay_up;
    for db in &spec.databases {
        if !observed
            .volumes
            .contains(&naming.database_volume(site, &db.name))
        {
            actions.push(Action::CreateDatabaseVolume {
                site,
                database: db.name.clone(),
            });
        }
        let role = PartRole::Database(db.name.clone());
        let digest = db.container_digest();
        let mut servers: Vec<_> = parts.iter().filter(|p| p.role == role).collect();
        servers.sort_by_key(|p| (p.digest != digest, !p.running));
        let keep = servers.first().filter(|p| p.digest == digest && !new_pod);
        let replaced = if keep.is_none() {
            servers.first()
        } else {
            None
        };
        let spared = keep.or(replaced).map(|p| p.id.as_str());
        for extra in servers.iter().filter(|p| Some(p.id.as_str()) != spared) {
            remove(actions, &extra.id);
        }
        match (keep, replaced) {
            (None, Some(old)) => actions.push(Action::ReplaceDatabase {
                site,
                database: db.name.clone(),
                old: old.id.clone(),
            }),
            (None, None) => actions.push(Action::CreateDatabase {
                site,
                database: db.name.clone(),
            }),
            (Some(server), _) if runs && !server.running => actions.push(Action::StartDatabase {
                site,
                container: server.id.clone(),
            }),
            (Some(server), _) if !runs && server.running => actions.push(Action::Stop {
                site,
                container: server.id.clone(),
            }),
            (Some(_), _) => {}
        }
    }
    for part in &parts {
        if let PartRole::Database(name) = &part.role
            && !spec.databases.iter().any(|db| &db.name == name)
        {
            remove(actions, &part.id);
        }
    }
    new_pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::runtime::ObservedContainer;
    use alveole_model::{Hostname, ImageRef, Limits, NodeId, SiteId, SiteSpec, Volume, Wildcard};

    fn spec(run: bool) -> SiteSpec {
        SiteSpec {
            site_id: SiteId::generate(),
            hostnames: vec![Hostname::parse("a.example.org", Wildcard::Refused).unwrap()],
            image: ImageRef::parse("alveole-test/busybox:1").unwrap(),
            command: vec![],
            env: vec![],
            http_port: 8080,
            volume: Volume::default(),
            limits: Limits::default(),
            security: Default::default(),
            run,
            dedicated_addresses: vec![],
            exposed_ports: vec![],
            limit_tier: Default::default(),
            backup: None,
            tls: None,
            admission: None,
            databases: vec![],
            databases_stay_up: false,
        }
    }

    fn container(spec: &SiteSpec, id: &str, running: bool) -> ObservedContainer {
        ObservedContainer {
            id: id.into(),
            site_id: spec.site_id,
            digest: spec.container_digest(),
            running,
            address: None,
            pod_endpoint: None,
        }
    }

    fn setup(specs: Vec<SiteSpec>) -> (Naming, DesiredState, Observed) {
        let naming = Naming {
            node_id: NodeId::generate(),
        };
        let volumes = specs.iter().map(|s| naming.volume(s.site_id)).collect();
        let desired = DesiredState {
            node_id: naming.node_id,
            generation: 1,
            sites: specs,
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
        (
            naming,
            desired,
            Observed {
                network: true,
                volumes,
                containers: vec![],
                parts: vec![],
            },
        )
    }

    #[test]
    fn an_empty_node_gets_network_volume_and_container() {
        let (naming, desired, _) = setup(vec![spec(true)]);
        let site = desired.sites[0].site_id;
        let actions = plan(&naming, &desired, &Observed::default());
        assert_eq!(
            actions,
            [
                Action::CreateNetwork,
                Action::CreateVolume { site },
                Action::Create { site }
            ]
        );
    }

    #[test]
    fn a_matching_node_plans_nothing() {
        let (naming, desired, mut observed) = setup(vec![spec(true), spec(false)]);
        observed.containers = vec![
            container(&desired.sites[0], "a", true),
            container(&desired.sites[1], "b", false),
        ];
        assert_eq!(plan(&naming, &desired, &observed), []);
    }

    #[test]
    fn drift_is_repaired() {
        let (naming, desired, mut observed) = setup(vec![spec(true), spec(false)]);
        let mut stale = container(&desired.sites[0], "old", true);
        stale.digest = "changed".into();
        let foreign_site = spec(true);
        observed.containers = vec![
            stale,                                   // shape changed: replace, held
            container(&desired.sites[1], "b", true), // should be stopped
            container(&foreign_site, "gone", true),  // no longer desired: remove
        ];
        let actions = plan(&naming, &desired, &observed);
        assert_eq!(
            actions,
            [
                Action::Replace {
                    site: desired.sites[0].site_id,
                    old: "old".into()
                },
                Action::Stop {
                    site: desired.sites[1].site_id,
                    container: "b".into()
                },
                Action::Remove {
                    site: foreign_site.site_id,
                    container: "gone".into()
                },
            ]
        );
    }

    #[test]
    fn a_purged_sites_volume_goes_after_its_container() {
        let (naming, mut desired, mut observed) = setup(vec![]);
        let gone = spec(true);
        observed.volumes.push(naming.volume(gone.site_id));
        observed.containers.push(container(&gone, "c", true));
        desired.purge_volumes.push(gone.site_id);
        assert_eq!(
            plan(&naming, &desired, &observed),
            [
                Action::Remove {
                    site: gone.site_id,
                    container: "c".into()
                },
                Action::RemoveVolume { site: gone.site_id }
            ]
        );
    }

    #[test]
    fn a_stopped_container_starts_and_duplicates_go() {
        let (naming, desired, mut observed) = setup(vec![spec(true)]);
        observed.containers = vec![
            container(&desired.sites[0], "x", false),
            container(&desired.sites[0], "y", true),
        ];
        assert_eq!(
            plan(&naming, &desired, &observed),
            [Action::Remove {
                site: desired.sites[0].site_id,
                container: "x".into()
            }]
        );
        observed.containers.truncate(1);
        assert_eq!(
            plan(&naming, &desired, &observed),
            [Action::Start {
                site: desired.sites[0].site_id,
                container: "x".into()
            }]
        );
    }

    #[test]
    fn a_drills_scratch_container_is_the_drills_until_the_panel_stops_asking() {
        let (naming, mut desired, mut observed) = setup(vec![spec(true)]);
        let live = desired.sites[0].clone();
        let drill = alveole_model::DrillId::generate();
        let scratch = alveole_model::backup::DrillOrder::scratch_of(drill, &live);
        observed.containers = vec![
            container(&live, "live", true),
            container(&scratch, "scratch", true),
        ];
        desired.drills = vec![alveole_model::backup::DrillOrder {
            id: drill,
            site_id: live.site_id,
            scratch: scratch.clone(),
            repository: live.site_id.to_string(),
            password: alveole_model::backup::WireSecret("k".into()),
            target: alveole_model::backup::TargetEndpoint {
                target_id: alveole_model::BackupTargetId::generate(),
                name: "coffre".into(),
                endpoint: alveole_model::backup::Endpoint::Rest {
                    url: "https://backup.example.org/".into(),
                },
            },
            health_path: "/".into(),
            hook: None,
        }];
        assert!(plan(&naming, &desired, &observed).is_empty(), "left alone");
        desired.drills.clear();
        assert_eq!(
            plan(&naming, &desired, &observed),
            [Action::Remove {
                site: scratch.site_id,
                container: "scratch".into()
            }],
            "a leftover goes once the panel no longer asks for the drill"
        );
    }

    fn with_database(mut spec: SiteSpec) -> SiteSpec {
        spec.databases = vec![alveole_model::DatabaseSpec {
            name: "app".into(),
            engine: alveole_model::DatabaseEngine::Mariadb,
            image: ImageRef::parse("alveole-test/mariadb:10.11").unwrap(),
            limits: Default::default(),
            quota_bytes: 1 << 30,
            password: alveole_model::backup::WireSecret("p".into()),
            admin_password: alveole_model::backup::WireSecret("a".into()),
        }];
        spec
    }

    fn part(spec: &SiteSpec, id: &str, role: PartRole) -> crate::engine::runtime::ObservedPart {
        let digest = match &role {
            PartRole::Pod => spec.pod_digest(),
            PartRole::Database(_) => spec.databases[0].container_digest(),
        };
        crate::engine::runtime::ObservedPart {
            id: id.into(),
            site_id: spec.site_id,
            role,
            digest,
            running: true,
            address: None,
            pod_endpoint: Some("endpoint-1".into()),
        }
    }

    /// A node running the site with its pod and database as specified.
    fn running_with_database() -> (Naming, DesiredState, Observed) {
        let (naming, desired, mut observed) = setup(vec![with_database(spec(true))]);
        let site = &desired.sites[0];
        observed
            .volumes
            .push(naming.database_volume(site.site_id, "app"));
        observed.containers = vec![container(site, "site", true)];
        observed.parts = vec![
            part(site, "pod", PartRole::Pod),
            part(site, "db", PartRole::Database("app".into())),
        ];
        (naming, desired, observed)
    }

    #[test]
    fn a_site_with_a_database_gets_its_pod_then_its_server_then_its_container() {
        let (naming, desired, mut observed) = setup(vec![with_database(spec(true))]);
        observed.volumes.clear();
        let site = desired.sites[0].site_id;
        assert_eq!(
            plan(&naming, &desired, &observed),
            [
                Action::CreateVolume { site },
                Action::CreatePod { site },
                Action::CreateDatabaseVolume {
                    site,
                    database: "app".into()
                },
                Action::CreateDatabase {
                    site,
                    database: "app".into()
                },
                Action::Create { site },
            ]
        );
        let (naming, desired, observed) = running_with_database();
        assert_eq!(plan(&naming, &desired, &observed), [], "nothing to change");
    }

    #[test]
    fn a_new_site_container_leaves_the_database_but_a_new_pod_takes_both_again() {
        let (naming, mut desired, mut observed) = running_with_database();
        let site = desired.sites[0].site_id;
        desired.sites[0].env.push(alveole_model::WireEnv {
            name: "MODE".into(),
            value: "new".into(),
        });
        assert_eq!(
            plan(&naming, &desired, &observed),
            [Action::Replace {
                site,
                old: "site".into()
            }],
            "the database keeps running"
        );
        observed.parts.retain(|p| p.role != PartRole::Pod);
        assert_eq!(
            plan(&naming, &desired, &observed),
            [
                Action::CreatePod { site },
                Action::ReplaceDatabase {
                    site,
                    database: "app".into(),
                    old: "db".into()
                },
                Action::Replace {
                    site,
                    old: "site".into()
                },
            ],
            "both join the new namespace"
        );
    }

    #[test]
    fn a_stopped_site_stops_its_database_and_one_removed_goes_but_keeps_its_volume() {
        let (naming, mut desired, observed) = running_with_database();
        let site = desired.sites[0].site_id;
        desired.sites[0].run = false;
        assert_eq!(
            plan(&naming, &desired, &observed),
            [
                Action::Stop {
                    site,
                    container: "db".into()
                },
                Action::Stop {
                    site,
                    container: "site".into()
                },
            ]
        );
        desired.sites[0].run = true;
        desired.sites[0].databases.clear();
        let actions = plan(&naming, &desired, &observed);
        assert_eq!(
            actions[..2],
            [
                Action::Remove {
                    site,
                    container: "pod".into()
                },
                Action::Remove {
                    site,
                    container: "db".into()
                },
            ]
        );
        assert!(
            matches!(actions[2], Action::Replace { .. }),
            "the site leaves the pod for the node's network: {actions:?}"
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::RemoveVolume { .. }))
        );
    }
}
