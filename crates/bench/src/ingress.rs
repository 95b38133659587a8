//! The two halves of `bench/ingress.sh`: a keep-alive backend answering `hello`, and
//! alveole's ingress with one route in front of it (nginx is the peer the script measures).

/// A minimal keep-alive HTTP/1.1 server: the same backend behind both proxies.
pub async fn backend(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("backend listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                    Bytes::from_static(b"hello\n"),
                )))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

pub async fn proxy(
    listen: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
    host: &str,
) -> anyhow::Result<()> {
    use alveole_agent::ingress::{Ingress, Routes, Upstream};
    let hostname = alveole_model::Hostname::parse(host, alveole_model::Wildcard::Refused)?;
    let mut routes = Routes::default();
    routes.insert(
        &hostname,
        Upstream {
            site: alveole_model::SiteId::generate(),
            address: upstream,
        },
    );
    let ingress = std::sync::Arc::new(Ingress::new());
    ingress.set_routes(routes);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("ingress listening on {}", listener.local_addr()?);
    ingress.serve(listener).await?;
    Ok(())
}
