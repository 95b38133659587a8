//! `alveole-bench list-sites`: GET /api/v1/sites over many sites, first and deep page through
//! the API, and the deep page by keyset (what the API does) against LIMIT/OFFSET (the naive
//! baseline, `alveole_store::baseline`).

use std::time::{Duration, Instant};

use alveole_model::{
    Capacity, EnvVarInput, Limits, MemberInput, NodeInput, Overcommit, ProviderInput, Role,
    SiteInput, Volume,
};
use alveole_panel::PanelConfig;
use alveole_store::baseline::OffsetPaging;
use alveole_store::{AuditContext, PageRequest, SiteFilter, Store};
use anyhow::Context;

use crate::measure::measure;

async fn seed(store: &dyn Store, wanted: usize) -> anyhow::Result<()> {
    let ctx = AuditContext::new("system:bench", "bench");
    let existing = store.counts().await?.sites as usize;
    if existing >= wanted {
        return Ok(());
    }
    let provider = store
        .providers()
        .create(
            &ctx,
            ProviderInput {
                name: format!("bench-{}", uuid::Uuid::now_v7()),
                ..Default::default()
            }
            .validate()?,
        )
        .await?;
    let node = NodeInput {
        provider_id: provider.id,
        name: format!("bench-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]),
        public_addresses: vec!["192.0.2.10".into()],
        capacity: Capacity {
            cpu_millis: 1_024_000,
            memory_bytes: 1 << 50,
            disk_bytes: 1 << 59,
        },
        overcommit: Overcommit {
            cpu: 16.0,
            memory: 1.0,
        },
        input_filter: false,
        input_allowed: vec![],
    };
    let node = store.nodes().create(&ctx, node.validate()?).await?;
    let member = MemberInput {
        display_name: "Bench".into(),
        email: format!("bench-{}@example.org", uuid::Uuid::now_v7().simple()),
        role: Role::Member,
    };
    let member = store.members().create(&ctx, member.validate()?).await?;
    let tag = uuid::Uuid::now_v7().simple().to_string();
    for i in existing..wanted {
        let input = SiteInput {
            owner_id: member.id,
            primary_domain: format!("site-{i}-{}.bench.example.org", &tag[20..]),
            aliases: vec![format!("www.site-{i}-{}.bench.example.org", &tag[20..])],
            image: "registry.example.org/coop/site:1".into(),
            command: vec![],
            env: vec![EnvVarInput {
                name: "MODE".into(),
                value: Some("prod".into()),
                secret: false,
            }],
            http_port: 8080,
            volume: Volume::default(),
            limits: Limits::default(),
            security: Default::default(),
            exposed_ports: vec![],
            limit_tier: Default::default(),
            node_id: Some(node.id),
            phase: None,
            backup: Default::default(),
            https: Default::default(),
            admission: Default::default(),
            databases: vec![],
        };
        store.sites().create(&ctx, input.validate(None)?).await?;
    }
    Ok(())
}

pub async fn run(
    database_url: &str,
    sites: usize,
    page_size: u32,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let store = alveole_store::connect(database_url)
        .await
        .context("opening the bench database")?;
    let seeding = Instant::now();
    seed(store.as_ref(), sites).await?;
    eprintln!("seeded {sites} sites in {:.1?}", seeding.elapsed());
    let token = alveole_panel::auth::reset_bootstrap_token(
        store.as_ref(),
        &AuditContext::new("system:bench", "bench"),
    )
    .await?;

    let offset_paging = std::sync::Arc::new(OffsetPaging::connect(database_url).await?);
    // The cursor of the last page: the deepest a client can go.
    let total = store.counts().await?.sites as u32;
    let deep_offset = total.saturating_sub(page_size);
    let deep_cursor = if deep_offset == 0 {
        None
    } else {
        let before = offset_paging.sites(deep_offset - 1, 1).await?;
        before.first().map(|s| s.id.0)
    };

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = alveole_panel::AppState::new(store.clone(), PanelConfig::default())?;
    let server = tokio::spawn(alveole::serve::serve(
        state,
        listener,
        None,
        alveole_listen::Limits::default(),
    ));
    let http = reqwest::Client::new();

    let api = |query: String| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        move || {
            let (http, url, token) = (
                http.clone(),
                format!("{base}/api/v1/sites?{query}"),
                token.clone(),
            );
            async move {
                let response = http
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await?
                    .error_for_status()?;
                let body = response.bytes().await?;
                anyhow::ensure!(body.len() > 2, "empty page");
                Ok(())
            }
        }
    };
    let first = measure(requests, concurrency, api(format!("limit={page_size}"))).await?;
    let deep_query = match deep_cursor {
        Some(cursor) => format!("limit={page_size}&cursor={cursor}"),
        None => format!("limit={page_size}"),
    };
    let deep = measure(requests, concurrency, api(deep_query)).await?;

    let keyset = {
        let store = store.clone();
        measure(requests, concurrency, move || {
            let store = store.clone();
            async move {
                let page = store
                    .sites()
                    .list(
                        &SiteFilter::default(),
                        &PageRequest {
                            after: deep_cursor,
                            limit: page_size,
                        },
                    )
                    .await?;
                anyhow::ensure!(!page.items.is_empty(), "empty page");
                Ok(())
            }
        })
        .await?
    };
    let offset = {
        let paging = offset_paging.clone();
        measure(requests, concurrency, move || {
            let paging = paging.clone();
            async move {
                let items = paging.sites(deep_offset, page_size).await?;
                anyhow::ensure!(!items.is_empty(), "empty page");
                Ok(())
            }
        })
        .await?
    };
    server.abort();

    let backend = format!("{:?}", store.backend()).to_lowercase();
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    println!("| backend | measurement | p50 ms | p99 ms | req/s |");
    println!("|---|---|---|---|---|");
    for (name, s) in [
        ("API first page", &first),
        ("API last page (keyset cursor)", &deep),
        ("store last page, keyset", &keyset),
        ("store last page, LIMIT/OFFSET (baseline)", &offset),
    ] {
        println!(
            "| {backend} | {name} | {} | {} | {:.0} |",
            ms(s.p50),
            ms(s.p99),
            s.per_second
        );
    }
    println!(
        "\n{backend}: {total} sites, page size {page_size}, {requests} requests per row, concurrency {concurrency}; \
         keyset is {:.1}x the throughput of OFFSET on the last page.",
        keyset.per_second / offset.per_second
    );
    Ok(())
}
