//! Overload protection through the ingress, over real connections: the waiting room's line,
//! what is not a page, forged passes, priority classes from the site, and a move to another
//! node's ingress with the same key.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use alveole_model::admission::{PriorityClass, SiteAdmission, WireClassRule};
use alveole_model::backup::WireSecret;
use alveole_model::{Hostname, SiteSpec, Wildcard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const HOST: &str = "ecole.example.org";

/// A site that answers `welcome <path>`, and `Alveole-Priority: teachers` at `/login`;
/// it keeps the priority fields clients sent it.
async fn school_site() -> (SocketAddr, Arc<StdMutex<Vec<String>>>) {
    let claimed: Arc<StdMutex<Vec<String>>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let kept = claimed.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    if let Some(value) = request.headers().get("alveole-priority") {
                        kept.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
                    }
                    let path = request.uri().path().to_owned();
                    async move {
                        let mut response = hyper::Response::new(http_body_util::Full::new(
                            Bytes::from(format!("welcome {path}")),
                        ));
                        if path == "/login" {
                            response.headers_mut().insert(
                                "alveole-priority",
                                hyper::header::HeaderValue::from_static("teachers"),
                            );
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, claimed)
}

fn protection(active: u32, active_seconds: u32) -> SiteAdmission {
    SiteAdmission {
        active_visitors: active,
        concurrent_requests: 16,
        new_visitors_per_minute: 6000,
        active_seconds,
        refresh_seconds: 2,
        classes: vec![PriorityClass {
            name: "teachers".into(),
            share_percent: 60,
        }],
        rules: vec![WireClassRule {
            path_prefix: Some("/prof".into()),
            network: None,
            class: "teachers".into(),
        }],
        key: WireSecret("5a".repeat(32)),
    }
}

/// An ingress protecting the site at `site` under `id` with `admission`.
async fn protected_ingress(
    id: SiteId,
    site: SocketAddr,
    admission: SiteAdmission,
) -> (Arc<Ingress>, SocketAddr) {
    let mut spec: SiteSpec = super::tests::spec_with_tls(HOST, None);
    spec.site_id = id;
    spec.admission = Some(admission);
    let mut routes = Routes::default();
    routes.insert(
        &Hostname::parse(HOST, Wildcard::Refused).unwrap(),
        Upstream {
            site: id,
            address: site,
        },
    );
    let ingress = Arc::new(Ingress::new().with_waiting_room_style("main{border:1px solid teal}"));
    ingress.set_admissions(&[spec]);
    ingress.set_routes(routes);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(ingress.clone().serve(listener));
    (ingress, address)
}

/// An answer as the client saw it.
#[derive(Debug)]
struct Answer {
    status: u16,
    fields: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The pass the answer sets, as a client sends it back.
    fn pass(&self) -> Option<String> {
        let cookie = self.field("set-cookie")?;
        Some(cookie.split(';').next()?.to_owned())
    }

    fn place(&self) -> Option<usize> {
        let at = self.body.find("<strong>")? + "<strong>".len();
        self.body[at..].split('<').next()?.parse().ok()
    }
}

/// One request: a browser's page (Accept: text/html) unless `accept` says otherwise.
async fn visit(ingress: SocketAddr, path: &str, pass: Option<&str>, extra: &str) -> Answer {
    let cookie = pass
        .map(|p| format!("cookie: theme=dark; {p}\r\n"))
        .unwrap_or_default();
    let head =
        format!("GET {path} HTTP/1.1\r\nhost: {HOST}\r\n{cookie}{extra}connection: close\r\n\r\n");
    let head = if extra.contains("accept:") {
        head
    } else {
        head.replacen("\r\n", "\r\naccept: text/html,application/xhtml+xml\r\n", 1)
    };
    let mut stream = tokio::net::TcpStream::connect(ingress).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the ingress answers")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.get(9..12))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let fields = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    Answer {
        status,
        fields,
        body: body.to_owned(),
    }
}

/// Visits again with `pass` until admitted (bounded): the places seen on the way.
async fn wait_for_turn(ingress: SocketAddr, pass: &mut String, within: Duration) -> Vec<usize> {
    let deadline = tokio::time::Instant::now() + within;
    let mut places = Vec::new();
    loop {
        let answer = visit(ingress, "/", Some(pass), "").await;
        if let Some(next) = answer.pass() {
            *pass = next;
        }
        if answer.status == 200 {
            return places;
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        places.extend(answer.place());
        assert!(
            tokio::time::Instant::now() < deadline,
            "never admitted; places {places:?}"
        );
        // A browser refreshes every two seconds; this client faster (the line moves on the
        // ingress's clock, not on these visits).
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn above_the_limit_visitors_wait_in_line_in_order_and_are_let_in() {
    let (site, _) = school_site().await;
    let id = SiteId::generate();
    let (ingress, at) = protected_ingress(id, site, protection(1, 1)).await;

    // The first visitor walks in and gets a pass.
    let first = visit(at, "/", None, "").await;
    assert_eq!((first.status, first.body.as_str()), (200, "welcome /"));
    let first_pass = first.pass().expect("a pass");
    assert!(first.field("set-cookie").unwrap().contains("HttpOnly"));

    // The next ones wait: the page in the language they ask for, their place, a refresh.
    let second = visit(at, "/", None, "accept-language: fr-FR,fr;q=0.9\r\n").await;
    assert_eq!(second.status, 503, "{second:?}");
    assert!(second.body.contains("lang=\"fr\"") && second.body.contains("Votre place"));
    assert!(
        second.body.contains("border:1px solid teal"),
        "the co-op's style"
    );
    assert_eq!(
        (second.place(), second.field("refresh")),
        (Some(1), Some("2"))
    );
    let third = visit(at, "/", None, "").await;
    assert_eq!(third.place(), Some(2));
    assert!(third.body.contains("Your place in line"));

    // What is not a page gets 503 with Retry-After, and joins no line.
    let api = visit(at, "/api/marks", None, "accept: application/json\r\n").await;
    assert_eq!((api.status, api.field("retry-after")), (503, Some("2")));
    assert!(api.field("set-cookie").is_none());
    // An admitted visitor's assets and API calls go through.
    let asset = visit(at, "/style.css", Some(&first_pass), "accept: text/css\r\n").await;
    assert_eq!(asset.status, 200);

    // A pass altered by hand goes to the back of the line.
    let mut second_pass = second.pass().unwrap();
    let forged = second_pass.replacen(".w.", ".a.", 1);
    let back = visit(at, "/", Some(&forged), "").await;
    assert_eq!(back.place(), Some(3), "{back:?}");
    // A forged duplicate does not shadow a valid pass sent with it (browsers send every
    // cookie of that name they hold).
    let both = visit(at, "/", Some(&format!("{forged}; {second_pass}")), "").await;
    assert_eq!(both.place(), Some(1), "{both:?}");

    // The first leaves: the second is let in, then the third, whose place went down.
    let mut third_pass = third.pass().unwrap();
    let places = wait_for_turn(at, &mut second_pass, Duration::from_secs(20)).await;
    assert!(places.iter().all(|p| *p == 1), "{places:?}");
    let places = wait_for_turn(at, &mut third_pass, Duration::from_secs(20)).await;
    assert!(places.windows(2).all(|w| w[1] <= w[0]), "{places:?}");
    assert!(places.contains(&1), "{places:?}");

    // Seen in the metrics, and the room's opening is kept for the panel's record.
    let metrics = ingress.metrics();
    assert!(
        metrics.contains(&format!(
            "alveole_ingress_waiting_visitors{{site=\"{id}\"}}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("reason=\"not_a_page\""), "{metrics}");
    // Three visitors admitted (the first, then two from the line), whatever their renewals.
    assert!(
        metrics.contains(&format!(
            "alveole_ingress_admitted_visitors_total{{site=\"{id}\"}} 3"
        )),
        "{metrics}"
    );
    let changes = ingress.take_room_changes();
    assert!(
        changes.iter().any(|c| c.site == id && c.opened),
        "{changes:?}"
    );
}

#[tokio::test]
async fn a_class_comes_only_from_the_site_and_is_called_in_first() {
    let (site, claimed) = school_site().await;
    let id = SiteId::generate();
    let (_ingress, at) = protected_ingress(id, site, protection(1, 1)).await;

    // A visitor who claims a class themselves gains nothing, and the site never sees it.
    let claims = visit(at, "/", None, "alveole-priority: teachers\r\n").await;
    assert_eq!(claims.status, 200);
    assert!(!claims.field("set-cookie").unwrap().contains("teachers"));
    assert!(
        claimed.lock().unwrap().is_empty(),
        "the client's field is dropped"
    );

    // The site marks a teacher after its login: the ingress binds the class in its pass and
    // keeps the site's field to itself.
    let mut teacher = claims.pass().unwrap();
    let login = visit(at, "/login", Some(&teacher), "").await;
    assert_eq!(login.status, 200);
    assert!(login.field("alveole-priority").is_none(), "{login:?}");
    teacher = login.pass().expect("a pass with the class");
    assert!(teacher.contains(".teachers."), "{teacher}");

    // The room is full (the teacher is in): a pupil waits, then a teacher who comes by the
    // staff's path (a rule's class). When the first teacher's admission runs out, the
    // teachers' line is called first; the pupil still gets in after.
    let pupil = visit(at, "/", None, "").await;
    assert_eq!(pupil.place(), Some(1), "{pupil:?}");
    let mut pupil_pass = pupil.pass().unwrap();
    let colleague = visit(at, "/prof/", None, "").await;
    assert_eq!(colleague.place(), Some(1), "first in the teachers' line");
    let mut colleague_pass = colleague.pass().unwrap();
    assert!(colleague_pass.contains(".teachers."), "{colleague_pass}");
    wait_for_turn(at, &mut colleague_pass, Duration::from_secs(20)).await;
    let still = visit(at, "/", Some(&pupil_pass), "").await;
    assert_eq!(still.status, 503, "the pupil was not called first");
    pupil_pass = still.pass().unwrap();
    // The first teacher, back after their admission ran out, keeps their class, not a place.
    let back = visit(at, "/", Some(&teacher), "").await;
    assert_eq!(back.status, 503, "{back:?}");
    let back_pass = back.pass().unwrap();
    assert!(
        back_pass.contains(".w.") && back_pass.contains(".teachers."),
        "{back_pass}"
    );
    wait_for_turn(at, &mut pupil_pass, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn visitors_keep_their_places_on_the_node_the_site_moves_to() {
    let (site, _) = school_site().await;
    let id = SiteId::generate();
    let (_old, old_at) = protected_ingress(id, site, protection(1, 30)).await;
    let first = visit(old_at, "/", None, "").await;
    assert_eq!(first.status, 200);
    let waiting: Vec<Answer> = {
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(visit(old_at, "/", None, "").await);
        }
        answers
    };
    let places: Vec<_> = waiting.iter().map(Answer::place).collect();
    assert_eq!(places, [Some(1), Some(2), Some(3)]);

    // The site's new node has the same key: the admitted visitor stays admitted, and the
    // others, refreshing in any order, find the places their passes say.
    let (_new, new_at) = protected_ingress(id, site, protection(1, 30)).await;
    let admitted = visit(new_at, "/", Some(&first.pass().unwrap()), "").await;
    assert_eq!(admitted.status, 200);
    for i in [2, 0, 1] {
        let again = visit(new_at, "/", Some(&waiting[i].pass().unwrap()), "").await;
        assert_eq!(again.status, 503);
    }
    for (i, answer) in waiting.iter().enumerate() {
        let again = visit(new_at, "/", Some(&answer.pass().unwrap()), "").await;
        assert_eq!(again.place(), Some(i + 1), "{again:?}");
    }
    // A site without the key (another site's pass) is a stranger there.
    let (_other, other_at) = protected_ingress(
        SiteId::generate(),
        site,
        SiteAdmission {
            key: WireSecret("77".repeat(32)),
            ..protection(1, 30)
        },
    )
    .await;
    let stranger = visit(other_at, "/", Some(&first.pass().unwrap()), "").await;
    assert_eq!(stranger.status, 200, "the room there is empty");
    assert_ne!(stranger.pass(), first.pass(), "a new pass of its own");
}
