//! Shared history on PostgreSQL: two relays, one database.

use serde_json::json;
use tether_tests::{Client, Postgres, Relay, get_json, post, reply_to};

#[tokio::test]
async fn two_relays_share_history_secrets_and_the_resume_key() {
    let Some(pg) = Postgres::start() else { return };
    let a = Relay::with(|c| c.db = pg.url.clone()).await;
    let b = Relay::with(|c| c.db = pg.url.clone()).await;

    let mut pc = a.join("shared", "pc", "k3y-0123456789abcdef").await;
    let mut dev = a.join("shared", "device", "k3y-0123456789abcdef").await;
    for i in 0..3 {
        pc.send(post(&format!("q{i}"), &format!("https://x/{i}"))).await;
        let req = dev.expect("post").await;
        dev.send(reply_to(&req, json!({ "n": i }))).await;
        pc.expect("postCb").await;
    }
    // Relay b never saw the room, yet serves its history, with the same secret rules.
    let (status, items) = get_json(b.addr, "/api/rooms/shared/history?secret=k3y-0123456789abcdef").await;
    assert_eq!(status, 200, "{items}");
    let ids: Vec<_> =
        items.as_array().unwrap().iter().map(|i| i["reqId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["q2", "q1", "q0"]);
    assert_eq!(items[0]["result"]["n"], 2);
    assert_eq!(get_json(b.addr, "/api/rooms/shared/history?secret=nope-0123456789abcdef").await.0, 401);

    // One resume key for all: a phone that comes back on the other relay keeps its member id.
    let (id, token) = (dev.member.clone(), dev.resume.clone());
    dev.close().await;
    let back = Client::rejoin(&b.ws_url(), "shared", "device", "k3y-0123456789abcdef", &token).await;
    assert_eq!((back.member.as_str(), back.welcome["resumed"].as_bool()), (id.as_str(), Some(true)));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_relay_restarted_on_postgresql_gets_its_rooms_back() {
    let Some(pg) = Postgres::start() else { return };
    let a = Relay::with(|c| c.db = pg.url.clone()).await;
    let mut pc = a.join("carried", "pc", "k3y-0123456789abcdef").await;
    let mut dev = a.join("carried", "device", "k3y-0123456789abcdef").await;
    pc.send(post("under-way", "https://x/slow")).await;
    let req = dev.expect("post").await;
    let (pc_tok, dev_tok) = (pc.resume.clone(), dev.resume.clone());
    a.stop().await; // SIGTERM's path: the rooms go into PostgreSQL's meta table
    drop((pc, dev));

    let b = Relay::with(|c| c.db = pg.url.clone()).await;
    let url = b.ws_url();
    let mut dev = Client::rejoin(&url, "carried", "device", "k3y-0123456789abcdef", &dev_tok).await;
    dev.send(reply_to(&req, json!("late"))).await;
    let mut pc = Client::rejoin(&url, "carried", "pc", "k3y-0123456789abcdef", &pc_tok).await;
    let reply = pc.expect("postCb").await;
    assert_eq!((reply["id"].as_str(), reply["msg"]["result"].as_str()), (Some("under-way"), Some("late")));
    b.stop().await;
}
