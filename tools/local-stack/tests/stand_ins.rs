//! The stand-ins `make local` runs, over HTTP: the partner's port closes
//! when it is stopped and answers again when started (directly and through
//! the control routes on the stack's port), and the Revel API stand-in lets
//! in any instance with the demo credentials and nothing else.

use std::net::SocketAddr;
use std::time::Duration;

use local_stack::fake_revel::{self, Fixtures, DEMO_API_KEY, DEMO_API_SECRET};
use local_stack::partner::{control_router, Partner, PartnerServer, PartnerState};
use serde_json::Value;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn partner_server() -> PartnerServer {
    let partner = Partner::new("dGVzdC1zZWNyZXQ=").unwrap();
    PartnerServer::start_on(partner, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

/// The answer an unsigned delivery gets, or the error reaching the port.
async fn deliver(client: &reqwest::Client, url: &str) -> Result<u16, reqwest::Error> {
    let answer = client.post(url).body("{}").send().await?;
    Ok(answer.status().as_u16())
}

/// A fresh connection to `address`: refused, or accepted.
async fn connect(address: SocketAddr) -> std::io::Result<()> {
    tokio::net::TcpStream::connect(address).await.map(drop)
}

#[tokio::test]
async fn a_stopped_partner_refuses_connections_and_answers_again_once_started() {
    let server = partner_server().await;
    let url = server.url();
    assert!(url.ends_with("/partner/webhooks"), "{url}");
    // One client throughout: its kept-alive connection is what the worker
    // would hold when the partner goes down.
    let client = client();
    assert_eq!(
        deliver(&client, &url).await.unwrap(),
        401,
        "an unsigned delivery is refused"
    );
    assert!(server.is_running().await);

    assert!(server.stop().await);
    assert!(!server.stop().await, "stopping twice changes nothing");
    assert!(!server.is_running().await);
    let refused = connect(server.address()).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let error = deliver(&client, &url).await.unwrap_err();
    assert!(
        error.is_connect(),
        "the kept-alive connection is closed too: {error:?}"
    );

    assert!(server.start().await.unwrap());
    assert!(
        !server.start().await.unwrap(),
        "starting twice changes nothing"
    );
    assert_eq!(server.url(), url, "the same port");
    connect(server.address()).await.unwrap();
    assert_eq!(deliver(&client, &url).await.unwrap(), 401);
}

#[tokio::test]
async fn the_control_routes_stop_and_start_the_partner_and_say_where_it_listens() {
    let server = partner_server().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = format!("http://{}/local/partner", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, control_router(server)).await.unwrap();
    });
    let client = client();
    let call = |action: &'static str| {
        let client = client.clone();
        let control = control.clone();
        async move {
            let request = match action {
                "" => client.get(&control),
                action => client.post(format!("{control}/{action}")),
            };
            let answer = request.send().await.unwrap();
            assert_eq!(answer.status(), 200, "{action}");
            answer.json::<PartnerState>().await.unwrap()
        }
    };

    let state = call("").await;
    assert!(state.running && !state.changed);
    let url = state.url.clone();
    assert_eq!(deliver(&client, &url).await.unwrap(), 401);

    let stopped = call("stop").await;
    assert!(!stopped.running && stopped.changed);
    assert_eq!(stopped.url, url);
    assert!(deliver(&client, &url).await.unwrap_err().is_connect());
    assert!(!call("stop").await.changed);
    assert!(!call("").await.running);

    let started = call("start").await;
    assert!(started.running && started.changed);
    assert_eq!(deliver(&client, &url).await.unwrap(), 401);
    assert!(!call("start").await.changed);
}

async fn revel_get(base: &str, instance: &str, resource: &str, credentials: &str) -> (u16, Value) {
    let answer = client()
        .get(format!("{base}/{instance}/resources/{resource}/?limit=1"))
        .header("API-AUTHENTICATION", credentials)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

#[tokio::test]
async fn the_revel_stand_in_lets_in_any_instance_with_the_demo_credentials_and_no_other() {
    let fixtures = Fixtures::new(fake_revel::default_dir());
    let products = fixtures.objects("Product").len();
    assert!(products > 1, "the fixtures have products to page through");
    let base = fake_revel::start(fixtures).await.unwrap();
    let demo = format!("{DEMO_API_KEY}:{DEMO_API_SECRET}");
    // Every instance holds the fixtures: a new one is backfilled from them.
    for instance in ["demo", "demo-la", "bar-la", "newmerchant7"] {
        let (status, page) = revel_get(&base, instance, "Product", &demo).await;
        assert_eq!(status, 200, "{instance}");
        assert_eq!(page["objects"].as_array().unwrap().len(), 1, "{instance}");
        assert_eq!(page["meta"]["total_count"], products, "{instance}: {page}");
    }
    // What `revel-ops instance add` checks the credentials with: no fixture
    // file, an empty page, as in a new instance.
    let (status, page) = revel_get(&base, "bar-la", "Establishment", &demo).await;
    assert_eq!(status, 200);
    assert_eq!(page["objects"], serde_json::json!([]));
    assert_eq!(page["meta"]["total_count"], 0);

    for wrong in [
        format!("{DEMO_API_KEY}:not-the-secret"),
        format!("other-key:{DEMO_API_SECRET}"),
        String::new(),
    ] {
        for instance in ["demo", "bar-la"] {
            let (status, answer) = revel_get(&base, instance, "Establishment", &wrong).await;
            assert_eq!(
                (status, answer),
                (401, serde_json::json!({"error": "unauthorized"})),
                "{instance} with {wrong:?}"
            );
        }
    }
    // A name Revel gives no instance.
    let (status, _) = revel_get(&base, "no_such_instance!", "Customer", &demo).await;
    assert_eq!(status, 404);
    // A write to a new instance needs the demo credentials too.
    let refused = client()
        .post(format!("{base}/bar-la/resources/Customer/"))
        .header("API-AUTHENTICATION", "other-key:other-secret")
        .json(&serde_json::json!({"first_name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
